#!/usr/bin/env bash
# The embedded index against PostgreSQL + pgvector under load: GET /api/similar?k=10 for every song in turn
# (wrk, 1 thread per server), for `serve STORE`, one `serve --db`, and two `serve --db` processes on the
# same database (a wrk per process, half the connections each, run at once; requests summed). Everything
# (PostgreSQL, the servers, wrk) shares this machine's cores. The store is pushed to the database first.
#   bash scripts/bench/bench_serve_db.sh STORE DB_URL [SECONDS=10] [CONNECTIONS=16] [OUT=target/bench_serve_db.json]
set -euo pipefail
cd "$(dirname "$0")/../.."
store="$1"; db="$2"; secs="${3:-10}"; conns="${4:-16}"; out="${5:-target/bench_serve_db.json}"
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
cargo build -q --release --bin soundalike
bin=target/release/soundalike
"$bin" push "$store" --db "$db" >/dev/null
tmp="$(mktemp -d)"; pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$tmp"' EXIT
start() {  # start NAME ARGS...: a server on a free port; prints its URL
  local name="$1"; shift
  "$bin" serve "$@" --port 0 >"$tmp/$name.log" 2>&1 & pids+=($!)
  for _ in $(seq 200); do grep -q http "$tmp/$name.log" && break; sleep 0.1; done
  grep -o 'http://[^ ]*' "$tmp/$name.log" | head -1
}
load() {  # load LABEL URL...: wrk against each URL at once
  local label="$1"; shift; local n=$#; local outs=()
  python3 scripts/bench/wrk_similar.py lua "$1" "$tmp/ids.lua"
  local i=0 w=()
  for u in "$@"; do
    wrk -t1 -c$((conns / n)) -d"${secs}s" --latency -s "$tmp/ids.lua" "$u" >"$tmp/wrk-$i.txt" & w+=($!)
    outs+=("$tmp/wrk-$i.txt"); i=$((i + 1))
  done
  wait "${w[@]}"
  echo "{\"setup\": \"$label\", \"result\": $(python3 scripts/bench/wrk_similar.py parse "$secs" "${outs[@]}")}"
}
results=()
u=$(start store "$store"); results+=("$(load "serve STORE (embedded index)" "$u")")
u1=$(start db1 --db "$db"); results+=("$(load "1 serve --db" "$u1")")
u2=$(start db2 --db "$db"); results+=("$(load "2 serve --db" "$u1" "$u2")")
printf '%s\n' "${results[@]}" | python3 -c "import json,sys; r=[json.loads(l) for l in sys.stdin]; json.dump(r, open('$out','w'), indent=1); [print(json.dumps(x)) for x in r]"
