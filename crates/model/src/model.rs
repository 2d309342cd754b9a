//! The CNN: conv blocks -> average pool (global, or over time keeping frequency bands) -> 128-d dense layer
//! (the embedding) -> classifier head.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use crate::fast::{Impl, Layers};

/// Architecture settings, saved in the model's config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchConfig {
    /// Output channels of each conv block (conv3x3 -> batch norm -> ReLU -> 2x2 max-pool).
    pub channels: Vec<usize>,
    /// Width of the dense layer = embedding size.
    pub embedding_dim: usize,
    /// Dropout before the classifier head.
    pub dropout: f64,
    /// How the last feature map becomes the dense layer's input (absent in configs written before it
    /// existed: global).
    #[serde(default, skip_serializing_if = "Pool::is_global")]
    pub pool: Pool,
    /// How many conv blocks, counted from the last, hand their pooled feature maps to the dense layer (each
    /// pooled as `pool` says, joined in block order). 1 (the default, and what configs written before it existed
    /// mean) pools the last block only; more gives the dense layer the earlier blocks' lower-level features too
    /// (multi-level aggregation, as in Lee et al. 2017).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub pool_blocks: usize,
    /// Song-level context beside each tile's pooled features at the dense layer (absent in configs written
    /// before it existed: none). See [`SongContext`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<SongContext>,
    /// Each value of the song vector (the mean of its tiles' embeddings) is raised to this power, its sign
    /// kept, before the vector is made unit length: power normalisation, which damps the few dimensions that
    /// would otherwise dominate a cosine. 1 (the default, and what configs written before it existed mean)
    /// leaves the mean as it is. Inference only: training never sees it.
    #[serde(default = "unit_power", skip_serializing_if = "is_unit_power")]
    pub song_power: f32,
    /// A linear map fitted on the training songs' vectors at the end of training (`train --whiten`), applied
    /// to every song vector after `song_power` and before it is made unit length again: centred on the
    /// training songs' mean and decorrelated, so that no few directions in which all songs vary together
    /// dominate the cosine. Absent (what configs written before it existed mean): the vector as it is.
    /// Inference only: training never sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub song_whitening: Option<soundalike_vectors::Whitening>,
}

/// What every tile of a song tells the dense layer besides its own pooled features: the song's spectral
/// balance and level, which per-tile normalisation (each tile's own maximum is its 0 dB) and the tile
/// average wash out. The mean and standard deviation of the log-mel (dB, unnormalised) of each of `bands`
/// groups of mel bands over all frames of the song, each standardised by the training songs' `mean` and
/// `std` (filled in by training) and clamped to +-[`CONTEXT_CLIP`]: `2 x bands` inputs. It is one pass of
/// sums over the spectrogram (no more memory than the tiles need), the same for every tile of a song, so
/// the embedding stays the dense layer's output averaged over the song's tiles.
///
/// With `source` [`ContextSource::Musicnn`] the inputs are instead the song's MSD_musicnn penultimate layer
/// (200-d, the mean over the patches `embed` tags: [`crate::musicnn::EMBED_PLAN`]), standardised the same way:
/// what a tagger trained on a million songs knows about the song, beside every tile. A musicnn context with
/// `bands` > 0 reads both: the tagger's values first, then the log-mel statistics of `bands` band groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SongContext {
    /// Groups of mel bands (as [`Pool::band`] splits rows) whose statistics the context holds; for a musicnn
    /// context, 0 (the tagger's values alone) or the band groups whose statistics follow them.
    pub bands: usize,
    /// What the context is made of (absent in configs written before it existed: the log-mel's statistics).
    #[serde(default, skip_serializing_if = "ContextSource::is_log_mel")]
    pub source: ContextSource,
    /// Training songs' mean of each raw statistic (the tagger's values, if any; then `2 x bands`: the band
    /// means, then the spreads).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Training songs' standard deviation of each raw statistic.
    #[serde(default)]
    pub std: Vec<f32>,
}

/// What a [`SongContext`] is made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextSource {
    /// The mean and spread of the log-mel's band groups.
    #[default]
    LogMel,
    /// MSD_musicnn's penultimate layer, averaged over the song's tagged patches (200 inputs).
    Musicnn,
    /// MSD_musicnn's, then MTT_musicnn's penultimate layer, averaged over the same patches (400 inputs).
    MusicnnBoth,
}

impl ContextSource {
    fn is_log_mel(&self) -> bool {
        *self == ContextSource::LogMel
    }
}

/// Standardised context values are clamped to this many standard deviations (a very quiet or clipped
/// master must not dominate the embedding).
pub const CONTEXT_CLIP: f32 = 4.0;

/// Smallest standard deviation a context statistic is divided by (dB), so a statistic that barely varies
/// over the training songs is not blown up.
pub const CONTEXT_MIN_STD: f32 = 0.5;

impl SongContext {
    /// Inputs it hands the dense layer.
    pub fn features(&self) -> usize {
        self.tagger_features() + 2 * self.bands
    }

    /// How many of the inputs are the tagger's (they come first): 0, 200 or 400.
    pub fn tagger_features(&self) -> usize {
        match self.source {
            ContextSource::LogMel => 0,
            ContextSource::Musicnn => crate::musicnn::PENULTIMATE,
            ContextSource::MusicnnBoth => 2 * crate::musicnn::PENULTIMATE,
        }
    }

