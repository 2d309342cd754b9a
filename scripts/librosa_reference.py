#!/usr/bin/env python3
"""Produce the librosa golden files the front-end tests compare against (run once; outputs are committed).

    pip install librosa==0.11.0 soundfile numpy
    python3 scripts/librosa_reference.py

Inputs are 16-bit PCM WAVs (tests/data/ref_*.wav, made by scripts/make_fixtures.sh) so both sides start
from identical samples. For the 44.1 kHz stereo clip librosa resamples with its default `soxr_hq`; soundalike
uses rubato's FFT resampler, so that comparison has its own, looser tolerance (see the test).
"""
import json, os
import numpy as np
import librosa

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "tests", "data")
OUT = os.path.join(DATA, "reference")
SR, N_FFT, HOP, N_MELS = 22050, 2048, 512, 128


def logmel(y):
    S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, power=2.0,
                                       center=True, pad_mode="constant", htk=False, norm="slaney")
    return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80.0).astype(np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "mel_basis_22050_2048_128.npy"),
            librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, htk=False, norm="slaney").astype(np.float32))
    meta = {"librosa": librosa.__version__, "sr": SR, "n_fft": N_FFT, "hop_length": HOP, "n_mels": N_MELS,
            "clips": {}}
    for name in ["ref_a_22k", "ref_b_22k", "ref_c_44k_stereo"]:
        y, sr = librosa.load(os.path.join(DATA, name + ".wav"), sr=SR, mono=True)  # res_type soxr_hq
        m = logmel(y)
        np.save(os.path.join(OUT, f"{name}.logmel.npy"), m)
        meta["clips"][name] = {"samples": int(len(y)), "shape": list(m.shape), "max_db": float(m.max()),
                               "resampled": name.endswith("44k_stereo")}
    json.dump(meta, open(os.path.join(OUT, "reference.json"), "w"), indent=1)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
