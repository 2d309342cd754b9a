//! A 3x3 "same" convolution (no bias) with burn's forward pass and a matrix-product backward pass, as one
//! burn operation on any backend (burn's backend-extension API, like [`crate::fast::cpu_train`]).
//!
//! On a GPU (`bench_ops ... wgpu`), burn 0.22's convolution is fast forward and slow backward (it convolves
//! with the output gradient as the kernel), while the convolution as a matrix product with the input's nine
//! shifted copies ([`crate::model`]) is the reverse. This operation takes the fast half of each: the input gradient
//! is burn's forward convolution of the output gradient with the weights flipped and transposed, the weight
//! gradient one batched matrix product of the output gradient with the shifted copies, summed over the batch.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Flex, TensorMetadata};
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Shape, Slice};

/// The operation, for [`Tensor`]s on burn's CPU backend and (with the `wgpu` feature) its GPU backends.
#[backend_extension(Flex, Cube: cfg(feature = "wgpu"), Autodiff)]
pub trait SplitConvOps: Backend {
    /// 3x3 "same" convolution without bias: `x` `[batch, cin, h, w]`, `weight` `[cout, cin, 3, 3]`. Without
    /// autodiff, burn's convolution.
    fn conv3x3_split(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, same3x3())
    }
}

impl SplitConvOps for Flex {}

#[cfg(feature = "wgpu")]
impl SplitConvOps for burn::backend::Cube {}

fn same3x3() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

#[derive(Debug)]
struct SplitConvBackward;

impl<B: Backend> Backward<B, 2> for SplitConvBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let [b, cin, h, w] = x.shape().dims();
        let cout = weight.shape().dims::<4>()[0];
        if let Some(node) = node_x {
            // dx[i, p, q] = sum over o, ky, kx of w[o, i, 2 - ky, 2 - kx] * dy[o, p + ky - 1, q + kx - 1].
            let flipped = B::float_flip(B::float_swap_dims(weight, 0, 1), &[2, 3]);
            grads.register::<B>(node.id, B::conv2d(dy.clone(), flipped, None, same3x3()));
        }
        if let Some(node) = node_w {
            let padded = B::float_pad(x, &[(0, 0), (0, 0), (1, 1), (1, 1)], PadMode::Constant(0.0));
            let shifted: Vec<_> = (0..9)
                .map(|k| {
                    let (ky, kx) = (k / 3, k % 3);
                    B::float_slice(padded.clone(), &[Slice::from(0..b), Slice::from(0..cin), Slice::from(ky..ky + h), Slice::from(kx..kx + w)])
                })
                .collect();
            // Row k * cin + i of the columns: channel i shifted by (ky, kx) = (k / 3, k % 3).
            let cols = B::float_reshape(B::float_cat(shifted, 1), Shape::new([b, 9 * cin, h * w]));
            let dy = B::float_reshape(dy, Shape::new([b, cout, h * w]));
            let dw = B::float_sum_dim(B::float_matmul(dy, B::float_swap_dims(cols, 1, 2)), 0); // [1, cout, 9 * cin]
            let dw = B::float_swap_dims(B::float_reshape(dw, Shape::new([cout, 9, cin])), 1, 2); // [cout, cin, 9]
            grads.register::<B>(node.id, B::float_reshape(dw, Shape::new([cout, cin, 3, 3])));
        }
    }
}

impl<B: Backend + SplitConvOps, C: CheckpointStrategy> SplitConvOps for Autodiff<B, C> {
    fn conv3x3_split(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match SplitConvBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                let y = B::conv2d(x.clone(), weight.clone(), None, same3x3());
                prep.finish((x, weight), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d(x.into_primitive(), weight.into_primitive(), None, same3x3())),
        }
    }
}

/// [`SplitConvOps::conv3x3_split`] on tensors.
pub fn conv3x3_split(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as SplitConvOps>::conv3x3_split(x.into_dispatch(), weight.into_dispatch()))
}
