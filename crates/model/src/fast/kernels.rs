//! CPU kernels of a conv block's training step, on plain row-major `f32` slices: a 3x3 "same" convolution
//! (no bias) and batch norm -> 2x2 max-pool -> ReLU, forward and backward. [`crate::fast::cpu_train`] makes them
//! burn operations with their own backward pass; [`crate::fast::cpu_infer`] shares the im2col.
//!
//! Each sample (convolution) or feature-map plane (batch norm) is one rayon task. A convolution runs in
//! strips of output rows, as the fused inference path does: im2col of the strip and one GEMM (the `gemm`
//! crate, which burn-flex uses too) whose output rows go straight into the output, so the strip's columns
//! stay in the core's cache. The backward pass rebuilds each strip's columns instead of keeping them.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Output positions per strip (the strip height is this divided by the row width, at least one row).
const STRIP_POSITIONS: usize = 512;

/// Sizes of a convolution's input `[batch, cin, h, w]` and output `[batch, cout, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl ConvDims {
    fn strip_rows(&self) -> usize {
        (STRIP_POSITIONS / self.w).clamp(1, self.h)
    }
}

/// `n` copies of `value`, written by the rayon pool. `vec![0.0; n]` fills on the calling thread: for the
/// feature maps of a training step that was the largest serial part of the step (`perf`: 3.7% of all
/// samples, on the thread that waits for the pool), which caps the gain from more cores.
fn filled<T: Copy + Send + Sync>(n: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n].par_chunks_mut(1 << 14).for_each(|c: &mut [MaybeUninit<T>]| c.fill(MaybeUninit::new(value)));
    // SAFETY: the loop above initialised the first `n` elements of the capacity (which is at least `n`).
    unsafe { v.set_len(n) };
    v
}

