//! Labels and song metadata: from a CSV the user names, the folder-per-genre layout, or the file's tags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{DatasetError, Result, SongFile};

/// Where a song's label comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LabelSource {
    /// A column of a CSV.
    Csv,
    /// The first folder under the library root (`<root>/<genre>/song.mp3`).
    Folder,
    /// The file's genre tag (ID3 TCON, Vorbis GENRE).
    Tag,
}

/// How to read labels and metadata.
#[derive(Clone, Debug, Default)]
pub struct LabelOptions {
    /// CSV with one row per song.
    pub csv: Option<PathBuf>,
    /// Column holding the label (default `label`).
    pub label_column: Option<String>,
    /// Column naming a group to hold out (e.g. `source`, `artist`).
    pub group_column: Option<String>,
    /// Column(s) that key rows to files: tried in order, matched as relative paths (suffix match).
    pub key_columns: Vec<String>,
}

/// What is known about one song before decoding it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SongLabels {
    /// Relative path (the song id).
    pub rel_path: String,
    /// Label, if known now (CSV or folder); tag labels are filled in after decoding.
    pub label: Option<String>,
    /// Where the label came from.
    pub label_source: Option<LabelSource>,
    /// Group for hold-out splits.
    pub group: Option<String>,
    /// Title (CSV; tags and file name fill it later).
    pub title: Option<String>,
    /// Artist.
    pub artist: Option<String>,
    /// Album.
    pub album: Option<String>,
    /// Genre from the CSV (`genre` or `teacher_genre` column) for filters.
    pub genre: Option<String>,
}

fn norm(p: &str) -> String {
    p.replace('\\', "/").trim_start_matches("./").to_string()
}

/// Reads each file's labels and metadata. Label precedence: CSV column > folder layout > the genre tag (filled by
/// [`fill_tag_labels`]).
pub fn load_labels(files: &[SongFile], opts: &LabelOptions) -> Result<Vec<SongLabels>> {
    let mut entries: Vec<SongLabels> = files
        .iter()
        .map(|f| {
            let parts: Vec<&str> = f.rel_path.split('/').collect();
            let folder = (parts.len() >= 2).then(|| parts[0].to_string());
            SongLabels {
                rel_path: f.rel_path.clone(),
                label_source: folder.as_ref().map(|_| LabelSource::Folder),
                label: folder,
                ..Default::default()
            }
        })
        .collect();
    let Some(csv_path) = &opts.csv else { return Ok(entries) };
    let bad = |reason: String| DatasetError::Csv { path: csv_path.clone(), reason };
    let mut rdr = csv::Reader::from_path(csv_path).map_err(|e| bad(e.to_string()))?;
    let headers: Vec<String> = rdr.headers().map_err(|e| bad(e.to_string()))?.iter().map(String::from).collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let label_col = opts.label_column.as_deref().unwrap_or("label");
    let li = col(label_col).ok_or_else(|| bad(format!("no column {label_col:?} (columns: {})", headers.join(", "))))?;
    let gi = match &opts.group_column {
        Some(g) => Some(col(g).ok_or_else(|| bad(format!("no group column {g:?}")))?),
        None => None,
    };
    let keys: Vec<&str> = if opts.key_columns.is_empty() {
        vec!["file", "path", "id"]
    } else {
        opts.key_columns.iter().map(String::as_str).collect()
    };
    let key_idx: Vec<usize> = keys.iter().filter_map(|k| col(k)).collect();
    if key_idx.is_empty() {
        return Err(bad(format!("no key column among {keys:?}")));
    }
    let (ti, ai, bi) = (col("title"), col("artist"), col("album"));
    let geni = col("genre").or_else(|| col("teacher_genre"));
    // Index files by every suffix of their relative path, so CSV paths rooted higher or lower still match.
    let mut by_suffix: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let parts: Vec<&str> = e.rel_path.split('/').collect();
        for s in 0..parts.len() {
            by_suffix.entry(parts[s..].join("/")).or_default().push(i);
        }
        // `id` columns often omit the extension.
        if let Some((stem, _)) = e.rel_path.rsplit_once('.') {
            by_suffix.entry(stem.to_string()).or_default().push(i);
        }
    }
    for rec in rdr.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let mut target = None;
        'keys: for &k in &key_idx {
            let key = norm(rec.get(k).unwrap_or(""));
            let kparts: Vec<&str> = key.split('/').collect();
            for s in 0..kparts.len() {
                if let Some(v) = by_suffix.get(&kparts[s..].join("/")) {
                    if v.len() == 1 {
                        target = Some(v[0]);
                        break 'keys;
                    }
                }
            }
        }
        let Some(i) = target else { continue };
        let e = &mut entries[i];
        if let Some(l) = get(Some(li)) {
            e.label = Some(l);
            e.label_source = Some(LabelSource::Csv);
        }
        e.group = get(gi).or(e.group.take());
        e.title = get(ti).or(e.title.take());
        e.artist = get(ai).or(e.artist.take());
        e.album = get(bi).or(e.album.take());
        e.genre = get(geni).or(e.genre.take());
    }
    Ok(entries)
}

