//! An HNSW graph (Malkov & Yashunin, 2016) built and searched on flat arrays: one fixed-size record per
//! slot holding its layer-0 links (`count, ids...`) and then its vector, as hnswlib lays them out (the links
//! of a node whose vector was just read are usually already in cache when it is expanded), and one link
//! block per slot and upper layer.
//!
//! Why not hnsw_rs's graph: it keeps every point behind an `Arc`, every neighbour list behind a lock and
//! every search's visited set in a `HashMap`; on 100k vectors that made building about 5x slower than
//! hnswlib, and its graph took several times the memory of the vectors. hnsw_rs remains available as a
//! builder ([`Graph::from_hnsw`]), so the two constructions can be compared on the same search code.
//!
//! Building in parallel follows hnswlib: link blocks are atomics, a writer takes the lock of the slot it
//! rewrites (striped locks), readers do not lock (they may see a list mid-rewrite: valid slot ids, a
//! slightly stale neighbourhood), and a slot that raises the graph's top layer holds the entry-point lock
//! for its whole insertion.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::search::{rank, Hit};

/// Highest layer a slot may be drawn on (hnsw_rs also has 16 layers).
pub(crate) const MAX_LEVEL: u8 = 15;
/// Lock stripes for writers (slot `s` uses stripe `s % LOCKS`).
const LOCKS: usize = 4096;

/// A distance (f32) ordered by `total_cmp`, for heaps.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Dist(f32);

impl Eq for Dist {}

