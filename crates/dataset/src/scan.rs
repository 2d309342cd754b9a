//! Finding audio files and fingerprinting their contents.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::io;
use crate::{DatasetError, Result};

/// One audio file in a library.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SongFile {
    /// Path relative to the library root, with `/` separators: the song's stable id.
    pub rel_path: String,
    /// Absolute (or root-joined) path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch (cheap change check before hashing).
    pub mtime: u64,
}

/// A path component as id text: the name itself when it is UTF-8; otherwise its valid parts as they are
/// and each byte that is not UTF-8 as `U+FFFD` followed by two hex digits. A literal `U+FFFD` in a name is
/// doubled, so two different names never give one id (for example `a\xff` and `a\xfe`, which a lossy
/// conversion would both turn into `a\u{FFFD}`).
pub fn component_id(name: &std::ffi::OsStr) -> String {
    #[cfg(unix)]
    let bytes: &[u8] = std::os::unix::ffi::OsStrExt::as_bytes(name);
    #[cfg(not(unix))]
    let owned = name.to_string_lossy().into_owned().into_bytes();
    #[cfg(not(unix))]
    let bytes: &[u8] = &owned;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(c);
            if c == '\u{FFFD}' {
                out.push('\u{FFFD}');
            }
        }
        for b in chunk.invalid() {
            out.push('\u{FFFD}');
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// Lists audio files (by extension, case-insensitive) under `root`, recursively, sorted by relative path.
/// Hidden files and folders (starting with `.`) are skipped. Symlinks are followed, to files and to
/// folders (a folder reached twice, e.g. through a link loop, is read once); a link whose target is missing
/// is skipped. Ids are [`component_id`]s joined by `/`, unique for any file name.
pub fn scan_library(root: &Path) -> Result<Vec<SongFile>> {
    let meta = std::fs::metadata(root).map_err(io(root))?;
    if !meta.is_dir() {
        return Err(DatasetError::Invalid(format!("{}: not a folder", root.display())));
    }
    let mut out = Vec::new();
    let mut seen_dirs = std::collections::HashSet::new();
    seen_dirs.insert(std::fs::canonicalize(root).map_err(io(root))?);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let mut ft = entry.file_type().map_err(io(&entry.path()))?;
            let p = entry.path();
            if ft.is_symlink() {
                // Follow it; a dangling link is skipped.
                match std::fs::metadata(&p) {
                    Ok(m) => ft = m.file_type(),
                    Err(_) => continue,
                }
            }
            if ft.is_dir() {
                if let Ok(c) = std::fs::canonicalize(&p) {
                    if seen_dirs.insert(c) {
                        stack.push(p);
                    }
                }
            } else if ft.is_file() && is_audio(&p) {
                let m = std::fs::metadata(&p).map_err(io(&p))?;
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let rel = p.strip_prefix(root).unwrap_or(&p);
                let rel_path = rel.components().map(|c| component_id(c.as_os_str())).collect::<Vec<_>>().join("/");
                out.push(SongFile { rel_path, path: p, size: m.len(), mtime });
            }
        }
    }
    out.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(out)
}

fn is_audio(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| soundalike_audio::AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// BLAKE3 of the file's bytes, first 128 bits as hex: tells a changed file from an unchanged one.
pub fn fingerprint_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex()[..32].to_string())
}
