//! What every soundalike crate shares, in one place: atomic file writes ([`write_atomic`]), the seeded
//! RNG of splits, crops and augmentations ([`SplitMix64`]), and L2 normalisation ([`normalise`]). No
//! dependencies, so the audio, library, index and model crates can all use it.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let p = dir.path().join("settings.json");
//! soundalike_core::write_atomic(&p, b"{}").unwrap();
//! assert_eq!(std::fs::read(&p).unwrap(), b"{}");
//!
//! let mut v = [3.0f32, 4.0];
//! soundalike_core::normalise(&mut v);
//! assert_eq!(v, [0.6, 0.8]);
//! ```
#![warn(missing_docs)]

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: see [`write_atomic_with`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, &mut |w| w.write_all(bytes))
}

/// Writes a file atomically: `fill` writes into a buffered temporary file in the same folder
/// (`.NAME.PID.tmp`), which is synced to disk and renamed over `path` only if everything succeeded, and
/// the folder is synced so the rename itself survives a power cut. A failure leaves `path` as it was and
/// removes the temporary file; readers see the old file or the new one, never a mix.
pub fn write_atomic_with(path: &Path, fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let r = (|| -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the folder's entry is on disk (not every platform can open a folder).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// L2-normalises `v` in place; an all-zero vector stays zero.
pub fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// A 64-bit deterministic RNG (SplitMix64): seeded shuffles, splits, crops and augmentations that are the
/// same on every platform and in every version.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `[0, 1)` with 53 bits.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// `k` distinct indices out of `0..n` (all of them if `k >= n`), in random order: a partial
    /// Fisher-Yates shuffle.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"old").unwrap();
        let e = write_atomic_with(&p, &mut |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
        assert!(write_atomic(dir.path(), b"x").is_err() || dir.path().is_dir());
    }

    #[test]
    fn splitmix_is_the_reference_sequence_and_shuffles_are_permutations() {
        // The published SplitMix64 outputs for seed 0.
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut v: Vec<usize> = (0..50).collect();
        SplitMix64(7).shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(v, s);
        assert!((0..1000).all(|_| r.unit() < 1.0 && r.unit_f64() < 1.0));
        let picked = SplitMix64(3).sample(100, 10);
        let mut d = picked.clone();
        d.sort();
        d.dedup();
        assert_eq!((picked.len(), d.len()), (10, 10));
        assert!(picked.iter().all(|&i| i < 100));
        assert_eq!(SplitMix64(3).sample(5, 9).len(), 5);
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn normalise_gives_unit_length_and_keeps_zero() {
        let mut v = [1.0f32, 2.0, 2.0];
        normalise(&mut v);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
        let mut z = [0f32; 3];
        normalise(&mut z);
        assert_eq!(z, [0.0; 3]);
    }
}
