//! Whitening: a linear map, fitted on a set of vectors, that centres them on their mean and makes their
//! covariance the identity (or, with `alpha` below 1, flattens it part of the way). Cosine similarity over
//! whitened vectors stops being dominated by the few directions in which all vectors vary together.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

use crate::{Result, VectorError};

/// Each eigenvalue of the covariance is raised by this share of the largest before it is inverted, so a
/// direction in which the fitted vectors barely vary (a dead unit, fewer vectors than dimensions) is not
/// blown up without bound.
pub const WHITEN_RIDGE: f64 = 1e-6;

/// A fitted whitening map: `y = matrix * (x - mean)`, with `matrix = U diag((lambda + ridge) ^ (-alpha / 2)) U^T`
/// for the eigenvectors `U` and eigenvalues `lambda` of the fitted vectors' covariance (ZCA whitening: the
/// output keeps the input's axes, and any map with the same `matrix^T matrix` gives the same cosines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Whitening {
    /// 1 whitens fully (every direction the same variance), 0 only centres; between, part of the way.
    pub alpha: f32,
    /// How many vectors it was fitted on (zero vectors left out).
    pub fitted_on: usize,
    /// The fitted vectors' mean (`dim` values).
    pub mean: Vec<f32>,
    /// `dim x dim`, row-major.
    pub matrix: Vec<f32>,
}

impl Whitening {
    /// Refuses a strength outside [0, 1].
    pub fn check_strength(alpha: f32) -> std::result::Result<(), String> {
        if (0.0..=1.0).contains(&alpha) {
            Ok(())
        } else {
            Err(format!("whitening strength {alpha} outside [0, 1]"))
        }
    }

    /// Fits the map on the rows of `rows` (row-major, `dim` wide). A row of zeros (a song with nothing to
    /// say) is left out. Needs at least two other rows, finite values and `alpha` in [0, 1].
    pub fn fit(rows: &[f32], dim: usize, alpha: f32) -> Result<Whitening> {
        Self::check_strength(alpha).map_err(VectorError::Invalid)?;
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            return Err(VectorError::Invalid(format!("{} values are not rows of {dim}", rows.len())));
        }
        if rows.iter().any(|x| !x.is_finite()) {
            return Err(VectorError::Invalid("whitening: a vector to fit on has a value that is not a finite number".into()));
        }
        let kept: Vec<&[f32]> = rows.chunks_exact(dim).filter(|r| r.iter().any(|&x| x != 0.0)).collect();
        let n = kept.len();
        if n < 2 {
            return Err(VectorError::Invalid(format!("whitening needs at least 2 vectors that are not zero to fit on, got {n}")));
        }
        let (mean, cov) = mean_and_covariance(&kept, dim);
        let eig = SymmetricEigen::new(cov);
        let top = eig.eigenvalues.iter().copied().fold(0f64, f64::max);
        let scale = eig.eigenvalues.map(|l| {
            let l = l.max(0.0) + WHITEN_RIDGE * top;
            if l > 0.0 {
                l.powf(-alpha as f64 / 2.0)
            } else {
                1.0 // every vector the same: nothing to scale
            }
        });
        let u = &eig.eigenvectors;
        let m = u * DMatrix::from_diagonal(&scale) * u.transpose();
        let matrix = (0..dim * dim).map(|k| m[(k / dim, k % dim)] as f32).collect();
        Ok(Whitening { alpha, fitted_on: n, mean: mean.into_iter().map(|m| m as f32).collect(), matrix })
    }

    /// Width of the vectors it maps.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// `v` whitened (as wide as [`Self::dim`]; not made unit length).
    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        let d = self.dim();
        let c: Vec<f32> = v.iter().zip(&self.mean).map(|(x, m)| x - m).collect();
        self.matrix.chunks_exact(d).map(|row| row.iter().zip(&c).map(|(a, b)| a * b).sum()).collect()
    }

    /// Whitens a song vector in place and makes it unit length. A zero vector says nothing and stays zero,
    /// rather than becoming the whitened mean's opposite (the rule [`Self::fit`] follows too).
    pub fn apply_unit(&self, v: &mut [f32]) {
        if v.iter().any(|&x| x != 0.0) {
            let w = self.apply(v);
            v.copy_from_slice(&w);
            soundalike_core::normalise(v);
        }
    }

    /// Checks that it maps `dim`-wide vectors: `alpha` in [0, 1], a mean of `dim` and a `dim x dim` matrix,
    /// all finite.
    pub fn validate(&self, dim: usize) -> std::result::Result<(), String> {
        Self::check_strength(self.alpha)?;
        if self.mean.len() != dim || self.matrix.len() != dim * dim {
            return Err(format!("whitening of {} values with a matrix of {} for vectors of {dim} (needs {dim} and {})", self.mean.len(), self.matrix.len(), dim * dim));
        }
        if self.mean.iter().chain(&self.matrix).any(|x| !x.is_finite()) {
            return Err("whitening has a value that is not a finite number".into());
        }
        Ok(())
    }
}

