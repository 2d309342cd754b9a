//! STFT power spectrum (realfft, planned once) -> Slaney mel filterbank -> dB, matching librosa.

use std::sync::Arc;

use realfft::{num_complex::Complex32, RealFftPlanner, RealToComplex};

use crate::FrontendConfig;

/// Slaney-style Hz -> mel (librosa `hz_to_mel(htk=False)`).
pub fn hz_to_mel(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// Slaney-style mel -> Hz (librosa `mel_to_hz(htk=False)`).
pub fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// The mel filterbank of librosa `filters.mel(norm="slaney", htk=False)`, shape `[n_mels, n_fft/2+1]`,
/// row-major. Computed in f64 and rounded to f32 like librosa's default dtype.
pub fn mel_filterbank(sr: u32, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let fftfreqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * sr as f64 / n_fft as f64).collect();
    let (mlo, mhi) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let mel_f: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(mlo + (mhi - mlo) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut w = vec![0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let (f0, f1, f2) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (f2 - f0);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = (f - f0) / (f1 - f0);
            let upper = (f2 - f) / (f2 - f1);
            let v = lower.min(upper).max(0.0);
            w[m * n_bins + k] = (v * enorm) as f32;
        }
    }
    w
}

/// The periodic Hann window (`scipy.signal.get_window("hann", n, fftbins=True)`).
pub fn hann_periodic(n: usize) -> Vec<f32> {
    (0..n).map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32).collect()
}

/// A log-mel spectrogram, row-major `[n_mels, n_frames]`, in dB.
#[derive(Clone, Debug, PartialEq)]
pub struct LogMel {
    /// Number of mel bands (rows).
    pub n_mels: usize,
    /// Number of STFT frames (columns).
    pub n_frames: usize,
    /// Values, `data[m * n_frames + t]`.
    pub data: Vec<f32>,
}

impl LogMel {
    /// Value at band `m`, frame `t`.
    pub fn at(&self, m: usize, t: usize) -> f32 {
        self.data[m * self.n_frames + t]
    }
    /// Largest value.
    pub fn max(&self) -> f32 {
        self.data.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
    /// Smallest value.
    pub fn min(&self) -> f32 {
        self.data.iter().copied().fold(f32::INFINITY, f32::min)
    }

    /// Log-mel statistics, `2 x n_mels` values: each band's mean over time, then each band's standard
    /// deviation, in dB relative to the loudest value (so playback gain does not move them). Empty for a
    /// spectrogram without frames.
    pub fn band_statistics(&self) -> Vec<f32> {
        if self.n_frames == 0 {
            return Vec::new();
        }
        let top = self.max() as f64;
        let n = self.n_frames as f64;
        let rows = self.data.chunks_exact(self.n_frames);
        let means: Vec<f64> = rows.clone().map(|r| r.iter().map(|&v| v as f64 - top).sum::<f64>() / n).collect();
        let sds: Vec<f64> =
            rows.zip(&means).map(|(r, m)| (r.iter().map(|&v| (v as f64 - top - m).powi(2)).sum::<f64>() / n).sqrt()).collect();
        means.iter().chain(&sds).map(|&v| v as f32).collect()
    }
}

/// Streaming log-mel: push samples at the target rate in any chunk sizes, then [`MelStream::finish`].
///
/// `center=True` is reproduced by starting with `n_fft/2` zeros and ending with `n_fft/2` zeros, so the
/// frame count is `1 + n_samples / hop` exactly as in librosa.
pub struct MelStream {
    n_fft: usize,
    hop: usize,
    n_mels: usize,
    n_bins: usize,
    amin: f32,
    top_db: Option<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    filters: Vec<f32>,
    /// Non-zero span of each filter row, so the mel product skips the zeros.
    spans: Vec<(usize, usize)>,
    buf: Vec<f32>,
    frame_in: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    power: Vec<f32>,
    /// Mel power, time-major `[frame][mel]`.
    mel_tm: Vec<f32>,
    n_frames: usize,
    samples: u64,
    /// The musical facts' estimators, fed each frame's power spectrum when asked for.
    facts: Option<soundalike_facts::FactsStream>,
    /// Only count the samples ([`MelStream::counting_only`]).
    count_only: bool,
}

impl MelStream {
    /// Plans the FFT and builds the filterbank for `cfg`.
    pub fn new(cfg: &FrontendConfig) -> Self {
        let n_fft = cfg.n_fft;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
        let n_bins = n_fft / 2 + 1;
        let filters = mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels, cfg.fmin, cfg.fmax());
        let spans = (0..cfg.n_mels)
            .map(|m| {
                let row = &filters[m * n_bins..(m + 1) * n_bins];
                let lo = row.iter().position(|&v| v != 0.0).unwrap_or(0);
                let hi = row.iter().rposition(|&v| v != 0.0).map(|i| i + 1).unwrap_or(0);
                (lo, hi.max(lo))
            })
            .collect();
        MelStream {
            n_fft,
            hop: cfg.hop_length,
            n_mels: cfg.n_mels,
            n_bins,
            amin: cfg.amin,
            top_db: cfg.top_db,
            scratch: fft.make_scratch_vec(),
            spectrum: fft.make_output_vec(),
            frame_in: fft.make_input_vec(),
            fft,
            window: hann_periodic(n_fft),
            filters,
            spans,
            buf: vec![0.0; n_fft / 2],
            power: vec![0.0; n_bins],
            mel_tm: Vec::new(),
            n_frames: 0,
            samples: 0,
            facts: None,
            count_only: false,
        }
    }

