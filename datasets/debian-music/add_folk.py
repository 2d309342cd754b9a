#!/usr/bin/env python3
"""Adds the folk-styles renderings to a debian-music corpus, as training material.

    python3 datasets/debian-music/add_folk.py CORPUS FOLK      # FOLK = what datasets/folk-styles/build.sh made

Run after build.py and before tag.py (tag.py then tags the new previews too; the rows it already tagged are
kept). Every preview listed in FOLK/tracks.csv is copied (hard-linked when it can be) to
CORPUS/previews/folk-styles/<style>/<piece>.mp3 and gets a row in CORPUS/tracks.csv:
  production  `folk-styles/<style>`: the style is ground truth (the tune's own rhythm field, or the collection:
              Bach chorale, Palestrina), so the production head learns it like a production
  kind        `midi:folk-styles` (MIDI rendered through FluidR3_GM, one drawn instrument per piece)
  variant     0; work = the piece; title from the manifest; licence: the music is out of copyright, the
              encodings ship with music21 (see datasets/folk-styles/README.md)
These productions are training material only: scripts/lpo_eval.py never deals them into a fold, queries them or
counts them as candidates, so the yardstick stays "productions of Debian's archive".
Idempotent: earlier folk-styles rows are replaced, the corpus' own rows are kept in order. A listed preview that
is missing or empty is reported in CORPUS/failed.csv (production `folk-styles`) and left out.
"""
import csv, os, shutil, sys

PREFIX = "folk-styles/"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    corpus, folk = (os.path.abspath(p) for p in sys.argv[1:])
    tracks = os.path.join(corpus, "tracks.csv")
    rows = [r for r in csv.DictReader(open(tracks)) if not r["production"].startswith(PREFIX)]
    cols = list(rows[0].keys()) if rows else ["id", "file", "production", "kind", "variant", "work", "title", "artist",
                                               "track_duration_s", "preview_start_s", "preview_duration_s", "licence", "source_file"]
    failed_path = os.path.join(corpus, "failed.csv")
    fails = [r for r in csv.reader(open(failed_path))][1:] if os.path.exists(failed_path) else []
    fails = [r for r in fails if r and r[0] != "folk-styles"]
    added = 0
    for r in csv.DictReader(open(os.path.join(folk, "tracks.csv"))):
        src = os.path.join(folk, r["id"])
        style_dir, name = os.path.split(r["id"])
        if not os.path.isfile(src) or os.path.getsize(src) == 0:
            fails.append(["folk-styles", r["id"], "missing or empty preview in " + folk])
            continue
        rel = f"previews/{PREFIX}{r['id']}"
        dst = os.path.join(corpus, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.exists(dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        rows.append({c: "" for c in cols} | {
            "id": f"{PREFIX}{os.path.splitext(r['id'])[0]}", "file": rel, "production": PREFIX + style_dir,
            "kind": "midi:folk-styles", "variant": "0", "work": r["source"], "title": r["title"],
            "licence": "public domain music; music21 corpus encodings (see datasets/folk-styles/README.md)",
            "source_file": r["source"]})
        added += 1
    with open(tracks + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    os.replace(tracks + ".tmp", tracks)
    with open(failed_path + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["production", "source_file", "reason"])
        w.writerows(fails)
    os.replace(failed_path + ".tmp", failed_path)
    print(f"added {added} folk-styles previews to {tracks}; {sum(1 for x in fails if x[0] == 'folk-styles')} left out (failed.csv)")


if __name__ == "__main__":
    main()
