//! `plot`: redraw a model's training.png and confusion.png from its metrics.json.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Model folder.
    pub model: PathBuf,
}

/// `soundalike plot MODEL`: redraws a model's training.png and confusion.png from its metrics.json.
pub fn run(a: PlotArgs) -> Result<std::process::ExitCode> {
    crate::draw::draw_plots(&a.model)?;
    println!("wrote {} and {}", a.model.join("training.png").display(), a.model.join("confusion.png").display());
    Ok(std::process::ExitCode::SUCCESS)
}
