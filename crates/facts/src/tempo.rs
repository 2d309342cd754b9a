//! Tempo from an onset envelope: windowed autocorrelation (robust to drift and to a change of tempo),
//! each period judged with its harmonics (Percival's enhanced autocorrelation) under a broad prior against
//! octave errors, the octave and 2/3 relatives kept as candidates, then the BPM
//! refined to 0.1 by fitting a pulse train to the whole song.

use crate::{round3, Tempo, TempoCandidate};

/// Slowest and fastest tempo considered.
const BPM_RANGE: (f32, f32) = (40.0, 240.0);
/// Seconds of one autocorrelation window, and the step between windows.
const WINDOW_S: f32 = 8.0;
const WINDOW_HOP_S: f32 = 2.0;
/// The prior's centre and width (in octaves): a log-normal around 120 BPM, as librosa's.
const PRIOR_BPM: f32 = 120.0;
const PRIOR_OCTAVES: f32 = 1.0;
/// Below this periodicity the song has no steady beat (noise ~0.02, rubato piano ~0.05, a drum loop > 0.3).
pub const MIN_CONFIDENCE: f32 = 0.08;
/// A change of tempo: two parts, each at least this many windows, whose tempi differ by this much.
const CHANGE_MIN_WINDOWS: usize = 4;
const CHANGE_MIN_RATIO: f32 = 0.06;
/// A tempo is doubled when the onsets half-way between its beats are this strong against those on them,
/// up to this tempo (drum and bass at 174 has its snare on 87's off-beats).
const OFFBEAT_DOUBLE: f32 = 0.85;
const DOUBLE_UP_TO: f32 = 200.0;

/// Spectral flux of a log-mel spectrogram (`[n_mels][n_frames]` in dB): per frame, the mean over bands of
/// the rise since the last frame (librosa's `onset_strength`).
pub fn onset_envelope(log_mel: &[f32], n_mels: usize) -> Vec<f32> {
    if n_mels == 0 || log_mel.is_empty() {
        return Vec::new();
    }
    let n = log_mel.len() / n_mels;
    let mut o = vec![0f32; n];
    for m in 0..n_mels {
        let row = &log_mel[m * n..(m + 1) * n];
        for t in 1..n {
            o[t] += (row[t] - row[t - 1]).max(0.0);
        }
    }
    o.iter_mut().for_each(|v| *v /= n_mels as f32);
    o
}

/// Normalised autocorrelation of `x` (mean removed) at lags `lo..=hi`, corrected for the shrinking
/// overlap; `None` when `x` is flat.
fn autocorrelation(x: &[f32], lo: usize, hi: usize) -> Option<Vec<f32>> {
    let n = x.len();
    let mean = x.iter().sum::<f32>() / n as f32;
    let d: Vec<f32> = x.iter().map(|v| v - mean).collect();
    let r0: f32 = d.iter().map(|v| v * v).sum::<f32>() / n as f32;
    if r0.is_nan() || r0 <= 1e-12 {
        return None;
    }
    Some(
        (lo..=hi)
            .map(|l| {
                if l >= n {
                    return 0.0;
                }
                let s: f32 = d[..n - l].iter().zip(&d[l..]).map(|(a, b)| a * b).sum();
                s / (n - l) as f32 / r0
            })
            .collect(),
    )
}

fn prior(bpm: f32) -> f32 {
    let o = (bpm / PRIOR_BPM).log2() / PRIOR_OCTAVES;
    (-0.5 * o * o).exp()
}

/// Peak lags (fractional, by a parabola through the three values) of `r` over lags `lo..`, best first.
fn peaks(r: &[f32], lo: usize) -> Vec<(f32, f32)> {
    let mut p: Vec<(f32, f32)> = (1..r.len().saturating_sub(1))
        .filter(|&i| r[i] > r[i - 1] && r[i] >= r[i + 1] && r[i] > 0.0)
        .map(|i| {
            let (a, b, c) = (r[i - 1], r[i], r[i + 1]);
            let den = a - 2.0 * b + c;
            let off = if den.abs() > 1e-12 { (0.5 * (a - c) / den).clamp(-0.5, 0.5) } else { 0.0 };
            ((lo + i) as f32 + off, b - 0.25 * (a - c) * off)
        })
        .collect();
    p.sort_by(|a, b| b.1.total_cmp(&a.1));
    p
}

