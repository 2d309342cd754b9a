//! Integrated loudness (ITU-R BS.1770-4 / EBU R128: K-weighting, 400 ms blocks every 100 ms, the absolute
//! gate at -70 LUFS and the relative gate 10 LU below), the sample peak of the source as decoded, and its
//! true peak (BS.1770-4 Annex 2: each channel oversampled 4x below 96 kHz, 2x below 192 kHz, by a 48-tap
//! windowed-sinc interpolator, the design libebur128 uses; the peaks a DAC or a lossy encoder sees between
//! the samples of a loud master).
//!
//! Written here rather than taken from the `ebur128` crate (about 19 ns a sample inside `embed` on these
//! machines, against 12 ns for this one: `embed`'s budget for all the facts is a quarter of its time, and
//! loudness was the largest part); both are bound by the two filters' serial dependency per channel. The
//! true peak runs its interpolator 64 outputs at a time as vector multiply-adds, where the crate's runs
//! sample by sample (`cargo run --release -p soundalike-facts --example bench_loudness`). It is checked
//! against that crate in the tests (within 0.06 LU on mono and stereo, quiet and loud, gated material at
//! 22,050, 44,100 and 48,000 Hz; the true peak within 0.05 dB, at 96 kHz too).

use crate::Loudness;

/// A biquad in direct form I, state in f64 (the 38 Hz high-pass has poles close to the unit circle).
#[derive(Clone, Copy, Default)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 3],
    x: [f64; 2],
    y: [f64; 2],
}

impl Biquad {
    #[inline]
    fn run(&mut self, x0: f64) -> f64 {
        let y0 = self.b[0] * x0 + self.b[1] * self.x[0] + self.b[2] * self.x[1] - self.a[1] * self.y[0] - self.a[2] * self.y[1];
        self.x = [x0, self.x[0]];
        self.y = [y0, self.y[0]];
        y0
    }
}

