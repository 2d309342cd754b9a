#!/usr/bin/env python3
"""Builds the `debian-music` corpus: one-minute previews of every free production listed in packages.tsv.

    python3 datasets/debian-music/build.py OUT [--debs DIR] [--soundtracks DIR] [--only PKG,PKG] [--jobs N] [--segments N]

Stages (each resumable: finished files are kept and skipped on the next run):
  1. download   `apt-get download PKG` for each package of packages.tsv (Debian 12 main only)
  2. extract    `dpkg-deb -x`, then the zip archives (.pk3/.zip) inside; music files are found by extension
  3. previews   recorded tracks (ogg/mp3/flac/opus/wav): 60 s from 30% into the track, mono 22,050 Hz 64 kbit/s
                mp3 (ffmpeg), as `soundtracks` was cut; tracks under 45 s are sound effects and are dropped.
                Tracker modules: rendered once through openmpt123 (xmp if that fails), then cut the same way.
                MIDI: rendered through two soundfonts (FluidR3_GM, TimGM6mb) with fluidsynth, then cut; the second
                rendering is marked `variant=1` (same music, other timbre: training only, never a query).
                With --segments 1 or 2, each track also gives one or two more 60-s windows (right after the
                preview, then right before it; tracks of at least 150 s and 217 s), `PREVIEW.seg1.mp3`/`.seg2.mp3`,
                marked `segment=1/2`: more audio of the same songs, training material only, never a query or a
                candidate. (Not for the ten --soundtracks productions, whose full tracks are not at hand.)
  4. manifest   OUT/tracks.csv: id, file, production (= Debian package, ground truth), kind
                (recorded/module/midi:<soundfont>), variant, work, title, artist (from tags), track_duration_s,
                preview_start_s, preview_duration_s, licence (License: fields of the package's copyright file),
                source_file, segment (0 = the preview), and OUT/failed.csv: what was left out and why. Licences in OUT/licenses/PKG.copyright.
The musicnn tagger (the soft labels) runs separately: datasets/debian-music/tag.py.

With --soundtracks DIR (the shared `soundtracks` set, or what datasets/soundtracks/build.sh made), its ten
productions' previews are taken from there instead of being downloaded again.
"""
import argparse, concurrent.futures as cf, csv, os, re, shutil, subprocess, sys, tempfile, zipfile

RECORDED = {".ogg", ".oga", ".mp3", ".flac", ".opus", ".wav"}
MODULE = {".mod", ".xm", ".it", ".s3m", ".mtm", ".669", ".med", ".okt", ".stm", ".far", ".ult", ".umx", ".dbm",
          ".amf", ".psm", ".mo3", ".ahx", ".hvl", ".dsm", ".mptm", ".gdm", ".imf", ".ptm", ".j2b", ".mdl", ".dmf"}
MIDI = {".mid", ".midi", ".kar"}
SOUNDFONTS = [("fluidr3", "/usr/share/sounds/sf2/FluidR3_GM.sf2"), ("timgm6mb", "/usr/share/sounds/sf2/TimGM6mb.sf2")]
MIN_S, PREVIEW_S, START_FRAC, MAX_PER_PRODUCTION = 45.0, 60.0, 0.30, 60
SKIP = {"freedoom": "its MIDI sits as MUS lumps inside WAD files (not converted)"}


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def duration(path):
    r = run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", path])
    try:
        return float(r.stdout.strip())
    except ValueError:
        return None


def tags(path):
    r = run(["ffprobe", "-v", "error", "-show_entries", "format_tags=title,artist:stream_tags=title,artist", "-of", "default=nw=1", path])
    out = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition("=")
        k = k.split(":")[-1].lower()
        if k in ("title", "artist") and v.strip() and k not in out:
            out[k] = v.strip()
    return out


def licences(copyright_path):
    try:
        text = open(copyright_path, errors="replace").read()
    except OSError:
        return ""
    found = []
    for m in re.finditer(r"^License:\s*(\S.*)$", text, re.M):
        lic = m.group(1).strip()
        if lic not in found:
            found.append(lic)
    return "; ".join(found)


def preview_window(dur):
    """60 s from 30% into the track (the whole track when shorter than 60 s)."""
    start = max(0.0, min(dur * START_FRAC, dur - PREVIEW_S)) if dur > PREVIEW_S else 0.0
    return start, min(PREVIEW_S, dur - start)


