#!/usr/bin/env python3
"""Writes the musicnn song vectors soundalike's own tagger computes, as `train --context-musicnn` reads them.

    python3 scripts/eval/musicnn_vectors.py LIBRARY OUT.csv [--models msd|both] [--bin target/release/soundalike]

Runs `soundalike tags --json --penultimate` (the patches `embed` tags: one per 7.5 s, at most 6) on every
audio file under LIBRARY and writes `id,p0..p199`: the id is the file's path under LIBRARY without its
extension (as `train` matches ids), the values MSD_musicnn's penultimate layer averaged over the patches;
with `--models both`, MTT_musicnn's 200 follow (`p200..p399`).
Files the tagger cannot read are listed on stderr and left out. No Python packages needed.
"""
import argparse
import json
import os
import subprocess
import sys

AUDIO = (".mp3", ".ogg", ".flac", ".wav", ".m4a", ".aac", ".opus")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("library")
    ap.add_argument("out")
    ap.add_argument("--bin", default="target/release/soundalike")
    ap.add_argument("--chunk", type=int, default=200, help="files per soundalike call")
    ap.add_argument("--models", choices=("msd", "both"), default="msd")
    a = ap.parse_args()
    root = os.path.abspath(a.library)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.lower().endswith(AUDIO))
    if not files:
        sys.exit(f"{a.library}: no audio files")
    rows = {}
    for i in range(0, len(files), a.chunk):
        part = files[i:i + a.chunk]
        # Exit 1 = some files could not be tagged (named on stderr); the others are printed.
        p = subprocess.run([a.bin, "tags", "--json", "--penultimate", *part], stdout=subprocess.PIPE, text=True)
        if p.returncode not in (0, 1):
            sys.exit(f"{a.bin} tags failed with exit code {p.returncode}")
        for line in p.stdout.splitlines():
            j = json.loads(line)
            rel = os.path.relpath(os.path.abspath(j["file"]), root)
            rows[os.path.splitext(rel)[0]] = j["msd_penultimate"] + (j["mtt_penultimate"] if a.models == "both" else [])
        print(f"{min(i + a.chunk, len(files))}/{len(files)} files", file=sys.stderr)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        dim = len(next(iter(rows.values())))
        f.write("id," + ",".join(f"p{k}" for k in range(dim)) + "\n")
        for k in sorted(rows):
            f.write(k + "," + ",".join(f"{v:.6g}" for v in rows[k]) + "\n")
    os.replace(tmp, a.out)
    print(f"{len(rows)} of {len(files)} files -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
