//! What tempo, key and loudness add to decoding and log-mel: each file analysed without and with the
//! facts, alternated, one thread. `cargo run --example facts_cost -p soundalike-audio -- FILES...`
#![allow(clippy::unwrap_used, missing_docs)]
use std::time::Instant;

use soundalike_audio::{analyze_file, analyze_file_with_facts, FrontendConfig};

fn main() {
    let files: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    let cfg = FrontendConfig::default();
    let (mut plain, mut with) = (0f64, 0f64);
    let mut seconds = 0.0;
    for round in 0..2 {
        for f in &files {
            let t = Instant::now();
            let a = analyze_file(f, &cfg);
            plain += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let _ = analyze_file_with_facts(f, &cfg);
            with += t.elapsed().as_secs_f64();
            if round == 0 {
                seconds += a.map(|a| a.info.duration_s).unwrap_or(0.0);
            }
        }
    }
    let n = 2.0 * files.len() as f64;
    println!(
        "{{\"files\": {}, \"audio_seconds\": {seconds:.0}, \"decode_logmel_ms\": {:.2}, \"with_facts_ms\": {:.2}, \"facts_ms\": {:.2}}}",
        files.len(),
        1e3 * plain / n,
        1e3 * with / n,
        1e3 * (with - plain) / n
    );
}
