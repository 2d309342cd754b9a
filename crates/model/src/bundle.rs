//! The model directory: `config.json` (front end + architecture + labels + fingerprint), `model.bpk`
//! (burnpack weights), `metrics.json`. Loading checks the format version and the weights' fingerprint.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use soundalike_audio::FrontendConfig;

use crate::{ArchConfig, ModelError, Result, SoundNet};

/// Version of the model directory format.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// Everything needed to rebuild the network and feed it exactly what it was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// [`MODEL_FORMAT_VERSION`].
    pub format_version: u32,
    /// Model name.
    pub name: String,
    /// Spectrogram and tiling settings used in training (and therefore in embedding).
    pub frontend: FrontendConfig,
    /// Network shape.
    pub arch: ArchConfig,
    /// Class names, in output order.
    pub labels: Vec<String>,
    /// What the labels are (e.g. `source`, `teacher_genre (musicnn tagger guess, not ground truth)`).
    pub label_description: String,
    /// BLAKE3 of the weights file (first 16 hex digits); stamped into every store made with the model.
    pub fingerprint: String,
}

impl ModelConfig {
    /// A config for a new model; the fingerprint is set on save.
    pub fn new(name: &str, frontend: FrontendConfig, arch: ArchConfig, labels: Vec<String>, label_description: &str) -> Self {
        ModelConfig {
            format_version: MODEL_FORMAT_VERSION,
            name: name.into(),
            frontend,
            arch,
            labels,
            label_description: label_description.into(),
            fingerprint: String::new(),
        }
    }
}

/// A loaded model, ready for inference.
pub struct LoadedModel {
    /// Its config.
    pub config: ModelConfig,
    /// The network, in inference mode.
    pub net: SoundNet,
    /// The same network with batch norm folded into the convolutions: what embedding runs on a GPU.
    pub folded: crate::model::FoldedNet,
    /// The folded network's weights for the fused CPU path: what embedding runs on the CPU.
    pub engine: crate::fast::cpu_infer::CpuNet,
    /// Where it was loaded from.
    pub dir: PathBuf,
}

/// The model's fingerprint: its weights' hash, and, where the song vectors are power-normalised
/// (`ArchConfig::song_power` other than 1) or whitened (`ArchConfig::song_whitening`), that power and that
/// map too, so stores made with the same weights but other song vectors are told apart (a model with the
/// plain mean keeps its weights-only fingerprint).
fn fingerprint_bytes(b: &[u8], arch: &ArchConfig) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b);
    if arch.song_power != 1.0 {
        h.update(b"song_power");
        h.update(&arch.song_power.to_le_bytes());
    }
    if let Some(w) = &arch.song_whitening {
        h.update(b"song_whitening");
        h.update(&w.alpha.to_le_bytes());
        for x in w.mean.iter().chain(&w.matrix) {
            h.update(&x.to_le_bytes());
        }
    }
    h.finalize().to_hex()[..16].to_string()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    soundalike_core::write_atomic(path, bytes).map_err(|e| ModelError::io(path, e))
}

/// Saves `net` and `config` into `dir` (weights first, config last: a model dir is valid once its config
/// exists). Returns the config with its fingerprint set.
pub fn save_model(dir: &Path, net: &SoundNet, config: &ModelConfig) -> Result<ModelConfig> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let tmp = dir.join(format!(".model.{}.bpk.tmp", std::process::id()));
    net.clone().save_file(&tmp).map_err(|e| ModelError::io(&tmp, std::io::Error::other(e.to_string())))?;
    // burn may append its own extension; find what it wrote.
    let written = if tmp.exists() { tmp.clone() } else { tmp.with_extension("bpk") };
    let bytes = std::fs::read(&written).map_err(|e| ModelError::io(&written, e))?;
    let final_path = dir.join("model.bpk");
    std::fs::rename(&written, &final_path).map_err(|e| ModelError::io(&final_path, e))?;
    let mut cfg = config.clone();
    cfg.fingerprint = fingerprint_bytes(&bytes, &cfg.arch);
    let config_path = dir.join("config.json");
    write_atomic(&config_path, &serde_json::to_vec_pretty(&cfg).map_err(|e| ModelError::format(&config_path, e))?)?;
    Ok(cfg)
}

