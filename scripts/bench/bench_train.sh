#!/usr/bin/env bash
# Training and inference throughput: soundalike (burn, flex CPU backend, with soundalike's CPU kernels for
# the conv blocks in training, fast/cpu_train.rs; for inference also its fused CPU path, fast/cpu_infer.rs, which embedding
# uses) and the same network in PyTorch
# (CPU), on the same real tiles, same batch, same thread count, back to back in one run; peak memory of
# each (every measurement in its own process).
#   bash scripts/bench/bench_train.sh [THREADS=2] [BATCH=32] [OUT=target/bench_train.json] [DEVICE=cpu]
# DEVICE=wgpu|vulkan: soundalike on burn's wgpu backend (built with --features DEVICE) against PyTorch on CUDA.
# SOUNDALIKE_BIN_DIR=DIR: use DIR/soundalike and DIR/bench_train as built (e.g. on a machine without cargo)
# instead of building them here.
# Needs: pip install numpy torch. Tiles: every 128x128 tile of the 30 clips in datasets/tiny (log-mel by
# soundalike's front end, normalised per tile as training does), labelled by soundtrack.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${1:-2}"; batch="${2:-32}"; out="${3:-target/bench_train.json}"; device="${4:-cpu}"
train_steps=30; infer_steps=60
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
if [ -n "${SOUNDALIKE_BIN_DIR:-}" ]; then
  cli="$SOUNDALIKE_BIN_DIR/soundalike"; bin="$SOUNDALIKE_BIN_DIR/bench_train"
else
  features=(); [ "$device" = cpu ] || features=(--features "$device")   # the wgpu and vulkan features
  cargo build -q "${features[@]}"
  cargo build -q -p soundalike-model --example bench_train "${features[@]}"
  cli=target/debug/soundalike; bin=target/debug/examples/bench_train   # dev profile: burn and our model crate at opt-level 3
