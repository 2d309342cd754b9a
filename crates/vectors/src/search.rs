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
    exact_rows(vectors.len() / dim.max(1), &|r| dot(&vectors[r * dim..(r + 1) * dim], query), k, keep)
}

/// [`exact_search`] over rows `0..n`, `score(row)` being the row's cosine with the query.
pub fn exact_rows(n: usize, score: &dyn Fn(usize) -> f32, k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<Hit> {
    let mut hits: Vec<Hit> = (0..n).filter(|&r| keep(r)).map(|row| Hit { row, score: score(row) }).collect();
    rank(&mut hits, k);
    hits
}

/// Best first (ties by row), at most `k`: the one order every search returns.
pub(crate) fn rank(hits: &mut Vec<Hit>, k: usize) {
    let order = |a: &Hit, b: &Hit| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row));
    if k < hits.len() {
        // The k best first (linear), then only those sorted: exact search over a big library sorts k,
        // not every song.
        hits.select_nth_unstable_by(k, order);
        hits.truncate(k);
        hits.shrink_to_fit();
    }
    hits.sort_by(order);
}
