//! `taste`: a listener's marks, the like/dislike model trained on the song vectors, and what it is used
//! for (cleaning playlists, discovering songs, re-ranking `query`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use soundalike_recommend::{AnnParams, Catalog, Mark, Method, Profile, Recommendation, TasteModel};

use crate::flags::parse_genre_source;

#[derive(Args, Debug)]
pub struct TasteArgs {
    #[command(subcommand)]
    pub cmd: TasteCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TasteCommand {
    /// Mark songs as liked or disliked (by id, path, or text in the title), from flags or a file.
    Mark(TasteMarkArgs),
    /// Train the taste model: logistic regression and a k-NN vote compared by cross-validation, the
    /// better kept; accuracy, precision, recall, ROC AUC and the confusion matrix printed and saved
    /// (PROFILE/taste.json, PROFILE/taste.png).
    Train(TasteTrainArgs),
    /// Drop the songs of a playlist (M3U or a plain list of paths) the listener would likely dislike.
    Filter(TasteFilterArgs),
    /// Songs the listener has not marked that they are most likely to like.
    Discover(TasteDiscoverArgs),
}

#[derive(Args, Debug)]
pub struct TasteMarkArgs {
    /// Profile folder (created on first use; one per listener).
    pub profile: PathBuf,
    /// Store the songs are in.
    #[arg(long)]
    pub store: PathBuf,
    /// A song they like (repeatable).
    #[arg(long = "like")]
    pub likes: Vec<String>,
    /// A song they dislike (repeatable).
    #[arg(long = "dislike")]
    pub dislikes: Vec<String>,
    /// Forget a song's mark (repeatable).
    #[arg(long = "unmark")]
    pub unmarks: Vec<String>,
    /// A file of marks: CSV with a `song` (or `id`, `path`, `title`) and a `mark` column (like/dislike),
    /// or an M3U / plain list of paths marked as `--as` says.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// The mark for every song of a playlist given with --from.
    #[arg(long = "as", value_parser = parse_mark)]
    pub as_mark: Option<soundalike_recommend::Mark>,
    /// When another process is changing the profile, wait for it instead of stopping.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct TasteTrainArgs {
    /// Profile folder.
    pub profile: PathBuf,
    /// Store the songs are in (supplies background songs when there are no dislikes).
    #[arg(long)]
    pub store: PathBuf,
    /// Seed of the cross-validation folds and background draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not draw taste.png.
    #[arg(long)]
    pub no_plots: bool,
}

#[derive(Args, Debug)]
pub struct TasteFilterArgs {
    /// Profile folder.
    pub profile: PathBuf,
    /// Playlist (.m3u, .m3u8 or a text file with one path per line).
    pub playlist: PathBuf,
    /// Store the songs are in.
    #[arg(long)]
    pub store: PathBuf,
    /// The cleaned playlist.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep songs at least this likely to be liked.
    #[arg(long, default_value_t = 0.5)]
    pub min_like: f32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TasteDiscoverArgs {
    /// Profile folder.
    pub profile: PathBuf,
    /// Store the songs are in.
    #[arg(long)]
    pub store: PathBuf,
    /// How many.
    #[arg(short, long, default_value_t = 30)]
    pub k: usize,
    /// Only this genre.
    #[arg(long, conflicts_with = "other_genres")]
    pub genre: Option<String>,
    /// Only genres none of their liked songs has (explore).
    #[arg(long)]
    pub other_genres: bool,
    /// At most this many songs per artist, and per album (0: no limit).
    #[arg(long, default_value_t = 2)]
    pub max_per_artist: usize,
    /// Also write the list as an M3U playlist.
    #[arg(long)]
    pub m3u: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Where a song's genre comes from (tag, predicted or either).
    #[arg(long, default_value = "either", value_parser = parse_genre_source)]
    pub genre_source: soundalike_recommend::GenreSource,
}

fn parse_mark(s: &str) -> Result<soundalike_recommend::Mark, String> {
    s.parse()
}

pub fn run(a: TasteArgs) -> Result<ExitCode> {
    match a.cmd {
        TasteCommand::Mark(a) => mark(a),
        TasteCommand::Train(a) => train(a),
        TasteCommand::Filter(a) => filter(a),
        TasteCommand::Discover(a) => discover(a),
    }
}

fn open(store: &Path) -> Result<Catalog> {
    Ok(Catalog::open(store, Method::Auto, &AnnParams::default())?)
}

/// Marks read from a file: CSV with song + mark columns, or a playlist / path list with one mark for all.
fn marks_from_file(path: &Path, as_mark: Option<Mark>) -> Result<Vec<(String, Mark)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let head: Vec<String> = r.headers()?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        let col = |names: &[&str]| names.iter().find_map(|n| head.iter().position(|h| h == n));
        let song = col(&["song", "id", "path", "title"]).with_context(|| format!("{}: needs a `song` (or id, path, title) column", path.display()))?;
        let mark = col(&["mark", "like"]);
        let mut out = Vec::new();
        for (i, rec) in r.records().enumerate() {
            let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
            let m = match (mark, as_mark) {
                (Some(c), _) => rec.get(c).unwrap_or("").parse::<Mark>().map_err(|e| anyhow::anyhow!("{}: row {}: {e}", path.display(), i + 2))?,
                (None, Some(m)) => m,
                (None, None) => bail!("{}: no `mark` column; pass --as like or --as dislike", path.display()),
            };
            out.push((rec.get(song).unwrap_or("").to_string(), m));
        }
        return Ok(out);
    }
    let Some(m) = as_mark else { bail!("{}: a playlist or list of paths needs --as like or --as dislike", path.display()) };
    Ok(playlist_entries(path, &text).into_iter().map(|e| (e.path.to_string_lossy().into_owned(), m)).collect())
}

