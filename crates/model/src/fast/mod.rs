//! The speed paths: where the network's layers run on something faster than burn's generic operators,
//! and the one switch ([`Layers`]) that can force a layer kind to one implementation.
//!
//! - [`cpu_train`]: a conv block's training step on the CPU (convolution, batch norm, max-pool, ReLU) as burn
//!   operations with their own backward passes. Why: burn's CPU backend runs a block as separate generic
//!   operators that convert layouts and sweep the full feature map many times in each direction.
//! - [`cpu_infer`]: the fused CPU inference path ([`cpu_infer::CpuNet`]) that `embed`, `query --file` and
//!   `serve` run: each tile through the whole folded network on one thread, in cache-sized strips. Why:
//!   inference needs no autodiff graph, so whole layers can be fused.
//! - [`gpu_conv`]: the convolution GPU training runs (burn's forward, a matrix-product backward). Why:
//!   burn's own convolution backward is the slow half on a GPU.
//! - [`kernels`]: the plain-slice kernels (im2col, GEMM strips, batch norm + pool + ReLU) both CPU paths use.
//!
//! Each is tested equal to burn's layers (outputs, gradients, running statistics); README "Training and
//! inference speed" and "GPU" hold the measurements.

pub mod cpu_infer;
pub mod cpu_train;
pub mod gpu_conv;
pub mod kernels;

use std::sync::atomic::{AtomicU8, Ordering};

/// Which implementation a layer kind runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Impl {
    /// The measured best for the layer and device (the default): on the CPU in training, whole blocks
    /// through [`cpu_train`]; elsewhere the network's own batch norm, and per-device convolutions (see
    /// [`crate::model::conv3x3`]).
    #[default]
    Auto,
    /// burn's own operation.
    Burn,
    /// The network's formulation (matrix-product convolution, two-stage batch statistics).
    Own,
    /// Convolutions only: burn's forward pass with a matrix-product backward pass ([`gpu_conv`]).
    Split,
}

impl Impl {
    fn from_u8(v: u8) -> Impl {
        [Impl::Auto, Impl::Burn, Impl::Own, Impl::Split].into_iter().find(|i| *i as u8 == v).unwrap_or_default()
    }
}

/// How the network's layers run, for this process: [`Layers::default`] lets each layer pick ([`Impl::Auto`]);
/// benchmarks and tests force one implementation per layer kind with [`Layers::set`] to compare them
/// (`bench_train` reads `SOUNDALIKE_CONV` / `SOUNDALIKE_BN` into one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layers {
    /// The 3x3 convolutions.
    pub conv: Impl,
    /// The batch norms.
    pub batch_norm: Impl,
}

static CONV: AtomicU8 = AtomicU8::new(Impl::Auto as u8);
static BATCH_NORM: AtomicU8 = AtomicU8::new(Impl::Auto as u8);

impl Layers {
    /// Makes these the implementations from now on, in this process.
    pub fn set(self) {
        CONV.store(self.conv as u8, Ordering::Relaxed);
        BATCH_NORM.store(self.batch_norm as u8, Ordering::Relaxed);
    }

    /// The implementations in force.
    pub fn current() -> Layers {
        Layers { conv: Impl::from_u8(CONV.load(Ordering::Relaxed)), batch_norm: Impl::from_u8(BATCH_NORM.load(Ordering::Relaxed)) }
    }

    /// Whether either layer kind is forced (then CPU training runs layer by layer, not [`cpu_train`]'s blocks).
    pub fn forced(self) -> bool {
        self.conv != Impl::Auto || self.batch_norm != Impl::Auto
    }
}
