//! musicnn (Pons & Serra, ISMIR 2019), the tagger: its MSD and MTT models run natively on the CPU.
//!
//! The weights are the PyPI wheel's (`musicnn-0.1.0`, ISC licence), converted without TensorFlow by
//! `scripts/musicnn/convert.py` to `models/musicnn/*.safetensors` in TF's own names and layouts, and built
//! into the binary (6.3 MB), so tags need no path and no download. The network is the package's
//! `models.py` as its checkpoints run it (`../shared/notes/musicnn-port.md` has the derivation):
//!
//! - input: 187 frames x 96 mel bands of `log10(10000 x + 1)` mel power at 16 kHz ([`log_mel`]);
//! - a one-channel batch norm, then five branches each pooled over the whole frequency axis: two timbral
//!   convolutions (7 x 38 and 7 x 67, 204 filters) and three temporal ones (128, 64, 32 frames, 51 filters);
//! - a mid-end of three 1-D convolutions (width 7, 64 filters) with residual connections;
//! - max and mean over time of all 753 channels, **interleaved** (`max0, mean0, max1, ...`), batch norm,
//!   dense 1506 -> 200 + ReLU, batch norm: the 200-d **penultimate** vector; dense 200 -> 50, sigmoid: tags.
//!
//! Every convolution is conv -> ReLU -> batch norm (epsilon **1e-3**, TF's default, not burn's 1e-5).
//!
//! Why not burn: 81% of the 1.4 G multiply-adds of a patch are the two timbral convolutions (7 frames x 38
//! or 67 bands, 204 filters), whose output maps (187 x 59 x 204 floats, 9 MB) are pooled over frequency at
//! once. Here they run along frequency by DFT ([`FreqConv`]: per bin, the filters' spectra times the frames'
//! spectra, then the inverse DFT's real basis restricted to the valid bands, after one radix-2 step that
//! halves its multiply-adds; 4.3x fewer multiply-adds in all, the same values to float rounding); the
//! temporal convolutions run band by band over the band's padded row read in place. Only each channel's
//! max over frequency is kept: a channel whose batch norm scale is negative needs the min instead (ReLU and
//! BN are monotone), so its filter is negated once at load ([`Conv::flip_negative`]) and its min read as
//! minus the max. Where the CPU has AVX-512, the bins' products, the temporal convolutions and the inverse
//! DFT (with its max over bands, so no band is written out) are register-blocked kernels of this file;
//! elsewhere GEMMs with the `gemm` crate burn-flex uses (the tests check one against the other). No
//! branch's full map is pooled in a second pass as burn would. The mid-end's convolutions read their
//! input rows in place (a zero-padded time-major buffer is already the im2col matrix of a 1-D
//! convolution). Each patch runs on one thread, patches in parallel. Speed:
//! `bash scripts/bench/bench_musicnn.sh`.

use std::sync::OnceLock;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fast::cpu_infer::Dense;
use crate::{ModelError, Result};

/// Sample rate of the tagger's front end.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT size of the tagger's front end.
pub const N_FFT: usize = 512;
/// Hop of the tagger's front end.
pub const HOP: usize = 256;
/// Mel bands (Slaney scale and area normalisation, 0 to 8 kHz).
pub const N_MELS: usize = 96;
/// Frames in one patch: 3 s (`librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1`).
pub const PATCH_FRAMES: usize = 187;
/// Width of the penultimate layer.
pub const PENULTIMATE: usize = 200;
/// Tags per model.
pub const N_TAGS: usize = 50;
const EPS: f32 = 1e-3;

/// The wheel's two taggers, as the tags crate names them (`TagSource::Msd`, `TagSource::Mtt`).
pub use soundalike_tags::TagSource;

fn weights(model: TagSource) -> &'static [u8] {
    match model {
        TagSource::Msd => include_bytes!("../../../models/musicnn/MSD_musicnn.safetensors"),
        TagSource::Mtt => include_bytes!("../../../models/musicnn/MTT_musicnn.safetensors"),
    }
}

/// The shipped network of `model` (converted once, then shared).
#[allow(clippy::expect_used, reason = "the weights are built into the binary and checked by the tests")]
pub fn net(model: TagSource) -> &'static Musicnn {
    static NETS: [OnceLock<Musicnn>; 2] = [OnceLock::new(), OnceLock::new()];
    NETS[model as usize].get_or_init(|| Musicnn::from_safetensors(model, weights(model)).expect("shipped musicnn weights load"))
}

/// A batch norm at inference, folded to `y = x * scale + shift`.
#[derive(Clone, Debug)]
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl Affine {
    /// A front-end branch's output for channel `c` from its max over frequency of the convolution as
    /// [`Conv::flip_negative`] left it (before the bias): `BN(max over frequency(ReLU(conv + bias)))`.
    /// ReLU and BN are monotone, so that is BN of the pooled max for a positive scale and of the pooled
    /// min for a negative one, and that channel's filter was negated, so its min is `-hi`.
    fn pooled_one(&self, bias: &[f32], c: usize, hi: f32) -> f32 {
        let (a, b) = (self.scale[c], self.shift[c]);
        let z = if a >= 0.0 { hi } else { -hi };
        (z + bias[c]).max(0.0) * a + b
    }
}

/// A convolution `[k_time, k_freq, 1, cout]` or (mid-end) `[k_time, cin, 1, cout]`, kept as TF stores it:
/// a row-major `[K, cout]` matrix whose row is `dt * width + j`.
#[derive(Clone, Debug)]
struct Conv {
    k_time: usize,
    /// Frequency extent (front end) or input channels (mid-end).
    width: usize,
    cout: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
    bn: Affine,
}

impl Conv {
    /// Negates the filters whose batch norm scale is negative, so that a front-end branch needs only each
    /// channel's max over frequency (see [`Affine::pooled_one`]): `min(x) = -max(-x)`, exactly, since
    /// negation is exact in floating point.
    fn flip_negative(mut self) -> Conv {
        for (c, &a) in self.bn.scale.iter().enumerate() {
            if a < 0.0 {
                self.weight.iter_mut().skip(c).step_by(self.cout).for_each(|w| *w = -*w);
            }
        }
        self
    }
}

/// One musicnn network with its tag names.
#[derive(Clone, Debug)]
pub struct Musicnn {
    model: TagSource,
    tags: Vec<String>,
    bn0: (f32, f32),
    /// The timbral convolutions, along frequency by DFT.
    timbral: [FreqConv; 2],
    temporal: [TemporalConv; 3],
    mid: [Conv; 3],
    bn9: Affine,
    dense: Dense,
    bn10: Affine,
    head: Dense,
}

/// What the network says about one patch (or, averaged, a song).
#[derive(Clone, Debug, PartialEq)]
pub struct PatchOutput {
    /// The 200-d penultimate layer (after its batch norm).
    pub penultimate: Vec<f32>,
    /// Sigmoid probability of each of the model's 50 tags.
    pub probs: Vec<f32>,
}

struct Reader<'a> {
    st: safetensors::SafeTensors<'a>,
    what: String,
}

impl Reader<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.st.tensor(name).map_err(|e| ModelError::Invalid(format!("{}: {name}: {e}", self.what)))?;
        if t.shape() != shape || t.dtype() != safetensors::Dtype::F32 {
            return Err(ModelError::Invalid(format!(
                "{}: {name} is {:?} {:?}, expected F32 {shape:?}",
                self.what,
                t.dtype(),
                t.shape()
            )));
        }
        Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    fn bn(&self, name: &str, n: usize) -> Result<Affine> {
        let gamma = self.get(&format!("{name}/gamma"), &[n])?;
        let beta = self.get(&format!("{name}/beta"), &[n])?;
        let mean = self.get(&format!("{name}/moving_mean"), &[n])?;
        let var = self.get(&format!("{name}/moving_variance"), &[n])?;
        let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + EPS).sqrt()).collect();
        let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        Ok(Affine { scale, shift })
    }

    fn conv(&self, conv: &str, bn: &str, k_time: usize, width: usize, cout: usize) -> Result<Conv> {
        Ok(Conv {
            k_time,
            width,
            cout,
            weight: self.get(&format!("{conv}/kernel"), &[k_time, width, 1, cout])?,
            bias: self.get(&format!("{conv}/bias"), &[cout])?,
            bn: self.bn(bn, cout)?,
        })
    }

    fn dense(&self, name: &str, d_in: usize, d_out: usize) -> Result<Dense> {
        Ok(Dense {
            d_in,
            d_out,
            weight: self.get(&format!("{name}/kernel"), &[d_in, d_out])?,
            bias: self.get(&format!("{name}/bias"), &[d_out])?,
        })
    }
}

