//! Writing spectrograms for people and for Python: float32 `.npy` and greyscale PNG.

use std::path::Path;

use crate::{AudioError, LogMel, Result, Tiles};

fn write_err(path: &Path, cause: std::io::Error) -> AudioError {
    AudioError::Write { path: path.to_path_buf(), cause }
}

/// Writes `bytes` to `path` atomically ([`soundalike_core::write_atomic`]: temp file, fsync, rename, fsync
/// of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    soundalike_core::write_atomic(path, bytes).map_err(|e| write_err(path, e))
}

/// Encodes a row-major float32 array as NumPy `.npy` (format 1.0, little endian).
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_s}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes a little-endian float32, C-order `.npy` (what [`npy_bytes`] and NumPy write): its shape and
/// values, or what is wrong with it.
pub fn npy_parse(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!(".npy format version {v}")),
    };
    let header = bytes.get(start..start + hlen).and_then(|h| std::str::from_utf8(h).ok()).ok_or(".npy header cut short")?;
    if !header.contains("'<f4'") || !header.contains("'fortran_order': False") {
        return Err(format!("not little-endian float32 in C order: {}", header.trim()));
    }
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in the .npy header")?
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| format!("bad .npy shape {s:?}")))
        .collect::<std::result::Result<_, _>>()?;
    let data = &bytes[start + hlen..];
    if data.len() != shape.iter().product::<usize>() * 4 {
        return Err(format!(".npy of shape {shape:?} has {} data bytes", data.len()));
    }
    Ok((shape, data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

/// Writes the spectrogram as float32 `.npy` of shape `[n_mels, n_frames]`.
pub fn write_npy(path: &Path, mel: &LogMel) -> Result<()> {
    write_atomic(path, &npy_bytes(&[mel.n_mels, mel.n_frames], &mel.data))
}

/// Greyscale image of a `[rows, cols]` matrix, low frequencies at the bottom, black = quietest.
fn grey(rows: usize, cols: usize, data: &[f32]) -> image::GrayImage {
    let (lo, hi) = data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    image::GrayImage::from_fn(cols as u32, rows as u32, |x, y| {
        let v = data[(rows - 1 - y as usize) * cols + x as usize];
        image::Luma([(((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8])
    })
}

fn save_png(path: &Path, img: &image::GrayImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| write_err(path, std::io::Error::other(e)))?;
    write_atomic(path, &bytes)
}

/// Writes the whole spectrogram as a greyscale PNG (width = frames, height = mel bands).
pub fn write_png(path: &Path, mel: &LogMel) -> Result<()> {
    if mel.n_frames == 0 || mel.n_mels == 0 {
        return Err(write_err(path, std::io::Error::other("empty spectrogram")));
    }
    save_png(path, &grey(mel.n_mels, mel.n_frames, &mel.data))
}

/// Writes one PNG per tile into `dir` (`tile_0000.png`, ...), like the 2017 blog's slices. Returns the paths.
pub fn write_tile_pngs(dir: &Path, tiles: &Tiles) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    (0..tiles.n_tiles)
        .map(|i| {
            let p = dir.join(format!("tile_{i:04}.png"));
            save_png(&p, &grey(tiles.n_mels, tiles.tile_frames, tiles.tile(i)))?;
            Ok(p)
        })
        .collect()
}
