//! The embedding store: a folder with `store.json` (header: format version, model fingerprint, front-end
//! settings, labels) and `songs.jsonl`, an append-only journal of `put`/`del` records. A write interrupted
//! at any moment leaves at most one torn last line, which loading ignores; `compact` rewrites the journal
//! atomically, sorted by id, so an interrupted-and-resumed run ends byte-identical to an uninterrupted one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::{IndexError, Result};

/// Version of the store format.
pub const STORE_FORMAT_VERSION: u32 = 1;

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
    /// Genre (CSV column or tag), used by genre filters.
    pub genre: Option<String>,
    /// Group (e.g. soundtrack), used by `--exclude-same`.
    pub group: Option<String>,
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
}

impl SongRecord {
    /// The most probable class, if the model has classes.
    pub fn predicted(&self, labels: &[String]) -> Option<String> {
        let i = self.probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?.0;
        labels.get(i).cloned()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Entry {
    Put { song: Box<SongRecord> },
    Del { id: String },
}

/// An opened store: header plus live songs sorted by id.
pub struct Store {
    dir: PathBuf,
    /// Header.
    pub header: StoreHeader,
    songs: BTreeMap<String, SongRecord>,
    journal: Option<std::fs::File>,
}

impl Store {
    fn header_path(dir: &Path) -> PathBuf {
        dir.join("store.json")
    }
    fn journal_path(dir: &Path) -> PathBuf {
        dir.join("songs.jsonl")
    }

    /// Opens an existing store read-only.
    pub fn open(dir: &Path) -> Result<Store> {
        let hp = Self::header_path(dir);
        let b = std::fs::read(&hp).map_err(|e| {
            IndexError::Io { path: hp.clone(), reason: format!("not a soundalike store ({e}); make one with `soundalike embed`") }
        })?;
        let header: StoreHeader =
            serde_json::from_slice(&b).map_err(|e| IndexError::Incompatible { path: hp.clone(), reason: e.to_string() })?;
        if header.format_version != STORE_FORMAT_VERSION {
            return Err(IndexError::Incompatible {
                path: hp,
                reason: format!("store format {} but this soundalike reads {STORE_FORMAT_VERSION}", header.format_version),
            });
        }
        let mut songs = BTreeMap::new();
        let jp = Self::journal_path(dir);
        if jp.exists() {
            let text = std::fs::read_to_string(&jp).map_err(|e| io_err(&jp, e))?;
            let lines: Vec<&str> = text.split('\n').collect();
            for (i, line) in lines.iter().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Entry>(line) {
                    Ok(Entry::Put { song }) => {
                        if song.vector.len() != header.dim {
                            return Err(IndexError::Incompatible { path: jp, reason: format!("line {}: vector of {} values, store dim {}", i + 1, song.vector.len(), header.dim) });
                        }
                        songs.insert(song.id.clone(), *song);
                    }
                    Ok(Entry::Del { id }) => {
                        songs.remove(&id);
                    }
                    // A torn final line from an interrupted write: the record was never committed.
                    Err(_) if i + 1 == lines.len() => {}
                    Err(e) => return Err(IndexError::Incompatible { path: jp, reason: format!("line {}: {e}", i + 1) }),
                }
            }
        }
        Ok(Store { dir: dir.to_path_buf(), header, songs, journal: None })
    }

    /// Opens a store for writing, creating it with `header` if absent. An existing store made by another
    /// model or settings is refused.
    pub fn open_or_create(dir: &Path, header: StoreHeader) -> Result<Store> {
        let hp = Self::header_path(dir);
        let mut store = if hp.exists() {
            let s = Self::open(dir)?;
            if s.header.model_fingerprint != header.model_fingerprint || s.header.frontend != header.frontend || s.header.dim != header.dim {
                return Err(IndexError::Incompatible {
                    path: hp,
                    reason: format!(
                        "store was made by model {} ({}), not {} ({}); use another --out folder or delete it",
                        s.header.model_name, s.header.model_fingerprint, header.model_name, header.model_fingerprint
                    ),
                });
            }
            s
        } else {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            write_atomic(&hp, &serde_json::to_vec_pretty(&header).map_err(|e| io_err(&hp, e))?)?;
            Store { dir: dir.to_path_buf(), header, songs: BTreeMap::new(), journal: None }
        };
        let jp = Self::journal_path(dir);
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&jp).map_err(|e| io_err(&jp, e))?;
        // If the journal ends in a torn line, start on a fresh line so the next record parses.
        let len = f.metadata().map_err(|e| io_err(&jp, e))?.len();
        if len > 0 {
            let text = std::fs::read(&jp).map_err(|e| io_err(&jp, e))?;
            if text.last() != Some(&b'\n') {
                f.write_all(b"\n").map_err(|e| io_err(&jp, e))?;
            }
        }
        store.journal = Some(f);
        Ok(store)
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

    fn append(&mut self, e: &Entry) -> Result<()> {
        let jp = Self::journal_path(&self.dir);
        let f = self.journal.as_mut().ok_or_else(|| IndexError::Invalid("store opened read-only".into()))?;
        let mut line = serde_json::to_vec(e).map_err(|e| io_err(&jp, e))?;
        line.push(b'\n');
        f.write_all(&line).map_err(|e| io_err(&jp, e))
    }

    /// Adds or replaces a song (appended to the journal; durable after [`Store::sync`]).
    pub fn put(&mut self, song: SongRecord) -> Result<()> {
        if song.vector.len() != self.header.dim {
            return Err(IndexError::Invalid(format!("{}: vector has {} values, store dim {}", song.id, song.vector.len(), self.header.dim)));
        }
        self.append(&Entry::Put { song: Box::new(song.clone()) })?;
        self.songs.insert(song.id.clone(), song);
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
        let jp = Self::journal_path(&self.dir);
        if let Some(f) = self.journal.as_mut() {
            f.sync_data().map_err(|e| io_err(&jp, e))?;
        }
        Ok(())
    }

    /// Rewrites the journal as one `put` per live song, sorted by id, atomically.
    pub fn compact(&mut self) -> Result<()> {
        let jp = Self::journal_path(&self.dir);
        let mut out = Vec::new();
        for s in self.songs.values() {
            serde_json::to_writer(&mut out, &Entry::Put { song: Box::new(s.clone()) }).map_err(|e| io_err(&jp, e))?;
            out.push(b'\n');
        }
        write_atomic(&jp, &out)?;
        if self.journal.is_some() {
            self.journal = Some(std::fs::OpenOptions::new().append(true).open(&jp).map_err(|e| io_err(&jp, e))?);
        }
        Ok(())
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

/// Temp file + rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    let r = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(|e| io_err(path, e))
}