/// Per-thread working memory.
#[derive(Default)]
struct Scratch {
    /// BN0 output, time-major, 3 zero frames either side (timbral input).
    xt: Vec<f32>,
    /// BN0 output, frequency-major, 63 zero frames before and 64 after (temporal input).
    xf: Vec<f32>,
    col: Vec<f32>,
    out: Vec<f32>,
    /// The front end's output and the mid-end's three (see [`Musicnn::forward`]), kept between patches.
    front: Vec<f32>,
    mid: [Vec<f32>; 3],
    /// Running max over bands of a front-end branch.
    hi: Vec<f32>,
    /// The DFT of each padded BN0 frame, `[frame][96]` (see [`dft_rows`]).
    spec: Vec<f32>,
    /// The same, by bin: `[49 bins][frame][re, im]`.
    spec_k: Vec<f32>,
}

/// `C[m, n] = A[m, k] B[k, n]`, all row-major; `A`'s rows are `lda` apart (overlapping rows are fine).
#[allow(clippy::too_many_arguments)]
fn gemm_rm(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &[f32], c: &mut [f32]) {
    assert!(m == 0 || a.len() >= (m - 1) * lda + k, "lhs too short");
    assert!(b.len() >= k * n && c.len() >= m * n, "rhs or dst too short");
    // SAFETY: the asserts above keep every index the strides reach inside the slices.
    unsafe {
        crate::fast::kernels::matmul(
            (m, n, k),
            (c.as_mut_ptr(), n as isize, 1),
            false,
            (a.as_ptr(), lda as isize, 1),
            (b.as_ptr(), n as isize, 1),
        )
    }
}

impl Musicnn {
    /// Reads a converted checkpoint (`scripts/musicnn/convert.py`): the 64 tensors in TF's names and
    /// layouts, and the tag names in the metadata.
    pub fn from_safetensors(model: TagSource, bytes: &[u8]) -> Result<Self> {
        let what = model.model_name().to_string();
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| ModelError::Invalid(format!("{what}: {e}")))?;
        let tags: Vec<String> = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("tags"))
            .and_then(|t| serde_json::from_str(t).ok())
            .ok_or_else(|| ModelError::Invalid(format!("{what}: no tag list in the metadata")))?;
        if tags.len() != N_TAGS {
            return Err(ModelError::Invalid(format!("{what}: {} tags, expected {N_TAGS}", tags.len())));
        }
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| ModelError::Invalid(format!("{what}: {e}")))?;
        let r = Reader { st, what };
        let bn0 = r.bn("batch_normalization", 1)?;
        let front_width = 2 * 204 + 3 * 51;
        Ok(Musicnn {
            model,
            tags,
            bn0: (bn0.scale[0], bn0.shift[0]),
            timbral: [
                FreqConv::new(r.conv("conv2d", "batch_normalization_1", 7, 38, 204)?.flip_negative()),
                FreqConv::new(r.conv("conv2d_1", "batch_normalization_2", 7, 67, 204)?.flip_negative()),
            ],
            temporal: [
                TemporalConv::new(r.conv("conv2d_2", "batch_normalization_3", 128, 1, 51)?.flip_negative()),
                TemporalConv::new(r.conv("conv2d_3", "batch_normalization_4", 64, 1, 51)?.flip_negative()),
                TemporalConv::new(r.conv("conv2d_4", "batch_normalization_5", 32, 1, 51)?.flip_negative()),
            ],
            mid: [
                r.conv("conv2d_5", "batch_normalization_6", 7, front_width, 64)?,
                r.conv("conv2d_6", "batch_normalization_7", 7, 64, 64)?,
                r.conv("conv2d_7", "batch_normalization_8", 7, 64, 64)?,
            ],
            bn9: r.bn("batch_normalization_9", 2 * (front_width + 3 * 64))?,
            dense: r.dense("dense", 2 * (front_width + 3 * 64), PENULTIMATE)?,
            bn10: r.bn("batch_normalization_10", PENULTIMATE)?,
            head: r.dense("dense_1", PENULTIMATE, N_TAGS)?,
        })
    }

    /// Which model this is.
    pub fn model(&self) -> TagSource {
        self.model
    }

    /// The tag names, in output order.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Runs patches (each `frames x 96`, time-major, `log10(10000 x + 1)`), in parallel.
    pub fn forward_patches(&self, patches: &[Vec<f32>]) -> Vec<PatchOutput> {
        patches.par_iter().map_init(Scratch::default, |s, p| self.forward(p, s)).collect()
    }

    /// One patch of any length of at least one frame (the network pools globally over time); musicnn was
    /// trained on [`PATCH_FRAMES`].
    pub fn forward_patch(&self, patch: &[f32]) -> PatchOutput {
        self.forward(patch, &mut Scratch::default())
    }

    fn forward(&self, x: &[f32], s: &mut Scratch) -> PatchOutput {
        let t = x.len() / N_MELS;
        assert!(t > 0 && x.len() == t * N_MELS, "a patch is frames x {N_MELS} values");
        let (a0, b0) = self.bn0;
        // BN0 output, zero-padded after the norm, as TF pads it.
        s.xt.clear();
        s.xt.resize((t + 6) * N_MELS, 0.0);
        for (d, v) in s.xt[3 * N_MELS..].iter_mut().zip(x) {
            *d = v * a0 + b0;
        }
        let (before, after) = (63, 64);
        let tf_len = t + before + after;
        s.xf.clear();
        // (16 more zeros at the end: the temporal kernel computes whole vectors of frames, past `t` too.)
        s.xf.resize(N_MELS * tf_len + 16, 0.0);
        for (ti, row) in x.chunks_exact(N_MELS).enumerate() {
            for (f, v) in row.iter().enumerate() {
                s.xf[f * tf_len + before + ti] = v * a0 + b0;
            }
        }
        let front_width = self.mid[0].width;
        // The front end's output, time-major [t + 6][561] with 3 zero frames either side: the mid-end's input.
        let mut front = std::mem::take(&mut s.front);
        front.clear();
        front.resize((t + 6) * front_width, 0.0);
        let mut off = 0;
        dft_rows(&s.xt, t + 6, &mut s.spec, &mut s.spec_k);
        for conv in &self.timbral {
            conv.forward(t, &s.spec_k, &mut s.col, &mut s.out, &mut s.hi, &mut front, front_width, off);
            off += conv.cout;
        }
        for conv in &self.temporal {
            temporal_branch(conv, t, &s.xf, tf_len, before, &mut s.out, &mut s.hi, &mut front, front_width, off);
            off += conv.conv.cout;
        }
        // Mid-end: three 1-D convolutions of width 7 over time, reading the padded input in place.
        let c = self.mid[0].cout;
        let [mut bn6, mut res2, mut res3] = std::mem::take(&mut s.mid);
        for b in [&mut bn6, &mut res2, &mut res3] {
            b.clear();
            b.resize((t + 6) * c, 0.0);
        }
        mid_conv(&self.mid[0], t, &front, &mut s.out, &mut bn6, None);
        mid_conv(&self.mid[1], t, &bn6, &mut s.out, &mut res2, Some(&bn6));
        mid_conv(&self.mid[2], t, &res2, &mut s.out, &mut res3, Some(&res2));
        // Max and mean over time of [front, bn6, res2, res3], interleaved.
        let mut pooled = Vec::with_capacity(self.bn9.scale.len());
        for (buf, width) in [(&front, front_width), (&bn6, c), (&res2, c), (&res3, c)] {
            // Row by row (the buffers are time-major), so the channels' running max and sum are vectors.
            let mut rows = buf[3 * width..(t + 3) * width].chunks_exact(width);
            let first = rows.next().unwrap_or_default();
            let (mut max, mut sum) = (first.to_vec(), first.to_vec());
            for row in rows {
                for ((m, s), &v) in max.iter_mut().zip(sum.iter_mut()).zip(row) {
                    *m = if v > *m { v } else { *m };
                    *s += v;
                }
            }
            for (m, s) in max.iter().zip(&sum) {
                pooled.push(*m);
                pooled.push(s / t as f32);
            }
        }
        (s.front, s.mid) = (front, [bn6, res2, res3]);
        let v: Vec<f32> = pooled.iter().zip(self.bn9.scale.iter().zip(&self.bn9.shift)).map(|(x, (a, b))| x * a + b).collect();
        assert_eq!(v.len(), self.dense.d_in);
        let mut hidden = vec![0f32; PENULTIMATE];
        self.dense.forward(&v, &mut hidden);
        let penultimate: Vec<f32> = hidden
            .iter()
            .zip(self.bn10.scale.iter().zip(&self.bn10.shift))
            .map(|(h, (a, b))| h.max(0.0) * a + b)
            .collect();
        let mut probs = vec![0f32; N_TAGS];
        self.head.forward(&penultimate, &mut probs);
        probs.iter_mut().for_each(|p| *p = sigmoid(*p));
        PatchOutput { penultimate, probs }
    }
}


