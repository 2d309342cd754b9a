//! Music libraries as data: scanning folders, stable ids and content fingerprints, labels (CSV, folder,
//! tags), song-level splits, and the compact tile cache. No machine-learning dependencies.
#![warn(missing_docs)]

mod cache;
mod error;
mod labels;
mod scan;
mod split;

pub use cache::{frontend_fingerprint, CacheReport, CachedMel, TileCache, CACHE_FORMAT_VERSION};
pub use error::{LibraryError, Result};
pub use labels::{fill_tag_labels, load_catalog, title_from_path, CatalogEntry, LabelOptions, LabelSource};
pub use scan::{component_id, fingerprint_file, scan_library, SongFile};
pub use split::{split_songs, SplitAssignment, SplitOptions, Splits, SPLIT_FORMAT_VERSION};

/// A 64-bit deterministic RNG (SplitMix64): seeded shuffles and augmentations without a dependency.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same folder + rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    soundalike_audio::output::write_atomic(path, bytes).map_err(|e| LibraryError::Write(e.to_string()))
}