    /// A log-mel context of `bands` band groups (statistics filled in by training).
    pub fn log_mel(bands: usize) -> SongContext {
        SongContext { bands, source: ContextSource::LogMel, mean: Vec::new(), std: Vec::new() }
    }

    /// A musicnn context, MSD_musicnn's penultimate or (`both`) MSD's and MTT's (statistics filled in by
    /// training).
    pub fn musicnn(both: bool) -> SongContext {
        let source = if both { ContextSource::MusicnnBoth } else { ContextSource::Musicnn };
        SongContext { bands: 0, source, mean: Vec::new(), std: Vec::new() }
    }

    /// A musicnn context ([`Self::musicnn`]) followed by the log-mel statistics of `bands` band groups.
    pub fn musicnn_and_log_mel(both: bool, bands: usize) -> SongContext {
        SongContext { bands, ..Self::musicnn(both) }
    }

    /// The smallest standard deviation input `i` is divided by: 1e-3 for the tagger's penultimate
    /// (batch-normalised units), [`CONTEXT_MIN_STD`] dB for the log-mel's statistics.
    fn min_std(&self, i: usize) -> f32 {
        if i < self.tagger_features() {
            1e-3
        } else {
            CONTEXT_MIN_STD
        }
    }

    /// Whether the context needs the tagger's penultimate layer (the song's audio through
    /// [`crate::musicnn`]), not only the log-mel.
    pub fn needs_tagger(&self) -> bool {
        self.source != ContextSource::LogMel
    }

    /// The raw inputs of a song: for a musicnn context the first [`Self::tagger_features`] values of `tagger`
    /// (the song's penultimate means, MSD's then MTT's, as [`crate::musicnn::tag_power_mel_with_penultimate`]
    /// gives them); then, for `bands` > 0, the statistics of `mel`. Without a usable `tagger` vector (none,
    /// too short, not finite) the tagger's part is the training songs' mean, which standardises to zeros: the
    /// song is embedded from its tiles (and statistics) alone, as context dropout trains for.
    pub fn raw(&self, mel: &soundalike_audio::LogMel, tagger: Option<&[f32]>) -> Vec<f32> {
        let d = self.tagger_features();
        let mut out = Vec::with_capacity(self.features());
        if d > 0 {
            match tagger.filter(|v| v.len() >= d && v[..d].iter().all(|x| x.is_finite())) {
                Some(v) => out.extend_from_slice(&v[..d]),
                None if self.mean.len() == self.features() => out.extend_from_slice(&self.mean[..d]),
                None => out.resize(d, 0.0),
            }
        }
        out.resize(self.features(), 0.0);
        if mel.n_frames == 0 || mel.n_mels == 0 {
            return out;
        }
        let stats = &mut out[d..];
        for r in 0..self.bands {
            let (r0, r1) = Pool::band(r, self.bands, mel.n_mels);
            let vals = &mel.data[r0 * mel.n_frames..r1 * mel.n_frames];
            let n = vals.len().max(1) as f64;
            let (s, s2) = vals.iter().fold((0f64, 0f64), |(s, s2), &v| (s + v as f64, s2 + (v as f64) * (v as f64)));
            let mean = s / n;
            stats[r] = mean as f32;
            stats[self.bands + r] = (s2 / n - mean * mean).max(0.0).sqrt() as f32;
        }
        out
    }

    /// The standardised context of a song (finite, within +-[`CONTEXT_CLIP`]; `tagger` as [`Self::raw`]).
    pub fn of(&self, mel: &soundalike_audio::LogMel, tagger: Option<&[f32]>) -> Vec<f32> {
        self.standardise(self.raw(mel, tagger))
    }

    /// Raw statistics ([`SongContext::raw`]) standardised by the training songs' and clamped.
    pub fn standardise(&self, mut v: Vec<f32>) -> Vec<f32> {
        for (i, x) in v.iter_mut().enumerate() {
            let (m, s) = (self.mean.get(i).copied().unwrap_or(0.0), self.std.get(i).copied().unwrap_or(1.0).max(self.min_std(i)));
            let z = (*x - m) / s;
            *x = if z.is_finite() { z.clamp(-CONTEXT_CLIP, CONTEXT_CLIP) } else { 0.0 };
        }
        v
    }

    /// Sets `mean` and `std` from the training songs' raw statistics ([`SongContext::raw`] of each).
    pub fn fit(&mut self, raws: &[Vec<f32>]) {
        let (d, n) = (self.features(), raws.len().max(1) as f64);
        self.mean = (0..d).map(|i| (raws.iter().map(|r| r[i] as f64).sum::<f64>() / n) as f32).collect();
        self.std = (0..d)
            .map(|i| {
                let m = self.mean[i] as f64;
                ((raws.iter().map(|r| (r[i] as f64 - m).powi(2)).sum::<f64>() / n).sqrt() as f32).max(self.min_std(i))
            })
            .collect();
    }
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn unit_power() -> f32 {
    1.0
}

fn is_unit_power(p: &f32) -> bool {
    *p == 1.0
}

/// How the last conv block's feature map `[channels, rows, frames]` is pooled into the dense layer's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Pool {
    /// Average over frequency and time: `channels` features. Where a sound sits in frequency is lost, except
    /// as far as the filters encode it.
    #[default]
    Global,
    /// Average over time only, in `rows` frequency bands (adaptive average over the map's rows):
    /// `channels x rows` features, so the dense layer sees which band holds what; with `std`, also each
    /// feature's standard deviation over its band and time (`2 x channels x rows` features), as log-mel
    /// statistics keep both the mean and the spread of every band.
    Time {
        /// Frequency bands kept (at most the last map's rows).
        rows: usize,
        /// Also the standard deviation.
        std: bool,
    },
}