/// `dst[m, n] (+)= lhs[m, k] * rhs[k, n]`, each matrix given by its pointer, row stride and column stride.
/// Accumulates into `dst` when `accumulate`, else overwrites it.
///
/// # Safety
/// Every index `(i, j)` of each matrix, at `ptr + i * row_stride + j * col_stride`, must be in bounds of
/// its allocation, and `dst` must not overlap `lhs` or `rhs`.
pub(crate) unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    accumulate: bool,
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
) {
    // SAFETY: forwarded from the caller; gemm reads `dst` only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2,
            dst.1,
            accumulate,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// im2col of output rows `[r0, r0 + nr)`: `col[(c * 9 + ky * 3 + kx), (r - r0) * w + x] = in[c, r + ky - 1, x + kx - 1]`,
/// zero outside the image. Row `c * 9 + ky * 3 + kx` matches the weights' `[cout, cin, 3, 3]` layout. Every
/// entry is written (the buffer is reused from strip to strip without clearing).
pub(crate) fn im2col_strip(input: &[f32], cin: usize, h: usize, w: usize, r0: usize, nr: usize, col: &mut Vec<f32>) {
    let n = nr * w;
    col.resize(cin * 9 * n, 0.0);
    for (row_i, dst_row) in col.chunks_exact_mut(n).enumerate() {
        let (c, ky, kx) = (row_i / 9, row_i % 9 / 3, row_i % 3);
        let plane = &input[c * h * w..][..h * w];
        for (r, dst) in dst_row.chunks_exact_mut(w).enumerate() {
            let Some(y) = (r0 + r + ky).checked_sub(1).filter(|&y| y < h) else {
                dst.fill(0.0);
                continue;
            };
            let src = &plane[y * w..][..w];
            match kx {
                0 => {
                    dst[0] = 0.0;
                    dst[1..].copy_from_slice(&src[..w - 1]);
                }
                1 => dst.copy_from_slice(src),
                _ => {
                    dst[..w - 1].copy_from_slice(&src[1..]);
                    dst[w - 1] = 0.0;
                }
            }
        }
    }
}

/// The adjoint of [`im2col_strip`]: adds each column entry back to the input position it was copied from.
fn col2im_strip_add(col: &[f32], cin: usize, h: usize, w: usize, r0: usize, nr: usize, out: &mut [f32]) {
    let n = nr * w;
    for (row_i, src_row) in col.chunks_exact(n).take(cin * 9).enumerate() {
        let (c, ky, kx) = (row_i / 9, row_i % 9 / 3, row_i % 3);
        let plane = &mut out[c * h * w..][..h * w];
        for (r, src) in src_row.chunks_exact(w).enumerate() {
            let Some(y) = (r0 + r + ky).checked_sub(1).filter(|&y| y < h) else { continue };
            let dst = &mut plane[y * w..][..w];
            let (d, s) = match kx {
                0 => (&mut dst[..w - 1], &src[1..]),
                1 => (&mut dst[..], src),
                _ => (&mut dst[1..], &src[..w - 1]),
            };
            d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
        }
    }
}

/// 3x3 convolution, zero padding 1, stride 1, no bias: `x` `[batch, cin, h, w]`, `weight` `[cout, cin, 3, 3]`
/// -> `[batch, cout, h, w]`.
pub fn conv3x3_forward(x: &[f32], weight: &[f32], d: ConvDims) -> Vec<f32> {
    let (hw, k) = (d.h * d.w, d.cin * 9);
    assert_eq!((x.len(), weight.len()), (d.batch * d.cin * hw, d.cout * k), "conv3x3: sizes do not match {d:?}");
    let mut y = filled(d.batch * d.cout * hw, 0f32);
    if y.is_empty() || k == 0 {
        return y;
    }
    let rows = d.strip_rows();
    y.par_chunks_mut(d.cout * hw).zip(x.par_chunks(d.cin * hw)).for_each_init(Vec::new, |col, (y, x)| {
        for r0 in (0..d.h).step_by(rows) {
            let nr = rows.min(d.h - r0);
            let n = nr * d.w;
            im2col_strip(x, d.cin, d.h, d.w, r0, nr, col);
            // SAFETY: y[o * hw + r0 * w + j] for o < cout, j < n is inside this sample's [cout, hw];
            // weight is [cout, k] and col [k, n], both row-major.
            unsafe {
                matmul(
                    (d.cout, n, k),
                    (y[r0 * d.w..].as_mut_ptr(), hw as isize, 1),
                    false,
                    (weight.as_ptr(), k as isize, 1),
                    (col.as_ptr(), n as isize, 1),
                )
            }
        }
    });
    y
}

/// Gradients of [`conv3x3_forward`] from the output gradient `dy` `[batch, cout, h, w]`: the input's
/// `[batch, cin, h, w]` (when `need_dx`) and the weights' `[cout, cin, 3, 3]` (when `need_dw`).
pub fn conv3x3_backward(x: &[f32], weight: &[f32], dy: &[f32], d: ConvDims, need_dx: bool, need_dw: bool) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (hw, k) = (d.h * d.w, d.cin * 9);
    assert_eq!(dy.len(), d.batch * d.cout * hw, "conv3x3 backward: output gradient size");
    if d.batch * hw * k * d.cout == 0 {
        return (need_dx.then(|| vec![0f32; x.len()]), need_dw.then(|| vec![0f32; d.cout * k])); // nothing to convolve
    }
    let rows = d.strip_rows();
    let per_sample = |x: &[f32], dy: &[f32], dx: &mut [f32], dw: &mut [f32], (col, dcol): &mut (Vec<f32>, Vec<f32>)| {
        for r0 in (0..d.h).step_by(rows) {
            let nr = rows.min(d.h - r0);
            let n = nr * d.w;
            let dy_strip = dy[r0 * d.w..].as_ptr();
            if need_dw {
                im2col_strip(x, d.cin, d.h, d.w, r0, nr, col);
                // dw[cout, k] += dy_strip[cout, n] * col[k, n]^T.
                // SAFETY: dy_strip rows (stride hw) hold n values inside the sample; col is [k, n].
                unsafe {
                    matmul((d.cout, k, n), (dw.as_mut_ptr(), k as isize, 1), true, (dy_strip, hw as isize, 1), (col.as_ptr(), 1, n as isize))
                }
            }
            if need_dx {
                dcol.resize(k * n, 0.0); // overwritten whole by the product below
                // dcol[k, n] = weight[cout, k]^T * dy_strip[cout, n].
                // SAFETY: weight is [cout, k] (read transposed), dcol [k, n], dy_strip as above.
                unsafe {
                    matmul((k, n, d.cout), (dcol.as_mut_ptr(), n as isize, 1), false, (weight.as_ptr(), 1, k as isize), (dy_strip, hw as isize, 1))
                }
                col2im_strip_add(dcol, d.cin, d.h, d.w, r0, nr, dx);
            }
        }
    };
    // One weight-gradient partial per sample, summed in sample order: the result does not depend on how
    // rayon splits the batch or on the number of threads (a training run must be reproducible for a seed).
    let mut dx_all = filled(if need_dx { d.batch * d.cin * hw } else { d.batch }, 0f32);
    let mut dw_all = filled(if need_dw { d.batch * d.cout * k } else { d.batch }, 0f32);
    let (dx_len, dw_len) = (dx_all.len() / d.batch, dw_all.len() / d.batch);
    x.par_chunks(d.cin * hw)
        .zip(dy.par_chunks(d.cout * hw))
        .zip(dx_all.par_chunks_mut(dx_len).zip(dw_all.par_chunks_mut(dw_len)))
        .for_each_init(|| (Vec::new(), Vec::new()), |scratch, ((x, dy), (dx, dw))| per_sample(x, dy, dx, dw, scratch));
    let dw = need_dw.then(|| {
        let mut dw = vec![0f32; d.cout * k];
        dw.par_chunks_mut(1024).enumerate().for_each(|(i, out)| {
            for p in dw_all.chunks_exact(d.cout * k) {
                out.iter_mut().zip(&p[i * 1024..]).for_each(|(a, b)| *a += b);
            }
        });
        dw
    });
    (need_dx.then_some(dx_all), dw)
}

