#!/usr/bin/env bash
# What tagging costs `embed`: the same previews embedded without tags (--tags false) and with them (both
# musicnn taggers, embed's patch plan), alternated ROUNDS times in one run, wall and CPU time, peak memory.
#   bash scripts/bench/bench_tags.sh [PREVIEWS_DIR] [ROUNDS=2] [OUT=target/bench_tags.json]
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-../shared/datasets/soundtracks/previews}"; rounds="${2:-2}"; out="${3:-target/bench_tags.json}"
cargo build -q   # the dev profile compiles dependencies and hot crates at opt-level 3 (Cargo.toml)
tmp="$(mktemp -d)"
for r in $(seq "$rounds"); do
  for mode in false true; do
    rm -rf "$tmp/store"
    /usr/bin/time -f "%e %U %S %M" -o "$tmp/time_${mode}_$r.txt" \
      target/debug/soundalike embed "$dir" --out "$tmp/store" --json --index false --tags "$mode" > "$tmp/report_${mode}_$r.json" || true  # a file that fails is reported, not fatal
  done
done
python3 - "$tmp" "$rounds" "$out" <<'PY'
import json, statistics, sys
tmp, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = {}
for mode in ("false", "true"):
    runs = []
    for r in range(1, rounds + 1):
        wall, user, sys_, rss = open(f"{tmp}/time_{mode}_{r}.txt").read().strip().splitlines()[-1].split()  # after any "exited with" line
        rep = json.load(open(f"{tmp}/report_{mode}_{r}.json"))
        runs.append({"wall_s": float(wall), "cpu_s": float(user) + float(sys_), "peak_rss_mb": int(rss) / 1024,
                     "x_realtime": rep["audio_seconds"] / float(wall), "songs": rep["embedded"]})
    rows["with_tags" if mode == "true" else "without_tags"] = {
        "runs": runs, "median_x_realtime": statistics.median(r["x_realtime"] for r in runs),
        "median_cpu_s": statistics.median(r["cpu_s"] for r in runs), "max_peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
w, wo = rows["with_tags"], rows["without_tags"]
rows["cpu_ratio"] = w["median_cpu_s"] / wo["median_cpu_s"]
json.dump(rows, open(out, "w"), indent=1)
print(f"without tags {wo['median_x_realtime']:.0f}x realtime, with tags {w['median_x_realtime']:.0f}x "
      f"(CPU x{rows['cpu_ratio']:.2f}), peak RSS {w['max_peak_rss_mb']:.0f} MB; wrote {out}")
PY
