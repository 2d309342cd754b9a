//! The embedding store: a folder with `store.json` (header: format version, model fingerprint, front-end
//! settings, labels) and `songs.jsonl`, an append-only journal of `put`/`del` records. A write interrupted
//! at any moment leaves at most one torn last line, which loading ignores; `compact` rewrites the journal
//! atomically, sorted by id, so an interrupted-and-resumed run ends byte-identical to an uninterrupted one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::lock::{LockWait, StoreLock};
use crate::{IndexError, Result};

/// Version of the store format.
pub const STORE_FORMAT_VERSION: u32 = 1;

/// Version of the rules that name a song and its genre at embed time (1: a folder is never a genre;
/// artist, album and title fall back to the `Artist/Album/NN Title` path). A store whose header has an older
/// one gets its songs' names and genres read again (tags only) on its next `embed`.
pub const METADATA_VERSION: u32 = 1;

/// What every record of a store shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreHeader {
    /// [`STORE_FORMAT_VERSION`].
    pub format_version: u32,
    /// Fingerprint of the model that made the vectors.
    pub model_fingerprint: String,
    /// Its name.
    pub model_name: String,
    /// Its front-end settings (as JSON).
    pub frontend: serde_json::Value,
    /// Class names of `probs`.
    pub labels: Vec<String>,
    /// Vector length.
    pub dim: usize,
    /// Library folder the relative paths refer to.
    pub library_root: PathBuf,
    /// [`METADATA_VERSION`] of the rules its songs were named by (0: a store from before them).
    #[serde(default)]
    pub metadata_version: u32,
}

/// One song.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SongRecord {
    /// Stable id: path relative to the library root.
    pub id: String,
    /// Title (tag, CSV or file name).
    pub title: String,
    /// Artist, if known.
    pub artist: Option<String>,
    /// Album, if known.
    pub album: Option<String>,
    /// Genre (the CSV's `genre` column or the file's genre tag; never a folder name), used by genre filters.
    pub genre: Option<String>,
    /// Group (e.g. soundtrack), used by `--exclude-same`.
    pub group: Option<String>,
    /// Which of `artist`, `album` and `title` were read from the file's path (`Artist/Album/NN Title`)
    /// because its tags and the CSV left them empty. Absent from older journals (read as empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_path: Vec<String>,
    /// Seconds of audio.
    pub duration_s: f64,
    /// BLAKE3 of the file's bytes.
    pub fingerprint: String,
    /// Size and mtime when embedded (cheap unchanged check).
    pub size: u64,
    /// Modification time (seconds since epoch).
    pub mtime: u64,
    /// Predicted class probabilities (header's `labels`).
    pub probs: Vec<f32>,
    /// L2-normalised embedding.
    pub vector: Vec<f32>,
    /// Tempo, key and loudness, found in the same decode as the vector. Absent from songs embedded before
    /// they were (the next `embed` analyses them without re-embedding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<soundalike_facts::Facts>,
    /// The taggers' guesses (musicnn MSD and MTT probabilities), from the same decode. Absent from songs
    /// embedded before tags were (the next `embed` tags them without re-embedding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<soundalike_tags::SongTags>,
}

impl SongRecord {
    /// Its tempo, when it has a steady beat and has been analysed.
    pub fn bpm(&self) -> Option<f32> {
        self.facts.as_ref().and_then(|f| f.tempo.bpm)
    }

    /// Its integrated loudness (LUFS), when measured.
    pub fn lufs(&self) -> Option<f32> {
        self.facts.as_ref().and_then(|f| f.lufs())
    }

    /// Its true peak (dBTP), when measured.
    pub fn true_peak_db(&self) -> Option<f32> {
        self.facts.as_ref().and_then(|f| f.true_peak_db())
    }

    /// Its key, when clear and analysed.
    pub fn key(&self) -> Option<soundalike_facts::CamelotKey> {
        self.facts.as_ref().and_then(|f| f.key.key)
    }

