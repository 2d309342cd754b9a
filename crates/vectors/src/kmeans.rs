//! Spherical k-means on unit vectors (cosine geometry), k-means++ seeding, restarts, a mini-batch variant
//! for large libraries, the mean silhouette, and the choice of k (elbow of the inertia curve and the
//! silhouette). Deterministic for a seed, whatever the number of threads: every sum is taken over fixed
//! chunks of rows and the chunks are added in order.

use soundalike_core::SplitMix64;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{dot, normalise, VectorError, Result};

/// Rows per parallel work item (fixed, so sums do not depend on the thread count).
const CHUNK: usize = 2048;

/// How to run k-means.
#[derive(Clone, Debug)]
pub struct KMeansOptions {
    /// Number of clusters.
    pub k: usize,
    /// Seed of the k-means++ draws, restarts and mini-batches.
    pub seed: u64,
    /// Independent runs; the one with the lowest inertia is kept.
    pub restarts: usize,
    /// Most Lloyd iterations (or mini-batches, see `batch_size`) per run.
    pub max_iter: usize,
    /// A run stops once the inertia improves by less than this fraction.
    pub tol: f64,
    /// Above this many vectors, mini-batch k-means (Sculley 2010) replaces full Lloyd iterations; the
    /// final assignment is always exact over every vector.
    pub mini_batch_above: usize,
    /// Vectors per mini-batch.
    pub batch_size: usize,
}

impl Default for KMeansOptions {
    /// k 8, seed 0, 4 restarts, 100 iterations, tolerance 1e-6, mini-batches of 4,096 above 100,000 vectors.
    fn default() -> Self {
        KMeansOptions { k: 8, seed: 0, restarts: 4, max_iter: 100, tol: 1e-6, mini_batch_above: 100_000, batch_size: 4096 }
    }
}

/// The result of [`kmeans`].
#[derive(Clone, Debug, PartialEq)]
pub struct KMeansFit {
    /// Number of clusters.
    pub k: usize,
    /// Vector width.
    pub dim: usize,
    /// Unit-length centroids, row-major `k x dim`.
    pub centroids: Vec<f32>,
    /// Cluster of each vector.
    pub assign: Vec<u32>,
    /// Sum over vectors of `1 - cos(vector, its centroid)`.
    pub inertia: f64,
    /// Lloyd iterations (or mini-batches) of the kept run.
    pub iterations: usize,
    /// Whether mini-batches were used.
    pub mini_batch: bool,
}

impl KMeansFit {
    /// Centroid `c`.
    pub fn centroid(&self, c: usize) -> &[f32] {
        &self.centroids[c * self.dim..(c + 1) * self.dim]
    }
}

/// The nearest centroid (highest cosine) of `v` among `k x dim` `centroids`, and that cosine.
pub fn nearest_centroid(centroids: &[f32], dim: usize, v: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (c, row) in centroids.chunks_exact(dim.max(1)).enumerate() {
        let s = dot(row, v);
        if s > best.1 {
            best = (c, s);
        }
    }
    best
}

fn check(data: &[f32], dim: usize, k: usize) -> Result<usize> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(VectorError::Invalid(format!("{} values are not rows of {dim}", data.len())));
    }
    let n = data.len() / dim;
    if n == 0 {
        return Err(VectorError::Invalid("no songs to cluster: the store is empty".into()));
    }
    if k == 0 {
        return Err(VectorError::Invalid("k must be at least 1".into()));
    }
    if k > n {
        return Err(VectorError::Invalid(format!("k = {k} is more than the {n} songs in the store")));
    }
    Ok(n)
}

