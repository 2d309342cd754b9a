//! `index`, `query`, `demo`: cosine recommendations from the store, exact or through HNSW.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use soundalike_index::{exact_search, normalise, rows_hash, AnnIndex, AnnParams, Hit, SongRecord, Store};

use crate::args::{AnnArgs, DemoArgs, EmbedArgs, IndexArgs, LabelArgs, QueryArgs};

/// Below this many songs, exact search is as fast as the graph and always exact.
pub const EXACT_BELOW: usize = 2000;

fn params(a: &AnnArgs) -> AnnParams {
    AnnParams { m: a.m, ef_construction: a.ef_construction, ef_search: a.ef_search }
}

/// Builds and saves the HNSW index of `store`.
pub fn build_index(store: &Store, p: &AnnParams) -> Result<AnnIndex> {
    let (m, rows) = store.matrix();
    let idx = AnnIndex::build(&m, store.header.dim, p)?;
    idx.save(store.dir(), &store.header.model_fingerprint, &rows_hash(&rows))?;
    Ok(idx)
}

/// The store's saved index if it still matches the store's songs, else a freshly built (and saved) one.
pub fn ensure_index(store: &Store, p: &AnnParams) -> Result<AnnIndex> {
    let rows: Vec<&SongRecord> = store.songs().collect();
    match AnnIndex::load(store.dir(), &store.header.model_fingerprint, &rows_hash(&rows), store.header.dim)? {
        Some(i) => Ok(i),
        None => build_index(store, p),
    }
}

pub fn index(a: IndexArgs) -> Result<ExitCode> {
    let store = Store::open(&a.store)?;
    if store.is_empty() {
        bail!("{}: the store is empty; nothing to index", a.store.display());
    }
    let t = std::time::Instant::now();
    build_index(&store, &params(&a.ann))?;
    println!("indexed {} songs in {:.2} s -> {}", store.len(), t.elapsed().as_secs_f64(), a.store.join("index").display());
    Ok(ExitCode::SUCCESS)
}

/// Finds the song a user means: exact id, a path inside the library, or text in title/artist/id.
pub fn resolve_song<'a>(store: &'a Store, q: &str) -> Result<&'a SongRecord> {
    if let Some(s) = store.get(q) {
        return Ok(s);
    }
    let p = Path::new(q);
    if p.exists() {
        if let (Ok(abs), Ok(root)) = (std::fs::canonicalize(p), std::fs::canonicalize(&store.header.library_root)) {
            if let Ok(rel) = abs.strip_prefix(&root) {
                let id = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                if let Some(s) = store.get(&id) {
                    return Ok(s);
                }
            }
        }
    }
    let needle = q.to_lowercase();
    let hits: Vec<&SongRecord> = store
        .songs()
        .filter(|s| format!("{} {} {}", s.title, s.artist.as_deref().unwrap_or(""), s.id).to_lowercase().contains(&needle))
        .collect();
    match hits.len() {
        0 => bail!("no song matches {q:?} (try an id from `soundalike export`, a path, or part of a title)"),
        1 => Ok(hits[0]),
        _ => {
            let exact: Vec<&&SongRecord> = hits.iter().filter(|s| s.title.to_lowercase() == needle).collect();
            if exact.len() == 1 {
                return Ok(exact[0]);
            }
            let list: Vec<String> = hits.iter().take(10).map(|s| format!("  {}  ({})", s.id, s.title)).collect();
            bail!("{q:?} matches {} songs; name one by id:\n{}{}", hits.len(), list.join("\n"), if hits.len() > 10 { "\n  ..." } else { "" })
        }
    }
}

/// A recommendation with what the table shows.
#[derive(serde::Serialize)]
pub struct Recommendation<'a> {
    pub rank: usize,
    pub score: f32,
    pub id: &'a str,
    pub title: &'a str,
    pub artist: Option<&'a str>,
    pub genre: Option<&'a str>,
    pub group: Option<&'a str>,
}

/// Filters and diversity settings.
pub struct Filters<'a> {
    pub exclude: Vec<&'a str>,
    pub genre: Option<String>,
    pub same_genres: Option<Vec<String>>,
    pub exclude_artists: Vec<String>,
    pub exclude_groups: Vec<String>,
    pub max_per_album: Option<usize>,
}