/// Added to a variance before its square root (keeps the gradient finite where a feature is constant).
pub const POOL_STD_EPS: f32 = 1e-5;

impl Pool {
    fn is_global(&self) -> bool {
        *self == Pool::Global
    }

    /// Features the pool hands the dense layer for a last map of `channels` channels.
    pub fn features(&self, channels: usize) -> usize {
        match *self {
            Pool::Global => channels,
            Pool::Time { rows, std } => channels * rows * if std { 2 } else { 1 },
        }
    }

    /// Rows `[start, end)` of a map of `h` rows that pooled band `r` of `rows` averages (burn's adaptive
    /// average pool: floor of the start, ceiling of the end).
    pub fn band(r: usize, rows: usize, h: usize) -> (usize, usize) {
        (r * h / rows, ((r + 1) * h).div_ceil(rows))
    }

    /// `[batch, c, h, w]` -> `[batch, features]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match *self {
            Pool::Global => AdaptiveAvgPool2dConfig::new([1, 1]).init().forward(x).flatten(1, 3),
            Pool::Time { rows, std } => {
                let pool = AdaptiveAvgPool2dConfig::new([rows, 1]).init();
                let mean = pool.forward(x.clone());
                if !std {
                    return mean.flatten(1, 3);
                }
                let var = pool.forward(x.clone().mul(x)).sub(mean.clone().mul(mean.clone())).clamp_min(0.0);
                Tensor::cat(vec![mean, var.add_scalar(POOL_STD_EPS).sqrt()], 1).flatten(1, 3)
            }
        }
    }
}

/// Runs `x` through `blocks` (each by `forward`) and returns the dense layer's input: the maps of the blocks
/// from index `pool_from` on, each pooled by `pool`, joined in block order (`[batch, sum of features]`).
/// With `context` (`[batch, context features]`), it joins them last.
fn pooled_blocks<B>(blocks: &[B], forward: impl Fn(&B, Tensor<4>) -> Tensor<4>, pool: Pool, pool_from: usize, x: Tensor<4>, context: Option<Tensor<2>>) -> Tensor<2> {
    let mut x = x;
    let mut pooled = Vec::with_capacity(blocks.len().saturating_sub(pool_from) + 1);
    for (i, b) in blocks.iter().enumerate() {
        x = forward(b, x); // [batch, c, h/2, w/2]
        if i >= pool_from {
            pooled.push(pool.forward(x.clone())); // [batch, features of this block]
        }
    }
    pooled.extend(context);
    if pooled.len() == 1 {
        return pooled.remove(0);
    }
    Tensor::cat(pooled, 1)
}

impl Default for ArchConfig {
    /// Compact default: 4 blocks 16/32/64/128, dense 128. About 120 k parameters.
    fn default() -> Self {
        ArchConfig { channels: vec![16, 32, 64, 128], embedding_dim: 128, dropout: 0.3, pool: Pool::Global, pool_blocks: 1, context: None, song_power: 1.0, song_whitening: None }
    }
}

impl ArchConfig {
    /// The 2017 original: 4 conv layers 64/128/256/512, dense 128 (use with the 256x256 front-end preset).
    pub fn original_2017() -> Self {
        ArchConfig { channels: vec![64, 128, 256, 512], embedding_dim: 128, dropout: 0.5, pool: Pool::Global, pool_blocks: 1, context: None, song_power: 1.0, song_whitening: None }
    }

    /// Rejects a network that could not run on tiles of `n_mels x tile_frames`: every 2x2 max-pool halves
    /// both sides, so each must be at least `2^blocks` (the fused CPU path needs at least 2x2 at every
    /// block); no blocks, an empty layer, or a dropout outside [0, 1) are refused too. A config that passes
    /// never panics later for its shape.
    pub fn validate(&self, n_mels: usize, tile_frames: usize) -> crate::Result<()> {
        let bad = |m: String| Err(crate::ModelError::Invalid(m));
        if self.channels.is_empty() || self.channels.contains(&0) {
            return bad(format!("channels {:?}: need at least one block, none of width 0", self.channels));
        }
        if self.channels.len() > 12 {
            return bad(format!("{} conv blocks: at most 12", self.channels.len()));
        }
        if self.embedding_dim == 0 {
            return bad("embedding_dim must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} outside [0, 1)", self.dropout));
        }
        if self.song_power.is_nan() || self.song_power <= 0.0 || self.song_power > 1.0 {
            return bad(format!("song_power {} outside (0, 1]", self.song_power));
        }
        if let Some(w) = &self.song_whitening {
            w.validate(self.embedding_dim).map_err(|e| crate::ModelError::Invalid(format!("song_whitening: {e}")))?;
        }
        let min = 1usize << self.channels.len();
        if n_mels < min || tile_frames < min {
            return bad(format!(
                "tiles of {n_mels} mel bands x {tile_frames} frames are too small for {} conv blocks (each halves both sides): both must be at least {min}",
                self.channels.len()
            ));
        }
        if self.pool_blocks == 0 || self.pool_blocks > self.channels.len() {
            return bad(format!(
                "pooling the last {} blocks: the network has {} (need 1..={})",
                self.pool_blocks,
                self.channels.len(),
                self.channels.len()
            ));
        }
        // The earlier blocks' maps have more rows than the last one's: the last one bounds the bands.
        if let Pool::Time { rows, .. } = self.pool {
            let h = n_mels >> self.channels.len();
            if rows == 0 || rows > h {
                return bad(format!("pool over time in {rows} bands: the last feature map has {h} rows (need 1..={h})"));
            }
        }
        if let Some(c) = &self.context {
            if (c.source == ContextSource::LogMel && c.bands == 0) || c.bands > n_mels {
                return bad(format!("song context in {} bands: the spectrogram has {n_mels} (need 1..={n_mels})", c.bands));
            }
            let d = c.features();
            if !(c.mean.is_empty() && c.std.is_empty()) && (c.mean.len() != d || c.std.len() != d) {
                return bad(format!("song context: {} means and {} spreads for {d} statistics", c.mean.len(), c.std.len()));
            }
            if c.mean.iter().chain(&c.std).any(|v| !v.is_finite()) || c.std.iter().any(|&v| v <= 0.0) {
                return bad("song context: its statistics must be finite, the spreads positive".into());
            }
        }
        Ok(())
    }
}

