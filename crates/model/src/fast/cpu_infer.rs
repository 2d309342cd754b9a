//! A fused CPU inference path for the folded network: what `embed`, `query --file` and `serve` run.
//!
//! burn's generic operators run the folded network one whole batch and one operator at a time: each
//! convolution converts its input to NHWC, builds an im2col buffer for the batch, multiplies, and then
//! bias, ReLU and max-pool each make a pass over the full-size feature map. Here each tile goes through the
//! whole network on one thread (tiles of a batch in parallel, rayon), and each convolution runs in strips
//! of a few output rows: im2col of the strip, one GEMM (the `gemm` crate, which burn-flex uses too), then
//! bias + ReLU + 2x2 max-pool fused into one pass that writes the pooled strip. A strip's buffers stay in
//! the core's cache. Same arithmetic as [`FoldedNet`](crate::FoldedNet) up to float rounding (tested).

use burn::prelude::*;
use rayon::prelude::*;

use crate::fast::kernels::{im2col_strip, matmul};
use crate::model::{FoldedNet, Pool, POOL_STD_EPS};

/// Output positions per strip GEMM (the strip height is this divided by the row width, rounded to even).
const STRIP_POSITIONS: usize = 512;

/// One conv3x3 (padding 1, stride 1) with folded batch norm, then ReLU and 2x2/2 max-pool.
#[derive(Clone, Debug)]
struct ConvLayer {
    cin: usize,
    cout: usize,
    /// `[cout, cin * 9]`, row-major; column `c * 9 + ky * 3 + kx`.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// A dense layer `y = x W + b` with `W` as `[d_in, d_out]` (burn's layout, and TF's): also musicnn's.
#[derive(Clone, Debug)]
pub(crate) struct Dense {
    pub(crate) d_in: usize,
    pub(crate) d_out: usize,
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

impl Dense {
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32]) {
        out.copy_from_slice(&self.bias);
        for (xi, row) in x.iter().zip(self.weight.chunks_exact(self.d_out)) {
            out.iter_mut().zip(row).for_each(|(o, w)| *o += xi * w);
        }
    }
}

/// The folded network's weights in plain arrays, for [`CpuNet::forward`].
#[derive(Clone, Debug)]
pub struct CpuNet {
    convs: Vec<ConvLayer>,
    pool: Pool,
    /// The first conv layer whose pooled map joins the dense layer's input.
    pool_from: usize,
    dense: Dense,
    head: Dense,
}

/// Per-thread working memory, reused across tiles.
#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    col: Vec<f32>,
    strip: Vec<f32>,
    /// Pooled features (the dense layer's input).
    feat: Vec<f32>,
}

#[allow(clippy::expect_used, reason = "a float tensor of this backend always converts to f32 values")]
fn to_vec(t: Tensor<1>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 weights")
}

impl CpuNet {
    /// Copies the weights of a folded network.
    pub fn from_folded(net: &FoldedNet) -> Self {
        let convs = net
            .conv_weights()
            .into_iter()
            .map(|(w, b)| {
                let [cout, cin, kh, kw] = w.dims();
                assert_eq!((kh, kw), (3, 3), "the network's convolutions are 3x3");
                ConvLayer { cin, cout, weight: to_vec(w.reshape([cout * cin * 9])), bias: to_vec(b) }
            })
            .collect();
        let dense = |(w, b): (Tensor<2>, Tensor<1>)| {
            let [d_in, d_out] = w.dims();
            Dense { d_in, d_out, weight: to_vec(w.reshape([d_in * d_out])), bias: to_vec(b) }
        };
        let (d, h) = net.dense_weights();
        let (pool, pool_from) = net.pool();
        CpuNet { convs, pool, pool_from, dense: dense(d), head: dense(h) }
    }

    /// Width of the embedding.
    pub fn embedding_dim(&self) -> usize {
        self.dense.d_out
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.head.d_out
    }

    /// `n` tiles of `h x w` (concatenated, normalised) -> embeddings `[n, embedding_dim]` and class
    /// probabilities `[n, n_classes]`. Tiles run in parallel on the rayon pool. `context`: the song context
    /// every tile's dense layer also reads (for a network that has one; [`crate::FoldedNet::song_context`]).
    pub fn forward(&self, tiles: &[f32], h: usize, w: usize, context: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
        assert!(h >= 2 && w >= 2 && tiles.len().is_multiple_of(h * w), "tiles must be whole h x w images");
        let n = tiles.len() / (h * w);
        let (e, k) = (self.embedding_dim(), self.n_classes());
        let mut emb = vec![0f32; n * e];
        let mut probs = vec![0f32; n * k];
        emb.par_chunks_mut(e)
            .zip(probs.par_chunks_mut(k))
            .zip(tiles.par_chunks(h * w))
            .for_each_init(Scratch::default, |s, ((emb, probs), tile)| self.forward_tile(tile, h, w, context.unwrap_or(&[]), s, emb, probs));
        (emb, probs)
    }

