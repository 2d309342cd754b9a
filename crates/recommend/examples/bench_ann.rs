//! ANN benchmark on synthetic unit vectors (or a .npy matrix): build time, memory, and for several ef:
//! recall@10 against exact search and single-thread queries/s. Prints JSON. Driven by scripts/bench/bench_ann.sh.
//!
//! cargo run --release -p soundalike-recommend --example bench_ann -- N DIM QUERIES [vectors.f32|-] [native|hnsw-rs] [f32|i16]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::time::Instant;

use soundalike_recommend::{exact_search, random_unit_vectors, AnnIndex, AnnParams, Builder, Precision};

mod common;
use common::rss_kb;

/// Search lists tried (the same in scripts/bench/bench_ann.sh for hnswlib and faiss).
const EFS: [usize; 10] = [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120];

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = a.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dim: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let nq: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    // Vectors: raw little-endian f32 file (from the Python driver, so every library sees the same data).
    let builder = if a.get(4).map(String::as_str) == Some("hnsw-rs") { Builder::HnswRs } else { Builder::Native };
    let v: Vec<f32> = match a.get(3).filter(|p| *p != "-") {
        Some(p) => std::fs::read(p).expect("vectors file").chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        None => random_unit_vectors(n, dim, 0x2545_F491_4F6C_DD1D),
    };
    let n = v.len() / dim;
    let (base, queries) = v.split_at((n - nq) * dim);
    let nb = n - nq;
    let rss0 = rss_kb();
    let t = Instant::now();
    let vectors = if a.get(5).map(String::as_str) == Some("i16") { Precision::I16 } else { Precision::F32 };
    let params = AnnParams { m: 16, ef_construction: 200, ef_search: 10, builder, vectors };
    // BENCH_ANN_CACHE=DIR: load the index saved there by an earlier run (build time then reads 0), or build
    // and save it; for trying search changes on a graph that takes minutes to build.
    let cache = std::env::var_os("BENCH_ANN_CACHE").map(std::path::PathBuf::from);
    let loaded = cache.as_ref().and_then(|d| AnnIndex::load(d, "bench", dim).expect("load cached index"));
    let from_cache = loaded.is_some();
    let mut idx = loaded.unwrap_or_else(|| AnnIndex::build(base, dim, &params).expect("build"));
    let build_s = if from_cache { 0.0 } else { t.elapsed().as_secs_f64() };
    if let (Some(d), false) = (&cache, from_cache) {
        std::fs::create_dir_all(d).expect("cache dir");
        idx.save(d, "bench").expect("save");
    }
    let mem_mb = (rss_kb().saturating_sub(rss0)) as f64 / 1024.0;
    let truth: Vec<Vec<usize>> = queries.chunks_exact(dim).map(|q| exact_search(base, dim, q, 10, &|_| true).into_iter().map(|h| h.row).collect()).collect();
    let mut rows = Vec::new();
    // Warm-up (page faults, caches), untimed, as the driver does for hnswlib and faiss.
    idx.params.ef_search = 64;
    queries.chunks_exact(dim).take(100).for_each(|q| drop(idx.search_all(q, 10)));
    for ef in EFS {
        idx.params.ef_search = ef;
        let t = Instant::now();
        let mut hits = 0usize;
        for (q, tr) in queries.chunks_exact(dim).zip(&truth) {
            let r = idx.search_all(q, 10).expect("search");
            hits += r.iter().filter(|h| tr.contains(&h.row)).count();
        }
        let s = t.elapsed().as_secs_f64();
        rows.push(format!("{{\"ef\": {ef}, \"recall_at_10\": {:.4}, \"qps\": {:.0}}}", hits as f64 / (10 * nq) as f64, nq as f64 / s));
    }
    println!(
        "{{\"tool\": \"soundalike ({})\", \"n\": {nb}, \"dim\": {dim}, \"m\": 16, \"ef_construction\": 200, \"build_seconds\": {build_s:.2}, \"index_mem_mb\": {mem_mb:.1}, \"search_mem_mb\": {:.1}, \"mean_layer0_links\": {:.1}, \"raw_vectors_mb\": {:.1}, \"results\": [{}]}}",
        match (builder, vectors) {
            (Builder::Native, Precision::F32) => "native build",
            (Builder::Native, Precision::I16) => "native build, i16 vectors",
            (Builder::HnswRs, Precision::F32) => "hnsw_rs build",
            (Builder::HnswRs, Precision::I16) => "hnsw_rs build, i16 vectors",
        },
        idx.heap_bytes() as f64 / 1e6,
        idx.mean_degree(),
        (nb * dim * 4) as f64 / 1e6,
        rows.join(", ")
    );
}