/// Clusters the unit-length rows of `data` (`dim` wide) into `opts.k` groups by cosine similarity.
/// Errors when there are no rows, k is 0, or k exceeds the number of rows.
pub fn kmeans(data: &[f32], dim: usize, opts: &KMeansOptions) -> Result<KMeansFit> {
    let n = check(data, dim, opts.k)?;
    let run = |r: usize| {
        let mut rng = SplitMix64(opts.seed.wrapping_add((r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let init = kmeans_pp(data, dim, opts.k, &mut rng);
        if n > opts.mini_batch_above { mini_batch(data, dim, init, opts, &mut rng) } else { lloyd(data, dim, init, opts) }
    };
    let mut best = run(0);
    for r in 1..opts.restarts.max(1) {
        let fit = run(r);
        if fit.inertia < best.inertia {
            best = fit;
        }
    }
    Ok(best)
}

/// k-means++ seeding: the first centre uniformly, each next one with probability proportional to the
/// squared distance to the nearest centre chosen so far (`2 - 2 cos` for unit vectors).
fn kmeans_pp(data: &[f32], dim: usize, k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let n = data.len() / dim;
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let mut centres = Vec::with_capacity(k * dim);
    centres.extend_from_slice(row(rng.below(n)));
    let mut d2: Vec<f32> = vec![f32::INFINITY; n];
    for c in 1..k {
        let last = &centres[(c - 1) * dim..c * dim];
        d2.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, chunk)| {
            for (j, d) in chunk.iter_mut().enumerate() {
                let dist = (2.0 - 2.0 * dot(row(ci * CHUNK + j), last)).max(0.0);
                *d = d.min(dist);
            }
        });
        let total: f64 = d2.par_chunks(CHUNK).map(|c| c.iter().map(|&x| x as f64).sum::<f64>()).collect::<Vec<f64>>().iter().sum();
        let pick = if total <= 0.0 {
            // Every row coincides with a centre already: take any row not yet a centre's twin.
            rng.below(n)
        } else {
            let mut target = rng.unit_f64() * total;
            let mut pick = n - 1;
            for (i, &x) in d2.iter().enumerate() {
                target -= x as f64;
                if target <= 0.0 && x > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        };
        centres.extend_from_slice(row(pick));
    }
    centres
}

/// Assigns every row to its nearest centroid: (assignments, similarity to it).
fn assign_all(data: &[f32], dim: usize, centroids: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let n = data.len() / dim;
    let mut assign = vec![0u32; n];
    let mut sim = vec![0f32; n];
    assign.par_chunks_mut(CHUNK).zip(sim.par_chunks_mut(CHUNK)).enumerate().for_each(|(ci, (a, s))| {
        for j in 0..a.len() {
            let i = ci * CHUNK + j;
            let (c, cs) = nearest_centroid(centroids, dim, &data[i * dim..(i + 1) * dim]);
            a[j] = c as u32;
            s[j] = cs;
        }
    });
    (assign, sim)
}

fn inertia_of(sim: &[f32]) -> f64 {
    sim.par_chunks(CHUNK).map(|c| c.iter().map(|&s| (1.0 - s as f64).max(0.0)).sum::<f64>()).collect::<Vec<f64>>().iter().sum()
}

/// Per-cluster sums of the rows (deterministic: chunk sums added in chunk order).
fn cluster_sums(data: &[f32], dim: usize, k: usize, assign: &[u32]) -> (Vec<f64>, Vec<usize>) {
    let parts: Vec<(Vec<f64>, Vec<usize>)> = assign
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(ci, a)| {
            let (mut sum, mut count) = (vec![0f64; k * dim], vec![0usize; k]);
            for (j, &c) in a.iter().enumerate() {
                let i = ci * CHUNK + j;
                let c = c as usize;
                count[c] += 1;
                sum[c * dim..(c + 1) * dim].iter_mut().zip(&data[i * dim..(i + 1) * dim]).for_each(|(s, &x)| *s += x as f64);
            }
            (sum, count)
        })
        .collect();
    let (mut sum, mut count) = (vec![0f64; k * dim], vec![0usize; k]);
    for (s, c) in parts {
        sum.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        count.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
    }
    (sum, count)
}

/// New centroids from the sums; an empty cluster takes the row farthest from its centroid (one row
/// per empty cluster, each different).
fn update(sum: &[f64], count: &[usize], dim: usize, data: &[f32], sim: &[f32], assign: &mut [u32]) -> Vec<f32> {
    let k = count.len();
    let mut centroids = vec![0f32; k * dim];
    let mut far: Vec<usize> = Vec::new();
    if count.contains(&0) {
        far = (0..sim.len()).collect();
        far.sort_by(|&a, &b| sim[a].total_cmp(&sim[b]).then(a.cmp(&b)));
    }
    let mut next_far = 0;
    for c in 0..k {
        let out = &mut centroids[c * dim..(c + 1) * dim];
        if count[c] == 0 {
            let i = far[next_far];
            next_far += 1;
            out.copy_from_slice(&data[i * dim..(i + 1) * dim]);
            assign[i] = c as u32;
        } else {
            out.iter_mut().zip(&sum[c * dim..(c + 1) * dim]).for_each(|(o, &s)| *o = s as f32);
            normalise(out);
        }
    }
    centroids
}

fn lloyd(data: &[f32], dim: usize, mut centroids: Vec<f32>, opts: &KMeansOptions) -> KMeansFit {
    let k = centroids.len() / dim;
    let (mut assign, mut sim) = assign_all(data, dim, &centroids);
    let mut inertia = inertia_of(&sim);
    let mut iterations = 0;
    for _ in 0..opts.max_iter {
        iterations += 1;
        let (sum, count) = cluster_sums(data, dim, k, &assign);
        centroids = update(&sum, &count, dim, data, &sim, &mut assign);
        let (a, s) = assign_all(data, dim, &centroids);
        let new_inertia = inertia_of(&s);
        let unchanged = a == assign;
        let gain = inertia - new_inertia;
        (assign, sim) = (a, s);
        inertia = new_inertia;
        if unchanged || gain.abs() <= opts.tol * inertia.max(f64::MIN_POSITIVE) {
            break;
        }
    }
    KMeansFit { k, dim, centroids, assign, inertia, iterations, mini_batch: false }
}

fn mini_batch(data: &[f32], dim: usize, mut centroids: Vec<f32>, opts: &KMeansOptions, rng: &mut SplitMix64) -> KMeansFit {
    let n = data.len() / dim;
    let k = centroids.len() / dim;
    let b = opts.batch_size.clamp(1, n);
    let mut counts = vec![0u64; k];
    // Unnormalised running means: the unit centroid is their direction.
    let mut means: Vec<f64> = centroids.iter().map(|&x| x as f64).collect();
    let mut iterations = 0;
    let mut last_shift = f64::INFINITY;
    for _ in 0..opts.max_iter {
        iterations += 1;
        let batch: Vec<usize> = (0..b).map(|_| rng.below(n)).collect();
        let near: Vec<usize> = batch.par_iter().map(|&i| nearest_centroid(&centroids, dim, &data[i * dim..(i + 1) * dim]).0).collect();
        let before = centroids.clone();
        for (&i, &c) in batch.iter().zip(&near) {
            counts[c] += 1;
            let eta = 1.0 / counts[c] as f64;
            means[c * dim..(c + 1) * dim].iter_mut().zip(&data[i * dim..(i + 1) * dim]).for_each(|(m, &x)| *m += eta * (x as f64 - *m));
        }
        for c in 0..k {
            let out = &mut centroids[c * dim..(c + 1) * dim];
            out.iter_mut().zip(&means[c * dim..(c + 1) * dim]).for_each(|(o, &m)| *o = m as f32);
            normalise(out);
        }
        // Stop once the centroids barely move (mean cosine distance moved, per centroid).
        let shift: f64 = (0..k).map(|c| 1.0 - dot(&before[c * dim..(c + 1) * dim], &centroids[c * dim..(c + 1) * dim]) as f64).sum::<f64>() / k as f64;
        if shift < opts.tol && last_shift < opts.tol {
            break;
        }
        last_shift = shift;
    }
    // One exact pass: every vector's cluster and the true inertia; clusters left empty get far rows.
    let (mut assign, sim) = assign_all(data, dim, &centroids);
    let (sum, count) = cluster_sums(data, dim, k, &assign);
    if count.contains(&0) {
        centroids = update(&sum, &count, dim, data, &sim, &mut assign);
    }
    let (assign, sim) = if count.contains(&0) { assign_all(data, dim, &centroids) } else { (assign, sim) };
    KMeansFit { k, dim, centroids, inertia: inertia_of(&sim), assign, iterations, mini_batch: true }
}

/// Mean silhouette (cosine distance `1 - cos`) of a clustering: exact when there are at most `sample`
/// rows, else over a seeded sample of `sample` rows (distances among the sampled rows only, as
/// scikit-learn's `sample_size`). A row alone in its cluster scores 0. `None` with fewer than 2 clusters.
pub fn silhouette(data: &[f32], dim: usize, assign: &[u32], k: usize, sample: usize, seed: u64) -> Option<f64> {
    let n = assign.len();
    if k < 2 || n < 2 {
        return None;
    }
    let rows: Vec<usize> = if n <= sample {
        (0..n).collect()
    } else {
        let mut rng = SplitMix64(seed ^ 0x5111_0e77e);
        rng.sample(n, sample)
    };
    let m = rows.len();
    let scores: Vec<f64> = rows
        .par_iter()
        .map(|&i| {
            let v = &data[i * dim..(i + 1) * dim];
            let (mut sum, mut cnt) = (vec![0f64; k], vec![0usize; k]);
            for &j in &rows {
                if j != i {
                    let c = assign[j] as usize;
                    sum[c] += (1.0 - dot(v, &data[j * dim..(j + 1) * dim]) as f64).max(0.0);
                    cnt[c] += 1;
                }
            }
            let own = assign[i] as usize;
            if cnt[own] == 0 {
                return 0.0;
            }
            let a = sum[own] / cnt[own] as f64;
            let b = (0..k).filter(|&c| c != own && cnt[c] > 0).map(|c| sum[c] / cnt[c] as f64).fold(f64::INFINITY, f64::min);
            if !b.is_finite() {
                return 0.0;
            }
            let d = a.max(b);
            if d > 0.0 {
                (b - a) / d
            } else {
                0.0
            }
        })
        .collect();
    Some(scores.iter().sum::<f64>() / m as f64)
}

/// One k of a [`KChoice`] curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Number of clusters.
    pub k: usize,
    /// Inertia (sum of `1 - cos` to the centroid).
    pub inertia: f64,
    /// Mean silhouette (None for k = 1).
    pub silhouette: Option<f64>,
}