/// How well a pulse train at `bpm` lines up with the onsets: the best mean onset strength at its beats
/// over all phases.
fn pulse_fit(o: &[f32], fps: f32, bpm: f32) -> f32 {
    let period = 60.0 * fps / bpm;
    let beats = (o.len() as f32 / period).floor() as usize;
    if beats < 2 {
        return 0.0;
    }
    let at = |x: f32| {
        let i = x.floor() as usize;
        let f = x - i as f32;
        let a = o.get(i).copied().unwrap_or(0.0);
        let b = o.get(i + 1).copied().unwrap_or(0.0);
        a + (b - a) * f
    };
    let mut best = 0f32;
    let mut phase = 0f32;
    while phase < period {
        let s: f32 = (0..beats).map(|k| at(phase + k as f32 * period)).sum();
        best = best.max(s / beats as f32);
        phase += 0.5;
    }
    best
}

/// The BPM within ±3% of `bpm` whose pulse train fits the onsets best, to 0.1 BPM.
fn refine(o: &[f32], fps: f32, bpm: f32) -> f32 {
    let (mut best, mut at) = (f32::MIN, bpm);
    let steps = (bpm * 0.03 / 0.1).ceil() as i32;
    for s in -steps..=steps {
        let b = bpm + s as f32 * 0.1;
        let f = pulse_fit(o, fps, b);
        if f > best {
            (best, at) = (f, b);
        }
    }
    at
}

fn relation(bpm: f32, reported: f32) -> &'static str {
    let r = bpm / reported;
    for (name, x) in [("x2", 2.0), ("x1/2", 0.5), ("x3/2", 1.5), ("x2/3", 2.0 / 3.0), ("x3", 3.0), ("x1/3", 1.0 / 3.0)] {
        if (r / x - 1.0).abs() < 0.04 {
            return name;
        }
    }
    "other"
}

/// `x` smoothed with a small Gaussian (σ one frame), so that a beat falling between two frames still
/// correlates with itself one period later.
fn smooth(x: &[f32]) -> Vec<f32> {
    const K: [f32; 7] = [0.004, 0.054, 0.242, 0.399, 0.242, 0.054, 0.004];
    (0..x.len())
        .map(|i| K.iter().enumerate().map(|(j, k)| k * x.get((i + j).wrapping_sub(3)).copied().unwrap_or(0.0)).sum())
        .collect()
}

/// Mean onset strength half-way between the beats of the best-fitting pulse train at `bpm`, over that at
/// the beats: near 1 when the beats are really twice as fast.
fn offbeat_ratio(o: &[f32], fps: f32, bpm: f32) -> f32 {
    let period = 60.0 * fps / bpm;
    let beats = (o.len() as f32 / period).floor() as usize;
    if beats < 2 {
        return 0.0;
    }
    let at = |x: f32| o.get(x.round() as usize).copied().unwrap_or(0.0);
    let (mut best, mut best_phase) = (f32::MIN, 0.0);
    let mut phase = 0f32;
    while phase < period {
        let s: f32 = (0..beats).map(|k| at(phase + k as f32 * period)).sum();
        if s > best {
            (best, best_phase) = (s, phase);
        }
        phase += 0.5;
    }
    let off: f32 = (0..beats).map(|k| at(best_phase + (k as f32 + 0.5) * period)).sum();
    if best > 0.0 {
        off / best
    } else {
        0.0
    }
}

/// Autocorrelation of each window (8 s, 2 s apart) of `o` at lags `lo..=hi`.
fn windowed(o: &[f32], fps: f32, lo: usize, hi: usize) -> Vec<Vec<f32>> {
    let win = ((WINDOW_S * fps) as usize).max(2 * hi + 2).min(o.len());
    let hop = ((WINDOW_HOP_S * fps) as usize).max(1);
    let mut windows = Vec::new();
    let mut start = 0;
    loop {
        if let Some(r) = autocorrelation(&o[start..start + win], lo, hi) {
            windows.push(r);
        }
        if start + win >= o.len() {
            break;
        }
        start = (start + hop).min(o.len() - win);
    }
    windows
}

/// `r` at a fractional index, linearly interpolated; `None` outside it.
fn value_at(r: &[f32], x: f32) -> Option<f32> {
    let i = x.floor();
    if i < 0.0 || i as usize + 1 >= r.len() {
        return None;
    }
    let (i, f) = (i as usize, x - i);
    Some(r[i] * (1.0 - f) + r[i + 1] * f)
}

/// `(lag, periodicity, every peak as (lag, periodicity))`.
type Steady = (f32, f32, Vec<(f32, f32)>);

