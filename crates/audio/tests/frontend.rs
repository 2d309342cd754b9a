//! Front-end tests on real audio committed in tests/data (see datasets/tiny/ATTRIBUTION.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use soundalike_audio::*;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name)
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    soundalike_audio::output::npy_parse(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn mel_filterbank_matches_librosa_to_1e6() {
    let (shape, want) = read_npy(&data("reference/mel_basis_22050_2048_128.npy"));
    assert_eq!(shape, vec![128, 1025]);
    let got = mel::mel_filterbank(22050, 2048, 128, 0.0, 11025.0);
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-6, "max abs diff {worst}");
}

/// Compares bins above the reference's -80 dB floor; returns (max, mean) abs diff in dB.
fn compare(mel: &LogMel, reference: &str) -> (f32, f32) {
    let (shape, want) = read_npy(&data(reference));
    assert_eq!(shape, vec![mel.n_mels, mel.n_frames], "shape differs from librosa");
    let floor = want.iter().copied().fold(f32::NEG_INFINITY, f32::max) - 80.0;
    let diffs: Vec<f32> =
        mel.data.iter().zip(&want).filter(|(_, &w)| w > floor + 1e-3).map(|(g, w)| (g - w).abs()).collect();
    assert!(diffs.len() > mel.data.len() / 2, "too few bins above the floor to compare");
    let max = diffs.iter().copied().fold(0f32, f32::max);
    (max, diffs.iter().sum::<f32>() / diffs.len() as f32)
}

#[test]
fn log_mel_matches_librosa_within_0_05_db() {
    let cfg = FrontendConfig::default();
    for clip in ["ref_a_22k", "ref_b_22k"] {
        let a = analyze_file(&data(&format!("{clip}.wav")), &cfg).unwrap();
        let (max, mean) = compare(&a.mel, &format!("reference/{clip}.logmel.npy"));
        eprintln!("{clip}: max {max} dB, mean {mean} dB");
        assert!(max <= 0.05, "{clip}: max diff {max} dB (mean {mean})");
    }
}

#[test]
fn resampled_log_mel_is_close_to_librosa_soxr() {
    // librosa resamples 44.1 kHz with soxr_hq, we with rubato's FFT resampler: the two filters differ near
    // Nyquist, so the tolerance is looser than for identical samples (measured: see README).
    let a = analyze_file(&data("ref_c_44k_stereo.wav"), &FrontendConfig::default()).unwrap();
    let (max, mean) = compare(&a.mel, "reference/ref_c_44k_stereo.logmel.npy");
    eprintln!("resampled: max {max} dB, mean {mean} dB");
    assert!(mean <= 0.01 && max <= 1.0, "mean diff {mean} dB, max {max} dB");
}

#[test]
fn chunked_streaming_equals_one_shot() {
    let cfg = FrontendConfig::default();
    let (samples, _) = decode_mono(&data("clip.mp3"), 22050, None).unwrap();
    let whole = log_mel(&samples, &cfg);
    let mut s = MelStream::new(&cfg);
    for c in samples.chunks(777) {
        s.push(c);
    }
    let chunked = s.finish();
    assert_eq!(whole, chunked);
    assert_eq!(whole.n_frames, 1 + samples.len() / 512);
}

#[test]
fn real_mp3_gives_expected_shape_and_tiles() {
    let cfg = FrontendConfig::default();
    let a = analyze_file(&data("clip.mp3"), &cfg).unwrap();
    assert!((a.info.duration_s - 15.0).abs() < 0.2, "{}", a.info.duration_s);
    assert_eq!(a.mel.n_mels, 128);
    let t = a.tiles(&cfg);
    assert_eq!(t.n_tiles, tile_count(a.mel.n_frames, 128, 128));
    assert!(t.n_tiles >= 4);
    assert_eq!(t.data.len(), t.n_tiles * 128 * 128);
    assert_eq!(a.info.skipped_packets, 0);
}

fn expect_err(path: &Path, kind: &str) -> AudioError {
    let e = analyze_file(path, &FrontendConfig::default()).unwrap_err();
    assert_eq!(e.kind(), kind, "{path:?}: {e}");
    let msg = e.to_string();
    assert!(msg.contains(&*path.file_name().unwrap().to_string_lossy()), "error must name the file: {msg}");
    e
}

