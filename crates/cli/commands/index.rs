//! `index`: build or update the HNSW index of a store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use soundalike_recommend::Store;

use crate::flags::AnnArgs;
use crate::output::describe_update;

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Store folder.
    pub store: PathBuf,
    /// Build the graph from scratch instead of updating the saved one (inserts new songs, tombstones
    /// removed ones; rebuilt anyway once a quarter of it is tombstones).
    #[arg(long)]
    pub rebuild: bool,
    #[command(flatten)]
    pub ann: AnnArgs,
    /// When another process is writing the store, wait for it to finish instead of stopping.
    #[arg(long)]
    pub wait: bool,
}

pub fn run(a: IndexArgs) -> Result<ExitCode> {
    let store = Store::open(&a.store)?;
    if store.is_empty() {
        bail!("{}: the store is empty; nothing to index", a.store.display());
    }
    let t = std::time::Instant::now();
    let p = a.ann.params();
    let lock = soundalike_recommend::StoreLock::acquire(store.dir(), a.wait.into())?;
    // A rebuild builds the new graph beside the saved one, which is replaced by rename once it is done.
    let what = soundalike_recommend::sync_index_with(&store, &p, Some(&lock), a.rebuild)?.1;
    println!(
        "indexed {} songs in {:.2} s ({}) -> {}",
        store.len(),
        t.elapsed().as_secs_f64(),
        describe_update(&what),
        soundalike_recommend::index_dir(&a.store).display()
    );
    Ok(ExitCode::SUCCESS)
}
