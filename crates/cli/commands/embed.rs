//! `embed`: every song of a library into a store (parallel, incremental, resumable, shardable).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use rayon::prelude::*;
use soundalike_audio::{analyze_file_with, Extras};
use soundalike_audio::facts::FACTS_VERSION;
use soundalike_model::musicnn;
use soundalike_dataset::{fingerprint_file, metadata_from_path, SongFile, SongLabels};
use soundalike_model::LoadedModel;
use soundalike_recommend::{ShardInfo, Store, StoreHeader, StoreWriter, STORE_FORMAT_VERSION};

use crate::flags::LabelArgs;
use crate::util::{bar, parse_shard, scan_with_labels};

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Library folder.
    pub library: PathBuf,
    /// Model folder.
    #[arg(long, default_value = "models/default")]
    pub model: PathBuf,
    /// Store folder.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub labels: LabelArgs,
    /// Embed only shard K of N (`K/N`, K from 0), for N machines; join with `soundalike merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Compute device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also build the HNSW index afterwards.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub index: bool,
    /// Songs decoded per batch (memory is bounded by this times the longest song).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// When another process is writing the store, wait for it to finish instead of stopping.
    #[arg(long)]
    pub wait: bool,
    /// Tag every song with the musicnn taggers (MSD and MTT; a 3-s patch per 7.5 s of song, at most 6):
    /// several times the time of embedding alone. `--tags false` leaves songs untagged (a later run with tags adds them
    /// without re-embedding).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tags: bool,
    /// Allow removing songs whose files are gone when the library is empty or more than
    /// `PRUNE_GUARD` (20%) of the store would go (an unmounted drive or a wrong folder looks like that).
    #[arg(long)]
    pub prune: bool,
}

/// Above this share of the store, removing songs whose files are gone needs `--prune`.
pub const PRUNE_GUARD: f64 = 0.2;

/// The header a store made by `model` carries.
pub fn header_for(model: &LoadedModel, library_root: &Path) -> Result<StoreHeader> {
    Ok(StoreHeader {
        format_version: STORE_FORMAT_VERSION,
        model_fingerprint: model.config.fingerprint.clone(),
        model_name: model.config.name.clone(),
        frontend: serde_json::to_value(&model.config.frontend)?,
        labels: model.config.labels.clone(),
        dim: model.config.arch.embedding_dim,
        library_root: std::fs::canonicalize(library_root).unwrap_or_else(|_| library_root.to_path_buf()),
        metadata_version: soundalike_recommend::METADATA_VERSION,
    })
}

fn shard_of(id: &str, n: usize) -> usize {
    let h = blake3::hash(id.as_bytes());
    (u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8])) % n as u64) as usize
}

/// Embeds one file: decode, log-mel, tiles, network, mean, L2-normalise.
/// Why one song could not be embedded (the batch goes on without it and lists it at the end).
#[derive(Debug)]
pub struct SongFailure {
    /// A short class (`io`, `corrupt`, `too short`, ...), for the report's `kind`.
    pub kind: String,
    /// The message, naming the file.
    pub reason: String,
}

/// What a song is called and its genre, by the rules of [`soundalike_recommend::METADATA_VERSION`].
struct Names {
    title: String,
    artist: Option<String>,
    album: Option<String>,
    genre: Option<String>,
    from_path: Vec<String>,
}

impl Names {
    /// Tags first, then the CSV, then the usual `Artist/Album/NN Title` layout (recorded as read from the
    /// path). The genre is the CSV's genre column or the genre tag: a folder name is a training set's
    /// convention, not a library's (an artist's folder is no genre); songs without one get the model's.
    fn of(tags: &soundalike_audio::Tags, e: &SongLabels, rel_path: &str) -> Names {
        let path = metadata_from_path(rel_path);
        let mut from_path = Vec::new();
        let mut or_path = |v: Option<String>, p: Option<String>, what: &str| {
            v.filter(|v| !v.trim().is_empty()).or_else(|| p.inspect(|_| from_path.push(what.to_string())))
        };
        let title = or_path(tags.title.clone().or(e.title.clone()), Some(path.title), "title").unwrap_or_default();
        let artist = or_path(tags.artist.clone().or(e.artist.clone()), path.artist, "artist");
        let album = or_path(tags.album.clone().or(e.album.clone()), path.album, "album");
        Names { title, artist, album, genre: e.genre.clone().or(tags.genre.clone()), from_path }
    }
}