impl PartialOrd for Dist {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Dist {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}

thread_local! {
    /// Visited marks: `marks[s] == generation` means visited in this search (16 bits, as hnswlib: half the
    /// cache footprint; all marks are cleared once every 65,535 searches).
    static VISITED: RefCell<(Vec<u16>, u16)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Asks the CPU to start loading `v` into cache (a hint; no effect where unsupported).
#[inline]
fn prefetch(v: &[AtomicU32]) {
    #[cfg(target_arch = "x86_64")]
    for line in v.chunks(16) {
        // SAFETY: prefetching is a hint that never faults; the pointer is inside `v`.
        unsafe { std::arch::x86_64::_mm_prefetch(line.as_ptr() as *const i8, std::arch::x86_64::_MM_HINT_T0) };
    }
}

/// The graph. Slots are 0..len in insertion order.
pub(crate) struct Graph {
    dim: usize,
    /// Links per slot on layers 1.. (and what a new slot gets on every layer).
    m: usize,
    /// Links per slot on layer 0 (2m).
    max_links0: usize,
    ef_construction: usize,
    /// Vectors stored as 16-bit fixed point with a per-vector scale instead of f32.
    quantised: bool,
    /// Words of a stored vector: `dim` (f32 bits), or when quantised the scale (f32 bits) and then
    /// `ceil(dim / 2)` words of i16 pairs.
    vwords: usize,
    /// Words per slot record: `1 + max_links0` link words (count, ids), then `vwords` vector words.
    stride: usize,
    /// Slot records.
    nodes: Vec<AtomicU32>,
    levels: Vec<u8>,
    /// Slot `s` owns upper blocks `upper_start[s]..upper_start[s + 1]`, one per layer 1..=level.
    upper_start: Vec<u32>,
    /// Upper layers: `m + 1` words per block, the count then the ids.
    upper_links: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    /// Entry slot and top layer (`None` while empty).
    entry: Mutex<Option<(u32, u8)>>,
}

/// A deterministic level for slot `s` (geometric, scale 1/ln m), independent of insertion order.
fn draw_level(s: usize, m: usize) -> u8 {
    let mut z = (s as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let l = (-u.ln() / (m.max(2) as f64).ln()).floor();
    l.min(MAX_LEVEL as f64) as u8
}

/// An empty vector with room for `cap` items whose memory (when large) is asked to be backed by huge
/// pages. A search touches a few hundred vectors and link blocks scattered over the whole graph; with
/// 4 kB pages nearly each of those is also a TLB miss.
fn huge_vec<T>(cap: usize) -> Vec<T> {
    let v = Vec::with_capacity(cap);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (p, len) = (v.as_ptr() as usize, cap * std::mem::size_of::<T>());
        let (start, end) = ((p + HUGE - 1) & !(HUGE - 1), (p + len) & !(HUGE - 1));
        if end > start {
            // SAFETY: the range lies inside the vector's own (not yet touched) allocation; MADV_HUGEPAGE
            // is advice about how to back it and changes no contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    v
}

/// How [`Graph::build`] builds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BuildMode {
    /// Insert on every thread of the rayon pool (else one thread, the same graph every run).
    pub(crate) parallel: bool,
    /// Keep the vectors as 16-bit fixed point with a scale per vector (else f32).
    pub(crate) quantised: bool,
}

impl Graph {
    fn empty(dim: usize, m: usize, ef_construction: usize, quantised: bool) -> Graph {
        let vwords = if quantised { 1 + dim.div_ceil(2) } else { dim };
        Graph {
            dim,
            m,
            max_links0: 2 * m,
            ef_construction,
            quantised,
            vwords,
            stride: 2 * m + 1 + vwords,
            nodes: Vec::new(),
            levels: Vec::new(),
            upper_start: vec![0],
            upper_links: Vec::new(),
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
            entry: Mutex::new(None),
        }
    }

    /// Room for slots with these levels (links empty).
    fn reserve_slots(&mut self, levels: &[u8]) {
        let n = self.levels.len() + levels.len();
        if self.nodes.is_empty() {
            self.nodes = huge_vec(levels.len() * self.stride);
        }
        self.nodes.extend((0..levels.len() * self.stride).map(|_| AtomicU32::new(0)));
        let mut blocks = *self.upper_start.last().unwrap_or(&0) as usize;
        for &l in levels {
            blocks += l as usize;
            self.upper_start.push(blocks as u32);
        }
        self.upper_links.extend((self.upper_links.len()..blocks * (self.m + 1)).map(|_| AtomicU32::new(0)));
        self.levels.extend_from_slice(levels);
        debug_assert_eq!(self.levels.len(), n);
    }

    /// Builds the graph over `vectors` (`dim` wide, unit length), in parallel when asked (then the
    /// links depend on thread timing; sequential builds are the same on every run); `quantised`: the
    /// graph keeps the vectors as 16-bit fixed point (about half the memory, cosines within about 1e-4).
    pub(crate) fn build(vectors: &[f32], dim: usize, m: usize, ef_construction: usize, how: BuildMode) -> Graph {
        let BuildMode { parallel, quantised } = how;
        let n = vectors.len() / dim;
        let mut g = Graph::empty(dim, m, ef_construction, quantised);
        let levels: Vec<u8> = (0..n).map(|s| draw_level(s, m)).collect();
        g.reserve_slots(&levels);
        vectors.chunks_exact(dim).enumerate().for_each(|(s, v)| g.set_vector(s as u32, v));
        // The first slot linked becomes the entry point (see `link`).
        if parallel {
            (0..n as u32).into_par_iter().for_each(|s| g.link(s));
        } else {
            (0..n as u32).for_each(|s| g.link(s));
        }
        g
    }

    /// Appends one vector and links it into the graph; returns its slot.
    pub(crate) fn insert(&mut self, v: &[f32]) -> u32 {
        let s = self.levels.len();
        let level = draw_level(s, self.m);
        self.reserve_slots(&[level]);
        self.set_vector(s as u32, v);
        self.link(s as u32);
        s as u32
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    pub(crate) fn quantised(&self) -> bool {
        self.quantised
    }

    /// The stored words of slot `s`'s vector.
    #[inline]
    fn vector_words(&self, s: u32) -> &[AtomicU32] {
        let at = s as usize * self.stride + self.max_links0 + 1;
        &self.nodes[at..at + self.vwords]
    }

    /// Slot `s`'s vector as f32 (borrowed when stored as f32, decoded when quantised).
    pub(crate) fn vector(&self, s: u32) -> std::borrow::Cow<'_, [f32]> {
        let words = self.vector_words(s);
        if self.quantised {
            // SAFETY: see `i16_parts`.
            let (scale, q) = unsafe { self.i16_parts(words) };
            return q.iter().map(|&x| x as f32 * scale).collect();
        }
        // SAFETY: AtomicU32 has the size, alignment and bit validity of u32, hence of f32. A slot's vector
        // words are written only by `set_vector` while the slot is being placed (before the parallel build
        // starts linking, or under `&mut self` in `insert` and the loaders), never while a search or a
        // link can be reading them.
        std::borrow::Cow::Borrowed(unsafe { std::slice::from_raw_parts(words.as_ptr() as *const f32, self.dim) })
    }

    /// A quantised vector's scale (first word, f32 bits) and its `dim` 16-bit values (the next words).
    ///
    /// # Safety
    /// `words` are a vector's words of a quantised graph (`vwords = 1 + ceil(dim / 2)` words hold
    /// the scale and `dim` i16, alignment 4 >= 2); written only before any reader can reach the slot, as
    /// in `vector`.
    #[inline]
    unsafe fn i16_parts<'a>(&self, words: &'a [AtomicU32]) -> (f32, &'a [i16]) {
        debug_assert!((words.len() - 1) * 2 >= self.dim);
        // SAFETY: as the function's contract says: the words hold `dim` i16 after the scale, aligned, not written concurrently.
        (f32::from_bits(words[0].load(Relaxed)), unsafe { std::slice::from_raw_parts(words[1..].as_ptr() as *const i16, self.dim) })
    }

    /// `1 - cosine` between the query `q` and slot `s`'s stored vector, clamped at 0.
    #[inline]
    pub(crate) fn dist_to(&self, q: &[f32], s: u32) -> f32 {
        let words = self.vector_words(s);
        let d = if self.quantised {
            // SAFETY: see `i16_parts`.
            let (scale, v) = unsafe { self.i16_parts(words) };
            crate::dot_i16(q, v) * scale
        } else {
            // SAFETY: as in `vector`.
            crate::dot(q, unsafe { std::slice::from_raw_parts(words.as_ptr() as *const f32, self.dim) })
        };
        (1.0 - d).max(0.0)
    }

    /// Writes the vector of a slot that no search or link can reach yet. Quantised: `v = scale * q` with
    /// `q` in -32767..=32767 and `scale = max |v_i| / 32767`, so each value is within `scale / 2` of its f32.
    fn set_vector(&self, s: u32, v: &[f32]) {
        let words = self.vector_words(s);
        if self.quantised {
            let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = if max > 0.0 { max / 32767.0 } else { 1.0 };
            let mut q: Vec<i16> = v.iter().map(|&x| (x / scale).round().clamp(-32767.0, 32767.0) as i16).collect();
            q.resize(2 * (self.vwords - 1), 0);
            words[0].store(scale.to_bits(), Relaxed);
            // Native byte order, so that the words read back as i16 in `i16_parts` on any platform.
            for (w, pair) in words[1..].iter().zip(q.chunks_exact(2)) {
                let mut b = [0u8; 4];
                b[..2].copy_from_slice(&pair[0].to_ne_bytes());
                b[2..].copy_from_slice(&pair[1].to_ne_bytes());
                w.store(u32::from_ne_bytes(b), Relaxed);
            }
        } else {
            words.iter().zip(v).for_each(|(w, x)| w.store(x.to_bits(), Relaxed));
        }
    }

    /// The link block of `s` on `layer` (count word first); empty above its level.
    fn block(&self, s: u32, layer: usize) -> &[AtomicU32] {
        let su = s as usize;
        if layer == 0 {
            &self.nodes[su * self.stride..su * self.stride + self.max_links0 + 1]
        } else if layer <= self.levels[su] as usize {
            let b = self.upper_start[su] as usize + layer - 1;
            &self.upper_links[b * (self.m + 1)..(b + 1) * (self.m + 1)]
        } else {
            &[]
        }
    }

    /// Copies the neighbours of `s` on `layer` into `out`.
    fn neighbours(&self, s: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        let b = self.block(s, layer);
        if let Some((count, ids)) = b.split_first() {
            let c = (count.load(Acquire) as usize).min(ids.len());
            out.extend(ids[..c].iter().map(|a| a.load(Relaxed)));
        }
    }

    fn write_block(&self, s: u32, layer: usize, ids: &[(f32, u32)]) {
        let b = self.block(s, layer);
        for (slot, &(_, id)) in b[1..].iter().zip(ids) {
            slot.store(id, Relaxed);
        }
        b[0].store(ids.len().min(b.len() - 1) as u32, Release);
    }

    /// Mean links per slot on layer 0 (a size check for the benchmark).
    pub(crate) fn mean_degree(&self) -> f64 {
        let total: u64 = (0..self.len()).map(|s| self.nodes[s * self.stride].load(Relaxed) as u64).sum();
        total as f64 / self.len().max(1) as f64
    }

    /// Bytes held by the vectors and links.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.levels.len() + (self.nodes.len() + self.upper_start.len() + self.upper_links.len()) * 4 + LOCKS * 8
    }

    fn greedy(&self, q: &[f32], mut ep: (f32, u32), layer: usize, buf: &mut Vec<u32>) -> (f32, u32) {
        loop {
            let mut moved = false;
            self.neighbours(ep.1, layer, buf);
            for &nb in buf.iter() {
                let d = self.dist_to(q, nb);
                if d < ep.0 {
                    (ep, moved) = ((d, nb), true);
                }
            }
            if !moved {
                return ep;
            }
        }
    }

    /// Best-first search of one layer from `ep`: up to `ef` nearest slots that `keep` accepts, nearest
    /// first. Rejected slots are still walked through.
    fn search_layer<K: Fn(u32) -> bool + ?Sized>(&self, q: &[f32], ep: (f32, u32), ef: usize, layer: usize, keep: &K) -> Vec<(f32, u32)> {
        let n = self.len();
        VISITED.with(|v| {
            let (marks, generation) = &mut *v.borrow_mut();
            if marks.len() < n {
                marks.resize(n, 0);
            }
            *generation = generation.wrapping_add(1);
            if *generation == 0 {
                marks.iter_mut().for_each(|m| *m = 0);
                *generation = 1;
            }
            let g = *generation;
            let mut buf = Vec::with_capacity(self.max_links0);
            let mut cand: BinaryHeap<Reverse<(Dist, u32)>> = BinaryHeap::with_capacity(ef * 2);
            let mut best: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(ef + 1);
            marks[ep.1 as usize] = g;
            cand.push(Reverse((Dist(ep.0), ep.1)));
            if keep(ep.1) {
                best.push((Dist(ep.0), ep.1));
            }
            while let Some(Reverse((Dist(dc), c))) = cand.pop() {
                if best.len() >= ef && best.peek().is_some_and(|w| dc > w.0 .0) {
                    break;
                }
                self.neighbours(c, layer, &mut buf);
                // Unvisited neighbours first, their vectors requested from memory before any is used.
                buf.retain(|&nb| {
                    let m = &mut marks[nb as usize];
                    let fresh = *m != g;
                    *m = g;
                    fresh
                });
                buf.iter().for_each(|&nb| prefetch(self.vector_words(nb)));
                for &nb in &buf {
                    let dn = self.dist_to(q, nb);
                    if best.len() < ef || best.peek().is_some_and(|w| dn < w.0 .0) {
                        cand.push(Reverse((Dist(dn), nb)));
                        if keep(nb) {
                            best.push((Dist(dn), nb));
                            if best.len() > ef {
                                best.pop();
                            }
                        }
                    }
                }
            }
            let mut out: Vec<(f32, u32)> = best.into_iter().map(|(Dist(d), s)| (d, s)).collect();
            out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            out
        })
    }

    /// The `k` nearest slots that `keep` accepts (candidate list `ef`), best first.
    /// Generic over the filter so that the unfiltered search compiles without a call per candidate.
    pub(crate) fn search<K: Fn(u32) -> bool + ?Sized>(&self, q: &[f32], k: usize, ef: usize, keep: &K) -> Vec<Hit> {
        let Some((entry, top)) = *self.entry.lock().unwrap_or_else(|e| e.into_inner()) else { return vec![] };
        if k == 0 {
            return vec![];
        }
        let mut buf = Vec::with_capacity(self.max_links0);
        let mut ep = (self.dist_to(q, entry), entry);
        for layer in (1..=top as usize).rev() {
            ep = self.greedy(q, ep, layer, &mut buf);
        }
        let mut hits: Vec<Hit> =
            self.search_layer(q, ep, ef.max(k), 0, keep).into_iter().map(|(d, s)| Hit { row: s as usize, score: 1.0 - d }).collect();
        rank(&mut hits, k);
        hits
    }

    /// hnswlib's neighbour heuristic: from candidates sorted nearest first, keep one only if it is
    /// nearer to the base than to every one kept so far, up to `m`.
    fn select(&self, cands: &[(f32, u32)], m: usize) -> Vec<(f32, u32)> {
        if cands.len() <= m {
            return cands.to_vec();
        }
        let mut out: Vec<(f32, u32)> = Vec::with_capacity(m);
        for &(d, c) in cands {
            if out.len() >= m {
                break;
            }
            let vc = self.vector(c);
            if out.iter().all(|&(_, r)| self.dist_to(&vc, r) >= d) {
                out.push((d, c));
            }
        }
        out
    }

    fn lock(&self, s: u32) -> std::sync::MutexGuard<'_, ()> {
        self.locks[s as usize % LOCKS].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `s` to the links of `nb` on `layer`, pruning with the heuristic when the block is full.
    fn add_link(&self, nb: u32, s: u32, layer: usize) {
        let cap = if layer == 0 { self.max_links0 } else { self.m };
        let _g = self.lock(nb);
        let b = self.block(nb, layer);
        if b.is_empty() {
            return;
        }
        let c = b[0].load(Relaxed) as usize;
        if b[1..1 + c].iter().any(|x| x.load(Relaxed) == s) {
            return;
        }
        if c < cap {
            b[1 + c].store(s, Relaxed);
            b[0].store(c as u32 + 1, Release);
            return;
        }
        let vn = self.vector(nb);
        let mut cands: Vec<(f32, u32)> = b[1..1 + c].iter().map(|x| x.load(Relaxed)).chain([s]).map(|id| (self.dist_to(&vn, id), id)).collect();
        cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let kept = self.select(&cands, cap);
        self.write_block(nb, layer, &kept);
    }

    /// Links slot `s` (vector and level already in place) into the graph; into an empty graph, it becomes
    /// the entry point.
    fn link(&self, s: u32) {
        let level = self.levels[s as usize] as usize;
        let q = &*self.vector(s);
        let mut state = self.entry.lock().unwrap_or_else(|e| e.into_inner());
        let Some((entry, top)) = *state else {
            *state = Some((s, level as u8));
            return;
        };
        let top = top as usize;
        // A slot that raises the top layer keeps the entry lock until it is linked (as hnswlib does).
        let hold = if level > top { Some(state) } else { drop(state); None };
        let mut buf = Vec::with_capacity(self.max_links0);
        let mut ep = (self.dist_to(q, entry), entry);
        for layer in (level + 1..=top).rev() {
            ep = self.greedy(q, ep, layer, &mut buf);
        }
        for layer in (0..=level.min(top)).rev() {
            let mut w = self.search_layer(q, ep, self.ef_construction, layer, &|_| true);
            w.retain(|&(_, id)| id != s);
            if w.is_empty() {
                continue;
            }
            let chosen = self.select(&w, self.m);
            {
                let _g = self.lock(s);
                self.write_block(s, layer, &chosen);
            }
            for &(_, nb) in &chosen {
                self.add_link(nb, s, layer);
            }
            ep = w[0];
        }
        if let Some(mut state) = hold {
            *state = Some((s, level as u8));
        }
    }

    /// Copies a graph built by hnsw_rs (data ids 0..n) into these arrays; `None` if its ids do not
    /// cover 0..n exactly.
    pub(crate) fn from_hnsw<D: hnsw_rs::prelude::Distance<f32> + Send + Sync>(
        hnsw: &hnsw_rs::prelude::Hnsw<'_, f32, D>,
        n: usize,
        dim: usize,
        m: usize,
        ef_construction: usize,
        quantised: bool,
    ) -> Option<Graph> {
        let mut g = Graph::empty(dim, m, ef_construction, quantised);
        let mut levels = vec![u8::MAX; n];
        let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
        let mut vectors = vec![0f32; n * dim];
        let mut entry: Option<(u32, u8)> = None;
        for p in hnsw.get_point_indexation() {
            let s = p.get_origin_id();
            if s >= n || levels[s] != u8::MAX {
                return None;
            }
            let level = (p.get_point_id().0).min(MAX_LEVEL);
            levels[s] = level;
            vectors[s * dim..(s + 1) * dim].copy_from_slice(p.get_v());
            lists[s] = p.get_neighborhood_id().iter().take(level as usize + 1).map(|l| l.iter().map(|nb| nb.d_id as u32).collect()).collect();
            if entry.is_none_or(|(_, t)| level > t) {
                entry = Some((s as u32, level));
            }
        }
        if levels.contains(&u8::MAX) {
            return None;
        }
        g.reserve_slots(&levels);
        vectors.chunks_exact(dim).enumerate().for_each(|(s, v)| g.set_vector(s as u32, v));
        drop(vectors);
        for (s, layers) in lists.iter().enumerate() {
            for (layer, ids) in layers.iter().enumerate() {
                let ids: Vec<(f32, u32)> = ids.iter().filter(|&&id| (id as usize) < n).map(|&id| (0.0, id)).collect();
                g.write_block(s as u32, layer, &ids);
            }
        }
        *g.entry.lock().unwrap_or_else(|e| e.into_inner()) = entry;
        Some(g)
    }

    /// Writes the arrays (read back by [`Graph::read_from`]).
    pub(crate) fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let (entry, top) = self.entry.lock().unwrap_or_else(|e| e.into_inner()).map_or((u32::MAX, 0), |(e, t)| (e, t));
        for x in [self.dim, self.m, self.ef_construction, self.len(), self.quantised as usize] {
            w.write_all(&(x as u64).to_le_bytes())?;
        }
        w.write_all(&entry.to_le_bytes())?;
        w.write_all(&[top])?;
        w.write_all(&self.levels)?;
        // On disk: every layer-0 block, the upper blocks, then every vector (the layout before records).
        let n = self.len();
        let words = |w: &mut dyn Write, part: &mut dyn Iterator<Item = &[AtomicU32]>| -> std::io::Result<()> {
            let mut buf = Vec::with_capacity(CHUNK * 4 + 4096);
            for p in part {
                p.iter().for_each(|a| buf.extend_from_slice(&a.load(Relaxed).to_le_bytes()));
                if buf.len() >= CHUNK * 4 {
                    w.write_all(&buf)?;
                    buf.clear();
                }
            }
            w.write_all(&buf)
        };
        words(w, &mut (0..n).map(|s| &self.nodes[s * self.stride..s * self.stride + self.max_links0 + 1]))?;
        words(w, &mut self.upper_links.chunks(CHUNK))?;
        words(w, &mut (0..n).map(|s| &self.nodes[s * self.stride + self.max_links0 + 1..(s + 1) * self.stride]))
    }

