//! A read-only, flattened copy of an hnsw_rs graph and the standard HNSW search over it (Malkov &
//! Yashunin, 2016, algorithms 2 and 5), with filters applied inside the search.
//!
//! hnsw_rs builds and stores the graph well, but its search allocates an `Arc` per candidate, keeps a
//! `HashMap` of visited points and takes a lock per neighbour list; on 100k vectors that made it about
//! 5x slower per query than hnswlib. Here the graph is plain arrays (neighbour ids per layer, vectors in
//! slot order), the visited set is a generation-stamped array reused across queries, and the heaps hold
//! `(distance, slot)` pairs.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use hnsw_rs::prelude::*;

use crate::ann::CosineDistance;
use crate::search::{rank, Hit};

/// A float ordered by `total_cmp`, for heaps.
#[derive(Clone, Copy, PartialEq)]
struct D(f32);

impl Eq for D {}

impl PartialOrd for D {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for D {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// The graph as arrays, indexed by slot (hnsw_rs data id).
pub(crate) struct FlatGraph {
    dim: usize,
    vectors: Vec<f32>,
    /// Layer-0 neighbours: `l0[l0_off[s]..l0_off[s + 1]]`.
    l0_off: Vec<u32>,
    l0: Vec<u32>,
    /// Neighbours on layers 1.. of the (few) slots that reach them: `upper[&s][layer - 1]`.
    upper: HashMap<u32, Vec<Vec<u32>>>,
    entry: u32,
    top: usize,
}

thread_local! {
    /// Visited marks: `marks[s] == generation` means visited in this query.
    static VISITED: RefCell<(Vec<u32>, u32)> = const { RefCell::new((Vec::new(), 0)) };
}

impl FlatGraph {
    /// Copies the graph out of `hnsw` (`n` slots, data ids 0..n).
    pub(crate) fn from_hnsw(hnsw: &Hnsw<'static, f32, CosineDistance>, n: usize, dim: usize) -> Option<FlatGraph> {
        let mut vectors = vec![0f32; n * dim];
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut upper: HashMap<u32, Vec<Vec<u32>>> = HashMap::new();
        let (mut entry, mut top) = (None, 0usize);
        let mut seen = 0usize;
        for p in hnsw.get_point_indexation() {
            let s = p.get_origin_id();
            if s >= n {
                return None;
            }
            seen += 1;
            vectors[s * dim..(s + 1) * dim].copy_from_slice(p.get_v());
            let layers = p.get_neighborhood_id();
            let level = p.get_point_id().0 as usize;
            if entry.is_none() || level > top {
                entry = Some(s as u32);
                top = level;
            }
            for (l, nbs) in layers.iter().enumerate() {
                let ids: Vec<u32> = nbs.iter().map(|nb| nb.d_id as u32).collect();
                if l == 0 {
                    lists[s] = ids;
                } else if !ids.is_empty() || l <= level {
                    let u = upper.entry(s as u32).or_default();
                    if u.len() < l {
                        u.resize(l, Vec::new());
                    }
                    u[l - 1] = ids;
                }
            }
        }
        if seen != n {
            return None;
        }
        let mut l0_off = Vec::with_capacity(n + 1);
        let mut l0 = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        l0_off.push(0);
        for l in lists {
            l0.extend(l);
            l0_off.push(l0.len() as u32);
        }
        Some(FlatGraph { dim, vectors, l0_off, l0, upper, entry: entry?, top })
    }

    fn dist(&self, q: &[f32], s: u32) -> f32 {
        let s = s as usize;
        (1.0 - crate::dot(q, &self.vectors[s * self.dim..(s + 1) * self.dim])).max(0.0)
    }

    fn upper_neighbours(&self, s: u32, layer: usize) -> &[u32] {
        self.upper.get(&s).and_then(|u| u.get(layer - 1)).map_or(&[], Vec::as_slice)
    }

    /// The `k` nearest slots that `keep` accepts, searching layer 0 with a candidate list of `ef`.
    pub(crate) fn search(&self, q: &[f32], k: usize, ef: usize, keep: &dyn Fn(usize) -> bool) -> Vec<Hit> {
        let n = self.l0_off.len() - 1;
        if n == 0 || k == 0 {
            return vec![];
        }
        // Greedy descent through the upper layers.
        let mut ep = self.entry;
        let mut d = self.dist(q, ep);
        for layer in (1..=self.top).rev() {
            loop {
                let mut moved = false;
                for &nb in self.upper_neighbours(ep, layer) {
                    let dn = self.dist(q, nb);
                    if dn < d {
                        (d, ep, moved) = (dn, nb, true);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let ef = ef.max(k);
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
            let mut cand: BinaryHeap<Reverse<(D, u32)>> = BinaryHeap::with_capacity(ef * 2);
            let mut best: BinaryHeap<(D, u32)> = BinaryHeap::with_capacity(ef + 1);
            marks[ep as usize] = g;
            cand.push(Reverse((D(d), ep)));
            if keep(ep as usize) {
                best.push((D(d), ep));
            }
            while let Some(Reverse((D(dc), c))) = cand.pop() {
                if best.len() >= ef && best.peek().is_some_and(|w| dc > w.0 .0) {
                    break;
                }
                let (a, b) = (self.l0_off[c as usize] as usize, self.l0_off[c as usize + 1] as usize);
                for &nb in &self.l0[a..b] {
                    let m = &mut marks[nb as usize];
                    if *m == g {
                        continue;
                    }
                    *m = g;
                    let dn = self.dist(q, nb);
                    if best.len() < ef || best.peek().is_some_and(|w| dn < w.0 .0) {
                        cand.push(Reverse((D(dn), nb)));
                        if keep(nb as usize) {
                            best.push((D(dn), nb));
                            if best.len() > ef {
                                best.pop();
                            }
                        }
                    }
                }
            }
            let mut hits: Vec<Hit> = best.into_iter().map(|(D(d), s)| Hit { row: s as usize, score: 1.0 - d }).collect();
            rank(&mut hits, k);
            hits
        })
    }

    /// Bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.vectors.len() * 4 + self.l0.len() * 4 + self.l0_off.len() * 4 + self.upper.values().map(|u| u.iter().map(|l| l.len() * 4 + 24).sum::<usize>() + 48).sum::<usize>()
    }
}
