//! The embedding store: a folder holding `store.json` (the header: format version, model fingerprint,
//! front-end settings, labels) and `songs.jsonl` (an append-only journal of song records), written by one
//! process at a time under an OS file lock (`.lock`), compacted and repaired atomically. Knows songs and
//! files, not how vectors are searched (that is `soundalike-vectors`).
#![warn(missing_docs)]

mod error;
pub mod layout;
mod lock;
mod store;

pub use error::{IndexError, Result};
pub use lock::{LockWait, StoreLock, LOCK_FILE};
pub use store::{check_journal, repair_journal, JournalCheck, ShardInfo, SongMeta, SongRecord, Store, StoreHeader, StoreWriter, METADATA_VERSION, STORE_FORMAT_VERSION};
pub use store::{read_if_exists, write_atomic};
#[doc(hidden)]
pub use error::{io_err, IntoCause};