    /// Reads what [`Graph::write_to`] wrote, checking every size and id; the reason when it does not fit.
    pub(crate) fn read_from(r: &mut dyn Read) -> std::result::Result<Graph, String> {
        let mut head = [0u8; 8 * 5 + 4 + 1];
        r.read_exact(&mut head).map_err(short)?;
        let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap_or_default()) as usize;
        let (dim, m, ef_construction, n, quantised) = (word(0), word(1), word(2), word(3), word(4));
        let entry = u32::from_le_bytes([head[40], head[41], head[42], head[43]]);
        let top = head[44];
        if dim == 0 || dim > 1 << 16 || !(2..=255).contains(&m) || n > u32::MAX as usize / 2 || quantised > 1 {
            return Err(format!("bad sizes (dim {dim}, M {m}, {n} slots, vector format {quantised})"));
        }
        let mut levels = vec![0u8; n];
        r.read_exact(&mut levels).map_err(short)?;
        if levels.iter().any(|&l| l > MAX_LEVEL) {
            return Err("a level above the maximum".into());
        }
        let mut g = Graph::empty(dim, m, ef_construction, quantised == 1);
        g.reserve_slots(&levels);
        let mut buf = vec![0u8; CHUNK * 4];
        let mut fill = |part: &[AtomicU32]| -> std::result::Result<(), String> {
            for piece in part.chunks(CHUNK) {
                let b = &mut buf[..piece.len() * 4];
                r.read_exact(b).map_err(short)?;
                piece.iter().zip(b.chunks_exact(4)).for_each(|(a, c)| a.store(u32::from_le_bytes([c[0], c[1], c[2], c[3]]), Relaxed));
            }
            Ok(())
        };
        let (stride, max_links0) = (g.stride, g.max_links0);
        for s in 0..n {
            fill(&g.nodes[s * stride..s * stride + max_links0 + 1])?;
        }
        fill(&g.upper_links)?;
        for s in 0..n {
            fill(&g.nodes[s * stride + max_links0 + 1..(s + 1) * stride])?;
        }
        for s in 0..n as u32 {
            for layer in 0..=g.levels[s as usize] as usize {
                let blk = g.block(s, layer);
                let c = blk[0].load(Relaxed) as usize;
                if c >= blk.len() || blk[1..1 + c].iter().any(|x| x.load(Relaxed) as usize >= n) {
                    return Err(format!("slot {s} has a bad link list on layer {layer}"));
                }
            }
        }
        if n > 0 {
            if entry as usize >= n || g.levels[entry as usize] != top {
                return Err("bad entry point".into());
            }
            *g.entry.lock().unwrap_or_else(|e| e.into_inner()) = Some((entry, top));
        }
        Ok(g)
    }
}

