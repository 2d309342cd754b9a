#!/usr/bin/env bash
# Whole-job embedding throughput on real previews, 2 cores, side by side in one run:
#   soundalike embed (decode + log-mel + CNN + mean + store) over every preview, peak memory included, and
#   the pretrained musicnn tagger (TensorFlow) extracting its 200-d penultimate embeddings from the same files
#   (graph built once, all 3-s patches of a file in one batch, mean per song).
#   bash scripts/bench/bench_embed.sh [PREVIEWS_DIR] [MUSICNN_FILES=40] [OUT=target/bench_embed.json]
# musicnn needs: pip install tensorflow-cpu tf-keras librosa && pip install --no-deps musicnn
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-../shared/datasets/soundtracks/previews}"; nm="${2:-40}"; out="${3:-target/bench_embed.json}"
cargo build -q   # the dev profile compiles dependencies and hot crates at opt-level 3 (Cargo.toml)
tmp="$(mktemp -d)"
/usr/bin/time -v target/debug/soundalike embed "$dir" --out "$tmp/store" --json --index false > "$tmp/ours.json" 2> "$tmp/time.txt" || true
rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$tmp/time.txt")
mapfile -t files < <(find "$dir" -name '*.mp3' | sort | head -n "$nm")
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 python3 - "${files[@]}" > "$tmp/musicnn.json" <<'PY'
import json, os, sys, time
import numpy as np, librosa
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2); tf.config.threading.set_inter_op_parallelism_threads(2)
from musicnn import configuration as config, models
files = sys.argv[1:]
n_frames = librosa.time_to_frames(3, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP) + 1
tf.compat.v1.disable_eager_execution(); tf.compat.v1.reset_default_graph()
x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS]); is_training = tf.compat.v1.placeholder(tf.bool)
y, *_, penultimate = models.define_model(x, is_training, "MSD_musicnn", 50)
sess = tf.compat.v1.Session(); sess.run(tf.compat.v1.global_variables_initializer())
tf.compat.v1.train.Saver().restore(sess, os.path.join(os.path.dirname(models.__file__), "MSD_musicnn") + "/")
t = time.perf_counter(); secs = 0.0
for f in files:
    audio, sr = librosa.load(f, sr=config.SR); secs += len(audio) / sr
    rep = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS).T
    rep = np.log10(10000 * rep.astype(np.float32) + 1)  # float32: musicnn's float16 cast gives NaN
    patches = np.stack([rep[i:i + n_frames] for i in range(0, rep.shape[0] - n_frames + 1, n_frames)])
    v = sess.run(penultimate, feed_dict={x: patches, is_training: False}).mean(axis=0)
    assert np.all(np.isfinite(v))
w = time.perf_counter() - t
print(json.dumps({"tool": "musicnn MSD_musicnn (TensorFlow CPU)", "files": len(files), "audio_seconds": round(secs, 1), "wall_seconds": round(w, 2), "x_realtime": round(secs / w, 1), "songs_per_second": round(len(files) / w, 2)}))
PY
python3 - "$tmp/ours.json" "$tmp/musicnn.json" "$rss" "$out" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2])); rss_kb = int(sys.argv[3] or 0)
ours = {"tool": "soundalike embed", "files": o["embedded"], "failed": len(o["failed"]), "audio_seconds": round(o["audio_seconds"], 1),
        "wall_seconds": round(o["seconds"], 2), "x_realtime": round(o["x_realtime"], 1), "songs_per_second": round(o["embedded"] / o["seconds"], 2),
        "peak_rss_mb": round(rss_kb / 1024, 1)}
doc = {"cores": 2, "results": [ours, m], "speedup_songs_per_second": round(ours["songs_per_second"] / m["songs_per_second"], 1)}
json.dump(doc, open(sys.argv[4], "w"), indent=1)
for r in doc["results"]:
    print(f"{r['tool']:<40} {r['files']:>4} files {r['audio_seconds']:>8} s audio {r['wall_seconds']:>7} s  {r['x_realtime']:>6}x realtime  {r['songs_per_second']:>6} songs/s")
print(f"peak memory of soundalike embed: {ours['peak_rss_mb']} MB; speed-up in songs/s: {doc['speedup_songs_per_second']}x")
PY
rm -rf "$tmp"
