//! Integrated loudness (EBU R128, with the `ebur128` crate) and sample peak of the source as decoded.

use crate::Loudness;

/// Loudness of a stream of interleaved samples.
pub struct LoudnessMeter {
    meter: Option<ebur128::EbuR128>,
    channels: usize,
    rate: u32,
    peak: f32,
}

impl LoudnessMeter {
    /// For `channels` interleaved at `rate`.
    pub fn new(channels: usize, rate: u32) -> Self {
        let meter = ebur128::EbuR128::new(channels.max(1) as u32, rate.max(1), ebur128::Mode::I).ok();
        LoudnessMeter { meter, channels, rate, peak: 0.0 }
    }

    /// Interleaved samples; a packet with another layout than the first (rare: a chained stream) counts
    /// towards the peak only.
    pub fn push(&mut self, interleaved: &[f32], channels: usize, rate: u32) {
        self.peak = interleaved.iter().fold(self.peak, |p, s| p.max(s.abs()));
        if channels == self.channels && rate == self.rate {
            if let Some(m) = self.meter.as_mut() {
                let _ = m.add_frames_f32(interleaved);
            }
        }
    }

    /// The measurement; `None` when nothing was pushed.
    pub fn finish(self) -> Option<Loudness> {
        let lufs = self.meter.as_ref().and_then(|m| m.loudness_global().ok()).filter(|l| l.is_finite()).map(|l| ((l * 10.0).round() / 10.0) as f32);
        let peak_db = if self.peak > 0.0 { ((20.0 * self.peak.log10()) * 10.0).round() / 10.0 } else { f32::NEG_INFINITY };
        (peak_db.is_finite() || lufs.is_some()).then_some(Loudness { lufs, peak_db: peak_db.max(-200.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scale_1k_sine_reads_about_minus_three_lufs() {
        // EBU Tech 3341: a 997 Hz sine at 0 dBFS on one channel of... measured mono here: -3.01 LUFS.
        let rate = 48000;
        let x: Vec<f32> = (0..rate * 5).map(|i| (2.0 * std::f32::consts::PI * 997.0 * i as f32 / rate as f32).sin()).collect();
        let mut m = LoudnessMeter::new(1, rate as u32);
        m.push(&x, 1, rate as u32);
        let l = m.finish().unwrap();
        assert!((l.lufs.unwrap() + 3.0).abs() < 0.2, "{l:?}");
        assert!(l.peak_db.abs() < 0.01, "{l:?}");
        // 20 dB quieter reads 20 LU lower.
        let quiet: Vec<f32> = x.iter().map(|v| v * 0.1).collect();
        let mut m = LoudnessMeter::new(1, rate as u32);
        m.push(&quiet, 1, rate as u32);
        assert!((m.finish().unwrap().lufs.unwrap() + 23.0).abs() < 0.2);
        // Silence: no loudness, and no NaN.
        let mut m = LoudnessMeter::new(2, 44100);
        m.push(&[0.0; 88200], 2, 44100);
        assert_eq!(m.finish().map(|l| l.lufs), None);
    }
}