#[test]
fn bad_inputs_give_named_typed_errors() {
    let dir = tempfile_dir();
    let empty = dir.join("empty.mp3");
    std::fs::write(&empty, b"").unwrap();
    expect_err(&empty, "empty");

    let random = dir.join("random.mp3");
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let bytes: Vec<u8> = (0..50_000).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 24) as u8 }).collect();
    std::fs::write(&random, &bytes).unwrap();
    let e = analyze_file(&random, &FrontendConfig::default()).unwrap_err();
    assert!(["unsupported", "corrupt", "too_short"].contains(&e.kind()), "{e}");

    let text = dir.join("notes.mp3");
    std::fs::write(&text, "this is a shopping list, not a song\n".repeat(50)).unwrap();
    expect_err(&text, "unsupported");

    // ID3v2 header announcing 100 bytes of (zero) tag data, then nothing.
    let id3 = dir.join("tag_only.mp3");
    let mut tag = b"ID3\x03\x00\x00\x00\x00\x00\x64".to_vec();
    tag.extend(std::iter::repeat_n(0u8, 100));
    std::fs::write(&id3, &tag).unwrap();
    let e = analyze_file(&id3, &FrontendConfig::default()).unwrap_err();
    assert!(["unsupported", "no_audio_track", "corrupt"].contains(&e.kind()), "{e}");

    expect_err(&data("half_second.mp3"), "too_short");
    expect_err(&data("silence.mp3"), "silent");
    expect_err(&dir.join("missing.mp3"), "io");
}

#[test]
fn truncated_mp3_keeps_what_decodes() {
    let dir = tempfile_dir();
    let full = std::fs::read(data("clip.mp3")).unwrap();
    let cut = dir.join("truncated.mp3");
    std::fs::write(&cut, &full[..full.len() / 3 + 17]).unwrap();
    let a = analyze_file(&cut, &FrontendConfig::default()).unwrap();
    assert!(a.info.duration_s > 4.0 && a.info.duration_s < 6.0, "{}", a.info.duration_s);
    // Cut so short it cannot reach the minimum duration: a clear too_short, not a panic.
    let tiny = dir.join("truncated_tiny.mp3");
    std::fs::write(&tiny, &full[..600]).unwrap();
    let e = analyze_file(&tiny, &FrontendConfig::default()).unwrap_err();
    assert!(["too_short", "corrupt", "unsupported"].contains(&e.kind()), "{e}");
}

#[test]
fn garbage_in_the_middle_is_skipped_not_fatal() {
    let dir = tempfile_dir();
    let mut b = std::fs::read(data("clip.mp3")).unwrap();
    let mid = b.len() * 2 / 5;
    let mut x: u32 = 12345;
    for v in &mut b[mid..mid + 3000] {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *v = (x >> 16) as u8;
    }
    let p = dir.join("damaged.mp3");
    std::fs::write(&p, &b).unwrap();
    let a = analyze_file(&p, &FrontendConfig::default()).unwrap();
    // About 0.4 s of frames are lost at most; everything after the damage still decodes.
    assert!(a.info.duration_s > 14.0, "{} s decoded, {} packets skipped", a.info.duration_s, a.info.skipped_packets);
}

#[test]
fn every_supported_format_decodes_to_the_target_rate() {
    let cfg = FrontendConfig::default();
    for (name, rate, channels, secs) in [
        ("mpeg25_8k.mp3", 8000, 1, 3.0),
        ("stereo_48k_320k.mp3", 48000, 2, 3.0),
        ("vbr_44k.mp3", 44100, 2, 3.0),
        ("pcm24_44k.wav", 44100, 1, 2.0),
        ("float_96k.wav", 96000, 1, 1.2),
        ("surround_5_1.flac", 22050, 6, 2.0),
        ("ogg_named.mp3", 22050, 1, 3.0),
    ] {
        let a = analyze_file(&data(name), &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.info.sample_rate, rate, "{name}");
        assert_eq!(a.info.channels, channels, "{name}");
        assert!((a.info.duration_s - secs).abs() < 0.1, "{name}: {}", a.info.duration_s);
        let want_frames = 1 + ((secs * 22050.0) as usize) / 512;
        assert!((a.mel.n_frames as i64 - want_frames as i64).abs() <= 3, "{name}: {} frames", a.mel.n_frames);
        assert!(a.mel.max() > -20.0, "{name}: suspiciously quiet");
    }
}

