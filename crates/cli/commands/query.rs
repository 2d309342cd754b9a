//! `query`: cosine recommendations around songs, a new file or a cluster, from a store or the database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use soundalike_recommend::{Answer, BpmRange, CamelotKey, KeyRule, Catalog, ClusterScope, Library, LibraryError, Method, Request, Scored};

use crate::embedder::FileEmbedder;
use crate::flags::{parse_genre_source, AnnArgs};
use crate::output::print_scored;

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Store folder (or, without one, the PostgreSQL database of --db, $SOUNDALIKE_DB or $DATABASE_URL).
    pub store: Option<PathBuf>,
    /// Answer from PostgreSQL + pgvector (a database `soundalike push` filled):
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(long, conflicts_with_all = ["store", "same_cluster", "cluster", "random_from_cluster", "taste", "exact", "ann_index"])]
    pub db: Option<String>,
    /// Query song: id, path, or text matched against title/artist/path. Repeat for a playlist.
    #[arg(long = "song")]
    pub songs: Vec<String>,
    /// Query with an audio file that is not in the library.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Model folder (needed with --file; default: the store's model from models/).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Number of recommendations.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Only recommend songs of this genre.
    #[arg(long)]
    pub genre: Option<String>,
    /// Only recommend songs sharing the query's genre.
    #[arg(long)]
    pub same_genre: bool,
    /// Leave out songs by the query's artist.
    #[arg(long)]
    pub exclude_same_artist: bool,
    /// Leave out songs of the query's group (soundtrack, label...).
    #[arg(long)]
    pub exclude_same_group: bool,
    /// At most this many songs per album (and per group when albums are unknown).
    #[arg(long)]
    pub max_per_album: Option<usize>,
    /// Only recommend songs in the query's cluster (see `soundalike clusters`).
    #[arg(long, conflicts_with = "cluster")]
    pub same_cluster: bool,
    /// Only recommend songs in cluster N (see `soundalike clusters`); works without a query song too.
    #[arg(long)]
    pub cluster: Option<usize>,
    /// Instead of the nearest songs, k songs drawn at random from the query's cluster (or --cluster N).
    #[arg(long)]
    pub random_from_cluster: bool,
    /// Seed of --random-from-cluster (default: a new draw each time).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Re-rank by a listener's taste (a profile folder from `soundalike taste`).
    #[arg(long)]
    pub taste: Option<PathBuf>,
    /// With --taste: the score is (1 - w) * similarity + w * probability of liking.
    #[arg(long, default_value_t = 0.5)]
    pub taste_weight: f32,
    /// With --taste: leave out songs less likely than this to be liked.
    #[arg(long)]
    pub min_like: Option<f32>,
    /// Brute-force search instead of the HNSW index.
    #[arg(long, conflicts_with = "ann_index")]
    pub exact: bool,
    /// Use the HNSW index even for a small library (by default under 2,000 songs are searched exactly).
    #[arg(long = "ann")]
    pub ann_index: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ann: AnnArgs,
    /// Where a song's genre comes from for --genre, --same-genre and the tables: `tag` (the genre tag or CSV
    /// column recorded at embed time), `predicted` (the model's predicted genre) or `either` (the tag where
    /// there is one, else the prediction) or `tags` (the most probable of the musicnn tagger's genre tags).
    #[arg(long, default_value = "either", value_parser = parse_genre_source)]
    pub genre_source: soundalike_recommend::GenreSource,
    /// Only songs in this tempo range, e.g. `120-128` (songs without a steady beat are left out, and counted).
    #[arg(long)]
    pub bpm: Option<BpmRange>,
    /// Only songs within PCT percent of the query song's tempo (e.g. 6: what a pitch fader covers).
    #[arg(long, value_name = "PCT")]
    pub bpm_near: Option<f32>,
    /// With --bpm or --bpm-near: half and double tempo count as in range (87 BPM mixes into 174).
    #[arg(long)]
    pub bpm_fold: bool,
    /// Only songs in this key: Camelot (8A), Open Key (1m) or text (A minor, F#m, Db).
    #[arg(long)]
    pub key: Option<CamelotKey>,
    /// Only songs in a key that mixes with --key, or else with the query song's (same, one step on the
    /// Camelot wheel, relative major/minor).
    #[arg(long)]
    pub key_compatible: bool,
    /// Which keys mix: strict, or wide (adds the diagonals: one step and the other mode, as Mixxx does).
    #[arg(long, default_value = "strict")]
    pub key_rule: KeyRule,
    /// Songs that mix with this one: sound like it, within 6% of its tempo (or half/double), in a
    /// compatible key (same as --song SONG --bpm-near 6 --bpm-fold --key-compatible).
    #[arg(long, value_name = "SONG", conflicts_with_all = ["songs", "file"])]
    pub mixes_with: Option<String>,
    /// Only songs the musicnn taggers give this tag (`piano`, `female vocal`, `chill`, `80s`; `soundalike
    /// tags --list` has all 100); repeat it for songs with all of them. Songs not tagged yet are left out,
    /// and counted.
    #[arg(long = "tag", value_name = "TAG", value_parser = soundalike_tags::resolve)]
    pub tags: Vec<&'static str>,
    /// With --tag: the least probability the tagger must give each tag (its guesses run low: a song's top
    /// tag is often 0.3 to 0.5).
    #[arg(long, value_name = "P", default_value_t = soundalike_recommend::DEFAULT_TAG_MIN)]
    pub tag_min: f32,
}