fn mark(a: TasteMarkArgs) -> Result<ExitCode> {
    let TasteMarkArgs { profile, store, likes, dislikes, unmarks, from, as_mark, wait } = a;
    let (profile, store) = (profile.as_path(), store.as_path());
    let mut wanted: Vec<(String, Mark)> = likes.into_iter().map(|s| (s, Mark::Like)).chain(dislikes.into_iter().map(|s| (s, Mark::Dislike))).collect();
    if let Some(f) = &from {
        wanted.extend(marks_from_file(f, as_mark)?);
    }
    if wanted.is_empty() && unmarks.is_empty() {
        bail!("nothing to mark: give --like SONG, --dislike SONG, --unmark SONG or --from FILE");
    }
    let cat = open(store)?;
    // Resolve everything first: an unknown song or a contradiction changes nothing.
    let mut rows: HashMap<usize, (Mark, String)> = HashMap::new();
    for (q, m) in &wanted {
        let r = cat.resolve(q).with_context(|| format!("cannot mark {q:?}"))?;
        if let Some((prev, pq)) = rows.get(&r) {
            if prev != m {
                bail!("{} is both liked and disliked here ({pq:?} and {q:?}); nothing was changed", cat.songs()[r].id);
            }
        }
        rows.insert(r, (*m, q.clone()));
    }
    let forget: Vec<usize> = unmarks.iter().map(|q| cat.resolve(q).with_context(|| format!("cannot unmark {q:?}"))).collect::<Result<_>>()?;
    let _lock = Profile::lock(profile, wait.into())?;
    let mut p = Profile::load_or_new(profile, &cat.header)?;
    let mut sorted: Vec<(&usize, &(Mark, String))> = rows.iter().collect();
    sorted.sort_by_key(|(r, _)| **r);
    for (&r, (m, _)) in sorted {
        let s = &cat.songs()[r];
        match p.mark(s, &cat.vector(r), *m) {
            Some(prev) if prev != *m => println!("{:?} -> {:?}: {} ({})", prev, m, s.title, s.id),
            Some(_) => println!("already {:?}: {} ({})", m, s.title, s.id),
            None => println!("{:?}: {} ({})", m, s.title, s.id),
        }
    }
    for r in forget {
        let s = &cat.songs()[r];
        match p.unmark(&s.id) {
            Some(prev) => println!("forgot {prev:?}: {} ({})", s.title, s.id),
            None => println!("not marked: {} ({})", s.title, s.id),
        }
    }
    p.save(profile)?;
    let (l, d) = p.counts();
    println!("{}: {l} likes, {d} dislikes", profile.display());
    Ok(ExitCode::SUCCESS)
}

/// The profile and an up-to-date taste model (trained now, in memory, when `taste.json` is missing or
/// older than the marks).
pub fn model_for(profile: &Path, cat: &Catalog, seed: u64) -> Result<(Profile, TasteModel, bool)> {
    let Some(p) = Profile::load(profile, &cat.header)? else {
        bail!("{}: no marks yet; mark songs first (`soundalike taste mark {} --store STORE --like SONG`)", profile.display(), profile.display());
    };
    if let Some(m) = TasteModel::load(profile, &cat.header)?.filter(|m| m.marks_digest == p.digest()) {
        return Ok((p, m, false));
    }
    let m = train_now(&p, cat, seed)?;
    Ok((p, m, true))
}