#[test]
fn max_duration_bounds_the_decode() {
    let cfg = FrontendConfig { max_duration_s: Some(4.0), ..Default::default() };
    let a = analyze_file(&data("clip.mp3"), &cfg).unwrap();
    assert_eq!(a.mel.n_frames, 1 + (4 * 22050) / 512);
}

#[test]
fn short_clip_is_padded_to_one_tile() {
    let cfg = FrontendConfig::default();
    let a = analyze_file(&data("float_96k.wav"), &cfg).unwrap();
    assert!(a.mel.n_frames < cfg.tile_frames);
    let t = a.tiles(&cfg);
    assert_eq!(t.n_tiles, 1);
    let floor = a.mel.min();
    assert_eq!(t.tile(0)[cfg.tile_frames - 1], floor);
}

#[test]
fn npy_roundtrip_and_pngs() {
    let dir = tempfile_dir();
    let cfg = FrontendConfig::default();
    let a = analyze_file(&data("clip.mp3"), &cfg).unwrap();
    let p = dir.join("x.npy");
    output::write_npy(&p, &a.mel).unwrap();
    let (shape, vals) = read_npy(&p);
    assert_eq!(shape, vec![128, a.mel.n_frames]);
    assert_eq!(vals, a.mel.data);
    output::write_png(&dir.join("x.png"), &a.mel).unwrap();
    let tiles = output::write_tile_pngs(&dir.join("tiles"), &a.tiles(&cfg)).unwrap();
    assert_eq!(tiles.len(), a.tiles(&cfg).n_tiles);
    assert!(std::fs::metadata(&tiles[0]).unwrap().len() > 1000);
}

#[test]
fn invalid_config_is_refused() {
    let cfg = FrontendConfig { hop_length: 0, ..Default::default() };
    assert_eq!(analyze_file(&data("clip.mp3"), &cfg).unwrap_err().kind(), "config");
}

fn tempfile_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!("soundalike-audio-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tiles_cover_and_fit(n_frames in 1usize..2000, w in 1usize..300, hop in 1usize..300) {
        let n = tile_count(n_frames, w, hop);
        prop_assert!(n >= 1);
        if n_frames >= w {
            // the last tile fits, one more would not
            prop_assert!((n - 1) * hop + w <= n_frames);
            prop_assert!(n * hop + w > n_frames);
        } else {
            prop_assert_eq!(n, 1);
        }
    }

    #[test]
    fn make_tiles_copies_the_right_frames(n_frames in 1usize..400, w in 1usize..64, hop in 1usize..64) {
        let mel = LogMel { n_mels: 3, n_frames, data: (0..3 * n_frames).map(|i| i as f32).collect() };
        let cfg = FrontendConfig { tile_frames: w, tile_hop: hop, n_mels: 3, ..Default::default() };
        let t = make_tiles(&mel, &cfg);
        prop_assert_eq!(t.data.len(), t.n_tiles * 3 * w);
        for i in 0..t.n_tiles {
            for m in 0..3 {
                for f in 0..w {
                    let src = i * hop + f;
                    let want = if src < n_frames { mel.at(m, src) } else { 0.0 };
                    prop_assert_eq!(t.tile(i)[m * w + f], want);
                }
            }
        }
    }

    #[test]
    fn resampler_output_length_is_exact(n in 0usize..20000, from in prop::sample::select(vec![8000u32, 22050, 44100, 48000, 96000])) {
        let input: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.01).sin()).collect();
        let mut r = StreamResampler::new(from, 22050).unwrap();
        let mut out = Vec::new();
        for c in input.chunks(1000) { r.push(c, &mut out); }
        r.finish(&mut out);
        prop_assert_eq!(out.len() as u64, (n as u64 * 22050).div_ceil(from as u64));
    }

    #[test]
    fn frame_count_matches_librosa_center(n in 0usize..30000) {
        let cfg = FrontendConfig::default();
        let sig: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
        prop_assert_eq!(log_mel(&sig, &cfg).n_frames, 1 + n / 512);
    }
}

