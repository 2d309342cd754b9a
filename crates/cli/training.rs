//! What `cache`, `split`, `train` and `evaluate` share: the spectrogram cache of a library, its split, the
//! songs of one part, and the metrics table.

use anyhow::{bail, Context, Result};
use serde_json::json;
use soundalike_dataset::{split_songs, split_songs_by_unit, SongFile, SongLabels, SpectrogramCache, SplitAssignment, SplitOptions, Splits};
use soundalike_model::{EvalReport, LabelledSong};

use crate::flags::{LabelArgs, SplitOpts};
use crate::util::bar;

/// Builds the cache for `files` with a progress bar; returns fingerprints (None = failed) and prints failures.
pub fn build_cache(cache: &SpectrogramCache, files: &[SongFile]) -> Vec<Option<String>> {
    let pb = bar(files.len() as u64, "spectrograms");
    let (fps, report) = cache.build(files, &|_| pb.inc(1));
    pb.finish_and_clear();
    eprintln!("spectrograms: {} computed, {} from cache, {} failed", report.computed, report.reused, report.failed.len());
    for (f, why) in &report.failed {
        eprintln!("  skipped {f}: {why}");
    }
    fps
}

/// Each file's value of `column` in the labels CSV (matched to files as the labels are).
pub fn column_of(files: &[SongFile], labels: &LabelArgs, column: &str) -> Result<std::collections::HashMap<String, String>> {
    let opts = soundalike_dataset::LabelOptions { group_column: Some(column.to_string()), ..crate::util::label_options(labels) };
    let rows = soundalike_dataset::load_labels(files, &opts).with_context(|| format!("reading column {column:?} of the labels CSV"))?;
    Ok(rows.into_iter().filter_map(|e| Some((e.rel_path, e.group?))).collect())
}

/// Song-level splits, or, with --split-column, splits that keep the songs of one work in one part.
pub fn make_splits(files: &[SongFile], entries: &[SongLabels], labels: &LabelArgs, s: &SplitOpts) -> Result<Splits> {
    let opts = SplitOptions { seed: s.seed, val_fraction: s.val_fraction, test_fraction: s.test_fraction, holdout_groups: s.holdout_groups.clone() };
    let songs: Vec<(String, String, Option<String>)> =
        entries.iter().filter_map(|e| Some((e.rel_path.clone(), e.label.clone()?, e.group.clone()))).collect();
    if songs.is_empty() {
        bail!("no labelled songs: name a CSV with --labels/--label-column, or lay the library out as <label>/<song>");
    }
    let Some(col) = &s.split_column else { return Ok(split_songs(&songs, &opts)?) };
    anyhow::ensure!(labels.labels.is_some(), "--split-column needs --labels (a CSV)");
    let unit_of = column_of(files, labels, col)?;
    let songs: Vec<_> = songs.into_iter().map(|(id, l, g)| {
        let unit = unit_of.get(&id).cloned();
        (id, l, g, unit)
    }).collect();
    Ok(split_songs_by_unit(&songs, &opts)?)
}

pub fn counts(splits: &Splits) -> serde_json::Value {
    json!({
        "train": splits.ids(SplitAssignment::Train).len(),
        "val": splits.ids(SplitAssignment::Val).len(),
        "test": splits.ids(SplitAssignment::Test).len(),
        "holdout": splits.ids(SplitAssignment::Holdout).len(),
    })
}

/// Loads the cached spectrograms of the songs in `part`, labelled by index into `labels`.
pub fn songs_for(
    part: SplitAssignment,
    splits: &Splits,
    files: &[SongFile],
    entries: &[SongLabels],
    fps: &[Option<String>],
    cache: &SpectrogramCache,
    labels: &[String],
) -> Result<Vec<LabelledSong>> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if splits.assignment.get(&e.rel_path) != Some(&part) {
            continue;
        }
        let (Some(fp), Some(label)) = (&fps[i], &e.label) else { continue };
        let Some(li) = labels.iter().position(|l| l == label) else { continue };
        let c = cache.load(fp).with_context(|| format!("cache entry of {}", files[i].rel_path))?;
        out.push(LabelledSong::new(e.rel_path.clone(), li, c.mel));
    }
    Ok(out)
}

pub fn print_report(name: &str, r: &EvalReport) {
    if r.n_songs == 0 {
        println!("{name}: no songs");
        return;
    }
    println!(
        "{name}: {} songs / {} tiles | song acc {:.1}% | tile acc {:.1}% | macro-F1 {:.3} | chance: majority {:.1}%, uniform {:.1}%",
        r.n_songs,
        r.n_tiles,
        100.0 * r.song_accuracy,
        100.0 * r.tile_accuracy,
        r.song_macro_f1,
        100.0 * r.chance_majority,
        100.0 * r.chance_uniform
    );
    for (c, acc) in &r.per_class_accuracy {
        if let Some(acc) = acc {
            println!("    {c:<28} {:5.1}%", 100.0 * acc);
        }
    }
}
