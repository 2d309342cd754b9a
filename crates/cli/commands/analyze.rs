//! `analyze FILE...`: a file's tempo, key and loudness, without a store or a model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use rayon::prelude::*;
use serde_json::json;
use soundalike_audio::facts::Facts;
use soundalike_audio::{analyze_file_with_facts, FrontendConfig};

use crate::output::{facts_json, key_cell, lufs_cell};

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Audio files (any format the decoder reads).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per file (every candidate tempo, the key in each notation, loudness).
    #[arg(long)]
    pub json: bool,
}

/// A file's facts and its seconds, or why it could not be read.
type Analysed = Result<(Facts, f64), String>;

/// A file's facts as `analyze --json` prints them.
pub fn file_facts_json(file: &std::path::Path, f: &Facts, seconds: f64) -> serde_json::Value {
    let mut j = facts_json(f);
    j["file"] = json!(file.display().to_string());
    j["duration_s"] = json!((seconds * 10.0).round() / 10.0);
    j
}

/// `soundalike analyze FILE...`: tempo (with the octave candidates), key and loudness of each file;
/// a file that cannot be read is named with the reason and the others are still analysed.
pub fn run(a: AnalyzeArgs) -> Result<ExitCode> {
    let cfg = FrontendConfig::default();
    let results: Vec<(PathBuf, Analysed)> = a
        .files
        .par_iter()
        .map(|f| {
            let r = analyze_file_with_facts(f, &cfg).map_err(|e| e.to_string()).and_then(|an| match an.facts {
                Some(facts) => Ok((facts, an.info.duration_s)),
                None => Err(format!("{}: no analysis", f.display())),
            });
            (f.clone(), r)
        })
        .collect();
    let mut failed = 0;
    if !a.json {
        println!("{:>7}  {:<5} {:<4} {:<14} {:>6} {:>6}  file", "bpm", "key", "open", "", "lufs", "dBTP");
    }
    for (file, r) in &results {
        match r {
            Ok((f, seconds)) if a.json => println!("{}", file_facts_json(file, f, *seconds)),
            Ok((f, _)) => {
                let bpm = f.tempo.bpm.map_or("-".to_string(), |b| format!("{b:.1}"));
                let (camelot, open, name) = key_cell(&f.key);
                let peak = f.loudness.as_ref().map_or("-".into(), |l| format!("{:.1}", l.true_peak_db.unwrap_or(l.peak_db)));
                println!("{bpm:>7}  {camelot:<5} {open:<4} {name:<14} {:>6} {peak:>6}  {}", lufs_cell(f), file.display());
                let mut notes = Vec::new();
                if f.tempo.bpm.is_none() || f.tempo.changes_at_s.is_some() {
                    notes.push(f.tempo.describe());
                }
                if !f.tempo.candidates.is_empty() {
                    let c: Vec<String> = f.tempo.candidates.iter().map(|c| format!("{:.1} ({})", c.bpm, c.relation)).collect();
                    notes.push(format!("also fits {}", c.join(", ")));
                }
                if f.key.key.is_none() || f.key.changes_at_s.is_some() {
                    notes.push(f.key.describe());
                }
                if !notes.is_empty() {
                    println!("{:>9}{}", "", notes.join("; "));
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("skipped: {e}");
            }
        }
    }
    Ok(crate::output::files_exit(failed, results.len(), "analysed"))
}
