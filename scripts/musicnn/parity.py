#!/usr/bin/env python3
"""soundalike's musicnn tags against the Python package's on the same songs and the same samples.

    python3 scripts/musicnn/parity.py [--n 60] [--dir ../shared/datasets/soundtracks/previews] \
        [--py /tmp/tfenv/bin/python] [--bin target/debug/soundalike] [--out target/musicnn_parity.json]

Each song is resampled once to 16 kHz mono float WAV (librosa, soxr_hq: what the package itself would
do), so both sides read identical samples; then `soundalike tags --json --patches all` and
`scripts/musicnn/reference.py tags` (the package's TensorFlow graph, every non-overlapping patch, the mean
taggram) tag the same files. Reports the mean |d probability| over all 100 tags and songs, the worst song,
and the share of songs whose top-5 tags agree (per model, as sets, and both models at once).
"""
import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--dir", default=str(ROOT.parent / "shared/datasets/soundtracks/previews"))
    ap.add_argument("--py", default="/tmp/tfenv/bin/python")
    ap.add_argument("--bin", default=str(ROOT / "target/debug/soundalike"))
    ap.add_argument("--out", default=str(ROOT / "target/musicnn_parity.json"))
    a = ap.parse_args()
    files = sorted(Path(a.dir).rglob("*.mp3"))
    step = max(1, len(files) // a.n)
    files = files[::step][: a.n]
    tmp = Path(tempfile.mkdtemp())
    wavs = []
    for i, f in enumerate(files):
        y, _ = librosa.load(f, sr=16000)
        w = tmp / f"{i:03d}.wav"
        sf.write(w, y, 16000, subtype="FLOAT")
        wavs.append(str(w))
    ours = {}
    out = subprocess.run([a.bin, "tags", "--json", "--patches", "all", *wavs], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        j = json.loads(line)
        ours[j["file"]] = j
    ref_json = tmp / "ref.json"
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([a.py, str(ROOT / "scripts/musicnn/reference.py"), "tags", str(ref_json), *wavs], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ref = json.loads(ref_json.read_text())
    rows, agree_both, agree = [], 0, {"MSD_musicnn": 0, "MTT_musicnn": 0}
    for w in wavs:
        if w not in ours:
            continue
        d_all = []
        both = True
        for model, key in (("MSD_musicnn", "msd"), ("MTT_musicnn", "mtt")):
            names = list(ref[w][model])  # the network's order
            mine = np.array([ours[w][key][t] for t in names])
            theirs = np.array([ref[w][model][t] for t in names])
            d_all.extend(np.abs(mine - theirs))
            same = set(np.argsort(-mine)[:5]) == set(np.argsort(-theirs)[:5])
            agree[model] += same
            both &= same
        agree_both += both
        rows.append({"file": w, "mean_abs_diff": float(np.mean(d_all)), "max_abs_diff": float(np.max(d_all))})
    n = len(rows)
    result = {
        "songs": n, "source": a.dir, "resampled": "librosa 16 kHz (soxr_hq), float WAV, read by both",
        "mean_abs_diff": float(np.mean([r["mean_abs_diff"] for r in rows])),
        "worst_song_mean_abs_diff": max(r["mean_abs_diff"] for r in rows),
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
        "top5_same_msd": agree["MSD_musicnn"] / n, "top5_same_mtt": agree["MTT_musicnn"] / n, "top5_same_both": agree_both / n,
        "note": "probabilities stored to 4 decimals by soundalike",
    }
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