/// The two K-weighting stages (a high shelf around 1.7 kHz, then a 38 Hz high-pass) at `rate`, from the
/// analogue prototypes BS.1770 specifies (the coefficients libebur128 derives).
fn k_weighting(rate: f64) -> [Biquad; 2] {
    let (f0, g, q) = (1681.974450955533, 3.999843853973347, 0.7071752369554196);
    let k = (std::f64::consts::PI * f0 / rate).tan();
    let vh = 10f64.powf(g / 20.0);
    let vb = vh.powf(0.4996667741545416);
    let a0 = 1.0 + k / q + k * k;
    let shelf = Biquad {
        b: [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0],
        a: [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
        ..Default::default()
    };
    let (f0, q) = (38.13547087602444, 0.5003270373238773);
    let k = (std::f64::consts::PI * f0 / rate).tan();
    let a0 = 1.0 + k / q + k * k;
    let high_pass = Biquad { b: [1.0, -2.0, 1.0], a: [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0], ..Default::default() };
    [shelf, high_pass]
}

/// Loudness of a stream of interleaved samples.
pub struct LoudnessMeter {
    channels: usize,
    rate: u32,
    filters: Vec<[Biquad; 2]>,
    /// Each channel's weight (BS.1770: 1, the surrounds of 5.1 1.41, the LFE 0).
    weights: Vec<f64>,
    /// Samples a channel has in a 100 ms sub-block, and how many of the current one are in.
    sub_len: usize,
    in_sub: usize,
    /// The current sub-block's weighted sum of squares.
    sub_sum: f64,
    /// Weighted sums of squares of every finished sub-block.
    subs: Vec<f64>,
    peak: f32,
    true_peak: TruePeak,
}

/// The true-peak meter: each channel's samples through the polyphase interpolator's fractional phases
/// (phase 0 is the sample itself, which the sample peak already covers).
struct TruePeak {
    /// Coefficients of phases 1..factor, `taps` each, the newest sample's first.
    phases: Vec<Vec<f32>>,
    /// The most any phase can amplify: the largest sum of a phase's |coefficients|.
    gain: f32,
    /// Each channel's last `taps - 1` samples, oldest first.
    history: Vec<Vec<f32>>,
    /// Scratch: one channel's history and packet, contiguous.
    line: Vec<f32>,
    /// The largest magnitude seen so far, of a sample or between samples.
    peak: f32,
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
}

/// Taps of the whole interpolator (all phases together), as BS.1770-4's example filter and libebur128 have.
const TRUE_PEAK_TAPS: usize = 48;
/// Interpolated outputs computed together (their accumulators fit in registers).
const BLOCK: usize = 64;

impl TruePeak {
    fn new(channels: usize, rate: u32) -> Self {
        let factor = match rate {
            0..96_000 => 4,
            96_000..192_000 => 2,
            _ => 1,
        };
        let taps = TRUE_PEAK_TAPS / factor;
        // A Hann-windowed sinc cut at the original Nyquist, 49 points of which the first 48 are used: the
        // coefficient j belongs to phase j % factor, tap j / factor.
        let h = |j: usize| {
            let w = 0.5 * (1.0 - (2.0 * std::f64::consts::PI * j as f64 / TRUE_PEAK_TAPS as f64).cos());
            let m = (j as f64 - TRUE_PEAK_TAPS as f64 / 2.0) * std::f64::consts::PI / factor as f64;
            if m.abs() < 1e-9 { w } else { w * m.sin() / m }
        };
        let phases: Vec<Vec<f32>> = (1..factor).map(|p| (0..taps).map(|k| h(k * factor + p) as f32).collect()).collect();
        // Rounded up a little, so that skipping by it never skips a block that could hold the peak.
        let gain = phases.iter().map(|c| c.iter().map(|v| v.abs()).sum::<f32>()).fold(0.0, f32::max) * 1.001;
        TruePeak {
            phases,
            gain,
            history: vec![vec![0.0; taps - 1]; channels],
            line: Vec::new(),
            peak: 0.0,
            #[cfg(target_arch = "x86_64")]
            avx2: std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
        }
    }

    /// Channel `channel`'s samples of `interleaved` (`channels` interleaved).
    fn push(&mut self, channel: usize, interleaved: &[f32], channels: usize) {
        if self.phases.is_empty() {
            return;
        }
        let history = &mut self.history[channel];
        let keep = history.len();
        self.line.clear();
        self.line.extend_from_slice(history);
        self.line.extend(interleaved[channel..].iter().step_by(channels));
        let n = self.line.len() - keep;
        for start in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - start);
            // The block's outputs read these samples; no output can exceed their peak times the gain, so a
            // block that cannot beat the peak so far is skipped (most of a song, once its loudest moment
            // has passed).
            let inputs = &self.line[start..start + keep + len];
            let most = inputs.iter().fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
            self.peak = self.peak.max(most);
            if most * self.gain <= self.peak {
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if self.avx2 {
                // SAFETY: the CPU has AVX2 and FMA (checked in `new`).
                self.peak = self.peak.max(unsafe { block_peak_avx2(&self.phases, inputs, keep) });
                continue;
            }
            self.peak = self.peak.max(block_peak(&self.phases, inputs, keep));
        }
        let tail = self.line.len() - keep;
        history.copy_from_slice(&self.line[tail..]);
    }
}

/// The largest magnitude of the interpolated outputs between `inputs[keep..]` and the sample before each
/// (`inputs` starts `keep` = taps - 1 samples early), every tap a vector multiply-add over the block.
#[inline(always)]
fn block_peak(phases: &[Vec<f32>], inputs: &[f32], keep: usize) -> f32 {
    let len = inputs.len() - keep;
    let mut lanes = [0f32; BLOCK];
    for phase in phases {
        let mut acc = [0f32; BLOCK];
        for (k, &c) in phase.iter().enumerate() {
            let src = &inputs[keep - k..keep - k + len];
            acc[..len].iter_mut().zip(src).for_each(|(a, &x)| *a += c * x);
        }
        lanes.iter_mut().zip(&acc).for_each(|(m, a)| *m = if a.abs() > *m { a.abs() } else { *m });
    }
    lanes.iter().fold(0f32, |p, &m| p.max(m))
}

/// [`block_peak`] compiled for AVX2 and FMA (the crate is built for baseline x86-64, whose 4-wide SSE
/// doubled the meter's time).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_peak_avx2(phases: &[Vec<f32>], inputs: &[f32], keep: usize) -> f32 {
    block_peak(phases, inputs, keep)
}

