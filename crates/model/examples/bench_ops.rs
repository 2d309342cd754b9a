//! Where a training step's time goes: forward and backward time of each operation of the default network
//! at its own sizes (batch 32, 128x128 tiles), on burn's CPU backend with autodiff, burn's implementation
//! next to this crate's where it has one (`Layers`), and the kernels CPU training runs (`fast::cpu_train`).
//! Prints a table; threads: RAYON_NUM_THREADS.
//!   cargo run -p soundalike-model --example bench_ops [BATCH=32] [REPS=3] [DEVICE=cpu]
//! DEVICE: as `--device` (wgpu or vulkan when built with those features; the CPU kernels are skipped there).
//! The last row times the whole network: a forward pass, and whole training steps (forward, backward, Adam).
//! Each row is the mean of REPS runs after one warm-up; a run is the operation on a fresh input, a sum of
//! its output (read back), and the backward pass to the input (or, for "weight grad only", to the weights).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use soundalike_model::fast::cpu_train as cpu_ops;
use soundalike_model::{optimizer, train_step, ArchConfig, SoundNet};
use soundalike_model::model::{batch_norm, conv3x3};
use soundalike_model::{Impl, Layers};

/// Mean forward and backward milliseconds of `op`, which returns (the tensor whose gradient is asked for,
/// the output).
fn time(name: &str, reps: usize, mut op: impl FnMut() -> (Tensor<4>, Tensor<4>)) {
    let (mut fwd, mut bwd) = (0.0, 0.0);
    for i in 0..=reps {
        let t0 = Instant::now();
        let (wrt, y) = op();
        let loss = y.sum();
        let _ = loss.clone().into_scalar::<f32>();
        let t1 = Instant::now();
        let grads = loss.backward();
        // Reading the gradient back waits for a GPU to finish the backward pass.
        let _ = wrt.grad(&grads).expect("gradient").sum().into_scalar::<f32>();
        let t2 = Instant::now();
        if i > 0 {
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
        }
    }
    let ms = |s: f64| s * 1e3 / reps as f64;
    println!("{name:<44} {:>8.1} {:>8.1} {:>8.1}", ms(fwd), ms(bwd), ms(fwd + bwd));
}