fn eq(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.eq_ignore_ascii_case(b))
}

/// How to search.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Exact under [`EXACT_BELOW`] songs, HNSW above.
    Auto,
    /// Always brute force.
    Exact,
    /// Always the HNSW index.
    Ann,
}

/// Runs the search: filtered in the index (not search-then-filter), then the per-album cap.
pub fn recommend<'a>(store: &'a Store, query: &[f32], k: usize, f: &Filters, method: Method, ann: &AnnParams) -> Result<Vec<Recommendation<'a>>> {
    if store.is_empty() {
        bail!("{}: the store is empty", store.dir().display());
    }
    if k == 0 {
        bail!("-k must be at least 1");
    }
    let (m, rows) = store.matrix();
    let keep = |i: usize| {
        let s = rows[i];
        !f.exclude.contains(&s.id.as_str())
            && f.genre.as_deref().is_none_or(|g| eq(s.genre.as_deref(), g))
            && f.same_genres.as_ref().is_none_or(|gs| gs.iter().any(|g| eq(s.genre.as_deref(), g)))
            && !f.exclude_artists.iter().any(|a| eq(s.artist.as_deref(), a))
            && !f.exclude_groups.iter().any(|g| eq(s.group.as_deref(), g))
    };
    let use_exact = method == Method::Exact || (method == Method::Auto && rows.len() < EXACT_BELOW);
    let index = if use_exact { None } else { Some(ensure_index(store, ann)?) };
    // With a per-album cap, fetch more and cap greedily; grow until k are kept or the library is exhausted.
    let mut want = if f.max_per_album.is_some() { k * 4 } else { k };
    loop {
        let only_excludes = f.genre.is_none() && f.same_genres.is_none() && f.exclude_artists.is_empty() && f.exclude_groups.is_empty();
        let hits: Vec<Hit> = match &index {
            None => exact_search(&m, store.header.dim, query, want, &keep),
            // No real filter: the plain graph search (faster), asking for as many extra as are excluded.
            Some(ix) if only_excludes => {
                let mut h = ix.search_all(&m, query, want + f.exclude.len())?;
                h.retain(|x| keep(x.row));
                h.truncate(want);
                h
            }
            Some(ix) => ix.search(&m, query, want, &keep)?,
        };
        let exhausted = hits.len() < want;
        let mut per_album: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for h in hits {
            let s = rows[h.row];
            if let Some(cap) = f.max_per_album {
                let key = s.album.clone().or(s.group.clone()).unwrap_or_else(|| s.id.clone());
                let c = per_album.entry(key).or_default();
                if *c >= cap {
                    continue;
                }
                *c += 1;
            }
            out.push(Recommendation {
                rank: out.len() + 1,
                score: h.score,
                id: &s.id,
                title: &s.title,
                artist: s.artist.as_deref(),
                genre: s.genre.as_deref(),
                group: s.group.as_deref(),
            });
            if out.len() == k {
                break;
            }
        }
        if out.len() == k || exhausted || want >= rows.len() {
            return Ok(out);
        }
        want = (want * 4).min(rows.len());
    }
}

pub fn print_table(recs: &[Recommendation]) {
    println!("{:>4}  {:>6}  {:<28} {:<16} {:<14} path", "rank", "score", "title", "artist", "genre");
    for r in recs {
        let cut = |s: &str, n: usize| if s.chars().count() > n { format!("{}…", s.chars().take(n - 1).collect::<String>()) } else { s.to_string() };
        println!(
            "{:>4}  {:>6.3}  {:<28} {:<16} {:<14} {}",
            r.rank,
            r.score,
            cut(r.title, 28),
            cut(r.artist.unwrap_or("-"), 16),
            cut(r.genre.unwrap_or("-"), 14),
            r.id
        );
    }
}

