//! The CNN: conv blocks -> global average pool -> 128-d dense layer (the embedding) -> classifier head.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

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
}

impl Default for ArchConfig {
    /// Compact default: 4 blocks 16/32/64/128, dense 128. About 120 k parameters.
    fn default() -> Self {
        ArchConfig { channels: vec![16, 32, 64, 128], embedding_dim: 128, dropout: 0.3 }
    }
}

impl ArchConfig {
    /// The 2017 original: 4 conv layers 64/128/256/512, dense 128 (use with the 256x256 front-end preset).
    pub fn original_2017() -> Self {
        ArchConfig { channels: vec![64, 128, 256, 512], embedding_dim: 128, dropout: 0.5 }
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

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(self.relu.forward(self.bn.forward(self.conv.forward(x))))
    }
}

/// The genre/style classifier whose penultimate layer is the song embedding.
#[derive(Module, Debug)]
pub struct SoundNet {
    blocks: Vec<ConvBlock>,
    gap: AdaptiveAvgPool2d,
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
        SoundNet {
            blocks,
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dense: LinearConfig::new(cin, arch.embedding_dim).init(device),
            relu: Relu::new(),
            dropout: DropoutConfig::new(arch.dropout).init(),
            head: LinearConfig::new(arch.embedding_dim, n_classes.max(1)).init(device),
        }
    }

    /// Input `[batch, 1, n_mels, frames]` (normalised tiles) -> embedding `[batch, embedding_dim]`.
    pub fn forward_embedding(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for b in &self.blocks {
            x = b.forward(x); // [batch, c, h/2, w/2]
        }
        let x = self.gap.forward(x); // [batch, c, 1, 1]
        let x: Tensor<2> = x.flatten(1, 3); // [batch, c]
        self.relu.forward(self.dense.forward(x))
    }

    /// Logits `[batch, n_classes]`: the embedding, dropout, then the linear head (one code path).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head_logits(self.forward_embedding(x))
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
    gap: AdaptiveAvgPool2d,
    dense: Linear,
    relu: Relu,
    head: Linear,
}

impl SoundNet {
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
        FoldedNet { blocks, gap: self.gap.clone(), dense: self.dense.clone(), relu: Relu::new(), head: self.head.clone() }
    }
}

impl FoldedNet {
    /// Input `[batch, 1, n_mels, frames]` -> embedding `[batch, embedding_dim]`, as [`SoundNet::forward_embedding`].
    pub fn forward_embedding(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for b in &self.blocks {
            x = b.pool.forward(b.relu.forward(b.conv.forward(x)));
        }
        let x: Tensor<2> = self.gap.forward(x).flatten(1, 3);
        self.relu.forward(self.dense.forward(x))
    }

    /// Logits from an embedding, as [`SoundNet::head_logits`] outside training.
    pub fn head_logits(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.head.forward(embedding)
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