/// Per-plane pairs of sums `[batch * c]` (plane `b * c + ch`) added up over the batch: one pair per channel,
/// summed in batch order.
fn per_channel(sums: &[(f64, f64)], batch: usize, c: usize) -> impl Iterator<Item = (f64, f64)> + '_ {
    (0..c).map(move |ch| (0..batch).map(|b| sums[b * c + ch]).fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1)))
}

/// Per-channel mean and biased variance of `x` `[batch, c, hw]` (as batch norm in training uses them),
/// accumulated in `f64`: `[mean_0 .. mean_c, var_0 .. var_c]`.
pub fn channel_stats(x: &[f32], batch: usize, c: usize, hw: usize) -> Vec<f32> {
    assert_eq!(x.len(), batch * c * hw, "channel_stats: size");
    if x.is_empty() {
        return vec![0f32; 2 * c];
    }
    let sums: Vec<(f64, f64)> =
        x.par_chunks(hw).map(|p| p.iter().fold((0f64, 0f64), |(s, q), &v| (s + v as f64, q + (v as f64) * (v as f64)))).collect();
    let n = (batch * hw) as f64;
    let mut out = vec![0f32; 2 * c];
    for (ch, (s, q)) in per_channel(&sums, batch, c).enumerate() {
        let mean = s / n;
        out[ch] = mean as f32;
        out[c + ch] = (q / n - mean * mean).max(0.0) as f32;
    }
    out
}

/// Sizes for [`bn_pool_relu_forward`]: input `[batch, c, h, w]`, output `[batch, c, h / 2, w / 2]` (a 2x2
/// stride-2 max-pool without padding drops an odd last row or column, as burn's does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnDims {
    /// Batch size.
    pub batch: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// Marks a pooled output that ReLU set to zero (no gradient flows back through it).
const DEAD: u8 = 4;

/// `relu(maxpool2x2(gamma * (x - mean) / sqrt(var + eps) + beta))` with the batch's `stats` from
/// [`channel_stats`]. Returns the output and, per output, which of its window's four inputs was the
/// maximum (row-major) or [`DEAD`] when ReLU zeroed it: what [`bn_pool_relu_backward`] needs.
pub fn bn_pool_relu_forward(x: &[f32], stats: &[f32], gamma: &[f32], beta: &[f32], eps: f32, d: BnDims) -> (Vec<f32>, Vec<u8>) {
    let (hw, ph, pw) = (d.h * d.w, d.h / 2, d.w / 2);
    assert_eq!((x.len(), stats.len(), gamma.len(), beta.len()), (d.batch * d.c * hw, 2 * d.c, d.c, d.c), "bn_pool_relu: sizes");
    let mut y = filled(d.batch * d.c * ph * pw, 0f32);
    let mut idx = filled(y.len(), DEAD);
    if y.is_empty() {
        return (y, idx); // a map of height or width 1 pools to nothing
    }
    y.par_chunks_mut(ph * pw).zip(idx.par_chunks_mut(ph * pw)).zip(x.par_chunks(hw)).enumerate().for_each(|(plane, ((y, idx), x))| {
        let ch = plane % d.c;
        let scale = gamma[ch] / (stats[d.c + ch] + eps).sqrt();
        let shift = beta[ch] - stats[ch] * scale;
        for py in 0..ph {
            let (top, bot) = (&x[2 * py * d.w..][..d.w], &x[(2 * py + 1) * d.w..][..d.w]);
            for px in 0..pw {
                let v = [top[2 * px], top[2 * px + 1], bot[2 * px], bot[2 * px + 1]].map(|v| v * scale + shift);
                let (mut best, mut arg) = (v[0], 0u8);
                for (i, &vi) in v.iter().enumerate().skip(1) {
                    if vi > best {
                        (best, arg) = (vi, i as u8);
                    }
                }
                let o = py * pw + px;
                if best > 0.0 {
                    (y[o], idx[o]) = (best, arg);
                }
            }
        }
    });
    (y, idx)
}