/// DFT length along frequency: the mel bands. A valid correlation of a band window of width `w` over 96 bands
/// reaches band `f + w - 1 <= 95`, so the circular correlation of length 96 equals it at every output kept.
const NDFT: usize = N_MELS;
/// Bins of the real DFT.
const NBINS: usize = NDFT / 2 + 1;
/// Frames per strip of a [`FreqConv`].
const DFT_STRIP: usize = 24;

/// The real DFT as a matrix `[96 samples][96]`: column `k` (0..=48) is `cos(2 pi k n / 96)`, column
/// `48 + k` (k 1..=47) is `-sin(2 pi k n / 96)`, so `row . F` is `[Re X_0..Re X_48, Im X_1..Im X_47]`.
fn dft_matrix() -> &'static [f32] {
    static F: OnceLock<Vec<f32>> = OnceLock::new();
    F.get_or_init(|| {
        let mut m = vec![0f32; NDFT * NDFT];
        for n in 0..NDFT {
            for k in 0..NBINS {
                let a = 2.0 * std::f64::consts::PI * (k * n) as f64 / NDFT as f64;
                m[n * NDFT + k] = a.cos() as f32;
                if (1..NBINS - 1).contains(&k) {
                    m[n * NDFT + NBINS - 1 + k] = -a.sin() as f32;
                }
            }
        }
        m
    })
}

/// The DFT of each of `rows` frames of `x` (`[rows][96]`), by bin: `spec_k[k][row] = (Re, Im)`.
fn dft_rows(x: &[f32], rows: usize, spec: &mut Vec<f32>, spec_k: &mut Vec<f32>) {
    spec.resize(rows * NDFT, 0.0);
    gemm_rm(rows, NDFT, NDFT, x, NDFT, dft_matrix(), spec);
    spec_k.resize(NBINS * rows * 2, 0.0);
    for (r, row) in spec.chunks_exact(NDFT).enumerate() {
        for k in 0..NBINS {
            let im = if (1..NBINS - 1).contains(&k) { row[NBINS - 1 + k] } else { 0.0 };
            spec_k[(k * rows + r) * 2] = row[k];
            spec_k[(k * rows + r) * 2 + 1] = im;
        }
    }
}

/// A timbral convolution (7 frames x `w` bands, 204 filters) computed along frequency by DFT: 2.2x (38
/// bands) and 3.3x (67 bands) fewer multiply-adds than directly, the same values to float rounding. Per bin
/// `k`, the filters' spectra multiply the input frames' spectra summed over the 7 frames (two real GEMMs
/// of 7 x 2 inputs, for the real and imaginary parts, whose left side is the bin's spectra read in place);
/// then one GEMM by the inverse DFT's real basis, restricted to the valid output bands, gives every
/// frame's and filter's correlation, pooled over bands as in [`temporal_branch`].
#[derive(Clone, Debug)]
struct FreqConv {
    /// Per bin: `[7 frames x (re, im)][np]` giving the real part of the product, then the imaginary part
    /// (columns `cout..np` zero).
    re: Vec<Vec<f32>>,
    im: Vec<Vec<f32>>,
    /// `cout` rounded up to a whole number of 16-lane vectors.
    np: usize,
    /// `[48][ceil(nf / 2)]` and `[48][nf / 2]`: the even and the odd output bands from the two halves of
    /// the product spectrum after [`split_halves`] (its rows `0..48` and `48..96`), with the 1/96 and the 2
    /// of the bins' conjugate halves: the inverse DFT with one radix-2 step, half the multiply-adds of one
    /// `[96][nf]` matrix.
    inv_even: Vec<f32>,
    inv_odd: Vec<f32>,
    /// The same two with their columns padded to a whole number of [`INV_BLOCK`] bands by repeating the
    /// last one (which changes no max over bands), for [`inverse_max_avx512`].
    inv_padded: [Vec<f32>; 2],
    /// Valid output bands.
    nf: usize,
    /// Filters.
    cout: usize,
    bias: Vec<f32>,
    bn: Affine,
}

impl FreqConv {
    /// From the convolution as TF stores it (whose weights are needed no more once transformed).
    fn new(conv: Conv) -> FreqConv {
        let (kt, w, cout) = (conv.k_time, conv.width, conv.cout);
        let nf = NDFT - w + 1;
        let (mut re, mut im) = (Vec::with_capacity(NBINS), Vec::with_capacity(NBINS));
        let np = cout.next_multiple_of(16);
        for k in 0..NBINS {
            let (mut bre, mut bim) = (vec![0f32; kt * 2 * np], vec![0f32; kt * 2 * np]);
            for dt in 0..kt {
                for c in 0..cout {
                    // conj(W_k) of the filter's band window: (sum w cos, sum w sin).
                    let (mut vr, mut vi) = (0f64, 0f64);
                    for n in 0..w {
                        let a = 2.0 * std::f64::consts::PI * (k * n) as f64 / NDFT as f64;
                        let wv = conv.weight[(dt * w + n) * cout + c] as f64;
                        vr += wv * a.cos();
                        vi += wv * a.sin();
                    }
                    // (xr + i xi)(vr + i vi) = (xr vr - xi vi) + i (xr vi + xi vr)
                    bre[(dt * 2) * np + c] = vr as f32;
                    bre[(dt * 2 + 1) * np + c] = -vi as f32;
                    bim[(dt * 2) * np + c] = vi as f32;
                    bim[(dt * 2 + 1) * np + c] = vr as f32;
                }
            }
            re.push(bre);
            im.push(bim);
        }
        let half = |parity: usize| {
            let n_out = (nf + 1 - parity) / 2;
            let mut m = vec![0f32; NDFT / 2 * n_out];
            for (j, col) in (parity..nf).step_by(2).enumerate() {
                let mm = (col / 2) as f64;
                for k in 0..=NDFT / 4 {
                    let a = 2.0 * std::f64::consts::PI * k as f64 * mm / (NDFT / 2) as f64;
                    let twice = if k == 0 || k == NDFT / 4 { 1.0 } else { 2.0 };
                    m[k * n_out + j] = (twice * a.cos() / NDFT as f64) as f32;
                    if (1..NDFT / 4).contains(&k) {
                        m[(NDFT / 2 - k) * n_out + j] = (-2.0 * a.sin() / NDFT as f64) as f32;
                    }
                }
            }
            m
        };
        let (inv_even, inv_odd) = (half(0), half(1));
        let pad = |inv: &[f32]| {
            let n_out = inv.len() / (NDFT / 2);
            let wide = n_out.next_multiple_of(INV_BLOCK);
            let mut m = Vec::with_capacity(NDFT / 2 * wide);
            for row in inv.chunks_exact(n_out.max(1)).take(if n_out == 0 { 0 } else { NDFT / 2 }) {
                m.extend_from_slice(row);
                m.extend(std::iter::repeat_n(row[n_out - 1], wide - n_out));
            }
            m
        };
        let inv_padded = [pad(&inv_even), pad(&inv_odd)];
        FreqConv { re, im, np, inv_even, inv_odd, inv_padded, nf, cout, bias: conv.bias, bn: conv.bn }
    }