    /// The taggers' probability of `tag` (spelt as [`soundalike_tags::resolve`] spells it), when tagged.
    pub fn tag_prob(&self, tag: &str) -> Option<f32> {
        self.tags.as_ref().and_then(|t| t.prob(tag))
    }

    /// The most probable class, if the model has classes.
    pub fn predicted(&self, labels: &[String]) -> Option<String> {
        let i = self.probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?.0;
        labels.get(i).cloned()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Entry {
    /// The journal's first line: which model made its vectors (a journal without its `store.json`, or
    /// beside another model's, is refused instead of being adopted).
    Model { model_fingerprint: String },
    Put { song: Box<SongRecord> },
    Del { id: String },
}

/// An opened store: header plus live songs sorted by id.
pub struct Store {
    dir: PathBuf,
    /// Header.
    pub header: StoreHeader,
    songs: BTreeMap<String, SongRecord>,
    writer: Option<StoreWriter>,
}

impl Store {
    fn header_path(dir: &Path) -> PathBuf {
        dir.join(crate::layout::HEADER)
    }
    fn journal_path(dir: &Path) -> PathBuf {
        dir.join(crate::layout::JOURNAL)
    }

    /// Opens an existing store read-only.
    pub fn open(dir: &Path) -> Result<Store> {
        let header = read_header(dir)?;
        let mut songs = BTreeMap::new();
        scan_journal(dir, &header, |e, _| match e {
            Entry::Put { song } => {
                songs.insert(song.id.clone(), *song);
            }
            Entry::Del { id } => {
                songs.remove(&id);
            }
            Entry::Model { .. } => {}
        })?;
        Ok(Store { dir: dir.to_path_buf(), header, songs, writer: None })
    }

    /// Opens a store for writing, creating it with `header` if absent. An existing store made by another
    /// model or settings is refused, and so is a store another process is writing (see [`StoreLock`]).
    /// Writes go through a [`StoreWriter`]; the journal is read once for both.
    pub fn open_or_create(dir: &Path, header: StoreHeader) -> Result<Store> {
        Self::open_or_create_with(dir, header, LockWait::No)
    }

    /// [`Store::open_or_create`], waiting for another writer to finish when `wait` says so.
    pub fn open_or_create_with(dir: &Path, header: StoreHeader, wait: LockWait) -> Result<Store> {
        let lock = StoreLock::acquire(dir, wait)?;
        let header = ensure_header(dir, header)?;
        let (mut songs, mut metas) = (BTreeMap::new(), BTreeMap::new());
        let scan = scan_journal(dir, &header, |e, offset| match e {
            Entry::Put { song } => {
                metas.insert(song.id.clone(), SongMeta::of(&song, offset));
                songs.insert(song.id.clone(), *song);
            }
            Entry::Del { id } => {
                metas.remove(&id);
                songs.remove(&id);
            }
            Entry::Model { .. } => {}
        })?;
        let writer = StoreWriter::attach(dir, header.clone(), metas, scan, lock)?;
        Ok(Store { dir: dir.to_path_buf(), header, songs, writer: Some(writer) })
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Live songs, sorted by id.
    pub fn songs(&self) -> impl Iterator<Item = &SongRecord> {
        self.songs.values()
    }

    /// Number of live songs.
    pub fn len(&self) -> usize {
        self.songs.len()
    }

    /// Whether there are no songs.
    pub fn is_empty(&self) -> bool {
        self.songs.is_empty()
    }

    /// A song by id.
    pub fn get(&self, id: &str) -> Option<&SongRecord> {
        self.songs.get(id)
    }

    fn writer(&mut self) -> Result<&mut StoreWriter> {
        self.writer.as_mut().ok_or_else(|| IndexError::Invalid("store opened read-only".into()))
    }

    /// Adds or replaces a song (appended to the journal; durable after [`Store::sync`]).
    pub fn put(&mut self, song: SongRecord) -> Result<()> {
        self.writer()?.put(song.clone())?;
        self.songs.insert(song.id.clone(), song);
        Ok(())
    }

    /// Removes a song.
    pub fn remove(&mut self, id: &str) -> Result<bool> {
        let removed = self.writer()?.remove(id)?;
        self.songs.remove(id);
        Ok(removed)
    }

    /// Flushes the journal to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.writer()?.sync()
    }

    /// The writer's lock, when opened for writing.
    pub fn lock(&self) -> Option<&StoreLock> {
        self.writer.as_ref().map(|w| &w.lock)
    }

    /// Rewrites the journal as one `put` per live song, sorted by id, atomically.
    pub fn compact(&mut self) -> Result<()> {
        self.writer()?.compact()
    }

    /// The header and the songs sorted by id.
    pub fn into_parts(self) -> (StoreHeader, Vec<SongRecord>) {
        (self.header, self.songs.into_values().collect())
    }

    /// All vectors, row-major in id order, and the ids.
    pub fn matrix(&self) -> (Vec<f32>, Vec<&SongRecord>) {
        let rows: Vec<&SongRecord> = self.songs.values().collect();
        let mut m = Vec::with_capacity(rows.len() * self.header.dim);
        rows.iter().for_each(|s| m.extend_from_slice(&s.vector));
        (m, rows)
    }
}

/// A shard store's place in a sharded embedding (`STORE/shard.json`), written by `embed --shard K/N` and
/// checked by `merge`: all N shards, each once, of one library and one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// [`STORE_FORMAT_VERSION`].
    pub format_version: u32,
    /// K, from 0.
    pub shard: usize,
    /// N.
    pub of: usize,
    /// The model that embedded it.
    pub model_fingerprint: String,
    /// The library it is a shard of.
    pub library_root: PathBuf,
    /// Whether the last `embed` of this shard ran to the end (false while it runs, or after it was killed).
    #[serde(default)]
    pub complete: bool,
}

impl ShardInfo {
    /// `STORE/shard.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(crate::layout::SHARD)
    }

