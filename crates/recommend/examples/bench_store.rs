//! Memory of opening a store for embedding: the lean writer (what `embed` uses) against the full store
//! (what `query` uses), on a synthetic journal of N songs with 128-d vectors. Prints one JSON line.
//!   cargo run --release -p soundalike-recommend --example bench_store -- [N=200000] [MODE=writer|store]
//! Run each mode in its own process (scripts/bench/bench_store.sh) so one's allocations do not hide the other's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::time::Instant;

use soundalike_recommend::{normalise, SongRecord, Store, StoreHeader, StoreWriter, STORE_FORMAT_VERSION};

mod common;
use common::rss_kb;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = a.first().and_then(|x| x.parse().ok()).unwrap_or(200_000);
    let mode = a.get(1).cloned().unwrap_or_else(|| "writer".into());
    let dir = std::env::temp_dir().join(format!("soundalike-bench-store-{n}"));
    let header = StoreHeader {
        format_version: STORE_FORMAT_VERSION,
        model_fingerprint: "bench".into(),
        model_name: "bench".into(),
        frontend: serde_json::json!({}),
        labels: (0..10).map(|i| format!("class{i}")).collect(),
        dim: 128,
        library_root: "/music".into(),
        metadata_version: soundalike_recommend::METADATA_VERSION,
    };
    if !dir.join("songs.jsonl").exists() {
        let mut w = StoreWriter::open_or_create(&dir, header.clone()).expect("create");
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..n {
            let mut v: Vec<f32> = (0..128).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5 }).collect();
            normalise(&mut v);
            w.put(SongRecord {
                id: format!("Artist {:04}/Album {:03}/{:02} Track title number {i}.mp3", i / 1000, (i / 10) % 100, i % 10),
                title: format!("Track title number {i}"),
                artist: Some(format!("Artist {:04}", i / 1000)),
                album: Some(format!("Album {:03}", (i / 10) % 100)),
                genre: Some("electronic".into()),
                group: None,
                duration_s: 215.3,
                from_path: Vec::new(),
                fingerprint: format!("{:032x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)),
                size: 5_000_000 + i as u64,
                mtime: 1_700_000_000,
                probs: vec![0.1; 10],
                vector: v,
                facts: None,
                tags: None,
            })
            .expect("put");
        }
        w.compact().expect("compact");
    }
    let journal_mb = std::fs::metadata(dir.join("songs.jsonl")).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let rss0 = rss_kb();
    let t = Instant::now();
    let songs = match mode.as_str() {
        "store" => Store::open(&dir).expect("open").len(),
        _ => {
            let w = StoreWriter::open_or_create(&dir, header).expect("open");
            let k = w.len();
            std::hint::black_box(&w);
            k
        }
    };
    let secs = t.elapsed().as_secs_f64();
    let mb = rss_kb().saturating_sub(rss0) as f64 / 1024.0;
    println!(
        "{{\"mode\": \"{mode}\", \"songs\": {songs}, \"journal_mb\": {journal_mb:.1}, \"open_seconds\": {secs:.2}, \"rss_growth_mb\": {mb:.1}, \"bytes_per_song\": {:.0}}}",
        mb * 1024.0 * 1024.0 / songs.max(1) as f64
    );
}