/// The mean of `rows` (each `dim` wide, at least one) and their sample covariance (divided by n - 1, as
/// numpy's `cov`; by 1 for a single row). Shared with [`crate::pca_2d`].
pub(crate) fn mean_and_covariance(rows: &[&[f32]], dim: usize) -> (Vec<f64>, DMatrix<f64>) {
    let n = rows.len();
    let mut mean = vec![0f64; dim];
    for &r in rows {
        mean.iter_mut().zip(r).for_each(|(m, &x)| *m += x as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    // Row by row, so memory stays dim x dim however many rows (a library's map can have 100,000).
    let mut cov = DMatrix::<f64>::zeros(dim, dim);
    let mut c = vec![0f64; dim];
    for &r in rows {
        c.iter_mut().zip(r.iter().zip(&mean)).for_each(|(c, (&x, mu))| *c = x as f64 - mu);
        for (j, &cj) in c.iter().enumerate() {
            if cj != 0.0 {
                cov.column_mut(j).iter_mut().zip(&c).for_each(|(a, &ci)| *a += ci * cj);
            }
        }
    }
    cov /= (n.max(2) - 1) as f64;
    (mean, cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correlated 3-d rows: the second is twice the first plus a little, the third independent.
    fn rows(n: usize) -> Vec<f32> {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut r = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f32 / 10_000.0 - 0.5
        };
        (0..n).flat_map(|_| {
            let (a, b, c) = (r(), r(), r());
            [a + 3.0, 2.0 * a + 0.1 * b - 1.0, 0.5 * c]
        }).collect()
    }

    fn covariance(v: &[Vec<f32>]) -> Vec<f64> {
        let (n, d) = (v.len(), v[0].len());
        let mean: Vec<f64> = (0..d).map(|j| v.iter().map(|r| r[j] as f64).sum::<f64>() / n as f64).collect();
        (0..d * d).map(|k| v.iter().map(|r| (r[k / d] as f64 - mean[k / d]) * (r[k % d] as f64 - mean[k % d])).sum::<f64>() / (n - 1) as f64).collect()
    }

    #[test]
    fn full_whitening_gives_zero_mean_and_identity_covariance() {
        let x = rows(500);
        let w = Whitening::fit(&x, 3, 1.0).unwrap();
        assert_eq!(w.fitted_on, 500);
        let y: Vec<Vec<f32>> = x.chunks_exact(3).map(|r| w.apply(r)).collect();
        let c = covariance(&y);
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((c[i * 3 + j] - want).abs() < 5e-3, "covariance {i},{j} = {}", c[i * 3 + j]);
            }
            let m = y.iter().map(|r| r[i] as f64).sum::<f64>() / 500.0;
            assert!(m.abs() < 1e-4, "mean {i} = {m}");
        }
        // The input was far from white: the map did something.
        assert!(covariance(&x.chunks_exact(3).map(<[f32]>::to_vec).collect::<Vec<_>>())[1] > 0.1);
    }

    #[test]
    fn alpha_zero_only_centres_and_half_leaves_some_spread() {
        let x = rows(200);
        let w = Whitening::fit(&x, 3, 0.0).unwrap();
        for r in x.chunks_exact(3).take(5) {
            let y = w.apply(r);
            for j in 0..3 {
                assert!((y[j] - (r[j] - w.mean[j])).abs() < 1e-5);
            }
        }
        // Half way: the variances are the square roots of the eigenvalues', so still unequal.
        let h = Whitening::fit(&x, 3, 0.5).unwrap();
        let c = covariance(&x.chunks_exact(3).map(|r| h.apply(r)).collect::<Vec<_>>());
        assert!((c[0] - c[8]).abs() > 0.01, "{c:?}");
    }

    #[test]
    fn degenerate_input_stays_finite_and_bad_input_is_refused() {
        // Fewer rows than dimensions, and a constant dimension: finite output all the same.
        let x = vec![1.0, 0.0, 5.0, 0.0, 1.0, 5.0];
        let w = Whitening::fit(&x, 3, 1.0).unwrap();
        assert!(w.matrix.iter().all(|v| v.is_finite()));
        assert!(w.apply(&[0.5, 0.5, 5.0]).iter().all(|v| v.is_finite()));
        // Every row the same: the map only centres.
        let same = Whitening::fit(&[1.0, 2.0, 1.0, 2.0], 2, 1.0).unwrap();
        assert_eq!(same.apply(&[1.0, 2.0]), vec![0.0, 0.0]);
        assert!(Whitening::fit(&[1.0, 2.0], 2, 1.0).unwrap_err().to_string().contains("at least 2"));
        assert!(Whitening::fit(&x, 3, 1.5).unwrap_err().to_string().contains("outside [0, 1]"));
        assert!(Whitening::fit(&[1.0, f32::NAN, 0.0, 1.0], 2, 1.0).unwrap_err().to_string().contains("finite"));
        assert!(Whitening::fit(&x, 4, 1.0).is_err());
        // Zero rows are left out of the fit and counted out of `fitted_on`; with them gone too few are left.
        let with_zeros: Vec<f32> = x.iter().copied().chain([0.0; 6]).collect();
        let wz = Whitening::fit(&with_zeros, 3, 1.0).unwrap();
        assert_eq!((wz.fitted_on, &wz.mean, &wz.matrix), (2, &w.mean, &w.matrix));
        assert!(Whitening::fit(&[0.0, 0.0, 3.0, 4.0], 2, 1.0).unwrap_err().to_string().contains("not zero"));
        // A zero vector stays zero; any other comes out unit length.
        let mut z = vec![0.0; 3];
        w.apply_unit(&mut z);
        assert_eq!(z, vec![0.0; 3]);
        let mut v = vec![1.0, 0.0, 5.0];
        w.apply_unit(&mut v);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5, "{v:?}");
        assert!(w.validate(3).is_ok());
        assert!(w.validate(4).unwrap_err().contains("vectors of 4"));
        let mut bad = w.clone();
        bad.matrix[2] = f32::INFINITY;
        assert!(bad.validate(3).unwrap_err().contains("finite"));
    }
}