    /// The shard marker of a store, if it is a shard store.
    pub fn load(dir: &Path) -> Result<Option<ShardInfo>> {
        let p = Self::path(dir);
        let Some(bytes) = read_if_exists(&p)? else { return Ok(None) };
        let info: ShardInfo = serde_json::from_slice(&bytes).map_err(|e| IndexError::Incompatible { path: p.clone(), reason: format!("not a shard marker ({e})") })?;
        if info.format_version != STORE_FORMAT_VERSION {
            return Err(IndexError::Incompatible { path: p, reason: format!("shard marker format {} (this soundalike reads {STORE_FORMAT_VERSION})", info.format_version) });
        }
        Ok(Some(info))
    }

    /// Writes the marker atomically (the caller holds the store's lock).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = Self::path(dir);
        write_atomic(&p, &serde_json::to_vec_pretty(self).map_err(|e| io_err(&p, e))?)
    }
}

/// What a [`StoreWriter`] keeps of a song: enough to tell an unchanged file, and where its record is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SongMeta {
    /// File size when embedded.
    pub size: u64,
    /// File modification time when embedded.
    pub mtime: u64,
    /// Version of the estimators that found its tempo, key and loudness (0: not analysed).
    pub facts_version: u32,
    /// Version of the tagger that tagged it (0: not tagged).
    pub tags_version: u32,
    /// Byte offset of the song's latest `put` line in the journal.
    offset: u64,
}

impl SongMeta {
    fn of(song: &SongRecord, offset: u64) -> SongMeta {
        SongMeta {
            size: song.size,
            mtime: song.mtime,
            facts_version: song.facts.as_ref().map_or(0, |f| f.version),
            tags_version: song.tags.as_ref().map_or(0, |t| t.version),
            offset,
        }
    }
}

/// A store opened for appending with memory that does not grow with the vectors: it keeps only
/// id -> (size, mtime, journal offset) for each song (about 100 bytes plus the id), streams the journal to
/// open it, and compacts by copying each song's latest line, in id order, into the new journal.
/// Writes the same bytes as [`Store`]: a store written by either reads the same.
pub struct StoreWriter {
    dir: PathBuf,
    /// Header.
    pub header: StoreHeader,
    songs: BTreeMap<String, SongMeta>,
    journal: std::fs::File,
    /// Journal length (where the next line starts).
    len: u64,
    lock: StoreLock,
}

