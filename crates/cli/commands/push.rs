//! `push`: a store's vectors in PostgreSQL + pgvector (`query --db` and `serve --db` answer from there).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use soundalike_db::{Db, Precision};
use soundalike_recommend::Store;

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Store folder.
    pub store: PathBuf,
    /// PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE (default: $SOUNDALIKE_DB, then
    /// $DATABASE_URL); the password is never printed.
    #[arg(long)]
    pub db: Option<String>,
    /// How the table keeps the vectors: half (halfvec, 2 bytes a value) or full (vector, 4 bytes). Fixed by
    /// the first push.
    #[arg(long, default_value = "half", value_parser = ["half", "full"])]
    pub precision: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PushArgs) -> Result<ExitCode> {
    let url = crate::util::db_url(a.db.as_deref())?;
    let store = Store::open(&a.store)?;
    if store.is_empty() {
        bail!("{}: the store is empty; nothing to push", a.store.display());
    }
    let precision = if a.precision == "full" { Precision::Full } else { Precision::Half };
    let t = std::time::Instant::now();
    let (report, shown) = soundalike_db::runtime()?.block_on(async {
        let db = Db::connect(&url, 2).await?;
        let r = soundalike_db::push(&db, &store, precision).await?;
        Ok::<_, soundalike_db::DbError>((r, db.url().to_string()))
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({"db": shown, "songs": store.len(), "report": report, "seconds": t.elapsed().as_secs_f64()}))?);
    } else {
        println!(
            "{} -> {shown}: {} added, {} updated, {} removed, {} unchanged{} in {:.2} s",
            a.store.display(),
            report.added,
            report.updated,
            report.removed,
            report.unchanged,
            if report.index_created { ", HNSW index built" } else { "" },
            t.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
