//! Key from a chroma gathered over the song: spectral peaks of each STFT frame (interpolated, 50 Hz to
//! 5 kHz, A = 440 Hz) folded onto 12 pitch classes with a cos² window of one semitone (as an HPCP),
//! each frame normalised, summed per few seconds; the sum correlated with 24 rotations of a key profile
//! (Krumhansl's, with each note's harmonics added as Essentia's polyphonic profiles do).

use crate::notation::{CamelotKey, KeyRule, Mode};
use crate::{round3, Key};

/// Krumhansl and Kessler's probe-tone ratings (1982), major then minor, from the tonic up.
const KRUMHANSL: ([f32; 12], [f32; 12]) = (
    [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
    [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17],
);
/// The profile the estimator uses.
pub const KEY_PROFILE: &str = "krumhansl, polyphonic (harmonics 2-4 at slope 0.6)";
const FMIN: f32 = 50.0;
const FMAX: f32 = 5000.0;
/// Seconds of chroma summed together; key changes are looked for at these boundaries.
const SEGMENT_S: f32 = 5.0;
/// Pitch is gathered in 10-cent bins (120 an octave), so the tuning can be read off before folding to 12.
const BINS: usize = 120;
/// Below this correlation the key is unclear.
pub const MIN_STRENGTH: f32 = 0.55;

/// Per-segment chroma of a song, pushed frame by frame.
pub struct ChromaFrames {
    bin_hz: f32,
    lo: usize,
    hi: usize,
    frames_per_segment: usize,
    in_segment: usize,
    current: [f32; BINS],
    segments: Vec<[f32; BINS]>,
    /// Seconds per segment.
    segment_s: f32,
}

impl ChromaFrames {
    /// For power spectra of `n_fft`-sample frames at `sample_rate`, `hop` apart.
    pub fn new(sample_rate: u32, n_fft: usize, hop: usize) -> Self {
        let bin_hz = sample_rate as f32 / n_fft.max(1) as f32;
        let fps = sample_rate as f32 / hop.max(1) as f32;
        let frames_per_segment = ((SEGMENT_S * fps).round() as usize).max(1);
        ChromaFrames {
            bin_hz,
            lo: ((FMIN / bin_hz).floor() as usize).max(1),
            hi: ((FMAX / bin_hz).ceil() as usize).min(n_fft / 2),
            frames_per_segment,
            in_segment: 0,
            current: [0.0; BINS],
            segments: Vec::new(),
            segment_s: frames_per_segment as f32 / fps,
        }
    }

    /// One frame's power spectrum.
    pub fn push(&mut self, power: &[f32]) {
        let hi = self.hi.min(power.len().saturating_sub(1));
        if hi <= self.lo + 1 {
            self.end_frame();
            return;
        }
        // Peaks of the power are the magnitude's; the parabola's offset is the same on log power as on
        // log magnitude (a factor of two cancels), so only each peak's magnitude takes a square root.
        let m = &power[self.lo - 1..=hi];
        let top = m.iter().copied().fold(0f32, f32::max);
        let mut c = [0f32; BINS];
        if top > 1e-8 {
            let floor = top * 1e-3;
            for i in 1..m.len() - 1 {
                let (a, b, d) = (m[i - 1], m[i], m[i + 1]);
                if b > floor && b > a && b >= d {
                    let (la, lb, ld) = ((a + 1e-18).ln(), b.ln(), (d + 1e-18).ln());
                    let den = la - 2.0 * lb + ld;
                    let off = if den.abs() > 1e-9 { (0.5 * (la - ld) / den).clamp(-0.5, 0.5) } else { 0.0 };
                    let hz = (self.lo - 1 + i) as f32 * self.bin_hz + off * self.bin_hz;
                    let pitch = 69.0 + 12.0 * (hz / 440.0).log2();
                    c[((pitch * 10.0).round() as i64).rem_euclid(BINS as i64) as usize] += b.sqrt();
                }
            }
            let cmax = c.iter().copied().fold(0f32, f32::max);
            if cmax > 0.0 {
                self.current.iter_mut().zip(&c).for_each(|(s, v)| *s += v / cmax);
            }
        }
        self.end_frame();
    }

    fn end_frame(&mut self) {
        self.in_segment += 1;
        if self.in_segment == self.frames_per_segment {
            self.segments.push(std::mem::replace(&mut self.current, [0.0; BINS]));
            self.in_segment = 0;
        }
    }

    /// Each segment's 12-bin chroma, folded around the song's tuning.
    fn all_segments(&self) -> Vec<[f32; 12]> {
        let mut s = self.segments.clone();
        if self.in_segment > self.frames_per_segment / 2 {
            s.push(self.current);
        }
        let tuning = tuning(&s);
        s.iter().map(|b| fold(b, tuning)).collect()
    }
}

/// The song's tuning, in semitones from A = 440 Hz (−0.5 to 0.5): the circular mean of where its peaks
/// fall between semitones.
fn tuning(segs: &[[f32; BINS]]) -> f32 {
    let (mut x, mut y) = (0f32, 0f32);
    for s in segs {
        for (i, w) in s.iter().enumerate() {
            let a = 2.0 * std::f32::consts::PI * (i % 10) as f32 / 10.0;
            x += w * a.cos();
            y += w * a.sin();
        }
    }
    if x == 0.0 && y == 0.0 {
        return 0.0;
    }
    let t = y.atan2(x) / (2.0 * std::f32::consts::PI);
    if t > 0.5 {
        t - 1.0
    } else {
        t
    }
}

/// 10-cent bins folded onto 12 pitch classes centred at `tuning`, with a cos² window one semitone wide.
fn fold(bins: &[f32; BINS], tuning: f32) -> [f32; 12] {
    let mut c = [0f32; 12];
    for (i, &w) in bins.iter().enumerate() {
        if w == 0.0 {
            continue;
        }
        let pitch = i as f32 / 10.0 - tuning;
        let nearest = pitch.round();
        let d = pitch - nearest;
        c[(nearest as i64).rem_euclid(12) as usize] += w * (std::f32::consts::PI * d).cos().powi(2);
    }
    c
}

fn pearson(a: &[f32; 12], b: &[f32; 12]) -> f32 {
    let (ma, mb) = (a.iter().sum::<f32>() / 12.0, b.iter().sum::<f32>() / 12.0);
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for i in 0..12 {
        let (x, y) = (a[i] - ma, b[i] - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa <= 1e-12 || bb <= 1e-12 {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

/// Essentia's `Key` with `usePolyphony`: a note's pitch class also sounds in its harmonics, so the profile
/// a chroma is matched against has each note's harmonics 2 to 4 added at `slope`^(h-1): the octaves
/// scale it, the third harmonic adds to the fifth above. Without it a single melodic line (folk tunes) was
/// read a fifth too high.
const HARMONIC_SLOPE: f32 = 0.6;

/// The Krumhansl profiles with their notes' harmonics, major then minor.
fn profiles() -> &'static ([f32; 12], [f32; 12]) {
    static P: std::sync::OnceLock<([f32; 12], [f32; 12])> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let s = HARMONIC_SLOPE;
        let poly = |p: &[f32; 12]| -> [f32; 12] { std::array::from_fn(|q| p[q] * (1.0 + s + s.powi(3)) + s.powi(2) * p[(q + 12 - 7) % 12]) };
        (poly(&KRUMHANSL.0), poly(&KRUMHANSL.1))
    })
}

/// How well `chroma` fits `key`'s profile.
fn fit(chroma: &[f32; 12], key: CamelotKey) -> f32 {
    let profiles = profiles();
    let profile = if key.mode() == Mode::Major { &profiles.0 } else { &profiles.1 };
    let rotated: [f32; 12] = std::array::from_fn(|pc| profile[(pc + 12 - key.tonic()) % 12]);
    pearson(chroma, &rotated)
}

/// The best key for `chroma` and its correlation.
fn best_key(chroma: &[f32; 12]) -> (CamelotKey, f32) {
    let mut best = (CamelotKey::from_tonic(0, Mode::Major), f32::MIN);
    let profiles = profiles();
    for (mode, profile) in [(Mode::Major, &profiles.0), (Mode::Minor, &profiles.1)] {
        for tonic in 0..12 {
            let rotated: [f32; 12] = std::array::from_fn(|pc| profile[(pc + 12 - tonic) % 12]);
            let r = pearson(chroma, &rotated);
            if r > best.1 {
                best = (CamelotKey::from_tonic(tonic, mode), r);
            }
        }
    }
    best
}

fn sum(segs: &[[f32; 12]]) -> [f32; 12] {
    let mut c = [0f32; 12];
    segs.iter().for_each(|s| c.iter_mut().zip(s).for_each(|(a, b)| *a += b));
    c
}

/// The song's key (and where it changes, if it does for good).
pub fn estimate_key(frames: &ChromaFrames) -> Key {
    let segs = frames.all_segments();
    let total = sum(&segs);
    if total.iter().sum::<f32>() <= 0.0 {
        return Key { key: None, strength: 0.0, changes_at_s: None };
    }
    let (key, strength) = best_key(&total);
    // A change: two parts of at least three segments, each clearly in a key of its own that does not mix
    // with the other's (a verse in the relative minor is no change), each fitting its key better than the
    // song's one key.
    let mut change: Option<(usize, CamelotKey, f32, CamelotKey, f32)> = None;
    for at in 3..=segs.len().saturating_sub(3) {
        let (before, after) = (sum(&segs[..at]), sum(&segs[at..]));
        let ((k1, s1), (k2, s2)) = (best_key(&before), best_key(&after));
        let apart = !k1.mixes_with(k2, KeyRule::Strict);
        // Each part fits its own key clearly better than the song's one key.
        let better = s1 - fit(&before, key) > 0.1 && s2 - fit(&after, key) > 0.1;
        if apart && better && s1.min(s2) >= MIN_STRENGTH + 0.1 && change.is_none_or(|c| s1 + s2 > c.2 + c.4) {
            change = Some((at, k1, s1, k2, s2));
        }
    }
    if let Some((at, k1, s1, k2, s2)) = change {
        let (k, s) = if at * 2 >= segs.len() { (k1, s1) } else { (k2, s2) };
        return Key { key: Some(k), strength: round3(s), changes_at_s: Some(at as f32 * frames.segment_s) };
    }
    Key { key: (strength >= MIN_STRENGTH).then_some(key), strength: round3(strength), changes_at_s: None }
}


#[cfg(test)]
mod tests {
    use super::*;

    /// Power spectra of a frame holding sine partials at `hz` (each with a Hann main lobe of three bins).
    fn frame(hz: &[f32], n_fft: usize, sr: f32) -> Vec<f32> {
        let mut p = vec![0f32; n_fft / 2 + 1];
        for &f in hz {
            let k = f * n_fft as f32 / sr;
            let i = k.round() as usize;
            for (j, w) in [(i - 1, 0.25), (i, 1.0), (i + 1, 0.25)] {
                let d = (j as f32 - k).abs();
                p[j] += w * (1.0 - d * 0.3).max(0.0);
            }
        }
        p
    }

    fn hz(midi: f32) -> f32 {
        440.0 * 2f32.powf((midi - 69.0) / 12.0)
    }

    fn chords(progression: &[&[i32]], seconds_each: f32) -> ChromaFrames {
        chords_tuned(progression, seconds_each, 0.0)
    }

    fn chords_tuned(progression: &[&[i32]], seconds_each: f32, cents: f32) -> ChromaFrames {
        let (sr, n_fft, hop) = (22050.0, 2048, 512);
        let mut c = ChromaFrames::new(sr as u32, n_fft, hop);
        for notes in progression {
            let partials: Vec<f32> = notes.iter().map(|&n| n as f32 + cents / 100.0).flat_map(|n| [hz(n), 2.0 * hz(n)]).collect();
            let f = frame(&partials, n_fft, sr);
            for _ in 0..(seconds_each * sr / hop as f32) as usize {
                c.push(&f);
            }
        }
        c
    }

    #[test]
    fn a_minor_and_c_major_cadences_are_named() {
        // i - iv - V - i in A minor (A C E, D F A, E G# B, A C E), and I - IV - V - I in C major.
        let a_minor: &[&[i32]] = &[&[57, 60, 64], &[62, 65, 69], &[64, 68, 71], &[57, 60, 64]];
        let k = estimate_key(&chords(&a_minor.repeat(3), 2.0));
        assert_eq!(k.key.map(|k| k.to_string()), Some("8A".into()), "{k:?}");
        let c_major: &[&[i32]] = &[&[60, 64, 67], &[65, 69, 72], &[67, 71, 74], &[60, 64, 67]];
        let k = estimate_key(&chords(&c_major.repeat(3), 2.0));
        assert_eq!(k.key.map(|k| k.to_string()), Some("8B".into()), "{k:?}");
        assert!(k.strength > MIN_STRENGTH);
        // An orchestra tuned 40 cents sharp (A = 450 Hz) is still in A minor, not B-flat minor.
        let k = estimate_key(&chords_tuned(&a_minor.repeat(3), 2.0, 40.0));
        assert_eq!(k.key.map(|k| k.to_string()), Some("8A".into()), "{k:?}");
        let k = estimate_key(&chords_tuned(&a_minor.repeat(3), 2.0, -45.0));
        assert_eq!(k.key.map(|k| k.to_string()), Some("8A".into()), "{k:?}");
    }

    #[test]
    fn a_melody_with_harmonics_is_not_read_a_fifth_high() {
        // One line of notes in G major (the tonic and its triad longest, as in a folk tune), each with
        // harmonics 1 to 6, the h-th at 1/h of the power: their third harmonics sound the scale a fifth up,
        // in D (the profile without harmonics reads D major).
        let (sr, n_fft, hop) = (22050.0, 2048, 512);
        let mut c = ChromaFrames::new(sr as u32, n_fft, hop);
        for (note, seconds) in [(67, 4.0), (69, 2.0), (71, 3.0), (72, 1.0), (74, 3.0), (76, 2.0), (78, 1.0), (79, 2.0), (62, 2.0)] {
            let mut f = vec![0f32; n_fft / 2 + 1];
            for h in 1..=6 {
                let p = frame(&[h as f32 * hz(note as f32)], n_fft, sr);
                f.iter_mut().zip(&p).for_each(|(a, b)| *a += b / h as f32);
            }
            for _ in 0..(seconds * sr / hop as f32) as usize {
                c.push(&f);
            }
        }
        let k = estimate_key(&c);
        assert_eq!(k.key.map(|k| k.name()), Some("G major".to_string()), "{k:?}");
    }

    #[test]
    fn silence_and_every_note_at_once_are_unclear() {
        let k = estimate_key(&chords(&[&[]], 10.0));
        assert_eq!(k.key, None);
        let all: Vec<i32> = (60..72).collect();
        let k = estimate_key(&chords(&[&all], 10.0));
        assert_eq!(k.key, None, "{k:?}");
    }

    #[test]
    fn a_modulation_is_found_where_it_happens() {
        let c_major: &[&[i32]] = &[&[60, 64, 67], &[65, 69, 72], &[67, 71, 74], &[60, 64, 67]];
        let e_major: Vec<Vec<i32>> = c_major.iter().map(|ch| ch.iter().map(|n| n + 4).collect()).collect();
        let mut prog: Vec<&[i32]> = c_major.repeat(4);
        let e: Vec<&[i32]> = e_major.iter().map(Vec::as_slice).collect();
        prog.extend(e.repeat(5));
        let k = estimate_key(&chords(&prog, 2.0));
        let at = k.changes_at_s.expect("a change");
        assert!((at - 32.0).abs() <= 5.0, "{k:?}");
        assert_eq!(k.key.map(|k| k.to_string()), Some("12B".into()), "the longer part, E major: {k:?}");
    }
}