impl StoreWriter {
    /// Opens (or creates with `header`) a store for appending. An existing store made by another model
    /// or settings is refused, and so is a store another process is writing (see [`StoreLock`]).
    pub fn open_or_create(dir: &Path, header: StoreHeader) -> Result<StoreWriter> {
        Self::open_or_create_with(dir, header, LockWait::No)
    }

    /// [`StoreWriter::open_or_create`], waiting for another writer to finish when `wait` says so.
    pub fn open_or_create_with(dir: &Path, header: StoreHeader, wait: LockWait) -> Result<StoreWriter> {
        let lock = StoreLock::acquire(dir, wait)?;
        let header = ensure_header(dir, header)?;
        let mut songs = BTreeMap::new();
        let scan = scan_journal(dir, &header, |e, offset| match e {
            Entry::Put { song } => {
                songs.insert(song.id.clone(), SongMeta::of(&song, offset));
            }
            Entry::Del { id } => {
                songs.remove(&id);
            }
            Entry::Model { .. } => {}
        })?;
        Self::attach(dir, header, songs, scan, lock)
    }

    /// The writer's lock on the store.
    pub fn lock(&self) -> &StoreLock {
        &self.lock
    }

    /// The full record of a song, read back from the journal.
    pub fn record(&mut self, id: &str) -> Result<SongRecord> {
        use std::io::{BufRead, Seek};
        let jp = Store::journal_path(&self.dir);
        let meta = self.songs.get(id).ok_or_else(|| IndexError::NotFound(format!("{id}: not in the store")))?;
        self.journal.flush().map_err(|e| io_err(&jp, e))?;
        let mut r = std::io::BufReader::new(std::fs::File::open(&jp).map_err(|e| io_err(&jp, e))?);
        r.seek(std::io::SeekFrom::Start(meta.offset)).map_err(|e| io_err(&jp, e))?;
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).map_err(|e| io_err(&jp, e))?;
        match serde_json::from_slice::<Entry>(&line) {
            Ok(Entry::Put { song }) => Ok(*song),
            _ => Err(IndexError::Incompatible { path: jp, reason: format!("the record of {id} at byte {} is not a song", meta.offset) }),
        }
    }

    /// Points the store at the library's new location (same relative paths), rewriting `store.json`.
    pub fn set_library_root(&mut self, root: &Path) -> Result<()> {
        self.header.library_root = root.to_path_buf();
        self.save_header()
    }

    /// Records that every song is named by the rules of `version` ([`METADATA_VERSION`]).
    pub fn set_metadata_version(&mut self, version: u32) -> Result<()> {
        self.header.metadata_version = version;
        self.save_header()
    }

    fn save_header(&self) -> Result<()> {
        let hp = Store::header_path(&self.dir);
        write_atomic(&hp, &serde_json::to_vec_pretty(&self.header).map_err(|e| io_err(&hp, e))?)
    }

    /// A writer over a scanned journal: cuts a torn last line off (so a second interruption cannot leave
    /// it in the middle of the journal), opens the journal for appending and starts a new journal with its
    /// model line.
    fn attach(dir: &Path, header: StoreHeader, songs: BTreeMap<String, SongMeta>, scan: JournalScan, lock: StoreLock) -> Result<StoreWriter> {
        let jp = Store::journal_path(dir);
        let mut len = scan.len;
        if let Some(at) = scan.torn_at {
            truncate(&jp, at)?;
            len = at;
        }
        let journal = std::fs::OpenOptions::new().create(true).append(true).open(&jp).map_err(|e| io_err(&jp, e))?;
        let mut w = StoreWriter { dir: dir.to_path_buf(), header, songs, journal, len, lock };
        if w.len == 0 {
            w.append(&Entry::Model { model_fingerprint: w.header.model_fingerprint.clone() })?;
        }
        Ok(w)
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of live songs.
    pub fn len(&self) -> usize {
        self.songs.len()
    }

    /// Whether there are no songs.
    pub fn is_empty(&self) -> bool {
        self.songs.is_empty()
    }

    /// What the store knows of a song.
    pub fn get(&self, id: &str) -> Option<&SongMeta> {
        self.songs.get(id)
    }

    /// Live song ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.songs.keys().map(String::as_str)
    }

    fn append(&mut self, e: &Entry) -> Result<()> {
        let jp = Store::journal_path(&self.dir);
        let mut line = serde_json::to_vec(e).map_err(|e| io_err(&jp, e))?;
        line.push(b'\n');
        self.journal.write_all(&line).map_err(|e| io_err(&jp, e))?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Adds or replaces a song (appended to the journal; durable after [`StoreWriter::sync`]).
    pub fn put(&mut self, song: SongRecord) -> Result<()> {
        if song.vector.len() != self.header.dim {
            return Err(IndexError::Invalid(format!("{}: vector has {} values, store dim {}", song.id, song.vector.len(), self.header.dim)));
        }
        let id = song.id.clone();
        let meta = SongMeta::of(&song, self.len);
        self.append(&Entry::Put { song: Box::new(song) })?;
        self.songs.insert(id, meta);
        Ok(())
    }

    /// Removes a song.
    pub fn remove(&mut self, id: &str) -> Result<bool> {
        if self.songs.contains_key(id) {
            self.append(&Entry::Del { id: id.to_string() })?;
            self.songs.remove(id);
            return Ok(true);
        }
        Ok(false)
    }

    /// Flushes the journal to disk.
    pub fn sync(&mut self) -> Result<()> {
        let jp = Store::journal_path(&self.dir);
        self.journal.sync_data().map_err(|e| io_err(&jp, e))
    }

    /// Rewrites the journal as each live song's latest `put` line, sorted by id, into a temp file that
    /// replaces it (streamed: one line in memory at a time).
    pub fn compact(&mut self) -> Result<()> {
        use std::io::{BufRead, Seek};
        let jp = Store::journal_path(&self.dir);
        self.journal.flush().map_err(|e| io_err(&jp, e))?;
        let tmp = self.dir.join(format!(".songs.jsonl.{}.tmp", std::process::id()));
        let r = (|| -> std::io::Result<Vec<(String, u64)>> {
            let mut src = std::io::BufReader::new(std::fs::File::open(&jp)?);
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            let mut line = Vec::new();
            let mut new_offsets = Vec::with_capacity(self.songs.len());
            let mut first = serde_json::to_vec(&Entry::Model { model_fingerprint: self.header.model_fingerprint.clone() }).map_err(std::io::Error::other)?;
            first.push(b'\n');
            out.write_all(&first)?;
            let mut at = first.len() as u64;
            for (id, meta) in &self.songs {
                src.seek(std::io::SeekFrom::Start(meta.offset))?;
                line.clear();
                src.read_until(b'\n', &mut line)?;
                if line.last() != Some(&b'\n') {
                    return Err(std::io::Error::other(format!("record of {id} at byte {} is incomplete", meta.offset)));
                }
                out.write_all(&line)?;
                new_offsets.push((id.clone(), at));
                at += line.len() as u64;
            }
            let f = out.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &jp)?;
            Ok(new_offsets)
        })();
        let offsets = match r {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err(&jp, e));
            }
        };
        for (id, at) in offsets {
            if let Some(m) = self.songs.get_mut(&id) {
                m.offset = at;
            }
        }
        self.journal = std::fs::OpenOptions::new().append(true).open(&jp).map_err(|e| io_err(&jp, e))?;
        self.len = self.journal.metadata().map_err(|e| io_err(&jp, e))?.len();
        Ok(())
    }
}

