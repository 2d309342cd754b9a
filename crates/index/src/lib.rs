//! Song vectors and "sounds like this" search: the embedding store (append-only journal, atomic
//! compaction), exact cosine search, and an HNSW index (hnsw_rs) behind a validating wrapper.
//! No machine-learning dependencies.
#![warn(missing_docs)]

mod ann;
mod catalog;
mod error;
mod search;
mod store;

pub use ann::{index_dir, AnnIndex, AnnParams, INDEX_FORMAT_VERSION};
pub use catalog::{sync_index, Catalog, Filters, IndexUpdate, Method, Recommendation, EXACT_BELOW, REBUILD_DEAD_FRACTION};
pub use error::{IndexError, Result};
pub use search::{exact_search, Hit};
pub use store::{SongMeta, SongRecord, Store, StoreHeader, StoreWriter, STORE_FORMAT_VERSION};

/// Cosine similarity of two L2-normalised vectors (their dot product). Eight independent accumulators let
/// the compiler use SIMD lanes (a plain `sum()` must keep the sequential order of float additions).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// L2-normalises in place; an all-zero vector stays zero.
pub fn normalise(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}