/// Fills the label of every song that has none yet (no CSV row, not in a folder) from its genre tag (ID3
/// TCON, Vorbis GENRE, MP4), reading only the tags, in parallel. Title, artist and album tags fill gaps too.
/// Files whose tags cannot be read keep no label (they are reported when their audio is decoded).
pub fn fill_tag_labels(files: &[SongFile], entries: &mut [SongLabels]) {
    use rayon::prelude::*;
    let by_path: HashMap<&str, &SongFile> = files.iter().map(|f| (f.rel_path.as_str(), f)).collect();
    entries.par_iter_mut().filter(|e| e.label.is_none()).for_each(|e| {
        let Some(f) = by_path.get(e.rel_path.as_str()) else { return };
        let Ok(tags) = soundalike_audio::read_file_tags(&f.path) else { return };
        if let Some(g) = tags.genre.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
            e.label = Some(g.to_string());
            e.label_source = Some(LabelSource::Tag);
        }
        e.title = e.title.take().or(tags.title);
        e.artist = e.artist.take().or(tags.artist);
        e.album = e.album.take().or(tags.album);
    });
}

/// Helper for callers: the file name without extension, as a last-resort title.
pub fn title_from_path(rel_path: &str) -> String {
    Path::new(rel_path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Artist, album and title as the usual `Artist/Album/NN Title.ext` layout of a music folder spells
/// them: the last fallback for songs whose tags (and CSV row) leave them empty. Artist and album need
/// two folders above the file (one folder alone may be an artist, an album or a genre: it is not
/// guessed); the title is the file name without its extension and without a leading track number
/// (`01 `, `01 - `, `01. `, `1-01 `, `01_`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathMetadata {
    /// The folder two above the file.
    pub artist: Option<String>,
    /// The folder holding the file.
    pub album: Option<String>,
    /// The file name, track number and extension removed.
    pub title: String,
}

/// Reads [`PathMetadata`] from a song's path relative to the library root.
pub fn metadata_from_path(rel_path: &str) -> PathMetadata {
    let parts: Vec<&str> = rel_path.split('/').filter(|p| !p.is_empty()).collect();
    let n = parts.len();
    let folder = |i: usize| Some(parts[i].trim().to_string()).filter(|s| !s.is_empty());
    let (artist, album) = if n >= 3 { (folder(n - 3), folder(n - 2)) } else { (None, None) };
    PathMetadata { artist, album, title: strip_track_number(&title_from_path(rel_path)) }
}

/// `01 - Title` -> `Title`; a name that is only a number (`01`) or has nothing after the number is kept.
fn strip_track_number(stem: &str) -> String {
    let b = stem.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = digits(0);
    if i == 0 || i > 3 {
        return stem.to_string();
    }
    // Disc-track numbers: `1-01`.
    if b.get(i) == Some(&b'-') && (1..=3).contains(&digits(i + 1)) {
        i += 1 + digits(i + 1);
    }
    let sep = b[i..].iter().take_while(|c| matches!(c, b' ' | b'.' | b'-' | b'_')).count();
    let rest = stem[i + sep..].trim();
    if sep == 0 || rest.is_empty() {
        stem.to_string()
    } else {
        rest.to_string()
    }
}
