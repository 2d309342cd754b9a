//! Training and inference throughput of the default network in burn (on the CPU, flex, by default; on a GPU
//! with `wgpu` when built with `--features wgpu`), on tiles read from a file, for scripts/bench/bench_train.sh
//! (which runs PyTorch on the same tiles in the same run).
//!   bench_train train|infer TILES.f32 LABELS.u8 N_CLASSES BATCH STEPS [DEVICE=cpu]
//! TILES.f32: N x 128 x 128 little-endian f32 (normalised tiles); LABELS.u8: N class indices.
//! Prints one JSON line. Threads: RAYON_NUM_THREADS. Every step reads its result back to the host (the loss
//! when training, embeddings and probabilities when inferring), so GPU timings include the wait.
//! SOUNDALIKE_CONV=burn|own|split and SOUNDALIKE_BN=burn|own force one implementation of the convolutions and
//! batch norms (default: the model's per-device choice, `Impl::Auto`), for A/B runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use soundalike_model::data::batch_tensor;
use soundalike_model::{Impl, Layers};
use soundalike_model::{optimizer, train_step, ArchConfig, SoundNet};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .unwrap_or(0.0)
        / 1024.0
}

/// Seconds taken by `steps` calls of `step` after 3 untimed warm-up calls (step numbers run on).
fn time_steps(steps: usize, mut step: impl FnMut(usize)) -> f64 {
    const WARMUP: usize = 3;
    (0..WARMUP).for_each(&mut step);
    let t0 = Instant::now();
    (WARMUP..WARMUP + steps).for_each(&mut step);
    t0.elapsed().as_secs_f64()
}

fn main() {
    if std::env::var_os("SOUNDALIKE_DEFAULT_MALLOC").is_none() {
        soundalike_model::tune_allocator();
    }
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 6 {
        eprintln!("usage: bench_train train|infer TILES.f32 LABELS.u8 N_CLASSES BATCH STEPS [DEVICE=cpu]");
        std::process::exit(2);
    }
    let (mode, k, batch, steps) = (a[0].as_str(), a[3].parse::<usize>().unwrap(), a[4].parse::<usize>().unwrap(), a[5].parse::<usize>().unwrap());
    let raw = std::fs::read(&a[1]).expect("tiles");
    let tiles: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let labels = std::fs::read(&a[2]).expect("labels");
    let (h, w) = (128, 128);
    let n = labels.len();
    assert_eq!(tiles.len(), n * h * w, "tiles and labels disagree");
    let batch_at = |i: usize| -> (Vec<f32>, Vec<f32>) {
        let mut x = Vec::with_capacity(batch * h * w);
        let mut t = vec![0f32; batch * k];
        for j in 0..batch {
            let r = (i * batch + j) % n;
            x.extend_from_slice(&tiles[r * h * w..(r + 1) * h * w]);
            t[j * k + labels[r] as usize] = 1.0;
        }
        (x, t)
    };
    let choice = |var: &str| {
        let v = std::env::var(var).unwrap_or_else(|_| "auto".into());
        let c = match v.as_str() {
            "burn" => Impl::Burn,
            "own" => Impl::Own,
            "split" => Impl::Split,
            _ => Impl::Auto,
        };
        (v, c)
    };
    let ((conv, conv_impl), (bn, bn_impl)) = (choice("SOUNDALIKE_CONV"), choice("SOUNDALIKE_BN"));
    Layers { conv: conv_impl, batch_norm: bn_impl }.set();
    let device_name = a.get(6).map_or("cpu", String::as_str);
    let dev = soundalike_model::device_from_name(device_name).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let on_cpu = soundalike_model::is_cpu(&dev);
    let tool = if on_cpu { "soundalike (burn flex)".to_string() } else { format!("soundalike (burn {device_name})") };
    match mode {
        "train" => {
            let ad = dev.clone().autodiff();
            ad.seed(1);
            let mut model = Some(SoundNet::new(&ArchConfig::default(), k, &ad));
            let mut optim = optimizer(1e-4);
            let mut last = 0.0;
            let s = time_steps(steps, |i| {
                let (x, t) = batch_at(i);
                let t = Tensor::<2>::from_data(TensorData::new(t, [batch, k]), &ad);
                let (m, loss, _) = train_step(model.take().expect("model"), &mut optim, batch_tensor(x, batch, h, w, &ad), t, batch as f32, 2e-3);
                model = Some(m);
                last = loss;
            });
            println!(
                "{{\"tool\": \"{tool}\", \"mode\": \"train\", \"conv\": \"{conv}\", \"batch_norm\": \"{bn}\", \"batch\": {batch}, \"steps\": {steps}, \"tiles_per_s\": {:.1}, \"final_loss\": {last:.4}, \"peak_rss_mb\": {:.0}}}",
                (steps * batch) as f64 / s,
                peak_rss_mb()
            );
        }
        _ => {
            // Inference runs on weights as trained; their values do not change the speed.
            let net = SoundNet::new(&ArchConfig::default(), k, &dev).valid();
            let folded = net.fold_batch_norm();
            let mut sink = 0f32;
            let mut run = |emb: Tensor<2>, logits: Tensor<2>| {
                let e = emb.into_data().try_into_vec::<f32>().unwrap();
                let p = softmax(logits, 1).into_data().try_into_vec::<f32>().unwrap();
                sink += e[0] + p[0];
            };
            let plain = time_steps(steps, |i| {
                let e = net.forward_embedding(batch_tensor(batch_at(i).0, batch, h, w, &dev), None);
                run(e.clone(), net.head_logits(e));
            });
            let fold = time_steps(steps, |i| {
                let e = folded.forward_embedding(batch_tensor(batch_at(i).0, batch, h, w, &dev), None);
                run(e.clone(), folded.head_logits(e));
            });
            // The fused CPU path that embedding runs on the CPU (fast/cpu_infer.rs): same folded weights, tiles in
            // parallel. Off the CPU embedding runs burn's folded network, measured above.
            let fused = on_cpu.then(|| {
                let engine = soundalike_model::CpuNet::from_folded(&folded);
                let s = time_steps(steps, |i| {
                    let (e, p) = engine.forward(&batch_at(i).0, h, w, None);
                    sink += e[0] + p[0];
                });
                format!(", \"tiles_per_s_fused\": {:.1}", (steps * batch) as f64 / s)
            });
            std::hint::black_box(sink);
            println!(
                "{{\"tool\": \"{tool}\", \"mode\": \"infer\", \"conv\": \"{conv}\", \"batch_norm\": \"{bn}\", \"batch\": {batch}, \"steps\": {steps}, \"tiles_per_s\": {:.1}, \"tiles_per_s_folded\": {:.1}{}, \"peak_rss_mb\": {:.0}}}",
                (steps * batch) as f64 / plain,
                (steps * batch) as f64 / fold,
                fused.unwrap_or_default(),
                peak_rss_mb()
            );
        }
    }
}