/// How k was chosen over a range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KChoice {
    /// Inertia and silhouette per k.
    pub curve: Vec<CurvePoint>,
    /// The elbow of the inertia curve.
    pub elbow: usize,
    /// The k with the highest mean silhouette.
    pub best_silhouette: usize,
    /// The k used.
    pub chosen: usize,
    /// Which rule gave it, in words.
    pub reason: String,
    /// Vectors the curve was computed on (a seeded sample of a large library).
    pub curve_rows: usize,
}

/// The silhouette overrides the elbow when it is better than the elbow's by at least this much.
pub const SILHOUETTE_MARGIN: f64 = 0.05;

/// The elbow of a decreasing curve (kneedle): after scaling k and inertia to [0, 1], the point farthest
/// below the straight line from the first point to the last.
pub fn elbow(curve: &[CurvePoint]) -> usize {
    let (first, last) = match (curve.first(), curve.last()) {
        (Some(f), Some(l)) if curve.len() >= 3 => (f, l),
        (Some(f), _) => return f.k,
        _ => return 0,
    };
    let (k0, k1) = (first.k as f64, last.k as f64);
    let (hi, lo) = curve.iter().fold((f64::NEG_INFINITY, f64::INFINITY), |(h, l), p| (h.max(p.inertia), l.min(p.inertia)));
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let y = |p: &CurvePoint| (p.inertia - lo) / span;
    let (y0, y1) = (y(first), y(last));
    curve
        .iter()
        .map(|p| {
            let x = (p.k as f64 - k0) / (k1 - k0);
            (p.k, (y0 + (y1 - y0) * x) - y(p))
        })
        .fold((first.k, f64::NEG_INFINITY), |best, (k, d)| if d > best.1 { (k, d) } else { best })
        .0
}

