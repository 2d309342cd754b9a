//! `index`, `query`, `demo`: cosine recommendations from the store, exact or through HNSW.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;
use soundalike_index::{AnnParams, Catalog, Filters, IndexUpdate, Method, Recommendation, SongRecord, Store};

use crate::args::{AnnArgs, DemoArgs, EmbedArgs, IndexArgs, LabelArgs, QueryArgs};
use crate::embedder::FileEmbedder;

fn params(a: &AnnArgs) -> AnnParams {
    AnnParams { m: a.m, ef_construction: a.ef_construction, ef_search: a.ef_search, builder: a.builder.into(), vectors: a.vectors.into() }
}

pub fn index(a: IndexArgs) -> Result<ExitCode> {
    let store = Store::open(&a.store)?;
    if store.is_empty() {
        bail!("{}: the store is empty; nothing to index", a.store.display());
    }
    let t = std::time::Instant::now();
    let p = params(&a.ann);
    let lock = soundalike_index::StoreLock::acquire(store.dir(), a.wait.into())?;
    // A rebuild builds the new graph beside the saved one, which is replaced by rename once it is done.
    let what = soundalike_index::sync_index_with(&store, &p, Some(&lock), a.rebuild)?.1;
    println!(
        "indexed {} songs in {:.2} s ({}) -> {}",
        store.len(),
        t.elapsed().as_secs_f64(),
        describe_update(&what),
        soundalike_index::index_dir(&a.store).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// One line for what an index sync did.
pub fn describe_update(u: &IndexUpdate) -> String {
    let what = if u.rebuilt {
        "built".to_string()
    } else if u.changed() {
        format!("updated: {} added, {} removed", u.added, u.removed)
    } else {
        return "unchanged".into();
    };
    if u.saved {
        format!("{what}, saved")
    } else {
        format!("{what} in memory only (not saved: another process holds the store's lock)")
    }
}

pub fn print_table(recs: &[Recommendation]) {
    let clusters = recs.iter().any(|r| r.cluster.is_some());
    println!("{:>4}  {:>6}  {:<28} {:<16} {:<14} {}path", "rank", "score", "title", "artist", "genre", if clusters { "clu  " } else { "" });
    for r in recs {
        let cut = |s: &str, n: usize| if s.chars().count() > n { format!("{}…", s.chars().take(n - 1).collect::<String>()) } else { s.to_string() };
        println!(
            "{:>4}  {:>6.3}  {:<28} {:<16} {:<14} {}{}",
            r.rank,
            r.score,
            cut(r.title, 28),
            cut(r.artist.unwrap_or("-"), 16),
            cut(r.genre.unwrap_or("-"), 14),
            if clusters { format!("{:<5}", r.cluster.map_or("-".into(), |c| c.to_string())) } else { String::new() },
            r.id
        );
    }
}

pub fn query(a: QueryArgs) -> Result<ExitCode> {
    let Some(store) = a.store.clone() else { return crate::db::query(a) };
    if a.songs.is_empty() && a.file.is_none() && a.cluster.is_none() {
        bail!("say what to match: --song ID|PATH|TEXT (repeatable), --file NEW.mp3, or --cluster N");
    }
    if a.k == 0 {
        bail!("-k must be at least 1");
    }
    if a.random_from_cluster && !a.same_cluster && a.cluster.is_none() && a.songs.is_empty() {
        bail!("--random-from-cluster draws from a song's cluster: give --song, or --cluster N");
    }
    let method = if a.exact { Method::Exact } else if a.ann_index { Method::Ann } else { Method::Auto };
    let mut cat = Catalog::open(&store, method, &params(&a.ann))?;
    cat.use_genres(a.genre_source);
    let wants_clusters = a.same_cluster || a.cluster.is_some() || a.random_from_cluster;
    let clustering = match cat.use_clusters() {
        Ok(c) => c,
        Err(e) if !wants_clusters => {
            eprintln!("note: the store's clusters are not used: {e}");
            None
        }
        Err(e) => return Err(e.into()),
    };
    if wants_clusters && clustering.is_none() {
        bail!("{}: the store has no clusters yet; run `soundalike clusters {}` first", store.display(), store.display());
    }
    if let (Some(n), Some(c)) = (a.cluster, &clustering) {
        if n >= c.k {
            bail!("--cluster {n}: the store has clusters 0 to {}", c.k - 1);
        }
    }
    if let Some(note) = clustering.as_ref().and_then(|c| c.stale_note()).filter(|_| wants_clusters) {
        eprintln!("note: {note}");
    }
    let mut seeds: Vec<usize> = Vec::new();
    for q in &a.songs {
        seeds.push(cat.resolve(q)?);
    }
    let seed_songs: Vec<&SongRecord> = seeds.iter().map(|&r| &cat.songs()[r]).collect();
    let mut describe: Vec<String> = seed_songs.iter().map(|s| format!("{} ({})", s.title, s.id)).collect();
    let mut extra = Vec::new();
    if let Some(file) = &a.file {
        let model_dir = a.model.clone().unwrap_or_else(|| Path::new("models").join(&cat.header.model_name));
        let embedder = FileEmbedder::load(&model_dir, &cat.header.model_fingerprint, &cat.header.model_name)?;
        extra.push(embedder.embed(file)?);
        describe.push(file.display().to_string());
    }
    let mut filters = Filters::around(&seed_songs, crate::args::around(&a));
    if a.same_genre && filters.same_genres.as_ref().is_some_and(|g| g.is_empty()) {
        bail!("--same-genre: the query songs have no genre tag in the store (use --genre-source either or predicted, or embed with --labels CSV that has a genre column)");
    }
    let query = if seeds.is_empty() && extra.is_empty() {
        // Only --cluster N: the songs nearest its centre.
        let n = a.cluster.unwrap_or(0);
        describe.push(format!("the centre of cluster {n}"));
        clustering.as_ref().map(|c| c.centroids[n].clone()).unwrap_or_default()
    } else {
        cat.centroid(&seeds, &extra.iter().map(Vec::as_slice).collect::<Vec<_>>())
    };
    if let Some(n) = a.cluster {
        filters.clusters = Some(vec![n as u32]);
    } else if a.same_cluster || a.random_from_cluster {
        // The query's clusters: each seed song's, and a new file's nearest.
        let mut cs: Vec<u32> = seeds.iter().filter_map(|&r| cat.cluster_of(r)).collect();
        if let Some(c) = &clustering {
            cs.extend(extra.iter().map(|v| c.nearest(v)));
        }
        cs.sort_unstable();
        cs.dedup();
        filters.clusters = Some(cs);
    }
    let taste = match &a.taste {
        Some(dir) => {
            if !(0.0..=1.0).contains(&a.taste_weight) {
                bail!("--taste-weight must be between 0 and 1");
            }
            Some(crate::taste::model_for(dir, &cat, 0)?)
        }
        None if a.min_like.is_some() => bail!("--min-like needs --taste PROFILE"),
        None => None,
    };
    let recs = if let (Some((marks, m, _)), false) = (&taste, a.random_from_cluster) {
        // Re-ranked: a wider pool of similar songs (never one the listener disliked).
        let pool = cat.recommend(&query, (a.k * 10).max(200).min(cat.len()), &filters)?;
        soundalike_index::rerank(&cat, pool, m, marks, a.taste_weight, a.min_like, a.k).into_iter().map(|(r, _)| r).collect()
    } else if a.random_from_cluster {
        let seed = a.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
        let cs = filters.clusters.clone().unwrap_or_default();
        let from = format!("cluster {}", cs.iter().map(u32::to_string).collect::<Vec<_>>().join(", "));
        describe = vec![if describe.is_empty() || a.cluster.is_some() { from } else { format!("{from} (the cluster of {})", describe.join(" + ")) }];
        let rows = cat.random_in_clusters(&cs, a.k, &filters.exclude, seed);
        rows.iter().enumerate().map(|(i, &r)| cat.recommendation(r, i + 1, soundalike_index::dot(&cat.vector(r), &query))).collect()
    } else {
        cat.recommend(&query, a.k, &filters)?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({"query": describe, "clusters": filters.clusters, "results": recs}))?);
    } else {
        if a.random_from_cluster {
            println!("{} songs at random from {}:", recs.len(), describe.join(" + "));
        } else {
            println!("songs that sound like {}:", describe.join(" + "));
        }
        if a.taste.is_some() {
            println!("(score = {:.2} x similarity + {:.2} x probability the listener likes it)", 1.0 - a.taste_weight, a.taste_weight);
        }
        print_table(&recs);
        if recs.len() < a.k {
            println!("(only {} songs pass the filters)", recs.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn demo(a: DemoArgs) -> Result<ExitCode> {
    let csv = a.library.join("tracks.csv");
    let labels = LabelArgs {
        labels: csv.exists().then_some(csv),
        label_column: "source".into(),
        group_column: Some("source".into()),
    };
    let code = crate::embed::embed(EmbedArgs {
        library: a.library.clone(),
        model: a.model.clone(),
        out: a.out.clone(),
        labels,
        shard: None,
        json: false,
        device: "cpu".into(),
        index: true,
        batch: 16,
        wait: false,
        prune: false,
    })?;
    let mut cat = Catalog::open(&a.out, Method::Auto, &AnnParams::default())?;
    cat.use_genres(a.genre_source);
    let first: Vec<usize> = {
        // One query per group, so the demo shows different kinds of music.
        let mut seen = std::collections::BTreeSet::new();
        (0..cat.len()).filter(|&r| seen.insert(cat.songs()[r].group.clone())).take(3).collect()
    };
    for &r in &first {
        let s = &cat.songs()[r];
        println!("\nsongs that sound like {} [{}] ({}):", s.title, s.genre.as_deref().unwrap_or("-"), s.id);
        let f = Filters { exclude: vec![s.id.clone()], ..Default::default() };
        print_table(&cat.recommend(&cat.vector(r), a.k, &f)?);
    }
    if let Some(&r) = first.first() {
        let s = &cat.songs()[r];
        let target = cat.songs().iter().filter_map(|x| x.genre.clone()).find(|g| Some(g) != s.genre.as_ref());
        if let Some(g) = target {
            println!("\n{} {g} songs that sound like {} [{}]:", a.k.min(3), s.title, s.genre.as_deref().unwrap_or("-"));
            let f = Filters { exclude: vec![s.id.clone()], genre: Some(g), ..Default::default() };
            print_table(&cat.recommend(&cat.vector(r), a.k.min(3), &f)?);
        }
    }
    println!("\nnext: soundalike query {} --song \"<title or id>\" -k 10", a.out.display());
    println!("  or: soundalike serve {} --model {}   (then open http://127.0.0.1:8080/)", a.out.display(), a.model.display());
    Ok(code)
}