    /// Counts the samples pushed and computes no frame: [`MelStream::finish`] gives an empty spectrogram
    /// (for callers that want only the count, and not the FFTs).
    pub fn counting_only(mut self) -> Self {
        self.count_only = true;
        self
    }

    /// Also gathers what the tempo, key and loudness estimators need ([`MelStream::finish_with_facts`]).
    pub fn with_facts(mut self, sample_rate: u32) -> Self {
        self.facts = Some(soundalike_facts::FactsStream::new(sample_rate, self.n_fft, self.hop));
        self
    }

    /// Hands a packet of the source, as decoded, to the loudness meter (when gathering facts).
    pub fn push_source(&mut self, interleaved: &[f32], channels: usize, rate: u32) {
        if let Some(f) = self.facts.as_mut() {
            f.source(interleaved, channels, rate);
        }
    }

    /// Samples pushed so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Appends samples and computes every frame that is complete.
    pub fn push(&mut self, samples: &[f32]) {
        self.samples += samples.len() as u64;
        if self.count_only {
            return;
        }
        self.buf.extend_from_slice(samples);
        self.drain_frames();
    }

    fn drain_frames(&mut self) {
        let mut start = 0;
        while self.buf.len() - start >= self.n_fft {
            self.frame(start);
            start += self.hop;
        }
        self.buf.drain(..start);
    }

    #[allow(clippy::expect_used, reason = "realfft fails only on wrong buffer lengths, and the buffers come from its own plan")]
    fn frame(&mut self, start: usize) {
        let src = &self.buf[start..start + self.n_fft];
        for ((d, &s), &w) in self.frame_in.iter_mut().zip(src).zip(&self.window) {
            *d = s * w;
        }
        self.fft
            .process_with_scratch(&mut self.frame_in, &mut self.spectrum, &mut self.scratch)
            .expect("buffers come from the plan");
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.re * c.re + c.im * c.im;
        }
        if let Some(f) = self.facts.as_mut() {
            f.power_frame(&self.power);
        }
        for m in 0..self.n_mels {
            let (lo, hi) = self.spans[m];
            let row = &self.filters[m * self.n_bins + lo..m * self.n_bins + hi];
            let acc: f32 = row.iter().zip(&self.power[lo..hi]).map(|(a, b)| a * b).sum();
            self.mel_tm.push(acc);
        }
        self.n_frames += 1;
    }

    /// [`MelStream::finish`], and the musical facts when [`MelStream::with_facts`] asked for them.
    pub fn finish_with_facts(mut self, sample_rate: u32) -> (LogMel, Option<soundalike_facts::Facts>) {
        let facts = self.facts.take();
        let hop = self.hop;
        let mel = self.finish();
        let facts = facts.map(|f| f.finish(&mel.data, mel.n_mels, sample_rate as f32 / hop as f32));
        (mel, facts)
    }

    /// Pads the end (`center=True`), converts power to dB with `amin`/`top_db`, and returns
    /// `[n_mels, n_frames]`.
    pub fn finish(self) -> LogMel {
        let n_mels = self.n_mels;
        let (amin, top_db) = (self.amin, self.top_db);
        let (n_frames, mel_tm) = self.finish_power();
        let mut data = vec![0f32; n_mels * n_frames];
        let mut max = f32::NEG_INFINITY;
        for t in 0..n_frames {
            for m in 0..n_mels {
                let db = 10.0 * mel_tm[t * n_mels + m].max(amin).log10();
                max = max.max(db);
                data[m * n_frames + t] = db;
            }
        }
        if let Some(top) = top_db {
            let floor = max - top;
            data.iter_mut().for_each(|v| *v = v.max(floor));
        }
        LogMel { n_mels, n_frames, data }
    }

    /// Pads the end (`center=True`) and returns the frame count and the mel **power** time-major,
    /// `[n_frames][n_mels]` (librosa's `melspectrogram(...).T`), for front ends with a compression of
    /// their own (the tagger's `log10(10000 x + 1)`).
    pub fn finish_power(mut self) -> (usize, Vec<f32>) {
        if self.count_only {
            return (0, Vec::new());
        }
        let expected = 1 + (self.samples / self.hop as u64) as usize;
        self.buf.extend(std::iter::repeat_n(0.0, self.n_fft / 2));
        self.drain_frames();
        // Very short inputs: librosa pads to at least one frame as well.
        while self.n_frames < expected {
            if self.buf.len() < self.n_fft {
                self.buf.resize(self.n_fft, 0.0);
            }
            self.frame(0);
            self.buf.drain(..self.hop.min(self.buf.len()));
        }
        self.mel_tm.truncate(expected * self.n_mels);
        (expected, self.mel_tm)
    }
}

/// Log-mel of a whole in-memory signal (already at `cfg.sample_rate`).
pub fn log_mel(samples: &[f32], cfg: &FrontendConfig) -> LogMel {
    let mut s = MelStream::new(cfg);
    s.push(samples);
    s.finish()
}