/// conv3x3 -> batch norm -> ReLU -> max-pool 2x2.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    bn: BatchNorm,
    pool: MaxPool2d,
    relu: Relu,
}

impl ConvBlock {
    fn new(cin: usize, cout: usize, device: &Device) -> Self {
        ConvBlock {
            conv: Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(cout).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            relu: Relu::new(),
        }
    }

    /// ReLU after the max-pool: the same function (max commutes with ReLU, and so do their gradients) on a
    /// quarter of the values.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.bn.training.is_enabled() && x.device().is_autodiff() && self.conv.bias.is_none() && cpu_kernels(&x.device()) {
            return self.forward_cpu_kernels(x);
        }
        self.relu.forward(self.pool.forward(batch_norm(&self.bn, conv3x3(&self.conv, x))))
    }

    /// The training forward pass through [`crate::fast::cpu_train`]: the same function, gradients and
    /// running-statistics update as the tensor-operation path (tested), in fewer passes over memory.
    fn forward_cpu_kernels(&self, x: Tensor<4>) -> Tensor<4> {
        let y = crate::fast::cpu_train::conv3x3(x, self.conv.weight.val());
        let stats = crate::fast::cpu_train::channel_stats(y.clone());
        let c = stats.dims()[1];
        let [mean, var] = [0, 1].map(|i| stats.clone().slice([i..i + 1, 0..c]).reshape([c]));
        update_running_stats(&self.bn, mean, var);
        crate::fast::cpu_train::bn_pool_relu(y, stats, self.bn.gamma.val(), self.bn.beta.val(), self.bn.epsilon as f32)
    }
}

/// Whether a block runs [`crate::fast::cpu_train`]' kernels: on the CPU, unless [`Layers`] forces either layer
/// kind to one implementation.
fn cpu_kernels(device: &Device) -> bool {
    !Layers::current().forced() && crate::is_cpu(device)
}

/// burn's running-statistics update: `running = (1 - momentum) * running + momentum * batch`, with the
/// batch's mean and biased variance.
fn update_running_stats(bn: &BatchNorm, mean: Tensor<1>, var: Tensor<1>) {
    let m = bn.momentum;
    for (state, batch) in [(&bn.running_mean, mean), (&bn.running_var, var)] {
        let old = state.value_sync().to_device(&batch.device());
        state.update(old.mul_scalar(1.0 - m).add(batch.detach().mul_scalar(m)).detach());
    }
}

/// A 3x3 "same" convolution: burn's, as a matrix product ([`conv3x3_as_matmul`]) or split (burn's forward,
/// the matrix product's backward: [`crate::fast::gpu_conv`]), as [`Layers`] says; by default what measured
/// fastest (`bench_ops`, `bench_train`; figures in the README): on a GPU the split one in training and the
/// matrix product in inference; on the CPU (where training runs [`crate::fast::cpu_train`] instead) the matrix
/// product for a first layer, whose input needs no gradient, and burn's for the others.
pub fn conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let auto = || match (crate::is_cpu(&x.device()), x.device().is_autodiff()) {
        (false, true) => Impl::Split,
        (false, false) => Impl::Own,
        (true, _) if x.dims()[1] == 1 => Impl::Own,
        (true, _) => Impl::Burn,
    };
    let chosen = match Layers::current().conv {
        Impl::Auto => auto(),
        forced => forced,
    };
    match chosen {
        Impl::Own => conv3x3_as_matmul(conv, x),
        Impl::Split => conv3x3_split(conv, x),
        _ => conv.forward(x),
    }
}

/// [`crate::fast::gpu_conv::conv3x3_split`] with the layer's bias, if it has one.
fn conv3x3_split(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let y = crate::fast::gpu_conv::conv3x3_split(x, conv.weight.val());
    match &conv.bias {
        Some(bias) => y.add(bias.val().reshape([1, bias.dims()[0], 1, 1])),
        None => y,
    }
}