#[test]
fn band_statistics_are_per_band_mean_and_spread_relative_to_the_loudest_value() {
    // Band 0 alternates -10 / -30 dB (mean -20, spread 10), band 1 is flat at 0 dB (the loudest value).
    let mel = LogMel { n_mels: 2, n_frames: 4, data: vec![-10.0, -30.0, -10.0, -30.0, 0.0, 0.0, 0.0, 0.0] };
    let s = mel.band_statistics();
    assert_eq!(s.len(), 4);
    for (got, want) in s.iter().zip([-20.0, 0.0, 10.0, 0.0]) {
        assert!((got - want).abs() < 1e-5, "{s:?}");
    }
    // The same music 12 dB quieter has the same statistics.
    let quieter = LogMel { data: mel.data.iter().map(|v| v - 12.0).collect(), ..mel.clone() };
    assert_eq!(quieter.band_statistics(), s);
    assert!(LogMel { n_mels: 2, n_frames: 0, data: vec![] }.band_statistics().is_empty());
}

#[test]
fn a_signal_in_memory_is_analysed_as_the_file_it_came_from() {
    let cfg = FrontendConfig::default();
    let extras = Extras { facts: true, power_mel: Some(FrontendConfig { sample_rate: 16_000, n_fft: 512, hop_length: 256, n_mels: 96, ..FrontendConfig::default() }), no_log_mel: false };
    let path = data("ref_a_22k.wav");
    let file = analyze_file_with(&path, &cfg, &extras).unwrap();
    let (samples, info) = decode_mono(&path, info_rate(&path), None).unwrap();
    assert_eq!(info.sample_rate, 22_050);
    let mem = analyze_samples_with(&samples, 22_050, Path::new("array"), &cfg, &extras).unwrap();
    assert_eq!(mem.mel, file.mel);
    assert_eq!(mem.facts, file.facts);
    assert_eq!(mem.power_mel, file.power_mel);
    // At another rate: resampled by the same resampler as the decoder.
    let (s44, _) = decode_mono(&data("ref_c_44k_stereo.wav"), 44_100, None).unwrap();
    let a44 = analyze_samples_with(&s44, 44_100, Path::new("array"), &cfg, &Extras::default()).unwrap();
    assert_eq!(a44.mel, analyze_file(&data("ref_c_44k_stereo.wav"), &cfg).unwrap().mel);
    // The file rules, naming what it was given.
    let name = Path::new("array");
    let err = |s: &[f32]| analyze_samples_with(s, 22_050, name, &cfg, &extras).unwrap_err();
    assert!(matches!(err(&[0.0; 44_100]), AudioError::Silent { .. }));
    assert!(matches!(err(&[0.1; 1000]), AudioError::TooShort { .. }));
    let mut bad = vec![0.1f32; 44_100];
    bad[7] = f32::NAN;
    let e = err(&bad);
    assert!(matches!(e, AudioError::Corrupt { .. }) && e.to_string().starts_with("array: ") && e.to_string().contains("sample 7"), "{e}");
}

#[test]
fn the_log_mel_can_be_left_out_when_only_the_second_spectrogram_is_wanted() {
    let cfg = FrontendConfig::default();
    let second = FrontendConfig { sample_rate: 16_000, n_fft: 512, hop_length: 256, n_mels: 96, ..FrontendConfig::default() };
    let path = data("ref_c_44k_stereo.wav");
    let both = analyze_file_with(&path, &cfg, &Extras { power_mel: Some(second.clone()), ..Extras::default() }).unwrap();
    let alone = analyze_file_with(&path, &cfg, &Extras { power_mel: Some(second.clone()), no_log_mel: true, ..Extras::default() }).unwrap();
    assert!(both.mel.n_frames > 0 && alone.mel.n_frames == 0 && alone.mel.data.is_empty());
    assert_eq!(alone.power_mel, both.power_mel);
    assert_eq!(alone.info.duration_s, both.info.duration_s);
    // The facts read the log-mel's frames: asking for them keeps it.
    let facts = analyze_file_with(&path, &cfg, &Extras { facts: true, no_log_mel: true, ..Extras::default() }).unwrap();
    assert_eq!(facts.mel, both.mel);
    assert!(facts.facts.is_some());
    // The rules still hold without it.
    let extras = Extras { power_mel: Some(second), no_log_mel: true, ..Extras::default() };
    let err = |s: &[f32]| analyze_samples_with(s, 22_050, Path::new("array"), &cfg, &extras).unwrap_err();
    assert!(matches!(err(&[0.0; 44_100]), AudioError::Silent { .. }));
    assert!(matches!(err(&[0.1; 1000]), AudioError::TooShort { .. }));
}

fn info_rate(path: &Path) -> u32 {
    decode::MonoDecoder::open(path).unwrap().info().sample_rate
}
