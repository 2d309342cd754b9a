//! HNSW (hnsw_rs) behind a validating wrapper. hnsw_rs exits the process on some bad parameters and its
//! reloaded graph borrows from its loader; this type checks parameters first and owns everything.

use std::path::{Path, PathBuf};

use hnsw_rs::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::flat::FlatGraph;
use crate::search::{rank, Hit};
use crate::store::write_atomic;
use crate::{IndexError, Result};

/// Below this many vectors the graph is built on one thread, deterministically.
pub const PARALLEL_BUILD_ABOVE: usize = 20_000;

/// Version of the saved index format.
pub const INDEX_FORMAT_VERSION: u32 = 3;

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
    params: AnnParams,
    /// One caller-defined key per graph slot (insertion order).
    keys: Vec<String>,
    /// Slots removed since the graph was built (tombstones).
    dead: Vec<usize>,
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

/// An HNSW graph over L2-normalised vectors (distance = 1 - cosine). Each vector sits in a *slot*
/// (0, 1, 2, ... in insertion order) with an optional caller-defined key. Vectors can be added after the
/// build; removed ones become tombstones that every search skips (hnsw_rs cannot unlink a node), and the
/// owner rebuilds when they pile up (`sync_index`: past [`crate::REBUILD_DEAD_FRACTION`]).
pub struct AnnIndex {
    /// hnsw_rs's graph: needed to insert and to save; `None` once released for search-only use.
    hnsw: Option<Hnsw<'static, f32, CosineDistance>>,
    dim: usize,
    keys: Vec<String>,
    dead: Vec<bool>,
    n_dead: usize,
    /// The graph as flat arrays for fast search; `None` after inserts until [`AnnIndex::refresh`].
    flat: Option<FlatGraph>,
    /// Parameters.
    pub params: AnnParams,
}

impl AnnIndex {
    /// Builds the graph over `vectors` (row-major, `dim` wide); row i goes to slot i, with key `keys[i]`
    /// (`keys` empty: no keys).
    pub fn build(vectors: &[f32], dim: usize, params: &AnnParams) -> Result<Self> {
        Self::build_keyed(vectors, dim, params, Vec::new())
    }

