#!/usr/bin/env python3
"""Adds the folk-styles renderings to a debian-music corpus, as training material.

    python3 datasets/debian-music/add_folk.py CORPUS FOLK [--max-per-style N] [--seed S]
                                           # FOLK = what datasets/folk-styles/build.sh made

Run after build.py and before tag.py (tag.py then tags the new previews too; the rows it already tagged are
kept). Every preview listed in FOLK/tracks.csv is copied (hard-linked when it can be) to
CORPUS/previews/folk-styles/<style>/<piece>.mp3 and gets a row in CORPUS/tracks.csv:
  production  `folk-styles/<style>`: the style is ground truth (the tune's own rhythm field, or the collection:
              Bach chorale, Palestrina), so the production head learns it like a production
  kind        `midi:folk-styles` (MIDI rendered through FluidR3_GM, one drawn instrument per piece)
  variant     0; work = the piece; title from the manifest; licence: the music is out of copyright, the
              encodings ship with music21 (see datasets/folk-styles/README.md)
These productions are training material only: scripts/eval/lpo_eval.py never deals them into a fold, queries them or
counts them as candidates, so the yardstick stays "productions of Debian's archive".
--max-per-style N keeps N pieces of each style (a seeded draw; the default keeps all): the whole set (2,127 pieces
of 30 s) would otherwise outnumber the corpus' own 1,127 previews two to one.
Idempotent: earlier folk-styles rows are replaced, the corpus' own rows are kept in order. A listed preview that
is missing or empty is reported in CORPUS/failed.csv (production `folk-styles`) and left out.
"""
import argparse, csv, os, random, shutil

PREFIX = "folk-styles/"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("folk")
    ap.add_argument("--max-per-style", type=int, default=0, help="pieces kept per style (0 = all)")
    ap.add_argument("--seed", type=int, default=2017)
    a = ap.parse_args()
    corpus, folk = os.path.abspath(a.corpus), os.path.abspath(a.folk)
    tracks = os.path.join(corpus, "tracks.csv")
    rows = [r for r in csv.DictReader(open(tracks)) if not r["production"].startswith(PREFIX)]
    cols = list(rows[0].keys()) if rows else ["id", "file", "production", "kind", "variant", "work", "title", "artist",
                                               "track_duration_s", "preview_start_s", "preview_duration_s", "licence", "source_file"]
    failed_path = os.path.join(corpus, "failed.csv")
    fails = [r for r in csv.reader(open(failed_path))][1:] if os.path.exists(failed_path) else []
    fails = [r for r in fails if r and r[0] != "folk-styles"]
    added = 0
    listed = []
    for r in csv.DictReader(open(os.path.join(folk, "tracks.csv"))):
        src = os.path.join(folk, r["id"])
        if os.path.isfile(src) and os.path.getsize(src) > 0:
            listed.append(r)
        else:
            fails.append(["folk-styles", r["id"], "missing or empty preview in " + folk])
    if a.max_per_style > 0:
        by_style = {}
        for r in listed:
            by_style.setdefault(os.path.dirname(r["id"]), []).append(r)
        rng = random.Random(a.seed)
        keep = {id(r) for rs in by_style.values() for r in (rs if len(rs) <= a.max_per_style else rng.sample(rs, a.max_per_style))}
        listed = [r for r in listed if id(r) in keep]
    for r in listed:
        src = os.path.join(folk, r["id"])
        style_dir = os.path.dirname(r["id"])
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
    # The folder holds exactly the rows kept: a preview left over from an earlier, larger draw would still be
    # scanned as part of the library (with its folder as its label).
    kept = {os.path.join(corpus, r["file"]) for r in rows if r["production"].startswith(PREFIX)}
    for dirpath, _, names in os.walk(os.path.join(corpus, "previews", PREFIX.rstrip("/"))):
        for n in names:
            if os.path.join(dirpath, n) not in kept:
                os.remove(os.path.join(dirpath, n))
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
