//! `evaluate`: a model's song-level metrics on a labelled library's test split and held-out groups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use soundalike_dataset::{SpectrogramCache, SplitAssignment, Splits};

use rayon::prelude::*;
use soundalike_model::musicnn;

use crate::commands::tags::tag_file;
use crate::flags::LabelArgs;
use crate::training::{build_cache, print_report, songs_for};
use crate::util::scan_with_labels;

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// Model folder.
    pub model: PathBuf,
    /// Library folder.
    pub library: PathBuf,
    #[command(flatten)]
    pub labels: LabelArgs,
    /// Split file (default: the model's split.json).
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Cache folder.
    #[arg(long, default_value = ".soundalike-cache")]
    pub cache: PathBuf,
    /// Compute device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EvaluateArgs) -> Result<ExitCode> {
    let device = soundalike_model::device_from_name(&a.device)?;
    let model = soundalike_model::load_model(&a.model, &device)?;
    let split_path = a.split.clone().unwrap_or_else(|| a.model.join("split.json"));
    let splits: Splits = serde_json::from_slice(&std::fs::read(&split_path).with_context(|| format!("cannot read split {}", split_path.display()))?)
        .with_context(|| format!("{}: not a split file", split_path.display()))?;
    let (files, entries) = scan_with_labels(&a.library, &a.labels, true)?;
    let cache = SpectrogramCache::open(&a.cache, &model.config.frontend)?;
    let fps = build_cache(&cache, &files);
    let labels = &model.config.labels;
    let w = model.config.frontend.tile_frames;
    let mut out = serde_json::Map::new();
    for (name, part) in [("test", SplitAssignment::Test), ("holdout", SplitAssignment::Holdout)] {
        let mut songs = songs_for(part, &splits, &files, &entries, &fps, &cache, labels)?;
        if model.needs_tagger() {
            // The network's song context is the tagger's penultimate: computed from each file as `embed` does.
            let paths: HashMap<&str, &Path> = files.iter().map(|f| (f.rel_path.as_str(), f.path.as_path())).collect();
            songs.par_iter_mut().for_each(|s| {
                if let Some(Ok((_, v, _))) = paths.get(s.id.as_str()).map(|p| tag_file(p, musicnn::EMBED_PLAN)) {
                    s.tagger_vec = v;
                }
            });
        }
        let r = soundalike_model::evaluate(&model.net, &songs, labels, w, w, &device);
        if !a.json {
            print_report(name, &r);
        }
        out.insert(name.into(), serde_json::to_value(&r)?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}