    /// The branch over `t` frames: `spec_k` is [`dft_rows`] of the padded BN0 frames (`t + 6` of them);
    /// writes `BN(max over bands(ReLU(conv)))` to `front[3 + t][off..off + cout]`.
    #[allow(clippy::too_many_arguments)]
    fn forward(&self, t: usize, spec_k: &[f32], z: &mut Vec<f32>, out: &mut Vec<f32>, hi: &mut Vec<f32>, front: &mut [f32], front_width: usize, off: usize) {
        let (n, rows) = (self.cout, t + 6);
        // Strips of frames, so a strip's spectra (96 x 24 x 204 floats, 1.9 MB) stay in the core's cache.
        let mut t0 = 0;
        while t0 < t {
            let tt = DFT_STRIP.min(t - t0);
            let tn = tt * n;
            // z[spectrum row][(frame, filter)]: the product's spectrum, rows in dft_matrix's layout.
            // (16 values more: the AVX-512 inverse reads whole vectors past a row's end.)
            z.resize(NDFT * tn + 16, 0.0);
            for k in 0..NBINS {
                let lhs = &spec_k[(k * rows + t0) * 2..(k + 1) * rows * 2];
                let parts: &[(&Vec<f32>, usize)] =
                    if (1..NBINS - 1).contains(&k) { &[(&self.re[k], k), (&self.im[k], NBINS - 1 + k)] } else { &[(&self.re[k], k)] };
                for &(rhs, j) in parts {
                    bin_product(tt, n, self.np, lhs, rhs, &mut z[j * tn..(j + 1) * tn]);
                }
            }
            split_halves(&mut z[..NDFT * tn], tn);
            // out[band][(frame, filter)] = sum over spectrum rows of z * inverse, even bands from z's first
            // half and odd ones from its second: column-major on both sides.
            hi.resize(tn, 0.0);
            self.inverse_max(z, tn, out, &mut hi[..tn]);
            for (ti, hi) in hi[..tn].chunks_exact(n).enumerate() {
                for (c, d) in front[(t0 + ti + 3) * front_width + off..][..n].iter_mut().enumerate() {
                    *d = self.bn.pooled_one(&self.bias, c, hi[c]);
                }
            }
            t0 += tt;
        }
    }
}

impl FreqConv {
    /// `hi[col] = max over bands of the inverse DFT` of the product spectrum `z` after [`split_halves`]
    /// (`[96][tn]`, and 16 values more), for each (frame, filter) column `col`.
    fn inverse_max(&self, z: &[f32], tn: usize, out: &mut Vec<f32>, hi: &mut [f32]) {
        assert!(z.len() >= NDFT * tn + 16 && hi.len() == tn);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above); the lengths are asserted above.
            return unsafe { inverse_max_avx512(z, tn, &self.inv_padded, hi) };
        }
        self.inverse_max_gemm(z, tn, out, hi)
    }

    /// [`FreqConv::inverse_max`] as one GEMM per half into every band, then the max over them.
    fn inverse_max_gemm(&self, z: &[f32], tn: usize, out: &mut Vec<f32>, hi: &mut [f32]) {
        // out[band][(frame, filter)] = sum over spectrum rows of z * inverse, even bands from z's first
        // half and odd ones from its second: column-major on both sides.
        out.resize(self.nf * tn, 0.0);
        let half = NDFT / 2;
        for (parity, inv) in [(0, &self.inv_even), (1, &self.inv_odd)] {
            let n_out = inv.len() / half;
            if n_out == 0 {
                continue;
            }
            assert!(z.len() >= NDFT * tn && out.len() >= self.nf * tn);
            // SAFETY: lhs is z's rows `parity * 48..` read as [(frame, filter)][48 rows] (rows 1 apart,
            // columns tn apart), rhs the [48][n_out] matrix, dst out's bands parity, parity + 2, ... as
            // [(frame, filter)][n_out] (rows 1 apart, columns 2 tn apart; the last is band nf - 1 at
            // most): all within the lengths asserted.
            unsafe {
                crate::fast::kernels::matmul(
                    (tn, n_out, half),
                    (out.as_mut_ptr().add(parity * tn), 1, 2 * tn as isize),
                    false,
                    (z.as_ptr().add(parity * half * tn), 1, tn as isize),
                    (inv.as_ptr(), n_out as isize, 1),
                )
            }
        }
        max_over_rows(out, tn, hi);
    }
}

/// Bands per block of [`inverse_max_avx512`].
const INV_BLOCK: usize = 5;

/// [`FreqConv::inverse_max`] with AVX-512: per block of up to 64 (frame, filter) columns, the bands in
/// blocks of 5 held in 20 registers over the 48 rows of each half, and their max kept in registers, so
/// no band is written out (the GEMM and the max over its output took 3.3 ms of a 10-ms patch).
///
/// # Safety
/// AVX-512F; `z` is `[96][tn]` and 16 values more, `inv` the two `[48][wide]` matrices (`wide` a multiple
/// of [`INV_BLOCK`]), `hi` `tn` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn inverse_max_avx512(z: &[f32], tn: usize, inv: &[Vec<f32>; 2], hi: &mut [f32]) {
    let nvec = tn.div_ceil(16);
    let mut v0 = 0;
    while v0 < nvec {
        let nvb = (nvec - v0).min(4);
        // SAFETY: vectors v0..v0 + nvb <= nvec, inside the lengths above.
        unsafe {
            match nvb {
                4 => inverse_block::<4>(v0, z, tn, inv, hi),
                3 => inverse_block::<3>(v0, z, tn, inv, hi),
                2 => inverse_block::<2>(v0, z, tn, inv, hi),
                _ => inverse_block::<1>(v0, z, tn, inv, hi),
            }
        }
        v0 += nvb;
    }
}

/// `NV` vectors of 16 columns from vector `v0` of [`inverse_max_avx512`]; the lanes past `tn` (read
/// from the next row or the slack) are not stored.
///
/// # Safety
/// As [`inverse_max_avx512`], the block inside its bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn inverse_block<const NV: usize>(v0: usize, z: &[f32], tn: usize, inv: &[Vec<f32>; 2], hi: &mut [f32]) {
    use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_max_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};
    let half = NDFT / 2;
    let mut m: [__m512; NV] = [_mm512_set1_ps(f32::NEG_INFINITY); NV];
    for (parity, inv) in inv.iter().enumerate() {
        let wide = inv.len() / half;
        // SAFETY: row parity * 48 + r < 96 of z, columns below (v0 + NV) * 16 <= tn + 15 (the slack).
        let zr = unsafe { z.as_ptr().add(parity * half * tn + v0 * 16) };
        for b0 in (0..wide).step_by(INV_BLOCK) {
            let mut acc: [[__m512; NV]; INV_BLOCK] = [[_mm512_setzero_ps(); NV]; INV_BLOCK];
            for r in 0..half {
                // SAFETY: as above; inv's row r holds `wide` >= b0 + 5 values.
                unsafe {
                    let zv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(zr.add(r * tn + v * 16)));
                    for (b, acc) in acc.iter_mut().enumerate() {
                        let w = _mm512_set1_ps(*inv.get_unchecked(r * wide + b0 + b));
                        for (acc, zv) in acc.iter_mut().zip(&zv) {
                            *acc = _mm512_fmadd_ps(w, *zv, *acc);
                        }
                    }
                }
            }
            for acc in &acc {
                for (m, a) in m.iter_mut().zip(acc) {
                    *m = _mm512_max_ps(*m, *a);
                }
            }
        }
    }
    let h = hi.as_mut_ptr();
    for (v, m) in m.iter().enumerate() {
        let c = (v0 + v) * 16;
        // SAFETY: only columns below tn = hi.len() are written.
        unsafe {
            if c + 16 <= tn {
                _mm512_storeu_ps(h.add(c), *m);
            } else if c < tn {
                _mm512_mask_storeu_ps(h.add(c), ((1u32 << (tn - c)) - 1) as u16, *m);
            }
        }
    }
}

