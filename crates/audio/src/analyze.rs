//! File -> log-mel, in one streaming pass, with the minimum-duration and silence rules applied.

use std::path::Path;

use crate::{decode::stream_mono_and_source, AudioError, FrontendConfig, LogMel, MelStream, Result, SourceInfo, StreamResampler, Tiles};

/// A file's spectrogram and what the decoder learnt about it.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Log-mel spectrogram `[n_mels, n_frames]` in dB.
    pub mel: LogMel,
    /// Source rate, channels, duration, skipped packets, tags.
    pub info: SourceInfo,
    /// Tempo, key and loudness ([`analyze_file_with_facts`]; `None` from [`analyze_file`]).
    pub facts: Option<soundalike_facts::Facts>,
    /// The second spectrogram [`Extras::power_mel`] asked for.
    pub power_mel: Option<PowerMel>,
}

/// What the decode pass computes beside the log-mel ([`analyze_file_with`]).
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Tempo, key and loudness ([`Analysis::facts`]).
    pub facts: bool,
    /// A second mel spectrogram from the same decode, at these settings (rate, FFT, hop, bands; the dB
    /// settings are not used), as mel power: what the tagger reads. The source's channels are averaged
    /// and resampled to its rate on their own, not from the first spectrogram's rate.
    pub power_mel: Option<FrontendConfig>,
}

/// Mel power, time-major (librosa's `melspectrogram(...).T`).
#[derive(Clone, Debug, PartialEq)]
pub struct PowerMel {
    /// Mel bands.
    pub n_mels: usize,
    /// Frames.
    pub n_frames: usize,
    /// `[n_frames][n_mels]`.
    pub data: Vec<f32>,
}

/// The second spectrogram's stream: source packets -> mono -> its rate -> mel power.
struct SecondMel {
    cfg: FrontendConfig,
    resampler: Option<StreamResampler>,
    failed: bool,
    mono: Vec<f32>,
    out: Vec<f32>,
    mel: MelStream,
}

impl SecondMel {
    fn new(cfg: &FrontendConfig) -> Self {
        SecondMel { cfg: cfg.clone(), resampler: None, failed: false, mono: Vec::new(), out: Vec::new(), mel: MelStream::new(cfg) }
    }

    fn push(&mut self, interleaved: &[f32], channels: usize, rate: u32) {
        if self.failed || channels == 0 {
            return;
        }
        if self.resampler.is_none() {
            match StreamResampler::new(rate, self.cfg.sample_rate) {
                Ok(r) => self.resampler = Some(r),
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        }
        self.mono.clear();
        crate::decode::downmix_into(interleaved, channels, &mut self.mono);
        if let Some(r) = self.resampler.as_mut() {
            r.push(&self.mono, &mut self.out);
        }
        self.mel.push(&self.out);
        self.out.clear();
    }

    fn finish(mut self) -> Option<PowerMel> {
        let mut r = self.resampler.take()?;
        r.finish(&mut self.out);
        self.mel.push(&self.out);
        let n_mels = self.cfg.n_mels;
        let (n_frames, data) = self.mel.finish_power();
        (!self.failed).then_some(PowerMel { n_mels, n_frames, data })
    }
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
    analyze_file_with(path, cfg, &Extras::default())
}

/// [`analyze_file`], and in the same pass the song's tempo, key and loudness ([`Analysis::facts`]).
pub fn analyze_file_with_facts(path: &Path, cfg: &FrontendConfig) -> Result<Analysis> {
    analyze_file_with(path, cfg, &Extras { facts: true, power_mel: None })
}

/// [`analyze_file`], and in the same pass whatever `extras` asks for.
pub fn analyze_file_with(path: &Path, cfg: &FrontendConfig, extras: &Extras) -> Result<Analysis> {
    cfg.validate()?;
    if let Some(c) = &extras.power_mel {
        c.validate()?;
    }
    let facts = extras.facts;
    let mut second = extras.power_mel.as_ref().map(SecondMel::new);
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
            if let Some(s) = second.as_mut() {
                s.push(packet, channels, rate);
            }
        },
    )?;
    finish(mel.into_inner(), second, peak, info, cfg, path)
}

/// The rules and the last frames of both analyses: too short, silent or not finite is an error naming
/// `path`; else the spectrograms, the facts and the source's description.
fn finish(mel: MelStream, second: Option<SecondMel>, peak: f32, info: SourceInfo, cfg: &FrontendConfig, path: &Path) -> Result<Analysis> {
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
    Ok(Analysis { mel, info, facts, power_mel: second.and_then(SecondMel::finish) })
}

/// [`analyze_file_with`] for a mono signal in memory at `rate` Hz (as `load` returns it): the same
/// spectrograms, facts and rules, the signal resampled by the same resampler; `name` stands for the file
/// in errors. A signal at the front end's rate gives exactly what the file it was decoded from gives.
pub fn analyze_samples_with(samples: &[f32], rate: u32, name: &Path, cfg: &FrontendConfig, extras: &Extras) -> Result<Analysis> {
    cfg.validate()?;
    if let Some(c) = &extras.power_mel {
        c.validate()?;
    }
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        return Err(AudioError::Corrupt { path: name.to_path_buf(), reason: format!("sample {i} is {}, not a finite number", samples[i]) });
    }
    let mut mel = MelStream::new(cfg);
    if extras.facts {
        mel = mel.with_facts(cfg.sample_rate);
    }
    let mut second = extras.power_mel.as_ref().map(SecondMel::new);
    let mut resampler = StreamResampler::new(rate, cfg.sample_rate)?;
    let (mut out, mut peak) = (Vec::new(), 0f32);
    let mut feed = |mel: &mut MelStream, out: &mut Vec<f32>| {
        peak = out.iter().fold(peak, |p, s| p.max(s.abs()));
        mel.push(out);
        out.clear();
    };
    // Packet-sized pieces, as the decoder hands a file's samples on.
    for chunk in samples.chunks(4096) {
        if extras.facts {
            mel.push_source(chunk, 1, rate);
        }
        if let Some(s) = second.as_mut() {
            s.push(chunk, 1, rate);
        }
        resampler.push(chunk, &mut out);
        feed(&mut mel, &mut out);
    }
    resampler.finish(&mut out);
    feed(&mut mel, &mut out);
    let info = SourceInfo { sample_rate: rate, channels: 1, duration_s: samples.len() as f64 / rate.max(1) as f64, ..SourceInfo::default() };
    finish(mel, second, peak, info, cfg, name)
}