/// What [`check_journal`] found in a store's journal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalCheck {
    /// Lines that are valid records.
    pub valid_lines: usize,
    /// Live songs after replaying the valid records.
    pub songs: usize,
    /// Damaged lines: (1-based line number, byte offset, length). A torn last line is not counted here.
    pub damaged: Vec<(usize, u64, usize)>,
    /// A torn (unfinished) last line's byte offset, which every writer cuts off anyway.
    pub torn_at: Option<u64>,
    /// Where [`repair_journal`] moved the damaged bytes.
    pub moved_to: Option<PathBuf>,
}

/// Reads every line of the store's journal and reports which are damaged (unparseable, a vector of the
/// wrong width, or a model line of another model), without failing on them.
pub fn check_journal(dir: &Path) -> Result<JournalCheck> {
    let header = read_header(dir)?;
    let (check, _) = check_lines(dir, &header, false)?;
    Ok(check)
}

/// Keeps every valid record of the journal and moves the damaged lines, byte for byte, into
/// `damaged-<unix time>.jsonl` in the store folder for inspection; the journal is rewritten atomically. The
/// songs whose records were damaged are no longer in the store: the next `embed` embeds them again. Takes
/// the writer's lock (`lock` proves it).
pub fn repair_journal(dir: &Path, lock: &StoreLock) -> Result<JournalCheck> {
    if lock.dir() != dir {
        return Err(IndexError::Invalid(format!("{}: the lock held is for {}", dir.display(), lock.dir().display())));
    }
    let header = read_header(dir)?;
    let (mut check, parts) = check_lines(dir, &header, true)?;
    if check.damaged.is_empty() && check.torn_at.is_none() {
        return Ok(check);
    }
    let (good, bad) = parts.unwrap_or_default();
    if !bad.is_empty() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let aside = dir.join(format!("damaged-{t}.jsonl"));
        write_atomic(&aside, &bad)?;
        check.moved_to = Some(aside);
    }
    write_atomic(&Store::journal_path(dir), &good)?;
    Ok(check)
}

