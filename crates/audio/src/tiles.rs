//! Cutting a log-mel spectrogram into fixed-size tiles, the unit the CNN sees.

use crate::{FrontendConfig, LogMel};

/// A batch of equally sized tiles, row-major `[n_tiles, n_mels, tile_frames]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tiles {
    /// Number of tiles.
    pub n_tiles: usize,
    /// Tile height.
    pub n_mels: usize,
    /// Tile width in frames.
    pub tile_frames: usize,
    /// Values.
    pub data: Vec<f32>,
}

impl Tiles {
    /// Values of tile `i`, `[n_mels, tile_frames]`.
    pub fn tile(&self, i: usize) -> &[f32] {
        let n = self.n_mels * self.tile_frames;
        &self.data[i * n..(i + 1) * n]
    }
}

/// How many tiles a spectrogram of `n_frames` frames yields: `1 + (n_frames - tile) / hop` when at least
/// one tile fits (the tail that does not fill a tile is dropped), and 1 (padded) when it does not but the
/// file passed the minimum-duration check, 0 for an empty spectrogram.
pub fn tile_count(n_frames: usize, tile_frames: usize, tile_hop: usize) -> usize {
    if n_frames == 0 {
        0
    } else if n_frames < tile_frames {
        1
    } else {
        1 + (n_frames - tile_frames) / tile_hop
    }
}

/// Cuts `mel` into tiles of `cfg.tile_frames` frames every `cfg.tile_hop` frames. A spectrogram shorter
/// than one tile is padded on the right with its own minimum (the dB floor, i.e. silence).
pub fn make_tiles(mel: &LogMel, cfg: &FrontendConfig) -> Tiles {
    let (w, hop) = (cfg.tile_frames, cfg.tile_hop);
    let n = tile_count(mel.n_frames, w, hop);
    let floor = if mel.data.is_empty() { 0.0 } else { mel.min() };
    let mut data = Vec::with_capacity(n * mel.n_mels * w);
    for i in 0..n {
        let start = i * hop;
        for m in 0..mel.n_mels {
            let row = &mel.data[m * mel.n_frames..(m + 1) * mel.n_frames];
            let end = (start + w).min(mel.n_frames);
            data.extend_from_slice(&row[start..end]);
            data.extend(std::iter::repeat_n(floor, start + w - end));
        }
    }
    Tiles { n_tiles: n, n_mels: mel.n_mels, tile_frames: w, data }
}