impl LoudnessMeter {
    /// For `channels` interleaved at `rate`.
    pub fn new(channels: usize, rate: u32) -> Self {
        let channels = channels.max(1);
        let weights = (0..channels).map(|c| if channels == 6 && c == 3 { 0.0 } else if channels == 6 && c >= 4 { 1.41 } else { 1.0 }).collect();
        LoudnessMeter {
            channels,
            rate,
            filters: vec![k_weighting(rate.max(1) as f64); channels],
            weights,
            sub_len: (rate as usize / 10).max(1),
            in_sub: 0,
            sub_sum: 0.0,
            subs: Vec::new(),
            peak: 0.0,
            true_peak: TruePeak::new(channels, rate),
        }
    }

    /// Interleaved samples; a packet with another layout than the first (rare: a chained stream) counts
    /// towards the peak only.
    pub fn push(&mut self, interleaved: &[f32], channels: usize, rate: u32) {
        self.peak = interleaved.iter().fold(self.peak, |p, s| p.max(s.abs()));
        if channels != self.channels || rate != self.rate {
            return;
        }
        // Channel by channel over the packet, each channel's filter state in locals (not written back to
        // memory every sample, which put a store and a reload on the filters' serial chain); the weighted
        // squares are summed per 100-ms sub-block, whose boundaries every channel shares.
        let frames = interleaved.len() / channels;
        let first = self.sub_len - self.in_sub; // frames that complete the current sub-block
        let blocks = if frames < first { 1 } else { 2 + (frames - first) / self.sub_len };
        let mut sums = vec![0f64; blocks];
        for (c, (f, &w)) in self.filters.iter_mut().zip(&self.weights).enumerate() {
            // Every channel's true peak, the LFE's too (it weighs nothing in the loudness only).
            self.true_peak.push(c, interleaved, channels);
            if w == 0.0 {
                continue;
            }
            let [mut shelf, mut high_pass] = *f;
            let (mut block, mut left, mut acc) = (0, first, 0f64);
            for &x in interleaved[c..].iter().step_by(channels).take(frames) {
                let y = high_pass.run(shelf.run(x as f64));
                acc += y * y;
                left -= 1;
                if left == 0 {
                    sums[block] += w * acc;
                    (block, left, acc) = (block + 1, self.sub_len, 0.0);
                }
            }
            sums[block] += w * acc;
            *f = [shelf, high_pass];
        }
        // sums[0] completes the current sub-block when the packet reaches its end; whole sub-blocks follow;
        // the last entry is the start of the next one.
        let mut done = frames;
        let mut i = 0;
        if frames >= first {
            self.subs.push(self.sub_sum + sums[0]);
            (self.sub_sum, self.in_sub) = (0.0, 0);
            done -= first;
            i = 1;
            while done >= self.sub_len {
                self.subs.push(sums[i]);
                done -= self.sub_len;
                i += 1;
            }
        }
        self.sub_sum += sums[i];
        self.in_sub += done;
    }

