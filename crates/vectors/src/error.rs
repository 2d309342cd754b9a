use std::path::PathBuf;

/// Errors of the vector crate: a bad parameter, or an index file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VectorError {
    /// File system trouble (or a file that cannot be encoded or decoded), naming the path.
    #[error("{path}: {cause}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why: the operating system's error, or the encoder's wrapped as one (part of the message).
        cause: std::io::Error,
    },
    /// An index file of another format version, width or model, or a damaged one.
    #[error("{path}: {reason}")]
    Incompatible {
        /// Path.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// A bad parameter.
    #[error("{0}")]
    Invalid(String),
    /// An index file that is damaged or belongs to another model: it must be rebuilt from the vectors.
    #[error("{path}: {reason}; the index must be rebuilt")]
    StaleIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias.
pub type Result<T, E = VectorError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> VectorError {
    let e: Box<dyn std::error::Error + Send + Sync> = e.into();
    let cause = match e.downcast::<std::io::Error>() {
        Ok(io) => *io,
        Err(other) => std::io::Error::other(other),
    };
    VectorError::Io { path: path.to_path_buf(), cause }
}