/// One bin's product spectrum over `tt` frames: `dst[ti][c] = sum_j lhs[2 ti + j] rhs[j][c]` for `j < 14`
/// (the bin's spectra of 7 frames, read in place, rows 2 apart) and `c < n`; `rhs` is `[14][np]`.
fn bin_product(tt: usize, n: usize, np: usize, lhs: &[f32], rhs: &[f32], dst: &mut [f32]) {
    assert!(lhs.len() >= (tt - 1) * 2 + 14 && rhs.len() == 14 * np && np >= n && np.is_multiple_of(16) && dst.len() >= tt * n);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); the lengths are asserted above.
        return unsafe { bin_product_avx512(tt, n, np, lhs, rhs, dst) };
    }
    bin_product_gemm(tt, n, np, lhs, rhs, dst)
}

/// [`bin_product`] as a GEMM (any CPU).
fn bin_product_gemm(tt: usize, n: usize, np: usize, lhs: &[f32], rhs: &[f32], dst: &mut [f32]) {
    assert!(lhs.len() >= (tt - 1) * 2 + 14 && rhs.len() == 14 * np && np >= n && dst.len() >= tt * n);
    // SAFETY: lhs rows are 2 apart and 14 wide, rhs rows np apart, dst [tt][n] (all asserted above).
    unsafe {
        crate::fast::kernels::matmul((tt, n, 14), (dst.as_mut_ptr(), n as isize, 1), false, (lhs.as_ptr(), 2, 1), (rhs.as_ptr(), np as isize, 1))
    }
}

/// [`bin_product`] with AVX-512: blocks of 4 frames x 64 filters held in 16 registers over the 14 terms
/// (the GEMM crate's packing and blocking cost more than these products with a depth of 14: 3.5 ms of a
/// 13-ms patch before).
///
/// # Safety
/// The CPU must have AVX-512F, and the lengths be as [`bin_product`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bin_product_avx512(tt: usize, n: usize, np: usize, lhs: &[f32], rhs: &[f32], dst: &mut [f32]) {
    let nv = np / 16;
    let mut ti = 0;
    while ti < tt {
        let fr = (tt - ti).min(4);
        let mut v0 = 0;
        while v0 < nv {
            let nvb = (nv - v0).min(4);
            // SAFETY: frames ti..ti + fr < tt and vectors v0..v0 + nvb <= nv, inside the asserted lengths.
            unsafe {
                match (fr, nvb) {
                    (4, 4) => product_block::<4, 4>(ti, v0, n, np, lhs, rhs, dst),
                    (4, 3) => product_block::<4, 3>(ti, v0, n, np, lhs, rhs, dst),
                    (4, 2) => product_block::<4, 2>(ti, v0, n, np, lhs, rhs, dst),
                    (4, _) => product_block::<4, 1>(ti, v0, n, np, lhs, rhs, dst),
                    (3, 4) => product_block::<3, 4>(ti, v0, n, np, lhs, rhs, dst),
                    (3, 3) => product_block::<3, 3>(ti, v0, n, np, lhs, rhs, dst),
                    (3, 2) => product_block::<3, 2>(ti, v0, n, np, lhs, rhs, dst),
                    (3, _) => product_block::<3, 1>(ti, v0, n, np, lhs, rhs, dst),
                    (2, 4) => product_block::<2, 4>(ti, v0, n, np, lhs, rhs, dst),
                    (2, 3) => product_block::<2, 3>(ti, v0, n, np, lhs, rhs, dst),
                    (2, 2) => product_block::<2, 2>(ti, v0, n, np, lhs, rhs, dst),
                    (2, _) => product_block::<2, 1>(ti, v0, n, np, lhs, rhs, dst),
                    (_, 4) => product_block::<1, 4>(ti, v0, n, np, lhs, rhs, dst),
                    (_, 3) => product_block::<1, 3>(ti, v0, n, np, lhs, rhs, dst),
                    (_, 2) => product_block::<1, 2>(ti, v0, n, np, lhs, rhs, dst),
                    (_, _) => product_block::<1, 1>(ti, v0, n, np, lhs, rhs, dst),
                }
            }
            v0 += nvb;
        }
        ti += fr;
    }
}

/// `FR` frames from `ti` by `NV` 16-lane vectors of filters from vector `v0` of [`bin_product_avx512`];
/// the filters past `n` (zero columns of `rhs`) are not stored.
///
/// # Safety
/// AVX-512F, and the block inside the lengths [`bin_product`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn product_block<const FR: usize, const NV: usize>(ti: usize, v0: usize, n: usize, np: usize, lhs: &[f32], rhs: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};
    let mut acc: [[__m512; NV]; FR] = [[_mm512_setzero_ps(); NV]; FR];
    let (a, b) = (lhs.as_ptr(), rhs.as_ptr());
    for j in 0..14 {
        // SAFETY: row j of rhs holds np >= (v0 + NV) * 16 values; lhs holds frame ti + f's 14 values.
        unsafe {
            let bv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(j * np + (v0 + v) * 16)));
            for (f, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a.add((ti + f) * 2 + j));
                for (acc, bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(x, *bv, *acc);
                }
            }
        }
    }
    let d = dst.as_mut_ptr();
    for (f, acc) in acc.iter().enumerate() {
        for (v, acc) in acc.iter().enumerate() {
            let c = (v0 + v) * 16;
            // SAFETY: frame ti + f's row of dst holds n values; only columns below n are written.
            unsafe {
                if c + 16 <= n {
                    _mm512_storeu_ps(d.add((ti + f) * n + c), *acc);
                } else if c < n {
                    _mm512_mask_storeu_ps(d.add((ti + f) * n + c), ((1u32 << (n - c)) - 1) as u16, *acc);
                }
            }
        }
    }
}

/// One radix-2 step of the inverse real DFT of length 96, in place on a product spectrum `z` laid out as
/// [`dft_matrix`] lays out a spectrum (rows `Re Z_0..Re Z_48, Im Z_1..Im Z_47`, each `width` values). The
/// even outputs are the length-48 inverse DFT of `A_k = Z_k + Z_(k+48)`, the odd ones that of
/// `B_k = (Z_k - Z_(k+48)) e^(2 pi i k / 96)`; both are Hermitian, and since `Z_(k+48) = conj Z_(48-k)`, the
/// four rows of bins `k` and `48 - k` give the four of `A_k` and `B_k`. Afterwards rows `0..48` hold
/// `Re A_0..Re A_24, Im A_23..Im A_1` (`Im A_k` in row `48 - k`) and rows `48..96` the same of `B`.
fn split_halves(z: &mut [f32], width: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { split_halves_avx2(z, width) };
    }
    split_halves_body(z, width)
}

/// [`split_halves`] compiled for AVX2 (the crate is built for baseline x86-64, whose 4-wide SSE left this
/// loop a tenth of a patch's time).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn split_halves_avx2(z: &mut [f32], width: usize) {
    split_halves_body(z, width)
}