fn train_now(p: &Profile, cat: &Catalog, seed: u64) -> Result<TasteModel> {
    Ok(soundalike_recommend::train_taste_on(p, cat, seed, true)?)
}

fn train(a: TasteTrainArgs) -> Result<ExitCode> {
    let TasteTrainArgs { profile, store, seed, json: json_out, no_plots } = a;
    let (profile, store) = (profile.as_path(), store.as_path());
    let cat = open(store)?;
    let Some(p) = Profile::load(profile, &cat.header)? else { bail!("{}: no marks yet", profile.display()) };
    let _lock = Profile::lock(profile, soundalike_recommend::LockWait::No)?;
    let m = train_now(&p, &cat, seed)?;
    m.save(profile)?;
    let png = profile.join("taste.png");
    if !no_plots && !m.cv.is_empty() {
        crate::draw::taste_png(&png, &m)?;
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"model": m.classifier.name(), "likes": m.likes, "dislikes": m.dislikes, "background": m.background, "notes": m.notes, "cv": m.cv}))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} likes, {} dislikes{}", m.likes, m.dislikes, if m.background > 0 { format!(", {} background songs", m.background) } else { String::new() });
    for n in &m.notes {
        println!("note: {n}");
    }
    if !m.cv.is_empty() {
        println!("\n{}-fold cross-validation (stratified, pooled out-of-fold predictions, threshold 0.5):", m.cv[0].folds);
        println!("{:<36} {:>8} {:>9} {:>7} {:>7}  confusion [[TN FP] [FN TP]]", "classifier", "accuracy", "precision", "recall", "ROC AUC");
        for s in &m.cv {
            let kept = if s.classifier == m.classifier.name() { "  <- kept" } else { "" };
            println!("{:<36} {:>8.3} {:>9.3} {:>7.3} {:>7.3}  {:?}{kept}", s.classifier, s.accuracy, s.precision, s.recall, s.roc_auc, s.confusion);
        }
    }
    println!("\nkept: {} -> {}", m.classifier.name(), TasteModel::path(profile).display());
    if !no_plots && !m.cv.is_empty() {
        println!("wrote {}", png.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// One playlist entry: the path as written (resolved against the playlist's folder) and the lines that
/// came with it (`#EXTINF`).
pub struct Entry {
    /// The path (absolute, or relative to the playlist's folder, joined).
    pub path: PathBuf,
    /// The lines as they were (comments before it, then the path line).
    pub lines: Vec<String>,
}

/// Reads an M3U/M3U8 or a plain list of paths: blank lines and `#` comments are not entries (an
/// `#EXTINF` stays with the path after it); `file://` URIs are accepted.
pub fn playlist_entries(path: &Path, text: &str) -> Vec<Entry> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut pending: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t == "#EXTM3U" {
            continue;
        }
        if t.starts_with('#') {
            pending.push(line.to_string());
            continue;
        }
        let raw = t.strip_prefix("file://").unwrap_or(t);
        let p = PathBuf::from(raw);
        let p = if p.is_absolute() { p } else { dir.join(p) };
        pending.push(line.to_string());
        out.push(Entry { path: p, lines: std::mem::take(&mut pending) });
    }
    out
}