/// One tempo from the windows' autocorrelations (lags `lo..`) and the whole part's (`long`, lags `lo..` up
/// to 4x the slowest period): `(lag, periodicity, the peaks)`.
fn steady(windows: &[Vec<f32>], lo: usize, fps: f32, long: Option<&[f32]>) -> Option<Steady> {
    let mut global = vec![0f32; windows.first()?.len()];
    for w in windows {
        global.iter_mut().zip(w).for_each(|(g, v)| *g += v / windows.len() as f32);
    }
    let found = peaks(&global, lo);
    let bpm_of = |lag: f32| 60.0 * fps / lag;
    // Percival and Tzanetakis's "enhanced harmonics" (2014; Essentia's PercivalEnhanceHarmonics): a
    // period is judged by the repetition at it, at twice and at four times it (the bar of 4/4), so a
    // motif that recurs every 1.5 beats does not outweigh a beat whose bars repeat. The harmonics come from
    // the whole song's autocorrelation (`long`, lags `lo..`), as 4x the slowest period outgrows a window.
    let score = |l: f32, s: f32| match long {
        Some(long) => {
            let at = |x: f32| value_at(long, x - lo as f32).unwrap_or(0.0).max(0.0);
            (s + at(2.0 * l) + at(4.0 * l)) / 3.0
        }
        None => s,
    };
    let &(lag, strength) = found.iter().max_by(|a, b| (score(a.0, a.1) * prior(bpm_of(a.0))).total_cmp(&(score(b.0, b.1) * prior(bpm_of(b.0)))))?;
    // Compound metre (6/8, 12/8): when the onsets repeat more strongly every three of the chosen pulses'
    // halves (1.5 periods) than every period, and at least as strongly as every two periods, the beat is
    // that dotted pulse, whatever the prior says. In simple metre the two-period repetition (half a bar of
    // 4/4) is the stronger: without that check, reels and hornpipes whose tune happens to recur every 1.5
    // beats were read at 2/3 of their tempo. The dotted pulse's own harmonics must score as well, or a
    // tracker's 3+3+2 groove would pass for 6/8.
    if let Some(&(l3, s3)) = found.iter().find(|p| (p.0 - 1.5 * lag).abs() <= 1.0 && p.1 > strength && score(p.0, p.1) >= score(lag, strength)) {
        let doubled = found.iter().find(|p| (p.0 - 2.0 * lag).abs() <= 1.5).map(|p| p.1).or_else(|| value_at(&global, 2.0 * lag - lo as f32));
        if doubled.is_none_or(|r2| s3 >= r2) {
            return Some((l3, s3, found));
        }
    }
    Some((lag, strength, found))
}

/// The song's tempo from its onset envelope at `fps` frames a second.
pub fn estimate_tempo(onsets: &[f32], fps: f32) -> Tempo {
    let none = |confidence: f32| Tempo { bpm: None, confidence, candidates: vec![], changes_at_s: None };
    let lo = (60.0 * fps / BPM_RANGE.1).floor().max(1.0) as usize;
    let hi = (60.0 * fps / BPM_RANGE.0).ceil() as usize;
    if onsets.len() < 2 * hi + 2 || fps.is_nan() || fps <= 0.0 {
        return none(0.0);
    }
    let o = smooth(onsets);
    let windows = windowed(&o, fps, lo, hi);
    let bpm_of = |lag: f32| 60.0 * fps / lag;
    let long = autocorrelation(&o, lo, 4 * hi);
    let Some((lag, strength, found)) = steady(&windows, lo, fps, long.as_deref()) else {
        return none(0.0);
    };
    // How periodic the song is, whichever relative of its strongest period is reported.
    let strength = found.first().map_or(strength, |p| p.1.max(strength));
    let confidence = round3(strength.clamp(0.0, 1.0));
    if confidence < MIN_CONFIDENCE {
        return none(confidence);
    }
    // A change of tempo: each window's own tempo (folded to the global one's octave), split where two
    // steady parts differ most; the longer part is then measured on its own.
    let per_window: Vec<f32> = windows
        .iter()
        .map(|w| {
            peaks(w, lo)
                .into_iter()
                .map(|(l, s)| (fold(bpm_of(l), bpm_of(lag)), s))
                .max_by(|a, b| (a.1 * prior(a.0)).total_cmp(&(b.1 * prior(b.0))))
                .map_or(bpm_of(lag), |p| p.0)
        })
        .collect();
    let hop = ((WINDOW_HOP_S * fps) as usize).max(1);
    let win = ((WINDOW_S * fps) as usize).max(2 * hi + 2).min(o.len());
    let (part, lag, changes_at_s) = match split_point(&per_window) {
        Some(at) => {
            let cut = at * hop + win / 2;
            let part = if cut * 2 >= o.len() { &o[..cut] } else { &o[cut..] };
            let l = steady(&windowed(part, fps, lo, hi), lo, fps, autocorrelation(part, lo, 4 * hi).as_deref()).map_or(lag, |s| s.0);
            (part, l, Some(cut as f32 / fps))
        }
        None => (&o[..], lag, None),
    };
    let mut bpm = refine(part, fps, bpm_of(lag));
    // The beats may be twice as fast: as much happens half-way between them as on them.
    if bpm * 2.0 <= DOUBLE_UP_TO && offbeat_ratio(part, fps, bpm) > OFFBEAT_DOUBLE {
        bpm = refine(part, fps, bpm * 2.0);
    }
    let bpm = (bpm * 10.0).round() / 10.0;
    let candidates = found
        .iter()
        .map(|&(l, s)| (bpm_of(l), s))
        .filter(|&(b, _)| (b / bpm - 1.0).abs() > 0.04)
        .map(|(b, s)| TempoCandidate { bpm: (b * 10.0).round() / 10.0, strength: round3(s.clamp(0.0, 1.0)), relation: relation(b, bpm).into() })
        .filter(|c| c.relation != "other")
        .take(3)
        .collect();
    Tempo { bpm: Some(bpm), confidence, candidates, changes_at_s }
}