/// Batch norm, by burn or, in training, with two-stage batch statistics: burn 0.22 reduces each channel's
/// `batch * h * w` values as one row of a `[channels, batch * h * w]` copy, which on a GPU leaves a handful
/// of very long reductions (one per channel) and on the CPU costs a transposing copy each way; summing each
/// `[h * w]` plane first gives `batch * channels` short contiguous ones (faster on both, `bench_ops`). Same
/// function, same running-statistics update (momentum, biased variance).
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let training = x.device().is_autodiff() && bn.training.is_enabled();
    if !(training && Layers::current().batch_norm != Impl::Burn) {
        return bn.forward(x);
    }
    let [b, c, h, w] = x.dims();
    let n = (b * h * w) as f64;
    let planes = x.reshape([b, c, h * w]);
    let mean = planes.clone().sum_dim(2).sum_dim(0).div_scalar(n); // [1, c, 1]
    let centered = planes.sub(mean.clone());
    let variance = centered.clone().square().sum_dim(2).sum_dim(0).div_scalar(n); // biased, as burn's
    let scale = variance.clone().add_scalar(bn.epsilon).sqrt().recip().mul(bn.gamma.val().reshape([1, c, 1]));
    let y = centered.mul(scale).add(bn.beta.val().reshape([1, c, 1]));
    update_running_stats(bn, mean.reshape([c]), variance.reshape([c]));
    y.reshape([b, c, h, w])
}

/// A 3x3 "same" convolution of `x` `[batch, cin, h, w]` as one batched matrix product of the weights
/// `[cout, 9 * cin]` with the input's nine shifted copies `[batch, 9 * cin, h * w]`: the same function as
/// `conv.forward(x)`, differentiated by burn's matrix product (one GEMM for the weight gradient). burn 0.22's
/// generic convolution backward instead convolves the batch-and-channel-swapped input with the output
/// gradient as the "kernel", which is slow on a GPU. For the first layer the input is the spectrogram,
/// whose gradient is never needed, so its copies are built outside the autodiff graph.
fn conv3x3_as_matmul(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [b, cin, h, w] = x.dims();
    let weight = conv.weight.val(); // [cout, cin, 3, 3]
    let cout = weight.dims()[0];
    let padded = x.pad((1, 1, 1, 1), burn::tensor::ops::PadMode::Constant(0.0));
    let shifted = (0..9).map(|k| padded.clone().slice([0..b, 0..cin, k / 3..k / 3 + h, k % 3..k % 3 + w])).collect();
    let cols = Tensor::cat(shifted, 1).reshape([b, 9 * cin, h * w]); // row k * cin + c: channel c shifted by k
    let weight = weight.reshape([cout, cin, 9]).swap_dims(1, 2).reshape([1, cout, 9 * cin]); // same order
    let y = weight.matmul(cols).reshape([b, cout, h, w]);
    match &conv.bias {
        Some(bias) => y.add(bias.val().reshape([1, cout, 1, 1])),
        None => y,
    }
}

/// The genre/style classifier whose penultimate layer is the song embedding.
#[derive(Module, Debug)]
pub struct SoundNet {
    blocks: Vec<ConvBlock>,
    #[module(skip)]
    pool: Pool,
    /// The first block (index) whose pooled map reaches the dense layer.
    #[module(skip)]
    pool_from: usize,
    /// The song context the dense layer also reads, if any.
    #[module(skip)]
    context: Option<SongContext>,
    dense: Linear,
    relu: Relu,
    dropout: Dropout,
    head: Linear,
}

impl SoundNet {
    /// A freshly initialised network for `n_classes`.
    pub fn new(arch: &ArchConfig, n_classes: usize, device: &Device) -> Self {
        let mut cin = 1;
        let blocks = arch
            .channels
            .iter()
            .map(|&c| {
                let b = ConvBlock::new(cin, c, device);
                cin = c;
                b
            })
            .collect();
        let pool_from = arch.channels.len().saturating_sub(arch.pool_blocks.max(1));
        let features = arch.channels[pool_from..].iter().map(|&c| arch.pool.features(c)).sum::<usize>() + arch.context.as_ref().map_or(0, SongContext::features);
        SoundNet {
            blocks,
            pool: arch.pool,
            pool_from,
            context: arch.context.clone(),
            dense: LinearConfig::new(features, arch.embedding_dim).init(device),
            relu: Relu::new(),
            dropout: DropoutConfig::new(arch.dropout).init(),
            head: LinearConfig::new(arch.embedding_dim, n_classes.max(1)).init(device),
        }
    }

    /// Inputs of the dense (embedding) layer: the pooled features of every block that reaches it.
    pub fn dense_inputs(&self) -> usize {
        self.dense.weight.dims()[0]
    }

    /// Input `[batch, 1, n_mels, frames]` (normalised tiles) and, for a network with a song context, each
    /// tile's song's context `[batch, 2 x bands]` ([`SongContext::of`]) -> embedding `[batch, embedding_dim]`.
    pub fn forward_embedding(&self, x: Tensor<4>, context: Option<Tensor<2>>) -> Tensor<2> {
        assert_eq!(context.is_some(), self.context.is_some(), "a song context exactly when the network has one");
        let features = pooled_blocks(&self.blocks, ConvBlock::forward, self.pool, self.pool_from, x, context);
        self.relu.forward(self.dense.forward(features))
    }

    /// Logits `[batch, n_classes]`: the embedding, dropout, then the linear head (one code path).
    pub fn forward(&self, x: Tensor<4>, context: Option<Tensor<2>>) -> Tensor<2> {
        self.head_logits(self.forward_embedding(x, context))
    }

