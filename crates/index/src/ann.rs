//! HNSW (hnsw_rs) behind a validating wrapper. hnsw_rs exits the process on some bad parameters and its
//! reloaded graph borrows from its loader; this type checks parameters first and owns everything.

use std::path::{Path, PathBuf};

use hnsw_rs::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::search::{exact_search, Hit};
use crate::store::write_atomic;
use crate::{IndexError, Result};

/// Below this many vectors the graph is built on one thread, deterministically.
pub const PARALLEL_BUILD_ABOVE: usize = 20_000;

/// Version of the saved index format.
pub const INDEX_FORMAT_VERSION: u32 = 2;

/// HNSW parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Links per node (hnsw_rs: `max_nb_connection`, 2..=255).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to at least k).
    pub ef_search: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams { m: 24, ef_construction: 200, ef_search: 64 }
    }
}

impl AnnParams {
    fn validate(&self) -> Result<()> {
        if !(2..=255).contains(&self.m) {
            return Err(IndexError::Invalid(format!("M must be in 2..=255, got {}", self.m)));
        }
        if self.ef_construction == 0 || self.ef_search == 0 {
            return Err(IndexError::Invalid("ef_construction and ef_search must be > 0".into()));
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct IndexMeta {
    format_version: u32,
    model_fingerprint: String,
    dim: usize,
    n: usize,
    params: AnnParams,
    /// [`rows_hash`] of the rows: the index is only valid for exactly these songs.
    ids_hash: String,
}

/// Hash of the rows in order (song id and content fingerprint), tying a saved index to the exact store
/// contents it was built from: a re-embedded (changed) file makes the index stale too.
pub fn rows_hash(rows: &[&crate::SongRecord]) -> String {
    let mut h = blake3::Hasher::new();
    for s in rows {
        h.update(s.id.as_bytes());
        h.update(b"\t");
        h.update(s.fingerprint.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..16].to_string()
}

/// `1 - cosine` for L2-normalised vectors, clamped at 0. (anndists' `DistDot` asserts `1 - dot >= 0`,
/// which rounding breaks for a vector and itself: a panic on valid input.)
#[derive(Default, Clone, Copy, Debug)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - crate::dot(va, vb)).max(0.0)
    }
}

/// An HNSW graph over L2-normalised vectors (distance = 1 - cosine).
pub struct AnnIndex {
    hnsw: Hnsw<'static, f32, CosineDistance>,
    dim: usize,
    n: usize,
    /// Parameters.
    pub params: AnnParams,
}

impl AnnIndex {
    /// Builds the graph over `vectors` (row-major, `dim` wide) with parallel insertion.
    pub fn build(vectors: &[f32], dim: usize, params: &AnnParams) -> Result<Self> {
        params.validate()?;
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(IndexError::Invalid(format!("{} values do not make rows of {dim}", vectors.len())));
        }
        let n = vectors.len() / dim;
        // hnsw_rs only dumps graphs made with its maximum layer count (16); layers are used as needed.
        let hnsw = Hnsw::<f32, CosineDistance>::new(params.m, n.max(1), 16, params.ef_construction, CosineDistance);
        let data: Vec<(&[f32], usize)> = vectors.chunks_exact(dim).enumerate().map(|(i, v)| (v, i)).collect();
        // Small libraries: insert in order, so the graph is the same on every run (parallel insertion
        // depends on thread timing, and once in CI it left a 139-point graph where a vector missed itself).
        if n < PARALLEL_BUILD_ABOVE {
            data.iter().for_each(|&(v, i)| hnsw.insert_slice((v, i)));
        } else {
            hnsw.parallel_insert_slice(&data);
        }
        let mut hnsw = hnsw;
        hnsw.set_searching_mode(true);
        Ok(AnnIndex { hnsw, dim, n, params: params.clone() })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Approximate top-k by cosine over all rows (no filter: hnsw_rs's plain, faster search).
    pub fn search_all(&self, vectors: &[f32], query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_inner(vectors, query, k, None)
    }

    /// Approximate top-k by cosine among rows `keep` accepts. When the filtered graph search cannot fill
    /// k (a very selective filter), it falls back to exact search over the accepted rows, so a filter
    /// always returns k results when k exist. `vectors` are the rows the index was built from.
    pub fn search(&self, vectors: &[f32], query: &[f32], k: usize, keep: &(dyn Fn(usize) -> bool + Sync)) -> Result<Vec<Hit>> {
        self.search_inner(vectors, query, k, Some(keep))
    }

    fn search_inner(&self, vectors: &[f32], query: &[f32], k: usize, keep_opt: Option<&(dyn Fn(usize) -> bool + Sync)>) -> Result<Vec<Hit>> {
        let keep = keep_opt.unwrap_or(&|_| true);
        if query.len() != self.dim {
            return Err(IndexError::Invalid(format!("query has {} values, index dim {}", query.len(), self.dim)));
        }
        if k == 0 || self.n == 0 {
            return Ok(vec![]);
        }
        let ef = self.params.ef_search.max(k);
        let filter = |id: &usize| keep(*id);
        let found = match keep_opt {
            Some(_) => self.hnsw.search_filter(query, k.min(self.n), ef, Some(&filter)),
            None => self.hnsw.search(query, k.min(self.n), ef),
        };
        let mut hits: Vec<Hit> =
            found.into_iter().filter(|nb| keep(nb.d_id)).map(|nb| Hit { row: nb.d_id, score: 1.0 - nb.distance }).collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
        hits.dedup_by_key(|h| h.row);
        if hits.len() < k {
            let exact = exact_search(vectors, self.dim, query, k, keep);
            if exact.len() > hits.len() {
                return Ok(exact);
            }
        }
        hits.truncate(k);
        Ok(hits)
    }

    /// Saves the graph into `dir/index/` (written to a temp folder, then renamed) with a meta file tying
    /// it to `model_fingerprint` and the exact rows (`ids_hash`, from [`rows_hash`]).
    pub fn save(&self, dir: &Path, model_fingerprint: &str, ids_hash: &str) -> Result<()> {
        let final_dir = dir.join("index");
        let tmp = dir.join(format!(".index.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
        self.hnsw.file_dump(&tmp, "graph").map_err(|e| io_err(&tmp, e))?;
        let meta = IndexMeta {
            format_version: INDEX_FORMAT_VERSION,
            model_fingerprint: model_fingerprint.into(),
            dim: self.dim,
            n: self.n,
            params: self.params.clone(),
            ids_hash: ids_hash.into(),
        };
        write_atomic(&tmp.join("index.json"), &serde_json::to_vec_pretty(&meta).map_err(|e| io_err(&tmp, e))?)?;
        let old = dir.join(format!(".index.old-{}", std::process::id()));
        if final_dir.exists() {
            std::fs::rename(&final_dir, &old).map_err(|e| io_err(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| io_err(&final_dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Loads `dir/index/` if it exists and matches the model and rows; `Ok(None)` when absent or stale
    /// (the caller rebuilds), an error when it belongs to another model.
    pub fn load(dir: &Path, model_fingerprint: &str, ids_hash: &str, dim: usize) -> Result<Option<Self>> {
        let idx = dir.join("index");
        let mp = idx.join("index.json");
        let Ok(b) = std::fs::read(&mp) else { return Ok(None) };
        let meta: IndexMeta = serde_json::from_slice(&b).map_err(|e| IndexError::Incompatible { path: mp.clone(), reason: e.to_string() })?;
        if meta.format_version != INDEX_FORMAT_VERSION {
            return Ok(None);
        }
        if meta.model_fingerprint != model_fingerprint {
            return Err(IndexError::Incompatible {
                path: mp,
                reason: format!("index built for model {}, store is model {model_fingerprint}", meta.model_fingerprint),
            });
        }
        if meta.ids_hash != ids_hash || meta.dim != dim {
            return Ok(None);
        }
        // The reloaded graph borrows from its loader for its whole life: the loader (paths and options
        // only; the data is copied in) is given the index's lifetime by leaking it, once per load.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&idx, "graph")));
        let mut hnsw: Hnsw<'static, f32, CosineDistance> =
            io.load_hnsw_with_dist::<f32, CosineDistance>(CosineDistance).map_err(|e| io_err(&idx, e))?;
        hnsw.set_searching_mode(true);
        Ok(Some(AnnIndex { hnsw, dim, n: meta.n, params: meta.params }))
    }
}

/// Where a store keeps its index.
pub fn index_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("index")
}
