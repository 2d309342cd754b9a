//! `merge`: shard stores made by `embed --shard K/N` joined into one store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use soundalike_recommend::{ShardInfo, Store};

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Output store.
    #[arg(long)]
    pub out: PathBuf,
    /// Shard stores.
    #[arg(required = true)]
    pub stores: Vec<PathBuf>,
    /// When another process is writing the store, wait for it to finish instead of stopping.
    #[arg(long)]
    pub wait: bool,
}

/// Shard stores must be all N shards of one library, each once; stores without shard markers (made some
/// other way) are merged as given.
fn check_shard_set(stores: &[std::path::PathBuf]) -> Result<()> {
    let infos: Vec<Option<ShardInfo>> = stores.iter().map(|p| ShardInfo::load(p)).collect::<std::result::Result<_, _>>()?;
    if infos.iter().all(Option::is_none) {
        return Ok(());
    }
    let Some(first) = infos.iter().flatten().next() else { return Ok(()) };
    let mut have = vec![None::<&Path>; first.of];
    for (info, p) in infos.iter().zip(stores) {
        let Some(i) = info else { bail!("{}: not a shard store (no shard.json), but the others are shards of {}", p.display(), first.of) };
        if i.of != first.of || i.library_root != first.library_root {
            bail!(
                "{}: shard {}/{} of {}, but {} is a shard of {} shards of {}; these shards belong to different runs",
                p.display(),
                i.shard,
                i.of,
                i.library_root.display(),
                stores[0].display(),
                first.of,
                first.library_root.display()
            );
        }
        if !i.complete {
            bail!("{}: shard {}/{} did not finish (its task was stopped or is still running); run it again (it resumes), then merge", p.display(), i.shard, i.of);
        }
        if let Some(prev) = have[i.shard] {
            bail!("shard {}/{} is given twice: {} and {}", i.shard, i.of, prev.display(), p.display());
        }
        have[i.shard] = Some(p);
    }
    let missing: Vec<String> = have.iter().enumerate().filter(|(_, h)| h.is_none()).map(|(k, _)| k.to_string()).collect();
    if !missing.is_empty() {
        bail!(
            "shard{} {} of {} missing (have {} of them); run the missing task{} again (e.g. `sbatch --array={} scripts/deploy/slurm/embed.sbatch ...`), then merge",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            first.of,
            first.of - missing.len(),
            if missing.len() > 1 { "s" } else { "" },
            missing.join(",")
        );
    }
    Ok(())
}

pub fn run(a: MergeArgs) -> Result<ExitCode> {
    check_shard_set(&a.stores)?;
    let shards: Vec<Store> = a.stores.iter().map(|p| Store::open(p).with_context(|| format!("cannot open {}", p.display()))).collect::<Result<_>>()?;
    let first = &shards[0].header;
    for (s, p) in shards.iter().zip(&a.stores) {
        if s.header.model_fingerprint != first.model_fingerprint || s.header.frontend != first.frontend || s.header.dim != first.dim {
            bail!(
                "{}: made by model {} ({}), but {} was made by {} ({}); stores of different models cannot be merged",
                p.display(),
                s.header.model_name,
                s.header.model_fingerprint,
                a.stores[0].display(),
                first.model_name,
                first.model_fingerprint
            );
        }
    }
    let mut out = Store::open_or_create_with(&a.out, first.clone(), a.wait.into())?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (si, s) in shards.iter().enumerate() {
        for song in s.songs() {
            if let Some(prev) = seen.insert(song.id.clone(), si) {
                eprintln!("warning: {} is in {} and {}; keeping the later", song.id, a.stores[prev].display(), a.stores[si].display());
            }
            out.put(song.clone())?;
        }
    }
    out.compact()?;
    soundalike_recommend::sync_index(&out, &soundalike_recommend::AnnParams::default())?;
    println!("merged {} stores into {} ({} songs)", shards.len(), a.out.display(), out.len());
    Ok(ExitCode::SUCCESS)
}