/// Runs k-means for every k in `ks` (on a seeded sample of at most `curve_rows` vectors for a large
/// library) and chooses k: the elbow of the inertia curve, unless the mean silhouette peaks at another k
/// and is higher there by at least [`SILHOUETTE_MARGIN`], in which case that k.
pub fn choose_k(data: &[f32], dim: usize, ks: std::ops::RangeInclusive<usize>, opts: &KMeansOptions, curve_rows: usize, silhouette_rows: usize) -> Result<KChoice> {
    let (lo, hi) = (*ks.start(), *ks.end());
    if lo > hi {
        return Err(VectorError::Invalid(format!("k range {lo}..{hi} is in the wrong order (write the smaller first)")));
    }
    if lo < 2 || hi - lo < 2 {
        return Err(VectorError::Invalid(format!("k range {lo}..{hi}: it must start at 2 or more and span at least 3 values of k")));
    }
    let n = check(data, dim, hi)?;
    let sample: Vec<f32>;
    let data = if n > curve_rows {
        let mut rng = SplitMix64(opts.seed ^ 0xc0_ffee);
        let mut idx = rng.sample(n, curve_rows);
        idx.sort_unstable();
        sample = idx.iter().flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied()).collect();
        &sample[..]
    } else {
        data
    };
    let mut curve = Vec::new();
    for k in lo..=hi {
        let fit = kmeans(data, dim, &KMeansOptions { k, ..opts.clone() })?;
        let s = silhouette(data, dim, &fit.assign, k, silhouette_rows, opts.seed);
        curve.push(CurvePoint { k, inertia: fit.inertia, silhouette: s });
    }
    let e = elbow(&curve);
    let sil = |k: usize| curve.iter().find(|p| p.k == k).and_then(|p| p.silhouette).unwrap_or(f64::NEG_INFINITY);
    let best = curve.iter().fold((e, sil(e)), |b, p| match p.silhouette { Some(s) if s > b.1 => (p.k, s), _ => b }).0;
    let (chosen, reason) = if best != e && sil(best) >= sil(e) + SILHOUETTE_MARGIN {
        (best, format!("mean silhouette peaks at k = {best} ({:.3}), at least {SILHOUETTE_MARGIN} above the elbow's k = {e} ({:.3})", sil(best), sil(e)))
    } else if best != e {
        (e, format!("elbow of the inertia curve at k = {e}; the silhouette's best, k = {best} ({:.3} vs {:.3}), is not {SILHOUETTE_MARGIN} better", sil(best), sil(e)))
    } else {
        (e, format!("elbow of the inertia curve at k = {e}, where the mean silhouette peaks too ({:.3})", sil(e)))
    };
    Ok(KChoice { curve, elbow: e, best_silhouette: best, chosen, reason, curve_rows: data.len() / dim })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` noisy unit vectors around each of `centres` random directions.
    fn blobs(centres: usize, per: usize, dim: usize, noise: f32, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let c = crate::random_unit_vectors(centres, dim, seed);
        let z = crate::random_unit_vectors(centres * per, dim, seed + 1);
        let mut data = Vec::new();
        let mut truth = Vec::new();
        for i in 0..centres * per {
            let g = i % centres;
            let mut v: Vec<f32> = (0..dim).map(|d| c[g * dim + d] + noise * z[i * dim + d]).collect();
            normalise(&mut v);
            data.extend(v);
            truth.push(g as u32);
        }
        (data, truth)
    }

    /// Whether two labelings are the same partition.
    fn same_partition(a: &[u32], b: &[u32]) -> bool {
        let mut map = std::collections::HashMap::new();
        let mut back = std::collections::HashMap::new();
        a.iter().zip(b).all(|(x, y)| *map.entry(x).or_insert(y) == y && *back.entry(y).or_insert(x) == x)
    }

    #[test]
    fn recovers_well_separated_clusters() {
        let (data, truth) = blobs(5, 40, 16, 0.3, 11);
        let fit = kmeans(&data, 16, &KMeansOptions { k: 5, seed: 3, ..Default::default() }).unwrap();
        assert!(same_partition(&fit.assign, &truth));
        assert!(!fit.mini_batch);
        // Centroids are unit length; inertia is the sum of 1 - cos to them.
        for c in 0..5 {
            assert!((dot(fit.centroid(c), fit.centroid(c)) - 1.0).abs() < 1e-5);
        }
        let want: f64 = (0..truth.len()).map(|i| 1.0 - dot(&data[i * 16..(i + 1) * 16], fit.centroid(fit.assign[i] as usize)) as f64).sum();
        assert!((fit.inertia - want).abs() < 1e-6 * want.max(1.0));
    }

    #[test]
    fn the_same_seed_gives_the_same_clusters_and_mini_batches_agree() {
        let (data, truth) = blobs(4, 300, 8, 0.25, 5);
        let o = KMeansOptions { k: 4, seed: 9, ..Default::default() };
        let a = kmeans(&data, 8, &o).unwrap();
        let b = kmeans(&data, 8, &o).unwrap();
        assert_eq!(a, b);
        let mb = kmeans(&data, 8, &KMeansOptions { mini_batch_above: 10, batch_size: 64, ..o.clone() }).unwrap();
        assert!(mb.mini_batch);
        assert!(same_partition(&mb.assign, &truth));
        // Determinism does not depend on the thread count.
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| kmeans(&data, 8, &o).unwrap());
        assert_eq!(one, a);
    }

    #[test]
    fn restarts_keep_the_lowest_inertia() {
        let (data, _) = blobs(6, 20, 8, 0.6, 21);
        let one = kmeans(&data, 8, &KMeansOptions { k: 6, restarts: 1, seed: 1, ..Default::default() }).unwrap();
        let many = kmeans(&data, 8, &KMeansOptions { k: 6, restarts: 8, seed: 1, ..Default::default() }).unwrap();
        assert!(many.inertia <= one.inertia + 1e-9);
    }

    #[test]
    fn bad_k_and_empty_input_are_errors() {
        let (data, _) = blobs(2, 3, 4, 0.1, 1);
        assert!(kmeans(&[], 4, &KMeansOptions::default()).unwrap_err().to_string().contains("empty"));
        assert!(kmeans(&data, 4, &KMeansOptions { k: 0, ..Default::default() }).unwrap_err().to_string().contains("at least 1"));
        assert!(kmeans(&data, 4, &KMeansOptions { k: 7, ..Default::default() }).unwrap_err().to_string().contains("more than the 6 songs"));
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..=2;
        assert!(choose_k(&data, 4, backwards, &KMeansOptions::default(), 1000, 1000).unwrap_err().to_string().contains("wrong order"));
        // k = n works: every row its own cluster, inertia 0.
        let fit = kmeans(&data, 4, &KMeansOptions { k: 6, ..Default::default() }).unwrap();
        assert!(fit.inertia < 1e-5);
    }

    #[test]
    fn silhouette_is_high_for_clean_clusters_and_low_for_random_ones() {
        let (data, truth) = blobs(3, 30, 16, 0.2, 7);
        let good = silhouette(&data, 16, &truth, 3, 1000, 0).unwrap();
        // Labels unrelated to the blobs (the blobs are i % 3).
        let shuffled: Vec<u32> = (0..truth.len()).map(|i| (i / 3 % 3) as u32).collect();
        let bad = silhouette(&data, 16, &shuffled, 3, 1000, 0).unwrap();
        assert!(good > 0.5, "{good}");
        assert!(bad < 0.1, "{bad}");
        // The sampled estimate is close to the exact one.
        let sampled = silhouette(&data, 16, &truth, 3, 60, 0).unwrap();
        assert!((sampled - good).abs() < 0.1);
        assert_eq!(silhouette(&data, 16, &truth, 1, 1000, 0), None);
    }

    #[test]
    fn the_elbow_and_the_rule_find_the_true_k() {
        let (data, _) = blobs(6, 30, 16, 0.25, 13);
        let ch = choose_k(&data, 16, 2..=12, &KMeansOptions { restarts: 2, ..Default::default() }, 100_000, 1000).unwrap();
        assert_eq!(ch.curve.len(), 11);
        assert_eq!(ch.elbow, 6, "{:?}", ch.curve);
        assert_eq!(ch.chosen, 6);
        assert!(ch.reason.contains("k = 6"));
        // Kneedle on a hand-made curve with its knee at 4.
        let pts: Vec<CurvePoint> = [(2, 100.0), (3, 60.0), (4, 20.0), (5, 18.0), (6, 16.0), (7, 15.0)]
            .iter()
            .map(|&(k, i)| CurvePoint { k, inertia: i, silhouette: None })
            .collect();
        assert_eq!(elbow(&pts), 4);
    }
}
