//! The CNN on small synthetic spectrograms: it learns, one forward path, exact resume, model-dir checks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use soundalike_audio::{FrontendConfig, LogMel};
use soundalike_model::*;

/// Small front end so tests run in seconds: 32 mel bands, 32-frame tiles.
fn small_frontend() -> FrontendConfig {
    FrontendConfig { n_mels: 32, tile_frames: 32, tile_hop: 16, ..Default::default() }
}

fn small_arch() -> ArchConfig {
    ArchConfig { channels: vec![4, 8], embedding_dim: 16, dropout: 0.2, pool: Pool::Global, pool_blocks: 1, context: None, song_power: 1.0, song_whitening: None }
}

/// Class 0: energy in the low bands; class 1: in the high bands; plus noise.
fn song(id: usize, label: usize) -> LabelledSong {
    let (n_mels, n_frames) = (32, 96);
    let mut x = (id as u64 + 1) * 0x9E37_79B9;
    let mut data = vec![0f32; n_mels * n_frames];
    for m in 0..n_mels {
        for t in 0..n_frames {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 1000) as f32 / 1000.0 * 20.0;
            let loud = if (label == 0) == (m < n_mels / 2) { 40.0 } else { 0.0 };
            data[m * n_frames + t] = -80.0 + loud + noise;
        }
    }
    LabelledSong::new(format!("s{id}"), label, LogMel { n_mels, n_frames, data })
}

fn sets() -> (Vec<LabelledSong>, Vec<LabelledSong>) {
    let train = (0..24).map(|i| song(i, i % 2)).collect();
    let val = (100..110).map(|i| song(i, i % 2)).collect();
    (train, val)
}

/// burn's device RNG is per device, shared by threads: training tests run one at a time so each sees only
/// its own seeding (one training per process is the real-world case).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config() -> ModelConfig {
    ModelConfig::new("test", small_frontend(), small_arch(), vec!["low".into(), "high".into()], "synthetic")
}

fn opts(epochs: usize) -> TrainOptions {
    TrainOptions { epochs, batch_size: 8, crops_per_song: 4, patience: 50, learning_rate: 5e-3, ..Default::default() }
}

#[test]
fn it_learns_a_separable_task_and_reports_honestly() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (train_set, val) = sets();
    let dev = Device::flex();
    let s = train(TrainJob { out_dir: dir.path(), config: &config(), train: &train_set, val: &val, opts: &opts(4), resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    assert_eq!(s.state.history.len(), 4);
    assert!(s.best_val.song_accuracy >= 0.9, "val song accuracy {}", s.best_val.song_accuracy);
    assert_eq!(s.best_val.n_songs, 10);
    assert_eq!(s.best_val.chance_uniform, 0.5);
    assert_eq!(s.best_val.confusion.iter().flatten().sum::<usize>(), 10);
    for f in ["config.json", "model.bpk", "checkpoint/state.json"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    // Embeddings: one per song, unit length, same song -> same vector.
    let m = load_model(dir.path(), &dev).unwrap();
    let e1 = m.embed_mel(&val[0].mel, &dev);
    let e2 = m.embed_mel(&val[0].mel, &dev);
    assert_eq!(e1, e2);
    assert_eq!(e1.vector.len(), 16);
    let norm: f32 = e1.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4 || norm == 0.0, "norm {norm}");
    assert!((e1.probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    // Same-class songs are closer than different-class songs on average.
    let v: Vec<Vec<f32>> = val.iter().map(|s| m.embed_mel(&s.mel, &dev).vector).collect();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let (mut same, mut diff, mut ns, mut nd) = (0f32, 0f32, 0, 0);
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            if val[i].label == val[j].label { same += dot(&v[i], &v[j]); ns += 1 } else { diff += dot(&v[i], &v[j]); nd += 1 }
        }
    }
    assert!(same / ns as f32 > diff / nd as f32, "same {} diff {}", same / ns as f32, diff / nd as f32);
}

#[test]
fn forward_is_embedding_then_head() {
    let _g = serial();
    let dev = Device::flex();
    let net = SoundNet::new(&small_arch(), 3, &dev);
    use burn::module::Module;
    let net = net.valid();
    let x = burn::tensor::Tensor::<4>::random([2, 1, 32, 32], burn::tensor::Distribution::Default, &dev);
    let a = net.forward(x.clone(), None).into_data().try_to_vec::<f32>().unwrap();
    let b = net.head_logits(net.forward_embedding(x, None)).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(a.len(), 6);
    assert_eq!(a, b);
}

#[test]
fn interrupted_then_resumed_equals_uninterrupted() {
    let _g = serial();
    let (train_set, val) = sets();
    let dev = Device::flex();
    let full = tempfile::tempdir().unwrap();
    train(TrainJob { out_dir: full.path(), config: &config(), train: &train_set, val: &val, opts: &opts(3), resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    let cut = tempfile::tempdir().unwrap();
    train(TrainJob { out_dir: cut.path(), config: &config(), train: &train_set, val: &val, opts: &opts(3), resume: false, device: &dev }, &mut |_| {}, &|e| e == 1).unwrap();
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(cut.path().join("checkpoint/state.json")).unwrap()).unwrap();
    assert_eq!(st["epochs_done"], 1);
    let resumed = train(TrainJob { out_dir: cut.path(), config: &config(), train: &train_set, val: &val, opts: &opts(3), resume: true, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    assert_eq!(resumed.state.epochs_done, 3);
    let h = |d: &std::path::Path| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("checkpoint/state.json")).unwrap()).unwrap();
        v["history"].as_array().unwrap().iter().map(|e| serde_json::json!([e["train_loss"], e["val_loss"]])).collect::<Vec<_>>().into()
    };
    assert_eq!(h(full.path()), h(cut.path()));
    // Same weights (the files differ in burn's random parameter ids, so compare what the models compute).
    let (a, b) = (load_model(full.path(), &dev).unwrap(), load_model(cut.path(), &dev).unwrap());
    let (ea, eb) = (a.embed_mel(&val[3].mel, &dev), b.embed_mel(&val[3].mel, &dev));
    assert!(ea == eb, "resumed model computes something else");
    // Resuming with other options is refused.
    let e = train(TrainJob { out_dir: cut.path(), config: &config(), train: &train_set, val: &val, opts: &opts(5), resume: true, device: &dev }, &mut |_| {}, &|_| false).err().unwrap();
    assert!(e.to_string().contains("other training options"), "{e}");
}

/// A new directory with a copy of the model saved in `dir` (its config and weights).
fn copy_of(dir: &std::path::Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.bpk"] {
        std::fs::copy(dir.join(f), copy.path().join(f)).unwrap();
    }
    copy
}

