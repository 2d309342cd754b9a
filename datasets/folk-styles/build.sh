#!/usr/bin/env bash
# Rebuilds the folk-styles previews from public sources: the music21 corpus (PyPI), abc2midi, FluidSynth
# and the FluidR3_GM soundfont (Debian), ffmpeg for the mp3s. About 2,300 pieces; 20-40 minutes on 2 cores.
#   bash datasets/folk-styles/build.sh [OUT=datasets/folk-styles/previews] [extra build.py flags]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/previews}"; shift || true
SUDO=""; if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
need=()
command -v abc2midi >/dev/null || need+=(abcmidi)
command -v fluidsynth >/dev/null || need+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"; fi
python3 -c "import music21, mido" 2>/dev/null || python3 -m pip install -q "music21==10.5.1" "mido>=1.3"
python3 "$here/build.py" --out "$out" "$@"
