//! Front-end throughput on a list of files, one thread: `decode` (decode + mono + resample) or `mel`
//! (decode + log-mel). Prints one JSON line. Driven by scripts/bench/bench_frontend.sh.
//!
//! cargo run --release -p soundalike-audio --example bench_frontend -- mel FILE...
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::path::Path;
use std::time::Instant;

use soundalike_audio::{analyze_file, stream_mono, FrontendConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, files)) = args.split_first() else {
        eprintln!("usage: bench_frontend decode|mel FILE...");
        std::process::exit(2);
    };
    let cfg = FrontendConfig::default();
    let t = Instant::now();
    let (mut audio_s, mut ok, mut failed) = (0f64, 0usize, 0usize);
    for f in files {
        let r = match mode.as_str() {
            "decode" => stream_mono(Path::new(f), cfg.sample_rate, None, |c| {
                std::hint::black_box(c);
            })
            .map(|i| i.duration_s),
            _ => analyze_file(Path::new(f), &cfg).map(|a| {
                std::hint::black_box(&a.mel.data);
                a.info.duration_s
            }),
        };
        match r {
            Ok(d) => {
                audio_s += d;
                ok += 1;
            }
            Err(_) => failed += 1,
        }
    }
    let wall = t.elapsed().as_secs_f64();
    println!(
        "{{\"tool\": \"soundalike {mode}\", \"files\": {ok}, \"failed\": {failed}, \"audio_seconds\": {audio_s:.1}, \"wall_seconds\": {wall:.3}, \"x_realtime\": {:.1}}}",
        audio_s / wall
    );
}