/// The line-by-line check; with `split`, also the valid and the damaged bytes.
#[allow(clippy::type_complexity)]
fn check_lines(dir: &Path, header: &StoreHeader, split: bool) -> Result<(JournalCheck, Option<(Vec<u8>, Vec<u8>)>)> {
    use std::io::BufRead;
    let jp = Store::journal_path(dir);
    let mut check = JournalCheck::default();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let mut live = std::collections::BTreeSet::new();
    if jp.exists() {
        let mut r = std::io::BufReader::new(std::fs::File::open(&jp).map_err(|e| io_err(&jp, e))?);
        let (mut line, mut at) = (Vec::new(), 0u64);
        for n in 1.. {
            line.clear();
            let got = r.read_until(b'\n', &mut line).map_err(|e| io_err(&jp, e))?;
            if got == 0 {
                break;
            }
            let offset = at;
            at += got as u64;
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let ok = match serde_json::from_slice::<Entry>(&line) {
                Ok(Entry::Put { song }) if song.vector.len() == header.dim => {
                    live.insert(song.id);
                    true
                }
                Ok(Entry::Del { id }) => {
                    live.remove(&id);
                    true
                }
                Ok(Entry::Model { model_fingerprint }) => model_fingerprint == header.model_fingerprint,
                _ => false,
            };
            if ok {
                check.valid_lines += 1;
                if split {
                    good.extend_from_slice(&line);
                }
            } else if line.last() != Some(&b'\n') {
                check.torn_at = Some(offset);
            } else {
                check.damaged.push((n, offset, got));
                if split {
                    bad.extend_from_slice(&line);
                }
            }
        }
    }
    check.songs = live.len();
    Ok((check, split.then_some((good, bad))))
}

/// Reads and checks `store.json`.
fn read_header(dir: &Path) -> Result<StoreHeader> {
    let hp = Store::header_path(dir);
    let b = std::fs::read(&hp).map_err(|cause| IndexError::NotAStore { path: hp.clone(), cause })?;
    let header: StoreHeader = serde_json::from_slice(&b).map_err(|e| IndexError::Incompatible { path: hp.clone(), reason: e.to_string() })?;
    if header.format_version != STORE_FORMAT_VERSION {
        return Err(IndexError::Incompatible {
            path: hp,
            reason: format!("store format {} but this soundalike reads {STORE_FORMAT_VERSION}", header.format_version),
        });
    }
    Ok(header)
}

