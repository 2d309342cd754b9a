#!/usr/bin/env bash
# Rebuilds the `soundtracks` set (248 one-minute previews of real game music) from Debian's packages.
#
#   bash datasets/soundtracks/build.sh [OUT]        # default OUT: datasets/soundtracks/build
#   PKGS="asc-music" bash datasets/soundtracks/build.sh /tmp/st   # only some soundtracks (1.8 GB in all)
#   FORCE=1 ...                                     # download even where a local copy exists
#
# Needs apt-get (Debian/Ubuntu), unzip and ffmpeg (build time only). If ../shared/datasets/soundtracks exists
# (the copy on the project's machines), it is used instead and nothing is downloaded.
# Checked on asc-music: the rebuilt previews have the same length as the shared copies but are not
# bit-identical (about 46 ms later start and lossy re-encoding: 0.9 dB mean log-mel difference once aligned).
# tracks.csv here is the manifest: which track, where the preview starts, and its labels (`source` is ground
# truth; `teacher_genre` is the musicnn tagger's guess).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/build}"
shared="$here/../../../shared/datasets/soundtracks"
if [ -f "$shared/tracks.csv" ] && [ -z "${FORCE:-}" ]; then
  echo "using the existing copy in $shared"
  mkdir -p "$out" && cp -r "$shared/previews" "$shared/licenses" "$shared/tracks.csv" "$shared/teacher_tags.csv" "$out/"
  exit 0
fi
pkgs="${PKGS:-asc-music frozen-bubble-data hedgewars-data nexuiz-music planetblupi-music-ogg supertuxkart-data ufoai-music warzone2100-music wesnoth-1.16-music widelands-data}"
work="$(mktemp -d)"
mkdir -p "$out/previews" "$out/licenses"
cp "$here/tracks.csv" "$here/teacher_tags.csv" "$out/"
( cd "$work" && apt-get download $pkgs )
for p in $pkgs; do
  mkdir -p "$work/x/$p"
  dpkg-deb -x "$work"/${p}_*.deb "$work/x/$p"
  cp "$work/x/$p/usr/share/doc/$p/copyright" "$out/licenses/$p.copyright" 2>/dev/null || true
  # nexuiz and ufoai keep their music inside .pk3 (zip) archives.
  find "$work/x/$p" -name '*.pk3' -exec unzip -q -o -d "$work/x/$p/pk3" {} \; 2>/dev/null || true
done
# For each manifest row, find the track by name and cut its preview (warzone2100's Opus is transcoded too).
python3 - "$work/x" "$out" <<'PY'
import csv, os, subprocess, sys
root, out = sys.argv[1], sys.argv[2]
index = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        stem, ext = os.path.splitext(f)
        if ext.lower() in (".ogg", ".opus", ".mp3", ".flac", ".wav"):
            src = os.path.relpath(dp, root).split(os.sep)[0]
            index.setdefault((src, stem), os.path.join(dp, f))
sources = set(os.listdir(root))
for r in csv.DictReader(open(os.path.join(out, "tracks.csv"))):
    if r["source"] not in sources:
        continue
    name = r["id"].split("/", 1)[1]
    src_file = index.get((r["source"], name))
    if not src_file:
        print("missing", r["id"]); continue
    dst = os.path.join(out, r["file"])
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", r["preview_start_s"], "-t", r["preview_duration_s"], "-i", src_file,
                    "-ac", "1", "-ar", "22050", "-b:a", "64k", dst], check=True)
PY
echo "previews in $out/previews"
