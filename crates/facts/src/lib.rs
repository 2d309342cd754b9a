//! The musical facts a DJ filters by, estimated from what the decode pass already has: the source's
//! channels (loudness, EBU R128), each STFT frame's power spectrum (a 12-bin chroma for the key) and the
//! log-mel spectrogram (an onset envelope for the tempo). No second read of the file, no FFT of its own.
//!
//! ```
//! use soundalike_facts::{CamelotKey, KeyRule};
//! let a_minor: CamelotKey = "8A".parse().unwrap();
//! assert!(a_minor.mixes_with("9A".parse().unwrap(), KeyRule::Strict));
//! assert!(a_minor.mixes_with("8B".parse().unwrap(), KeyRule::Strict)); // C major, its relative major
//! assert!(!a_minor.mixes_with("9B".parse().unwrap(), KeyRule::Strict)); // a diagonal: only with Wide
//! assert_eq!(a_minor.open_key(), "1m");
//! ```
#![warn(missing_docs)]

mod key;
mod loudness;
mod notation;
mod tempo;

pub use key::{estimate_key, ChromaFrames, KEY_PROFILE};
pub use loudness::LoudnessMeter;
pub use notation::{CamelotKey, KeyRule, Mode, PITCH_NAMES};
pub use tempo::{estimate_tempo, onset_envelope};

use serde::{Deserialize, Serialize};

/// Version of the estimators: a store whose songs were analysed by another version analyses them again on
/// its next `embed` (without re-embedding their vectors). 2: the true peak; 3: the tempo judged with its harmonics.
pub const FACTS_VERSION: u32 = 3;

/// What the estimators found in one song.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// [`FACTS_VERSION`] of the estimators that produced this.
    pub version: u32,
    /// Tempo.
    pub tempo: Tempo,
    /// Key.
    pub key: Key,
    /// Loudness, when the source could be measured (at least 400 ms of sound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness: Option<Loudness>,
}

impl Facts {
    /// Integrated loudness, when measured.
    pub fn lufs(&self) -> Option<f32> {
        self.loudness.as_ref().and_then(|l| l.lufs)
    }

    /// True peak (dBTP), when measured (facts version 2 on).
    pub fn true_peak_db(&self) -> Option<f32> {
        self.loudness.as_ref().and_then(|l| l.true_peak_db)
    }
}

/// A song's tempo: the BPM reported, how sure, and the other tempi that explain the same beat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tempo {
    /// Beats per minute, one decimal; absent when the song has no steady beat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpm: Option<f32>,
    /// How periodic the onsets are at that tempo (0: not at all, 1: a click track).
    pub confidence: f32,
    /// Other tempi the onsets support, best first (octave and 2/3 relatives of the reported one, with
    /// their relation `x2`, `x1/2`, `x3/2`, `x2/3` or `other`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<TempoCandidate>,
    /// Where the tempo changes (seconds), if it does: the BPM is then the longer part's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_at_s: Option<f32>,
}

/// A tempo the onsets also support.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TempoCandidate {
    /// Beats per minute.
    pub bpm: f32,
    /// Its periodicity (same scale as [`Tempo::confidence`]).
    pub strength: f32,
    /// How it relates to the reported tempo.
    pub relation: String,
}

impl Tempo {
    /// Words for a table: `128.0`, `no steady beat`, `128.0 (changes at 1:32)`.
    pub fn describe(&self) -> String {
        match (self.bpm, self.changes_at_s) {
            (None, _) => "no steady beat".into(),
            (Some(b), None) => format!("{b:.1}"),
            (Some(b), Some(t)) => format!("{b:.1} (tempo changes at {})", clock(t)),
        }
    }
}

/// A song's key: one of 24, with how well the song's pitch classes fit it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// The key, absent when unclear (too little tonal content, or no key fits clearly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<CamelotKey>,
    /// Correlation of the song's chroma with the key's profile (−1 to 1).
    pub strength: f32,
    /// Where the key changes (seconds), if it does: the key is then the longer part's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_at_s: Option<f32>,
}

impl Key {
    /// Words for a table: `8A A minor`, `key unclear`.
    pub fn describe(&self) -> String {
        match (&self.key, self.changes_at_s) {
            (None, _) => "key unclear".into(),
            (Some(k), None) => format!("{k} {}", k.name()),
            (Some(k), Some(t)) => format!("{k} {} (key changes at {})", k.name(), clock(t)),
        }
    }
}

/// Integrated loudness and peak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Integrated loudness, LUFS (EBU R128, gated); absent for silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lufs: Option<f32>,
    /// Sample peak over all channels, dBFS.
    pub peak_db: f32,
    /// True peak over all channels, dBTP (BS.1770-4 Annex 2, 4x oversampled below 96 kHz): at least the
    /// sample peak, higher where a loud master's waveform peaks between samples. Absent in songs analysed
    /// before facts version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_peak_db: Option<f32>,
}

/// To three decimals (what the store keeps of a confidence or a strength).
pub(crate) fn round3(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}

/// `m:ss`.
pub fn clock(seconds: f32) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Everything the estimators need, gathered while a file is decoded: push the source's interleaved
/// samples ([`FactsStream::source`]) and each STFT power frame ([`FactsStream::power_frame`]), then
/// [`FactsStream::finish`] with the log-mel spectrogram.
pub struct FactsStream {
    loudness: Option<LoudnessMeter>,
    chroma: ChromaFrames,
}

impl FactsStream {
    /// For STFT frames of `n_fft` samples at `sample_rate`, `hop` samples apart.
    pub fn new(sample_rate: u32, n_fft: usize, hop: usize) -> Self {
        FactsStream { loudness: None, chroma: ChromaFrames::new(sample_rate, n_fft, hop) }
    }

    /// Interleaved samples of the source as decoded (`channels` at `rate`), for the loudness.
    pub fn source(&mut self, interleaved: &[f32], channels: usize, rate: u32) {
        let m = self.loudness.get_or_insert_with(|| LoudnessMeter::new(channels, rate));
        m.push(interleaved, channels, rate);
    }

    /// One STFT frame's power spectrum (`n_fft / 2 + 1` bins), for the key.
    pub fn power_frame(&mut self, power: &[f32]) {
        self.chroma.push(power);
    }

    /// The facts, given the song's log-mel spectrogram (`[n_mels][n_frames]` in dB, row-major) at
    /// `frames_per_s`.
    pub fn finish(self, log_mel: &[f32], n_mels: usize, frames_per_s: f32) -> Facts {
        let onsets = onset_envelope(log_mel, n_mels);
        Facts {
            version: FACTS_VERSION,
            tempo: estimate_tempo(&onsets, frames_per_s),
            key: estimate_key(&self.chroma),
            loudness: self.loudness.and_then(LoudnessMeter::finish),
        }
    }
}