pub fn query(a: QueryArgs) -> Result<ExitCode> {
    let store = Store::open(&a.store)?;
    if a.songs.is_empty() && a.file.is_none() {
        bail!("say what to match: --song ID|PATH|TEXT (repeatable) or --file NEW.mp3");
    }
    let mut seeds: Vec<&SongRecord> = Vec::new();
    for q in &a.songs {
        seeds.push(resolve_song(&store, q)?);
    }
    let mut query = vec![0f32; store.header.dim];
    for s in &seeds {
        query.iter_mut().zip(&s.vector).for_each(|(q, v)| *q += v);
    }
    let mut describe: Vec<String> = seeds.iter().map(|s| format!("{} ({})", s.title, s.id)).collect();
    if let Some(file) = &a.file {
        let model_dir = a.model.clone().unwrap_or_else(|| Path::new("models").join(&store.header.model_name));
        let device = soundalike_model::device_from_name("cpu")?;
        let model = soundalike_model::load_model(&model_dir, &device)
            .with_context(|| format!("--file needs the store's model; pass --model (tried {})", model_dir.display()))?;
        if model.config.fingerprint != store.header.model_fingerprint {
            bail!(
                "model {} ({}) is not the one that made this store ({} {}); vectors would not be comparable",
                model_dir.display(),
                model.config.fingerprint,
                store.header.model_name,
                store.header.model_fingerprint
            );
        }
        let an = soundalike_audio::analyze_file(file, &model.config.frontend)?;
        let emb = model.embed_mel(&an.mel, &device);
        query.iter_mut().zip(&emb.vector).for_each(|(q, v)| *q += v);
        describe.push(file.display().to_string());
    }
    normalise(&mut query);
    let filters = Filters {
        exclude: seeds.iter().map(|s| s.id.as_str()).collect(),
        genre: a.genre.clone(),
        same_genres: a.same_genre.then(|| seeds.iter().filter_map(|s| s.genre.clone()).collect()),
        exclude_artists: if a.exclude_same_artist { seeds.iter().filter_map(|s| s.artist.clone()).collect() } else { vec![] },
        exclude_groups: if a.exclude_same_group { seeds.iter().filter_map(|s| s.group.clone()).collect() } else { vec![] },
        max_per_album: a.max_per_album,
    };
    if a.same_genre && filters.same_genres.as_ref().is_some_and(|g| g.is_empty()) {
        bail!("--same-genre: the query songs have no genre in the store (embed with --labels CSV that has a genre column)");
    }
    let method = if a.exact { Method::Exact } else if a.ann_index { Method::Ann } else { Method::Auto };
    let recs = recommend(&store, &query, a.k, &filters, method, &params(&a.ann))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({"query": describe, "results": recs}))?);
    } else {
        println!("songs that sound like {}:", describe.join(" + "));
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
    })?;
    let store = Store::open(&a.out)?;
    let none = AnnParams::default();
    let first_ids: Vec<String> = {
        // One query per group, so the demo shows different kinds of music.
        let mut seen = std::collections::BTreeSet::new();
        store.songs().filter(|s| seen.insert(s.group.clone())).take(3).map(|s| s.id.clone()).collect()
    };
    for id in &first_ids {
        let s = store.get(id).context("song vanished")?;
        println!("\nsongs that sound like {} [{}] ({}):", s.title, s.genre.as_deref().unwrap_or("-"), s.id);
        let f = Filters { exclude: vec![id], genre: None, same_genres: None, exclude_artists: vec![], exclude_groups: vec![], max_per_album: None };
        print_table(&recommend(&store, &s.vector, a.k, &f, Method::Auto, &none)?);
    }
    if let Some(s) = first_ids.first().and_then(|id| store.get(id)) {
        let target = store.songs().filter_map(|x| x.genre.clone()).find(|g| Some(g) != s.genre.as_ref());
        if let Some(g) = target {
            println!("\n{} {g} songs that sound like {} [{}]:", a.k.min(3), s.title, s.genre.as_deref().unwrap_or("-"));
            let f = Filters { exclude: vec![&s.id], genre: Some(g), same_genres: None, exclude_artists: vec![], exclude_groups: vec![], max_per_album: None };
            print_table(&recommend(&store, &s.vector, a.k.min(3), &f, Method::Auto, &none)?);
        }
    }
    println!("\nnext: soundalike query {} --song \"<title or id>\" -k 10", a.out.display());
    Ok(code)
}