    #[allow(clippy::too_many_arguments, reason = "one tile's inputs, outputs and scratch")]
    fn forward_tile(&self, tile: &[f32], mut h: usize, mut w: usize, context: &[f32], s: &mut Scratch, emb: &mut [f32], probs: &mut [f32]) {
        s.a.clear();
        s.a.extend_from_slice(tile);
        s.feat.clear();
        for (i, layer) in self.convs.iter().enumerate() {
            conv_relu_pool(layer, &s.a, h, w, &mut s.b, &mut s.col, &mut s.strip);
            std::mem::swap(&mut s.a, &mut s.b);
            (h, w) = (h / 2, w / 2);
            if i >= self.pool_from {
                pool(self.pool, &s.a, h, w, &mut s.feat);
            }
        }
        s.feat.extend_from_slice(context);
        assert_eq!(s.feat.len(), self.dense.d_in, "the dense layer's inputs (is the song context missing?)");
        self.dense.forward(&s.feat, emb);
        emb.iter_mut().for_each(|v| *v = v.max(0.0));
        self.head.forward(emb, probs);
        let max = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        probs.iter_mut().for_each(|p| *p = (*p - max).exp());
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
    }
}

/// A feature map `[c, h, w]` -> its part of the dense layer's input, appended to `feat` in the order of
/// [`Pool`]'s burn form (flattened `[c, rows]` means, then as many standard deviations).
fn pool(pool: Pool, map: &[f32], h: usize, w: usize, feat: &mut Vec<f32>) {
    let hw = (h * w).max(1);
    match pool {
        Pool::Global => feat.extend(map.chunks_exact(hw).map(|plane| plane.iter().sum::<f32>() / hw as f32)),
        Pool::Time { rows, std } => {
            let c = map.len() / hw;
            let mut sq = Vec::with_capacity(if std { c * rows } else { 0 });
            for plane in map.chunks_exact(hw) {
                for r in 0..rows {
                    let (r0, r1) = Pool::band(r, rows, h);
                    let band = &plane[r0 * w..r1 * w];
                    let n = band.len().max(1) as f32;
                    let mean = band.iter().sum::<f32>() / n;
                    feat.push(mean);
                    if std {
                        let msq = band.iter().map(|v| v * v).sum::<f32>() / n;
                        sq.push(((msq - mean * mean).max(0.0) + POOL_STD_EPS).sqrt());
                    }
                }
            }
            feat.extend(sq);
        }
    }
}

/// `input` `[cin, h, w]` -> `out` `[cout, h / 2, w / 2]`: conv3x3 (zero padding 1) + bias, ReLU, 2x2 max-pool
/// (floor, as burn's pool without padding), computed in strips of even row count.
fn conv_relu_pool(l: &ConvLayer, input: &[f32], h: usize, w: usize, out: &mut Vec<f32>, col: &mut Vec<f32>, strip: &mut Vec<f32>) {
    let (ph, pw) = (h / 2, w / 2);
    out.clear();
    out.resize(l.cout * ph * pw, 0.0);
    let rows = ((STRIP_POSITIONS / w).max(2) / 2 * 2).min(ph * 2);
    let k = l.cin * 9;
    let mut r0 = 0;
    // Rows past 2 * ph are dropped by the pool: never computed.
    while r0 < ph * 2 {
        let nr = rows.min(ph * 2 - r0);
        let n = nr * w;
        im2col_strip(input, l.cin, h, w, r0, nr, col);
        strip.clear();
        strip.resize(l.cout * n, 0.0);
        // SAFETY: strip is [cout, n], weight [cout, k], col [k, n], all row-major and sized as given.
        unsafe {
            matmul((l.cout, n, k), (strip.as_mut_ptr(), n as isize, 1), false, (l.weight.as_ptr(), k as isize, 1), (col.as_ptr(), n as isize, 1))
        }
        for (o, (plane, &b)) in strip.chunks_exact(n).zip(&l.bias).enumerate() {
            let dst = &mut out[o * ph * pw + r0 / 2 * pw..][..nr / 2 * pw];
            for (pr, d) in dst.chunks_exact_mut(pw).enumerate() {
                let top = &plane[2 * pr * w..][..w];
                let bot = &plane[(2 * pr + 1) * w..][..w];
                // Comparisons rather than f32::max, whose NaN rule costs a blend per value (the maps are finite).
                let gt = |a: f32, c: f32| if a > c { a } else { c };
                for ((v, t), u) in d.iter_mut().zip(top.chunks_exact(2)).zip(bot.chunks_exact(2)) {
                    let m = gt(gt(t[0], t[1]), gt(u[0], u[1]));
                    *v = gt(m + b, 0.0);
                }
            }
        }
        r0 += nr;
    }
}
