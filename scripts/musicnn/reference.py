#!/usr/bin/env python3
"""Reference values of the musicnn Python package (TensorFlow), for soundalike's Rust port.

Run in a venv with the package and TensorFlow (TensorFlow never runs in soundalike itself):

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras librosa soundfile
    pip download musicnn==0.1.0 --no-deps -d /tmp/mnn
    /tmp/tfenv/bin/pip install --no-deps /tmp/mnn/musicnn-0.1.0-py3-none-any.whl
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/musicnn/reference.py fixtures    # tests/data/musicnn/
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/musicnn/reference.py tags OUT.json FILE...  # mean taggram by tag
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/musicnn/reference.py speed FILE...   # JSON rows

The network is the package's own (`musicnn.models.define_model`, its checkpoint restored by a TF Saver, as
`musicnn.extractor.extractor` does). Its front end is `extractor.batch_data` with two known bugs worked around:
the float16 step overflows to inf under NumPy 2 (the product is taken in float32, as NumPy 1 did), and the
extractor's penultimate repeats patch 1's (issue #2): every patch is run in one batch and read directly.
Clips shorter than one patch are repeat-padded, as musicnn was trained ("pad_short": "repeat-pad"), where the
package itself fails.

`fixtures` cuts 16 kHz mono clips from the committed tiny set (librosa.load, soxr_hq) to tests/data/musicnn/
and writes, per clip, its log-mel (`.logmel.npy`, [frames, 96]) and, per model, every patch's penultimate and
tag probabilities (`reference.json`).
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import tensorflow as tf  # noqa: E402

from musicnn import configuration as config  # noqa: E402
from musicnn import models  # noqa: E402

tf.compat.v1.disable_eager_execution()
N_FRAMES = 187
MODELS = ["MSD_musicnn", "MTT_musicnn"]
ROOT = Path(__file__).resolve().parents[2]

# (output name, source in the tiny set, start s, length s)
CLIPS = [
    ("warzone_16k.wav", "datasets/tiny/warzone2100-music/track1.mp3", 2.0, 9.5),
    ("frozen_16k.wav", "datasets/tiny/frozen-bubble-data/frozen-mainzik-1p.mp3", 1.0, 9.5),
    ("short_16k.wav", "datasets/tiny/asc-music/frontiers.mp3", 5.0, 2.0),
]


def log_mel(audio):
    """`extractor.batch_data`'s front end: [frames, 96], float16 rounding, log10(10000 x + 1) in float32."""
    rep = librosa.feature.melspectrogram(y=audio, sr=config.SR, hop_length=config.FFT_HOP,
                                         n_fft=config.FFT_SIZE, n_mels=config.N_MELS).T
    rep = rep.astype(np.float16).astype(np.float32)
    return np.log10(10000 * rep + 1)


def patches(rep):
    """Non-overlapping 187-frame patches (the package's default); a short clip repeat-padded to one patch."""
    if rep.shape[0] < N_FRAMES:
        reps = -(-N_FRAMES // rep.shape[0])
        rep = np.concatenate([rep] * reps, axis=0)[:N_FRAMES]
    return np.stack([rep[t:t + N_FRAMES] for t in range(0, rep.shape[0] - N_FRAMES + 1, N_FRAMES)])


class Net:
    def __init__(self, model, threads=None):
        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.compat.v1.name_scope("model"):
                self.x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, config.N_MELS])
                self.training = tf.compat.v1.placeholder(tf.bool)
                out = models.define_model(self.x, self.training, model, 50)
                self.y = tf.nn.sigmoid(out[0])
                self.penultimate = out[-1]
            cfg = tf.compat.v1.ConfigProto()
            if threads:
                cfg.intra_op_parallelism_threads = threads
                cfg.inter_op_parallelism_threads = threads
            self.sess = tf.compat.v1.Session(graph=self.graph, config=cfg)
            tf.compat.v1.train.Saver().restore(self.sess, os.path.dirname(models.__file__) + "/" + model + "/")

    def __call__(self, batch):
        return self.sess.run([self.penultimate, self.y], feed_dict={self.x: batch, self.training: False})


def fixtures():
    out = ROOT / "tests/data/musicnn"
    out.mkdir(parents=True, exist_ok=True)
    nets = {m: Net(m) for m in MODELS}
    ref = {"generated_by": "scripts/musicnn/reference.py fixtures", "tensorflow": tf.__version__,
           "librosa": librosa.__version__, "musicnn": "0.1.0 (PyPI wheel)", "clips": {}}
    for name, src, start, length in CLIPS:
        audio, _ = librosa.load(ROOT / src, sr=config.SR, offset=start, duration=length)
        sf.write(out / name, audio, config.SR, subtype="PCM_16")
        audio, _ = librosa.load(out / name, sr=None)  # exactly the samples the Rust side reads
        rep = log_mel(audio)
        np.save(out / name.replace(".wav", ".logmel.npy"), np.ascontiguousarray(rep, dtype=np.float32))
        batch = patches(rep)
        entry = {"source": src, "start_s": start, "frames": int(rep.shape[0]), "patches": int(batch.shape[0])}
        for m, net in nets.items():
            pen, tags = net(batch)
            entry[m] = {"penultimate": pen.tolist(), "tags": tags.tolist()}
        ref["clips"][name] = entry
        print(name, rep.shape, batch.shape[0], "patches")
    (out / "reference.json").write_text(json.dumps(ref))


def tags(out_json, files):
    nets = {m: Net(m) for m in MODELS}
    result = {}
    for f in files:
        audio, _ = librosa.load(f, sr=config.SR)
        batch = patches(log_mel(audio))
        result[f] = {}
        for m, net in nets.items():
            _, t = net(batch)
            labels = config.MSD_LABELS if m.startswith("MSD") else config.MTT_LABELS
            result[f][m] = dict(zip(labels, t.mean(axis=0).tolist()))
    Path(out_json).write_text(json.dumps(result))


def speed(files):
    """Network-only time of every non-overlapping patch of `files`, batched 32 at a time (TensorFlow CPU),
    on 1 and 2 threads: the rows `scripts/bench/bench_musicnn.sh` compares with the Rust port's."""
    import time
    batch = np.concatenate([patches(log_mel(librosa.load(f, sr=config.SR)[0])) for f in files])
    rows = []
    for m in MODELS:
        for threads in (1, 2):
            net = Net(m, threads)
            net(batch[:2])  # warm-up
            t = time.perf_counter()
            for i in range(0, len(batch), 32):
                net(batch[i:i + 32])
            s = time.perf_counter() - t
            rows.append({"tool": f"musicnn {tf.__version__} (TensorFlow CPU, batch 32)", "model": m, "threads": threads,
                         "patches": len(batch), "seconds": round(s, 3), "ms_per_patch": round(s * 1000 / len(batch), 2),
                         "x_realtime": round(len(batch) * N_FRAMES * config.FFT_HOP / config.SR / s, 1)})
    print(json.dumps(rows))


if __name__ == "__main__":
    if sys.argv[1] == "fixtures":
        fixtures()
    elif sys.argv[1] == "speed":
        speed(sys.argv[2:])
    elif sys.argv[1] == "tags":
        tags(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