fn main() {
    soundalike_model::tune_allocator();
    let a: Vec<usize> = std::env::args().skip(1).take(2).map(|s| s.parse().expect("a number")).collect();
    let (b, reps) = (a.first().copied().unwrap_or(32), a.get(1).copied().unwrap_or(3));
    let device_name = std::env::args().nth(3).unwrap_or_else(|| "cpu".into());
    let dev = soundalike_model::device_from_name(&device_name).expect("device").autodiff();
    let on_cpu = soundalike_model::is_cpu(&dev);
    dev.seed(1);
    println!("{:<44} {:>8} {:>8} {:>8}", "operation (ms per batch)", "forward", "backward", "total");
    for (cin, cout, hw) in [(1usize, 16usize, 128usize), (16, 32, 64), (32, 64, 32), (64, 128, 16)] {
        let conv = Conv2dConfig::new([cin, cout], [3, 3]).with_padding(PaddingConfig2d::Same).with_bias(false).init(&dev);
        let bn = BatchNormConfig::new(cout).init(&dev);
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        let x_in = Tensor::<4>::random([b, cin, hw, hw], Distribution::Normal(0.0, 1.0), &dev);
        let x_out = Tensor::<4>::random([b, cout, hw, hw], Distribution::Normal(0.0, 1.0), &dev);
        for (label, imp) in [("burn", Impl::Burn), ("own", Impl::Own), ("split", Impl::Split)] {
            Layers { conv: imp, batch_norm: if imp == Impl::Split { Impl::Auto } else { imp } }.set();
            // The first layer's input is the spectrogram: only the weights need a gradient.
            time(&format!("conv {cin}->{cout} @{hw} {label}, weight grad only"), reps, || (conv.weight.val(), conv3x3(&conv, x_in.clone())));
            if cin > 1 {
                time(&format!("conv {cin}->{cout} @{hw} {label}, input + weight"), reps, || {
                    let x = x_in.clone().require_grad();
                    (x.clone(), conv3x3(&conv, x))
                });
            }
            if cin > 1 && imp == Impl::Burn {
                // The same convolution with the weights detached: what the weight gradient adds.
                let options = burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
                time(&format!("conv {cin}->{cout} @{hw} {label}, input grad only"), reps, || {
                    let x = x_in.clone().require_grad();
                    (x.clone(), burn::tensor::module::conv2d(x, conv.weight.val().detach(), None, options.clone()))
                });
            }
            if imp != Impl::Split {
                time(&format!("batch norm {cout} @{hw} {label}"), reps, || {
                    let x = x_out.clone().require_grad();
                    (x.clone(), batch_norm(&bn, x))
                });
            }
        }
        // On this device, the split convolution's output and gradients against burn's.
        let x = x_in.clone().require_grad();
        let r = Tensor::<4>::random([b, cout, hw, hw], Distribution::Normal(0.0, 1.0), &dev);
        let run = |imp| {
            Layers { conv: imp, batch_norm: Impl::Auto }.set();
            let y = conv3x3(&conv, x.clone());
            let g = y.clone().mul(r.clone()).sum().backward();
            (y, x.grad(&g).expect("input grad"), conv.weight.grad(&g).expect("weight grad"))
        };
        let ((y1, x1, w1), (y2, x2, w2)) = (run(Impl::Split), run(Impl::Burn));
        let diff = |a: Tensor<4>, b: Tensor<4>| {
            let scale = b.clone().abs().max().into_scalar::<f32>();
            a.sub(b).abs().max().into_scalar::<f32>() / scale.max(1e-12)
        };
        println!("  split vs burn, max difference / max value: output {:.1e}, input grad {:.1e}, weight grad {:.1e}", diff(y1, y2), diff(x1, x2), diff(w1, w2));
        Layers::default().set();
        // What CPU training runs: the block's kernels (cpu_ops), the convolution and then batch norm,
        // max-pool and ReLU in one operation.
        if on_cpu {
            time(&format!("conv {cin}->{cout} @{hw} kernel, weight grad only"), reps, || {
                (conv.weight.val(), cpu_ops::conv3x3(x_in.clone(), conv.weight.val()))
            });
            if cin > 1 {
                time(&format!("conv {cin}->{cout} @{hw} kernel, input + weight"), reps, || {
                    let x = x_in.clone().require_grad();
                    (x.clone(), cpu_ops::conv3x3(x, conv.weight.val()))
                });
            }
            time(&format!("bn + max-pool + relu {cout} @{hw} kernel"), reps, || {
                let x = x_out.clone().require_grad();
                let stats = cpu_ops::channel_stats(x.clone());
                (x.clone(), cpu_ops::bn_pool_relu(x, stats, bn.gamma.val(), bn.beta.val(), bn.epsilon as f32))
            });
        }
        time(&format!("max-pool 2x2 {cout} @{hw}"), reps, || {
            let x = x_out.clone().require_grad();
            (x.clone(), pool.forward(x))
        });
        time(&format!("relu {cout} @{hw}"), reps, || {
            let x = x_out.clone().require_grad();
            (x.clone(), burn::tensor::activation::relu(x))
        });
    }
    // The whole network at the same batch: forward alone (loss read back), then whole training steps
    // (forward, backward, Adam; each step's loss read back, which waits for the previous step).
    let k = 10;
    let x = Tensor::<4>::random([b, 1, 128, 128], Distribution::Normal(0.0, 1.0), &dev);
    let target = Tensor::<2>::ones([b, k], &dev).div_scalar(k as f64);
    let mut model = Some(SoundNet::new(&ArchConfig::default(), k, &dev));
    let mut optim = optimizer(1e-4);
    let ms = |f: &mut dyn FnMut()| {
        f();
        let t0 = Instant::now();
        (0..reps).for_each(|_| f());
        t0.elapsed().as_secs_f64() * 1e3 / reps as f64
    };
    let fwd = ms(&mut || {
        let _ = model.as_ref().expect("model").forward(x.clone(), None).sum().into_scalar::<f32>();
    });
    let step = ms(&mut || {
        let (m, _, _) = train_step(model.take().expect("model"), &mut optim, x.clone(), target.clone(), b as f32, 1e-3);
        model = Some(m);
    });
    println!("{:<44} {fwd:>8.1} {:>8.1} {step:>8.1}", "network: training step (backward incl. Adam)", step - fwd);
}