fi
i=0
for f in datasets/tiny/*/*.mp3; do
  "$cli" spectrogram "$f" --npy "$tmp/$i.npy" >/dev/null
  echo "$(basename "$(dirname "$f")")" >"$tmp/$i.label"
  i=$((i + 1))
done
python3 - "$tmp" <<'PY'
import glob, os, sys
import numpy as np
d = sys.argv[1]
tiles, labels, names = [], [], {}
for p in sorted(glob.glob(os.path.join(d, "*.npy")), key=lambda p: int(os.path.basename(p)[:-4])):
    m = np.load(p)                       # [128 mels, frames] in dB
    lab = names.setdefault(open(p[:-4] + ".label").read().strip(), len(names))
    for s in range(0, m.shape[1] - 127, 128):
        t = m[:, s:s + 128]
        tiles.append(1.0 + (t - t.max()) / 80.0)   # soundalike's per-tile normalisation
        labels.append(lab)
np.asarray(tiles, dtype="<f4").tofile(os.path.join(d, "tiles.f32"))
np.asarray(labels, dtype=np.uint8).tofile(os.path.join(d, "labels.u8"))
open(os.path.join(d, "k"), "w").write(str(len(names)))
print(f"{len(tiles)} tiles, {len(names)} classes", file=sys.stderr)
PY
k=$(cat "$tmp/k")
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
ours_train=$("$bin" train "$tmp/tiles.f32" "$tmp/labels.u8" "$k" "$batch" "$train_steps" "$device")
ours_infer=$("$bin" infer "$tmp/tiles.f32" "$tmp/labels.u8" "$k" "$batch" "$infer_steps" "$device")
torch_run() {
python3 - "$1" "$tmp/tiles.f32" "$tmp/labels.u8" "$k" "$batch" "$2" "$threads" "$device" <<'PY'
import json, resource, sys, time
import numpy as np, torch
from torch import nn
mode, tp, lp, k, batch, steps, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
dev = torch.device("cpu" if sys.argv[8] == "cpu" else "cuda")
torch.set_num_threads(threads)
torch.manual_seed(1)
labels = np.fromfile(lp, dtype=np.uint8).astype(np.int64)
tiles = np.fromfile(tp, dtype="<f4").reshape(len(labels), 1, 128, 128)
def block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
class Net(nn.Module):  # soundalike's default ArchConfig: 16/32/64/128, dense 128, dropout 0.3
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64), *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dense = nn.Sequential(nn.Linear(128, 128), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, k))
    def forward(self, x):
        e = self.dense(self.features(x))
        return e, self.head(e)
def batch_at(i):
    r = (np.arange(batch) + i * batch) % len(labels)
    return torch.from_numpy(tiles[r]).to(dev), torch.from_numpy(labels[r]).to(dev)
net, warm = Net().to(dev), 3
where = "CPU" if dev.type == "cpu" else "CUDA, " + torch.cuda.get_device_name(0)
res = {"tool": f"pytorch {torch.__version__} ({where})", "mode": mode, "batch": batch, "steps": steps}
if mode == "train":
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-4)
    net.train()
    for i in range(warm + steps):
        if i == warm: t0 = time.perf_counter()
        x, y = batch_at(i)
        opt.zero_grad()
        _, logits = net(x)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        last = loss.item()   # read back every step, as soundalike's train_step does
    res.update(tiles_per_s=round(steps * batch / (time.perf_counter() - t0), 1), final_loss=round(last, 4))
else:
    net.eval()
    fused = nn.Sequential(*[m for m in net.features])
    # PyTorch's own conv+BN folding, for the same comparison as soundalike's folded network.
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    mods = list(net.features)
    folded = []
    j = 0
    while j < len(mods):
        if isinstance(mods[j], nn.Conv2d) and isinstance(mods[j + 1], nn.BatchNorm2d):
            folded.append(fuse_conv_bn_eval(mods[j], mods[j + 1])); j += 2
        else:
            folded.append(mods[j]); j += 1
    folded_features = nn.Sequential(*folded).eval().to(dev)
    for name, feats in (("tiles_per_s", net.features), ("tiles_per_s_folded", folded_features)):
        with torch.inference_mode():
            for i in range(warm + steps):
                if i == warm: t0 = time.perf_counter()
                x, _ = batch_at(i)
                e = net.dense(feats(x))
                p = torch.softmax(net.head(e), 1)
                e.cpu().numpy(); p.cpu().numpy()
        res[name] = round(steps * batch / (time.perf_counter() - t0), 1)
res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
if dev.type == "cuda":
    res["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
print(json.dumps(res))
PY
}
torch_train=$(torch_run train "$train_steps")
torch_infer=$(torch_run infer "$infer_steps")
python3 - "$out" "$threads" "$ours_train" "$ours_infer" "$torch_train" "$torch_infer" "$device" <<'PY'
import json, sys
out, threads = sys.argv[1], int(sys.argv[2])
ot, oi, tt, ti = (json.loads(x) for x in sys.argv[3:7])
r = {"threads": threads, "device": sys.argv[7], "soundalike": {"train": ot, "infer": oi}, "pytorch": {"train": tt, "infer": ti},
     "train_ratio_soundalike_over_pytorch": round(ot["tiles_per_s"] / tt["tiles_per_s"], 2),
     "infer_ratio_soundalike_folded_over_pytorch": round(oi["tiles_per_s_folded"] / ti["tiles_per_s"], 2),
     "infer_ratio_soundalike_folded_over_pytorch_folded": round(oi["tiles_per_s_folded"] / ti["tiles_per_s_folded"], 2)}
if "tiles_per_s_fused" in oi:   # the fused path exists on the CPU only
    r["infer_ratio_soundalike_fused_over_pytorch"] = round(oi["tiles_per_s_fused"] / ti["tiles_per_s"], 2)
    r["infer_ratio_soundalike_fused_over_pytorch_folded"] = round(oi["tiles_per_s_fused"] / ti["tiles_per_s_folded"], 2)
open(out, "w").write(json.dumps(r, indent=1) + "\n")
print(json.dumps(r, indent=1))
PY
