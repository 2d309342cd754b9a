#!/usr/bin/env bash
# Front-end benchmark, everything pinned to one core, all in one run, side by side:
#   soundalike decode-only, soundalike decode+log-mel, librosa load, librosa load+melspectrogram+power_to_db
#   (both in one Python process), ffmpeg decoding every file in one process.
# Plus the same for a 44.1 kHz stereo copy of the files (resampling path).
#
#   bash scripts/bench/bench_frontend.sh [PREVIEWS_DIR] [OUT.json]
# Needs: python3 with librosa + soundfile (pip install librosa soundfile), ffmpeg, taskset.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-../shared/datasets/soundtracks/previews}"
out="${2:-target/bench_frontend.json}"
mapfile -t files < <(find "$dir" -name '*.mp3' | sort)
echo "${#files[@]} files from $dir" >&2
cargo build --release -q -p soundalike-audio --example bench_frontend
bin=target/release/examples/bench_frontend
pin="taskset -c 0"
tmp44="$(mktemp -d)"
# 44.1 kHz stereo copies (first 40 files) for the resampling case.
for f in "${files[@]:0:40}"; do ffmpeg -v error -y -i "$f" -ar 44100 -ac 2 -b:a 192k "$tmp44/$(basename "$(dirname "$f")")_$(basename "$f")"; done
mapfile -t files44 < <(find "$tmp44" -name '*.mp3' | sort)

librosa_py='
import json, sys, time, librosa, numpy as np
mode, files = sys.argv[1], sys.argv[2:]
t = time.perf_counter(); secs = 0.0
for f in files:
    y, sr = librosa.load(f, sr=22050, mono=True)
    secs += len(y) / 22050
    if mode == "mel":
        S = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=512, n_mels=128)
        librosa.power_to_db(S, ref=1.0, top_db=80.0)
w = time.perf_counter() - t
print(json.dumps({"tool": "librosa " + ("load+mel" if mode == "mel" else "load"), "files": len(files), "audio_seconds": round(secs, 1), "wall_seconds": round(w, 3), "x_realtime": round(secs / w, 1)}))
'
ffmpeg_all() {  # one ffmpeg process decoding every input to 22.05 kHz mono f32, discarded
  local args=() maps=() i=0
  for f in "$@"; do args+=(-i "$f"); maps+=(-map "$i:a" -ac 1 -ar 22050 -f f32le -y /dev/null); i=$((i+1)); done
  local t0 t1; t0=$(date +%s.%N); $pin ffmpeg -v error "${args[@]}" "${maps[@]}"; t1=$(date +%s.%N)
  python3 -c "import json,sys; w=$t1-$t0; s=float(sys.argv[1]); print(json.dumps({'tool':'ffmpeg one process','files':$#,'audio_seconds':s,'wall_seconds':round(w,3),'x_realtime':round(s/w,1)}))" "$SECS"
}
run_set() {  # label, files...
  local label="$1"; shift
  local a b c d
  a=$($pin "$bin" decode "$@"); b=$($pin "$bin" mel "$@")
  c=$($pin python3 -c "$librosa_py" load "$@"); d=$($pin python3 -c "$librosa_py" mel "$@")
  SECS=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['audio_seconds'])" "$a")
  e=$(ffmpeg_all "$@")
  printf '{"set": "%s", "results": [%s, %s, %s, %s, %s]}' "$label" "$a" "$b" "$c" "$d" "$e"
}
r1=$(run_set "22.05 kHz mono previews" "${files[@]}")
r2=$(run_set "44.1 kHz stereo copies (resampled)" "${files44[@]}")
mkdir -p "$(dirname "$out")"
python3 - "$out" "$r1" "$r2" <<'PY'
import json, sys, platform
sets = [json.loads(s) for s in sys.argv[2:]]
doc = {"machine": platform.processor() or platform.machine(), "pinned_cores": 1, "sets": sets}
json.dump(doc, open(sys.argv[1], "w"), indent=1)
for s in sets:
    print(f"\n{s['set']}")
    print(f"{'tool':<28} {'files':>5} {'audio s':>9} {'wall s':>8} {'x realtime':>10}")
    for r in s["results"]:
        print(f"{r['tool']:<28} {r['files']:>5} {r['audio_seconds']:>9} {r['wall_seconds']:>8} {r['x_realtime']:>10}")
PY
rm -rf "$tmp44"