/// What the decode pass computes beside the log-mel: the facts always, the tagger's spectrogram when
/// tagging.
fn extras(tags: bool) -> Extras {
    Extras { facts: true, power_mel: tags.then(musicnn::frontend), no_log_mel: false }
}

pub fn embed_one(model: &LoadedModel, device: &soundalike_model::Device, f: &SongFile, e: &SongLabels, tags: bool) -> Result<soundalike_recommend::SongRecord, SongFailure> {
    let fp = fingerprint_file(&f.path).map_err(|err| SongFailure { kind: "io".into(), reason: err.to_string() })?;
    let mut a = analyze_file_with(&f.path, &model.config.frontend, &model.analysis_extras(extras(tags))).map_err(|err| SongFailure { kind: err.kind().to_string(), reason: err.to_string() })?;
    let (emb, song_tags) = model.embed_analysis(&mut a, device);
    let tags = song_tags.filter(|_| tags);
    let m = Names::of(&a.info.tags, e, &f.rel_path);
    Ok(soundalike_recommend::SongRecord {
        id: f.rel_path.clone(),
        title: m.title,
        artist: m.artist,
        album: m.album,
        genre: m.genre,
        group: e.group.clone(),
        from_path: m.from_path,
        duration_s: a.info.duration_s,
        fingerprint: fp,
        size: f.size,
        mtime: f.mtime,
        probs: emb.probs,
        vector: emb.vector,
        facts: a.facts,
        tags,
    })
}

/// Adds the facts of this version (and, when tagging, the tags of this version) to the songs in `mine`
/// that are not in `todo` (kept as they are) and lack them; returns how many. A file that cannot be
/// decoded now keeps its record as it was.
fn analyse_unchanged(store: &mut StoreWriter, files: &[SongFile], mine: &[usize], todo: &[usize], frontend: &soundalike_audio::FrontendConfig, tags: bool, progress: &dyn Progress) -> Result<usize> {
    let again: HashSet<usize> = todo.iter().copied().collect();
    let stale: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|i| !again.contains(i) && store.get(&files[*i].rel_path).is_some_and(|m| m.facts_version != FACTS_VERSION || (tags && m.tags_version != soundalike_recommend::TAGS_VERSION)))
        .collect();
    if stale.is_empty() {
        return Ok(0);
    }
    progress.start("analysing", stale.len() as u64);
    let mut n = 0;
    for chunk in stale.chunks(64) {
        let found: Vec<_> = chunk
            .par_iter()
            .map(|&i| {
                let found = analyze_file_with(&files[i].path, frontend, &extras(tags)).ok().map(|mut a| (a.facts.take(), super::tags::tags_of(&mut a, musicnn::EMBED_PLAN, &files[i].path).ok()));
                progress.inc();
                found
            })
            .collect();
        for (&i, found) in chunk.iter().zip(found) {
            if let Some((facts, new_tags)) = found {
                let old = store.record(&files[i].rel_path)?;
                let rec = soundalike_recommend::SongRecord { facts: facts.or(old.facts.clone()), tags: new_tags.or(old.tags.clone()), ..old };
                store.put(rec)?;
                n += 1;
            }
        }
        store.sync()?;
        progress.checkpoint()?;
    }
    progress.finish();
    Ok(n)
}

/// How an embedding run reports its progress, and how its caller stops it.
pub trait Progress: Sync {
    /// A stage of `total` songs begins (`analysing`, `embedding`).
    fn start(&self, stage: &str, total: u64);
    /// One more song of the stage is done (called from the worker threads).
    fn inc(&self);
    /// Called on the calling thread after each batch, once its songs are durable in the store: an error
    /// stops the run there (what is done is kept; the next run goes on from it).
    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
    /// The stage is over.
    fn finish(&self);
}

/// The command line's progress: an indicatif bar per stage on stderr.
#[derive(Default)]
pub struct Bars(std::sync::RwLock<Option<indicatif::ProgressBar>>);

