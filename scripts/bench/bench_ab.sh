#!/usr/bin/env bash
# A/B of training and inference throughput between an earlier revision and the working tree, on the same
# tiles, alternating runs (for refactors that must not change speed; PyTorch is the peer in bench_train.sh).
#   bash scripts/bench/bench_ab.sh REV [THREADS=2] [BATCH=32] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/../.."
rev="$1"; threads="${2:-2}"; batch="${3:-32}"; rounds="${4:-2}"
wt="target/ab-$(git rev-parse --short "$rev")"
[ -d "$wt" ] || git worktree add -q --detach "$wt" "$rev"
# The same target folder: dependencies are built once; the workspace crates of each tree are their own.
(cd "$wt" && CARGO_TARGET_DIR=../ab-target cargo build -q -p soundalike-model --example bench_train && cp ../ab-target/debug/examples/bench_train ../ab-base-bench_train)
CARGO_TARGET_DIR=target/ab-target cargo build -q -p soundalike-model --example bench_train
cp target/ab-target/debug/examples/bench_train target/ab-head-bench_train
cargo build -q
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
i=0
for f in datasets/tiny/*/*.mp3; do target/debug/soundalike spectrogram "$f" --npy "$tmp/$i.npy" >/dev/null; echo "$(basename "$(dirname "$f")")" >"$tmp/$i.label"; i=$((i + 1)); done
python3 - "$tmp" <<'PY'
import glob, os, sys
import numpy as np
d = sys.argv[1]
tiles, labels, names = [], [], {}
for p in sorted(glob.glob(os.path.join(d, "*.npy")), key=lambda p: int(os.path.basename(p)[:-4])):
    m = np.load(p)
    lab = names.setdefault(open(p[:-4] + ".label").read().strip(), len(names))
    for s in range(0, m.shape[1] - 127, 128):
        t = m[:, s:s + 128]; tiles.append(1.0 + (t - t.max()) / 80.0); labels.append(lab)
np.asarray(tiles, dtype="<f4").tofile(os.path.join(d, "tiles.f32")); np.asarray(labels, dtype=np.uint8).tofile(os.path.join(d, "labels.u8"))
open(os.path.join(d, "k"), "w").write(str(len(names)))
PY
k=$(cat "$tmp/k"); export RAYON_NUM_THREADS="$threads"
for r in $(seq "$rounds"); do
  for side in base head; do
    for mode in train infer; do
      steps=$([ $mode = train ] && echo 30 || echo 60)
      echo "{\"round\": $r, \"side\": \"$side\", \"mode\": \"$mode\", \"result\": $(target/ab-$side-bench_train $mode "$tmp/tiles.f32" "$tmp/labels.u8" "$k" "$batch" "$steps" cpu)}"
    done
  done
done
