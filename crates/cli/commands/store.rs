//! `store check [--repair]`: a store's journal checked line by line, and repaired keeping every valid record.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub cmd: StoreCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Check every line of a store's journal; with --repair, rewrite it with the valid records only (the
    /// damaged bytes go to damaged-<time>.jsonl in the store; the next `embed` re-embeds what they held).
    Check {
        /// Store folder.
        store: PathBuf,
        /// Rewrite the journal without the damaged lines (takes the writer's lock).
        #[arg(long)]
        repair: bool,
        /// With --repair: wait for another writer instead of stopping.
        #[arg(long)]
        wait: bool,
    },
}

pub fn run(a: StoreArgs) -> Result<ExitCode> {
    let StoreCommand::Check { store, repair, wait } = a.cmd;
    let check = if repair {
        let lock = soundalike_recommend::StoreLock::acquire(&store, wait.into())?;
        soundalike_recommend::repair_journal(&store, &lock)?
    } else {
        soundalike_recommend::check_journal(&store)?
    };
    println!("{}: {} valid records, {} songs, {} damaged lines", store.display(), check.valid_lines, check.songs, check.damaged.len());
    for (n, at, len) in &check.damaged {
        println!("  line {n} (byte {at}, {len} bytes) is damaged");
    }
    if let Some(t) = check.torn_at {
        println!("  an unfinished last line at byte {t} (an interrupted write; every writer cuts it off)");
    }
    match (&check.moved_to, repair) {
        (Some(p), _) => println!("repaired: the damaged lines are in {}; run `soundalike embed` again to re-embed their songs", p.display()),
        (None, true) => println!("nothing to repair"),
        (None, false) if !check.damaged.is_empty() => println!("run `soundalike store check {} --repair` to keep the valid records", store.display()),
        _ => {}
    }
    Ok(if check.damaged.is_empty() || repair { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