    /// [`AnnIndex::build`] with one key per row.
    pub fn build_keyed(vectors: &[f32], dim: usize, params: &AnnParams, keys: Vec<String>) -> Result<Self> {
        params.validate()?;
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(IndexError::Invalid(format!("{} values do not make rows of {dim}", vectors.len())));
        }
        let n = vectors.len() / dim;
        let keys = if keys.is_empty() { vec![String::new(); n] } else { keys };
        if keys.len() != n {
            return Err(IndexError::Invalid(format!("{} keys for {n} vectors", keys.len())));
        }
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
        let flat = FlatGraph::from_hnsw(&hnsw, n, dim);
        Ok(AnnIndex { hnsw: Some(hnsw), dim, dead: vec![false; n], n_dead: 0, keys, flat, params: params.clone() })
    }

    /// Adds one vector with its key; returns its slot.
    pub fn insert(&mut self, vector: &[f32], key: String) -> Result<usize> {
        if vector.len() != self.dim {
            return Err(IndexError::Invalid(format!("vector has {} values, index dim {}", vector.len(), self.dim)));
        }
        let slot = self.keys.len();
        let hnsw = self.hnsw.as_ref().ok_or_else(|| IndexError::Invalid("index opened for search only; reload it to insert".into()))?;
        hnsw.insert_slice((vector, slot));
        self.keys.push(key);
        self.dead.push(false);
        self.flat = None;
        Ok(slot)
    }

    /// Re-copies the graph into the flat search arrays after inserts (searches fall back to hnsw_rs's
    /// own, slower search until then).
    pub fn refresh(&mut self) {
        if let (None, Some(h)) = (&self.flat, &self.hnsw) {
            self.flat = FlatGraph::from_hnsw(h, self.keys.len(), self.dim);
        }
    }

    /// Frees hnsw_rs's own graph and keeps only the flat search arrays (vectors and links): what a
    /// search-only user (`query`, `serve`) needs. Inserting or saving afterwards is an error. A no-op if
    /// the flat arrays are missing.
    pub fn release_graph(&mut self) {
        if self.flat.is_some() {
            self.hnsw = None;
        }
    }

    /// Bytes held by the flat search arrays (vectors and links), 0 when not built.
    pub fn flat_bytes(&self) -> usize {
        self.flat.as_ref().map_or(0, FlatGraph::heap_bytes)
    }

    /// Tombstones a slot: searches skip it from now on. Returns whether it was live.
    pub fn remove(&mut self, slot: usize) -> bool {
        match self.dead.get_mut(slot) {
            Some(d) if !*d => {
                *d = true;
                self.n_dead += 1;
                true
            }
            _ => false,
        }
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.keys.len() - self.n_dead
    }

    /// Whether no vector is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots in the graph, live or dead.
    pub fn slots(&self) -> usize {
        self.keys.len()
    }

    /// Live slots with their keys.
    pub fn live(&self) -> impl Iterator<Item = (usize, &str)> {
        self.keys.iter().enumerate().filter(|(i, _)| !self.dead[*i]).map(|(i, k)| (i, k.as_str()))
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Approximate top-k live slots by cosine (no filter: hnsw_rs's plain, faster search unless there are
    /// tombstones to skip).
    pub fn search_all(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_inner(query, k, None)
    }

    /// Approximate top-k among live slots that `keep` accepts, searched *in* the graph (not
    /// search-then-filter). A very selective filter may find fewer than k; the caller falls back to
    /// exact search then (see `Catalog::recommend`).
    pub fn search(&self, query: &[f32], k: usize, keep: &(dyn Fn(usize) -> bool + Sync)) -> Result<Vec<Hit>> {
        self.search_inner(query, k, Some(keep))
    }

    fn search_inner(&self, query: &[f32], k: usize, keep_opt: Option<&(dyn Fn(usize) -> bool + Sync)>) -> Result<Vec<Hit>> {
        if query.len() != self.dim {
            return Err(IndexError::Invalid(format!("query has {} values, index dim {}", query.len(), self.dim)));
        }
        if k == 0 || self.is_empty() {
            return Ok(vec![]);
        }
        let keep = |id: usize| !self.dead[id] && keep_opt.is_none_or(|f| f(id));
        let ef = self.params.ef_search.max(k);
        if let Some(flat) = &self.flat {
            return Ok(flat.search(query, k, ef, &keep));
        }
        let filter = |id: &usize| keep(*id);
        let hnsw = self.hnsw.as_ref().ok_or_else(|| IndexError::Invalid("index has neither a graph nor flat arrays".into()))?;
        let found = if keep_opt.is_some() || self.n_dead > 0 {
            hnsw.search_filter(query, k.min(self.slots()), ef, Some(&filter))
        } else {
            hnsw.search(query, k.min(self.slots()), ef)
        };
        let mut hits: Vec<Hit> =
            found.into_iter().filter(|nb| keep(nb.d_id)).map(|nb| Hit { row: nb.d_id, score: 1.0 - nb.distance }).collect();
        rank(&mut hits, usize::MAX);
        hits.dedup_by_key(|h| h.row);
        hits.truncate(k);
        Ok(hits)
    }

    /// Saves the graph into `dir/index/` (written to a temp folder, then renamed) with a meta file holding
    /// the model fingerprint, keys and tombstones.
    pub fn save(&self, dir: &Path, model_fingerprint: &str) -> Result<()> {
        let hnsw = self.hnsw.as_ref().ok_or_else(|| IndexError::Invalid("index opened for search only; nothing to save".into()))?;
        let final_dir = index_dir(dir);
        let tmp = dir.join(format!(".index.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
        hnsw.file_dump(&tmp, "graph").map_err(|e| io_err(&tmp, e))?;
        let meta = IndexMeta {
            format_version: INDEX_FORMAT_VERSION,
            model_fingerprint: model_fingerprint.into(),
            dim: self.dim,
            params: self.params.clone(),
            keys: self.keys.clone(),
            dead: (0..self.keys.len()).filter(|&i| self.dead[i]).collect(),
        };
        write_atomic(&tmp.join("index.json"), &serde_json::to_vec(&meta).map_err(|e| io_err(&tmp, e))?)?;
        let old = dir.join(format!(".index.old-{}", std::process::id()));
        if final_dir.exists() {
            std::fs::rename(&final_dir, &old).map_err(|e| io_err(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| io_err(&final_dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Loads `dir/index/` if it exists and is of this format and width; `Ok(None)` when absent or of an
    /// older format (the caller rebuilds), an error when it belongs to another model.
    pub fn load(dir: &Path, model_fingerprint: &str, dim: usize) -> Result<Option<Self>> {
        let idx = index_dir(dir);
        let mp = idx.join("index.json");
        let Ok(b) = std::fs::read(&mp) else { return Ok(None) };
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let v: Version = serde_json::from_slice(&b).map_err(|e| IndexError::Incompatible { path: mp.clone(), reason: e.to_string() })?;
        if v.format_version != INDEX_FORMAT_VERSION {
            return Ok(None);
        }
        let meta: IndexMeta = serde_json::from_slice(&b).map_err(|e| IndexError::Incompatible { path: mp.clone(), reason: e.to_string() })?;
        if meta.model_fingerprint != model_fingerprint {
            return Err(IndexError::Incompatible {
                path: mp,
                reason: format!("index built for model {}, store is model {model_fingerprint}", meta.model_fingerprint),
            });
        }
        if meta.dim != dim {
            return Ok(None);
        }
        // The reloaded graph borrows from its loader for its whole life: the loader (paths and options
        // only; the data is copied in) is given the index's lifetime by leaking it, once per load.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&idx, "graph")));
        let mut hnsw: Hnsw<'static, f32, CosineDistance> =
            io.load_hnsw_with_dist::<f32, CosineDistance>(CosineDistance).map_err(|e| io_err(&idx, e))?;
        if hnsw.get_nb_point() != meta.keys.len() {
            return Err(IndexError::Incompatible {
                path: mp,
                reason: format!("graph has {} points but the meta file names {}", hnsw.get_nb_point(), meta.keys.len()),
            });
        }
        hnsw.set_searching_mode(true);
        let mut dead = vec![false; meta.keys.len()];
        for &d in &meta.dead {
            if let Some(x) = dead.get_mut(d) {
                *x = true;
            }
        }
        let n_dead = dead.iter().filter(|&&d| d).count();
        let flat = FlatGraph::from_hnsw(&hnsw, meta.keys.len(), dim);
        Ok(Some(AnnIndex { hnsw: Some(hnsw), dim, keys: meta.keys, dead, n_dead, flat, params: meta.params }))
    }
}

/// Where a store keeps its index.
pub fn index_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("index")
}
