//! `push` and `query --db`: a store's vectors in PostgreSQL + pgvector, and recommendations answered there.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use soundalike_db::{Db, DbCatalog, Precision};
use soundalike_index::{Filters, Recommendation, SongRecord, Store};

use crate::args::{PushArgs, QueryArgs};

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

/// `query` answered by the database (no store on this machine).
pub fn query(a: QueryArgs) -> Result<ExitCode> {
    let url = url(a.db.as_deref())?;
    if a.songs.is_empty() && a.file.is_none() {
        bail!("say what to match: --song ID|TEXT (repeatable) or --file NEW.mp3");
    }
    if a.k == 0 {
        bail!("-k must be at least 1");
    }
    let rt = soundalike_db::runtime()?;
    let recs = rt.block_on(async {
        let db = Db::connect(&url, 2).await?;
        let mut cat = DbCatalog::open(db, None).await?;
        cat.use_genres(a.genre_source);
        cat.ef_search = a.ann.ef_search;
        let mut seeds = Vec::new();
        for q in &a.songs {
            seeds.push(cat.resolve(q).await?);
        }
        Ok::<_, soundalike_db::DbError>((cat.meta.clone(), seeds, cat))
    });
    let (meta, seeds, cat) = recs?;
    let mut extra = Vec::new();
    let mut describe: Vec<String> = seeds.iter().map(|s| format!("{} ({})", s.title, s.id)).collect();
    if let Some(file) = &a.file {
        let model_dir = a.model.clone().unwrap_or_else(|| Path::new("models").join(&meta.model_name));
        let embedder = crate::embedder::FileEmbedder::load(&model_dir, &meta.model_fingerprint, &meta.model_name)?;
        extra.push(embedder.embed(file)?);
        describe.push(file.display().to_string());
    }
    let ids: Vec<&str> = seeds.iter().map(|s| s.id.as_str()).collect();
    let query = rt.block_on(cat.centroid(&ids, &extra.iter().map(Vec::as_slice).collect::<Vec<_>>()))?;
    let records: Vec<SongRecord> = seeds.iter().map(|s| s.record()).collect();
    let refs: Vec<&SongRecord> = records.iter().collect();
    let filters = Filters::around(&refs, crate::args::around(&a));
    if a.same_genre && filters.same_genres.as_ref().is_some_and(|g| g.is_empty()) {
        bail!("--same-genre: the query songs have no genre in the database (try --genre-source either)");
    }
    let found = rt.block_on(cat.recommend(&query, a.k, &filters))?;
    let recs: Vec<Recommendation> = found
        .iter()
        .map(|r| Recommendation {
            rank: r.rank,
            score: r.score,
            id: &r.song.id,
            title: &r.song.title,
            artist: r.song.artist.as_deref(),
            album: r.song.album.as_deref(),
            genre: r.song.genre.as_deref(),
            group: r.song.group.as_deref(),
            cluster: None,
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({"query": describe, "results": recs}))?);
    } else {
        println!("songs that sound like {}:", describe.join(" + "));
        crate::query::print_table(&recs);
        if recs.len() < a.k {
            println!("(only {} songs pass the filters)", recs.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
