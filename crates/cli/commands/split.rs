//! `split`: a song-level, stratified, seeded train/val/test split of a library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use soundalike_dataset::write_atomic;

use crate::flags::{LabelArgs, SplitOpts};
use crate::training::{counts, make_splits};
use crate::util::scan_with_labels;

#[derive(Args, Debug)]
pub struct SplitArgs {
    /// Library folder.
    pub library: PathBuf,
    #[command(flatten)]
    pub labels: LabelArgs,
    #[command(flatten)]
    pub split: SplitOpts,
    /// Output JSON.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: SplitArgs) -> Result<ExitCode> {
    let (files, entries) = scan_with_labels(&a.library, &a.labels, true)?;
    let splits = make_splits(&files, &entries, &a.labels, &a.split)?;
    write_atomic(&a.out, &serde_json::to_vec_pretty(&splits)?)?;
    println!("wrote {} ({})", a.out.display(), counts(&splits));
    Ok(ExitCode::SUCCESS)
}