fn filter(a: TasteFilterArgs) -> Result<ExitCode> {
    let TasteFilterArgs { profile, playlist, store, out, min_like, json: json_out } = a;
    let (profile, playlist, store, out) = (profile.as_path(), playlist.as_path(), store.as_path(), out.as_path());
    let text = std::fs::read_to_string(playlist).with_context(|| format!("cannot read {}", playlist.display()))?;
    let entries = playlist_entries(playlist, &text);
    if entries.is_empty() {
        bail!("{}: the playlist is empty; nothing written", playlist.display());
    }
    let cat = open(store)?;
    let (_, model, _) = model_for(profile, &cat, 0)?;
    let root = std::fs::canonicalize(&cat.header.library_root).ok();
    let (mut kept, mut report) = (Vec::new(), Vec::new());
    for e in &entries {
        let shown = e.path.display().to_string();
        let row = std::fs::canonicalize(&e.path).ok().and_then(|abs| {
            let rel = abs.strip_prefix(root.as_ref()?).ok()?;
            cat.row(&rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"))
        });
        let (keep, p, why) = match row {
            Some(r) => {
                let p = model.predict(&cat.vector(r));
                (p >= min_like, Some(p), if p >= min_like { "likely liked" } else { "below --min-like" })
            }
            // Nothing to judge by: kept, and said.
            None if !e.path.exists() => (true, None, "file missing: kept, not judged"),
            None => (true, None, "not in the store (embed it first): kept, not judged"),
        };
        if keep {
            kept.extend(e.lines.iter().cloned());
        }
        report.push(json!({"path": shown, "kept": keep, "p_like": p, "why": why}));
    }
    let is_m3u = out.extension().is_some_and(|x| x.eq_ignore_ascii_case("m3u") || x.eq_ignore_ascii_case("m3u8"));
    let mut body = if is_m3u || text.trim_start().starts_with("#EXTM3U") { "#EXTM3U\n".to_string() } else { String::new() };
    kept.iter().for_each(|l| {
        body.push_str(l);
        body.push('\n');
    });
    soundalike_dataset::write_atomic(out, body.as_bytes())?;
    let dropped = report.iter().filter(|r| r["kept"] == false).count();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"out": out, "songs": entries.len(), "dropped": dropped, "min_like": min_like, "entries": report}))?);
    } else {
        for r in &report {
            let p = r["p_like"].as_f64().map_or("   -".into(), |p| format!("{p:.2}"));
            println!("{} {p}  {}  ({})", if r["kept"] == true { "keep" } else { "DROP" }, r["path"].as_str().unwrap_or(""), r["why"].as_str().unwrap_or(""));
        }
        println!("{}: kept {} of {} songs (dropped {dropped} below p = {min_like}) -> {}", playlist.display(), entries.len() - dropped, entries.len(), out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Songs ranked by the taste model, with the diversity caps.
fn discover(a: TasteDiscoverArgs) -> Result<ExitCode> {
    let TasteDiscoverArgs { profile, store, k, genre, other_genres, max_per_artist: max_per, m3u, json: json_out, genre_source } = a;
    let (profile, store) = (profile.as_path(), store.as_path());
    if k == 0 {
        bail!("-k must be at least 1");
    }
    let mut cat = open(store)?;
    cat.use_genres(genre_source);
    let (p, model, fresh) = model_for(profile, &cat, 0)?;
    let eq = |a: Option<&str>, b: &str| a.is_some_and(|a| a.eq_ignore_ascii_case(b));
    if let Some(g) = genre.as_deref().filter(|g| !cat.has_genre(g)) {
        bail!("no song in {} has genre {g:?}", store.display());
    }
    let liked_genres: Vec<String> = p.marks.iter().filter(|m| m.mark == Mark::Like).filter_map(|m| cat.get(&m.id)?.genre.clone()).collect();
    let keep = |r: usize| {
        let g = cat.songs()[r].genre.as_deref();
        genre.as_deref().is_none_or(|x| eq(g, x)) && (!other_genres || !liked_genres.iter().any(|x| eq(g, x)))
    };
    let picks: Vec<(f32, Recommendation)> =
        soundalike_recommend::discover(&cat, &p, &model, k, max_per, &keep).into_iter().enumerate().map(|(i, (r, pl))| (pl, cat.recommendation(r, i + 1, pl))).collect();
    if let Some(path) = &m3u {
        let mut body = String::from("#EXTM3U\n");
        for (_, r) in &picks {
            let s = cat.get(r.id).expect("a picked song is in the catalog");
            body.push_str(&format!("#EXTINF:{},{}{}\n{}\n", s.duration_s.round() as i64, s.artist.as_deref().map(|a| format!("{a} - ")).unwrap_or_default(), s.title, cat.header.library_root.join(&s.id).display()));
        }
        soundalike_dataset::write_atomic(path, body.as_bytes())?;
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"model": model.classifier.name(), "trained_now": fresh, "notes": model.notes, "results": picks.iter().map(|(_, r)| r).collect::<Vec<_>>()}))?);
    } else {
        let (l, d) = p.counts();
        println!("songs {} ({l} likes, {d} dislikes) would most likely like ({}{}):", profile.display(), model.classifier.name(), if fresh { ", trained just now" } else { "" });
        println!("(score = probability of liking)");
        crate::output::print_table(&picks.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>());
        if let Some(path) = &m3u {
            println!("wrote {}", path.display());
        }
        for n in &model.notes {
            println!("note: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
