use std::path::PathBuf;

/// Errors of library handling; each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// Reading a file or folder failed.
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why (part of the message, not a separate `source`).
        cause: std::io::Error,
    },
    /// A labels CSV is malformed or lacks a column.
    #[error("{path}: {reason}")]
    Csv {
        /// The CSV.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file written by an incompatible version or settings.
    #[error("{path}: {reason}")]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// Bad options.
    #[error("{0}")]
    Invalid(String),
    /// Writing a file failed.
    #[error("{path}: cannot write: {cause}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Audio front-end error.
    #[error(transparent)]
    Audio(#[from] soundalike_audio::AudioError),
}

/// Result alias.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |cause| DatasetError::Io { path: path.to_path_buf(), cause }
}