    /// The measurement; `None` when nothing was pushed.
    pub fn finish(self) -> Option<Loudness> {
        let block = 4.0 * self.sub_len as f64;
        // 400 ms blocks, one every 100 ms: each the mean of four sub-blocks' weighted squares.
        let blocks: Vec<f64> = self.subs.windows(4).map(|w| w.iter().sum::<f64>() / block).collect();
        let lufs = |z: f64| -0.691 + 10.0 * z.log10();
        let gated_mean = |min: f64| {
            let kept: Vec<f64> = blocks.iter().copied().filter(|&z| z > 0.0 && lufs(z) > min).collect();
            (!kept.is_empty()).then(|| kept.iter().sum::<f64>() / kept.len() as f64)
        };
        let integrated = gated_mean(-70.0).and_then(|z| gated_mean(lufs(z) - 10.0)).map(lufs);
        let lufs = integrated.filter(|l| l.is_finite()).map(|l| ((l * 10.0).round() / 10.0) as f32);
        let db = |peak: f32| if peak > 0.0 { ((20.0 * peak.log10()) * 10.0).round() / 10.0 } else { f32::NEG_INFINITY };
        let peak_db = db(self.peak);
        // The interpolator's phases only add to the samples' own peak (a channel of another layout than
        // the first, rare, counts towards the sample peak only).
        let true_peak_db = db(self.peak.max(self.true_peak.peak)).max(-200.0);
        (peak_db.is_finite() || lufs.is_some()).then_some(Loudness { lufs, peak_db: peak_db.max(-200.0), true_peak_db: Some(true_peak_db) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(x: &[f32], channels: usize, rate: u32) -> f64 {
        let mut m = ebur128::EbuR128::new(channels as u32, rate, ebur128::Mode::I).unwrap();
        m.add_frames_f32(x).unwrap();
        m.loudness_global().unwrap()
    }

    #[test]
    fn a_full_scale_1k_sine_reads_about_minus_three_lufs() {
        // EBU Tech 3341: a 997 Hz sine at 0 dBFS measured on one channel: -3.01 LUFS.
        let rate = 48000;
        let x: Vec<f32> = (0..rate * 5).map(|i| (2.0 * std::f32::consts::PI * 997.0 * i as f32 / rate as f32).sin()).collect();
        let mut m = LoudnessMeter::new(1, rate as u32);
        m.push(&x, 1, rate as u32);
        let l = m.finish().unwrap();
        assert!((l.lufs.unwrap() + 3.0).abs() < 0.1, "{l:?}");
        assert!(l.peak_db.abs() < 0.01, "{l:?}");
        // Silence: no loudness, and no NaN.
        let mut m = LoudnessMeter::new(2, 44100);
        m.push(&[0.0; 88200], 2, 44100);
        assert_eq!(m.finish().map(|l| l.lufs), None);
    }

    #[test]
    fn any_packet_size_gives_the_same_sub_blocks() {
        // 5.1 at 44.1 kHz (the LFE weighs nothing), pushed whole and in packets of 1, 7 and 1152 frames.
        let (channels, rate) = (6usize, 44100u32);
        let x: Vec<f32> = noise(rate as usize * 2 * channels + 5 * channels, 3).iter().map(|v| v * 0.3).collect();
        let subs = |frames: usize| {
            let mut m = LoudnessMeter::new(channels, rate);
            for chunk in x.chunks(frames * channels) {
                m.push(chunk, channels, rate);
            }
            (m.subs, m.in_sub, m.sub_sum)
        };
        let whole = subs(x.len());
        assert_eq!(whole.0.len(), 20);
        assert_eq!(whole.1, 5);
        for frames in [1, 7, 1152] {
            let got = subs(frames);
            assert_eq!((got.0.len(), got.1), (whole.0.len(), whole.1), "{frames}-frame packets");
            for (a, b) in got.0.iter().zip(&whole.0).chain([(&got.2, &whole.2)]) {
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-12), "{frames}-frame packets: {a} vs {b}");
            }
        }
    }

    #[test]
    fn agrees_with_the_ebur128_crate() {
        for (channels, rate, gain, seconds) in [(1usize, 22050u32, 0.5f32, 8.0f32), (2, 44100, 0.1, 6.0), (2, 48000, 0.9, 5.0), (1, 44100, 0.01, 10.0)] {
            let n = (rate as f32 * seconds) as usize * channels;
            // Noise whose level swells and falls, with a quiet stretch the gates must drop.
            let x: Vec<f32> = noise(n, rate + channels as u32)
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let t = (i / channels) as f32 / rate as f32;
                    let swell = if (2.0..3.0).contains(&t) { 0.001 } else { 0.5 + 0.5 * (t * 1.3).sin() };
                    v * gain * swell * if i % channels == 1 { 0.5 } else { 1.0 }
                })
                .collect();
            let mut m = LoudnessMeter::new(channels, rate);
            for chunk in x.chunks(1152 * channels) {
                m.push(chunk, channels, rate);
            }
            let ours = m.finish().unwrap().lufs.unwrap() as f64;
            let theirs = reference(&x, channels, rate);
            assert!((ours - theirs).abs() < 0.06, "{channels} ch at {rate} Hz: ours {ours}, ebur128 {theirs}");
        }
    }

    /// Our true peak, whole and in 1152-frame packets (which must agree), and the ebur128 crate's, in dBTP.
    fn true_peaks(x: &[f32], channels: usize, rate: u32) -> (f32, f32, f64) {
        let run = |frames: usize| {
            let mut m = LoudnessMeter::new(channels, rate);
            for chunk in x.chunks(frames * channels) {
                m.push(chunk, channels, rate);
            }
            m.finish().unwrap().true_peak_db.unwrap()
        };
        let mut r = ebur128::EbuR128::new(channels as u32, rate, ebur128::Mode::TRUE_PEAK).unwrap();
        r.add_frames_f32(x).unwrap();
        let theirs = (0..channels as u32).map(|c| r.true_peak(c).unwrap()).fold(0.0, f64::max);
        (run(x.len() / channels), run(1152), 20.0 * theirs.log10())
    }

    #[test]
    fn true_peak_finds_the_peak_between_samples() {
        // A sine at a quarter of the rate, 45 degrees off the samples: every sample reads 0.707 (-3.0 dBFS),
        // the waveform reaches 1.0 (0 dBTP) half-way between them.
        for rate in [44100u32, 48000] {
            let x: Vec<f32> = (0..rate).map(|i| (std::f32::consts::FRAC_PI_2 * i as f32 + std::f32::consts::FRAC_PI_4).sin()).collect();
            let mut m = LoudnessMeter::new(1, rate);
            m.push(&x, 1, rate);
            let l = m.finish().unwrap();
            assert!((l.peak_db + 3.0).abs() < 0.1, "{rate}: {l:?}");
            assert!(l.true_peak_db.unwrap().abs() < 0.2, "{rate}: {l:?}");
            let (whole, packets, theirs) = true_peaks(&x, 1, rate);
            assert_eq!(whole, packets);
            assert!((whole as f64 - theirs).abs() < 0.05, "{rate}: ours {whole}, ebur128 {theirs}");
        }
    }

    #[test]
    fn true_peak_agrees_with_the_ebur128_crate() {
        // Noise near full scale (stereo, the second channel louder), and a 96 kHz file (2x oversampled).
        // The 22,050 Hz case swells and falls, so that most blocks are skipped as unable to beat the peak.
        for (channels, rate, gain) in [(2usize, 44100u32, 0.9f32), (1, 48000, 0.5), (2, 96000, 0.7), (1, 22050, 0.3)] {
            let swell = |i: usize| if rate == 22050 { (std::f32::consts::PI * i as f32 / (rate as f32 * 3.0)).sin().powi(4) } else { 1.0 };
            let x: Vec<f32> = noise(rate as usize * 3 * channels, rate + 7).iter().enumerate().map(|(i, v)| v * gain * swell(i / channels) * if i % channels == 1 { 1.1 } else { 1.0 }).collect();
            let (whole, packets, theirs) = true_peaks(&x, channels, rate);
            assert_eq!(whole, packets, "{channels} ch at {rate} Hz");
            assert!((whole as f64 - theirs).abs() < 0.05, "{channels} ch at {rate} Hz: ours {whole}, ebur128 {theirs}");
            let sample = 20.0 * x.iter().fold(0f32, |p, v| p.max(v.abs())).log10();
            assert!(whole >= sample - 0.05, "the true peak {whole} under the sample peak {sample}");
        }
    }

    #[test]
    fn the_lfe_counts_towards_the_true_peak() {
        // 5.1 at 48 kHz, silent but for the LFE (channel 3): a sine whose samples sit 3 dB under its crest.
        let rate = 48000u32;
        let x: Vec<f32> = (0..rate as usize * 6)
            .map(|i| if i % 6 == 3 { (std::f32::consts::FRAC_PI_2 * (i / 6) as f32 + std::f32::consts::FRAC_PI_4).sin() } else { 0.0 })
            .collect();
        let mut m = LoudnessMeter::new(6, rate);
        m.push(&x, 6, rate);
        let l = m.finish().unwrap();
        assert!((l.peak_db + 3.0).abs() < 0.1 && l.true_peak_db.unwrap().abs() < 0.2, "{l:?}");
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_avx2_block_gives_the_portable_blocks_peak() {
        if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
            eprintln!("skipped: this CPU has no AVX2 and FMA");
            return;
        }
        let tp = TruePeak::new(1, 44100);
        let x = noise(BLOCK + 11 + 40, 5);
        for len in [BLOCK, 37, 1] {
            let inputs = &x[..11 + len];
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            let fast = unsafe { block_peak_avx2(&tp.phases, inputs, 11) };
            let plain = block_peak(&tp.phases, inputs, 11);
            assert!((fast - plain).abs() <= 1e-5 * plain, "{len}: {fast} vs {plain}");
            assert!(plain > 0.0);
        }
    }
}
