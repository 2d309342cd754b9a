#!/usr/bin/env bash
# Load check of `soundalike serve` on loopback: similar-song queries (k=10) for every song of a store in
# turn, with wrk (apt-get install wrk), for a bounded time. Writes requests/s and latency percentiles.
#   bash scripts/bench/bench_serve.sh [STORE=target/demo-store] [SECONDS=10] [CONNECTIONS=16] [OUT=target/bench_serve.json]
# The server and wrk share this machine's cores; the binary is the dev profile (dependencies and the
# index crate at opt-level 3), as `cargo run` builds it. SOUNDALIKE_BIN=PATH serves with another binary
# (say an older build, to compare two in one session; run them alternately).
set -euo pipefail
cd "$(dirname "$0")/../.."
store="${1:-target/demo-store}"; secs="${2:-10}"; conns="${3:-16}"; out="${4:-target/bench_serve.json}"
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
bin="${SOUNDALIKE_BIN:-target/debug/soundalike}"
[ -n "${SOUNDALIKE_BIN:-}" ] || cargo build -q
[ -f "$store/store.json" ] || "$bin" demo --out "$store" >/dev/null
tmp="$(mktemp -d)"
"$bin" serve "$store" --port 0 >"$tmp/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q http "$tmp/log" && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$tmp/log" | head -1)
python3 scripts/bench/wrk_similar.py lua "$url" "$tmp/ids.lua"
wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$tmp/ids.lua" "$url" | tee "$tmp/wrk.txt"
songs=$(python3 -c "import json,urllib.request; print(json.load(urllib.request.urlopen('${url}api/health'))['songs'])")
python3 - "$tmp/wrk.txt" "$out" "$secs" "$conns" "$songs" <<'PY'
import json, re, sys
txt = open(sys.argv[1]).read()
r = json.loads(re.search(r"^JSON (.*)$", txt, re.M).group(1))
r.update(requests_per_s=r["requests"] / float(sys.argv[3]), connections=int(sys.argv[4]), songs=int(sys.argv[5]), endpoint="GET /api/similar?k=10", tool="wrk -t1")
open(sys.argv[2], "w").write(json.dumps(r, indent=1) + "\n")
print(json.dumps(r))
PY
