#!/usr/bin/env bash
# The GPU path end to end, on a machine with a GPU, for a soundalike built with `--features wgpu`:
#   bash scripts/bench/gpu_check.sh [BIN=target/release/soundalike] [OUT=target/gpu_check.json]
# 1. embeds datasets/tiny with the shipped model on the CPU and on the GPU (burn's wgpu backend) and
#    compares every song's vector (the two must agree to rounding);
# 2. trains the same small model on datasets/tiny on the GPU and on the CPU (same seed and settings; the
#    spectrogram cache is built first, so both time training alone), 6 epochs of 12 crops per song;
# 3. evaluates the GPU-trained model on both devices (the two reports must agree);
# 4. trains with the default model's recipe (tag, group, song, teacher-vector and relational heads, mixup,
#    time-std pool) plus a musicnn song context on both devices, teachers from soundalike's own tagger, 4
#    epochs: the losses must be finite and track each other, and the GPU model's embeddings (tagger context
#    included) must agree between the devices.
# Exits non-zero when a check fails. Needs python3 (no packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(realpath "${1:-target/release/soundalike}")"; out="${2:-target/gpu_check.json}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
lib=datasets/tiny; labels=(--labels datasets/tiny/tracks.csv --label-column source)
step() { echo "== $*" >&2; }
# GPU_DEVICE=cpu runs every step with the CPU twice: a check of this script on a machine without a GPU.
declare -A dev=([cpu]=cpu [wgpu]="${GPU_DEVICE:-wgpu}")

step "embed on cpu and wgpu"
for d in cpu wgpu; do
  t0=$EPOCHREALTIME
  "$bin" embed "$lib" --out "$tmp/store_$d" --device "${dev[$d]}" "${labels[@]}" >"$tmp/embed_$d.log"
  python3 -c "print($EPOCHREALTIME - $t0)" >"$tmp/embed_$d.s"
  "$bin" export "$tmp/store_$d" --format jsonl --out "$tmp/$d.jsonl" >/dev/null
done

step "cache, then train on wgpu and cpu"
"$bin" cache "$lib" --cache "$tmp/cache" >/dev/null
train=(train "$lib" "${labels[@]}" --cache "$tmp/cache" --epochs 6 --patience 6 --crops-per-song 12
       --val-fraction 0.34 --test-fraction 0.34 --seed 7)
for d in wgpu cpu; do
  "$bin" "${train[@]}" --out "$tmp/model_$d" --device "${dev[$d]}" >"$tmp/train_$d.log" 2>&1 || { cat "$tmp/train_$d.log"; exit 1; }
done
for d in wgpu cpu; do
  "$bin" evaluate "$tmp/model_wgpu" "$lib" "${labels[@]}" --cache "$tmp/cache" --device "${dev[$d]}" --json >"$tmp/eval_$d.json"
done

step "the default recipe and a musicnn context, on wgpu and cpu"
# Teachers for datasets/tiny from soundalike's tagger: tags (teacher_tags.csv) and penultimates (vectors.csv).
mapfile -d '' tiny_files < <(find "$lib" -name '*.mp3' -print0 | sort -z)
"$bin" tags --json --penultimate "${tiny_files[@]}" >"$tmp/tags.jsonl"
python3 - "$tmp" "$lib" <<'PY'
import json, os, sys
tmp, lib = sys.argv[1], os.path.abspath(sys.argv[2])
rows = [json.loads(l) for l in open(f"{tmp}/tags.jsonl")]
ids = [os.path.splitext(os.path.relpath(os.path.abspath(r["file"]), lib))[0] for r in rows]
names = [f"msd:{t}" for t in rows[0]["msd"]] + [f"mtt:{t}" for t in rows[0]["mtt"]]
with open(f"{tmp}/teacher_tags.csv", "w") as f:
    f.write("id," + ",".join(names) + "\n")
    for i, r in zip(ids, rows):
        f.write(i + "," + ",".join(str(v) for v in [*r["msd"].values(), *r["mtt"].values()]) + "\n")
with open(f"{tmp}/vectors.csv", "w") as f:
    f.write("id," + ",".join(f"p{k}" for k in range(len(rows[0]["msd_penultimate"]))) + "\n")
    for i, r in zip(ids, rows):
        f.write(i + "," + ",".join(str(v) for v in r["msd_penultimate"]) + "\n")
PY
recipe=(train "$lib" "${labels[@]}" --group-column source --cache "$tmp/cache" --epochs 4 --patience 4 --crops-per-song 6
        --val-fraction 0 --test-fraction 0.2 --seed 7 --mixup 0.5 --pool time-std --teacher-tags "$tmp/teacher_tags.csv"
        --tag-weight 5 --group-weight 1 --song-weight 1 --teacher-vectors "$tmp/vectors.csv" --vec-weight 1
        --relation-weight 10 --context-musicnn "$tmp/vectors.csv" --context-dropout 0.25)
