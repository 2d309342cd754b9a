//! Vector maths and search that know nothing of songs: dot products (AVX2 when the CPU has it), exact
//! search, an HNSW index on flat arrays (hnsw_rs as an optional builder) with atomic save and load,
//! spherical k-means with the choice of k, a 2-D PCA, and whitening.
//!
//! ```
//! use soundalike_vectors::{exact_search, kmeans, random_unit_vectors, KMeansOptions};
//! let rows = random_unit_vectors(1000, 128, 7); // 1,000 vectors, row-major
//! let query = &rows[..128];
//! let hits = exact_search(&rows, 128, query, 5, &|_| true);
//! assert_eq!(hits[0].row, 0); // a vector is most like itself
//! let fit = kmeans(&rows, 128, &KMeansOptions { k: 8, ..Default::default() }).unwrap();
//! assert_eq!(fit.assign.len(), 1000);
//! ```
#![warn(missing_docs)]

mod ann;
mod error;
mod graph;
mod kmeans;
mod pca;
mod search;
mod whiten;

pub use ann::{index_dir, AnnIndex, AnnParams, Builder, Precision, INDEX_FORMAT_VERSION};
pub use error::{Result, VectorError};
pub use kmeans::{choose_k, elbow, kmeans, nearest_centroid, silhouette, CurvePoint, KChoice, KMeansFit, KMeansOptions, SILHOUETTE_MARGIN};
pub use pca::pca_2d;
pub use search::{exact_rows, exact_search, Hit};
pub use whiten::{Whitening, WHITEN_RIDGE};

/// Rebuild a graph instead of updating it once this share of its slots are tombstones (see
/// [`AnnIndex::remove`]).
pub const REBUILD_DEAD_FRACTION: f64 = 0.25;

/// Cosine similarity of two L2-normalised vectors (their dot product). Uses AVX2+FMA when the CPU has them
/// (checked at run time; the default x86_64 target only assumes SSE2), else eight independent
/// accumulators, which the compiler maps to SIMD lanes.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The dot product with AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA (callers check with `is_x86_feature_detected!`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: see `# Safety`: the CPU has the features this function is compiled for; every pointer
    // read stays inside its slice (checked next to each loop).
    unsafe {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n, or i + 8 <= n, so every 8-float load is inside both slices.
        while i + 16 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), s1);
            i += 16;
        }
        if i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
        let mut total = hsum256(_mm256_add_ps(s0, s1));
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }
}

/// Dot product of an f32 query with 16-bit integers (a quantised vector before its scale), in f32
/// arithmetic. Uses AVX2+FMA when the CPU has them (checked at run time), else eight accumulators.
pub(crate) fn dot_i16(q: &[f32], v: &[i16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { dot_i16_avx2(q, v) };
        }
    }
    dot_i16_portable(q, v)
}

fn dot_i16_portable(q: &[f32], v: &[i16]) -> f32 {
    let mut acc = [0f32; 8];
    let (cq, cv) = (q.chunks_exact(8), v.chunks_exact(8));
    let tail: f32 = cq.remainder().iter().zip(cv.remainder()).map(|(x, &y)| x * y as f32).sum();
    for (x, y) in cq.zip(cv) {
        for i in 0..8 {
            acc[i] += x[i] * y[i] as f32;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// [`dot_i16`] with AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA (callers check with `is_x86_feature_detected!`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i16_avx2(q: &[f32], v: &[i16]) -> f32 {
    // SAFETY: see `# Safety`: the CPU has the features this function is compiled for; every pointer
    // read stays inside its slice (checked next to each loop).
    unsafe {
        use std::arch::x86_64::*;
        let n = q.len().min(v.len());
        let (pq, pv) = (q.as_ptr(), v.as_ptr());
        // Eight i16 -> eight f32.
        let load = |p: *const i16| _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm_loadu_si128(p as *const __m128i)));
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n, or i + 8 <= n, so every 8-lane load is inside both slices.
        while i + 16 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i)), load(pv.add(i)), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i + 8)), load(pv.add(i + 8)), s1);
            i += 16;
        }
        if i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i)), load(pv.add(i)), s0);
            i += 8;
        }
        let mut total = hsum256(_mm256_add_ps(s0, s1));
        while i < n {
            total += q[i] * v[i] as f32;
            i += 1;
        }
        total
    }
}

/// The sum of a register's eight floats.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hsum256(s: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)))
}

/// `n` pseudo-random unit vectors of width `dim` (xorshift64, uniform in [-0.5, 0.5) per value, then
/// normalised), the same for the same `seed`: test and benchmark data, not for production use.
#[doc(hidden)]
pub fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    let mut v: Vec<f32> = (0..n * dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    v.chunks_exact_mut(dim.max(1)).for_each(normalise);
    v
}

pub use soundalike_core::normalise;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_dot_matches_the_portable_one_at_every_length() {
        for n in 0..50 {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64) * (*y as f64)).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-4, "n={n}");
            assert!((dot_portable(&a, &b) as f64 - want).abs() < 1e-4, "n={n}");
        }
        // Mismatched lengths use the shorter.
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
    }

    #[test]
    fn integer_dot_matches_the_exact_sum_at_every_length() {
        for n in 0..50 {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
            let b: Vec<i16> = (0..n).map(|i| ((i * 7919 % 65535) - 32767) as i16).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, &y)| (*x as f64) * (y as f64)).sum();
            let tol = 1e-6 * a.iter().zip(&b).map(|(x, &y)| (x * y as f32).abs() as f64).sum::<f64>() + 1e-3;
            assert!((dot_i16(&a, &b) as f64 - want).abs() <= tol, "n={n}");
            assert!((dot_i16_portable(&a, &b) as f64 - want).abs() <= tol, "n={n}");
        }
        // The extremes convert exactly.
        assert_eq!(dot_i16(&[1.0; 16], &[i16::MIN; 16]), 16.0 * i16::MIN as f32);
        assert_eq!(dot_i16(&[1.0; 9], &[i16::MAX; 9]), 9.0 * i16::MAX as f32);
    }
}
