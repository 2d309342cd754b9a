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
    /// The log-mel is not wanted: [`Analysis::mel`] comes back empty (no frames), and its FFTs are not
    /// computed. The rules (too short, silent) still apply. Ignored when `facts` is asked for: they read
    /// the log-mel's frames.
    pub no_log_mel: bool,
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
    analyze_file_with(path, cfg, &Extras { facts: true, ..Extras::default() })
}

/// [`analyze_file`], and in the same pass whatever `extras` asks for.
pub fn analyze_file_with(path: &Path, cfg: &FrontendConfig, extras: &Extras) -> Result<Analysis> {
    let pass = std::cell::RefCell::new(Pass::new(cfg, extras)?);
    let info = stream_mono_and_source(
        path,
        cfg.sample_rate,
        cfg.max_duration_s,
        |chunk| pass.borrow_mut().mono(chunk),
        |packet, channels, rate| pass.borrow_mut().source(packet, channels, rate),
    )?;
    pass.into_inner().finish(info, cfg, path)
}

/// One analysis pass over a signal: the log-mel (and the facts' estimators, when asked) fed the mono
/// signal at the front end's rate, the loudness meter and the second spectrogram fed the source as it is.
struct Pass {
    mel: MelStream,
    second: Option<SecondMel>,
    facts: bool,
    peak: f32,
}

impl Pass {
    /// Checks the settings and starts the spectrograms `extras` asks for.
    fn new(cfg: &FrontendConfig, extras: &Extras) -> Result<Pass> {
        cfg.validate()?;
        if let Some(c) = &extras.power_mel {
            c.validate()?;
        }
        let mel = MelStream::new(cfg);
        let mel = match (extras.facts, extras.no_log_mel) {
            (true, _) => mel.with_facts(cfg.sample_rate),
            (false, true) => mel.counting_only(),
            (false, false) => mel,
        };
        Ok(Pass { mel, second: extras.power_mel.as_ref().map(SecondMel::new), facts: extras.facts, peak: 0.0 })
    }

    /// Mono samples at the front end's rate.
    fn mono(&mut self, chunk: &[f32]) {
        self.peak = chunk.iter().fold(self.peak, |p, s| p.max(s.abs()));
        self.mel.push(chunk);
    }

    /// A piece of the source as it is (interleaved `channels` at `rate`).
    fn source(&mut self, packet: &[f32], channels: usize, rate: u32) {
        if self.facts {
            self.mel.push_source(packet, channels, rate);
        }
        if let Some(s) = self.second.as_mut() {
            s.push(packet, channels, rate);
        }
    }

    /// The rules and the last frames of both spectrograms: too short, silent or not finite is an error
    /// naming `path`; else the spectrograms, the facts and the source's description.
    fn finish(self, info: SourceInfo, cfg: &FrontendConfig, path: &Path) -> Result<Analysis> {
        let seconds = self.mel.samples() as f64 / cfg.sample_rate as f64;
        if seconds < cfg.min_duration_s || self.mel.samples() == 0 {
            return Err(AudioError::TooShort { path: path.to_path_buf(), seconds, min_seconds: cfg.min_duration_s });
        }
        if self.peak == 0.0 {
            return Err(AudioError::Silent { path: path.to_path_buf(), seconds });
        }
        if !self.peak.is_finite() {
            return Err(AudioError::Corrupt { path: path.to_path_buf(), reason: "non-finite samples".into() });
        }
        let (mel, facts) = self.mel.finish_with_facts(cfg.sample_rate);
        Ok(Analysis { mel, info, facts, power_mel: self.second.and_then(SecondMel::finish) })
    }
}

/// [`analyze_file_with`] for a mono signal in memory at `rate` Hz (as `load` returns it): the same
/// spectrograms, facts and rules, the signal resampled by the same resampler; `name` stands for the file
/// in errors. A signal at the front end's rate gives exactly what the file it was decoded from gives.
pub fn analyze_samples_with(samples: &[f32], rate: u32, name: &Path, cfg: &FrontendConfig, extras: &Extras) -> Result<Analysis> {
    let mut pass = Pass::new(cfg, extras)?;
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        return Err(AudioError::Corrupt { path: name.to_path_buf(), reason: format!("sample {i} is {}, not a finite number", samples[i]) });
    }
    let mut resampler = StreamResampler::new(rate, cfg.sample_rate)?;
    let mut out = Vec::new();
    // Packet-sized pieces, as the decoder hands a file's samples on.
    for chunk in samples.chunks(4096) {
        pass.source(chunk, 1, rate);
        resampler.push(chunk, &mut out);
        pass.mono(&out);
        out.clear();
    }
    resampler.finish(&mut out);
    pass.mono(&out);
    let info = SourceInfo { sample_rate: rate, channels: 1, duration_s: samples.len() as f64 / rate.max(1) as f64, ..SourceInfo::default() };
    pass.finish(info, cfg, name)
}