#[test]
fn song_power_normalises_each_value_of_the_song_vector_and_changes_the_fingerprint() {
    let _g = serial();
    let (train_set, val) = sets();
    let dev = Device::flex();
    let (plain, powered) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |p: f32| ModelConfig::new("test", small_frontend(), ArchConfig { song_power: p, ..small_arch() }, vec!["low".into(), "high".into()], "synthetic");
    // Training never reads the power: the same seed gives the same weights.
    train(TrainJob { out_dir: plain.path(), config: &cfg(1.0), train: &train_set, val: &val, opts: &opts(1), resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    train(TrainJob { out_dir: powered.path(), config: &cfg(0.5), train: &train_set, val: &val, opts: &opts(1), resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    let (a, b) = (load_model(plain.path(), &dev).unwrap(), load_model(powered.path(), &dev).unwrap());
    assert_eq!(b.config.arch.song_power, 0.5);
    // A config with the plain mean is written as before (no new field), so older models' files are unchanged.
    assert!(!std::fs::read_to_string(plain.path().join("config.json")).unwrap().contains("song_power"));
    assert!(std::fs::read_to_string(powered.path().join("config.json")).unwrap().contains("\"song_power\": 0.5"));
    // The power is part of the fingerprint (the same weights with other song vectors must not share a store):
    // setting it by hand in a plain model's config no longer matches its weights.
    let hand = copy_of(plain.path());
    let text = std::fs::read_to_string(hand.path().join("config.json")).unwrap().replacen("\"embedding_dim\"", "\"song_power\": 0.5,\n    \"embedding_dim\"", 1);
    std::fs::write(hand.path().join("config.json"), &text).unwrap();
    assert!(load_config(hand.path()).unwrap().arch.song_power == 0.5, "{text}");
    let e = load_model(hand.path(), &dev).err().unwrap().to_string();
    assert!(e.contains("does not match config.json"), "{e}");
    for s in &val[..4] {
        let (va, vb) = (a.embed_mel(&s.mel, &dev).vector, b.embed_mel(&s.mel, &dev).vector);
        // unit(mean ^ p) = unit(unit(mean) ^ p): the power is homogeneous.
        let mut want: Vec<f32> = va.iter().map(|x| x.signum() * x.abs().sqrt()).collect();
        l2_normalise(&mut want);
        let diff = want.iter().zip(&vb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{}: {vb:?} against {want:?}", s.id);
        assert!(va.iter().zip(&vb).any(|(x, y)| (x - y).abs() > 1e-3), "the power changed nothing");
        assert!((vb.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Out of (0, 1] is refused, on load too.
    for p in [0.0, -0.5, 1.5, f32::NAN] {
        assert!(ArchConfig { song_power: p, ..ArchConfig::default() }.validate(128, 128).is_err(), "{p}");
    }
    let path = powered.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("\"song_power\": 0.5", "\"song_power\": 2.0");
    std::fs::write(&path, text).unwrap();
    let e = load_model(powered.path(), &dev).err().unwrap().to_string();
    assert!(e.contains("song_power 2 outside (0, 1]") && e.contains("config.json"), "{e}");
}

#[test]
fn song_whitening_is_fitted_on_songs_saved_in_the_fingerprint_and_applied_to_every_song_vector() {
    let _g = serial();
    let (train_set, val) = sets();
    let dev = Device::flex();
    let plain = tempfile::tempdir().unwrap();
    train(TrainJob { out_dir: plain.path(), config: &config(), train: &train_set, val: &val, opts: &opts(1), resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    let a = load_model(plain.path(), &dev).unwrap();
    let mut calls = 0;
    let fit = a.fit_song_whitening(train_set.iter().map(|s| (&s.mel, s.tagger())), 1.0, &dev, &mut || calls += 1).unwrap();
    assert_eq!((calls, fit.fitted_on, fit.dim()), (train_set.len(), train_set.len(), 16));
    // The fit is on the model's unit song vectors: their mean is what it centres on.
    let unit: Vec<Vec<f32>> = train_set.iter().map(|s| a.embed_mel(&s.mel, &dev).vector).collect();
    for j in 0..16 {
        let m = unit.iter().map(|v| v[j]).sum::<f32>() / unit.len() as f32;
        assert!((m - fit.mean[j]).abs() < 1e-5, "mean {j}: {m} against {}", fit.mean[j]);
    }
    // Another directory with the same weights, whitened: a new fingerprint, the map in its config, and a
    // plain model's config stays as it was (no new field).
    let white = copy_of(plain.path());
    let cfg = set_song_whitening(white.path(), Some(fit.clone())).unwrap();
    assert_ne!(cfg.fingerprint, a.config.fingerprint);
    assert!(!std::fs::read_to_string(plain.path().join("config.json")).unwrap().contains("song_whitening"));
    let b = load_model(white.path(), &dev).unwrap();
    assert_eq!(b.config.arch.song_whitening.as_ref(), Some(&fit));
    // Every song vector: the plain unit vector, whitened, unit again; different from the plain one.
    for s in &val[..4] {
        let (va, vb) = (a.embed_mel(&s.mel, &dev).vector, b.embed_mel(&s.mel, &dev).vector);
        let mut want = fit.apply(&va);
        l2_normalise(&mut want);
        let diff = want.iter().zip(&vb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{}: {vb:?} against {want:?}", s.id);
        assert!(va.iter().zip(&vb).any(|(x, y)| (x - y).abs() > 1e-3), "whitening changed nothing");
        assert!((vb.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Over the training songs, the whitened vectors (before unit length) are decorrelated: their mean
    // is zero along every axis.
    let white_rows: Vec<Vec<f32>> = unit.iter().map(|v| fit.apply(v)).collect();
    for j in 0..16 {
        assert!((white_rows.iter().map(|v| v[j]).sum::<f32>() / white_rows.len() as f32).abs() < 1e-3);
    }
    // Odd songs (silent, very quiet, clipped, shorter than a tile): finite vectors, unit length or all zero.
    let odd = [mel_of(32, 96, |_, _| -100.0), mel_of(32, 96, |m, t| -140.0 + ((m + t) % 3) as f32), mel_of(32, 96, |_, _| 20.0), mel_of(32, 5, |m, _| -30.0 - m as f32)];
    for (i, mel) in odd.iter().enumerate() {
        let v = b.embed_mel(mel, &dev).vector;
        let norm = v.iter().map(|x| x * x).sum::<f32>();
        assert!(v.iter().all(|x| x.is_finite()) && ((norm - 1.0).abs() < 1e-4 || norm == 0.0), "odd song {i}: {v:?}");
    }
    // Removing it gives back the plain fingerprint.
    assert_eq!(set_song_whitening(white.path(), None).unwrap().fingerprint, a.config.fingerprint);
    set_song_whitening(white.path(), Some(fit.clone())).unwrap();
    // A map edited by hand no longer matches the fingerprint; one of the wrong width or not finite is refused
    // on load, naming the file.
    let path = white.path().join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["arch"]["song_whitening"]["mean"][0] = serde_json::json!(fit.mean[0] + 0.5);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let e = load_model(white.path(), &dev).err().unwrap().to_string();
    assert!(e.contains("does not match config.json"), "{e}");
    // ...and is not rewritten under a fresh fingerprint that would match its weights.
    let e = set_song_whitening(white.path(), None).err().unwrap().to_string();
    assert!(e.contains("the model directory is mixed up"), "{e}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&path).unwrap()).unwrap(), v);
    v["arch"]["song_whitening"]["mean"] = serde_json::json!([0.0, 1.0]);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let e = load_model(white.path(), &dev).err().unwrap().to_string();
    assert!(e.contains("song_whitening") && e.contains("vectors of 16") && e.contains("config.json"), "{e}");
    // A strength outside [0, 1] is refused before any work.
    assert!(a.fit_song_whitening(train_set.iter().map(|s| (&s.mel, None)), 1.5, &dev, &mut || {}).is_err());
}

/// Every float tensor of a network (weights and batch-norm running statistics), flattened into one list.
fn all_floats(net: &SoundNet) -> Vec<f32> {
    struct G(Vec<f32>);
    impl burn::module::ModuleVisitor for G {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<burn::tensor::Tensor<D>>) {
            self.0.extend(p.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut g = G(Vec::new());
    burn::module::Module::visit(net, &mut g);
    g.0
}

#[test]
fn weight_averaging_writes_the_mean_of_the_last_epochs_and_resumes_exactly() {
    let _g = serial();
    let (train_set, val) = sets();
    let dev = Device::flex();
    let o = TrainOptions { average_epochs: 2, ..opts(4) };
    let full = tempfile::tempdir().unwrap();
    train(TrainJob { out_dir: full.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    // Interrupted after epoch 3 (one epoch into the average): the last epoch's own weights are epoch 3's.
    let cut = tempfile::tempdir().unwrap();
    train(TrainJob { out_dir: cut.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|e| e == 3).unwrap();
    let epoch3 = all_floats(&load_model(&cut.path().join("last-epoch"), &dev).unwrap().net);
    let resumed = train(TrainJob { out_dir: cut.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: true, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    assert_eq!((resumed.state.epochs_done, resumed.state.averaged), (4, 2));
    let (avg, last) = (load_model(full.path(), &dev).unwrap(), load_model(&full.path().join("last-epoch"), &dev).unwrap());
    let epoch4 = all_floats(&last.net);
    let (a, b) = (all_floats(&avg.net), all_floats(&load_model(cut.path(), &dev).unwrap().net));
    assert_eq!(a.len(), epoch4.len());
    // The written model's weights are the mean of epochs 3 and 4 (which differ); its batch-norm running
    // statistics are its own, recomputed after averaging: not the mean of the two epochs' statistics. Which
    // floats are running statistics: those a refresh changes.
    let x = burn::tensor::Tensor::<4>::random([8, 1, 32, 32], burn::tensor::Distribution::Default, &dev);
    let stats: Vec<bool> = epoch4.iter().zip(all_floats(&last.net.refresh_batch_norm([x]))).map(|(p, q)| *p != q).collect();
    assert!(stats.iter().any(|&s| s) && stats.iter().any(|&s| !s));
    let mean: Vec<f32> = epoch3.iter().zip(&epoch4).map(|(x, y)| (x + y) / 2.0).collect();
    let off = a.iter().zip(&mean).zip(&stats).filter(|(_, &s)| !s).map(|((m, w), _)| (m - w).abs()).fold(0f32, f32::max);
    assert!(off < 1e-5, "the averaged weights are off by {off}");
    let moved = a.iter().zip(&mean).zip(&stats).filter(|(_, &s)| s).map(|((m, w), _)| (m - w).abs()).fold(0f32, f32::max);
    assert!(moved > 1e-4, "the running statistics were not recomputed ({moved})");
    assert!(epoch3.iter().zip(&epoch4).any(|(x, y)| (x - y).abs() > 1e-4));
    // The resumed run's average (read back from the checkpoint) is the uninterrupted one's.
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-6, "resumed average differs by {worst}");
    // The average embeds songs, and differently from the last epoch alone.
    let (ea, el) = (avg.embed_mel(&val[3].mel, &dev), last.embed_mel(&val[3].mel, &dev));
    assert!(ea.vector.iter().all(|x| x.is_finite()) && ea.vector != el.vector);
    // A running mean of three networks is their mean, and averaging changes none of its members (burn's
    // running statistics sit behind a handle that clones share).
    let n3 = average_into(Some(average_into(Some(avg.net.clone()), &last.net, 2)), &avg.net, 3);
    assert!(all_floats(&avg.net) == a && all_floats(&last.net) == epoch4, "averaging changed a member");
    let (m3, want) = (all_floats(&n3), a.iter().zip(&epoch4).map(|(x, y)| (2.0 * x + y) / 3.0));
    assert!(m3.iter().zip(want).all(|(x, w)| (x - w).abs() < 1e-5));
    // More epochs averaged than the schedule has: refused before any work.
    let never = tempfile::tempdir().unwrap();
    let r = train(TrainJob { out_dir: never.path(), config: &config(), train: &train_set, val: &val, opts: &TrainOptions { average_epochs: 5, ..opts(4) }, resume: false, device: &dev }, &mut |_| {}, &|_| false);
    assert!(r.err().unwrap().to_string().contains("average the last 5 epochs"));
}

#[test]
fn refreshed_batch_norm_statistics_are_the_batches_own() {
    let _g = serial();
    let dev = Device::flex();
    use burn::module::Module;
    use burn::tensor::{Distribution, Tensor};
    let ad = dev.clone().autodiff();
    let net = SoundNet::new(&small_arch(), 2, &ad);
    let (x, y) = (Tensor::<4>::random([6, 1, 32, 32], Distribution::Default, &dev), Tensor::<4>::random([2, 1, 32, 32], Distribution::Normal(0.5, 2.0), &dev));
    let valid = net.valid();
    let before = all_floats(&valid);
    // One batch: the statistics become that batch's, so inference on it computes what training mode does
    // (each block normalised by the batch's statistics), which the fresh running statistics do not.
    let fresh = valid.refresh_batch_norm([x.clone()]);
    let trained = net.forward_embedding(Tensor::from_data(x.to_data(), &ad), None).into_data().try_to_vec::<f32>().unwrap();
    let infer = |n: &SoundNet, t: &Tensor<4>| n.forward_embedding(t.clone(), None).into_data().try_to_vec::<f32>().unwrap();
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(diff(&infer(&fresh, &x), &trained) < 1e-3, "off by {}", diff(&infer(&fresh, &x), &trained));
    assert!(diff(&infer(&valid, &x), &trained) > 1e-2);
    // The network refreshed is unchanged (its running statistics are its own), and so is one with no batches.
    assert!(all_floats(&valid) == before && all_floats(&valid.refresh_batch_norm([])) == before);
    // The statistics depend on the weights and the batches only, not on the statistics before, and two
    // batches count by their tiles: [x, y] is the tile-weighted mean of x's and y's statistics.
    let both = all_floats(&valid.refresh_batch_norm([x.clone(), y.clone()]));
    assert!(diff(&both, &all_floats(&fresh.refresh_batch_norm([x.clone(), y.clone()]))) < 1e-6);
    let (fx, fy) = (all_floats(&fresh), all_floats(&valid.refresh_batch_norm([y])));
    let stats: Vec<usize> = (0..before.len()).filter(|&i| fx[i] != before[i]).collect();
    assert!(!stats.is_empty());
    for &i in stats.iter().take(4) {
        // Block 0's statistics (visited first) see the same input either way; later blocks see inputs
        // normalised by each batch's own statistics, so only the first block's are an exact mean.
        assert!((both[i] - (6.0 * fx[i] + 2.0 * fy[i]) / 8.0).abs() < 1e-4 * (1.0 + both[i].abs()), "{i}: {} vs {} {}", both[i], fx[i], fy[i]);
    }
}

#[test]
fn the_averaged_epochs_train_at_a_constant_rate_after_a_cosine_down_to_it() {
    let peak = 2e-3;
    let plain = TrainOptions { epochs: 24, learning_rate: peak, ..Default::default() };
    // The plain cosine, unchanged: the peak first, half of it at the middle, nearly zero at the end.
    assert_eq!(learning_rate_at(&plain, 1), peak);
    assert!((learning_rate_at(&plain, 13) - peak / 2.0).abs() < 1e-12);
    assert!(learning_rate_at(&plain, 24) < 1e-5);
    // Averaging alone keeps that schedule.
    let avg = TrainOptions { average_epochs: 8, ..plain.clone() };
    assert!((1..=24).all(|e| learning_rate_at(&avg, e) == learning_rate_at(&plain, e)));
    // With a rate for the averaged epochs: a cosine from the peak to it over epochs 1-16, then constant.
    let swa = TrainOptions { average_lr: 3e-4, ..avg };
    let lr: Vec<f64> = (1..=24).map(|e| learning_rate_at(&swa, e)).collect();
    assert!((lr[0] - peak).abs() < 1e-12);
    assert!(lr[..16].windows(2).all(|w| w[1] < w[0]) && lr[15] > 3e-4 && lr[15] < 3.2e-4, "{lr:?}");
    assert!((3e-4 + (peak - 3e-4) / 2.0 - lr[8]).abs() < 1e-12);
    assert!(lr[16..].iter().all(|&x| x == 3e-4));
}

#[test]
fn training_with_a_rate_for_the_averaged_epochs_uses_it_and_is_checked() {
    let _g = serial();
    let (train_set, val) = sets();
    let dev = Device::flex();
    let o = TrainOptions { average_epochs: 2, average_lr: 1e-3, ..opts(3) };
    let d = tempfile::tempdir().unwrap();
    let s = train(TrainJob { out_dir: d.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    let lr: Vec<f64> = s.state.history.iter().map(|e| e.learning_rate).collect();
    assert!((lr[0] - 5e-3).abs() < 1e-12 && lr[1..] == [1e-3, 1e-3], "{lr:?}");
    assert!(load_model(d.path(), &dev).unwrap().embed_mel(&val[0].mel, &dev).vector.iter().all(|x| x.is_finite()));
    for (bad, says) in [(TrainOptions { average_lr: 1e-3, ..opts(3) }, "needs epochs to average"), (TrainOptions { average_lr: f64::NAN, ..o.clone() }, "must be >= 0")] {
        let never = tempfile::tempdir().unwrap();
        let r = train(TrainJob { out_dir: never.path(), config: &config(), train: &train_set, val: &val, opts: &bad, resume: false, device: &dev }, &mut |_| {}, &|_| false);
        assert!(r.err().unwrap().to_string().contains(says));
    }
}

#[test]
fn mixed_up_model_dir_is_refused() {
    let _g = serial();
    let (train_set, val) = sets();
    let dev = Device::flex();
    let d = tempfile::tempdir().unwrap();
    train(TrainJob { out_dir: d.path(), config: &config(), train: &train_set, val: &val, opts: &opts(1), resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    let cp = d.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    cfg["fingerprint"] = "0000000000000000".into();
    std::fs::write(&cp, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let e = load_model(d.path(), &dev).err().unwrap().to_string();
    assert!(e.contains("fingerprint") && e.contains("model.bpk"), "{e}");
    cfg["format_version"] = 99.into();
    std::fs::write(&cp, serde_json::to_vec(&cfg).unwrap()).unwrap();
    assert!(load_model(d.path(), &dev).err().unwrap().to_string().contains("version 99"));
    assert!(load_model(&d.path().join("nope"), &dev).is_err());
}

#[test]
fn class_weights_favour_rare_classes_with_mean_one() {
    let songs: Vec<LabelledSong> = (0..10).map(|i| song(i, usize::from(i >= 8))).collect();
    let w = soundalike_model::train::class_weights(&songs, 2);
    assert!(w[1] > w[0]);
    let mean: f32 = songs.iter().map(|s| w[s.label]).sum::<f32>() / 10.0;
    assert!((mean - 1.0).abs() < 1e-5);
}

#[test]
fn shipped_default_model_loads_and_matches_its_front_end() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
    if !dir.join("config.json").exists() {
        panic!("models/default is missing: the repository must ship a default model");
    }
    let m = load_model(&dir, &Device::flex()).unwrap();
    assert_eq!(m.config.arch.embedding_dim, 128);
    assert_eq!(m.config.frontend, FrontendConfig::default());
    assert!(m.config.labels.len() >= 2);
}

#[test]
fn inference_does_not_depend_on_the_rest_of_the_batch() {
    let _g = serial();
    let dev = Device::flex();
    let d = tempfile::tempdir().unwrap();
    let (train_set, val) = sets();
    train(TrainJob { out_dir: d.path(), config: &config(), train: &train_set, val: &val, opts: &opts(1), resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
    let m = load_model(d.path(), &dev).unwrap();
    let a = burn::tensor::Tensor::<4>::random([1, 1, 32, 32], burn::tensor::Distribution::Default, &dev);
    let b = burn::tensor::Tensor::<4>::random([3, 1, 32, 32], burn::tensor::Distribution::Normal(5.0, 3.0), &dev);
    let alone = m.net.forward(a.clone(), None).into_data().try_to_vec::<f32>().unwrap();
    let batch = m.net.forward(burn::tensor::Tensor::cat(vec![a, b], 0), None).into_data().try_to_vec::<f32>().unwrap();
    for (x, y) in alone.iter().zip(&batch[..alone.len()]) {
        assert!((x - y).abs() < 1e-4, "batch norm used batch statistics at inference: {alone:?} vs {:?}", &batch[..alone.len()]);
    }
}

#[test]
fn folded_batch_norm_gives_the_same_outputs() {
    let _g = serial(); // draws from the device RNG
    // The shipped model: real running statistics, far from the identity.
    let dev = Device::flex();
    let m = load_model(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default"), &dev).unwrap();
    let x = burn::tensor::Tensor::<4>::random([4, 1, 128, 128], burn::tensor::Distribution::Uniform(0.0, 1.0), &dev);
    let ctx = song_context(&m.config, 4, &dev);
    let plain = m.net.forward_embedding(x.clone(), ctx.clone());
    let folded = m.folded.forward_embedding(x, ctx);
    let (p, f) = (plain.clone().into_data().try_to_vec::<f32>().unwrap(), folded.clone().into_data().try_to_vec::<f32>().unwrap());
    let scale = p.iter().fold(0f32, |a, b| a.max(b.abs()));
    assert!(scale > 0.1, "embeddings are all near zero: {scale}");
    let worst = p.iter().zip(&f).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4 * scale.max(1.0), "folded differs by {worst} (scale {scale})");
    let (lp, lf) = (m.net.head_logits(plain).into_data().try_to_vec::<f32>().unwrap(), m.folded.head_logits(folded).into_data().try_to_vec::<f32>().unwrap());
    assert!(lp.iter().zip(&lf).all(|(a, b)| (a - b).abs() < 1e-3), "{lp:?} vs {lf:?}");
}

/// For a network with a song context, `n` songs' standardised contexts (`[n, features]`, drawn within
/// the clamp); `None` for one without.
fn song_context(config: &soundalike_model::ModelConfig, n: usize, dev: &Device) -> Option<burn::tensor::Tensor<2>> {
    config.arch.context.as_ref().map(|c| burn::tensor::Tensor::<2>::random([n, c.features()], burn::tensor::Distribution::Uniform(-2.0, 2.0), dev))
}

/// Largest absolute difference, and the largest magnitude in `a`.
fn worst_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    (a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max), a.iter().fold(0f32, |m, x| m.max(x.abs())))
}

#[test]
fn fused_cpu_engine_equals_burns_folded_network() {
    let _g = serial(); // draws from the device RNG
    let dev = Device::flex();
    let m = load_model(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default"), &dev).unwrap();
    let engine = CpuNet::from_folded(&m.folded);
    assert_eq!((engine.embedding_dim(), engine.n_classes()), (128, m.config.labels.len()));
    // Square tiles as shipped, and sizes the strips and the pool must cut unevenly (odd rows and columns).
    for (n, h, w) in [(5, 128, 128), (3, 37, 50), (2, 128, 130)] {
        let x = burn::tensor::Tensor::<4>::random([n, 1, h, w], burn::tensor::Distribution::Uniform(0.0, 1.0), &dev);
        let data = x.clone().into_data().try_to_vec::<f32>().unwrap();
        // One song: the engine reads one context for every tile, burn a row per tile.
        let row = song_context(&m.config, 1, &dev).map(|c| c.into_data().try_to_vec::<f32>().unwrap());
        let ctx = row.as_ref().map(|r| burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(r.repeat(n), [n, r.len()]), &dev));
        let emb = m.folded.forward_embedding(x, ctx);
        let probs = burn::tensor::activation::softmax(m.folded.head_logits(emb.clone()), 1).into_data().try_to_vec::<f32>().unwrap();
        let emb = emb.into_data().try_to_vec::<f32>().unwrap();
        let (e2, p2) = engine.forward(&data, h, w, row.as_deref());
        let (worst, scale) = worst_diff(&emb, &e2);
        assert!(scale > 0.1, "embeddings are all near zero at {h}x{w}: {scale}");
        assert!(worst < 1e-4 * scale.max(1.0), "engine embedding differs by {worst} (scale {scale}) at {h}x{w}");
        let (worst, _) = worst_diff(&probs, &p2);
        assert!(worst < 1e-4, "engine probabilities differ by {worst} at {h}x{w}");
    }
}

#[test]
fn song_tiles_give_the_same_outputs_on_both_inference_paths() {
    // A song longer than one batch of tiles, so burn's path batches and the fused path splits across threads.
    let dev = Device::flex();
    let m = load_model(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default"), &dev).unwrap();
    let fe = &m.config.frontend;
    let n_frames = fe.tile_frames + fe.tile_hop * (burn_batch() + 3) + 17;
    let mel = LogMel { n_mels: fe.n_mels, n_frames, data: (0..fe.n_mels * n_frames).map(|i| -80.0 + ((i * 7919) % 8000) as f32 / 100.0).collect() };
    let (fused, burn) = (m.infer_tiles_fused(&mel), m.infer_tiles_burn(&mel, &dev));
    assert_eq!((fused.n_tiles, burn.n_tiles), (burn_batch() + 4, burn_batch() + 4));
    let (worst, scale) = worst_diff(&burn.embeddings, &fused.embeddings);
    assert!(scale > 0.1 && worst < 1e-4 * scale.max(1.0), "embeddings differ by {worst} (scale {scale})");
    assert!(worst_diff(&burn.probs, &fused.probs).0 < 1e-4);
}

fn burn_batch() -> usize {
    soundalike_model::infer::INFER_BATCH
}

#[test]
fn fused_cpu_engine_handles_any_channel_counts_and_every_pool() {
    let _g = serial(); // draws from the device RNG
    // Channel counts that fit no SIMD width, three blocks, a 7-d embedding, 3 classes; fresh weights. The last
    // map has 3 rows: pooled whole, over time in 3 bands, and in 2 uneven bands (rows 0-1 and 1-2, as burn's
    // adaptive pool overlaps them), with and without the standard deviation.
    let dev = Device::flex();
    dev.seed(11); // fresh weights this small can leave every embedding unit dead; these ones do not
    // Each also with the last two and all three blocks' maps joined (multi-level pooling).
    let pools = [
        Pool::Global,
        Pool::Time { rows: 3, std: false },
        Pool::Time { rows: 3, std: true },
        Pool::Time { rows: 2, std: true },
    ];
    for (pool, pool_blocks) in pools.into_iter().flat_map(|p| [(p, 1), (p, 2), (p, 3)]) {
        let arch = ArchConfig { channels: vec![3, 5, 6], embedding_dim: 7, dropout: 0.0, pool, pool_blocks, context: None, song_power: 1.0, song_whitening: None };
        arch.validate(24, 40).unwrap();
        let folded = SoundNet::new(&arch, 3, &dev).fold_batch_norm();
        let engine = CpuNet::from_folded(&folded);
        let (n, h, w) = (4, 24, 40);
        let x = burn::tensor::Tensor::<4>::random([n, 1, h, w], burn::tensor::Distribution::Uniform(0.0, 1.0), &dev);
        let data = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let emb = folded.forward_embedding(x, None);
        let probs = burn::tensor::activation::softmax(folded.head_logits(emb.clone()), 1).into_data().try_to_vec::<f32>().unwrap();
        let emb = emb.into_data().try_to_vec::<f32>().unwrap();
        let (e2, p2) = engine.forward(&data, h, w, None);
        assert_eq!((e2.len(), p2.len()), (n * 7, n * 3));
        let (worst, scale) = worst_diff(&emb, &e2);
        assert!(scale > 0.0 && worst < 1e-5 * scale.max(1.0), "{pool:?} x {pool_blocks}: embedding differs by {worst} (scale {scale})");
        assert!(worst_diff(&probs, &p2).0 < 1e-5, "{pool:?} x {pool_blocks}");
    }
}

/// A spectrogram of `n_mels x n_frames` whose every value is `f(m, t)`.
fn mel_of(n_mels: usize, n_frames: usize, f: impl Fn(usize, usize) -> f32) -> LogMel {
    LogMel { n_mels, n_frames, data: (0..n_mels * n_frames).map(|i| f(i / n_frames.max(1), i % n_frames.max(1))).collect() }
}

#[test]
fn the_song_context_reaches_the_dense_layer_the_same_way_on_every_path() {
    let _g = serial(); // draws from the device RNG
    let dev = Device::flex();
    dev.seed(11);
    let songs: Vec<LogMel> = (0..6).map(|k| mel_of(24, 90, |m, t| -70.0 + 5.0 * k as f32 + ((m * 31 + t * 17 + k) % 23) as f32 - m as f32)).collect();
    let mut context = SongContext::log_mel(4);
    context.fit(&songs.iter().map(|m| context.raw(m, None)).collect::<Vec<_>>());
    assert_eq!((context.mean.len(), context.std.len()), (8, 8));
    let arch = ArchConfig { channels: vec![3, 5, 6], embedding_dim: 7, dropout: 0.0, pool: Pool::Time { rows: 3, std: true }, pool_blocks: 1, context: Some(context), song_power: 1.0, song_whitening: None };
    arch.validate(24, 40).unwrap();
    let net = burn::module::Module::valid(&SoundNet::new(&arch, 3, &dev));
    assert_eq!(net.dense_inputs(), 6 * 3 * 2 + 8); // 6 channels x 3 bands x mean and spread, then the context
    let folded = net.fold_batch_norm();
    let engine = CpuNet::from_folded(&folded);
    let (n, h, w) = (3, 24, 40);
    let x = burn::tensor::Tensor::<4>::random([n, 1, h, w], burn::tensor::Distribution::Uniform(0.0, 1.0), &dev);
    let data = x.clone().into_data().try_to_vec::<f32>().unwrap();
    let mut seen: Vec<Vec<f32>> = Vec::new();
    for song in &songs[..3] {
        let ctx = folded.song_context(song, None).unwrap();
        assert_eq!(Some(&ctx), net.song_context(song, None).as_ref());
        let rows = || Some(soundalike_model::infer::context_rows(&ctx, n, &dev));
        let plain = net.forward_embedding(x.clone(), rows()).into_data().try_to_vec::<f32>().unwrap();
        let emb = folded.forward_embedding(x.clone(), rows()).into_data().try_to_vec::<f32>().unwrap();
        let (e2, _) = engine.forward(&data, h, w, Some(&ctx));
        for other in [&plain, &e2] {
            let (worst, scale) = worst_diff(&emb, other);
            assert!(scale > 0.0 && worst < 1e-5 * scale.max(1.0), "paths differ by {worst} (scale {scale})");
        }
        seen.push(e2);
    }
    // The same tiles in other songs give other embeddings: the context is read.
    assert!(worst_diff(&seen[0], &seen[1]).0 > 1e-3 && worst_diff(&seen[1], &seen[2]).0 > 1e-3);
}

#[test]
fn the_song_context_of_odd_songs_is_finite_and_bounded() {
    let mut context = SongContext::log_mel(8);
    let typical: Vec<LogMel> = (0..5).map(|k| mel_of(32, 200, |m, t| -40.0 - m as f32 + ((t * 7 + m + k) % 13) as f32)).collect();
    context.fit(&typical.iter().map(|m| context.raw(m, None)).collect::<Vec<_>>());
    let odd = [
        ("digital silence", mel_of(32, 200, |_, _| -100.0)),
        ("a very quiet master", mel_of(32, 200, |m, t| -135.0 + ((t + m) % 5) as f32)),
        ("a clipped master", mel_of(32, 200, |_, t| if t % 2 == 0 { 30.0 } else { 29.0 })),
        ("shorter than a tile", mel_of(32, 3, |m, _| -50.0 - m as f32)),
        ("no frames", mel_of(32, 0, |_, _| 0.0)),
        ("one band", mel_of(32, 200, |m, _| if m == 5 { 0.0 } else { -80.0 })),
    ];
    for (what, mel) in &odd {
        let v = context.of(mel, None);
        assert_eq!(v.len(), 16, "{what}");
        assert!(v.iter().all(|x| x.is_finite() && x.abs() <= CONTEXT_CLIP), "{what}: {v:?}");
    }
    // Silence and a clipped master sit at the clamp: they cannot outweigh the tiles by more than it allows.
    assert!(context.of(&odd[0].1, None).iter().take(8).all(|&x| x == -CONTEXT_CLIP), "silence reads as the quietest");
    assert!(context.of(&odd[2].1, None).iter().take(8).all(|&x| x == CONTEXT_CLIP), "a clipped master as the loudest");
    // A typical song is not at the clamp.
    assert!(context.of(&typical[2], None).iter().all(|x| x.abs() < CONTEXT_CLIP));
}

#[test]
fn a_network_with_a_song_context_trains_saves_and_embeds_odd_songs() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (train_set, val) = sets();
    let mut cfg = config();
    cfg.arch.pool = Pool::Time { rows: 2, std: true };
    cfg.arch.context = Some(SongContext::log_mel(4));
    let dev = Device::flex();
    // Half the crops train without their context (the training mean in its place).
    let o = TrainOptions { mixup: 0.5, context_dropout: 0.5, ..opts(3) };
    let job = TrainJob { out_dir: dir.path(), config: &cfg, train: &train_set, val: &val, opts: &o, resume: false, device: &dev };
    let summary = train(job, &mut |_| {}, &|_| false).unwrap();
    // Dropping every crop's context is refused: the layer would never see one.
    let all = TrainOptions { context_dropout: 1.0, ..opts(1) };
    let never = tempfile::tempdir().unwrap();
    let job = TrainJob { out_dir: never.path(), config: &cfg, train: &train_set, val: &val, opts: &all, resume: false, device: &dev };
    let refused = train(job, &mut |_| {}, &|_| false).err().expect("a context dropout of 1 is refused");
    assert!(refused.to_string().contains("context dropout"), "{refused}");
    // Training filled in the training songs' statistics, and the saved model carries them.
    let saved = summary.config.arch.context.clone().unwrap();
    assert_eq!((saved.mean.len(), saved.std.len()), (8, 8));
    let m = load_model(dir.path(), &dev).unwrap();
    assert_eq!(m.config.arch.context.as_ref(), Some(&saved));
    assert!(summary.best_val.song_accuracy > 0.5, "{:?}", summary.best_val);
    // The fused path and burn's give the same vector for every song, odd ones included.
    let odd = [mel_of(32, 96, |_, _| -100.0), mel_of(32, 96, |m, t| -140.0 + ((m + t) % 3) as f32), mel_of(32, 96, |_, _| 20.0), mel_of(32, 5, |m, _| -30.0 - m as f32)];
    for mel in val.iter().map(|s| &s.mel).chain(&odd) {
        let (fused, burn) = (m.infer_tiles_fused(mel), m.infer_tiles_burn(mel, &dev));
        assert!(worst_diff(&burn.embeddings, &fused.embeddings).0 < 1e-4);
        let v = m.embed_mel(mel, &dev).vector;
        assert!(v.iter().all(|x| x.is_finite()));
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(norm == 0.0 || (norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    // A config whose statistics do not fit its bands is refused.
    let mut bad = m.config.arch.clone();
    bad.context.as_mut().unwrap().mean.pop();
    assert!(bad.validate(32, 32).unwrap_err().to_string().contains("song context"));
}

#[test]
fn a_network_with_a_musicnn_context_reads_the_taggers_vector() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mut train_set, val) = sets();
    let d = musicnn::PENULTIMATE;
    // A made-up tagger vector that knows each song's class; a few songs have none (they read the mean).
    let tagger = |id: usize, label: usize| -> Vec<f32> { (0..d).map(|k| if k % 2 == label { 1.0 } else { 0.0 } + ((id * 31 + k * 7) % 13) as f32 / 13.0).collect() };
    for (i, s) in train_set.iter_mut().enumerate().skip(3) {
        s.tagger_vec = tagger(i, s.label);
    }
    let mut cfg = config();
    cfg.arch.pool = Pool::Time { rows: 2, std: true };
    cfg.arch.context = Some(SongContext::musicnn(false));
    let dev = Device::flex();
    // No training song with a vector: refused, naming why.
    let bare: Vec<LabelledSong> = train_set.iter().map(|s| LabelledSong { tagger_vec: vec![], ..s.clone() }).collect();
    let never = tempfile::tempdir().unwrap();
    let job = TrainJob { out_dir: never.path(), config: &cfg, train: &bare, val: &val, opts: &opts(1), resume: false, device: &dev };
    let refused = train(job, &mut |_| {}, &|_| false).err().expect("a musicnn context without vectors is refused");
    assert!(refused.to_string().contains("tagger's vectors"), "{refused}");
    let o = TrainOptions { context_dropout: 0.25, ..opts(3) };
    let job = TrainJob { out_dir: dir.path(), config: &cfg, train: &train_set, val: &val, opts: &o, resume: false, device: &dev };
    let summary = train(job, &mut |_| {}, &|_| false).unwrap();
    // Fitted on the 21 songs with a vector: the mean of dimension 0 is the share of class-0 songs plus noise.
    let saved = summary.config.arch.context.clone().unwrap();
    assert_eq!((saved.source, saved.mean.len(), saved.std.len()), (ContextSource::Musicnn, d, d));
    let with: Vec<&LabelledSong> = train_set.iter().filter(|s| !s.tagger_vec.is_empty()).collect();
    let mean0 = with.iter().map(|s| s.tagger_vec[0]).sum::<f32>() / with.len() as f32;
    assert!((saved.mean[0] - mean0).abs() < 1e-5, "{} vs {mean0}", saved.mean[0]);
    let m = load_model(dir.path(), &dev).unwrap();
    assert!(m.needs_tagger(), "a musicnn context needs the tagger at embed time");
    assert!(m.analysis_extras(Default::default()).power_mel.is_some());
    let mel = &val[0].mel;
    let (a, b) = (m.embed_mel_with(mel, Some(&tagger(1, 0)), &dev).vector, m.embed_mel_with(mel, Some(&tagger(1, 1)), &dev).vector);
    assert!(worst_diff(&a, &b).0 > 1e-3, "the tagger's vector reaches the embedding");
    // Without a usable vector the context is the training mean: the same embedding as the mean itself.
    let at_mean = m.embed_mel_with(mel, Some(&saved.mean), &dev).vector;
    let mut nan = tagger(1, 0);
    nan[5] = f32::NAN;
    for missing in [None, Some(&nan[..]), Some(&nan[..10])] {
        let v = m.embed_mel_with(mel, missing, &dev).vector;
        assert!(v.iter().all(|x| x.is_finite()));
        assert!(worst_diff(&v, &at_mean).0 < 1e-6);
    }
    // The tagger gives MSD's penultimate, then MTT's: an MSD context reads the first 200, a joined one all 400.
    let v400: Vec<f32> = (0..2 * d).map(|i| i as f32).collect();
    let both = SongContext::musicnn(true);
    assert_eq!((both.features(), both.needs_tagger()), (2 * d, true));
    assert_eq!(SongContext::musicnn(false).raw(mel, Some(&v400)), v400[..d].to_vec());
    assert_eq!(both.raw(mel, Some(&v400)), v400);
    assert_eq!(both.raw(mel, Some(&v400[..d])), vec![0.0; 2 * d], "too short: the mean (none fitted yet: zeros)");
    // The tagger's values and the log-mel's statistics together: the tagger's first, then the band means and
    // spreads, each part standardised with its own floor, the statistics there with or without a vector.
    let mut joint = SongContext::musicnn_and_log_mel(false, 4);
    assert_eq!((joint.features(), joint.tagger_features(), joint.needs_tagger()), (d + 8, d, true));
    let stats = SongContext::log_mel(4).raw(mel, None);
    let raw = joint.raw(mel, Some(&v400));
    assert_eq!((&raw[..d], &raw[d..]), (&v400[..d], &stats[..]));
    assert_eq!(&joint.raw(mel, None)[d..], &stats[..], "no vector: the statistics stay");
    let quiet = mel_of(mel.n_mels, mel.n_frames, |m, t| mel.data[m * mel.n_frames + t] - 30.0);
    let mut raws = vec![raw.clone(), joint.raw(&quiet, Some(&v400))];
    raws[1][0] += 1e-4; // the tagger's dimension 0 barely varies: floored at 1e-3, not at 0.5 dB
    joint.fit(&raws);
    assert!((joint.std[0] - 1e-3).abs() < 1e-9 && joint.std[d..d + 4].iter().all(|&s| (s - 15.0).abs() < 1e-3), "{:?}", &joint.std[d..]);
    let z = joint.of(mel, Some(&v400));
    assert!((z[0] + 0.05).abs() < 1e-3 && z[1..d].iter().all(|&x| x == 0.0), "the tagger's part: {:?}", &z[..4]);
    assert!(z[d..d + 4].iter().all(|&x| (x - 1.0).abs() < 1e-4) && z[d + 4..].iter().all(|&x| x == 0.0), "the statistics: {:?}", &z[d..]);
    assert_eq!(joint.of(mel, None)[..d], vec![0.0; d][..], "no vector: the tagger's part at its mean");
    let mut arch = m.config.arch.clone();
    arch.context = Some(joint.clone());
    arch.validate(32, 32).unwrap();
    arch.context.as_mut().unwrap().bands = 33;
    assert!(arch.validate(32, 32).unwrap_err().to_string().contains("33 bands"));
    // A config with a log-mel context's band count and a musicnn source is checked by its statistics' length.
    let mut bad = m.config.arch.clone();
    bad.context.as_mut().unwrap().std.pop();
    assert!(bad.validate(32, 32).unwrap_err().to_string().contains("song context"));
}

#[test]
fn a_pool_with_more_bands_than_the_last_map_has_rows_is_refused() {
    // 4 blocks on 128 mel bands leave 8 rows.
    let arch = |rows| ArchConfig { pool: Pool::Time { rows, std: true }, ..ArchConfig::default() };
    assert!(arch(8).validate(128, 128).is_ok());
    assert!(arch(9).validate(128, 128).unwrap_err().to_string().contains("8 rows"));
    assert!(arch(0).validate(128, 128).is_err());
    // A config written before the pool existed reads as the global pool, and a global pool is not written.
    let old: ArchConfig = serde_json::from_str(r#"{"channels":[16,32,64,128],"embedding_dim":128,"dropout":0.3}"#).unwrap();
    assert_eq!(old, ArchConfig::default());
    assert!(!serde_json::to_string(&old).unwrap().contains("pool"));
    assert!(!serde_json::to_string(&old).unwrap().contains("context"), "no song context is not written");
    let new = serde_json::to_string(&arch(8)).unwrap();
    assert_eq!(serde_json::from_str::<ArchConfig>(&new).unwrap(), arch(8));
    // Pooling more blocks than the network has, or none, is refused; the count round-trips and is written
    // only when it is not 1 (so older readers see the configs they know).
    let levels = |pool_blocks| ArchConfig { pool_blocks, ..arch(8) };
    assert!(levels(4).validate(128, 128).is_ok());
    assert!(levels(5).validate(128, 128).unwrap_err().to_string().contains("has 4"));
    assert!(levels(0).validate(128, 128).is_err());
    assert_eq!(old.pool_blocks, 1);
    assert!(!new.contains("pool_blocks"));
    let four = serde_json::to_string(&levels(4)).unwrap();
    assert!(four.contains("\"pool_blocks\":4"), "{four}");
    assert_eq!(serde_json::from_str::<ArchConfig>(&four).unwrap(), levels(4));
}

#[test]
fn pooling_several_blocks_feeds_each_one_to_the_dense_layer() {
    let _g = serial(); // draws from the device RNG
    // 8 bands with spread on 16/32/64/128 channels: 2,048 dense inputs from the last block, 3,840 from all four
    // (that the joined features are the right ones, in the right order, is checked against the fused engine
    // above).
    let dev = Device::flex();
    for (pool_blocks, inputs) in [(1, 2048), (2, 3072), (4, 3840)] {
        let arch = ArchConfig { pool: Pool::Time { rows: 8, std: true }, pool_blocks, ..ArchConfig::default() };
        arch.validate(128, 128).unwrap();
        let net = SoundNet::new(&arch, 3, &dev);
        assert_eq!(net.dense_inputs(), inputs, "pool_blocks {pool_blocks}");
    }
}

/// Mean cosine of same-attribute pairs minus different-attribute pairs of `songs`' embeddings.
fn separation(m: &soundalike_model::LoadedModel, songs: &[LabelledSong], attr: &[usize], dev: &Device) -> f32 {
    let v: Vec<Vec<f32>> = songs.iter().map(|s| m.embed_mel(&s.mel, dev).vector).collect();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let (mut same, mut diff, mut ns, mut nd) = (0f32, 0f32, 0, 0);
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            if attr[i] == attr[j] {
                same += dot(&v[i], &v[j]);
                ns += 1;
            } else {
                diff += dot(&v[i], &v[j]);
                nd += 1;
            }
        }
    }
    same / ns as f32 - diff / nd as f32
}

/// Songs whose attribute `b = i % 2` (energy low or high, `song(i, b)`) the class label (`(i / 2) % 2`) knows
/// nothing of; `extra` gives each song the targets that may carry it. Returns the songs and their attributes.
fn attribute_songs(range: std::ops::Range<usize>, extra: impl Fn(usize, usize, &mut LabelledSong)) -> (Vec<LabelledSong>, Vec<usize>) {
    range
        .map(|i| {
            let b = i % 2;
            let mut s = song(i, b);
            s.label = (i / 2) % 2;
            extra(i, b, &mut s);
            (s, b)
        })
        .unzip()
}

/// Tag distillation shapes the embedding: with class labels that carry nothing about where a song's energy
/// sits, only the tag head (soft targets that do) can teach the embedding to tell the two apart. The group
/// head trains too, and the saved model is the plain network (it loads and embeds like any other).
#[test]
fn tag_and_group_heads_teach_the_embedding_and_are_not_saved() {
    let _g = serial();
    let dev = Device::flex();
    // Attribute: energy low or high (song(i, b)); label: unrelated to it.
    let mk = |range: std::ops::Range<usize>| {
        attribute_songs(range, |i, b, s| {
            s.tags = if b == 0 { vec![0.9, 0.1, 0.5] } else { vec![0.1, 0.9, 0.5] };
            s.group = Some(i % 3);
            s.teacher_vec = if b == 0 { vec![1.0, -1.0] } else { vec![-1.0, 1.0] };
        })
    };
    let (train_set, _) = mk(0..24);
    let (val, attr) = mk(100..112);
    let run = |tag_weight: f32, group_weight: f32, song_weight: f32, vec_weight: f32| {
        let dir = tempfile::tempdir().unwrap();
        let o = TrainOptions { tag_weight, group_weight, song_weight, vec_weight, ..opts(5) };
        let s = train(TrainJob { out_dir: dir.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
        let m = load_model(dir.path(), &dev).unwrap();
        assert_eq!(m.config.labels.len(), 2, "the saved model has the class head only");
        (separation(&m, &val, &attr, &dev), s, dir)
    };
    let (plain, _, _) = run(0.0, 0.0, 0.0, 0.0);
    let (tagged, _, _) = run(4.0, 0.0, 0.0, 0.0);
    assert!(tagged > plain + 0.05, "with tags {tagged}, without {plain}");
    let (taught, s, dir) = run(4.0, 0.5, 0.5, 1.0);
    assert!(taught > plain + 0.05, "with every head {taught}, without {plain}");
    assert!(s.state.history.iter().all(|h| h.train_loss.is_finite()));
    // The checkpoint holds the heads, so a resume continues the same multi-task run.
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("checkpoint/state.json")).unwrap()).unwrap();
    assert_eq!(state["options"]["tag_weight"], 4.0);
}

/// The contrastive loss is the SupCon formula: checked against a plain computation on random embeddings,
/// and lower when positives point the same way than when they are orthogonal.
#[test]
fn supcon_loss_is_the_formula_and_rewards_aligned_positives() {
    let dev = Device::flex();
    let (b, d, temp) = (6usize, 4usize, 0.2f32);
    let emb: Vec<f32> = (0..b * d).map(|i| (((i * 7919) % 97) as f32 / 48.5) - 1.0).collect();
    // Rows 0-1 and 2-3-4 are positives of each other; row 5 has none (it only counts as a negative).
    let key = [0, 0, 1, 1, 1, 2];
    let pos: Vec<f32> = (0..b * b).map(|ij| ((ij / b != ij % b) && key[ij / b] == key[ij % b]) as u8 as f32).collect();
    use burn::tensor::{Tensor, TensorData};
    let t2 = |v: Vec<f32>, r: usize, c: usize| Tensor::<2>::from_data(TensorData::new(v, [r, c]), &dev);
    let loss = |e: &[f32]| -> f32 {
        let l = supcon_loss(t2(e.to_vec(), b, d), t2(pos.clone(), b, b), temp);
        l.into_data().try_into_vec::<f32>().unwrap()[0]
    };
    let reference = |e: &[f32]| -> f32 {
        let z: Vec<Vec<f32>> = e.chunks(d).map(|r| {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter().map(|x| x / n).collect()
        }).collect();
        let (mut total, mut anchors) = (0f32, 0f32);
        for i in 0..b {
            let s: Vec<f32> = (0..b).map(|j| z[i].iter().zip(&z[j]).map(|(x, y)| x * y).sum::<f32>() / temp).collect();
            let lse = (0..b).filter(|&j| j != i).map(|j| s[j].exp()).sum::<f32>().ln();
            let ps: Vec<usize> = (0..b).filter(|&j| j != i && key[j] == key[i]).collect();
            if !ps.is_empty() {
                total += -ps.iter().map(|&j| s[j] - lse).sum::<f32>() / ps.len() as f32;
                anchors += 1.0;
            }
        }
        total / anchors
    };
    let (got, want) = (loss(&emb), reference(&emb));
    assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "burn {got}, formula {want}");
    // Positives sharing a direction (one axis per key) score lower than the same rows scrambled.
    let aligned: Vec<f32> = (0..b).flat_map(|i| (0..d).map(move |k| if k == key[i] { 1.0 } else { 0.05 })).collect();
    let scrambled: Vec<f32> = (0..b).flat_map(|i| (0..d).map(move |k| if k == i % d { 1.0 } else { 0.05 })).collect();
    assert!(loss(&aligned) < loss(&scrambled) - 1.0, "aligned {}, scrambled {}", loss(&aligned), loss(&scrambled));
}

/// The contrastive term teaches the embedding through works: with class labels unrelated to an attribute,
/// songs grouped into works by that attribute end up closer together than without the term.
#[test]
fn the_contrastive_term_pulls_renderings_of_a_work_together() {
    let _g = serial();
    let dev = Device::flex();
    let mk = |range: std::ops::Range<usize>, works: bool| -> (Vec<LabelledSong>, Vec<usize>) {
        range
            .map(|i| {
                let b = i % 2;
                let mut s = song(i, b);
                s.label = (i / 2) % 2;
                // Four works per attribute value: every work's renderings share where their energy sits.
                s.work = works.then_some(b * 4 + (i / 2) % 4);
                (s, b)
            })
            .unzip()
    };
    let (train_set, _) = mk(0..24, true);
    let (val, attr) = mk(100..112, false);
    let run = |contrast_weight: f32, contrast_groups: bool, train_set: &[LabelledSong]| {
        let dir = tempfile::tempdir().unwrap();
        let o = TrainOptions { contrast_weight, contrast_groups, batch_size: 7, ..opts(5) };
        let s = train(TrainJob { out_dir: dir.path(), config: &config(), train: train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
        assert!(s.state.history.iter().all(|h| h.train_loss.is_finite()));
        separation(&load_model(dir.path(), &dev).unwrap(), &val, &attr, &dev)
    };
    let (plain, contrast) = (run(0.0, false, &train_set), run(2.0, false, &train_set));
    assert!(contrast > plain + 0.05, "with the contrastive term {contrast}, without {plain}");
    // The same through groups instead of works (supervised contrastive learning of the group).
    let by_group: Vec<LabelledSong> = train_set.iter().map(|s| LabelledSong { work: None, group: s.work.map(|w| w / 4), ..s.clone() }).collect();
    let grouped = run(2.0, true, &by_group);
    assert!(grouped > plain + 0.05, "with groups as positives {grouped}, without the term {plain}");
    // A temperature of 0 or a negative weight is refused before training.
    for o in [TrainOptions { contrast_weight: 1.0, contrast_temperature: 0.0, ..opts(1) }, TrainOptions { contrast_weight: -1.0, ..opts(1) }] {
        let dir = tempfile::tempdir().unwrap();
        let r = train(TrainJob { out_dir: dir.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false);
        assert!(r.is_err_and(|e| e.to_string().contains("temperature must be > 0") || e.to_string().contains("loss weights")));
    }
    // Groups as positives need songs with a group.
    let dir = tempfile::tempdir().unwrap();
    let o = TrainOptions { contrast_weight: 1.0, contrast_groups: true, ..opts(1) };
    let r = train(TrainJob { out_dir: dir.path(), config: &config(), train: &val, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false);
    assert!(r.is_err_and(|e| e.to_string().contains("need songs with a group")));
}

#[test]
fn tempo_and_eq_augmentation_keep_the_tile_sane() {
    use soundalike_model::data::{eq_tilt, write_tile, write_tile_stretched};
    let s = song(3, 0);
    let (h, w) = (s.mel.n_mels, 32);
    let (mut a, mut b) = (vec![0f32; h * w], vec![0f32; h * w]);
    write_tile(&s.mel, 10, w, &mut a);
    write_tile_stretched(&s.mel, 10, w, 1.0, &mut b);
    assert_eq!(a, b, "rate 1 is the plain tile");
    // Faster (rate > 1) reads more frames; near the end it moves back instead of padding with silence.
    write_tile_stretched(&s.mel, s.mel.n_frames - w, w, 1.08, &mut b);
    assert!(b.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!((0..h).all(|m| b[m * w + w - 1] > 0.0 || b[m * w + w - 2] > 0.0), "no silent last frame");
    // EQ tilt: the middle band unchanged, the top raised, the bottom lowered, silence kept silent.
    let mut t = a.clone();
    t[0] = 0.0;
    let before = t.clone();
    eq_tilt(&mut t, h, w, 6.0);
    assert_eq!(t[0], 0.0);
    let mid = h / 2;
    let mean = |v: &[f32], m: usize| v[m * w..(m + 1) * w].iter().sum::<f32>() / w as f32;
    assert!(mean(&t, h - 1) > mean(&before, h - 1) - 1e-6 && mean(&t, 1) < mean(&before, 1));
    assert!((mean(&t, mid) - mean(&before, mid)).abs() < 0.01);
}

#[test]
fn a_network_too_deep_for_its_tiles_is_refused_before_it_can_panic() {
    let arch = ArchConfig::default(); // 4 blocks: tiles must be at least 16 x 16
    assert!(arch.validate(128, 128).is_ok());
    assert!(arch.validate(16, 16).is_ok());
    for (h, w) in [(1, 128), (128, 1), (8, 128), (15, 16)] {
        let e = arch.validate(h, w).unwrap_err().to_string();
        assert!(e.contains("too small") && e.contains("at least 16"), "{h}x{w}: {e}");
    }
    assert!(ArchConfig { channels: vec![], ..ArchConfig::default() }.validate(128, 128).is_err());
    assert!(ArchConfig { dropout: 1.0, ..ArchConfig::default() }.validate(128, 128).is_err());
    assert!(ArchConfig { embedding_dim: 0, ..ArchConfig::default() }.validate(128, 128).is_err());
    // Training refuses it up front (it used to pass validation and panic in the fused path).
    let _g = serial();
    let cfg = ModelConfig::new("tiny", FrontendConfig { n_mels: 1, tile_frames: 32, tile_hop: 16, ..Default::default() }, small_arch(), vec!["a".into(), "b".into()], "x");
    let (train_set, val) = sets();
    let dir = tempfile::tempdir().unwrap();
    let r = train(TrainJob { out_dir: dir.path(), config: &cfg, train: &train_set, val: &val, opts: &opts(1), resume: false, device: &Device::flex() }, &mut |_| {}, &|_| false);
    assert!(r.is_err_and(|e| e.to_string().contains("too small")));
    // And a saved config that asks for it is refused on load.
    let trained = config();
    let out = tempfile::tempdir().unwrap();
    train(TrainJob { out_dir: out.path(), config: &trained, train: &train_set, val: &val, opts: &opts(1), resume: false, device: &Device::flex() }, &mut |_| {}, &|_| false).unwrap();
    let p = out.path().join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["frontend"]["tile_frames"] = 2.into();
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(load_config(out.path()).is_err_and(|e| e.to_string().contains("too small")));
}

#[test]
fn a_crop_regresses_the_patches_it_overlaps_weighted_by_the_overlap() {
    let p = |start_s: f32, end_s: f32, vec: Vec<f32>| TeacherPatch { start_s, end_s, vec };
    let patches = [p(0.0, 3.0, vec![1.0, 0.0]), p(3.0, 6.0, vec![0.0, 1.0])];
    let close = |a: Vec<f32>, b: [f32; 2]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(close(patch_target(&patches, 0.0, 3.0).unwrap(), [1.0, 0.0]));
    assert!(close(patch_target(&patches, 1.5, 4.5).unwrap(), [0.5, 0.5]));
    assert!(close(patch_target(&patches, 2.0, 5.0).unwrap(), [1.0 / 3.0, 2.0 / 3.0]));
    // Touching a patch's end is no overlap; past the last patch there is no target.
    assert!(close(patch_target(&patches, 3.0, 5.0).unwrap(), [0.0, 1.0]));
    assert_eq!(patch_target(&patches, 6.0, 9.0), None);
    assert_eq!(patch_target(&[], 0.0, 3.0), None);
}

/// Relational distillation: the teacher's side is each pair's distance over the mean distance of the pairs
/// that count; the loss is 0 when the student's embeddings have the teacher's geometry (whatever their scale),
/// and larger the further they are from it.
#[test]
fn relational_distillation_matches_distances_up_to_scale() {
    let dev = Device::flex();
    use burn::tensor::{Tensor, TensorData};
    let t2 = |v: Vec<f32>, r: usize, c: usize| Tensor::<2>::from_data(TensorData::new(v, [r, c]), &dev);
    // Rows 0 and 3 point one way, 1 another, 2 has no teacher vector.
    let (b, d) = (4, 3);
    let teacher = vec![1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 9.0, 9.0, 9.0, 3.0, 0.0, 0.0];
    let mask = [1.0, 1.0, 0.0, 1.0];
    let (dist, pairs) = relation_targets(&teacher, &mask, d);
    let counted: Vec<(usize, usize)> = (0..b * b).filter(|&ij| pairs[ij] > 0.0).map(|ij| (ij / b, ij % b)).collect();
    assert_eq!(counted, vec![(0, 1), (0, 3), (1, 0), (1, 3), (3, 0), (3, 1)]);
    let mean = counted.iter().map(|&(i, j)| dist[i * b + j]).sum::<f32>() / counted.len() as f32;
    assert!((mean - 1.0).abs() < 1e-5, "distances are over their mean: {mean}");
    // 0 and 3 share a direction (distance ~0); 0 and 1 are orthogonal (sqrt 2 before the division).
    assert!(dist[3] < 0.02 && (dist[1] - dist[b + 3]).abs() < 1e-6 && dist[1] > 1.4, "{dist:?}");
    let loss = |e: Vec<f32>| relation_loss(t2(e, b, d), t2(dist.clone(), b, b), t2(pairs.clone(), b, b)).into_data().try_into_vec::<f32>().unwrap()[0];
    // The teacher's own vectors, scaled, score ~0 (row 2, without a target, may be anything).
    let same: Vec<f32> = teacher.iter().enumerate().map(|(i, v)| if i / d == 2 { 0.3 } else { 5.0 * v }).collect();
    assert!(loss(same) < 1e-6);
    // Rows 0 and 3 apart, 1 close to 0: far from the teacher's geometry.
    let wrong = vec![1.0, 0.0, 0.0, 1.0, 0.1, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0];
    assert!(loss(wrong) > 0.3);
}

/// The relational term alone (no regression head) and the regression from per-crop teacher patches (no song
/// vector) each teach the embedding an attribute that only the teacher's vectors carry.
#[test]
fn relational_term_and_teacher_patches_teach_the_embedding() {
    let _g = serial();
    let dev = Device::flex();
    let mk = |range: std::ops::Range<usize>, patches: bool| -> (Vec<LabelledSong>, Vec<usize>) {
        range
            .map(|i| {
                let b = i % 2;
                let mut s = song(i, b);
                s.label = (i / 2) % 2;
                let v = if b == 0 { vec![1.0, -1.0, 0.2] } else { vec![-1.0, 1.0, 0.2] };
                if patches {
                    // Two halves of the song, the same vector: any crop overlaps them.
                    s.teacher_patches = vec![TeacherPatch { start_s: 0.0, end_s: 500.0, vec: v.clone() }, TeacherPatch { start_s: 500.0, end_s: 1000.0, vec: v }];
                } else {
                    s.teacher_vec = v;
                }
                (s, b)
            })
            .unzip()
    };
    let (val, attr) = mk(100..112, false);
    let run = |train_set: &[LabelledSong], vec_weight: f32, relation_weight: f32| {
        let dir = tempfile::tempdir().unwrap();
        let o = TrainOptions { vec_weight, relation_weight, ..opts(5) };
        train(TrainJob { out_dir: dir.path(), config: &config(), train: train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
        separation(&load_model(dir.path(), &dev).unwrap(), &val, &attr, &dev)
    };
    let (by_song, _) = mk(0..24, false);
    let (by_patch, _) = mk(0..24, true);
    let plain = run(&by_song, 0.0, 0.0);
    let related = run(&by_song, 0.0, 5.0);
    assert!(related > plain + 0.05, "relational term {related}, none {plain}");
    let patched = run(&by_patch, 1.0, 0.0);
    assert!(patched > plain + 0.05, "teacher patches {patched}, none {plain}");
    // Without any teacher vector the relational term is refused.
    let (bare, _) = mk(0..24, false);
    let bare: Vec<LabelledSong> = bare.into_iter().map(|s| LabelledSong { teacher_vec: vec![], ..s }).collect();
    let dir = tempfile::tempdir().unwrap();
    let o = TrainOptions { relation_weight: 1.0, ..opts(1) };
    let e = train(TrainJob { out_dir: dir.path(), config: &config(), train: &bare, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("needs teacher vectors")), "{e:?}");
}

/// Mixup's row mixing: each mixed row is `lam * own + (1 - lam) * other` of the rows as they were before any
/// mixing (a pair mixed both ways reads the originals), and a row whose pair lacks the target keeps its own.
#[test]
fn mix_rows_mixes_from_the_unmixed_rows_and_respects_the_mask() {
    let mut v = vec![1.0, 0.0, 0.0, 1.0, 4.0, 4.0];
    mix_rows(&mut v, 2, &[(0, 1, 0.75), (1, 0, 0.5)], None);
    assert_eq!(v, vec![0.75, 0.25, 0.5, 0.5, 4.0, 4.0]);
    let mut v = vec![1.0, 0.0, 0.0, 1.0, 4.0, 4.0];
    let mask = [1.0, 1.0, 0.0];
    mix_rows(&mut v, 2, &[(0, 2, 0.6), (2, 1, 0.6), (1, 0, 0.6)], Some(&mask));
    // Rows 0 and 2 pair with row 2, which lacks the target: unchanged. Row 1 mixes with row 0.
    let want = [1.0, 0.0, 0.4, 0.6, 4.0, 4.0];
    assert!(v.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{v:?}");
    // Width 0 (a target that is not trained) and no mixes leave everything alone.
    let mut e: Vec<f32> = vec![];
    mix_rows(&mut e, 0, &[(0, 1, 0.5)], None);
    let mut v = vec![1.0, 2.0];
    mix_rows(&mut v, 1, &[], None);
    assert_eq!(v, vec![1.0, 2.0]);
}

/// Training with mixup: it still learns the separable task, the same seed gives the same model, it is not
/// the model trained without mixup, and a share outside [0, 1] or beside the contrastive term is refused.
#[test]
fn mixup_trains_reproducibly_and_is_checked() {
    let _g = serial();
    let dev = Device::flex();
    let (train_set, val) = sets();
    let run = |mixup: f32| {
        let dir = tempfile::tempdir().unwrap();
        let o = TrainOptions { mixup, ..opts(4) };
        let s = train(TrainJob { out_dir: dir.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).unwrap();
        let m = load_model(dir.path(), &dev).unwrap();
        (s.best_val.song_accuracy, m.embed_mel(&val[0].mel, &dev).vector)
    };
    let (acc, mixed) = run(1.0);
    assert!(acc >= 0.9, "val song accuracy with mixup {acc}");
    assert_eq!(run(1.0).1, mixed, "same seed, same model");
    assert_ne!(run(0.0).1, mixed, "mixup changed nothing");
    for (o, why) in [(TrainOptions { mixup: 1.5, ..opts(1) }, "in [0, 1]"), (TrainOptions { mixup: 0.5, contrast_weight: 1.0, ..opts(1) }, "do not go together")] {
        let dir = tempfile::tempdir().unwrap();
        let e = train(TrainJob { out_dir: dir.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains(why)), "{e:?}");
    }
}

/// Cosine heads: the logits are the scale times the cosine between each embedding row and each weight
/// column (checked by hand); scale 0 is the plain linear layer; a cosine group head teaches the embedding
/// its groups' attribute as the plain head does; a negative scale is refused.
#[test]
fn cosine_heads_are_scaled_cosines_and_teach_the_embedding() {
    use burn::nn::LinearConfig;
    use burn::tensor::{Tensor, TensorData};
    let _g = serial();
    let dev = Device::flex();
    let head = LinearConfig::new(3, 2).init(&dev);
    let w = head.weight.val().into_data().try_into_vec::<f32>().unwrap(); // [3, 2], row-major
    let emb = vec![1.0f32, 2.0, 2.0, 0.0, 3.0, 4.0];
    let e = Tensor::<2>::from_data(TensorData::new(emb.clone(), [2, 3]), &dev);
    let got = head_logits(&head, e.clone(), 10.0).into_data().try_into_vec::<f32>().unwrap();
    for r in 0..2 {
        for c in 0..2 {
            let col: Vec<f32> = (0..3).map(|k| w[k * 2 + c]).collect();
            let row = &emb[r * 3..r * 3 + 3];
            let dot: f32 = row.iter().zip(&col).map(|(a, b)| a * b).sum();
            let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let want = 10.0 * dot / (n(row) * n(&col));
            assert!((got[r * 2 + c] - want).abs() < 1e-4, "logit {r},{c}: {} vs {want}", got[r * 2 + c]);
        }
    }
    assert_eq!(head_logits(&head, e.clone(), 0.0).into_data(), head.forward(e).into_data());
    // The group attribute (energy low or high) is what the groups carry; the class label carries nothing of it.
    let mk = |range: std::ops::Range<usize>| attribute_songs(range, |i, b, s| s.group = Some(b * 2 + (i / 4) % 2));
    let (train_set, _) = mk(0..24);
    let (val, attr) = mk(100..112);
    let run = |group_weight: f32, cosine_scale: f32| {
        let dir = tempfile::tempdir().unwrap();
        let o = TrainOptions { group_weight, cosine_scale, ..opts(5) };
        train(TrainJob { out_dir: dir.path(), config: &config(), train: &train_set, val: &val, opts: &o, resume: false, device: &dev }, &mut |_| {}, &|_| false).map(|_| separation(&load_model(dir.path(), &dev).unwrap(), &val, &attr, &dev))
    };
    let plain = run(0.0, 0.0).unwrap();
    let linear = run(2.0, 0.0).unwrap();
    let cosine = run(2.0, 5.0).unwrap();
    assert!(cosine > plain + 0.05, "cosine group head {cosine}, linear {linear}, none {plain}");
    let e = run(1.0, -1.0).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("must be >= 0")), "{e:?}");
}

/// Issue 31, item 4: model errors a caller can act on, each naming the file.
#[test]
fn model_errors_are_typed_and_name_the_file() {
    let dev = device_from_name("cpu").unwrap();
    let d = tempfile::tempdir().unwrap();
    // A mistyped path: not found, not "incompatible".
    let missing = d.path().join("modles/default");
    let e = load_model(&missing, &dev).err().unwrap();
    assert!(matches!(&e, ModelError::NotFound(p) if p == &missing), "{e:?}");
    assert!(e.to_string().contains("no soundalike model here"), "{e}");
    // Not a model config.
    let bad = d.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("config.json"), b"{\"hello\": 1}").unwrap();
    let e = load_model(&bad, &dev).err().unwrap();
    assert!(matches!(&e, ModelError::Format { path, .. } if path.ends_with("config.json")), "{e:?}");
    // Weights that are not the config's.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
    let mixed = d.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(shipped.join("config.json"), mixed.join("config.json")).unwrap();
    let mut w = std::fs::read(shipped.join("model.bpk")).unwrap();
    let last = w.len() - 1;
    w[last] ^= 1;
    std::fs::write(mixed.join("model.bpk"), &w).unwrap();
    let e = load_model(&mixed, &dev).err().unwrap();
    assert!(matches!(&e, ModelError::Mismatch { path, .. } if path.ends_with("model.bpk")), "{e:?}");
    // A device this build does not have.
    assert!(matches!(device_from_name("tpu"), Err(ModelError::UnknownDevice { name, .. }) if name == "tpu"));
    // The shipped model loads.
    assert!(load_model(&shipped, &dev).is_ok());
}