for d in wgpu cpu; do
  t0=$EPOCHREALTIME
  "$bin" "${recipe[@]}" --out "$tmp/recipe_$d" --device "${dev[$d]}" >"$tmp/recipe_$d.log" 2>&1 || { cat "$tmp/recipe_$d.log"; exit 1; }
  python3 -c "print($EPOCHREALTIME - $t0)" >"$tmp/recipe_$d.s"
done
for d in cpu wgpu; do
  "$bin" embed "$lib" --model "$tmp/recipe_wgpu" --out "$tmp/rstore_$d" --device "${dev[$d]}" --tags false "${labels[@]}" >/dev/null
  "$bin" export "$tmp/rstore_$d" --format jsonl --out "$tmp/r$d.jsonl" >/dev/null
done

python3 - "$tmp" "$out" <<'PY'
import json, math, sys
tmp, out = sys.argv[1], sys.argv[2]
def vectors(d):
    rows = [json.loads(l) for l in open(f"{tmp}/{d}.jsonl")]
    return {r["id"]: r["vector"] for r in rows}
def agreement(a, b):
    cpu, gpu = vectors(a), vectors(b)
    assert cpu.keys() == gpu.keys() and cpu, "the two stores hold different songs"
    diff = max(abs(x - y) for k in cpu for x, y in zip(cpu[k], gpu[k]))
    cos = min(sum(x * y for x, y in zip(cpu[k], gpu[k])) for k in cpu)   # both L2-normalised
    return cpu, diff, cos
cpu, diff, cos = agreement("cpu", "wgpu")
_, rdiff, rcos = agreement("rcpu", "rwgpu")
rm = {d: json.load(open(f"{tmp}/recipe_{d}/metrics.json")) for d in ("wgpu", "cpu")}
rloss = {d: [h["train_loss"] for h in rm[d]["history"]] for d in rm}
m = {d: json.load(open(f"{tmp}/model_{d}/metrics.json")) for d in ("wgpu", "cpu")}
ev = {d: json.load(open(f"{tmp}/eval_{d}.json")) for d in ("wgpu", "cpu")}
def epoch_s(d): return sum(h["seconds"] for h in m[d]["history"])
r = {
    "songs": len(cpu),
    "embed": {"max_abs_diff": diff, "min_cosine": cos,
              "seconds_cpu": float(open(f"{tmp}/embed_cpu.s").read()), "seconds_wgpu": float(open(f"{tmp}/embed_wgpu.s").read())},
    "train": {d: {"machine": m[d]["machine"], "epochs": m[d]["epochs_run"], "training_seconds": round(epoch_s(d), 2),
                  "final_train_loss": m[d]["history"][-1]["train_loss"], "test_song_accuracy": m[d]["test"]["song_accuracy"]}
              for d in m},
    "train_speedup_wgpu_over_cpu": round(epoch_s("cpu") / epoch_s("wgpu"), 2),
    "evaluate_gpu_model": {d: ev[d] for d in ev},
    "recipe_with_musicnn_context": {
        "train_losses": rloss,
        "seconds": {d: float(open(f"{tmp}/recipe_{d}.s").read()) for d in rm},
        "embed_gpu_model": {"max_abs_diff": rdiff, "min_cosine": rcos},
    },
}
json.dump(r, open(out, "w"), indent=1)
print(json.dumps({k: v for k, v in r.items() if k != "evaluate_gpu_model"}, indent=1))
ok = True
if not (diff < 1e-3 and cos > 0.9999):
    print(f"FAIL: embeddings differ between cpu and wgpu (max |diff| {diff:.2e}, min cosine {cos:.6f})"); ok = False
a, b = ev["wgpu"], ev["cpu"]
for part in a:
    if a[part]["song_accuracy"] != b[part]["song_accuracy"] or abs(a[part]["loss"] - b[part]["loss"]) > 1e-3 * max(1.0, abs(b[part]["loss"])):
        print(f"FAIL: evaluate ({part}) differs between devices: {a[part]} vs {b[part]}"); ok = False
for d in m:
    if not math.isfinite(m[d]["history"][-1]["train_loss"]):
        print(f"FAIL: training on {d} diverged"); ok = False
if not all(math.isfinite(v) for d in rloss for v in rloss[d]):
    print(f"FAIL: the recipe's losses are not finite: {rloss}"); ok = False
elif any(abs(g - c) > 0.1 * abs(c) for g, c in zip(rloss["wgpu"], rloss["cpu"])):
    print(f"FAIL: the recipe's losses differ by over 10% between devices: {rloss}"); ok = False
if not (rdiff < 1e-3 and rcos > 0.9999):
    print(f"FAIL: the recipe model's embeddings differ between cpu and wgpu (max |diff| {rdiff:.2e}, min cosine {rcos:.6f})"); ok = False
print("gpu check:", "ok" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
