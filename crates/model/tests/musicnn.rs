//! The Rust musicnn against the Python package (TensorFlow), on real audio: the reference values in
//! tests/data/musicnn/ are made by `scripts/musicnn/reference.py fixtures` (16 kHz clips cut from the tiny
//! set; see datasets/tiny/ATTRIBUTION.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests stop at the first surprise

use std::path::{Path, PathBuf};

use soundalike_model::musicnn::{self, PatchPlan, TagSource, N_MELS, PATCH_FRAMES};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/musicnn").join(name)
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    soundalike_audio::output::npy_parse(&std::fs::read(path).unwrap()).unwrap()
}

/// One patch's (penultimate, tag probabilities).
type Patch = (Vec<f32>, Vec<f32>);

struct Reference {
    clip: String,
    /// Per model: per patch (penultimate, tag probabilities).
    outputs: Vec<(TagSource, Vec<Patch>)>,
}

fn references() -> Vec<Reference> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data("reference.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for (clip, entry) in json["clips"].as_object().unwrap() {
        let outputs = TagSource::ALL
            .iter()
            .map(|&m| {
                let e = &entry[m.model_name()];
                let rows = |k: &str| -> Vec<Vec<f32>> {
                    e[k].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()).collect()
                };
                (m, rows("penultimate").into_iter().zip(rows("tags")).collect())
            })
            .collect();
        out.push(Reference { clip: clip.clone(), outputs });
    }
    assert_eq!(out.len(), 3, "three reference clips");
    out
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn top(probs: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    idx.truncate(k);
    idx
}

/// Network only: the package's own log-mel patches in, every patch's penultimate and tags out.
/// Tolerance: 3e-5 absolute on the penultimate (values up to about 10; float32 sums in another order; 8e-6
/// seen) and 5e-6 on tag probabilities (1.6e-6 seen).
#[test]
fn network_matches_tensorflow_patch_by_patch() {
    for r in references() {
        let (shape, mel) = read_npy(&data(&r.clip.replace(".wav", ".logmel.npy")));
        assert_eq!(shape[1], N_MELS);
        let patches = musicnn::patches(&mel, PatchPlan::All);
        for (model, want) in &r.outputs {
            assert_eq!(patches.len(), want.len(), "{}: patch count", r.clip);
            let got = musicnn::net(*model).forward_patches(&patches);
            for (i, (g, (pen, tags))) in got.iter().zip(want).enumerate() {
                let dp = max_abs(&g.penultimate, pen);
                let dt = max_abs(&g.probs, tags);
                eprintln!("{} {} patch {i}: max |d penultimate| {dp:.2e}, max |d tag| {dt:.2e}", r.clip, model.model_name());
                assert!(dp <= 3e-5 && dt <= 5e-6, "{} {} patch {i}: max |d penultimate| {dp}, max |d tag| {dt}", r.clip, model.model_name());
                assert!(g.probs.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)));
            }
        }
    }
}

/// The pooled vector is interleaved (max0, mean0, max1, ...): feeding the same patch twice over in time
/// changes the max/mean of nothing, so the output must not move; a patch of other length still runs.
#[test]
fn global_pooling_takes_any_length() {
    let (_, mel) = read_npy(&data("warzone_16k.logmel.npy"));
    let net = musicnn::net(TagSource::Mtt);
    let patch = &mel[..PATCH_FRAMES * N_MELS];
    let a = net.forward_patch(patch);
    let longer = net.forward_patch(&mel[..2 * PATCH_FRAMES * N_MELS]);
    assert_eq!(a.probs.len(), 50);
    assert!(max_abs(&a.probs, &longer.probs) > 1e-4, "a different input must give different tags");
    assert!(longer.probs.iter().all(|p| p.is_finite()));
}

/// Front end: our 16 kHz log-mel of the clip the package read, against its log-mel. The package rounds
/// mel power to float16 before `log10(10000 x + 1)`, which moves a value by up to 2.2e-4; ours does not.
#[test]
fn front_end_matches_the_package() {
    for r in references() {
        let (samples, info) = soundalike_audio::decode_mono(&data(&r.clip), musicnn::SAMPLE_RATE, None).unwrap();
        assert_eq!(info.sample_rate, 16_000);
        let got = musicnn::log_mel(&samples);
        let (shape, want) = read_npy(&data(&r.clip.replace(".wav", ".logmel.npy")));
        assert_eq!(got.len(), shape[0] * shape[1], "{}: frame count", r.clip);
        let d = max_abs(&got, &want);
        eprintln!("{}: max |d log-mel| {d:.2e}", r.clip);
        assert!(d <= 5e-4, "{}: max |d log-mel| {d}", r.clip);
    }
}

