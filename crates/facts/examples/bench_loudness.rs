//! Speed of the loudness meter (integrated loudness, sample and true peak) on two minutes of stereo noise
//! at 44.1 kHz, fed in 1152-frame packets as the decoder gives them, against the `ebur128` crate's
//! integrated mode alone and with its true peak, in the same run. Prints one JSON line (medians of 5 runs).
//!   cargo run --release -p soundalike-facts --example bench_loudness
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks stop at the first surprise

use std::time::Instant;

fn main() {
    let (rate, channels) = (44100u32, 2usize);
    let n = rate as usize * 120 * channels;
    let mut s = 1u32;
    let x: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 - 0.5) * 0.8
        })
        .collect();
    let time = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..5)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64() * 1e9 / n as f64
            })
            .collect();
        t.sort_by(f64::total_cmp);
        (t[2] * 100.0).round() / 100.0
    };
    let ours = time(&|| {
        let mut m = soundalike_facts::LoudnessMeter::new(channels, rate);
        x.chunks(1152 * channels).for_each(|c| m.push(c, channels, rate));
        assert!(m.finish().unwrap().true_peak_db.is_some());
    });
    let crate_mode = |mode: ebur128::Mode| {
        time(&|| {
            let mut r = ebur128::EbuR128::new(channels as u32, rate, mode).unwrap();
            x.chunks(1152 * channels).for_each(|c| r.add_frames_f32(c).unwrap());
            assert!(r.loudness_global().is_ok());
        })
    };
    let (i, itp) = (crate_mode(ebur128::Mode::I), crate_mode(ebur128::Mode::I | ebur128::Mode::TRUE_PEAK));
    println!(
        "{}",
        serde_json::json!({"bench": "loudness", "samples": n, "ns_per_sample": {"ours_lufs_sample_and_true_peak": ours, "ebur128_lufs": i, "ebur128_lufs_and_true_peak": itp},
            "speedup_vs_ebur128_with_true_peak": (itp / ours * 100.0).round() / 100.0})
    );
}