#[inline(always)]
fn split_halves_body(z: &mut [f32], width: usize) {
    let q = NDFT / 4;
    let mut rows: Vec<&mut [f32]> = z.chunks_exact_mut(width).collect();
    for k in 0..=q {
        let (c, s) = {
            let a = 2.0 * std::f64::consts::PI * k as f64 / NDFT as f64;
            (a.cos() as f32, a.sin() as f32)
        };
        if k == 0 {
            // Z_0 and Z_48 are real: A_0 = Z_0 + Z_48, B_0 = Z_0 - Z_48.
            let (lo, hi) = rows.split_at_mut(2 * q);
            for (a, b) in lo[0].iter_mut().zip(hi[0].iter_mut()) {
                (*a, *b) = (*a + *b, *a - *b);
            }
        } else if k == q {
            // A_24 = 2 Re Z_24, B_24 = -2 Im Z_24.
            rows[q].iter_mut().for_each(|v| *v *= 2.0);
            rows[3 * q].iter_mut().for_each(|v| *v *= -2.0);
        } else {
            // Rows k < 2q - k < 2q + k < 4q - k: Re Z_k, Re Z_(48-k), Im Z_k, Im Z_(48-k).
            let (r0, rest) = rows.split_at_mut(2 * q - k);
            let (r1, rest) = rest.split_at_mut(k + k);
            let (r2, r3) = rest.split_at_mut(2 * q - 2 * k);
            let (re_k, re_m, im_k, im_m) = (&mut *r0[k], &mut *r1[0], &mut *r2[0], &mut *r3[0]);
            for (((a, b), cc), d) in re_k.iter_mut().zip(re_m.iter_mut()).zip(im_k.iter_mut()).zip(im_m.iter_mut()) {
                let (dr, di) = (*a - *b, *cc + *d);
                (*a, *b, *cc, *d) = (*a + *b, *cc - *d, dr * c - di * s, dr * s + di * c);
            }
        }
    }
}

/// Column-wise max of `x`, rows of `width`: `hi[j]` over every row's `j` (by [`max_update`]).
fn max_over_rows(x: &[f32], width: usize, hi: &mut [f32]) {
    let mut rows = x.chunks_exact(width);
    hi.copy_from_slice(rows.next().unwrap_or_default());
    for row in rows {
        max_update(hi, row);
    }
}

/// `hi = max(hi, row)`, element-wise (the values are finite). Explicit vector max instructions where the
/// CPU has them, comparisons elsewhere: `f32::max`'s NaN rule kept the loop scalar-like (a tenth of a
/// patch's time once), and auto-vectorised for AVX2 the comparisons became masked stores.
fn max_update(hi: &mut [f32], row: &[f32]) {
    assert_eq!(hi.len(), row.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); the lengths are equal (asserted).
        return unsafe { max_update_avx512(hi, row) };
    } else if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as above, for AVX2.
        return unsafe { max_update_avx2(hi, row) };
    }
    max_update_body(hi, row)
}

#[inline(always)]
fn max_update_body(hi: &mut [f32], row: &[f32]) {
    for (h, &v) in hi.iter_mut().zip(row) {
        *h = if v > *h { v } else { *h };
    }
}

/// [`max_update`] 16 lanes at a time.
///
/// # Safety
/// The CPU must have AVX-512F, and the slices the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_update_avx512(hi: &mut [f32], row: &[f32]) {
    use std::arch::x86_64::{_mm512_loadu_ps, _mm512_max_ps, _mm512_storeu_ps};
    let n = row.len();
    let (h, r) = (hi.as_mut_ptr(), row.as_ptr());
    let mut i = 0;
    // SAFETY: i + 16 <= n, the length of both slices.
    unsafe {
        while i + 16 <= n {
            _mm512_storeu_ps(h.add(i), _mm512_max_ps(_mm512_loadu_ps(h.add(i)), _mm512_loadu_ps(r.add(i))));
            i += 16;
        }
    }
    max_update_body(&mut hi[i..], &row[i..]);
}

/// [`max_update`] 8 lanes at a time.
///
/// # Safety
/// The CPU must have AVX2, and the slices the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_update_avx2(hi: &mut [f32], row: &[f32]) {
    use std::arch::x86_64::{_mm256_loadu_ps, _mm256_max_ps, _mm256_storeu_ps};
    let n = row.len();
    let (h, r) = (hi.as_mut_ptr(), row.as_ptr());
    let mut i = 0;
    // SAFETY: i + 8 <= n, the length of both slices.
    unsafe {
        while i + 8 <= n {
            _mm256_storeu_ps(h.add(i), _mm256_max_ps(_mm256_loadu_ps(h.add(i)), _mm256_loadu_ps(r.add(i))));
            i += 8;
        }
    }
    max_update_body(&mut hi[i..], &row[i..]);
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A temporal convolution (`k` frames x 1 band, 51 filters) whose weights are laid out for
/// [`temporal_gemm`]: `conv.weight` is `[k][np]`, `np` the filters rounded up to a whole block of
/// [`TEMPORAL_BLOCK`] (the extra columns zero).
#[derive(Clone, Debug)]
struct TemporalConv {
    conv: Conv,
    np: usize,
}

/// Filters per block of the temporal kernel ([`temporal_block`]).
const TEMPORAL_BLOCK: usize = 6;

impl TemporalConv {
    fn new(mut conv: Conv) -> TemporalConv {
        let (k, n) = (conv.k_time, conv.cout);
        let np = n.next_multiple_of(TEMPORAL_BLOCK);
        let mut padded = vec![0f32; k * np];
        for (dst, src) in padded.chunks_exact_mut(np).zip(conv.weight.chunks_exact(n)) {
            dst[..n].copy_from_slice(src);
        }
        conv.weight = padded;
        TemporalConv { conv, np }
    }
}

/// A temporal front-end branch (`k` frames x 1 band): for each mel band, the 1-D convolution of the
/// band's zero-padded row of `xf` ([`temporal_gemm`]), then each channel's running max over the bands;
/// writes `BN(max over bands(ReLU(conv)))` to `front[3 + t][off..off + cout]`. `xf` is `[96][tf_len]`
/// (16 values more at the end), each band's frames starting `before` values in.
#[allow(clippy::too_many_arguments)]
fn temporal_branch(conv: &TemporalConv, t: usize, xf: &[f32], tf_len: usize, before: usize, out: &mut Vec<f32>, hi: &mut Vec<f32>, front: &mut [f32], front_width: usize, off: usize) {
    let (k, n, np) = (conv.conv.k_time, conv.conv.cout, conv.np);
    // TF's "same" padding puts (k - 1) / 2 frames before the first output's centre.
    let start = before - (k - 1) / 2;
    // Channel-major, [np][tp]: whole vectors of frames (the last frames past `t` are never read).
    let tp = t.next_multiple_of(16);
    out.resize(np * tp, 0.0);
    hi.resize(np * tp, 0.0);
    for f in 0..N_MELS {
        temporal_gemm(t, k, &xf[f * tf_len + start..], conv, out, tp);
        if f == 0 {
            hi.copy_from_slice(out);
        } else {
            max_update(hi, out);
        }
    }
    for ti in 0..t {
        let d = &mut front[(ti + 3) * front_width + off..][..n];
        for (c, d) in d.iter_mut().enumerate() {
            *d = conv.conv.bn.pooled_one(&conv.conv.bias, c, hi[c * tp + ti]);
        }
    }
}

/// `out[c][i] = sum_j w[j][c] x[i + j]` for `j < k`, `i < t` and every filter `c` of `conv` (`out` is
/// `[np][tp]`; with AVX-512 the frames `t..tp` are computed too, from `x`'s values past `t + k - 1`).
fn temporal_gemm(t: usize, k: usize, x: &[f32], conv: &TemporalConv, out: &mut [f32], tp: usize) {
    let np = conv.np;
    assert!(tp.is_multiple_of(16) && tp >= t && out.len() >= np * tp && conv.conv.weight.len() == k * np && np.is_multiple_of(TEMPORAL_BLOCK));
    #[cfg(target_arch = "x86_64")]
    if x.len() >= tp + k - 1 && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); the lengths are asserted above.
        return unsafe { temporal_gemm_avx512(k, x, &conv.conv.weight, np, out, tp) };
    }
    temporal_gemm_portable(t, k, x, conv, out, tp)
}

