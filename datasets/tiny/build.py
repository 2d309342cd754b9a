#!/usr/bin/env python3
"""Rebuild the `tiny` set: 30 real 15-second clips, 3 per soundtrack, cut (stream copy, no re-encode) from the
`soundtracks` previews. Picks are deterministic: within each soundtrack, tracks sorted by id, preferring
different teacher genres first.

Usage: python3 datasets/tiny/build.py [PREVIEWS_ROOT]
PREVIEWS_ROOT defaults to ../shared/datasets/soundtracks (if present) else datasets/soundtracks/build
(what datasets/soundtracks/build.sh makes). Needs ffmpeg (build time only).
"""
import csv, os, shutil, subprocess, sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
START_S, LEN_S, PER_SOURCE = 20, 15, 3
# Previews that are not usable music (soundalike refuses them, correctly, but the demo set should not).
EXCLUDE = {"widelands-data/coyote_00": "the preview is digital silence"}


def main():
    cand = [sys.argv[1]] if len(sys.argv) > 1 else [
        os.path.join(ROOT, "..", "shared", "datasets", "soundtracks"),
        os.path.join(ROOT, "datasets", "soundtracks", "build")]
    src_root = next((c for c in cand if os.path.exists(os.path.join(c, "tracks.csv"))), None)
    if src_root is None:
        sys.exit("no soundtracks previews found; run datasets/soundtracks/build.sh first")
    rows = list(csv.DictReader(open(os.path.join(src_root, "tracks.csv"))))
    by_src = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["id"]):
        if r["id"] in EXCLUDE:
            continue
        by_src[r["source"]].append(r)
    picked = []
    for src, rs in sorted(by_src.items()):
        seen, chosen = set(), []
        for r in rs:  # first pass: one per teacher genre
            if r["teacher_genre"] not in seen and len(chosen) < PER_SOURCE:
                seen.add(r["teacher_genre"]); chosen.append(r)
        for r in rs:
            if r not in chosen and len(chosen) < PER_SOURCE:
                chosen.append(r)
        picked += chosen
    out_rows = []
    for r in picked:
        name = r["id"].split("/", 1)[1]
        rel = f"{r['source']}/{name}.mp3"
        dst = os.path.join(HERE, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(START_S), "-t", str(LEN_S), "-i",
                        os.path.join(src_root, r["file"]), "-c", "copy", "-map_metadata", "-1", dst], check=True)
        out_rows.append({"id": r["id"], "file": rel, "source": r["source"], "title": r["title"],
                         "artist": r["artist"], "teacher_genre": r["teacher_genre"],
                         "teacher_margin": r["teacher_margin"],
                         "clip_start_in_preview_s": START_S, "clip_duration_s": LEN_S})
    with open(os.path.join(HERE, "tracks.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out_rows[0].keys()))
        w.writeheader(); w.writerows(out_rows)
    lic = os.path.join(HERE, "licenses")
    os.makedirs(lic, exist_ok=True)
    for src in by_src:
        p = os.path.join(src_root, "licenses", f"{src}.copyright")
        if os.path.exists(p):
            shutil.copy(p, lic)
    print(f"wrote {len(out_rows)} clips to {HERE}")


if __name__ == "__main__":
    main()