/// The filters a query's flags ask for around its songs.
pub fn around(a: &QueryArgs) -> soundalike_recommend::Around {
    let mixing = a.mixes_with.is_some();
    soundalike_recommend::Around {
        genre: a.genre.clone(),
        same_genre: a.same_genre,
        exclude_same_artist: a.exclude_same_artist,
        exclude_same_group: a.exclude_same_group,
        max_per_album: a.max_per_album,
        bpm: a.bpm,
        bpm_near: a.bpm_near.or(mixing.then_some(MIX_BPM_PCT)),
        bpm_fold: a.bpm_fold || mixing,
        key: a.key,
        key_compatible: a.key_compatible || mixing,
        key_rule: a.key_rule,
        tags: a.tags.clone(),
        tag_min: Some(a.tag_min),
    }
}

/// How far from the song's tempo `--mixes-with` looks, in percent.
const MIX_BPM_PCT: f32 = 6.0;

/// `query` and `query --db`: one path. The arguments become a [`Request`] that either library answers
/// (the store's catalog, or the database); only what needs a store (a listener's taste, songs drawn at
/// random from a cluster) takes the store's own plan of the same request.
pub fn run(mut a: QueryArgs) -> Result<ExitCode> {
    if let Some(s) = &a.mixes_with {
        a.songs = vec![s.clone()];
    }
    if a.songs.is_empty() && a.file.is_none() && a.cluster.is_none() {
        bail!("say what to match: --song ID|PATH|TEXT (repeatable), --file NEW.mp3, or --cluster N");
    }
    if a.k == 0 {
        bail!("-k must be at least 1");
    }
    if a.random_from_cluster && !a.same_cluster && a.cluster.is_none() && a.songs.is_empty() {
        bail!("--random-from-cluster draws from a song's cluster: give --song, or --cluster N");
    }
    if a.taste.is_some() && !(0.0..=1.0).contains(&a.taste_weight) {
        bail!("--taste-weight must be between 0 and 1");
    }
    if a.min_like.is_some() && a.taste.is_none() {
        bail!("--min-like needs --taste PROFILE");
    }
    let rt = soundalike_db::runtime()?;
    let (describe, answer) = match a.store.clone() {
        Some(store) => {
            let cat = open_for_query(&a, &store)?;
            let (req, describe) = rt.block_on(request(&a, &cat, &cat.header.model_name, &cat.header.model_fingerprint))?;
            let answer = if a.taste.is_some() || a.random_from_cluster { store_extras(&a, &cat, &req)? } else { rt.block_on(ask(&cat, &req))? };
            (describe, answer)
        }
        None => {
            let url = crate::util::db_url(a.db.as_deref())?;
            rt.block_on(async {
                let db = soundalike_db::Db::connect(&url, 2).await?;
                let mut cat = soundalike_db::DbCatalog::open(db, None).await?;
                cat.use_genres(a.genre_source);
                cat.ef_search = a.ann.ef_search;
                let (req, describe) = request(&a, &cat, &cat.meta.model_name, &cat.meta.model_fingerprint).await?;
                Ok::<_, anyhow::Error>((describe, ask(&cat, &req).await?))
            })?
        }
    };
    let mut describe = describe;
    if a.random_from_cluster {
        let from = format!("cluster {}", answer.clusters.iter().flatten().map(u32::to_string).collect::<Vec<_>>().join(", "));
        describe = vec![if describe.is_empty() || a.cluster.is_some() { from } else { format!("{from} (the cluster of {})", describe.join(" + ")) }];
    }
    let recs = &answer.results;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({"query": describe, "clusters": answer.clusters, "results": recs, "notes": answer.notes}))?);
    } else {
        if a.random_from_cluster {
            println!("{} songs at random from {}:", recs.len(), describe.join(" + "));
        } else {
            println!("songs that sound like {}:", describe.join(" + "));
        }
        if a.taste.is_some() {
            println!("(score = {:.2} x similarity + {:.2} x probability the listener likes it)", 1.0 - a.taste_weight, a.taste_weight);
        }
        print_scored(recs);
        if recs.len() < a.k {
            println!("(only {} songs pass the filters)", recs.len());
        }
        for n in &answer.notes {
            println!("({n})");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The store opened for `query`, with its clusters when it has them (required by the cluster flags).
fn open_for_query(a: &QueryArgs, store: &Path) -> Result<Catalog> {
    let method = if a.exact { Method::Exact } else if a.ann_index { Method::Ann } else { Method::Auto };
    let mut cat = Catalog::open(store, method, &a.ann.params())?;
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
    Ok(cat)
}

/// The request the flags describe, against either library (songs resolved by id, path or text; a new
/// file embedded with the library's model), and a line naming what it starts from.
async fn request<L: Library>(a: &QueryArgs, lib: &L, model_name: &str, model_fingerprint: &str) -> Result<(Request, Vec<String>)> {
    let mut seeds = Vec::new();
    let mut describe = Vec::new();
    for q in &a.songs {
        let s = lib.resolve(q).await?;
        let facts: Vec<String> = s.bpm.map(|b| format!("{b:.1} BPM")).into_iter().chain(s.key.map(|k| format!("{k} {}", k.name()))).collect();
        describe.push(if facts.is_empty() { format!("{} ({})", s.title, s.id) } else { format!("{} ({}; {})", s.title, s.id, facts.join(", ")) });
        seeds.push(s.id);
    }
    let mut extra = Vec::new();
    if let Some(file) = &a.file {
        let model_dir = a.model.clone().unwrap_or_else(|| Path::new("models").join(model_name));
        let embedder = FileEmbedder::load(&model_dir, model_fingerprint, model_name)?;
        extra.push(embedder.embed(file)?);
        describe.push(file.display().to_string());
    }
    let clusters = match (a.cluster, a.same_cluster || a.random_from_cluster) {
        (Some(n), _) => ClusterScope::Only(n),
        (None, true) => ClusterScope::Same,
        (None, false) => ClusterScope::Any,
    };
    if let (Some(n), true) = (a.cluster, seeds.is_empty() && extra.is_empty()) {
        describe.push(format!("the centre of cluster {n}"));
    }
    let req = Request { seeds, extra, k: a.k, around: around(a), clusters };
    Ok((req.validate(usize::MAX).map_err(flag_hint)?, describe))
}

/// Asks a library, with the flags named in what it says.
async fn ask<L: Library>(lib: &L, req: &Request) -> Result<Answer> {
    lib.recommend(req).await.map_err(flag_hint)
}

/// A library's error, with the flag that fixes it named where there is one.
fn flag_hint(e: LibraryError) -> anyhow::Error {
    match e {
        LibraryError::NoSeedGenre => anyhow::anyhow!(
            "--same-genre: the query songs have no genre tag in the library (use --genre-source either or predicted, or embed with --labels CSV that has a genre column)"
        ),
        e => e.into(),
    }
}

/// What needs the store itself: songs drawn at random from the request's clusters, or a wider pool of
/// similar songs re-ranked by a listener's taste (never one the listener disliked).
fn store_extras(a: &QueryArgs, cat: &Catalog, req: &Request) -> Result<Answer> {
    if !a.random_from_cluster {
        let dir = a.taste.as_ref().context("--taste PROFILE")?;
        let (marks, m, _) = crate::commands::taste::model_for(dir, cat, 0)?;
        return Ok(cat.answer_by_taste(req, &m, &marks, a.taste_weight, a.min_like).map_err(flag_hint)?.0);
    }
    let plan = cat.plan(req).map_err(flag_hint)?;
    let seed = a.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    let cs = plan.filters.clusters.clone().unwrap_or_default();
    let rows = cat.random_in_clusters(&cs, a.k, &plan.filters.exclude, seed);
    let results = rows.iter().enumerate().map(|(i, &r)| Scored { rank: i + 1, score: soundalike_recommend::dot(&cat.vector(r), &plan.query), song: cat.view(r) }).collect();
    Ok(Answer { notes: cat.facts_notes(&plan.filters), query: plan.seeds, clusters: plan.filters.clusters, results })
}
