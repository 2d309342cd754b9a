//! Front-end settings. They are saved inside every model and every store, so `embed` always computes
//! exactly what training computed.

use serde::{Deserialize, Serialize};

use crate::{AudioError, Result};

/// Settings of the decode -> log-mel -> tiles pipeline.
///
/// The defaults match librosa's `load(sr=22050)` + `feature.melspectrogram()` + `power_to_db(ref=1.0)`:
/// n_fft 2048, hop 512, periodic Hann window, `center=True` with zero padding, power 2, 128 Slaney mel bands
/// with Slaney area normalisation, `amin=1e-10`, `top_db=80`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    /// Target sample rate in Hz; everything is resampled to it.
    pub sample_rate: u32,
    /// FFT size (= window length) in samples.
    pub n_fft: usize,
    /// Hop between STFT frames in samples.
    pub hop_length: usize,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Lowest filter edge in Hz.
    pub fmin: f64,
    /// Highest filter edge in Hz; `None` means `sample_rate / 2`.
    pub fmax: Option<f64>,
    /// Floor of the power before the logarithm.
    pub amin: f32,
    /// Dynamic range kept below the loudest bin of the file, in dB; `None` keeps everything.
    pub top_db: Option<f32>,
    /// Tile height is `n_mels`; this is its width in STFT frames.
    pub tile_frames: usize,
    /// Hop between the starts of consecutive tiles, in frames.
    pub tile_hop: usize,
    /// Files with less audio than this are refused; between this and one tile they are padded with the dB
    /// floor to one full tile.
    pub min_duration_s: f64,
    /// Stop decoding after this many seconds (`None`: whole file). Bounds time and memory on huge files.
    pub max_duration_s: Option<f64>,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            sample_rate: 22_050,
            n_fft: 2048,
            hop_length: 512,
            n_mels: 128,
            fmin: 0.0,
            fmax: None,
            amin: 1e-10,
            top_db: Some(80.0),
            tile_frames: 128,
            tile_hop: 128,
            min_duration_s: 1.0,
            max_duration_s: None,
        }
    }
}

impl FrontendConfig {
    /// The 2017 original's slices: 256 mel bands x 256 frames (about 5.9 s at hop 512), no overlap.
    pub fn original_2017() -> Self {
        FrontendConfig { n_mels: 256, tile_frames: 256, tile_hop: 256, ..Self::default() }
    }

    /// Upper filter edge actually used.
    pub fn fmax(&self) -> f64 {
        self.fmax.unwrap_or(self.sample_rate as f64 / 2.0)
    }

    /// Seconds covered by one tile.
    pub fn tile_seconds(&self) -> f64 {
        (self.tile_frames * self.hop_length) as f64 / self.sample_rate as f64
    }

    /// Rejects settings that would make later stages panic or produce nonsense.
    // `!(x >= 0.0)` on purpose: it also rejects NaN.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(AudioError::Config(m));
        if !(1000..=384_000).contains(&self.sample_rate) {
            return bad(format!("sample_rate {} outside 1000..=384000", self.sample_rate));
        }
        if self.n_fft < 16 || self.n_fft > 65_536 {
            return bad(format!("n_fft {} outside 16..=65536", self.n_fft));
        }
        if self.hop_length == 0 || self.hop_length > self.n_fft {
            return bad(format!("hop_length {} must be in 1..=n_fft", self.hop_length));
        }
        if self.n_mels == 0 || self.n_mels > 1024 {
            return bad(format!("n_mels {} outside 1..=1024", self.n_mels));
        }
        let fmax = self.fmax();
        if !(self.fmin >= 0.0 && self.fmin < fmax && fmax <= self.sample_rate as f64 / 2.0 + 1e-9) {
            return bad(format!("need 0 <= fmin < fmax <= sr/2, got fmin {} fmax {fmax}", self.fmin));
        }
        if !(self.amin > 0.0) {
            return bad("amin must be > 0".into());
        }
        if matches!(self.top_db, Some(t) if !(t >= 0.0)) {
            return bad("top_db must be >= 0".into());
        }
        if self.tile_frames == 0 || self.tile_hop == 0 {
            return bad("tile_frames and tile_hop must be > 0".into());
        }
        if !(self.min_duration_s >= 0.0) {
            return bad("min_duration_s must be >= 0".into());
        }
        if matches!(self.max_duration_s, Some(m) if !(m > 0.0)) {
            return bad("max_duration_s must be > 0".into());
        }
        Ok(())
    }
}
