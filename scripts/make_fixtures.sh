#!/usr/bin/env bash
# Rebuilds tests/data/: small real clips in the formats and damage classes the front end must handle.
# Everything is cut from the committed tiny set (see datasets/tiny/ATTRIBUTION.md). Needs ffmpeg and sox
# (fixture build time only; soundalike itself never calls them).
set -euo pipefail
cd "$(dirname "$0")/.."
src=datasets/tiny/hedgewars-data/$(ls datasets/tiny/hedgewars-data | head -n1)
src2=datasets/tiny/wesnoth-1.16-music/$(ls datasets/tiny/wesnoth-1.16-music | head -n1)
out=tests/data
mkdir -p "$out"
ff() { ffmpeg -v error -y "$@"; }
ff -i "$src" -t 0.5 -c:a libmp3lame -b:a 64k "$out/half_second.mp3"
ff -i "$src" -t 3 -ar 8000 -ac 1 -c:a libmp3lame -b:a 16k "$out/mpeg25_8k.mp3"
ff -i "$src2" -t 3 -ar 48000 -ac 2 -c:a libmp3lame -b:a 320k "$out/stereo_48k_320k.mp3"
ff -i "$src2" -t 3 -ar 44100 -ac 2 -c:a libmp3lame -q:a 2 "$out/vbr_44k.mp3"
ff -i "$src" -t 2 -ar 44100 -ac 1 -c:a pcm_s24le "$out/pcm24_44k.wav"
ff -i "$src" -t 1.2 -ar 96000 -ac 1 -c:a pcm_f32le "$out/float_96k.wav"
ff -i "$src2" -t 2 -ar 22050 -af "pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0" -c:a flac "$out/surround_5_1.flac"
ff -i "$src" -t 3 -ac 1 -c:a libvorbis -q:a 2 -f ogg "$out/ogg_named.mp3"
ff -f lavfi -i anullsrc=r=22050:cl=mono -t 3 -c:a libmp3lame -b:a 64k "$out/silence.mp3"
cp "$src" "$out/clip.mp3"
# Librosa reference inputs: 16-bit PCM so both sides start from identical samples.
ff -i "$src" -t 5 -ac 1 -ar 22050 -c:a pcm_s16le "$out/ref_a_22k.wav"
ff -i "$src2" -ss 4 -t 5 -ac 1 -ar 22050 -c:a pcm_s16le "$out/ref_b_22k.wav"
ff -i "$src2" -t 5 -ac 2 -ar 44100 -c:a pcm_s16le "$out/ref_c_44k_stereo.wav"
ls -la "$out"
# Tagged files for metadata tests (ID3v2 in mp3, Vorbis comments in ogg).
ff -i "$src" -t 2 -c:a libmp3lame -b:a 64k -id3v2_version 3 -metadata title="Tagged Title" -metadata artist="Tag Artist" -metadata album="Tag Album" -metadata genre="Chiptune" "$out/tagged.mp3"
ff -i "$src" -t 2 -c:a libvorbis -q:a 1 -metadata title="Vorbis Title" -metadata artist="Vorbis Artist" -metadata genre="Ambient" "$out/tagged.ogg"
