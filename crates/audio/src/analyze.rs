//! File -> log-mel, in one streaming pass, with the minimum-duration and silence rules applied.

use std::path::Path;

use crate::{decode::stream_mono, AudioError, FrontendConfig, LogMel, MelStream, Result, SourceInfo, Tiles};

/// A file's spectrogram and what the decoder learnt about it.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Log-mel spectrogram `[n_mels, n_frames]` in dB.
    pub mel: LogMel,
    /// Source rate, channels, duration, skipped packets, tags.
    pub info: SourceInfo,
}

impl Analysis {
    /// Tiles of this spectrogram under `cfg`.
    pub fn tiles(&self, cfg: &FrontendConfig) -> Tiles {
        crate::make_tiles(&self.mel, cfg)
    }
}

/// Decodes `path` (any format Symphonia reads), resamples to `cfg.sample_rate`, and computes the log-mel
/// spectrogram without holding the decoded signal in memory.
///
/// Rules: less than `cfg.min_duration_s` of audio -> [`AudioError::TooShort`]; all-zero samples ->
/// [`AudioError::Silent`].
pub fn analyze_file(path: &Path, cfg: &FrontendConfig) -> Result<Analysis> {
    cfg.validate()?;
    let mut mel = MelStream::new(cfg);
    let mut peak = 0f32;
    let info = stream_mono(path, cfg.sample_rate, cfg.max_duration_s, |chunk| {
        peak = chunk.iter().fold(peak, |p, s| p.max(s.abs()));
        mel.push(chunk);
    })?;
    let seconds = mel.samples() as f64 / cfg.sample_rate as f64;
    if seconds < cfg.min_duration_s || mel.samples() == 0 {
        return Err(AudioError::TooShort { path: path.to_path_buf(), seconds, min_seconds: cfg.min_duration_s });
    }
    if peak == 0.0 {
        return Err(AudioError::Silent { path: path.to_path_buf(), seconds });
    }
    if !peak.is_finite() {
        return Err(AudioError::Corrupt { path: path.to_path_buf(), reason: "non-finite samples".into() });
    }
    Ok(Analysis { mel: mel.finish(), info })
}
