#!/usr/bin/env bash
# The Python package against the command line and librosa, on the same files, side by side in one run
# (2 cores; runs alternate so that the machine's drift falls on both sides):
#   1. embedding throughput: `soundalike embed --tags false` (decode + log-mel + CNN + tempo/key/loudness
#      + store) vs `Model.embed_many` (decode + log-mel + CNN) vs `Store.embed(tags=False)` (the command's
#      own work, from Python), songs per second, median of RUNS runs each;
#   2. `soundalike.melspectrogram` vs `librosa.feature.melspectrogram` on the same float32 arrays
#      (the previews decoded once at 22050 Hz), with their largest difference in dB.
#   bash scripts/bench/bench_python.sh [PREVIEWS_DIR] [RUNS=3] [OUT=target/bench_python.json]
# Builds the wheel (dev profile, as the other benches: dependencies and hot crates at opt-level 3) into
# target/py-bench with numpy and librosa.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-../shared/datasets/soundtracks/previews}"; runs="${2:-3}"; out="${3:-target/bench_python.json}"
venv=target/py-bench
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.5,<2" "librosa>=0.10"
fi
(cd python && "../$venv/bin/maturin" build --locked --profile dev --out ../target/py-bench-wheel >/dev/null 2>&1)
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps target/py-bench-wheel/soundalike-*-abi3-*.whl
rm -rf target/py-bench-wheel
cargo build -q --locked --bin soundalike
"$venv/bin/python" - "$dir" "$runs" "$out" <<'PY'
import json, os, statistics, subprocess, sys, tempfile, time
import numpy as np
import soundalike

lib, runs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(lib) for f in fs if f.endswith(".mp3"))
model = soundalike.Model()
rows = {"cli embed --tags false": [], "Model.embed_many": [], "Store.embed(tags=False)": []}
for r in range(runs):
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        p = subprocess.run(["target/debug/soundalike", "embed", lib, "--out", f"{tmp}/cli", "--tags", "false", "--index", "false", "--json"], capture_output=True, text=True)
        wall = time.perf_counter() - t
        rep = json.loads(p.stdout)
        rows["cli embed --tags false"].append(rep["embedded"] / wall)
        t = time.perf_counter()
        v, failures = model.embed_many(files)
        wall = time.perf_counter() - t
        rows["Model.embed_many"].append((len(files) - len(failures)) / wall)
        t = time.perf_counter()
        s = soundalike.Store.embed(lib, f"{tmp}/py", model=model, tags=False, index=False)
        wall = time.perf_counter() - t
        rows["Store.embed(tags=False)"].append(s.report["embedded"] / wall)
        same = np.allclose(soundalike.Store(f"{tmp}/cli").vectors(), s.vectors(), atol=1e-6)
    print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} songs/s" for k, v in rows.items()), flush=True)
embed = {k: {"songs_per_second_runs": [round(x, 2) for x in v], "median": round(statistics.median(v), 2)} for k, v in rows.items()}
cli = embed["cli embed --tags false"]["median"]
for k in embed:
    embed[k]["vs_cli"] = round(embed[k]["median"] / cli, 3)

# The front end: the same arrays through both.
import librosa
ys = [soundalike.load(f) for f in files[:60]]
seconds = sum(len(y) for y in ys) / 22050
times = {"soundalike.melspectrogram": [], "librosa.feature.melspectrogram": []}
for r in range(runs):
    t = time.perf_counter()
    ours = [soundalike.melspectrogram(y, sr=22050) for y in ys]
    times["soundalike.melspectrogram"].append(time.perf_counter() - t)
    t = time.perf_counter()
    theirs = [librosa.feature.melspectrogram(y=y, sr=22050) for y in ys]
    times["librosa.feature.melspectrogram"].append(time.perf_counter() - t)
worst = 0.0
for o, t in zip(ours, theirs):
    od, td = 10 * np.log10(np.maximum(o, 1e-10)), 10 * np.log10(np.maximum(t, 1e-10))
    keep = td > td.max() - 80
    worst = max(worst, float(np.abs(od - td)[keep].max()))
mel = {k: {"seconds_runs": [round(x, 3) for x in v], "median_s": round(statistics.median(v), 3), "x_realtime": round(seconds / statistics.median(v), 1)} for k, v in times.items()}
speedup = round(mel["librosa.feature.melspectrogram"]["median_s"] / mel["soundalike.melspectrogram"]["median_s"], 2)
doc = {
    "cores": os.cpu_count(), "files": len(files), "runs": runs, "embedding": embed, "vectors_equal_cli": bool(same),
    "melspectrogram": {"arrays": len(ys), "audio_seconds": round(seconds, 1), **mel, "speedup_vs_librosa": speedup, "max_abs_diff_db_above_floor": round(worst, 4)},
    "librosa": librosa.__version__, "numpy": np.__version__,
}
json.dump(doc, open(out, "w"), indent=1)
for k, v in embed.items():
    print(f"{k:<28} median {v['median']:>7.2f} songs/s  ({v['vs_cli']:.3f} x the command line)")
print(f"melspectrogram on {len(ys)} arrays ({seconds:.0f} s of audio): soundalike {mel['soundalike.melspectrogram']['median_s']} s, "
      f"librosa {mel['librosa.feature.melspectrogram']['median_s']} s: {speedup}x; max |diff| {worst:.4f} dB")
PY
