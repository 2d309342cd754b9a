//! Shared helpers: presets, progress bars, scanning a library with its labels, shard specs.

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use soundalike_audio::FrontendConfig;
use soundalike_dataset::{load_labels, scan_library, SongLabels, LabelOptions, SongFile};

use crate::flags::{LabelArgs, Preset};

pub fn frontend(preset: Preset) -> FrontendConfig {
    match preset {
        Preset::Default => FrontendConfig::default(),
        Preset::Original2017 => FrontendConfig::original_2017(),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal, e.g. in CI logs).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// How the label flags read a CSV.
pub fn label_options(labels: &LabelArgs) -> LabelOptions {
    LabelOptions {
        csv: labels.labels.clone(),
        label_column: Some(labels.label_column.clone()),
        group_column: labels.group_column.clone(),
        key_columns: vec![],
    }
}

/// Scans `library` and reads labels/metadata as the flags say.
/// Files and what is known of them. With `tags`, songs without a CSV or folder label take their genre tag
/// as the label (training, splits, evaluation); `embed` reads tags while decoding instead.
pub fn scan_with_labels(library: &Path, labels: &LabelArgs, tags: bool) -> Result<(Vec<SongFile>, Vec<SongLabels>)> {
    let files = scan_library(library).with_context(|| format!("cannot scan library {}", library.display()))?;
    let mut entries = load_labels(&files, &label_options(labels))?;
    if tags {
        soundalike_dataset::fill_tag_labels(&files, &mut entries);
    }
    Ok((files, entries))
}

/// Parses `K/N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (k, n) = s.split_once('/').context("--shard must look like K/N, e.g. 0/4")?;
    let (k, n): (usize, usize) = (k.trim().parse().context("shard K")?, n.trim().parse().context("shard N")?);
    anyhow::ensure!(n > 0 && k < n, "--shard {s}: need 0 <= K < N");
    Ok((k, n))
}

/// The URL from the flag, else $SOUNDALIKE_DB, else $DATABASE_URL.
pub fn db_url(flag: Option<&str>) -> Result<String> {
    flag.map(str::to_string)
        .or_else(|| std::env::var("SOUNDALIKE_DB").ok())
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .filter(|u| !u.trim().is_empty())
        .context("say which database: --db postgres://USER:PASSWORD@HOST:PORT/DATABASE (or set SOUNDALIKE_DB)")
}
