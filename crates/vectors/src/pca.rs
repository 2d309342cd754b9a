//! A 2-D map of the library: the first two principal components of the song vectors.

/// Projects the rows of `m` (row-major, `dim` wide) onto their first two principal components (power
/// iteration with deflation on the covariance matrix of [`crate::whiten`]), scaled into [-1, 1]. Deterministic.
pub fn pca_2d(m: &[f32], dim: usize) -> Vec<[f32; 2]> {
    let n = m.len().checked_div(dim).unwrap_or(0);
    if n == 0 {
        return vec![];
    }
    let rows: Vec<&[f32]> = m.chunks_exact(dim).collect();
    let (mean, cov) = crate::whiten::mean_and_covariance(&rows, dim);
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for k in 0..2 {
        // A fixed, non-degenerate start vector.
        let mut v: Vec<f64> = (0..dim).map(|i| 1.0 + ((i * 7 + k * 13) % 11) as f64 / 11.0).collect();
        for _ in 0..200 {
            // The covariance is symmetric: column i is row i.
            let mut w: Vec<f64> = (0..dim).map(|i| cov.column(i).iter().zip(&v).map(|(a, b)| a * b).sum()).collect();
            for p in &comps {
                let d: f64 = w.iter().zip(p).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(p).for_each(|(a, b)| *a -= d * b);
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-12 {
                break;
            }
            w.iter_mut().for_each(|x| *x /= norm);
            v = w;
        }
        comps.push(v);
    }
    let mut pts: Vec<[f32; 2]> = m
        .chunks_exact(dim)
        .map(|r| {
            let p = |comp: &Vec<f64>| r.iter().zip(&mean).zip(comp).map(|((&x, mu), w)| (x as f64 - mu) * w).sum::<f64>() as f32;
            [p(&comps[0]), p(&comps[1])]
        })
        .collect();
    for axis in 0..2 {
        let max = pts.iter().map(|p| p[axis].abs()).fold(0f32, f32::max);
        if max > 0.0 {
            pts.iter_mut().for_each(|p| p[axis] /= max);
        }
    }
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_direction_of_largest_spread() {
        // Points spread along (1, 1, 0) a lot and along (0, 0, 1) a little.
        let mut m = Vec::new();
        for i in 0..50 {
            let t = i as f32 - 25.0;
            let s = if i % 2 == 0 { 1.0 } else { -1.0 };
            m.extend_from_slice(&[t, t, s]);
        }
        let p = pca_2d(&m, 3);
        assert_eq!(p.len(), 50);
        // First axis orders the points by t (up to sign); second axis separates even from odd.
        let increasing = p.windows(2).all(|w| w[1][0] > w[0][0]);
        let decreasing = p.windows(2).all(|w| w[1][0] < w[0][0]);
        assert!(increasing || decreasing);
        assert!(p.iter().enumerate().all(|(i, q)| (q[1] > 0.0) == ((i % 2 == 0) == (p[0][1] > 0.0))));
        assert!(p.iter().all(|q| q[0].abs() <= 1.0 && q[1].abs() <= 1.0));
        assert!(pca_2d(&[], 3).is_empty());
    }
}
