//! `push`: a store's vectors in PostgreSQL + pgvector (`query --db` and `serve --db` answer from there).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use soundalike_db::{Db, Precision};
use soundalike_recommend::Store;

use crate::args::PushArgs;

/// The URL from the flag, else $SOUNDALIKE_DB, else $DATABASE_URL.
pub fn url(flag: Option<&str>) -> Result<String> {
    flag.map(str::to_string)
        .or_else(|| std::env::var("SOUNDALIKE_DB").ok())
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .filter(|u| !u.trim().is_empty())
        .context("say which database: --db postgres://USER:PASSWORD@HOST:PORT/DATABASE (or set SOUNDALIKE_DB)")
}

pub fn push(a: PushArgs) -> Result<ExitCode> {
    let url = url(a.db.as_deref())?;
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
