//! Tiles as network input: normalisation, random crops, SpecAugment masks, batching into tensors.

use burn::prelude::*;
use soundalike_audio::LogMel;

/// dB range that maps to the input's [0, 1]: the front end's `top_db`.
pub const INPUT_RANGE_DB: f32 = 80.0;

/// Copies frames `[start, start + width)` of `mel` into `out` (`[n_mels, width]`), normalised per tile:
/// `1 + (dB - tile max) / 80`, clamped to `[0, 1]`. Subtracting the tile's own maximum makes the input
/// invariant to playback gain, so loud and quiet masters of one song look alike. Frames past the end are 0.
pub fn write_tile(mel: &LogMel, start: usize, width: usize, out: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for m in 0..mel.n_mels {
        for t in start..(start + width).min(mel.n_frames) {
            max = max.max(mel.at(m, t));
        }
    }
    for m in 0..mel.n_mels {
        for f in 0..width {
            let t = start + f;
            out[m * width + f] = if t < mel.n_frames { (1.0 + (mel.at(m, t) - max) / INPUT_RANGE_DB).clamp(0.0, 1.0) } else { 0.0 };
        }
    }
}

/// Start frames of the evaluation/embedding tiles of a spectrogram: every `hop` frames while a tile fits,
/// or one (padded) tile when it is shorter than one tile.
pub fn tile_starts(n_frames: usize, width: usize, hop: usize) -> Vec<usize> {
    let n = soundalike_audio::tile_count(n_frames, width, hop);
    (0..n).map(|i| i * hop).collect()
}

/// SpecAugment-style masking in place on one normalised tile: one band of up to `max_f` mel rows and one
/// span of up to `max_t` frames set to 0 (silence). `r` yields uniform numbers in `[0, 1)`.
pub fn spec_augment(tile: &mut [f32], n_mels: usize, width: usize, max_f: usize, max_t: usize, r: &mut impl FnMut() -> f32) {
    let f = (r() * (max_f + 1) as f32) as usize;
    let f0 = (r() * (n_mels.saturating_sub(f) + 1) as f32) as usize;
    for m in f0..(f0 + f).min(n_mels) {
        tile[m * width..(m + 1) * width].iter_mut().for_each(|v| *v = 0.0);
    }
    let t = (r() * (max_t + 1) as f32) as usize;
    let t0 = (r() * (width.saturating_sub(t) + 1) as f32) as usize;
    for m in 0..n_mels {
        tile[m * width + t0..m * width + (t0 + t).min(width)].iter_mut().for_each(|v| *v = 0.0);
    }
}

/// The normalised tiles of `mel` starting at `starts`, concatenated: `[starts.len(), n_mels, width]`.
pub fn tile_data(mel: &LogMel, starts: &[usize], width: usize) -> Vec<f32> {
    let h = mel.n_mels;
    let mut data = vec![0f32; starts.len() * h * width];
    for (&s, t) in starts.iter().zip(data.chunks_exact_mut(h * width)) {
        write_tile(mel, s, width, t);
    }
    data
}

/// The normalised tiles of `mel` starting at `starts`, as one `[starts.len(), 1, n_mels, width]` batch.
pub fn tile_batch(mel: &LogMel, starts: &[usize], width: usize, device: &Device) -> Tensor<4> {
    batch_tensor(tile_data(mel, starts, width), starts.len(), mel.n_mels, width, device)
}

/// `[batch, 1, n_mels, width]` tensor from concatenated tiles.
pub fn batch_tensor(data: Vec<f32>, batch: usize, n_mels: usize, width: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data, [batch, 1, n_mels, width]), device)
}

/// Like [`write_tile`], but reads `width * rate` frames from `start` (moved back when they would run past
/// the end) and resamples them linearly to `width`: a tempo change of `1 / rate` (augmentation). `rate` 1
/// gives exactly [`write_tile`]'s tile.
pub fn write_tile_stretched(mel: &LogMel, start: usize, width: usize, rate: f32, out: &mut [f32]) {
    let span = ((width as f32 - 1.0) * rate).ceil() as usize + 1;
    let start = start.min(mel.n_frames.saturating_sub(span));
    let end = (start + span).min(mel.n_frames);
    let mut max = f32::NEG_INFINITY;
    for m in 0..mel.n_mels {
        for t in start..end {
            max = max.max(mel.at(m, t));
        }
    }
    for f in 0..width {
        let pos = start as f32 + f as f32 * rate;
        let t0 = pos.floor() as usize;
        let frac = pos - t0 as f32;
        for m in 0..mel.n_mels {
            out[m * width + f] = if t0 < mel.n_frames {
                let a = mel.at(m, t0);
                let b = if t0 + 1 < mel.n_frames { mel.at(m, t0 + 1) } else { a };
                let db = if frac == 0.0 { a } else { a + (b - a) * frac };
                (1.0 + (db - max) / INPUT_RANGE_DB).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
    }
}

/// An EQ tilt on one normalised tile (`[n_mels, width]`): `db_total` dB more at the highest band than at the
/// lowest, linear in between and centred (the middle band is unchanged); silence stays silent and values are
/// clamped to `[0, 1]` (augmentation).
pub fn eq_tilt(tile: &mut [f32], n_mels: usize, width: usize, db_total: f32) {
    if n_mels < 2 {
        return;
    }
    for m in 0..n_mels {
        let shift = db_total * (m as f32 / (n_mels - 1) as f32 - 0.5) / INPUT_RANGE_DB;
        for v in &mut tile[m * width..(m + 1) * width] {
            if *v > 0.0 {
                *v = (*v + shift).clamp(0.0, 1.0);
            }
        }
    }
}
