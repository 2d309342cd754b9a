#!/usr/bin/env bash
# The musicnn tagger, network only, per 3-s patch: soundalike's Rust port against the Python package
# (TensorFlow CPU, batches of 32) on the same files' patches, in one run, on 1 and 2 threads. Rust runs
# before and after TensorFlow; the ratio uses the mean of its two runs.
#   bash scripts/bench/bench_musicnn.sh [N_FILES=8] [OUT=target/bench_musicnn.json]
# Needs the venv of scripts/musicnn/reference.py (PY=/tmp/tfenv/bin/python by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-8}"; out="${2:-target/bench_musicnn.json}"; py="${PY:-/tmp/tfenv/bin/python}"
dir="${PREVIEWS:-../shared/datasets/soundtracks/previews}"
mapfile -t files < <(find "$dir" -name '*.mp3' | sort | head -n "$n")
cargo build -q --release -p soundalike-model --example musicnn_speed
tmp="$(mktemp -d)"
target/release/examples/musicnn_speed "${files[@]}" > "$tmp/rust1.json"
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 "$py" scripts/musicnn/reference.py speed "${files[@]}" 2>/dev/null > "$tmp/tf.json"
target/release/examples/musicnn_speed "${files[@]}" > "$tmp/rust2.json"
python3 - "$tmp" "$out" <<'PY'
import json, sys
tmp, out = sys.argv[1], sys.argv[2]
r1, r2, tf = (json.load(open(f"{tmp}/{n}.json")) for n in ("rust1", "rust2", "tf"))
rows = []
for a, b, t in zip(r1, r2, tf):
    ms = (a["ms_per_patch"] + b["ms_per_patch"]) / 2
    rows.append({"model": a["model"], "threads": a["threads"], "patches": a["patches"], "rust_ms_per_patch": round(ms, 2),
                 "tensorflow_ms_per_patch": t["ms_per_patch"], "speedup": round(t["ms_per_patch"] / ms, 2)})
    print(f'{a["model"]} {a["threads"]} thread(s): Rust {ms:.1f} ms/patch, TensorFlow {t["ms_per_patch"]:.1f} ms/patch: {t["ms_per_patch"] / ms:.2f}x')
json.dump({"rows": rows, "rust": r1 + r2, "tensorflow": tf}, open(out, "w"), indent=1)
print("wrote", out)
PY
