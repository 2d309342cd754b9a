//! The HNSW index behind the project's own type: parameters checked before anything is built (hnsw_rs
//! exits the process on some bad ones), keys and tombstones per slot, and one checksummed file per store.
//! The graph is built by [`crate::graph`] by default, or by hnsw_rs (`Builder::HnswRs`) and copied into
//! the same arrays; either way searches run on those arrays.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hnsw_rs::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::graph::Graph;
use crate::search::Hit;
use crate::{VectorError, Result};

/// Below this many vectors the graph is built on one thread, deterministically.
pub const PARALLEL_BUILD_ABOVE: usize = 20_000;

/// Version of the saved index format (4: the graph's own arrays in one checksummed file; 5: and the
/// vector precision).
pub const INDEX_FORMAT_VERSION: u32 = 5;

const MAGIC: &[u8] = b"soundalike index\n";

/// Who builds the graph. Searches, inserts and the saved file are the same either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Builder {
    /// soundalike's own construction on flat arrays (hnswlib's algorithm; several times faster to build).
    #[default]
    Native,
    /// hnsw_rs builds it; its graph is then copied into the flat arrays and dropped.
    HnswRs,
}

/// How the graph stores its copy of the vectors. Queries stay f32 either way; the store keeps f32.
/// [`AnnParams::default`] uses `I16`; `Precision::default()` (`F32`) is what a header without the field means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// 4 bytes per value: the store's vectors exactly.
    #[default]
    F32,
    /// 16-bit fixed point with one f32 scale per vector (`v_i = scale * q_i`, `scale = max |v_i| / 32767`):
    /// 2 bytes per value, each within `scale / 2` of its f32, so a cosine moves by about 1e-5. Measured
    /// (`scripts/bench/bench_ann.sh`): about 0.8x the raw f32 vectors in memory instead of 1.28x, faster builds and
    /// searches (a search reads half the bytes), recall on real song vectors within 0.001 of f32's.
    I16,
}

/// HNSW parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Links per node on the upper layers (twice as many on layer 0), 2..=255.
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to at least k).
    pub ef_search: usize,
    /// Who builds the graph.
    #[serde(default)]
    pub builder: Builder,
    /// How the graph stores the vectors.
    #[serde(default)]
    pub vectors: Precision,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams { m: 24, ef_construction: 200, ef_search: 64, builder: Builder::Native, vectors: Precision::I16 }
    }
}

