//! Exact (brute-force) cosine search: the reference the HNSW index is tested against, and the method for
//! small libraries and very selective filters.

use crate::dot;

/// One search result.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Row in the store.
    pub row: usize,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// The `k` rows most similar to `query` among those `keep` accepts, best first (ties by row).
pub fn exact_search(vectors: &[f32], dim: usize, query: &[f32], k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<Hit> {
    let mut hits: Vec<Hit> = vectors
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(row, v)| Hit { row, score: dot(v, query) })
        .collect();
    rank(&mut hits, k);
    hits
}

/// Best first (ties by row), at most `k`: the one order every search returns.
pub(crate) fn rank(hits: &mut Vec<Hit>, k: usize) {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
    hits.truncate(k);
}
