use std::path::PathBuf;

/// Errors of the store (and, through [`From`], of the vector crate's index files).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// File system trouble (or a file that cannot be encoded or decoded), naming the path.
    #[error("{path}: {cause}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why: the operating system's error, or the encoder's wrapped as one (part of the message).
        cause: std::io::Error,
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
    /// Another process is writing the folder (a store or a listener's profile).
    #[error("{path}: another soundalike ({holder}) is writing here; try again when it has finished")]
    Locked {
        /// The folder.
        path: PathBuf,
        /// Who holds the lock (`pid N`).
        holder: String,
    },
    /// A folder without a store in it (no readable `store.json`).
    #[error("{path}: not a soundalike store ({cause})")]
    NotAStore {
        /// The header file looked for.
        path: PathBuf,
        /// Why it could not be read.
        cause: std::io::Error,
    },
    /// A store whose vectors were made by another model or front end than the one writing to it.
    #[error("{path}: store was made by model {found}, not {wanted}")]
    OtherModel {
        /// The store's header.
        path: PathBuf,
        /// The model that made it (`name (fingerprint)`).
        found: String,
        /// The model writing now.
        wanted: String,
    },
    /// A damaged line in a store's journal (not a torn last write, which is skipped).
    #[error("{path}: line {line}: {reason}")]
    Damaged {
        /// The journal.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An index file that cannot serve this store (damaged, of another model, or missing songs): it must be
    /// rebuilt from the store's vectors.
    #[error("{path}: {reason}; the index must be rebuilt")]
    StaleIndex {
        /// The index file or store folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// An [`IndexError::Io`] about `path`.
pub fn io_err(path: &std::path::Path, e: impl IntoCause) -> IndexError {
    IndexError::Io { path: path.to_path_buf(), cause: e.into_cause() }
}

/// What can be the cause of an [`IndexError::Io`]: an `io::Error` as it is, anything else wrapped in one.
pub trait IntoCause {
    /// As an `io::Error`.
    fn into_cause(self) -> std::io::Error;
}

impl IntoCause for std::io::Error {
    fn into_cause(self) -> std::io::Error {
        self
    }
}

impl IntoCause for serde_json::Error {
    fn into_cause(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

impl IntoCause for String {
    fn into_cause(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

impl IntoCause for &str {
    fn into_cause(self) -> std::io::Error {
        std::io::Error::other(self.to_string())
    }
}

impl From<soundalike_vectors::VectorError> for IndexError {
    fn from(e: soundalike_vectors::VectorError) -> Self {
        use soundalike_vectors::VectorError as V;
        match e {
            V::Io { path, cause } => IndexError::Io { path, cause },
            V::Incompatible { path, reason } => IndexError::Incompatible { path, reason },
            V::StaleIndex { path, reason } => IndexError::StaleIndex { path, reason },
            V::Invalid(m) => IndexError::Invalid(m),
            e => IndexError::Invalid(e.to_string()),
        }
    }
}