/// End to end: file -> song tags (mean over every patch, the package's taggram mean) against the
/// package on the same 16 kHz samples: mean |d probability| <= 2e-5 (3e-6 seen; the goal is 0.01),
/// every tag within 2e-4, the same top 5.
#[test]
fn file_tags_match_the_package() {
    for r in references() {
        let (samples, _) = soundalike_audio::decode_mono(&data(&r.clip), musicnn::SAMPLE_RATE, None).unwrap();
        let patches = musicnn::patches(&musicnn::log_mel(&samples), PatchPlan::All);
        for (model, want) in &r.outputs {
            let got = musicnn::mean_output(&musicnn::net(*model).forward_patches(&patches)).unwrap();
            let n = want.len() as f32;
            let mean: Vec<f32> = (0..50).map(|j| want.iter().map(|(_, t)| t[j]).sum::<f32>() / n).collect();
            let mad = got.probs.iter().zip(&mean).map(|(a, b)| (a - b).abs()).sum::<f32>() / 50.0;
            eprintln!("{} {}: mean |d p| {mad:.2e}, max {:.2e}", r.clip, model.model_name(), max_abs(&got.probs, &mean));
            assert!(mad <= 2e-5 && max_abs(&got.probs, &mean) <= 2e-4, "{} {}: mean |d p| {mad}", r.clip, model.model_name());
            assert_eq!(top(&got.probs, 5), top(&mean, 5), "{} {}: top 5", r.clip, model.model_name());
        }
    }
}

#[test]
fn patch_plans() {
    let frames = |n: usize| vec![0.5f32; n * N_MELS];
    assert!(musicnn::patches(&[], PatchPlan::All).is_empty());
    // Shorter than a patch: one, repeat-padded.
    let short: Vec<f32> = (0..10 * N_MELS).map(|i| (i / N_MELS) as f32).collect();
    let p = musicnn::patches(&short, PatchPlan::All);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].len(), PATCH_FRAMES * N_MELS);
    assert_eq!(p[0][10 * N_MELS], 0.0, "frame 10 repeats frame 0");
    assert_eq!(p[0][13 * N_MELS], 3.0);
    // All: every whole patch, the tail dropped.
    assert_eq!(musicnn::patches(&frames(3 * PATCH_FRAMES + 50), PatchPlan::All).len(), 3);
    // Spread: at most k, and all of them when there are fewer.
    assert_eq!(musicnn::patches(&frames(10 * PATCH_FRAMES), PatchPlan::Spread(3)).len(), 3);
    assert_eq!(musicnn::patches(&frames(2 * PATCH_FRAMES), PatchPlan::Spread(3)).len(), 2);
    // Embed's plan: one per 2.5 patch lengths, at least one, at most 6.
    let n = |f: usize| musicnn::patches(&frames(f), musicnn::EMBED_PLAN).len();
    assert_eq!((n(100), n(PATCH_FRAMES), n(5 * PATCH_FRAMES), n(10 * PATCH_FRAMES), n(20 * PATCH_FRAMES), n(80 * PATCH_FRAMES)), (1, 1, 2, 4, 6, 6));
}

#[test]
fn both_models_name_their_tags() {
    let msd = musicnn::net(TagSource::Msd);
    let mtt = musicnn::net(TagSource::Mtt);
    assert_eq!(msd.tags().len(), 50);
    assert!(msd.tags().iter().any(|t| t == "80s") && msd.tags().iter().any(|t| t == "chillout"));
    assert!(mtt.tags().iter().any(|t| t == "female vocal") && mtt.tags().iter().any(|t| t == "harpsichord"));
    // The weights' own lists are the vocabularies the store and the filters use.
    assert_eq!(msd.tags(), soundalike_tags::MSD_TAGS.map(String::from));
    assert_eq!(mtt.tags(), soundalike_tags::MTT_TAGS.map(String::from));
}

/// The decode pass's second spectrogram (source -> mono -> 16 kHz -> mel power) gives the tags the
/// package gives, and a file at another rate and with two channels gets tags too.
#[test]
fn tags_from_the_decode_pass() {
    let extras = soundalike_audio::Extras { facts: false, power_mel: Some(musicnn::frontend()), no_log_mel: false };
    let main = soundalike_audio::FrontendConfig::default();
    let a = soundalike_audio::analyze_file_with(&data("warzone_16k.wav"), &main, &extras).unwrap();
    let pm = a.power_mel.unwrap();
    assert_eq!((pm.n_mels, pm.n_frames), (N_MELS, 594));
    let tags = musicnn::tag_power_mel(pm.data, PatchPlan::All).unwrap();
    assert_eq!(tags.patches, 3);
    let r = references().into_iter().find(|r| r.clip == "warzone_16k.wav").unwrap();
    let (_, msd) = &r.outputs[0];
    let want: Vec<f32> = (0..50).map(|j| msd.iter().map(|(_, t)| t[j]).sum::<f32>() / 3.0).collect();
    assert!(max_abs(&tags.msd, &want) <= 2e-4, "stored tags (4 decimals) against the package");
    let stereo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/ref_c_44k_stereo.wav");
    let a = soundalike_audio::analyze_file_with(&stereo, &main, &extras).unwrap();
    let t = musicnn::tag_power_mel(a.power_mel.unwrap().data, musicnn::EMBED_PLAN).unwrap();
    assert_eq!(t.patches, 1, "5 s: one whole patch");
    assert!(t.msd.iter().chain(&t.mtt).all(|p| p.is_finite() && (0.0..=1.0).contains(p)));
}
