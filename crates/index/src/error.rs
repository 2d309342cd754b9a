use std::path::PathBuf;

/// Errors of the store and index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// File system trouble, naming the path.
    #[error("{path}: {reason}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A store or index made by another model, format version or settings.
    #[error("{path}: {reason}")]
    Incompatible {
        /// Path.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// A bad query or parameter.
    #[error("{0}")]
    Invalid(String),
    /// No such song.
    #[error("{0}")]
    NotFound(String),
    /// Another process is writing the store.
    #[error("{path}: another soundalike ({holder}) is writing this store; wait for it to finish, or pass --wait to queue behind it")]
    Locked {
        /// Store folder.
        path: PathBuf,
        /// Who holds the lock (`pid N`).
        holder: String,
    },
}

/// Result alias.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Io { path: path.to_path_buf(), reason: e.to_string() }
}
