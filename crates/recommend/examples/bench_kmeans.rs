//! Time and memory of `soundalike clusters`' numerics on N synthetic song vectors (128-d, unit length,
//! scattered around 200 hidden centres): the k-means fit at k (with the command's defaults: 4 restarts,
//! mini-batches above 100,000 vectors, then an exact assignment of every vector), the sampled silhouette,
//! and optionally the choice of k over a range (on the command's 50,000-vector sample). Prints one JSON line.
//!   cargo run --release -p soundalike-recommend --example bench_kmeans -- [N=100000] [K=50] [LO..HI]
//! `BENCH_KMEANS_LLOYD=1` runs full Lloyd iterations whatever N (the comparison for mini-batches).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::time::Instant;

use soundalike_recommend::{choose_k, kmeans, normalise, random_unit_vectors, silhouette, KMeansOptions};

mod common;
use common::{peak_rss_kb, rss_kb};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = a.first().and_then(|x| x.parse().ok()).unwrap_or(100_000);
    let k: usize = a.get(1).and_then(|x| x.parse().ok()).unwrap_or(50);
    let range = a.get(2).and_then(|r| r.split_once("..")).map(|(lo, hi)| lo.parse::<usize>().unwrap()..=hi.parse::<usize>().unwrap());
    let dim = 128;
    let rss0 = rss_kb();
    let centres = random_unit_vectors(200, dim, 7);
    // Noise drawn row by row, so the data is the only large allocation.
    let mut data = vec![0f32; n * dim];
    for (i, row) in data.chunks_exact_mut(dim).enumerate() {
        let c = (i * 7919) % 200;
        let z = random_unit_vectors(1, dim, 8 + 2 * i as u64);
        for d in 0..dim {
            row[d] = centres[c * dim + d] + 0.8 * z[d];
        }
        normalise(row);
    }
    let rss_data = rss_kb();
    // BENCH_KMEANS_LLOYD=1: full Lloyd iterations at any size (what mini-batches replace above 100,000).
    let lloyd = std::env::var("BENCH_KMEANS_LLOYD").is_ok_and(|v| v == "1");
    let opts = KMeansOptions { k, seed: 1, mini_batch_above: if lloyd { usize::MAX } else { KMeansOptions::default().mini_batch_above }, ..KMeansOptions::default() };
    let t = Instant::now();
    let fit = kmeans(&data, dim, &opts).expect("kmeans");
    let fit_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sil = silhouette(&data, dim, &fit.assign, k, 4000, 1);
    let sil_s = t.elapsed().as_secs_f64();
    let choose = range.map(|r| {
        let t = Instant::now();
        let ch = choose_k(&data, dim, r.clone(), &opts, 50_000, 4000).expect("choose_k");
        serde_json::json!({"range": format!("{}..{}", r.start(), r.end()), "seconds": t.elapsed().as_secs_f64(), "chosen": ch.chosen, "elbow": ch.elbow, "curve_rows": ch.curve_rows})
    });
    println!(
        "{}",
        serde_json::json!({
            "n": n, "dim": dim, "k": k, "threads": rayon::current_num_threads(),
            "method": if fit.mini_batch { "mini-batch" } else { "lloyd" }, "restarts": opts.restarts, "iterations": fit.iterations,
            "fit_seconds": fit_s, "silhouette_seconds": sil_s, "silhouette": sil, "inertia_per_song": fit.inertia / n as f64,
            "vectors_mb": (n * dim * 4) as f64 / 1e6, "rss_data_mb": (rss_data - rss0) as f64 / 1024.0,
            "peak_rss_mb": peak_rss_kb() as f64 / 1024.0, "choose_k": choose,
        })
    );
}
