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

/// The widest line [`config_json`] fills an array of numbers to.
const CONFIG_WIDTH: usize = 120;

/// `config` as `config.json` holds it: pretty-printed, but with every array of plain numbers (the labels'
/// weights, the whitening map's mean and 128 x 128 matrix) filled onto lines of at most 120 columns rather
/// than one number per line, so the settings stay readable above the numbers. The values are exactly
/// those of `serde_json::to_vec_pretty`: reading either gives the same config.
pub fn config_json(config: &ModelConfig) -> serde_json::Result<Vec<u8>> {
    Ok(fill_number_arrays(&serde_json::to_vec_pretty(config)?, CONFIG_WIDTH))
}

/// Pretty-printed JSON with each array that holds only scalars (no string, array or object) filled onto
/// lines of at most `width` columns (one line when it fits; a longer one starts on the next line, indented
/// two more, and its `]` gets a line of its own). Strings are copied as they are, brackets in them included.
fn fill_number_arrays(json: &[u8], width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut i, mut in_string) = (0, false);
    while i < json.len() {
        let c = json[i];
        i += 1;
        if in_string {
            out.push(c);
            match c {
                b'\\' => {
                    out.extend(json.get(i));
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        in_string = c == b'"';
        let flat_end = (c == b'[').then(|| json[i..].iter().position(|b| matches!(b, b']' | b'[' | b'{' | b'"'))).flatten().filter(|&n| json[i + n] == b']');
        let Some(n) = flat_end else {
            out.push(c);
            continue;
        };
        let items: Vec<&[u8]> = json[i..i + n].split(|&b| b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty()).collect();
        i += n + 1;
        let line_start = out.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let indent = out[line_start..].iter().take_while(|&&b| b == b' ').count();
        let one_line = items.iter().map(|t| t.len() + 2).sum::<usize>() + 1;
        if out.len() - line_start + one_line <= width {
            out.push(b'[');
            out.extend(items.join(&b", "[..]));
            out.push(b']');
            continue;
        }
        out.push(b'[');
        let mut col = width;
        for (k, t) in items.iter().enumerate() {
            if col + t.len() + 2 > width {
                out.push(b'\n');
                out.extend(std::iter::repeat_n(b' ', indent + 2));
                col = indent + 2;
            } else {
                out.push(b' ');
                col += 1;
            }
            out.extend_from_slice(t);
            col += t.len();
            if k + 1 < items.len() {
                out.push(b',');
                col += 1;
            }
        }
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', indent));
        out.push(b']');
    }
    out
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
    write_atomic(&config_path, &config_json(&cfg).map_err(|e| ModelError::format(&config_path, e))?)?;
    Ok(cfg)
}

/// Sets (or, with `None`, removes) the song-vector whitening of the model saved in `dir`
/// ([`ArchConfig::song_whitening`]) and rewrites its `config.json` atomically with the fingerprint that
/// goes with it. Returns the new config.
pub fn set_song_whitening(dir: &Path, whitening: Option<soundalike_vectors::Whitening>) -> Result<ModelConfig> {
    let config_path = dir.join("config.json");
    let config = load_config(dir)?;
    let bytes = read_weights(dir, &config)?;
    let cfg = with_song_whitening(config, &bytes, whitening).map_err(|e| ModelError::format(&config_path, e))?;
    write_atomic(&config_path, &config_json(&cfg).map_err(|e| ModelError::format(&config_path, e))?)?;
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

/// The bytes of `dir`'s `model.bpk`, refused when their fingerprint is not `config`'s (a mixed-up folder
/// must not be rewritten under a fresh fingerprint that would match them).
pub fn read_weights(dir: &Path, config: &ModelConfig) -> Result<Vec<u8>> {
    let wp = dir.join("model.bpk");
    let bytes = std::fs::read(&wp).map_err(|e| ModelError::io(&wp, e))?;
    check_weights(config, &bytes, &wp)?;
    Ok(bytes)
}

/// Refuses weights (`wp` names them in the error) whose fingerprint does not match `config`.
fn check_weights(config: &ModelConfig, bytes: &[u8], wp: &Path) -> Result<()> {
    let fp = fingerprint_bytes(bytes, &config.arch);
    if fp != config.fingerprint {
        return Err(ModelError::Mismatch {
            path: wp.to_path_buf(),
            reason: format!("weights fingerprint {fp} does not match config.json ({}); the model directory is mixed up", config.fingerprint),
        });
    }
    Ok(())
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
    check_weights(&config, &bytes, &wp)?;
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| ModelError::format(&wp, e))?;
    let net = SoundNet::new(&config.arch, config.labels.len(), device).try_load_record(record).map_err(|e| ModelError::format(&wp, e))?;
    let net = net.valid();
    let folded = net.fold_batch_norm();
    let engine = crate::fast::cpu_infer::CpuNet::from_folded(&folded);
    Ok(LoadedModel { config, net, folded, engine, dir: dir.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::fill_number_arrays;

    #[test]
    fn number_arrays_are_filled_and_nothing_else_changes() {
        let long: Vec<f64> = (0..300).map(|i| f64::from(i) * -0.25).collect();
        let doc = serde_json::json!({
            "empty": [],
            "long": long,
            "name": "a \"[1, 2]\" in a string, and \\ too",
            "nested": [[1, 2], [3, 4]],
            "objects": [{"a": [true, null]}],
            "short": [1, 2.5, -3e-7],
            "words": ["x", "y"],
        });
        let pretty = serde_json::to_vec_pretty(&doc).unwrap();
        let filled = fill_number_arrays(&pretty, 80);
        let text = String::from_utf8(filled.clone()).unwrap();
        // The same document, in far fewer lines, none wider than asked.
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&filled).unwrap(), doc);
        assert!(text.lines().count() * 4 < String::from_utf8(pretty).unwrap().lines().count(), "{text}");
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        // Short arrays of scalars on one line; arrays of arrays, objects or strings as serde_json wrote them.
        assert!(text.contains("\"short\": [1, 2.5, -3e-7],"), "{text}");
        assert!(text.contains("\"nested\": [\n    [1, 2],\n    [3, 4]\n  ],"), "{text}");
        assert!(text.contains("\"a\": [true, null]"), "{text}");
        assert!(text.contains("\"words\": [\n    \"x\",\n    \"y\"\n  ]"), "{text}");
        assert!(text.contains("\"empty\": [],"), "{text}");
        assert!(text.contains(r#""name": "a \"[1, 2]\" in a string, and \\ too","#), "{text}");
        // A long one starts on the next line, indented under its key, and closes on a line of its own.
        assert!(text.contains("\"long\": [\n    -0.0, -0.25, -0.5,"), "{text}");
        assert!(text.contains("-74.75\n  ],\n"), "{text}");
    }

    #[test]
    fn the_shipped_config_is_as_config_json_writes_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
        let cfg = super::load_config(&dir).unwrap();
        let (shipped, written) = (std::fs::read(dir.join("config.json")).unwrap(), super::config_json(&cfg).unwrap());
        assert!(shipped == written, "models/default/config.json is not what config_json writes for the config it holds ({} bytes against {})", shipped.len(), written.len());
        // Only a long string may make a line wider than the numbers' lines.
        assert!(String::from_utf8(written).unwrap().lines().all(|l| l.len() <= super::CONFIG_WIDTH || l.trim_end_matches(',').ends_with('"')));
    }
}
