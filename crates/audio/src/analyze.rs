//! File -> log-mel, in one streaming pass, with the minimum-duration and silence rules applied.

use std::path::Path;

use crate::{decode::stream_mono_and_source, AudioError, FrontendConfig, LogMel, MelStream, Result, SourceInfo, Tiles};

/// A file's spectrogram and what the decoder learnt about it.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Log-mel spectrogram `[n_mels, n_frames]` in dB.
    pub mel: LogMel,
    /// Source rate, channels, duration, skipped packets, tags.
    pub info: SourceInfo,
    /// Tempo, key and loudness ([`analyze_file_with_facts`]; `None` from [`analyze_file`]).
    pub facts: Option<soundalike_facts::Facts>,
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
    analyze(path, cfg, false)
}

/// [`analyze_file`], and in the same pass the song's tempo, key and loudness ([`Analysis::facts`]).
pub fn analyze_file_with_facts(path: &Path, cfg: &FrontendConfig) -> Result<Analysis> {
    analyze(path, cfg, true)
}

fn analyze(path: &Path, cfg: &FrontendConfig, facts: bool) -> Result<Analysis> {
    cfg.validate()?;
    let mel = MelStream::new(cfg);
    let mel = std::cell::RefCell::new(if facts { mel.with_facts(cfg.sample_rate) } else { mel });
    let mut peak = 0f32;
    let info = stream_mono_and_source(
        path,
        cfg.sample_rate,
        cfg.max_duration_s,
        |chunk| {
            peak = chunk.iter().fold(peak, |p, s| p.max(s.abs()));
            mel.borrow_mut().push(chunk);
        },
        |packet, channels, rate| {
            if facts {
                mel.borrow_mut().push_source(packet, channels, rate);
            }
        },
    )?;
    let mel = mel.into_inner();
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
    let (mel, facts) = mel.finish_with_facts(cfg.sample_rate);
    Ok(Analysis { mel, info, facts })
}
