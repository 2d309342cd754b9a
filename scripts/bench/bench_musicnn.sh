#!/usr/bin/env bash
# The musicnn tagger, network only, per 3-s patch: soundalike's Rust port against the Python package
# (TensorFlow CPU, batches of 32) on the same files' patches, in one run. One thread: each side pinned to
# one core with taskset (TensorFlow told to use one thread still uses both cores otherwise). Two threads:
# both unpinned. Each side runs twice in each mode, alternated; the mean is reported.
#   bash scripts/bench/bench_musicnn.sh [N_FILES=8] [OUT=target/bench_musicnn.json]
# Needs the venv of scripts/musicnn/reference.py (PY=/tmp/tfenv/bin/python by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-8}"; out="${2:-target/bench_musicnn.json}"; py="${PY:-/tmp/tfenv/bin/python}"
dir="${PREVIEWS:-../shared/datasets/soundtracks/previews}"
mapfile -t files < <(find "$dir" -name '*.mp3' | sort | head -n "$n")
cargo build -q --release -p soundalike-model --example musicnn_speed
tmp="$(mktemp -d)"
rust() { target/release/examples/musicnn_speed "${files[@]}"; }
tf() { TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 "$py" scripts/musicnn/reference.py speed "${files[@]}" 2>/dev/null; }
for r in 1 2; do
  taskset -c 0 bash -c "$(declare -f rust); files=(${files[*]@Q}); rust" > "$tmp/rust_pinned_$r.json"
  taskset -c 0 bash -c "$(declare -f tf); py=${py@Q}; files=(${files[*]@Q}); tf" > "$tmp/tf_pinned_$r.json"
  rust > "$tmp/rust_free_$r.json"
  tf > "$tmp/tf_free_$r.json"
done
python3 - "$tmp" "$out" <<'PY'
import json, statistics, sys
tmp, out = sys.argv[1], sys.argv[2]
def rows(name, threads):
    got = {}
    for r in (1, 2):
        for x in json.load(open(f"{tmp}/{name}_{r}.json")):
            if x["threads"] == threads:
                got.setdefault(x["model"], []).append(x["ms_per_patch"])
    return {m: statistics.mean(v) for m, v in got.items()}
table = []
for mode, threads in (("pinned", 1), ("free", 2)):
    rs, ts = rows(f"rust_{mode}", threads), rows(f"tf_{mode}", threads)
    for m in sorted(rs):
        table.append({"model": m, "threads": threads, "rust_ms_per_patch": round(rs[m], 2), "tensorflow_ms_per_patch": round(ts[m], 2), "speedup": round(ts[m] / rs[m], 2)})
        print(f"{m} {threads} thread(s){' (one core)' if threads == 1 else ''}: Rust {rs[m]:.1f} ms/patch, TensorFlow {ts[m]:.1f} ms/patch: {ts[m] / rs[m]:.2f}x")
json.dump({"rows": table}, open(out, "w"), indent=1)
print("wrote", out)
PY