    /// The song context the network reads (standardised statistics of the whole spectrogram), if it has one.
    pub fn song_context(&self, mel: &soundalike_audio::LogMel, tagger: Option<&[f32]>) -> Option<Vec<f32>> {
        self.context.as_ref().map(|c| c.of(mel, tagger))
    }

    /// The classifier head on top of an embedding `[batch, embedding_dim]` (dropout is a no-op outside
    /// training), so inference gets embeddings and probabilities from one pass.
    pub fn head_logits(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.head.forward(self.dropout.forward(embedding))
    }
}

/// conv3x3 with batch norm folded into its weights and bias -> ReLU -> max-pool 2x2.
#[derive(Module, Debug)]
pub struct FoldedBlock {
    conv: Conv2d,
    pool: MaxPool2d,
    relu: Relu,
}

/// [`SoundNet`] for inference, with each batch norm folded into the convolution before it
/// (`w' = w * gamma / sqrt(var + eps)`, `b' = beta - mean * gamma / sqrt(var + eps)`): one pass over each
/// feature map fewer per block, same outputs up to float rounding.
#[derive(Module, Debug)]
pub struct FoldedNet {
    blocks: Vec<FoldedBlock>,
    #[module(skip)]
    pool: Pool,
    #[module(skip)]
    pool_from: usize,
    #[module(skip)]
    context: Option<SongContext>,
    dense: Linear,
    relu: Relu,
    head: Linear,
}

impl SoundNet {
    /// A copy whose batch-norm running statistics are recomputed for its own weights, as stochastic weight
    /// averaging does after averaging (Izmailov et al. 2018, "bn_update"): `batches` of tiles
    /// (`[batch, 1, n_mels, frames]`) go through the network in training mode (each block normalised by the
    /// batch's own statistics), and each block's running mean and (biased) variance become the mean of its
    /// batch statistics over every tile. An average of weights has activations of its own, which the average
    /// of its members' running statistics only approximates. `self` is unchanged; no batches leave the
    /// statistics as they are.
    pub fn refresh_batch_norm(&self, batches: impl IntoIterator<Item = Tensor<4>>) -> SoundNet {
        // valid() gives the copy running statistics of its own (clones of a module share them).
        let net = self.valid();
        let mut sums: Vec<Option<(Tensor<1>, Tensor<1>)>> = vec![None; net.blocks.len()];
        let mut tiles = 0usize;
        for mut x in batches {
            let b = x.dims()[0];
            for (block, sum) in net.blocks.iter().zip(sums.iter_mut()) {
                let y = conv3x3(&block.conv, x);
                let [_, c, h, w] = y.dims();
                let planes = y.reshape([b, c, h * w]);
                let mean = planes.clone().sum_dim(2).sum_dim(0).div_scalar((b * h * w) as f64); // [1, c, 1]
                let centered = planes.sub(mean.clone());
                let var = centered.clone().square().sum_dim(2).sum_dim(0).div_scalar((b * h * w) as f64);
                let bn = &block.bn;
                let scale = var.clone().add_scalar(bn.epsilon).sqrt().recip().mul(bn.gamma.val().reshape([1, c, 1]));
                let normed = centered.mul(scale).add(bn.beta.val().reshape([1, c, 1])).reshape([b, c, h, w]);
                x = block.relu.forward(block.pool.forward(normed));
                // Weighted by the batch's tiles, so a short last batch counts for what it holds.
                let (m, v) = (mean.reshape([c]).mul_scalar(b as f64), var.reshape([c]).mul_scalar(b as f64));
                *sum = Some(match sum.take() {
                    None => (m, v),
                    Some((sm, sv)) => (sm.add(m), sv.add(v)),
                });
            }
            tiles += b;
        }
        for (block, sum) in net.blocks.iter().zip(sums) {
            if let Some((m, v)) = sum {
                block.bn.running_mean.update(m.div_scalar(tiles as f64));
                block.bn.running_var.update(v.div_scalar(tiles as f64));
                // An update is this thread's until synced; readers of value() (folding, saving) see it then.
                let _ = (block.bn.running_mean.value_sync(), block.bn.running_var.value_sync());
            }
        }
        net
    }

    /// The inference network with batch norms folded into the convolutions (uses the running statistics).
    pub fn fold_batch_norm(&self) -> FoldedNet {
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                let bn = &b.bn;
                let scale = bn.gamma.val().div(bn.running_var.value().add_scalar(bn.epsilon).sqrt());
                let [cout, ..] = b.conv.weight.val().dims();
                let w = b.conv.weight.val().mul(scale.clone().reshape([cout, 1, 1, 1]));
                // BN(conv(x) + b0) = conv(x) * scale + beta - (mean - b0) * scale.
                let shift = match &b.conv.bias {
                    Some(b0) => bn.running_mean.value().sub(b0.val()),
                    None => bn.running_mean.value(),
                };
                let bias = bn.beta.val().sub(shift.mul(scale));
                let mut conv = b.conv.clone();
                conv.weight = Param::from_tensor(w);
                conv.bias = Some(Param::from_tensor(bias));
                FoldedBlock { conv, pool: b.pool.clone(), relu: Relu::new() }
            })
            .collect();
        FoldedNet { blocks, pool: self.pool, pool_from: self.pool_from, context: self.context.clone(), dense: self.dense.clone(), relu: Relu::new(), head: self.head.clone() }
    }
}