def segment_windows(dur, start, n):
    """Up to n more 60-s windows of a track beside its preview, training material only: the first right after the
    preview (pulled back to end 5 s before the track does, overlapping the preview by at most 20 s), the second
    right before it (not in the first 5 s); `start` is where the preview starts (`preview_window`). A track
    too short for a window gets fewer."""
    out = []
    after = min(start + PREVIEW_S, dur - PREVIEW_S - 5.0)
    if n >= 1 and after >= start + PREVIEW_S - 20.0:
        out.append(after)
    before = start - PREVIEW_S
    if n >= 2 and before >= 5.0:
        out.append(before)
    return out


def cut(src, dst, start, length=PREVIEW_S):
    """length seconds from start, mono 22,050 Hz 64 kbit/s mp3 (atomically: a temp file, then a rename)."""
    tmp = dst + ".part.mp3"
    r = run(["ffmpeg", "-v", "error", "-y", "-ss", f"{start:.3f}", "-t", f"{length:.3f}", "-i", src, "-vn", "-ac", "1",
             "-ar", "22050", "-b:a", "64k", tmp])
    if r.returncode != 0 or not os.path.exists(tmp) or os.path.getsize(tmp) < 1000:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise RuntimeError(f"ffmpeg: {r.stderr.strip()[-200:] or 'no output'}")
    # A preview of digital silence (a track that is silent there) would be refused by soundalike anyway.
    if digital_silence(tmp):
        os.remove(tmp)
        raise RuntimeError("the preview is digital silence")
    os.replace(tmp, dst)


def digital_silence(path):
    """Whether an audio file is digital silence (ffmpeg's volumedetect: -91 dB is an mp3 of zeros)."""
    v = run(["ffmpeg", "-v", "info", "-i", path, "-af", "volumedetect", "-f", "null", "-"])
    m = re.search(r"max_volume: (-?inf|-?[0-9.]+) dB", v.stderr)
    return bool(m and (m.group(1).endswith("inf") or float(m.group(1)) <= -90.0))


def render_module(src, wav):
    r = run(["openmpt123", "--batch", "--quiet", "--force", "--samplerate", "44100", "--channels", "2", "--no-float",
             "--repeat", "0", "--end-time", "600", "-o", wav, src], timeout=300)
    if r.returncode == 0 and os.path.exists(wav) and os.path.getsize(wav) > 44:
        return "openmpt123"
    r2 = run(["xmp", "-q", "-o", wav, src], timeout=300)
    if r2.returncode == 0 and os.path.exists(wav) and os.path.getsize(wav) > 44:
        return "xmp"
    raise RuntimeError(f"openmpt123: {r.stderr.strip()[-120:]} | xmp: {r2.stderr.strip()[-120:]}")


def render_midi(src, wav, sf2):
    r = run(["fluidsynth", "-ni", "-q", "-g", "0.8", "-r", "44100", "-F", wav, sf2, src], timeout=300)
    if r.returncode != 0 or not os.path.exists(wav) or os.path.getsize(wav) <= 44:
        raise RuntimeError(f"fluidsynth: {r.stderr.strip()[-200:] or 'no output'}")


def safe_name(s):
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", s).strip("_") or "track"


def find_music(root):
    """(kind, path) of every music file under an extracted package, zip archives included."""
    for dp, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(dp, f)
            ext = os.path.splitext(f)[1].lower()
            if ext in (".pk3", ".zip") and not os.path.islink(p):
                dest = p + ".x"
                if not os.path.isdir(dest):
                    try:
                        with zipfile.ZipFile(p) as z:
                            names = [n for n in z.namelist() if os.path.splitext(n)[1].lower() in RECORDED | MODULE | MIDI]
                            z.extractall(dest, names)
                    except (zipfile.BadZipFile, OSError):
                        continue
                yield from find_music(dest)
            elif os.path.islink(p):
                continue
            elif ext in RECORDED:
                yield "recorded", p
            elif ext in MODULE:
                yield "module", p
            elif ext in MIDI:
                yield "midi", p


