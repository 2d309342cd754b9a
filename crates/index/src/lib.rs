//! Song vectors and "sounds like this" search: the embedding store (append-only journal, atomic
//! compaction), exact cosine search, and an HNSW index (hnsw_rs) behind a validating wrapper.
//! No machine-learning dependencies.
#![warn(missing_docs)]

mod ann;
mod error;
mod search;
mod store;

pub use ann::{ids_hash, index_dir, AnnIndex, AnnParams, INDEX_FORMAT_VERSION};
pub use error::{IndexError, Result};
pub use search::{exact_search, Hit};
pub use store::{SongRecord, Store, StoreHeader, STORE_FORMAT_VERSION};

/// Cosine similarity of two L2-normalised vectors (their dot product).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// L2-normalises in place; an all-zero vector stays zero.
pub fn normalise(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}