/// [`temporal_gemm`] as a GEMM (any CPU; frames `t..tp` of `out` are left as they were).
fn temporal_gemm_portable(t: usize, k: usize, x: &[f32], conv: &TemporalConv, out: &mut [f32], tp: usize) {
    let np = conv.np;
    assert!(x.len() >= t + k - 1 && tp >= t && out.len() >= np * tp && conv.conv.weight.len() == k * np);
    // SAFETY: lhs rows are 1 apart and k wide (t + k - 1 values, asserted); rhs is [k][np]; dst is
    // column-major [t][np] with columns tp apart, inside out (asserted).
    unsafe {
        crate::fast::kernels::matmul((t, np, k), (out.as_mut_ptr(), 1, tp as isize), false, (x.as_ptr(), 1, 1), (conv.conv.weight.as_ptr(), np as isize, 1))
    }
}

/// [`temporal_gemm`] with AVX-512: blocks of 6 filters x up to 64 frames in 24 registers over the `k`
/// taps, each tap one unaligned load of 16 frames per vector and one broadcast weight per filter (the
/// GEMM crate, with 51 filters a side and the im2col rows read in place, ran at about 55 GMAC/s).
///
/// # Safety
/// AVX-512F; `x` holds `tp + k - 1` values, `w` is `[k][np]`, `out` `[np][tp]`, `tp` a multiple of 16
/// and `np` of [`TEMPORAL_BLOCK`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn temporal_gemm_avx512(k: usize, x: &[f32], w: &[f32], np: usize, out: &mut [f32], tp: usize) {
    let nv = tp / 16;
    for c0 in (0..np).step_by(TEMPORAL_BLOCK) {
        let mut v0 = 0;
        while v0 < nv {
            let nvb = (nv - v0).min(4);
            // SAFETY: filters c0..c0 + 6 <= np and vectors v0..v0 + nvb <= nv, inside the lengths above.
            unsafe {
                match nvb {
                    4 => temporal_block::<4>(v0, c0, k, x, w, np, out, tp),
                    3 => temporal_block::<3>(v0, c0, k, x, w, np, out, tp),
                    2 => temporal_block::<2>(v0, c0, k, x, w, np, out, tp),
                    _ => temporal_block::<1>(v0, c0, k, x, w, np, out, tp),
                }
            }
            v0 += nvb;
        }
    }
}

/// `NV` vectors of 16 frames from vector `v0` by the 6 filters from `c0` of [`temporal_gemm_avx512`].
///
/// # Safety
/// As [`temporal_gemm_avx512`], the block inside its bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn temporal_block<const NV: usize>(v0: usize, c0: usize, k: usize, x: &[f32], w: &[f32], np: usize, out: &mut [f32], tp: usize) {
    use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};
    let mut acc: [[__m512; NV]; TEMPORAL_BLOCK] = [[_mm512_setzero_ps(); NV]; TEMPORAL_BLOCK];
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    for j in 0..k {
        // SAFETY: frames up to (v0 + NV) * 16 - 1 + j <= tp + k - 2 of x; w's row j, filters c0..c0 + 6.
        unsafe {
            let xv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(xp.add((v0 + v) * 16 + j)));
            for (c, acc) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*wp.add(j * np + c0 + c));
                for (acc, xv) in acc.iter_mut().zip(&xv) {
                    *acc = _mm512_fmadd_ps(wv, *xv, *acc);
                }
            }
        }
    }
    let o = out.as_mut_ptr();
    for (c, acc) in acc.iter().enumerate() {
        for (v, acc) in acc.iter().enumerate() {
            // SAFETY: filter c0 + c < np, frames (v0 + v) * 16.. + 16 <= tp: inside out.
            unsafe { _mm512_storeu_ps(o.add((c0 + c) * tp + (v0 + v) * 16), *acc) };
        }
    }
}

/// A mid-end convolution: `input` is `[t + 6][cin]` with 3 zero frames either side, so row `i` of its
/// im2col matrix is the `7 * cin` values starting at frame `i`. Writes `BN(ReLU(conv)) (+ residual)` to
/// frames `3..t + 3` of `dst`.
fn mid_conv(conv: &Conv, t: usize, input: &[f32], out: &mut Vec<f32>, dst: &mut [f32], residual: Option<&[f32]>) {
    let (cin, n) = (conv.width, conv.cout);
    out.resize(t * n, 0.0);
    gemm_rm(t, n, conv.k_time * cin, input, cin, &conv.weight, out);
    for (i, row) in out.chunks_exact(n).enumerate() {
        let d = &mut dst[(i + 3) * n..(i + 4) * n];
        for ch in 0..n {
            d[ch] = (row[ch] + conv.bias[ch]).max(0.0) * conv.bn.scale[ch] + conv.bn.shift[ch];
        }
        if let Some(res) = residual {
            d.iter_mut().zip(&res[(i + 3) * n..(i + 4) * n]).for_each(|(v, r)| *v += r);
        }
    }
}

/// The tagger's input from mel **power** `[frames][96]` (at 16 kHz, n_fft 512, hop 256): the package's
/// `log10(10000 x + 1)`. (Its float16 rounding before the product is skipped: it moves tags by < 1e-4, and
/// under NumPy 2 that step overflows to inf.)
pub fn compress(power: &mut [f32]) {
    power.iter_mut().for_each(|v| *v = (10000.0 * v.max(0.0) + 1.0).log10());
}

/// The front end's settings for [`soundalike_audio::MelStream`]: 16 kHz, n_fft 512, hop 256, 96 Slaney
/// mel bands, periodic Hann, `center=True` with zero padding (librosa's defaults since 0.9).
pub fn frontend() -> soundalike_audio::FrontendConfig {
    soundalike_audio::FrontendConfig {
        sample_rate: SAMPLE_RATE,
        n_fft: N_FFT,
        hop_length: HOP,
        n_mels: N_MELS,
        fmin: 0.0,
        fmax: None,
        tile_frames: PATCH_FRAMES,
        tile_hop: PATCH_FRAMES,
        ..Default::default()
    }
}

/// The tagger's input of a signal already at 16 kHz: `[frames][96]`, time-major.
pub fn log_mel(samples: &[f32]) -> Vec<f32> {
    let mut s = soundalike_audio::MelStream::new(&frontend());
    s.push(samples);
    let (_, mut power) = s.finish_power();
    compress(&mut power);
    power
}

/// How a song's patches are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatchPlan {
    /// Every non-overlapping patch from the start (the package's default); a trailing part is dropped.
    All,
    /// At most this many non-overlapping patches, spread evenly over the song.
    Spread(usize),
    /// One patch per `every_frames` frames of the song (rounded, at least one), at most `max`, spread
    /// evenly: a cost in proportion to the song's length, capped for long ones.
    Sparse {
        /// Frames of song per patch read.
        every_frames: usize,
        /// Most patches read.
        max: usize,
    },
}

/// Cuts `[frames][96]` into 187-frame patches under `plan`. A song shorter than one patch is
/// repeat-padded to one, as musicnn was trained (`"pad_short": "repeat-pad"`). Empty input: no patches.
pub fn patches(mel: &[f32], plan: PatchPlan) -> Vec<Vec<f32>> {
    let frames = mel.len() / N_MELS;
    if frames == 0 {
        return Vec::new();
    }
    if frames < PATCH_FRAMES {
        let mut p = Vec::with_capacity(PATCH_FRAMES * N_MELS);
        while p.len() < PATCH_FRAMES * N_MELS {
            let need = PATCH_FRAMES * N_MELS - p.len();
            p.extend_from_slice(&mel[..need.min(frames * N_MELS)]);
        }
        return vec![p];
    }
    let n = frames / PATCH_FRAMES;
    let k = match plan {
        PatchPlan::All => n,
        PatchPlan::Spread(k) => k.max(1),
        PatchPlan::Sparse { every_frames, max } => {
            let every = every_frames.max(1);
            ((frames + every / 2) / every).clamp(1, max.max(1))
        }
    };
    let starts: Vec<usize> = if k >= n {
        (0..n).map(|i| i * PATCH_FRAMES).collect()
    } else {
        // k patches centred in k equal parts of the song.
        let span = frames - PATCH_FRAMES;
        (0..k).map(|i| ((2 * i + 1) * span) / (2 * k)).collect()
    };
    starts.into_iter().map(|s| mel[s * N_MELS..(s + PATCH_FRAMES) * N_MELS].to_vec()).collect()
}

