//! A conv block's training operations on the CPU as burn operations with their own backward passes
//! (burn's backend-extension API): [`kernels`](crate::fast::kernels) on burn-flex tensors.
//!
//! burn-flex runs a block as separate generic operators: the convolution converts layouts and builds an
//! im2col buffer for the whole batch around each GEMM, its input gradient is a second convolution, and
//! batch norm, max-pool (with indices) and ReLU each make several passes over the full-size feature map in
//! both directions (`bench_ops` shows where a step's time goes). Here the convolution runs per sample in cache-sized strips, and batch norm,
//! pool and ReLU are one pass forward and two backward (one over the pooled outputs, one writing the input
//! gradient). Only burn's CPU backend (with autodiff) has these operations; [`crate::model`] calls them
//! there and nowhere else.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Flex};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

use crate::fast::kernels::{self, BnDims, ConvDims};

/// The operations, for [`Tensor`]s on burn's CPU backend with or without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait BlockOps: Backend {
    /// 3x3 "same" convolution without bias: `x` `[batch, cin, h, w]`, `weight` `[cout, cin, 3, 3]`.
    fn conv3x3_nobias(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Per-channel batch mean and biased variance of `x` `[batch, c, h, w]`, as `[2, c]`; no gradient.
    fn channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `relu(maxpool2x2(batch_norm(x)))` in training mode, with `stats` from [`BlockOps::channel_stats`] of
    /// the same `x` (the gradient accounts for the statistics depending on `x`).
    fn bn_pool_relu(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
}

/// A tensor's values, row-major (copied only if it is strided).
#[allow(clippy::expect_used, reason = "a float tensor of this backend always converts to f32 values")]
fn values(t: &FloatTensor<Flex>) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.clone().into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 tensor")),
    }
}

fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FloatTensor<Flex> {
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape.into()))
}

fn dims<const D: usize>(t: &FloatTensor<Flex>) -> [usize; D] {
    use burn::backend::TensorMetadata;
    assert_eq!(t.dtype(), DType::F32, "the CPU block operations are f32");
    t.shape().dims()
}

fn conv_dims(x: &FloatTensor<Flex>, weight: &FloatTensor<Flex>) -> ConvDims {
    let ([batch, cin, h, w], [cout, wcin, kh, kw]) = (dims(x), dims(weight));
    assert_eq!((wcin, kh, kw), (cin, 3, 3), "conv3x3: weight [cout, cin, 3, 3] for input [batch, cin, h, w]");
    ConvDims { batch, cin, cout, h, w }
}

impl BlockOps for Flex {
    fn conv3x3_nobias(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let d = conv_dims(&x, &weight);
        tensor(kernels::conv3x3_forward(&values(&x), &values(&weight), d), [d.batch, d.cout, d.h, d.w])
    }

    fn channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let [b, c, h, w] = dims(&x);
        tensor(kernels::channel_stats(&values(&x), b, c, h * w), [2, c])
    }

    fn bn_pool_relu(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        bn_pool_relu_forward(&x, &stats, &gamma, &beta, eps).0
    }
}

/// The output of [`BlockOps::bn_pool_relu`] and each pooled output's argmax (for the backward pass).
fn bn_pool_relu_forward(
    x: &FloatTensor<Flex>,
    stats: &FloatTensor<Flex>,
    gamma: &FloatTensor<Flex>,
    beta: &FloatTensor<Flex>,
    eps: f32,
) -> (FloatTensor<Flex>, Vec<u8>) {
    let [batch, c, h, w] = dims(x);
    let d = BnDims { batch, c, h, w };
    let (y, argmax) = kernels::bn_pool_relu_forward(&values(x), &values(stats), &values(gamma), &values(beta), eps, d);
    (tensor(y, [batch, c, h / 2, w / 2]), argmax)
}

#[derive(Debug)]
struct Conv3x3Backward;

impl Backward<Flex, 2> for Conv3x3Backward {
    type State = (FloatTensor<Flex>, FloatTensor<Flex>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, weight) = ops.state;
        let d = conv_dims(&x, &weight);
        let (dx, dw) = kernels::conv3x3_backward(&values(&x), &values(&weight), &values(&dy), d, node_x.is_some(), node_w.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, tensor(dx, [d.batch, d.cin, d.h, d.w]));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, tensor(dw, [d.cout, d.cin, 3, 3]));
        }
    }
}

/// What the batch-norm/pool/ReLU backward pass needs: the input, the statistics, gamma, epsilon and the
/// argmax of each pooled output.
#[derive(Clone, Debug)]
struct BnState {
    x: FloatTensor<Flex>,
    stats: FloatTensor<Flex>,
    gamma: FloatTensor<Flex>,
    eps: f32,
    argmax: Arc<Vec<u8>>,
}

#[derive(Debug)]
struct BnPoolReluBackward;

impl Backward<Flex, 4> for BnPoolReluBackward {
    type State = BnState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, _, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let [batch, c, h, w] = dims(&s.x);
        let d = BnDims { batch, c, h, w };
        let (dx, dgamma, dbeta) =
            kernels::bn_pool_relu_backward(&values(&s.x), &values(&s.stats), &values(&s.gamma), s.eps, &s.argmax, &values(&dy), d);
        for (node, grad, shape) in [(node_x, dx, vec![batch, c, h, w]), (node_gamma, dgamma, vec![c]), (node_beta, dbeta, vec![c])] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(grad, shape));
            }
        }
    }
}

impl<C: CheckpointStrategy> BlockOps for Autodiff<Flex, C> {
    fn conv3x3_nobias(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match Conv3x3Backward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                let y = Flex::conv3x3_nobias(x.clone(), weight.clone());
                prep.finish((x, weight), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv3x3_nobias(x.into_primitive(), weight.into_primitive())),
        }
    }

    fn channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(Flex::channel_stats(x.into_primitive()))
    }

    fn bn_pool_relu(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), stats.node(), gamma.node(), beta.node()];
        let (x, stats, gamma) = (x.into_primitive(), stats.into_primitive(), gamma.into_primitive());
        let (y, argmax) = bn_pool_relu_forward(&x, &stats, &gamma, beta.primitive(), eps);
        match BnPoolReluBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(BnState { x, stats, gamma, eps, argmax: Arc::new(argmax) }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// [`BlockOps::conv3x3_nobias`] on tensors.
pub fn conv3x3(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as BlockOps>::conv3x3_nobias(x.into_dispatch(), weight.into_dispatch()))
}

/// [`BlockOps::channel_stats`] on a tensor: `[2, c]` (means, then biased variances).
pub fn channel_stats(x: Tensor<4>) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as BlockOps>::channel_stats(x.into_dispatch()))
}

/// [`BlockOps::bn_pool_relu`] on tensors.
pub fn bn_pool_relu(x: Tensor<4>, stats: Tensor<2>, gamma: Tensor<1>, beta: Tensor<1>, eps: f32) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as BlockOps>::bn_pool_relu(
        x.into_dispatch(),
        stats.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
    ))
}