def process(pkg, kind, path, xroot, out, work, segments=0):
    """Returns (rows, failures) for one source file: its preview and up to `segments` more windows of it."""
    rel = os.path.relpath(path, xroot)
    stem = safe_name(os.path.splitext(os.path.basename(path))[0])
    work_id = f"{pkg}/{stem}"
    rows, fails = [], []
    meta = tags(path) if kind == "recorded" else {}
    renders = []
    try:
        if kind == "recorded":
            renders.append(("recorded", 0, path))
        elif kind == "module":
            wav = os.path.join(work, safe_name(rel) + ".wav")
            if not os.path.exists(wav):
                render_module(path, wav + ".tmp.wav")
                os.replace(wav + ".tmp.wav", wav)
            renders.append(("module", 0, wav))
        else:
            for v, (sf, sf2) in enumerate(SOUNDFONTS):
                wav = os.path.join(work, safe_name(rel) + f".{sf}.wav")
                if not os.path.exists(wav):
                    render_midi(path, wav + ".tmp.wav", sf2)
                    os.replace(wav + ".tmp.wav", wav)
                renders.append((f"midi:{sf}", v, wav))
    except Exception as e:  # noqa: BLE001 - a failed render is reported, never fatal
        return [], [(pkg, rel, f"render failed: {e}")]
    for k, variant, src in renders:
        dur = duration(src)
        if dur is None:
            fails.append((pkg, rel, f"{k}: not decodable by ffprobe"))
            continue
        if dur < MIN_S:
            fails.append((pkg, rel, f"{k}: {dur:.1f} s < {MIN_S:.0f} s (a sound effect or jingle)"))
            continue
        suffix = "" if k in ("recorded", "module") else "." + k.split(":")[1]
        name = stem + suffix
        dst_rel = f"previews/{pkg}/{name}.mp3"
        dst = os.path.join(out, dst_rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            start, length = preview_window(dur)
            if not os.path.exists(dst):
                cut(src, dst, start, length)
        except Exception as e:  # noqa: BLE001
            fails.append((pkg, rel, f"{k}: {e}"))
            continue
        row = {"id": f"{pkg}/{name}", "file": dst_rel, "production": pkg, "kind": k, "variant": variant, "work": work_id,
               "title": meta.get("title", ""), "artist": meta.get("artist", ""), "track_duration_s": f"{dur:.2f}",
               "preview_start_s": f"{start:.2f}", "preview_duration_s": f"{length:.2f}", "source_file": rel, "segment": 0}
        rows.append(row)
        for seg, s_start in enumerate(segment_windows(dur, start, segments), 1):
            seg_rel = f"previews/{pkg}/{name}.seg{seg}.mp3"
            try:
                if not os.path.exists(os.path.join(out, seg_rel)):
                    cut(src, os.path.join(out, seg_rel), s_start)
            except Exception as e:  # noqa: BLE001 - a window that fails (e.g. silence) is reported, the preview stays
                fails.append((pkg, rel, f"{k}: segment {seg}: {e}"))
                continue
            rows.append({**row, "id": f"{pkg}/{name}.seg{seg}", "file": seg_rel, "preview_start_s": f"{s_start:.2f}",
                         "preview_duration_s": f"{PREVIEW_S:.2f}", "segment": seg})
    return rows, fails


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--debs", help="folder for the downloaded .deb files (default OUT/debs)")
    ap.add_argument("--soundtracks", help="an existing `soundtracks` set: its ten productions are copied, not downloaded")
    ap.add_argument("--only", help="comma-separated packages (default: every package of packages.tsv)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--segments", type=int, default=0, choices=(0, 1, 2),
                    help="more 60-s windows per track beside its preview (after it, then before it), marked segment=1/2: "
                         "training material only, never a query or a candidate (default 0)")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.abspath(a.out)
    debs = os.path.abspath(a.debs or os.path.join(out, "debs"))
    os.makedirs(debs, exist_ok=True)
    os.makedirs(os.path.join(out, "licenses"), exist_ok=True)
    pkgs = [r["package"] for r in csv.DictReader(open(os.path.join(here, "packages.tsv")), delimiter="\t")]
    if a.only:
        wanted = set(a.only.split(","))
        pkgs = [p for p in pkgs if p in wanted]
    rows, fails = [], []
    st_rows = {}
    if a.soundtracks:
        for r in csv.DictReader(open(os.path.join(a.soundtracks, "tracks.csv"))):
            st_rows.setdefault(r["source"], []).append(r)
    for i, pkg in enumerate(pkgs):
        print(f"[{i + 1}/{len(pkgs)}] {pkg}", flush=True)
        if pkg in SKIP:
            fails.append((pkg, "", f"skipped: {SKIP[pkg]}"))
            continue
        if pkg in st_rows:
            for r in st_rows[pkg]:
                src = os.path.join(a.soundtracks, r["file"])
                dst_rel = f"previews/{pkg}/{os.path.basename(r['file'])}"
                # The shared set's previews are checked as our own cuts are (one of them is silent).
                if digital_silence(src):
                    fails.append((pkg, r["id"], "the preview is digital silence"))
                    continue
                os.makedirs(os.path.join(out, "previews", pkg), exist_ok=True)
                shutil.copyfile(src, os.path.join(out, dst_rel))
                rows.append({"id": f"{pkg}/{os.path.splitext(os.path.basename(r['file']))[0]}", "file": dst_rel, "production": pkg,
                             "kind": "recorded", "variant": 0, "work": r["id"], "title": r["title"], "artist": r["artist"],
                             "track_duration_s": r["track_duration_s"], "preview_start_s": r["preview_start_s"],
                             "preview_duration_s": r["preview_duration_s"], "source_file": r["id"], "segment": 0})
            lic = os.path.join(a.soundtracks, "licenses", f"{pkg}.copyright")
            if os.path.exists(lic):
                shutil.copyfile(lic, os.path.join(out, "licenses", f"{pkg}.copyright"))
            continue
        have = [f for f in os.listdir(debs) if f.startswith(pkg + "_") and f.endswith(".deb")]
        if not have:
            r = run(["apt-get", "download", "-q", pkg], cwd=debs)
            have = [f for f in os.listdir(debs) if f.startswith(pkg + "_") and f.endswith(".deb")]
            if not have:
                fails.append((pkg, "", f"download failed: {r.stderr.strip()[-200:]}"))
                continue
        xroot = os.path.join(out, "work", pkg, "x")
        if not os.path.isdir(xroot):
            tmpx = xroot + ".tmp"
            shutil.rmtree(tmpx, ignore_errors=True)
            os.makedirs(tmpx)
            r = run(["dpkg-deb", "-x", os.path.join(debs, sorted(have)[-1]), tmpx])
            if r.returncode != 0:
                fails.append((pkg, "", f"unpack failed: {r.stderr.strip()[-200:]}"))
                continue
            os.replace(tmpx, xroot)
        cp = os.path.join(xroot, "usr/share/doc", pkg, "copyright")
        if os.path.exists(cp):
            shutil.copyfile(cp, os.path.join(out, "licenses", f"{pkg}.copyright"))
        lic = licences(cp)
        found = sorted(find_music(xroot), key=lambda kp: kp[1])
        # One file per work: an ogg and an mp3 of the same track count once (the first in name order).
        seen, uniq = set(), []
        for kind, p in found:
            key = (kind == "midi", os.path.splitext(os.path.basename(p))[0].lower())
            if key not in seen:
                seen.add(key)
                uniq.append((kind, p))
        rwork = os.path.join(out, "work", pkg, "render")
        os.makedirs(rwork, exist_ok=True)
        prow = []
        with cf.ThreadPoolExecutor(a.jobs) as ex:
            for r_, f_ in ex.map(lambda kp: process(pkg, kp[0], kp[1], xroot, out, rwork, a.segments), uniq):
                prow += r_
                fails += f_
        # At most MAX_PER_PRODUCTION previews a production; a dropped preview's segments (the rows right after
        # it) go with it.
        kept, n_prev, keep = [], 0, True
        for r_ in prow:
            if r_["segment"] == 0:
                n_prev += 1
                keep = n_prev <= MAX_PER_PRODUCTION
                if not keep:
                    fails.append((pkg, r_["source_file"], f"over {MAX_PER_PRODUCTION} tracks for one production"))
            if keep:
                kept.append(r_)
            else:
                os.remove(os.path.join(out, r_["file"]))
        prow = kept
        for r_ in prow:
            r_["licence"] = lic
        rows += prow
        if not prow:
            fails.append((pkg, "", "no music of 45 s or more found"))
        shutil.rmtree(os.path.join(out, "work", pkg, "x"), ignore_errors=True) if os.environ.get("CLEAN") else None
    for r in rows:
        if not r.get("licence"):
            r["licence"] = licences(os.path.join(out, "licenses", f"{r['production']}.copyright"))
    cols = ["id", "file", "production", "kind", "variant", "work", "title", "artist", "track_duration_s", "preview_start_s",
            "preview_duration_s", "licence", "source_file", "segment"]
    tmp = os.path.join(out, "tracks.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, os.path.join(out, "tracks.csv"))
    with open(os.path.join(out, "failed.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["production", "source_file", "reason"])
        w.writerows(fails)
    prods = {r["production"] for r in rows}
    n_seg = sum(1 for r in rows if r["segment"])
    print(f"{len(rows) - n_seg} previews (+ {n_seg} segments) from {len(prods)} productions in {out}/tracks.csv; {len(fails)} left out (failed.csv)")


if __name__ == "__main__":
    sys.exit(main())