impl AnnParams {
    fn validate(&self) -> Result<()> {
        if !(2..=255).contains(&self.m) {
            return Err(VectorError::Invalid(format!("M must be in 2..=255, got {}", self.m)));
        }
        if self.ef_construction == 0 || self.ef_search == 0 {
            return Err(VectorError::Invalid("ef_construction and ef_search must be > 0".into()));
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

/// `1 - cosine` for L2-normalised vectors, clamped at 0, for hnsw_rs. (anndists' `DistDot` asserts
/// `1 - dot >= 0`, which rounding breaks for a vector and itself: a panic on valid input.)
#[derive(Default, Clone, Copy, Debug)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - crate::dot(va, vb)).max(0.0)
    }
}

/// An HNSW graph over L2-normalised vectors (distance = 1 - cosine). Each vector sits in a *slot*
/// (0, 1, 2, ... in insertion order) with an optional caller-defined key. Vectors can be added after the
/// build; removed ones become tombstones that every search skips (an HNSW node cannot be unlinked
/// cheaply), and the owner rebuilds when they pile up (`sync_index`: past [`crate::REBUILD_DEAD_FRACTION`]).
pub struct AnnIndex {
    graph: Graph,
    keys: Vec<String>,
    dead: Vec<bool>,
    n_dead: usize,
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
            return Err(VectorError::Invalid(format!("{} values do not make rows of {dim}", vectors.len())));
        }
        let n = vectors.len() / dim;
        let keys = if keys.is_empty() { vec![String::new(); n] } else { keys };
        if keys.len() != n {
            return Err(VectorError::Invalid(format!("{} keys for {n} vectors", keys.len())));
        }
        // Small libraries are built in order, so the graph is the same on every run (parallel insertion
        // depends on thread timing).
        let parallel = n >= PARALLEL_BUILD_ABOVE;
        let quantised = params.vectors == Precision::I16;
        let graph = match params.builder {
            Builder::Native => Graph::build(vectors, dim, params.m, params.ef_construction, crate::graph::BuildMode { parallel, quantised }),
            Builder::HnswRs => {
                // hnsw_rs only dumps graphs made with its maximum layer count (16); layers are used as needed.
                let hnsw = Hnsw::<f32, CosineDistance>::new(params.m, n.max(1), 16, params.ef_construction, CosineDistance);
                let data: Vec<(&[f32], usize)> = vectors.chunks_exact(dim).enumerate().map(|(i, v)| (v, i)).collect();
                if parallel {
                    hnsw.parallel_insert_slice(&data);
                } else {
                    data.iter().for_each(|&(v, i)| hnsw.insert_slice((v, i)));
                }
                Graph::from_hnsw(&hnsw, n, dim, params.m, params.ef_construction, quantised)
                    .ok_or_else(|| VectorError::Invalid("hnsw_rs returned a graph that does not hold every vector once".into()))?
            }
        };
        Ok(AnnIndex { graph, dead: vec![false; n], n_dead: 0, keys, params: params.clone() })
    }

    /// Adds one vector with its key; returns its slot.
    pub fn insert(&mut self, vector: &[f32], key: String) -> Result<usize> {
        if vector.len() != self.graph.dim() {
            return Err(VectorError::Invalid(format!("vector has {} values, index dim {}", vector.len(), self.graph.dim())));
        }
        let slot = self.graph.insert(vector) as usize;
        self.keys.push(key);
        self.dead.push(false);
        Ok(slot)
    }

    /// Bytes held by the graph (vectors and links).
    pub fn heap_bytes(&self) -> usize {
        self.graph.heap_bytes()
    }

    /// Mean number of links per slot on layer 0.
    pub fn mean_degree(&self) -> f64 {
        self.graph.mean_degree()
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
        self.graph.dim()
    }

    /// The vector in `slot` (live or dead), as stored (quantised vectors decoded). Panics if there is no such slot.
    pub fn vector(&self, slot: usize) -> std::borrow::Cow<'_, [f32]> {
        self.graph.vector(slot as u32)
    }

    /// Cosine of `query` with the vector in `slot` as stored. Panics if there is no such slot.
    pub fn similarity(&self, query: &[f32], slot: usize) -> f32 {
        1.0 - self.graph.dist_to(query, slot as u32)
    }

    /// Approximate top-k live slots by cosine.
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
        if query.len() != self.dim() {
            return Err(VectorError::Invalid(format!("query has {} values, index dim {}", query.len(), self.dim())));
        }
        if k == 0 || self.is_empty() {
            return Ok(vec![]);
        }
        let ef = self.params.ef_search.max(k);
        if self.n_dead == 0 && keep_opt.is_none() {
            // Nothing to skip: no per-candidate lookup (the tombstone flags are one more cache miss each).
            return Ok(self.graph.search(query, k, ef, &|_| true));
        }
        let keep = |id: u32| !self.dead[id as usize] && keep_opt.is_none_or(|f| f(id as usize));
        Ok(self.graph.search(query, k, ef, &keep))
    }

    /// Saves the index as `dir/index/index.bin` (temp file + rename): magic, format version, a JSON
    /// header (model fingerprint, parameters, keys, tombstones), the graph, and a BLAKE3 checksum.
    pub fn save(&self, dir: &Path, model_fingerprint: &str) -> Result<()> {
        let idx = index_dir(dir);
        std::fs::create_dir_all(&idx).map_err(|e| io_err(&idx, e))?;
        let meta = IndexMeta {
            format_version: INDEX_FORMAT_VERSION,
            model_fingerprint: model_fingerprint.into(),
            dim: self.dim(),
            params: self.params.clone(),
            keys: self.keys.clone(),
            dead: (0..self.keys.len()).filter(|&i| self.dead[i]).collect(),
        };
        let json = serde_json::to_vec(&meta).map_err(|e| io_err(&idx, e))?;
        let path = idx.join("index.bin");
        soundalike_core::write_atomic_with(&path, &mut |w| {
            let mut h = HashWriter { inner: w, hash: blake3::Hasher::new() };
            h.write_all(MAGIC)?;
            h.write_all(&INDEX_FORMAT_VERSION.to_le_bytes())?;
            h.write_all(&(json.len() as u64).to_le_bytes())?;
            h.write_all(&json)?;
            self.graph.write_to(&mut h)?;
            let sum = h.hash.finalize();
            h.inner.write_all(sum.as_bytes())
        })
        .map_err(|e| io_err(&path, e))?;
        // Files of the older, hnsw_rs-dump format.
        for old in ["index.json", "graph.hnsw.graph", "graph.hnsw.data"] {
            let _ = std::fs::remove_file(idx.join(old));
        }
        Ok(())
    }

    /// Loads `dir/index/index.bin` if it exists and is of this format and width; `Ok(None)` when absent or
    /// of another format version (the caller rebuilds), an error when it belongs to another model or is
    /// damaged (checksum, sizes, links out of range).
    pub fn load(dir: &Path, model_fingerprint: &str, dim: usize) -> Result<Option<Self>> {
        let path = index_dir(dir).join("index.bin");
        let bad = |reason: String| VectorError::StaleIndex { path: path.clone(), reason };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        let mut r = HashReader { inner: std::io::BufReader::new(file), hash: blake3::Hasher::new() };
        let mut head = vec![0u8; MAGIC.len() + 4 + 8];
        r.read_exact(&mut head).map_err(|_| bad("not a soundalike index (too short)".into()))?;
        if &head[..MAGIC.len()] != MAGIC {
            return Err(bad("not a soundalike index (wrong magic bytes)".into()));
        }
        let at = MAGIC.len();
        let version = u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        if version != INDEX_FORMAT_VERSION {
            return Ok(None);
        }
        let json_len = u64::from_le_bytes(head[at + 4..at + 12].try_into().unwrap_or_default());
        if json_len > 1 << 34 {
            return Err(bad(format!("header claims {json_len} bytes")));
        }
        let mut json = vec![0u8; json_len as usize];
        r.read_exact(&mut json).map_err(|_| bad("file is truncated".into()))?;
        let meta: IndexMeta = serde_json::from_slice(&json).map_err(|e| bad(format!("unreadable header: {e}")))?;
        if meta.model_fingerprint != model_fingerprint {
            return Err(VectorError::Incompatible {
                path,
                reason: format!("index built for model {}, store is model {model_fingerprint}", meta.model_fingerprint),
            });
        }
        if meta.dim != dim {
            return Ok(None);
        }
        let graph = Graph::read_from(&mut r).map_err(bad)?;
        let mut sum = [0u8; 32];
        r.inner.read_exact(&mut sum).map_err(|_| bad("file is truncated".into()))?;
        if r.hash.finalize().as_bytes() != &sum || r.inner.read(&mut [0u8; 1]).map_or(true, |n| n != 0) {
            return Err(bad("checksum mismatch (damaged file)".into()));
        }
        if graph.len() != meta.keys.len() || graph.dim() != dim {
            return Err(bad(format!("graph has {} slots but the header names {}", graph.len(), meta.keys.len())));
        }
        if graph.quantised() != (meta.params.vectors == Precision::I16) {
            return Err(bad("the graph's vector precision does not match the header".into()));
        }
        let mut dead = vec![false; meta.keys.len()];
        for &d in &meta.dead {
            if let Some(x) = dead.get_mut(d) {
                *x = true;
            }
        }
        let n_dead = dead.iter().filter(|&&d| d).count();
        Ok(Some(AnnIndex { graph, keys: meta.keys, dead, n_dead, params: meta.params }))
    }
}

/// Hashes what passes through to `inner`.
struct HashWriter<'a> {
    inner: &'a mut dyn Write,
    hash: blake3::Hasher,
}

impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes what is read from `inner`.
struct HashReader<R> {
    inner: R,
    hash: blake3::Hasher,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.hash.update(&b[..n]);
        Ok(n)
    }
}

/// Where a store keeps its index.
pub fn index_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("index")
}