impl FoldedNet {
    /// Input `[batch, 1, n_mels, frames]` (and the song context) -> embedding `[batch, embedding_dim]`, as
    /// [`SoundNet::forward_embedding`].
    pub fn forward_embedding(&self, x: Tensor<4>, context: Option<Tensor<2>>) -> Tensor<2> {
        let block = |b: &FoldedBlock, x| b.pool.forward(b.relu.forward(conv3x3(&b.conv, x)));
        let features = pooled_blocks(&self.blocks, block, self.pool, self.pool_from, x, context);
        self.relu.forward(self.dense.forward(features))
    }

    /// Logits from an embedding, as [`SoundNet::head_logits`] outside training.
    pub fn head_logits(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.head.forward(embedding)
    }

    /// How the feature maps are pooled, and the first block whose pooled map reaches the dense layer.
    pub(crate) fn pool(&self) -> (Pool, usize) {
        (self.pool, self.pool_from)
    }

    /// The song context the network reads, if it has one (as [`SoundNet::song_context`]).
    pub fn song_context(&self, mel: &soundalike_audio::LogMel, tagger: Option<&[f32]>) -> Option<Vec<f32>> {
        self.context.as_ref().map(|c| c.of(mel, tagger))
    }

    /// Each block's folded convolution: weight `[cout, cin, 3, 3]` and bias `[cout]`.
    pub(crate) fn conv_weights(&self) -> Vec<(Tensor<4>, Tensor<1>)> {
        self.blocks
            .iter()
            .map(|b| {
                let w = b.conv.weight.val();
                let bias = b.conv.bias.as_ref().map(|p| p.val()).unwrap_or_else(|| Tensor::zeros([w.dims()[0]], &w.device()));
                (w, bias)
            })
            .collect()
    }