impl Progress for Bars {
    fn start(&self, stage: &str, total: u64) {
        if let Ok(mut b) = self.0.write() {
            *b = Some(bar(total, stage));
        }
    }
    fn inc(&self) {
        if let Ok(b) = self.0.read() {
            b.iter().for_each(|b| b.inc(1));
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.0.write() {
            b.take().iter().for_each(|b| b.finish_and_clear());
        }
    }
}

pub fn run(a: EmbedArgs) -> Result<ExitCode> {
    let device = soundalike_model::device_from_name(&a.device)?;
    let model = soundalike_model::load_model(&a.model, &device)?;
    let report = embed_library(&a, &model, &device, &Bars::default())?;
    if a.json {
        // Through a JSON value, whose keys are printed in order, as the report always was.
        println!("{}", serde_json::to_string_pretty(&serde_json::to_value(&report)?)?);
    } else {
        print_report(&report);
    }
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What an embedding run did: what `embed --json` prints, and what the command's summary says.
#[derive(Debug, serde::Serialize)]
pub struct EmbedReport {
    pub store: PathBuf,
    pub model: String,
    pub model_fingerprint: String,
    pub shard: Option<String>,
    pub songs_in_store: usize,
    pub embedded: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// The songs removed because their files are gone.
    pub removed_ids: Vec<String>,
    pub unchanged_content_new_mtime: usize,
    pub renamed: usize,
    pub analysed: usize,
    pub library_root_updated: bool,
    pub library_root: PathBuf,
    /// Whether the run tagged songs.
    pub tags: bool,
    /// The songs that could not be embedded, by path.
    pub failed: Vec<FailedSong>,
    pub seconds: f64,
    pub audio_seconds: f64,
    pub x_realtime: f64,
    pub index: Option<String>,
    pub clusters: Option<String>,
}

/// A song the run could not embed.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct FailedSong {
    pub path: String,
    pub kind: String,
    pub reason: String,
}

/// The report of [`embed_library`] as the command prints it.
fn print_report(r: &EmbedReport) {
    let store = r.store.display();
    if r.renamed > 0 {
        eprintln!("{store}: {} songs renamed by the current rules (tags read again; a folder is no longer a genre)", r.renamed);
    }
    if r.analysed > 0 {
        let what = if r.tags { "tempo, key, loudness and tags" } else { "tempo, key and loudness" };
        eprintln!("{store}: {what} added to {} songs without re-embedding them", r.analysed);
    }
    println!(
        "{store}: {} songs ({} embedded, {} unchanged, {} removed, {} failed) in {:.1} s ({:.0}x realtime)",
        r.songs_in_store,
        r.embedded,
        r.unchanged,
        r.removed,
        r.failed.len(),
        r.seconds,
        r.x_realtime,
    );
    if let Some(note) = &r.index {
        println!("  index: {note}");
    }
    if let Some(note) = &r.clusters {
        println!("  clusters: {note}");
    }
    if r.library_root_updated {
        println!("  the library moved: the store now points at {}", r.library_root.display());
    }
    for id in &r.removed_ids {
        println!("  removed {id} (file gone)");
    }
    for f in &r.failed {
        println!("  failed {}: {}", f.path, f.reason);
    }
}

/// Embeds the library of `a` into its store with `model` (already loaded: the command loads `a.model`,
/// the Python bindings their own): new and changed songs embedded, unchanged ones kept, older records
/// given what this version adds, the index and clusters brought up to date. Returns the report `embed
/// --json` prints. Songs that fail are listed in its `failed`; an error is returned only when the run
/// could not go on (the store is then as the last finished batch left it).
pub fn embed_library(a: &EmbedArgs, model: &LoadedModel, device: &soundalike_model::Device, progress: &dyn Progress) -> Result<EmbedReport> {
    let t0 = Instant::now();
    let (files, entries) = scan_with_labels(&a.library, &a.labels, false)?;
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let mine: Vec<usize> = (0..files.len()).filter(|&i| shard.is_none_or(|(k, n)| shard_of(&files[i].rel_path, n) == k)).collect();
    // Only id -> (size, mtime, offset) per song is held while embedding; vectors stay on disk.
    let header = header_for(model, &a.library)?;
    let mut store = StoreWriter::open_or_create_with(&a.out, header.clone(), a.wait.into())?;
    check_shard_marker(&a.out, shard, &header, store.is_empty())?;

    let present: HashSet<&str> = mine.iter().map(|&i| files[i].rel_path.as_str()).collect();
    let vanished: Vec<String> = store.ids().filter(|id| !present.contains(id)).map(str::to_string).collect();
    if files.is_empty() && store.is_empty() {
        bail!("{}: no audio files found (looked for {}); nothing to embed", a.library.display(), soundalike_audio::AUDIO_EXTENSIONS.join(", "));
    }
    if !vanished.is_empty() && !a.prune && (mine.is_empty() || vanished.len() as f64 > PRUNE_GUARD * store.len() as f64) {
        let shown: Vec<&str> = vanished.iter().take(5).map(String::as_str).collect();
        bail!(
            "{}: {} of the store's {} songs are not in {} ({}{}); nothing was changed. If the library is on a drive that is not \
             mounted, or this is the wrong folder, fix that and run again; if these songs were really deleted, pass --prune to \
             remove them from the store",
            a.out.display(),
            vanished.len(),
            store.len(),
            a.library.display(),
            shown.join(", "),
            if vanished.len() > shown.len() { ", ..." } else { "" }
        );
    }
    for id in &vanished {
        store.remove(id)?;
    }
    // The same library at a new path (moved, copied, remounted): same relative paths, so the vectors are
    // kept; the store follows the new root (for `serve`'s previews).
    let root_moved = store.header.library_root != header.library_root;
    if root_moved {
        store.set_library_root(&header.library_root)?;
    }
    // Unchanged (same size and mtime) songs are skipped without reading them. A file whose mtime changed
    // but whose content did not (a copy, a touched file) keeps its vector: only its mtime is updated.
    let mut retimed = 0usize;
    let mut todo: Vec<usize> = Vec::new();
    for &i in &mine {
        let f = &files[i];
        match store.get(&f.rel_path) {
            Some(s) if s.size == f.size && s.mtime == f.mtime => {}
            Some(s) if s.size == f.size => {
                let old = store.record(&f.rel_path)?;
                if fingerprint_file(&f.path).ok().as_deref() == Some(old.fingerprint.as_str()) {
                    store.put(soundalike_recommend::SongRecord { mtime: f.mtime, ..old })?;
                    retimed += 1;
                } else {
                    todo.push(i);
                }
            }
            _ => todo.push(i),
        }
    }
    let unchanged = mine.len() - todo.len();
    // A store named by older rules (a folder taken for a genre): its unchanged songs' names and genres are
    // read again from their tags (no decoding), once.
    let mut renamed = 0usize;
    if store.header.metadata_version < soundalike_recommend::METADATA_VERSION {
        let again: std::collections::HashSet<usize> = todo.iter().copied().collect();
        let keep: Vec<usize> = mine.iter().copied().filter(|i| !again.contains(i) && store.get(&files[*i].rel_path).is_some()).collect();
        let tags: Vec<_> = keep.par_iter().map(|&i| soundalike_audio::read_file_tags(&files[i].path).unwrap_or_default()).collect();
        for (&i, t) in keep.iter().zip(&tags) {
            let old = store.record(&files[i].rel_path)?;
            let m = Names::of(t, &entries[i], &files[i].rel_path);
            if (&old.title, &old.artist, &old.album, &old.genre, &old.from_path) != (&m.title, &m.artist, &m.album, &m.genre, &m.from_path) {
                store.put(soundalike_recommend::SongRecord { title: m.title, artist: m.artist, album: m.album, genre: m.genre, from_path: m.from_path, ..old })?;
                renamed += 1;
            }
        }
        store.sync()?;
        store.set_metadata_version(soundalike_recommend::METADATA_VERSION)?;
    }
    // Songs embedded before their tempo, key and loudness were found (or by older estimators): decoded
    // again for those alone, their vectors kept.
    let analysed = analyse_unchanged(&mut store, &files, &mine, &todo, &model.config.frontend, a.tags, progress)?;
    progress.start("embedding", todo.len() as u64);
    let mut failed: Vec<FailedSong> = Vec::new();
    let mut embedded = 0usize;
    let mut audio_seconds = 0f64;
    for chunk in todo.chunks(a.batch.max(1)) {
        let results: Vec<_> = chunk
            .par_iter()
            .map(|&i| {
                let r = embed_one(model, device, &files[i], &entries[i], a.tags);
                progress.inc();
                (i, r)
            })
            .collect();
        for (i, r) in results {
            match r {
                Ok(rec) => {
                    audio_seconds += rec.duration_s;
                    store.put(rec)?;
                    embedded += 1;
                }
                Err(SongFailure { kind, reason: why }) => {
                    // A file that used to embed but is now broken leaves the store.
                    store.remove(&files[i].rel_path)?;
                    failed.push(FailedSong { path: files[i].rel_path.clone(), kind, reason: why });
                }
            }
        }
        store.sync()?;
        progress.checkpoint()?;
    }
    progress.finish();
    store.compact()?;
    if let Some((k, n)) = shard {
        shard_marker(k, n, &header, true).save(&a.out)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let (mut index_note, mut clusters_note) = (None, None);
    let has_clusters = soundalike_recommend::Clustering::path(&a.out).exists();
    if (a.index || has_clusters) && !store.is_empty() {
        let full = Store::open(&a.out)?;
        if a.index {
            // Updated in place (inserts and tombstones) when songs changed; untouched when none did. Saved
            // under the lock this writer already holds (taking it again would fail and keep it in memory).
            let (_, up) = soundalike_recommend::sync_index_with(&full, &soundalike_recommend::AnnParams::default(), Some(store.lock()), false)?;
            index_note = Some(crate::output::describe_update(&up));
        }
        if has_clusters {
            // New and changed songs get their nearest cluster; the clustering is marked stale.
            // A clustering that cannot be read is reported, not fatal: the songs are embedded.
            clusters_note = crate::commands::clusters::refresh_after_embed(&full).unwrap_or_else(|e| Some(format!("not updated: {e:#}")));
        }
    }
    failed.sort();
    let report = EmbedReport {
        store: a.out.clone(),
        model: model.config.name.clone(),
        model_fingerprint: model.config.fingerprint.clone(),
        shard: a.shard.clone(),
        songs_in_store: store.len(),
        embedded,
        unchanged,
        removed: vanished.len(),
        removed_ids: vanished,
        unchanged_content_new_mtime: retimed,
        renamed,
        analysed,
        library_root_updated: root_moved,
        library_root: header.library_root,
        tags: a.tags,
        failed,
        seconds: secs,
        audio_seconds,
        x_realtime: if secs > 0.0 { audio_seconds / secs } else { 0.0 },
        index: index_note,
        clusters: clusters_note,
    };
    Ok(report)
}

/// A shard store carries `shard.json` (K, N, model, library), written on its first run; a store is never
/// switched between shards, or between a shard and a whole library, silently.
fn check_shard_marker(out: &Path, shard: Option<(usize, usize)>, header: &StoreHeader, empty: bool) -> Result<()> {
    let have = ShardInfo::load(out)?;
    match (shard, have) {
        (Some((k, n)), Some(h)) if h.shard != k || h.of != n => {
            bail!("{}: this store is shard {}/{} of a sharded embedding; you asked for --shard {k}/{n} (use another --out)", out.display(), h.shard, h.of)
        }
        (Some(_), None) if !empty => bail!("{}: this store holds a whole library, not a shard; give --shard jobs their own --out", out.display()),
        // Marked unfinished until this run ends (a killed task leaves it so, and merge refuses it).
        (Some((k, n)), _) => Ok(shard_marker(k, n, header, false).save(out)?),
        (None, Some(h)) => bail!("{}: this store is shard {}/{}; embed it with --shard {}/{}, or `soundalike merge` the shards into a new store", out.display(), h.shard, h.of, h.shard, h.of),
        (None, None) => Ok(()),
    }
}

fn shard_marker(k: usize, n: usize, header: &StoreHeader, complete: bool) -> ShardInfo {
    ShardInfo { format_version: STORE_FORMAT_VERSION, shard: k, of: n, model_fingerprint: header.model_fingerprint.clone(), library_root: header.library_root.clone(), complete }
}
