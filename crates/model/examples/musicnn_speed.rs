//! Network-only speed of the Rust musicnn: every non-overlapping patch of the given files through both
//! models, on 1 thread and on all of them, as JSON (`scripts/bench/bench_musicnn.sh` runs it beside the
//! Python package). `cargo run --release -p soundalike-model --example musicnn_speed -- FILE...`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark stops at the first surprise

use std::time::Instant;

use soundalike_model::musicnn::{self, PatchPlan, TagSource};

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    assert!(!files.is_empty(), "usage: musicnn_speed FILE...");
    let mut patches = Vec::new();
    for f in &files {
        let (samples, _) = soundalike_audio::decode_mono(std::path::Path::new(f), musicnn::SAMPLE_RATE, None).unwrap();
        patches.extend(musicnn::patches(&musicnn::log_mel(&samples), PatchPlan::All));
    }
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    for model in TagSource::ALL {
        let net = musicnn::net(model);
        net.forward_patches(&patches[..patches.len().min(2)]); // warm-up
        for n in [1, threads] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
            let t = Instant::now();
            let out = pool.install(|| net.forward_patches(&patches));
            let s = t.elapsed().as_secs_f64();
            assert!(out.iter().all(|o| o.probs.iter().all(|p| p.is_finite())));
            rows.push(serde_json::json!({
                "tool": "soundalike (Rust)", "model": model.model_name(), "threads": n, "patches": patches.len(),
                "seconds": (s * 1000.0).round() / 1000.0, "ms_per_patch": (s * 1e5 / patches.len() as f64).round() / 100.0,
                "x_realtime": (patches.len() as f64 * 187.0 * 256.0 / 16000.0 / s * 10.0).round() / 10.0,
            }));
        }
    }
    println!("{}", serde_json::to_string(&rows).unwrap());
}