/// Gradients of [`bn_pool_relu_forward`] (batch statistics differentiated too, as in training) from the
/// output gradient `dy`: the input's `[batch, c, h, w]`, gamma's `[c]` and beta's `[c]`.
#[allow(clippy::too_many_arguments)]
pub fn bn_pool_relu_backward(
    x: &[f32],
    stats: &[f32],
    gamma: &[f32],
    eps: f32,
    idx: &[u8],
    dy: &[f32],
    d: BnDims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (hw, ph, pw) = (d.h * d.w, d.h / 2, d.w / 2);
    assert_eq!((dy.len(), idx.len()), (d.batch * d.c * ph * pw, d.batch * d.c * ph * pw), "bn_pool_relu backward: sizes");
    if dy.is_empty() {
        return (vec![0f32; x.len()], vec![0f32; d.c], vec![0f32; d.c]); // nothing was pooled: no gradient
    }
    let inv_std: Vec<f32> = (0..d.c).map(|ch| 1.0 / (stats[d.c + ch] + eps).sqrt()).collect();
    // The input position of output o's maximum.
    let source = |o: usize, k: u8| (2 * (o / pw) + (k as usize >> 1)) * d.w + 2 * (o % pw) + (k as usize & 1);
    // Per plane: sum of dz and of dz * x_hat, dz being the gradient at the normalised value.
    let sums: Vec<(f64, f64)> = x
        .par_chunks(hw)
        .zip(dy.par_chunks(ph * pw).zip(idx.par_chunks(ph * pw)))
        .enumerate()
        .map(|(plane, (x, (dy, idx)))| {
            let ch = plane % d.c;
            let (mean, is) = (stats[ch], inv_std[ch]);
            let (mut s, mut sx) = (0f64, 0f64);
            for (o, (&g, &k)) in dy.iter().zip(idx).enumerate() {
                if k != DEAD {
                    s += g as f64;
                    sx += (g * (x[source(o, k)] - mean) * is) as f64;
                }
            }
            (s, sx)
        })
        .collect();
    let n = (d.batch * hw) as f64;
    let (mut dgamma, mut dbeta) = (vec![0f32; d.c], vec![0f32; d.c]);
    for (ch, (s, sx)) in per_channel(&sums, d.batch, d.c).enumerate() {
        (dbeta[ch], dgamma[ch]) = (s as f32, sx as f32);
    }
    // dx = gamma * inv_std * (dz - mean(dz) - x_hat * mean(dz * x_hat)) = c0 + c1 * x + gamma * inv_std * dz.
    let mut dx = filled(x.len(), 0f32);
    dx.par_chunks_mut(hw).zip(x.par_chunks(hw)).zip(dy.par_chunks(ph * pw).zip(idx.par_chunks(ph * pw))).enumerate().for_each(
        |(plane, ((dx, x), (dy, idx)))| {
            let ch = plane % d.c;
            let (mean, is) = (stats[ch], inv_std[ch]);
            let k = gamma[ch] * is;
            let (a, b) = ((dbeta[ch] as f64 / n) as f32, (dgamma[ch] as f64 / n) as f32);
            let c1 = -k * b * is;
            let c0 = -k * a - c1 * mean;
            dx.iter_mut().zip(x).for_each(|(g, &v)| *g = c0 + c1 * v);
            for (o, (&g, &kk)) in dy.iter().zip(idx).enumerate() {
                if kk != DEAD {
                    dx[source(o, kk)] += k * g;
                }
            }
        },
    );
    (dx, dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition of the convolution, for reference.
    fn conv_naive(x: &[f32], wt: &[f32], d: ConvDims) -> Vec<f32> {
        let mut y = vec![0f32; d.batch * d.cout * d.h * d.w];
        for b in 0..d.batch {
            for o in 0..d.cout {
                for r in 0..d.h {
                    for c in 0..d.w {
                        let mut acc = 0f32;
                        for i in 0..d.cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (yy, xx) = (r as isize + ky as isize - 1, c as isize + kx as isize - 1);
                                    if yy >= 0 && xx >= 0 && (yy as usize) < d.h && (xx as usize) < d.w {
                                        acc += wt[((o * d.cin + i) * 3 + ky) * 3 + kx]
                                            * x[((b * d.cin + i) * d.h + yy as usize) * d.w + xx as usize];
                                    }
                                }
                            }
                        }
                        y[((b * d.cout + o) * d.h + r) * d.w + c] = acc;
                    }
                }
            }
        }
        y
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The strip-wise GEMM convolution is the textbook one, with strips of one and several rows and
    /// a last short strip (w = 100 -> 5 rows a strip; h = 7).
    #[test]
    fn conv_forward_matches_definition() {
        for d in [
            ConvDims { batch: 2, cin: 3, cout: 4, h: 7, w: 100 },
            ConvDims { batch: 1, cin: 1, cout: 2, h: 5, w: 3 },
            ConvDims { batch: 3, cin: 2, cout: 5, h: 4, w: 600 },
        ] {
            let x = pseudo_random(d.batch * d.cin * d.h * d.w, 1);
            let wt = pseudo_random(d.cout * d.cin * 9, 2);
            let (ours, reference) = (conv3x3_forward(&x, &wt, d), conv_naive(&x, &wt, d));
            let diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-4, "{d:?}: max difference {diff}");
        }
    }

    /// An input, weights and an output gradient for `d`.
    fn conv_case(d: ConvDims, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = pseudo_random(d.batch * d.cin * d.h * d.w, seed);
        let wt = pseudo_random(d.cout * d.cin * 9, seed + 1);
        (x, wt, pseudo_random(d.batch * d.cout * d.h * d.w, seed + 2))
    }

    /// Backward is the adjoint of forward: <conv(x), g> = <x, dx(g)> and, the convolution being linear in
    /// its weights too, <conv_w(x), g> = <w, dw(g)>.
    #[test]
    fn conv_backward_is_the_adjoint() {
        let d = ConvDims { batch: 3, cin: 2, cout: 3, h: 9, w: 70 };
        let (x, wt, g) = conv_case(d, 3);
        let y = conv3x3_forward(&x, &wt, d);
        let (dx, dw) = conv3x3_backward(&x, &wt, &g, d, true, true);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>();
        let lhs = dot(&y, &g);
        assert!((lhs - dot(&x, &dx.unwrap())).abs() < 1e-3 * lhs.abs().max(1.0));
        assert!((lhs - dot(&wt, &dw.unwrap())).abs() < 1e-3 * lhs.abs().max(1.0));
        let (none, dw_only) = conv3x3_backward(&x, &wt, &g, d, false, true);
        assert!(none.is_none() && dw_only.is_some());
    }

    /// The gradients are bit-identical on 1 and 3 threads: training is deterministic for a seed whatever
    /// the machine's core count.
    #[test]
    fn conv_backward_is_deterministic_across_thread_counts() {
        let d = ConvDims { batch: 7, cin: 3, cout: 4, h: 12, w: 50 };
        let (x, wt, g) = conv_case(d, 6);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| conv3x3_backward(&x, &wt, &g, d, true, true))
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.0.unwrap(), b.0.unwrap());
        assert_eq!(a.1.unwrap(), b.1.unwrap());
    }

    /// Degenerate sizes (a 1-pixel-high map, which pools to nothing; an empty batch) give empty or zero
    /// results of the right sizes instead of a panic.
    #[test]
    fn degenerate_sizes_give_empty_results() {
        let d = ConvDims { batch: 2, cin: 1, cout: 2, h: 1, w: 5 };
        let (x, wt, g) = conv_case(d, 9);
        assert_eq!(conv3x3_forward(&x, &wt, d).len(), 2 * 2 * 5);
        let (dx, dw) = conv3x3_backward(&x, &wt, &g, d, true, true);
        assert_eq!((dx.unwrap().len(), dw.unwrap().len()), (10, 18));
        let empty = ConvDims { batch: 0, ..d };
        assert!(conv3x3_forward(&[], &wt, empty).is_empty());
        assert_eq!(conv3x3_backward(&[], &wt, &[], empty, true, true).1.unwrap(), vec![0.0; 18]);
        let b = BnDims { batch: 2, c: 2, h: 1, w: 5 };
        let stats = channel_stats(&g, 2, 2, 5);
        let (y, idx) = bn_pool_relu_forward(&g, &stats, &[1.0, 1.0], &[0.0, 0.0], 1e-5, b);
        assert!(y.is_empty() && idx.is_empty());
        let (dx, dgamma, _) = bn_pool_relu_backward(&g, &stats, &[1.0, 1.0], 1e-5, &idx, &y, b);
        assert_eq!((dx, dgamma), (vec![0.0; 20], vec![0.0; 2]));
    }
}
