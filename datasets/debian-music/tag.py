#!/usr/bin/env python3
"""Runs the pretrained musicnn taggers (MSD and MTT models) over every preview of a corpus.

    python3 datasets/debian-music/tag.py CORPUS            # CORPUS = the folder build.py made (tracks.csv)

Writes, atomically and resumably (rows already present are kept):
  CORPUS/teacher_tags.csv          id + 100 tag probabilities (sigmoid), mean over the preview's 3-s patches:
                                   the 50 Million Song Dataset tags (`msd:` columns) and the 50 MagnaTagATune tags
                                   (`mtt:` columns: these name classical, strings, choir... that MSD lacks)
  CORPUS/musicnn_penultimate.csv   id + the MSD model's 200-d penultimate layer, mean over the same patches
                                   (the pretrained peer in the yardstick, scripts/eval/lpo_eval.py)
  CORPUS/musicnn_mtt_penultimate.csv  the same of the MagnaTagATune model (instruments, voices, textures)
  CORPUS/musicnn_patches.csv       id, start_s, end_s + the MSD model's 200-d penultimate of each 3-s patch (one row
                                   a patch: what `soundalike train --teacher-patches` distils crop by crop)
  CORPUS/musicnn_mtt_patches.csv   the same of the MagnaTagATune model
  CORPUS/labels.csv                tracks.csv plus `genre` and `genre_margin`: a listener's genre bucket from the
                                   tags (GENRES below; the bucket whose strongest tag is strongest), a GUESS
These are a pretrained tagger's GUESSES, not ground truth: every report that uses them must say so.

    python3 datasets/debian-music/tag.py CORPUS --soundalike target/release/soundalike [--patches all|embed]

runs soundalike's own port of the same two taggers instead (`soundalike tags --json --penultimate`; no Python
packages, no TensorFlow): the same files but the per-patch ones, which it leaves empty (`--teacher-patches` needs
the package). It agrees with the package to 2.5e-5 per tag on 16-kHz audio (docs/results.md, "Tags"), but
resamples the 22.05-kHz previews with rubato rather than soxr (about 0.99 cosine on the penultimate layer), so
its files are close to the package's, not equal. With `--patches embed` (the patches `embed` tags, at most 6
a song) it is several times faster, and its penultimate layers joined are what `--context-musicnn` reads:
it also writes CORPUS/musicnn_rust_both.csv (as scripts/eval/musicnn_vectors.py --models both does).

Needs a Python environment with musicnn (build time only; nothing here runs at soundalike's run time):
    python3 -m venv venv && venv/bin/pip install tensorflow-cpu tf-keras librosa && venv/bin/pip install --no-deps musicnn
The graph is built once and every patch of a file goes through in one batch (musicnn's own extractor() rebuilds
the graph per file and, with its default batch size, repeats the first patch's features).
A file the tagger fails on is reported in CORPUS/tag_failed.csv and left out; the rest goes on.
"""
import csv, json, os, subprocess, sys

if "--soundalike" not in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # musicnn uses tf.layers (Keras 2, from tf-keras)
    import numpy as np  # noqa: E402
    import librosa  # noqa: E402
    import tensorflow as tf  # noqa: E402
    from musicnn import configuration as config, models  # noqa: E402

    MODELS = (("msd", "MSD_musicnn", config.MSD_LABELS), ("mtt", "MTT_musicnn", config.MTT_LABELS))
# Listener genres from tags: a bucket's score is its strongest tag's probability.
GENRES = {
    "classical": ["mtt:classical", "mtt:classic", "mtt:strings", "mtt:violin", "mtt:cello", "mtt:harpsichord", "mtt:opera",
                  "mtt:choir", "mtt:choral", "mtt:harp", "mtt:flute"],
    "electronic": ["msd:electronic", "msd:electronica", "msd:electro", "msd:dance", "msd:House", "mtt:techno", "mtt:electronic",
                   "mtt:synth", "mtt:dance", "mtt:beats"],
    "ambient": ["msd:ambient", "msd:chillout", "msd:chill", "msd:Mellow", "mtt:ambient", "mtt:new age"],
    "rock_metal": ["msd:rock", "msd:alternative", "msd:alternative rock", "msd:classic rock", "msd:indie rock", "msd:hard rock",
                   "msd:punk", "msd:Progressive rock", "msd:metal", "msd:heavy metal", "mtt:rock", "mtt:metal"],
    "pop": ["msd:pop", "msd:indie pop", "msd:catchy", "mtt:pop"],
    "jazz_blues": ["msd:jazz", "msd:blues", "msd:soul", "msd:funk"],
    "folk_country": ["msd:folk", "msd:country", "mtt:country"],
    "hiphop_rnb": ["msd:Hip-Hop", "msd:rnb"],
    "world": ["mtt:indian", "mtt:sitar"],
}


