//! Inference: tiles -> 128-d embeddings and class probabilities; songs -> one L2-normalised vector.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use soundalike_audio::LogMel;

use crate::data::{tile_batch, tile_data, tile_starts};
use crate::LoadedModel;

/// Tiles per forward pass at inference.
pub const INFER_BATCH: usize = 32;

/// A song's vector and predictions.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SongEmbedding {
    /// Mean of the tile embeddings, L2-normalised (all zeros only if every tile embedding was zero).
    pub vector: Vec<f32>,
    /// Mean of the tile class probabilities.
    pub probs: Vec<f32>,
    /// Tiles averaged.
    pub n_tiles: usize,
}

/// Per-tile outputs.
pub struct TileOutputs {
    /// `[n_tiles, embedding_dim]`.
    pub embeddings: Vec<f32>,
    /// `[n_tiles, n_classes]`.
    pub probs: Vec<f32>,
    /// Number of tiles.
    pub n_tiles: usize,
}

/// L2-normalises `v` in place; leaves an all-zero vector as it is.
pub fn l2_normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

impl LoadedModel {
    /// Runs every tile of `mel` (the config's tiling) through the network: on the CPU through the fused
    /// path ([`CpuNet`](crate::CpuNet), tiles in parallel), on another device through burn in batches.
    pub fn infer_tiles(&self, mel: &LogMel, device: &Device) -> TileOutputs {
        if *device == Device::flex() {
            self.infer_tiles_fused(mel)
        } else {
            self.infer_tiles_burn(mel, device)
        }
    }

    /// [`infer_tiles`](Self::infer_tiles) through the fused CPU path.
    pub fn infer_tiles_fused(&self, mel: &LogMel) -> TileOutputs {
        let fe = &self.config.frontend;
        let w = fe.tile_frames;
        let starts = tile_starts(mel.n_frames, w, fe.tile_hop);
        let (embeddings, probs) = self.engine.forward(&tile_data(mel, &starts, w), mel.n_mels, w);
        TileOutputs { embeddings, probs, n_tiles: starts.len() }
    }

    /// [`infer_tiles`](Self::infer_tiles) through burn's folded network on `device`, in batches.
    pub fn infer_tiles_burn(&self, mel: &LogMel, device: &Device) -> TileOutputs {
        let fe = &self.config.frontend;
        let w = fe.tile_frames;
        let starts = tile_starts(mel.n_frames, w, fe.tile_hop);
        let mut embeddings = Vec::with_capacity(starts.len() * self.config.arch.embedding_dim);
        let mut probs = Vec::with_capacity(starts.len() * self.config.labels.len());
        for chunk in starts.chunks(INFER_BATCH) {
            let emb = self.folded.forward_embedding(tile_batch(mel, chunk, w, device));
            let logits = self.folded.head_logits(emb.clone());
            embeddings.extend(emb.into_data().try_into_vec::<f32>().unwrap_or_default());
            probs.extend(softmax(logits, 1).into_data().try_into_vec::<f32>().unwrap_or_default());
        }
        TileOutputs { embeddings, probs, n_tiles: starts.len() }
    }

    /// Song vector: mean of the tile embeddings, L2-normalised; and mean class probabilities.
    pub fn embed_mel(&self, mel: &LogMel, device: &Device) -> SongEmbedding {
        let out = self.infer_tiles(mel, device);
        let d = self.config.arch.embedding_dim;
        let k = self.config.labels.len();
        let n = out.n_tiles.max(1) as f32;
        let mut vector = vec![0f32; d];
        for t in out.embeddings.chunks_exact(d) {
            vector.iter_mut().zip(t).for_each(|(a, b)| *a += b / n);
        }
        l2_normalise(&mut vector);
        let mut probs = vec![0f32; k];
        for t in out.probs.chunks_exact(k) {
            probs.iter_mut().zip(t).for_each(|(a, b)| *a += b / n);
        }
        SongEmbedding { vector, probs, n_tiles: out.n_tiles }
    }
}