/// The header of the store at `dir`, which must match `header`'s model and settings; a missing store is
/// created with `header`.
fn ensure_header(dir: &Path, header: StoreHeader) -> Result<StoreHeader> {
    let hp = Store::header_path(dir);
    if !hp.exists() {
        let jp = Store::journal_path(dir);
        if std::fs::metadata(&jp).is_ok_and(|m| m.len() > 0) {
            return Err(IndexError::Incompatible {
                path: jp,
                reason: "a journal of songs without its store.json: which model made its vectors is unknown, so it is not adopted; \
                         restore store.json, or move songs.jsonl away to start a new store here"
                    .into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        write_atomic(&hp, &serde_json::to_vec_pretty(&header).map_err(|e| io_err(&hp, e))?)?;
        return Ok(header);
    }
    let h = read_header(dir)?;
    if h.model_fingerprint != header.model_fingerprint || h.frontend != header.frontend || h.dim != header.dim {
        return Err(IndexError::OtherModel {
            path: hp,
            found: format!("{} ({})", h.model_name, h.model_fingerprint),
            wanted: format!("{} ({})", header.model_name, header.model_fingerprint),
        });
    }
    Ok(h)
}

/// What [`scan_journal`] saw: the journal's length and where a torn last line starts, if any.
struct JournalScan {
    len: u64,
    torn_at: Option<u64>,
}

/// Streams `songs.jsonl`, calling `on` with each record and the byte offset of its line. A final line
/// without its newline that does not parse is a write cut short (never committed) and is skipped; any
/// other bad line, a vector of the wrong width, or a model line of another model is an error naming the line.
fn scan_journal(dir: &Path, header: &StoreHeader, mut on: impl FnMut(Entry, u64)) -> Result<JournalScan> {
    let dim = header.dim;
    use std::io::BufRead;
    let jp = Store::journal_path(dir);
    let mut scan = JournalScan { len: 0, torn_at: None };
    if !jp.exists() {
        return Ok(scan);
    }
    let mut r = std::io::BufReader::new(std::fs::File::open(&jp).map_err(|e| io_err(&jp, e))?);
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        let got = r.read_until(b'\n', &mut line).map_err(|e| io_err(&jp, e))?;
        if got == 0 {
            break;
        }
        let offset = scan.len;
        scan.len += got as u64;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match serde_json::from_slice::<Entry>(&line) {
            Ok(Entry::Put { song }) if song.vector.len() != dim => {
                return Err(IndexError::Incompatible { path: jp, reason: format!("line {n}: vector of {} values, store dim {dim}", song.vector.len()) });
            }
            Ok(Entry::Model { model_fingerprint }) if model_fingerprint != header.model_fingerprint => {
                return Err(IndexError::Incompatible {
                    path: jp,
                    reason: format!(
                        "line {n}: these vectors were made by model {model_fingerprint}, but store.json names {} ({}); the journal is not adopted",
                        header.model_name, header.model_fingerprint
                    ),
                });
            }
            Ok(e) => on(e, offset),
            Err(_) if line.last() != Some(&b'\n') => scan.torn_at = Some(offset),
            Err(e) => {
                return Err(IndexError::Damaged { path: jp, line: n, reason: e.to_string() })
            }
        }
    }
    Ok(scan)
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| io_err(path, e))?;
    f.set_len(len).and_then(|_| f.sync_all()).map_err(|e| io_err(path, e))
}

/// Temp file + rename.
/// The bytes of a file that may not exist yet (`Ok(None)`); any other read error names the path.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Writes `bytes` to `path` atomically ([`soundalike_core::write_atomic`]), naming the path in errors.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    soundalike_core::write_atomic(path, bytes).map_err(|e| io_err(path, e))
}