/// Sets (or, with `None`, removes) the song-vector whitening of the model saved in `dir`
/// ([`ArchConfig::song_whitening`]) and rewrites its `config.json` atomically with the fingerprint that
/// goes with it. Returns the new config.
pub fn set_song_whitening(dir: &Path, whitening: Option<soundalike_vectors::Whitening>) -> Result<ModelConfig> {
    let config_path = dir.join("config.json");
    let wp = dir.join("model.bpk");
    let bytes = std::fs::read(&wp).map_err(|e| ModelError::io(&wp, e))?;
    let cfg = with_song_whitening(load_config(dir)?, &bytes, whitening).map_err(|e| ModelError::format(&config_path, e))?;
    write_atomic(&config_path, &serde_json::to_vec_pretty(&cfg).map_err(|e| ModelError::format(&config_path, e))?)?;
    Ok(cfg)
}

/// `config` with its song-vector whitening set to `whitening` (checked against its width) and the
/// fingerprint that goes with `weights` (the bytes of its `model.bpk`) and that whitening.
pub fn with_song_whitening(mut config: ModelConfig, weights: &[u8], whitening: Option<soundalike_vectors::Whitening>) -> Result<ModelConfig> {
    config.arch.song_whitening = whitening;
    config.arch.validate(config.frontend.n_mels, config.frontend.tile_frames)?;
    config.fingerprint = fingerprint_bytes(weights, &config.arch);
    Ok(config)
}

/// Reads `config.json` only (cheap: for checking stores against a model).
pub fn load_config(dir: &Path) -> Result<ModelConfig> {
    let p = dir.join("config.json");
    let b = std::fs::read(&p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::NotFound(dir.to_path_buf()),
        _ => ModelError::io(&p, e),
    })?;
    parse_config(&b, &p)
}

/// A `config.json`'s bytes, checked (`path` names it in errors).
fn parse_config(b: &[u8], p: &Path) -> Result<ModelConfig> {
    let cfg: ModelConfig = serde_json::from_slice(b).map_err(|e| ModelError::format(p, format!("not a soundalike model config: {e}")))?;
    if cfg.format_version != MODEL_FORMAT_VERSION {
        return Err(ModelError::format(p, format!("model format version {} but this soundalike reads version {MODEL_FORMAT_VERSION}", cfg.format_version)));
    }
    cfg.frontend.validate().map_err(|e| ModelError::format(p, e))?;
    cfg.arch.validate(cfg.frontend.n_mels, cfg.frontend.tile_frames).map_err(|e| ModelError::format(p, e))?;
    Ok(cfg)
}

/// Loads a model directory onto `device`, refusing weights whose fingerprint does not match the config.
pub fn load_model(dir: &Path, device: &Device) -> Result<LoadedModel> {
    let config = load_config(dir)?;
    let wp = dir.join("model.bpk");
    let bytes = std::fs::read(&wp).map_err(|e| ModelError::io(&wp, e))?;
    load_parts(config, bytes, dir, device)
}

/// Loads a model from the bytes of its `config.json` and `model.bpk` (a model built into a program, as
/// the Python package carries the default one), with the same checks as [`load_model`]; `dir` is where
/// it is said to come from, in errors and in [`LoadedModel::dir`].
pub fn load_model_bytes(config: &[u8], weights: Vec<u8>, dir: &Path, device: &Device) -> Result<LoadedModel> {
    let config = parse_config(config, &dir.join("config.json"))?;
    load_parts(config, weights, dir, device)
}

fn load_parts(config: ModelConfig, bytes: Vec<u8>, dir: &Path, device: &Device) -> Result<LoadedModel> {
    let wp = dir.join("model.bpk");
    let fp = fingerprint_bytes(&bytes, &config.arch);
    if fp != config.fingerprint {
        return Err(ModelError::Mismatch {
            path: wp,
            reason: format!("weights fingerprint {fp} does not match config.json ({}); the model directory is mixed up", config.fingerprint),
        });
    }
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| ModelError::format(&wp, e))?;
    let net = SoundNet::new(&config.arch, config.labels.len(), device).try_load_record(record).map_err(|e| ModelError::format(&wp, e))?;
    let net = net.valid();
    let folded = net.fold_batch_norm();
    let engine = crate::fast::cpu_infer::CpuNet::from_folded(&folded);
    Ok(LoadedModel { config, net, folded, engine, dir: dir.to_path_buf() })
}
