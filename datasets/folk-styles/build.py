#!/usr/bin/env python3
"""Render the `folk-styles` data set: 30-s mp3 previews of pieces from the music21 corpus, labelled by style.

Styles (ground truth, from the source collections): reel, jig, hornpipe, slip jig, strathspey (the tunes'
own `R:` rhythm field in O'Neill's "Music of Ireland" (1850 tunes, 1903) and Ryan's Mammoth Collection
(1883), both in music21's corpus), Bach chorale (music21's `bach` chorales) and Palestrina (mass movements,
music21's `palestrina` Humdrum files).

Rendering: ABC -> MIDI with abc2midi (repeats expanded); MusicXML/Humdrum -> MIDI with music21; then every
piece gets ONE General MIDI program and ONE tempo factor, both drawn from the same distributions for every
style (so a model cannot learn "violin = reel"); FluidSynth renders it with Debian's FluidR3_GM soundfont;
ffmpeg trims leading silence, keeps the first 30 s, mono, 22,050 Hz, 96 kb/s mp3. Each piece is rendered
once: tunes that appear in both folk collections (same style and title) are kept once.

Deterministic for a seed: the same pieces, programs and tempos (the audio bytes may differ across
FluidSynth/ffmpeg versions). Writes OUT/<style>/<slug>.mp3 and OUT/tracks.csv.

    python3 build.py --out previews [--per-class 400] [--seed 2017] [--jobs 2]
"""
import argparse, csv, hashlib, os, random, re, shutil, subprocess, sys, tempfile, unicodedata
from concurrent.futures import ProcessPoolExecutor

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# General MIDI programs every style draws from (melodic instruments that can carry both a fiddle tune and
# a four-part chorale).
PROGRAMS = {0: "acoustic grand piano", 6: "harpsichord", 19: "church organ", 21: "accordion", 24: "nylon guitar",
            40: "violin", 42: "cello", 46: "harp", 48: "string ensemble", 52: "choir aahs", 56: "trumpet",
            68: "oboe", 71: "clarinet", 73: "flute", 105: "banjo", 109: "bagpipe"}
TEMPO_RANGE = (0.85, 1.15)
FOLK_STYLES = {"reel": "reel", "jig": "jig", "double jig": "jig", "hornpipe": "hornpipe", "slip jig": "slip jig",
               "slipjig": "slip jig", "strathspey": "strathspey"}


def slug(s):
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:60] or "untitled"


def folk_tunes():
    from music21 import corpus
    seen, out = set(), []
    for coll in ("oneills1850", "ryansMammoth"):
        for path in sorted(corpus.getComposer(coll)):
            text = open(path, encoding="latin-1").read()
            for tune in re.split(r"\n(?=X:)", text):
                if not re.search(r"^X:", tune, re.M):
                    continue
                r = re.search(r"^R:\s*(.+)$", tune, re.M)
                style = FOLK_STYLES.get(r.group(1).strip().lower()) if r else None
                t = re.search(r"^T:\s*(.+)$", tune, re.M)
                if not style or not t:
                    continue
                title = t.group(1).strip()
                # "Rakes of Clonmel -- Jig" (Ryan's) and "The Rakes of Clonmel." (O'Neill's) are one tune.
                key = (style, re.sub(r"^the-", "", slug(re.sub(r"\s+--\s+.*$", "", title))))
                if key in seen:
                    continue
                seen.add(key)
                x = re.search(r"^X:\s*(\S*)", tune, re.M).group(1)
                src = f"{coll}/{os.path.basename(path)}#X:{x}"
                out.append({"style": style, "title": title, "collection": coll, "source": src, "abc": tune})
    return out


def classical():
    from music21 import corpus
    out = []
    for p in sorted(corpus.getComposer("bach")):
        if p.suffix == ".mxl" and p.name.startswith("bwv"):
            out.append({"style": "bach chorale", "title": "BWV " + p.stem[3:], "collection": "bach", "source": f"bach/{p.name}", "path": str(p)})
    for p in sorted(corpus.getComposer("palestrina")):
        out.append({"style": "palestrina", "title": p.stem.replace("_", " "), "collection": "palestrina", "source": f"palestrina/{p.name}", "path": str(p)})
    return out


def retune(mid_in, mid_out, program, scale, limit_s):
    """One program on every melodic channel, every tempo multiplied by `scale`, the score cut at `limit_s`."""
    import mido
    m = mido.MidiFile(mid_in)
    channels = sorted({msg.channel for tr in m.tracks for msg in tr if hasattr(msg, "channel") and msg.channel != 9})
    has_tempo = any(msg.type == "set_tempo" for tr in m.tracks for msg in tr)
    for ti, tr in enumerate(m.tracks):
        new = mido.MidiTrack()
        carry = 0
        for msg in tr:
            if msg.type == "program_change":
                carry += msg.time
                continue
            if carry:
                msg = msg.copy(time=msg.time + carry)
                carry = 0
            if msg.type == "set_tempo":
                msg = msg.copy(tempo=max(1, int(round(msg.tempo / scale))))
            new.append(msg)
        if ti == 0:
            head = [mido.Message("program_change", channel=c, program=program, time=0) for c in channels]
            if not has_tempo:
                head.append(mido.MetaMessage("set_tempo", tempo=int(round(500000 / scale)), time=0))
            new[0:0] = head
        m.tracks[ti] = new
    # Only the first seconds are kept: cut the score there (FluidSynth renders every note it is given).
    merged = mido.merge_tracks(m.tracks)
    out, t, tempo = mido.MidiTrack(), 0.0, 500000
    for msg in merged:
        t += mido.tick2second(msg.time, m.ticks_per_beat, tempo)
        if msg.type == "set_tempo":
            tempo = msg.tempo
        if t > limit_s:
            break
        out.append(msg)
    for c in channels:
        out.append(mido.Message("control_change", channel=c, control=123, value=0, time=0))
    m.tracks = [out]
    m.type = 0
    m.save(mid_out)


