//! `whiten`: a copy of a model whose song vectors are whitened by a map fitted on a store's vectors (what
//! `train --whiten` does at the end of training, for a model that is already trained), or, with `--remove`,
//! a copy of a whitened model without its map (plain song vectors, or a start for a map fitted on other songs).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use soundalike_dataset::write_atomic;
use soundalike_recommend::Store;

#[derive(Args, Debug)]
pub struct WhitenArgs {
    /// The model to start from (it is not changed).
    #[arg(long)]
    pub model: PathBuf,
    /// A store embedded with that model: the map is fitted on its song vectors.
    #[arg(long, required_unless_present = "remove")]
    pub store: Option<PathBuf>,
    /// The new model folder (must not exist yet, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Strength A: 1 gives every direction of the song vectors the same variance, 0.5 goes half way (on a
    /// log scale), 0 only centres them.
    #[arg(long, default_value_t = 1.0, value_name = "A")]
    pub strength: f32,
    /// Fit on these songs of the store only: a model's `split.json` (its training songs) or a text file of
    /// song ids, one per line.
    #[arg(long)]
    pub songs: Option<PathBuf>,
    /// Write a copy of a whitened model without its map instead (same weights, plain song vectors, the
    /// fingerprint of the model it was made from). To search your own library, keep the shipped map: one
    /// refitted on the library searched did worse (docs/guide.md).
    #[arg(long, conflicts_with_all = ["store", "songs", "strength"])]
    pub remove: bool,
}

/// Refuses a whitening strength outside [0, 1] (`flag` names the option in the message).
pub fn check_strength(flag: &str, a: f32) -> Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&a), "{flag} is how far the song vectors are whitened: give a number from 0 (only centred) to 1 (fully whitened), not {a}");
    Ok(())
}

/// Says so when a whitening of `dim` dimensions was fitted on too few songs to see them all.
pub fn warn_if_few(fitted_on: usize, dim: usize) {
    if fitted_on <= dim {
        eprintln!("warning: whitening fitted on {fitted_on} songs for {dim} dimensions: the directions beyond the first {} are guesses", fitted_on.saturating_sub(1));
    }
}

/// The song ids of `path`: a model's split.json (its training songs) or one id per line.
fn read_ids(path: &std::path::Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let Some(assignment) = v.get("assignment").and_then(|a| a.as_object()) else {
            bail!("{}: not a split.json (no \"assignment\" of song ids to parts)", path.display());
        };
        return Ok(assignment.iter().filter(|(_, part)| part.as_str() == Some("train")).map(|(id, _)| id.clone()).collect());
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// Writes the weights, the report (`whitening.json`) and the config into `out`: weights first, config last,
/// since the folder is a model once its config exists.
fn write_copy(out: &std::path::Path, weights: &[u8], report: &serde_json::Value, config: &soundalike_model::ModelConfig) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(&out.join("model.bpk"), weights)?;
    write_atomic(&out.join("whitening.json"), &serde_json::to_vec_pretty(report)?)?;
    write_atomic(&out.join("config.json"), &soundalike_model::config_json(config)?)?;
    Ok(())
}

pub fn run(a: WhitenArgs) -> Result<ExitCode> {
    check_strength("--strength", a.strength)?;
    let cfg = soundalike_model::load_config(&a.model)?;
    if a.out.exists() && std::fs::read_dir(&a.out).with_context(|| format!("cannot read {}", a.out.display()))?.next().is_some() {
        bail!("{}: already exists and is not empty; give a new folder for the {} model", a.out.display(), if a.remove { "unwhitened" } else { "whitened" });
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if a.remove {
        if cfg.arch.song_whitening.is_none() {
            bail!("{}: this model's song vectors are not whitened; there is no map to remove", a.model.display());
        }
        let weights = soundalike_model::read_weights(&a.model, &cfg)?;
        let new_cfg = soundalike_model::with_song_whitening(cfg.clone(), &weights, None)?;
        let report = json!({
            "from_model": a.model.display().to_string(),
            "from_fingerprint": cfg.fingerprint,
            "removed": true,
            "fingerprint": new_cfg.fingerprint,
            "command": command,
        });
        write_copy(&a.out, &weights, &report, &new_cfg)?;
        println!("model without song whitening written to {} (fingerprint {}): plain song vectors; `soundalike whiten --model {} --store STORE --out NEW` fits a new map on a store embedded with it", a.out.display(), new_cfg.fingerprint, a.out.display());
        return Ok(ExitCode::SUCCESS);
    }
    if cfg.arch.song_whitening.is_some() {
        bail!(
            "{}: this model's song vectors are whitened already; start from the model it was made from, or from a copy without the map (`soundalike whiten --model {} --remove --out PLAIN`), embedded anew",
            a.model.display(),
            a.model.display()
        );
    }
    let weights = soundalike_model::read_weights(&a.model, &cfg)?;
    let store_path = a.store.as_deref().context("--store is needed to fit a whitening")?;
    let store = Store::open(store_path)?;
    if store.header.model_fingerprint != cfg.fingerprint {
        bail!(
            "{}: embedded with model {} ({}), not with {} ({}); embed the songs with the model you whiten",
            store_path.display(),
            store.header.model_name,
            store.header.model_fingerprint,
            cfg.name,
            cfg.fingerprint
        );
    }
    let wanted = a.songs.as_deref().map(read_ids).transpose()?;
    let mut rows = Vec::new();
    for s in store.songs().filter(|s| wanted.as_ref().is_none_or(|w| w.contains(&s.id))) {
        rows.extend_from_slice(&s.vector);
    }
    if let (Some(w), Some(p)) = (&wanted, &a.songs) {
        anyhow::ensure!(!rows.is_empty(), "{}: none of its {} songs is in {}", p.display(), w.len(), store_path.display());
    }
    let dim = cfg.arch.embedding_dim;
    let fit = soundalike_model::Whitening::fit(&rows, dim, a.strength).with_context(|| format!("{}: fitting the whitening", store_path.display()))?;
    if let (Some(w), Some(p)) = (&wanted, &a.songs) {
        if fit.fitted_on < w.len() {
            eprintln!("{} of the {} songs of {} are not in the store (or have no vector): fitted on the other {}", w.len() - fit.fitted_on, w.len(), p.display(), fit.fitted_on);
        }
    }
    let fitted_on = fit.fitted_on;
    warn_if_few(fitted_on, dim);
    let new_cfg = soundalike_model::with_song_whitening(cfg.clone(), &weights, Some(fit))?;
    let report = json!({
        "from_model": a.model.display().to_string(),
        "from_fingerprint": cfg.fingerprint,
        "store": store_path.display().to_string(),
        "songs": a.songs.as_ref().map(|p| p.display().to_string()),
        "fitted_on": fitted_on,
        "strength": a.strength,
        "fingerprint": new_cfg.fingerprint,
        "command": command,
    });
    write_copy(&a.out, &weights, &report, &new_cfg)?;
    println!("whitened model written to {} (strength {}, fitted on {} songs, fingerprint {})", a.out.display(), a.strength, fitted_on, new_cfg.fingerprint);
    Ok(ExitCode::SUCCESS)
}