/// How many patches `embed` reads per song and model: one per 7.5 s of song (2.5 patch lengths), at most
/// 6, spread evenly: 2 for a 15-s clip, 4 for 30 s, 6 for a 60-s preview or a whole song. Against every
/// patch, on 39 60-s previews (6 of 20 patches): mean |d probability| 0.0041, 89% of the top-5 tags and
/// 92% of the top tags the same; 8 patches would give 0.0033 / 94% / 95% but take `embed` under 200x
/// realtime (172x): see `docs/results.md#tags`.
///
/// The plan is part of what `soundalike_tags::TAGS_VERSION` names: changing it (or the weights) must bump
/// that version, so stores tag their songs again.
pub const EMBED_PLAN: PatchPlan = PatchPlan::Sparse { every_frames: PATCH_FRAMES * 5 / 2, max: 6 };

/// A song's tags from its mel power at the tagger's settings (`[frames][96]`, [`frontend`]): both models
/// over the patches `plan` picks, averaged per model. `None` for an empty spectrogram or a network output
/// that is not finite (never stored as NaN).
pub fn tag_power_mel(power: Vec<f32>, plan: PatchPlan) -> Option<soundalike_tags::SongTags> {
    tag_power_mel_with_penultimate(power, plan).map(|(t, _)| t)
}

/// [`tag_power_mel`], and the penultimate layers averaged over the same patches: MSD_musicnn's 200 values,
/// then MTT_musicnn's (what a network with a musicnn song context reads: [`crate::SongContext::musicnn`]).
pub fn tag_power_mel_with_penultimate(mut power: Vec<f32>, plan: PatchPlan) -> Option<(soundalike_tags::SongTags, Vec<f32>)> {
    compress(&mut power);
    let p = patches(&power, plan);
    if p.is_empty() {
        return None;
    }
    let msd = mean_output(&net(TagSource::Msd).forward_patches(&p))?;
    let mtt = mean_output(&net(TagSource::Mtt).forward_patches(&p))?;
    let penultimates: Vec<f32> = msd.penultimate.iter().chain(&mtt.penultimate).copied().collect();
    if !penultimates.iter().all(|v| v.is_finite()) {
        return None;
    }
    Some((soundalike_tags::SongTags::from_probs(p.len() as u32, &msd.probs, &mtt.probs)?, penultimates))
}

/// The mean of patch outputs (a song's tags and penultimate, as the package averages its taggram).
pub fn mean_output(outputs: &[PatchOutput]) -> Option<PatchOutput> {
    let first = outputs.first()?;
    let n = outputs.len() as f32;
    let mut mean = PatchOutput { penultimate: vec![0.0; first.penultimate.len()], probs: vec![0.0; first.probs.len()] };
    for o in outputs {
        mean.penultimate.iter_mut().zip(&o.penultimate).for_each(|(m, v)| *m += v / n);
        mean.probs.iter_mut().zip(&o.probs).for_each(|(m, v)| *m += v / n);
    }
    Some(mean)
}

#[cfg(test)]
mod tests {
    //! The AVX-512 kernels against the GEMM paths other CPUs take, on sizes with every kind of remainder
    //! (the golden tests in `tests/musicnn.rs` check whichever path this CPU takes against TensorFlow).
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn conv(k_time: usize, width: usize, cout: usize, seed: u64) -> Conv {
        let scale: Vec<f32> = noise(cout, seed + 1);
        Conv {
            k_time,
            width,
            cout,
            weight: noise(k_time * width * cout, seed),
            bias: noise(cout, seed + 2),
            bn: Affine { shift: noise(cout, seed + 3), scale },
        }
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs().max(y.abs())), "{what}: [{i}] {x} vs {y}");
        }
    }

    fn avx512() -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return true;
        }
        eprintln!("skipped: this CPU has no AVX-512F, so only the GEMM paths run (and the golden tests check them)");
        false
    }

    #[test]
    fn bin_products_agree() {
        if !avx512() {
            return;
        }
        for n in [204usize, 13, 16, 1] {
            let np = n.next_multiple_of(16);
            let mut rhs = noise(14 * np, n as u64);
            rhs.chunks_exact_mut(np).for_each(|r| r[n..].fill(0.0));
            for tt in [1, 2, 3, 4, 5, 7, 24] {
                let lhs = noise((tt - 1) * 2 + 14, tt as u64);
                let (mut a, mut b) = (vec![f32::NAN; tt * n], vec![f32::NAN; tt * n]);
                bin_product(tt, n, np, &lhs, &rhs, &mut a);
                bin_product_gemm(tt, n, np, &lhs, &rhs, &mut b);
                close(&a, &b, &format!("bin product, {tt} frames x {n} filters"));
            }
        }
    }

    #[test]
    fn temporal_convolutions_agree() {
        if !avx512() {
            return;
        }
        for (k, n) in [(128, 51), (32, 51), (3, 7), (64, 6)] {
            let tc = TemporalConv::new(conv(k, 1, n, k as u64));
            for t in [1usize, 15, 16, 17, 64, 65, 187] {
                let tp = t.next_multiple_of(16);
                let x = noise(tp + k - 1, t as u64);
                let (mut a, mut b) = (vec![0f32; tc.np * tp], vec![0f32; tc.np * tp]);
                temporal_gemm(t, k, &x, &tc, &mut a, tp);
                temporal_gemm_portable(t, k, &x, &tc, &mut b, tp);
                let valid = |o: &[f32]| -> Vec<f32> { (0..n).flat_map(|c| o[c * tp..c * tp + t].to_vec()).collect() };
                close(&valid(&a), &valid(&b), &format!("temporal, k {k}, {n} filters, {t} frames"));
            }
        }
    }

    #[test]
    fn inverse_maxima_agree() {
        if !avx512() {
            return;
        }
        // 38 and 67 bands (59 and 30 outputs, the network's), 96 (one output) and 95 (two).
        for w in [38, 67, 96, 95] {
            let fc = FreqConv::new(conv(7, w, 20, w as u64));
            for tt in [1, 5, 24] {
                let tn = tt * 20;
                let z = noise(NDFT * tn + 16, tn as u64);
                let (mut a, mut b, mut out) = (vec![0f32; tn], vec![0f32; tn], Vec::new());
                fc.inverse_max(&z, tn, &mut out, &mut a);
                fc.inverse_max_gemm(&z, tn, &mut out, &mut b);
                close(&a, &b, &format!("inverse max, {w} bands, {tt} frames"));
            }
        }
    }

    #[test]
    fn flipped_filters_give_the_minimum() {
        // A channel with a negative scale reads its min as -max of the negated filter: the same output.
        let c = conv(3, 1, 8, 9);
        assert!(c.bn.scale.iter().any(|&a| a < 0.0) && c.bn.scale.iter().any(|&a| a > 0.0));
        let flipped = c.clone().flip_negative();
        let x = noise(40, 3);
        for ch in 0..8 {
            let response = |w: &Conv| -> Vec<f32> { (0..38).map(|i| (0..3).map(|j| x[i + j] * w.weight[j * 8 + ch]).sum()).collect() };
            let (plain, neg) = (response(&c), response(&flipped));
            let want = (0..38).map(|i| c.bn.scale[ch] * (plain[i] + c.bias[ch]).max(0.0) + c.bn.shift[ch]).fold(f32::NEG_INFINITY, f32::max);
            let got = c.bn.pooled_one(&c.bias, ch, neg.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            assert!((want - got).abs() <= 1e-5, "channel {ch}: {want} vs {got}");
        }
        // The shipped networks have such channels, so the golden tests check the flip too.
        let m = net(TagSource::Msd);
        assert!(m.temporal.iter().any(|t| t.conv.bn.scale.iter().any(|&a| a < 0.0)) || m.timbral.iter().any(|t| t.bn.scale.iter().any(|&a| a < 0.0)));
    }
}
