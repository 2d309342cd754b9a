//! One error type for the front end. Every variant names the file it is about.

use std::path::PathBuf;

/// Why a file could not be turned into a spectrogram.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read file: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason (part of the message, not a separate `source`).
        cause: std::io::Error,
    },
    /// The file holds no bytes at all.
    #[error("{path}: file is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// No decoder recognises the container or codec (text, images, random bytes, Opus...).
    #[error("{path}: not a supported audio file ({reason})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What the prober or codec registry said.
        reason: String,
    },
    /// The container was recognised but holds no decodable audio track.
    #[error("{path}: no audio track")]
    NoAudioTrack {
        /// The file.
        path: PathBuf,
    },
    /// The stream is damaged beyond recovery (or every packet failed to decode).
    #[error("{path}: corrupt audio: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Fewer seconds of audio than the configured minimum.
    #[error("{path}: too short: {seconds:.2} s of audio, at least {min_seconds:.2} s needed")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Decoded length.
        seconds: f64,
        /// The minimum (see [`crate::FrontendConfig::min_duration_s`]).
        min_seconds: f64,
    },
    /// Every sample is zero: there is nothing to listen to.
    #[error("{path}: digital silence ({seconds:.2} s of zero samples)")]
    Silent {
        /// The file.
        path: PathBuf,
        /// Decoded length.
        seconds: f64,
    },
    /// A setting is out of range.
    #[error("invalid front-end config: {0}")]
    Config(String),
    /// Writing an output (npy/png) failed.
    #[error("{path}: cannot write: {cause}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// Why: the operating system's error, or the encoder's wrapped as one (part of the message).
        cause: std::io::Error,
    },
}

impl AudioError {
    /// The file the error is about (none for a bad setting).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            AudioError::Io { path, .. }
            | AudioError::Empty { path }
            | AudioError::Unsupported { path, .. }
            | AudioError::NoAudioTrack { path }
            | AudioError::Corrupt { path, .. }
            | AudioError::TooShort { path, .. }
            | AudioError::Silent { path, .. }
            | AudioError::Write { path, .. } => Some(path),
            AudioError::Config(_) => None,
        }
    }

    /// The message without the file's name in front (for a caller that names the file its own way, as
    /// `serve` names an upload by the uploader's file name).
    pub fn reason(&self) -> String {
        let msg = self.to_string();
        match self.path() {
            Some(p) => msg.strip_prefix(&format!("{}: ", p.display())).map_or_else(|| msg.clone(), str::to_string),
            None => msg,
        }
    }

    /// A short machine-readable name of the error class, used in JSON reports.
    pub fn kind(&self) -> &'static str {
        match self {
            AudioError::Io { .. } => "io",
            AudioError::Empty { .. } => "empty",
            AudioError::Unsupported { .. } => "unsupported",
            AudioError::NoAudioTrack { .. } => "no_audio_track",
            AudioError::Corrupt { .. } => "corrupt",
            AudioError::TooShort { .. } => "too_short",
            AudioError::Silent { .. } => "silent",
            AudioError::Config(_) => "config",
            AudioError::Write { .. } => "write",
        }
    }
}

/// Result alias for the front end.
pub type Result<T, E = AudioError> = std::result::Result<T, E>;
