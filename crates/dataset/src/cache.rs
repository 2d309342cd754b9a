//! The tile cache: each file's log-mel spectrogram, quantised to u8 over its dB range, keyed by the file's
//! content fingerprint and the front-end settings. Built in parallel, one atomic file per song, so a killed
//! run resumes where it stopped.
//!
//! Precision: the dB range kept by `top_db` (80 dB by default) maps to 256 levels: 0.31 dB steps, below
//! the ~1 dB just-noticeable difference and far below what the CNN resolves. Size: 128 bytes per frame,
//! 330 kB per minute of audio.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use soundalike_audio::{analyze_file, FrontendConfig, LogMel, SourceInfo};

use crate::error::io;
use crate::{fingerprint_file, write_atomic, DatasetError, Result, SongFile};

/// Version of the cache entry format.
pub const CACHE_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"SLMELv1\0";

/// Fingerprint of the settings that change the spectrogram (tiling does not).
pub fn frontend_fingerprint(cfg: &FrontendConfig) -> String {
    let mut c = cfg.clone();
    c.tile_frames = 0;
    c.tile_hop = 0;
    let json = serde_json::to_vec(&c).unwrap_or_default();
    blake3::hash(&json).to_hex()[..16].to_string()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    format_version: u32,
    frontend: String,
    n_mels: usize,
    n_frames: usize,
    lo_db: f32,
    hi_db: f32,
    info: SourceInfo,
}

/// One cached spectrogram.
#[derive(Clone, Debug)]
pub struct CachedMel {
    /// Dequantised spectrogram.
    pub mel: LogMel,
    /// What the decoder reported (duration, tags...).
    pub info: SourceInfo,
}

/// Outcome of [`SpectrogramCache::build`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CacheReport {
    /// Files analysed in this run.
    pub computed: usize,
    /// Files already cached.
    pub reused: usize,
    /// Files that failed: `(relative path, reason)`.
    pub failed: Vec<(String, String)>,
}

/// A folder of cached spectrograms for one front-end configuration.
pub struct SpectrogramCache {
    dir: PathBuf,
    cfg: FrontendConfig,
    fp: String,
    /// Whether an unreadable entry has been reported (once per cache).
    warned: std::sync::atomic::AtomicBool,
}

impl SpectrogramCache {
    /// Opens (creating) `<root>/<frontend fingerprint>/`.
    pub fn open(root: &Path, cfg: &FrontendConfig) -> Result<Self> {
        cfg.validate()?;
        let fp = frontend_fingerprint(cfg);
        let dir = root.join(&fp);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let cfg_path = dir.join("frontend.json");
        if !cfg_path.exists() {
            write_atomic(&cfg_path, &serde_json::to_vec_pretty(cfg).unwrap_or_default())?;
        }
        Ok(SpectrogramCache { dir, cfg: cfg.clone(), fp, warned: Default::default() })
    }

    /// Settings of this cache.
    pub fn config(&self) -> &FrontendConfig {
        &self.cfg
    }

    fn entry_path(&self, file_fp: &str) -> PathBuf {
        self.dir.join(format!("{file_fp}.mel"))
    }

    /// Whether a file with content fingerprint `file_fp` is cached.
    pub fn contains(&self, file_fp: &str) -> bool {
        self.entry_path(file_fp).exists()
    }

    /// Computes and stores the spectrogram of `path` under `file_fp`.
    pub fn compute(&self, path: &Path, file_fp: &str) -> Result<CachedMel> {
        let a = analyze_file(path, &self.cfg)?;
        let (lo, hi) = (a.mel.min(), a.mel.max());
        let span = (hi - lo).max(1e-6);
        let q: Vec<u8> = a.mel.data.iter().map(|v| (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8).collect();
        let header = Header {
            format_version: CACHE_FORMAT_VERSION,
            frontend: self.fp.clone(),
            n_mels: a.mel.n_mels,
            n_frames: a.mel.n_frames,
            lo_db: lo,
            hi_db: hi,
            info: a.info.clone(),
        };
        let h = serde_json::to_vec(&header).map_err(|e| DatasetError::Invalid(format!("cannot encode a cache header: {e}")))?;
        let mut bytes = Vec::with_capacity(16 + h.len() + q.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(h.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&h);
        bytes.extend_from_slice(&q);
        write_atomic(&self.entry_path(file_fp), &bytes)?;
        Ok(CachedMel { mel: dequantise(&header, &q), info: a.info })
    }

    /// Reads a cached entry.
    pub fn load(&self, file_fp: &str) -> Result<CachedMel> {
        let p = self.entry_path(file_fp);
        let b = std::fs::read(&p).map_err(io(&p))?;
        let bad = |r: &str| DatasetError::Incompatible { path: p.clone(), reason: r.to_string() };
        if b.len() < 12 || &b[..8] != MAGIC {
            return Err(bad("not a soundalike cache entry"));
        }
        let hl = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let header: Header = serde_json::from_slice(b.get(12..12 + hl).ok_or_else(|| bad("truncated header"))?)
            .map_err(|e| bad(&e.to_string()))?;
        if header.format_version != CACHE_FORMAT_VERSION || header.frontend != self.fp {
            return Err(bad("written by other settings or version; delete it to recompute"));
        }
        let q = &b[12 + hl..];
        if q.len() != header.n_mels * header.n_frames {
            return Err(bad("truncated data"));
        }
        Ok(CachedMel { mel: dequantise(&header, q), info: header.info })
    }

    /// Loads `path` from the cache or computes it. An entry that is missing is computed quietly; one that
    /// cannot be read or is damaged is computed again too, and the first such case is reported on stderr
    /// (a cache folder gone read-only or damaged should not pass unnoticed).
    pub fn get_or_compute(&self, path: &Path, file_fp: &str) -> Result<CachedMel> {
        match self.load(file_fp) {
            Ok(c) => Ok(c),
            Err(DatasetError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => self.compute(path, file_fp),
            Err(e) => {
                if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!("warning: spectrogram cache: {e}; computing it again (further cache problems are not reported)");
                }
                self.compute(path, file_fp)
            }
        }
    }

    /// Makes sure every file is cached, in parallel. `fingerprints[i]` is filled for each file (hashing is
    /// part of the job). Failures are collected, never fatal. `tick` is called once per file.
    pub fn build(&self, files: &[SongFile], tick: &(dyn Fn(&str) + Sync)) -> (Vec<Option<String>>, CacheReport) {
        let report = Mutex::new(CacheReport::default());
        let fps: Vec<Option<String>> = files
            .par_iter()
            .map(|f| {
                let r = fingerprint_file(&f.path).and_then(|fp| {
                    if self.contains(&fp) {
                        report.lock().map(|mut r| r.reused += 1).ok();
                        Ok(fp)
                    } else {
                        self.compute(&f.path, &fp).map(|_| {
                            report.lock().map(|mut r| r.computed += 1).ok();
                            fp
                        })
                    }
                });
                tick(&f.rel_path);
                match r {
                    Ok(fp) => Some(fp),
                    Err(e) => {
                        report.lock().map(|mut r| r.failed.push((f.rel_path.clone(), e.to_string()))).ok();
                        None
                    }
                }
            })
            .collect();
        let mut report = report.into_inner().unwrap_or_default();
        report.failed.sort();
        (fps, report)
    }
}

fn dequantise(h: &Header, q: &[u8]) -> LogMel {
    let span = h.hi_db - h.lo_db;
    LogMel { n_mels: h.n_mels, n_frames: h.n_frames, data: q.iter().map(|&v| h.lo_db + v as f32 / 255.0 * span).collect() }
}