def genre_of(tags):
    scores = sorted(((max(tags[t] for t in ts), g) for g, ts in GENRES.items()), reverse=True)
    return scores[0][1], scores[0][0] - scores[1][0]


def logmel(path):
    audio, sr = librosa.load(path, sr=config.SR)
    rep = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS).T
    return np.log10(10000 * rep.astype(np.float32) + 1)


def write_csv(path, header, rows):
    """id + header, then rows, written atomically (a temporary file renamed over the old one)."""
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id"] + list(header))
        w.writerows(rows)
    os.replace(path + ".tmp", path)


def write_labels(corpus, rows, done, tag_names, failed):
    """tag_failed.csv, and labels.csv: tracks.csv's rows that were tagged, plus their genre bucket and margin."""
    with open(os.path.join(corpus, "tag_failed.csv"), "w", newline="") as f:
        csv.writer(f).writerows([("id", "reason")] + failed)
    with open(os.path.join(corpus, "labels.csv.tmp"), "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0].keys()) + ["genre", "genre_margin"])
        w.writeheader()
        for r in rows:
            if r["id"] in done:
                g, m = genre_of(dict(zip(tag_names, map(float, done[r["id"]][0]))))
                w.writerow({**r, "genre": g, "genre_margin": f"{m:.4f}"})
    os.replace(os.path.join(corpus, "labels.csv.tmp"), os.path.join(corpus, "labels.csv"))


def main_soundalike(corpus, binary, patches):
    """The same files from soundalike's port of the taggers (see the module's docstring)."""
    rows = list(csv.DictReader(open(os.path.join(corpus, "tracks.csv"))))
    done, failed, tag_names = {}, [], None
    for i in range(0, len(rows), 100):
        part = rows[i:i + 100]
        by_file = {os.path.abspath(os.path.join(corpus, r["file"])): r["id"] for r in part}
        # Exit 1 = some files could not be tagged (named on stderr); the others are printed.
        p = subprocess.run([binary, "tags", "--json", "--penultimate", "--patches", patches, *by_file], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode not in (0, 1):
            sys.exit(f"{binary} tags failed with exit code {p.returncode}: {p.stderr[-500:]}")
        for line in p.stdout.splitlines():
            j = json.loads(line)
            names = [f"msd:{t}" for t in j["msd"]] + [f"mtt:{t}" for t in j["mtt"]]
            tag_names = tag_names or names
            if names != tag_names:
                sys.exit(f"{j['file']}: the tagger's tags changed order")
            done[by_file.pop(os.path.abspath(j["file"]))] = (
                [f"{v:.5f}" for v in list(j["msd"].values()) + list(j["mtt"].values())],
                [f"{v:.5f}" for v in j["msd_penultimate"]], [f"{v:.5f}" for v in j["mtt_penultimate"]])
        failed += [(x, "soundalike tags could not read it (see its message)") for x in by_file.values()]
        print(f"{min(i + 100, len(rows))}/{len(rows)}", flush=True)
    if not done:
        sys.exit("no preview could be tagged")
    pen_names = [f"p{i}" for i in range(200)]
    outputs = [("teacher_tags.csv", tag_names, lambda v: v[0]), ("musicnn_penultimate.csv", pen_names, lambda v: v[1]),
               ("musicnn_mtt_penultimate.csv", pen_names, lambda v: v[2]),
               ("musicnn_patches.csv", ["start_s", "end_s"] + pen_names, None),
               ("musicnn_mtt_patches.csv", ["start_s", "end_s"] + pen_names, None)]
    if patches == "embed":
        outputs.append(("musicnn_rust_both.csv", [f"p{i}" for i in range(400)], lambda v: v[1] + v[2]))
    for name, header, pick in outputs:
        write_csv(os.path.join(corpus, name), header, ([k] + pick(v) for k, v in done.items()) if pick else [])
    write_labels(corpus, rows, done, tag_names, failed)
    print(f"tagged {len(done)} of {len(rows)} previews with {binary} (patches: {patches}); {len(failed)} failed (tag_failed.csv)")


def main():
    if "--soundalike" in sys.argv:
        a = sys.argv[1:]
        binary = a[a.index("--soundalike") + 1]
        patches = a[a.index("--patches") + 1] if "--patches" in a else "all"
        return main_soundalike(a[0], binary, patches)
    corpus = sys.argv[1]
    rows = list(csv.DictReader(open(os.path.join(corpus, "tracks.csv"))))
    tag_path, pen_path = os.path.join(corpus, "teacher_tags.csv"), os.path.join(corpus, "musicnn_penultimate.csv")
    mtt_path = os.path.join(corpus, "musicnn_mtt_penultimate.csv")
    patch_paths = [os.path.join(corpus, f) for f in ("musicnn_patches.csv", "musicnn_mtt_patches.csv")]
    done = {}  # id -> (tags, MSD mean, MTT mean, MSD patch rows, MTT patch rows)
    if all(os.path.exists(p) for p in (tag_path, pen_path, mtt_path, *patch_paths)):
        pens = {r[0]: r[1:] for r in list(csv.reader(open(pen_path)))[1:]}
        mtts = {r[0]: r[1:] for r in list(csv.reader(open(mtt_path)))[1:]}
        patches = []
        for path in patch_paths:
            by_id = {}
            for r in list(csv.reader(open(path)))[1:]:
                by_id.setdefault(r[0], []).append(r[1:])
            patches.append(by_id)
        for r in list(csv.reader(open(tag_path)))[1:]:
            if r[0] in pens and r[0] in mtts and all(r[0] in p for p in patches):
                done[r[0]] = (r[1:], pens[r[0]], mtts[r[0]], patches[0][r[0]], patches[1][r[0]])
    n_frames = librosa.time_to_frames(3, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP) + 1
    tf.compat.v1.disable_eager_execution()
    nets = []
    for prefix, name, labels in MODELS:
        g = tf.Graph()
        with g.as_default():
            with tf.name_scope("model"):
                x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
                is_training = tf.compat.v1.placeholder(tf.bool)
                y, *_, penultimate = models.define_model(x, is_training, name, len(labels))
                prob = tf.nn.sigmoid(y)
            sess = tf.compat.v1.Session(graph=g)
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().restore(sess, os.path.join(os.path.dirname(models.__file__), name) + "/")
        nets.append((sess, x, is_training, prob, penultimate))
    tag_names = [f"{p}:{t}" for p, _, labels in MODELS for t in labels]
    failed = []

    pen_names = [f"p{i}" for i in range(200)]

    def flush():
        for path, header, idx in ((tag_path, tag_names, 0), (pen_path, pen_names, 1), (mtt_path, pen_names, 2),
                                  (patch_paths[0], ["start_s", "end_s"] + pen_names, 3),
                                  (patch_paths[1], ["start_s", "end_s"] + pen_names, 4)):
            write_csv(path, header, ([k] + list(v[idx]) for k, v in done.items()) if idx < 3
                      else ([k] + list(row) for k, v in done.items() for row in v[idx]))

    for i, r in enumerate(rows):
        if r["id"] in done:
            continue
        try:
            rep = logmel(os.path.join(corpus, r["file"]))
            starts = range(0, rep.shape[0] - n_frames + 1, n_frames)
            batch = np.stack([rep[s:s + n_frames] for s in starts])
            if len(batch) == 0:
                raise ValueError("shorter than one 3-s patch")
            # Patch k covers frames [k n, (k + 1) n) of musicnn's spectrogram (hop 256 at 16 kHz).
            spans = [(s * config.FFT_HOP / config.SR, (s + n_frames) * config.FFT_HOP / config.SR) for s in starts]
            probs, pens, per_patch = [], [], []
            for sess, x, is_training, prob, penultimate in nets:
                p, q = sess.run([prob, penultimate], feed_dict={x: batch, is_training: False})
                probs += [f"{v:.5f}" for v in p.mean(0)]
                pens.append([f"{v:.5f}" for v in q.mean(0)])
                per_patch.append([[f"{a:.3f}", f"{b:.3f}"] + [f"{v:.4f}" for v in row] for (a, b), row in zip(spans, q)])
            done[r["id"]] = (probs, pens[0], pens[1], per_patch[0], per_patch[1])
        except Exception as e:  # noqa: BLE001 - reported, never fatal
            failed.append((r["id"], str(e)[:200]))
        if (i + 1) % 50 == 0:
            flush()
            print(f"{i + 1}/{len(rows)}", flush=True)
    flush()
    write_labels(corpus, rows, done, tag_names, failed)
    print(f"tagged {len(done)} of {len(rows)} previews; {len(failed)} failed (tag_failed.csv)")


if __name__ == "__main__":
    main()
