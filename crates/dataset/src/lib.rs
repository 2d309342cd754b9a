//! Music libraries as data: scanning folders, stable ids and content fingerprints, labels (CSV, folder,
//! tags), song-level splits, and the compact spectrogram cache. No machine-learning dependencies.
//!
//! ```no_run
//! use soundalike_dataset::{load_labels, scan_library, LabelOptions};
//! let files = scan_library(std::path::Path::new("/music")).unwrap(); // every audio file, sorted by id
//! let entries = load_labels(&files, &LabelOptions::default()).unwrap(); // labels: CSV > folder > tag
//! println!("{} songs; the first is {} ({:?})", files.len(), files[0].rel_path, entries[0].label);
//! ```
#![warn(missing_docs)]

mod cache;
mod error;
mod labels;
mod scan;
mod split;

pub use cache::{frontend_fingerprint, CacheReport, CachedMel, SpectrogramCache, CACHE_FORMAT_VERSION};
pub use error::{DatasetError, Result};
pub use labels::{fill_tag_labels, load_labels, metadata_from_path, title_from_path, LabelOptions, LabelSource, PathMetadata, SongLabels};
pub use scan::{component_id, fingerprint_file, scan_library, SongFile};
pub use split::{split_songs, split_songs_by_unit, SplitAssignment, SplitOptions, Splits, SPLIT_FORMAT_VERSION};

pub use soundalike_core::SplitMix64;

/// Writes `bytes` to `path` atomically (temp file in the same folder + rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    soundalike_core::write_atomic(path, bytes).map_err(|cause| DatasetError::Write { path: path.to_path_buf(), cause })
}
