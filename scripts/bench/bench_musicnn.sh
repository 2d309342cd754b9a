#!/usr/bin/env bash
# The musicnn tagger, network only, per 3-s patch: soundalike's Rust port against the Python package
# (TensorFlow CPU, batches of 32) on the same files' patches, in one run. One thread: each side pinned to
# one core with taskset (TensorFlow told to use one thread still uses both cores otherwise). Two threads:
# both unpinned. Each side runs ROUNDS times in each mode, alternated; the mean and the best (the least
# disturbed by whatever else the machine runs) are reported, and the speedup of each.
#   bash scripts/bench/bench_musicnn.sh [N_FILES=8] [OUT=target/bench_musicnn.json] [ROUNDS=2]
# Needs the venv of scripts/musicnn/reference.py (PY=/tmp/tfenv/bin/python by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-8}"; out="${2:-target/bench_musicnn.json}"; rounds="${3:-2}"; py="${PY:-/tmp/tfenv/bin/python}"
dir="${PREVIEWS:-../shared/datasets/soundtracks/previews}"
mapfile -t files < <(find "$dir" -name '*.mp3' | sort | head -n "$n")
cargo build -q --release -p soundalike-model --example musicnn_speed
tmp="$(mktemp -d)"
rust() { target/release/examples/musicnn_speed "${files[@]}"; }
tf() { TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 "$py" scripts/musicnn/reference.py speed "${files[@]}" 2>/dev/null; }
for r in $(seq "$rounds"); do
  taskset -c 0 bash -c "$(declare -f rust); files=(${files[*]@Q}); rust" > "$tmp/rust_pinned_$r.json"
  taskset -c 0 bash -c "$(declare -f tf); py=${py@Q}; files=(${files[*]@Q}); tf" > "$tmp/tf_pinned_$r.json"
  rust > "$tmp/rust_free_$r.json"
  tf > "$tmp/tf_free_$r.json"
done
python3 - "$tmp" "$out" "$rounds" <<'PY'
import json, statistics, sys
tmp, out, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rows(name, threads):
    got = {}
    for r in range(1, rounds + 1):
        for x in json.load(open(f"{tmp}/{name}_{r}.json")):
            if x["threads"] == threads:
                got.setdefault(x["model"], []).append(x["ms_per_patch"])
    return got
table = []
for mode, threads in (("pinned", 1), ("free", 2)):
    rs, ts = rows(f"rust_{mode}", threads), rows(f"tf_{mode}", threads)
    for m in sorted(rs):
        (rm, tm), (rb, tb) = (statistics.mean(rs[m]), statistics.mean(ts[m])), (min(rs[m]), min(ts[m]))
        table.append({"model": m, "threads": threads, "rounds": rounds, "rust_ms_per_patch": round(rm, 2), "tensorflow_ms_per_patch": round(tm, 2), "speedup": round(tm / rm, 2),
                      "rust_best_ms": round(rb, 2), "tensorflow_best_ms": round(tb, 2), "speedup_best": round(tb / rb, 2), "rust_runs": rs[m], "tensorflow_runs": ts[m]})
        print(f"{m} {threads} thread(s){' (one core)' if threads == 1 else ''}: mean Rust {rm:.1f} ms/patch, TensorFlow {tm:.1f}: {tm / rm:.2f}x; best Rust {rb:.1f}, TensorFlow {tb:.1f}: {tb / rb:.2f}x")
json.dump({"rows": table}, open(out, "w"), indent=1)
print("wrote", out)
PY
