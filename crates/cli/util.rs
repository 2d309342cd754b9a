//! Shared helpers: presets, progress bars, catalogs, and the `spectrogram` command.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use soundalike_audio::{analyze_file, output, FrontendConfig};
use soundalike_library::{load_catalog, scan_library, CatalogEntry, LabelOptions, SongFile};

use crate::args::{LabelArgs, Preset, SpectrogramArgs};

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

/// Scans `library` and reads labels/metadata as the flags say.
/// Files and what is known of them. With `tags`, songs without a CSV or folder label take their genre tag
/// as the label (training, splits, evaluation); `embed` reads tags while decoding instead.
pub fn catalog(library: &Path, labels: &LabelArgs, tags: bool) -> Result<(Vec<SongFile>, Vec<CatalogEntry>)> {
    let files = scan_library(library).with_context(|| format!("cannot scan library {}", library.display()))?;
    let opts = LabelOptions {
        csv: labels.labels.clone(),
        label_column: Some(labels.label_column.clone()),
        group_column: labels.group_column.clone(),
        key_columns: vec![],
    };
    let mut entries = load_catalog(&files, &opts)?;
    if tags {
        soundalike_library::fill_tag_labels(&files, &mut entries);
    }
    Ok((files, entries))
}

/// `soundalike spectrogram FILE [--npy] [--png] [--tiles-png]`.
pub fn spectrogram(a: SpectrogramArgs) -> Result<ExitCode> {
    let cfg = frontend(a.preset);
    let an = analyze_file(&a.file, &cfg)?;
    let tiles = an.tiles(&cfg);
    println!(
        "{}: {:.2} s, {} Hz, {} ch -> log-mel [{} mels x {} frames], {:.1}..{:.1} dB, {} tiles of {} frames{}",
        a.file.display(),
        an.info.duration_s,
        an.info.sample_rate,
        an.info.channels,
        an.mel.n_mels,
        an.mel.n_frames,
        an.mel.min(),
        an.mel.max(),
        tiles.n_tiles,
        cfg.tile_frames,
        if an.info.skipped_packets > 0 { format!(", {} corrupt packets skipped", an.info.skipped_packets) } else { String::new() }
    );
    if let Some(p) = &a.npy {
        output::write_npy(p, &an.mel)?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &a.png {
        output::write_png(p, &an.mel)?;
        println!("wrote {}", p.display());
    }
    if let Some(d) = &a.tiles_png {
        let written = output::write_tile_pngs(d, &tiles)?;
        println!("wrote {} tiles to {}", written.len(), d.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `K/N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (k, n) = s.split_once('/').context("--shard must look like K/N, e.g. 0/4")?;
    let (k, n): (usize, usize) = (k.trim().parse().context("shard K")?, n.trim().parse().context("shard N")?);
    anyhow::ensure!(n > 0 && k < n, "--shard {s}: need 0 <= K < N");
    Ok((k, n))
}