def render(job):
    piece, out_dir, seconds = job
    rid = piece["id"]
    dst = os.path.join(out_dir, rid)
    if os.path.exists(dst):
        return dict(piece, status="ok", duration_s=None)
    with tempfile.TemporaryDirectory() as tmp:
        raw, mid, wav = (os.path.join(tmp, n) for n in ("raw.mid", "song.mid", "song.wav"))
        try:
            if "abc" in piece:
                abc = os.path.join(tmp, "t.abc")
                open(abc, "w", encoding="latin-1", errors="replace").write(re.sub(r"^X:.*$", "X:1", piece["abc"], count=1, flags=re.M))
                subprocess.run(["abc2midi", abc, "-o", raw, "-silent"], check=True, capture_output=True, timeout=60)
            else:
                from music21 import converter
                converter.parse(piece["path"]).write("midi", fp=raw)
            retune(raw, mid, piece["program"], piece["tempo_scale"], seconds + 10)
            subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.7", "-r", "22050", "-F", wav, SOUNDFONT, mid], check=True, capture_output=True, timeout=300)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            part = dst + ".part.mp3"
            subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", wav, "-af", "silenceremove=start_periods=1:start_threshold=-50dB",
                            "-t", str(seconds), "-ac", "1", "-ar", "22050", "-b:a", "96k", part], check=True, capture_output=True, timeout=120)
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", part], capture_output=True, text=True)
            dur = float(probe.stdout.strip() or 0)
            if dur < 10:
                os.remove(part)
                return dict(piece, status=f"too short ({dur:.1f} s)")
            os.replace(part, dst)
            return dict(piece, status="ok", duration_s=round(dur, 2))
        except Exception as e:  # one bad piece never stops the build
            if os.path.exists(dst + ".part.mp3"):
                os.remove(dst + ".part.mp3")
            err = getattr(e, "stderr", b"") or b""
            return dict(piece, status=f"failed: {(err.decode(errors='replace').strip() or str(e))[:200]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="previews")
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--seed", type=int, default=2017)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seconds", type=float, default=30)
    a = ap.parse_args()
    for tool in ("abc2midi", "fluidsynth", "ffmpeg", "ffprobe"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool}: see build.sh")
    if not os.path.exists(SOUNDFONT):
        sys.exit(f"needs {SOUNDFONT}: apt-get install fluid-soundfont-gm")
    pieces = folk_tunes() + classical()
    by_style = {}
    for p in pieces:
        by_style.setdefault(p["style"], []).append(p)
    rng = random.Random(a.seed)
    chosen = []
    for style in sorted(by_style):
        ps = by_style[style]
        rng.shuffle(ps)
        chosen += sorted(ps[: a.per_class], key=lambda p: p["source"])
    used = set()
    for p in chosen:
        # Program and tempo come from the piece's own seeded draw: the same for every run, and drawn from
        # the same distributions whatever the style.
        r = random.Random(int(hashlib.sha256(f"{a.seed}:{p['source']}".encode()).hexdigest()[:16], 16))
        p["program"] = r.choice(sorted(PROGRAMS))
        p["program_name"] = PROGRAMS[p["program"]]
        p["tempo_scale"] = round(r.uniform(*TEMPO_RANGE), 3)
        base = f"{slug(p['style'])}/{slug(p['title'])}"
        rid, n = base + ".mp3", 2
        while rid in used:
            rid, n = f"{base}-{n}.mp3", n + 1
        used.add(rid)
        p["id"] = rid
    print(f"{len(chosen)} pieces: " + ", ".join(f"{s} {sum(p['style'] == s for p in chosen)}" for s in sorted(by_style)), file=sys.stderr)
    os.makedirs(a.out, exist_ok=True)
    rows = []
    with ProcessPoolExecutor(a.jobs) as ex:
        for i, r in enumerate(ex.map(render, [(p, a.out, a.seconds) for p in chosen], chunksize=4)):
            rows.append(r)
            if (i + 1) % 50 == 0:
                print(f"  {i + 1}/{len(chosen)}", file=sys.stderr)
    ok = [r for r in rows if r["status"] == "ok"]
    bad = [r for r in rows if r["status"] != "ok"]
    fields = ["id", "style", "title", "collection", "source", "program", "program_name", "tempo_scale"]
    tmp = os.path.join(a.out, "tracks.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in sorted(ok, key=lambda r: r["id"]):
            w.writerow(r)
    os.replace(tmp, os.path.join(a.out, "tracks.csv"))
    print(f"rendered {len(ok)} pieces into {a.out}; {len(bad)} skipped", file=sys.stderr)
    for r in bad:
        print(f"  skipped {r['source']}: {r['status']}", file=sys.stderr)


if __name__ == "__main__":
    main()