/// Words per read/write chunk when saving and loading.
const CHUNK: usize = 16 * 1024;

fn short(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "file is truncated".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_geometric() {
        let levels: Vec<u8> = (0..100_000).map(|s| draw_level(s, 16)).collect();
        let above0 = levels.iter().filter(|&&l| l > 0).count() as f64 / 1e5;
        assert!((above0 - 1.0 / 16.0).abs() < 0.01, "P(level > 0) = {above0}");
        assert!(levels.iter().all(|&l| l <= MAX_LEVEL));
    }

    #[test]
    fn visited_marks_survive_the_generation_wrap() {
        // 16-bit marks are cleared every 65,535 searches; a missed clear would hide visited slots.
        let (n, dim) = (300, 8);
        let v = crate::random_unit_vectors(n, dim, 3);
        let g = Graph::build(&v, dim, 8, 50, BuildMode::default());
        for i in 0..66_000usize {
            let s = i % n;
            let hits = g.search(&v[s * dim..(s + 1) * dim], 1, 16, &|_| true);
            assert_eq!(hits[0].row, s, "search {i}");
        }
    }

    #[test]
    fn parallel_build_finds_true_neighbours_and_survives_a_round_trip() {
        for quantised in [false, true] {
            parallel_build_case(quantised);
        }
    }

    fn parallel_build_case(quantised: bool) {
        // An odd width, so quantised records end in a padded word.
        let (n, dim) = (3000, 17);
        let v = crate::random_unit_vectors(n, dim, 7);
        let g = Graph::build(&v, dim, 12, 100, BuildMode { parallel: true, quantised });
        assert_eq!(g.quantised(), quantised);
        // Stored vectors read back as given (quantised: within half a step of max |v_i| / 32767).
        for s in [0, 1, n - 1] {
            let (back, orig) = (g.vector(s as u32), &v[s * dim..(s + 1) * dim]);
            let tol = if quantised { orig.iter().fold(0f32, |m, x| m.max(x.abs())) / 32767.0 * 0.51 + 1e-7 } else { 0.0 };
            assert!(back.iter().zip(orig).all(|(a, b)| (a - b).abs() <= tol), "slot {s} (quantised {quantised})");
            let q = &v[(s + 1) % n * dim..((s + 1) % n + 1) * dim];
            assert!((g.dist_to(q, s as u32) - (1.0 - crate::dot(q, orig)).max(0.0)).abs() < 1e-4);
        }
        assert_eq!(g.len(), n);
        let mut hit = 0;
        for qi in (0..n).step_by(30) {
            let q = &v[qi * dim..(qi + 1) * dim];
            let exact = crate::exact_search(&v, dim, q, 10, &|_| true);
            let got = g.search(q, 10, 64, &|_| true);
            hit += got.iter().filter(|h| exact.iter().any(|e| e.row == h.row)).count();
        }
        let recall = hit as f64 / (100 * 10) as f64;
        assert!(recall > 0.95, "recall@10 {recall} (quantised {quantised})");
        let mut bytes = Vec::new();
        g.write_to(&mut bytes).unwrap();
        let back = Graph::read_from(&mut bytes.as_slice()).unwrap();
        let q = &v[..dim];
        assert_eq!(back.search(q, 10, 64, &|_| true), g.search(q, 10, 64, &|_| true));
        assert!(Graph::read_from(&mut &bytes[..bytes.len() - 1]).err().unwrap().contains("truncated"));
        // A link pointing past the last slot is refused, not followed.
        let mut bad = bytes.clone();
        let first_link = 8 * 5 + 4 + 1 + n + 4;
        bad[first_link..first_link + 4].copy_from_slice(&(n as u32 + 5).to_le_bytes());
        bad[first_link - 4..first_link].copy_from_slice(&1u32.to_le_bytes());
        assert!(Graph::read_from(&mut bad.as_slice()).err().unwrap().contains("bad link list"));
    }
}