/// `bpm` moved by octaves to within a factor √2 of `around`.
fn fold(mut bpm: f32, around: f32) -> f32 {
    while bpm > around * std::f32::consts::SQRT_2 {
        bpm /= 2.0;
    }
    while bpm < around / std::f32::consts::SQRT_2 {
        bpm *= 2.0;
    }
    bpm
}

/// Where a sequence of per-window tempi changes for good.
fn split_point(t: &[f32]) -> Option<usize> {
    let median = |v: &[f32]| {
        let mut s = v.to_vec();
        s.sort_by(f32::total_cmp);
        s[s.len() / 2]
    };
    let spread = |v: &[f32], m: f32| v.iter().filter(|x| ((*x / m) - 1.0).abs() > 0.03).count() as f32 / v.len() as f32;
    let mut best: Option<(usize, f32, f32, f32)> = None;
    for at in CHANGE_MIN_WINDOWS..=t.len().saturating_sub(CHANGE_MIN_WINDOWS) {
        let (a, b) = (median(&t[..at]), median(&t[at..]));
        let gap = (a / b).ln().abs();
        // Each part steady (few windows off its median), and far apart.
        if gap > CHANGE_MIN_RATIO.ln_1p() && spread(&t[..at], a) < 0.25 && spread(&t[at..], b) < 0.25 && best.is_none_or(|x| gap > x.3) {
            best = Some((at, a, b, gap));
        }
    }
    best.map(|b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clicks(bpm: f32, seconds: f32, fps: f32) -> Vec<f32> {
        let n = (seconds * fps) as usize;
        let period = 60.0 * fps / bpm;
        let mut o = vec![0.0; n];
        let mut t = 0.0;
        while (t as usize) < n {
            o[t as usize] = 1.0;
            t += period;
        }
        o
    }

    #[test]
    fn a_click_track_gives_its_tempo_and_its_relatives() {
        let fps = 22050.0 / 512.0;
        for bpm in [87.0, 100.0, 128.0, 140.0, 174.0] {
            let t = estimate_tempo(&clicks(bpm, 30.0, fps), fps);
            let got = t.bpm.unwrap();
            assert!((got / bpm - 1.0).abs() < 0.01, "{bpm}: {got} {t:?}");
            assert!(t.confidence > 0.5, "{t:?}");
            assert!(t.candidates.iter().any(|c| c.relation == "x1/2" || c.relation == "x2"), "the octave is kept: {t:?}");
        }
    }

    #[test]
    fn a_jig_is_counted_in_dotted_quarters() {
        // Eighth notes at 240 a minute, every third one accented (6/8 at a dotted quarter of 80): the beat
        // is 80, not the 120 a prior around 120 BPM would pick.
        let fps = 22050.0 / 512.0;
        let mut o = clicks(240.0, 30.0, fps);
        let period = 60.0 * fps / 240.0;
        for (i, v) in o.iter_mut().enumerate() {
            if *v > 0.0 && !((i as f32 / period).round() as usize).is_multiple_of(3) {
                *v = 0.4;
            }
        }
        let t = estimate_tempo(&o, fps);
        assert!((t.bpm.unwrap() / 80.0 - 1.0).abs() < 0.02, "{t:?}");
        // Plain 4/4 eighths with accented beats stay at their beat.
        let mut o = clicks(240.0, 30.0, fps);
        for (i, v) in o.iter_mut().enumerate() {
            if *v > 0.0 && !((i as f32 / period).round() as usize).is_multiple_of(2) {
                *v = 0.4;
            }
        }
        let t = estimate_tempo(&o, fps);
        assert!((t.bpm.unwrap() / 120.0 - 1.0).abs() < 0.02, "{t:?}");
    }

    #[test]
    fn the_dotted_pulse_wins_only_over_the_doubled_one_too() {
        // Autocorrelations shaped as the rendered O'Neill tunes measured (eighth notes at 240 a minute, a
        // bump at each multiple of the eighth): a jig repeats most every three eighths, a reel's tune can
        // recur every three eighths a little more than every two, but most every four (half its bar).
        let fps = 22050.0 / 512.0;
        let eighth = 60.0 * fps / 240.0;
        let (lo, hi) = ((60.0 * fps / BPM_RANGE.1) as usize, (60.0 * fps / BPM_RANGE.0).ceil() as usize);
        let profile = |heights: [f32; 5]| {
            let r: Vec<f32> = (lo..=hi)
                .map(|l| heights.iter().enumerate().map(|(k, h)| h * (-0.5 * ((l as f32 - (k + 1) as f32 * eighth) / 1.5).powi(2)).exp()).sum())
                .collect();
            let bpm = 60.0 * fps / steady(&[r], lo, fps, None).unwrap().0;
            (bpm / 10.0).round() * 10.0
        };
        assert_eq!(profile([0.747, 0.742, 0.834, 0.734, 0.726]), 80.0, "a jig: the dotted quarter");
        assert_eq!(profile([0.855, 0.831, 0.835, 0.845, 0.826]), 120.0, "a reel: the quarter");
        assert_eq!(profile([0.682, 0.832, 0.659, 0.781, 0.696]), 120.0, "a reel with clear beats");
    }

    #[test]
    fn flat_or_random_onsets_have_no_steady_beat() {
        let fps = 43.0;
        assert_eq!(estimate_tempo(&vec![0.3; 2000], fps).bpm, None);
        let mut x = 12345u64;
        let noise: Vec<f32> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 1000) as f32 / 1000.0
            })
            .collect();
        let t = estimate_tempo(&noise, fps);
        assert_eq!(t.bpm, None, "{t:?}");
        assert_eq!(estimate_tempo(&[1.0; 10], fps).bpm, None);
    }

    #[test]
    fn a_change_of_tempo_is_found_where_it_happens() {
        let fps = 43.0;
        let mut o = clicks(100.0, 40.0, fps);
        o.extend(clicks(125.0, 50.0, fps));
        let t = estimate_tempo(&o, fps);
        let at = t.changes_at_s.expect("a change");
        assert!((at - 40.0).abs() < 5.0, "{t:?}");
        assert!((t.bpm.unwrap() / 125.0 - 1.0).abs() < 0.02, "the longer part: {t:?}");
    }

    #[test]
    fn a_motif_every_beat_and_a_half_does_not_set_the_tempo() {
        // 4/4 at 125 BPM on a sixteenth grid, a motif on sixteenths 0, 6 and 12 of each bar (the 3+3+2 of
        // tracker grooves, at the bar), quiet sixteenths between: the onsets repeat more every 1.5 beats
        // (83.3 BPM) than every beat, but the bar (four beats) repeats fully and 1.5 beats does not divide it.
        let fps = 22050.0 / 512.0;
        let sixteenth = 60.0 * fps / 125.0 / 4.0;
        let n = (60.0 * fps) as usize;
        let mut o = vec![0f32; n];
        let mut k = 0usize;
        while ((k as f32 * sixteenth) as usize) < n {
            o[(k as f32 * sixteenth) as usize] = if [0, 6, 12].contains(&(k % 16)) { 1.0 } else { 0.1 };
            k += 1;
        }
        let t = estimate_tempo(&o, fps);
        assert!((t.bpm.unwrap() / 125.0 - 1.0).abs() < 0.02, "{t:?}");
    }
}