    /// The dense (embedding) layer and the head: weight `[d_in, d_out]` and bias `[d_out]` each.
    pub(crate) fn dense_weights(&self) -> ((Tensor<2>, Tensor<1>), (Tensor<2>, Tensor<1>)) {
        let lin = |l: &Linear| {
            let w = l.weight.val();
            let b = l.bias.as_ref().map(|p| p.val()).unwrap_or_else(|| Tensor::zeros([w.dims()[1]], &w.device()));
            (w, b)
        };
        (lin(&self.dense), lin(&self.head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        a.sub(b).abs().max().into_scalar::<f32>()
    }

    /// The matrix-product convolution and the split one (burn's forward, matrix-product backward) are
    /// burn's convolution: same outputs, same weight, bias and input gradients (one and several input
    /// channels, odd sizes, with and without bias).
    #[test]
    fn conv_as_matmul_and_split_equal_conv2d() {
        let dev = Device::flex().autodiff();
        for (cin, bias, h, w) in [(1, false, 16, 16), (1, true, 7, 12), (3, false, 9, 6), (4, true, 5, 11)] {
            for formulation in [conv3x3_as_matmul as fn(&Conv2d, Tensor<4>) -> Tensor<4>, conv3x3_split] {
                let conv: Conv2d = Conv2dConfig::new([cin, 5], [3, 3]).with_padding(PaddingConfig2d::Same).with_bias(bias).init(&dev);
                let x = Tensor::<4>::random([3, cin, h, w], burn::tensor::Distribution::Normal(0.0, 1.0), &dev).require_grad();
                let (ours, theirs) = (formulation(&conv, x.clone()), conv.forward(x.clone()));
                assert_eq!(ours.dims(), theirs.dims());
                assert!(max_abs_diff(ours.clone(), theirs.clone()) < 1e-5);
                // A loss that weights every output differently, so each gradient entry is tested.
                let r = Tensor::<4>::random(ours.dims(), burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
                let (g1, g2) = (ours.mul(r.clone()).sum().backward(), theirs.mul(r).sum().backward());
                let (w1, w2) = (conv.weight.grad(&g1).expect("weight grad"), conv.weight.grad(&g2).expect("weight grad"));
                assert!(max_abs_diff(w1.clone(), w2) < 1e-3 * w1.abs().max().into_scalar::<f32>().max(1.0));
                let (x1, x2) = (x.grad(&g1).expect("input grad"), x.grad(&g2).expect("input grad"));
                assert!(max_abs_diff(x1, x2) < 1e-4);
                if let Some(b) = &conv.bias {
                    assert!(max_abs_diff(b.grad(&g1).expect("bias grad"), b.grad(&g2).expect("bias grad")) < 1e-3);
                }
            }
        }
    }

    /// Training-mode batch norm with two-stage statistics is burn's: same output, same gradients (input,
    /// gamma, beta), same running statistics afterwards.
    #[test]
    fn two_stage_batch_norm_equals_burn() {
        let dev = Device::flex().autodiff();
        dev.seed(5);
        let (ours, theirs) = (BatchNormConfig::new(4).init(&dev), BatchNormConfig::new(4).init(&dev));
        // Distinct gamma and beta, so their gradients and the affine step are tested.
        let gamma = Tensor::<1>::from_floats([0.5, 1.5, -1.0, 2.0], &dev);
        let beta = Tensor::<1>::from_floats([0.1, -0.2, 0.3, 0.0], &dev);
        let (ours, theirs) = [ours, theirs].map(|mut bn| {
            bn.gamma = Param::from_tensor(gamma.clone());
            bn.beta = Param::from_tensor(beta.clone());
            bn
        }).into();
        let x = Tensor::<4>::random([3, 4, 5, 7], burn::tensor::Distribution::Normal(1.0, 2.0), &dev).require_grad();
        Layers { conv: Impl::Auto, batch_norm: Impl::Own }.set();
        let y1 = batch_norm(&ours, x.clone());
        Layers::default().set();
        let y2 = theirs.forward(x.clone()); // burn's own batch norm
        assert!(theirs.training.is_enabled() && x.device().is_autodiff(), "burn's training path is the reference");
        assert!(max_abs_diff(y1.clone(), y2.clone()) < 1e-4);
        let r = Tensor::<4>::random(y1.dims(), burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let (g1, g2) = (y1.mul(r.clone()).sum().backward(), y2.mul(r).sum().backward());
        assert!(max_abs_diff(x.grad(&g1).unwrap(), x.grad(&g2).unwrap()) < 1e-4);
        assert!(max_abs_diff(ours.gamma.grad(&g1).unwrap(), theirs.gamma.grad(&g2).unwrap()) < 1e-3);
        assert!(max_abs_diff(ours.beta.grad(&g1).unwrap(), theirs.beta.grad(&g2).unwrap()) < 1e-3);
        assert!(max_abs_diff(ours.running_mean.value_sync(), theirs.running_mean.value_sync()) < 1e-5);
        assert!(max_abs_diff(ours.running_var.value_sync(), theirs.running_var.value_sync()) < 1e-5);
        // The statistics moved away from their initial values (0 and 1), so the comparison means something.
        assert!(ours.running_mean.value_sync().abs().max().into_scalar::<f32>() > 0.05);
    }

    /// A block through the CPU kernels ([`crate::fast::cpu_train`]) is burn's conv -> batch norm -> max-pool -> ReLU
    /// in training: same output, same input, weight, gamma and beta gradients, same running statistics;
    /// even and odd sizes (an odd last row and column are dropped by the pool but count in the statistics),
    /// one and several input channels.
    #[test]
    fn cpu_kernel_block_equals_burn() {
        let dev = Device::flex().autodiff();
        for (cin, cout, h, w) in [(1, 4, 12, 10), (3, 5, 9, 11), (8, 6, 32, 40)] {
            // Two blocks with the same parameters and their own running statistics. Distinct gamma (one
            // negative, which turns the pool's argmax around) and beta from -2 to 0.5, so that ReLU zeroes
            // most outputs of some channels and few of others.
            let weight = Tensor::<4>::random([cout, cin, 3, 3], burn::tensor::Distribution::Normal(0.0, 0.5), &dev);
            let gamma: Vec<f32> = (0..cout).map(|i| if i == 1 { -0.8 } else { 0.5 + i as f32 / cout as f32 }).collect();
            let beta: Vec<f32> = (0..cout).map(|i| -2.0 + 2.5 * i as f32 / (cout - 1) as f32).collect();
            let make = || {
                let mut block = ConvBlock::new(cin, cout, &dev);
                block.conv.weight = Param::from_tensor(weight.clone());
                block.bn.gamma = Param::from_tensor(Tensor::from_floats(gamma.as_slice(), &dev));
                block.bn.beta = Param::from_tensor(Tensor::from_floats(beta.as_slice(), &dev));
                block
            };
            let (ours, theirs) = (make(), make());
            let x = Tensor::<4>::random([3, cin, h, w], burn::tensor::Distribution::Normal(0.5, 2.0), &dev).require_grad();
            let y1 = ours.forward_cpu_kernels(x.clone());
            let y2 = theirs.relu.forward(theirs.pool.forward(theirs.bn.forward(theirs.conv.forward(x.clone()))));
            assert_eq!(y1.dims(), y2.dims());
            assert!(max_abs_diff(y1.clone(), y2.clone()) < 1e-4);
            // Some outputs are zeroed by the ReLU and some are not, so both cases are exercised.
            let alive = y2.clone().greater_elem(0.0).float().mean().into_scalar::<f32>();
            assert!(alive > 0.2 && alive < 0.95, "fraction alive {alive}");
            let r = Tensor::<4>::random(y1.dims(), burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
            let (g1, g2) = (y1.mul(r.clone()).sum().backward(), y2.mul(r).sum().backward());
            let close = |a: Tensor<4>, b: Tensor<4>| {
                let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
                assert!(max_abs_diff(a, b) < 1e-4 * scale);
            };
            close(x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
            close(ours.conv.weight.grad(&g1).unwrap(), theirs.conv.weight.grad(&g2).unwrap());
            let as4 = |t: Tensor<1>| t.reshape([1, 1, 1, cout]);
            close(as4(ours.bn.gamma.grad(&g1).unwrap()), as4(theirs.bn.gamma.grad(&g2).unwrap()));
            close(as4(ours.bn.beta.grad(&g1).unwrap()), as4(theirs.bn.beta.grad(&g2).unwrap()));
            assert!(max_abs_diff(ours.bn.running_mean.value_sync(), theirs.bn.running_mean.value_sync()) < 1e-5);
            assert!(max_abs_diff(ours.bn.running_var.value_sync(), theirs.bn.running_var.value_sync()) < 1e-5);
            assert!(ours.bn.running_mean.value_sync().abs().max().into_scalar::<f32>() > 0.01);
        }
    }
}
