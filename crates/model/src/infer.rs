//! Inference: tiles -> 128-d embeddings and class probabilities; songs -> one L2-normalised vector.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use soundalike_audio::LogMel;

use crate::data::{tile_batch, tile_data, tile_starts};
use crate::model::FoldedNet;
use crate::{CpuNet, LoadedModel};

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

pub use soundalike_core::normalise as l2_normalise;

/// `context` (one song's) repeated for `n` rows: `[n, context.len()]`.
pub fn context_rows(context: &[f32], n: usize, device: &Device) -> Tensor<2> {
    let data: Vec<f32> = (0..n).flat_map(|_| context.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [n, context.len()]), device)
}

/// The tiles of `mel` starting at `starts` through the folded network: through `engine` (the same weights,
/// fused CPU path, tiles in parallel) when given, else through burn on `device` in batches. A network with
/// a song context reads the whole spectrogram's ([`FoldedNet::song_context`]) beside every tile.
pub(crate) fn run_tiles(folded: &FoldedNet, engine: Option<&CpuNet>, mel: &LogMel, starts: &[usize], width: usize, device: &Device) -> TileOutputs {
    let context = folded.song_context(mel);
    if let Some(engine) = engine {
        let (embeddings, probs) = engine.forward(&tile_data(mel, starts, width), mel.n_mels, width, context.as_deref());
        return TileOutputs { embeddings, probs, n_tiles: starts.len() };
    }
    let (mut embeddings, mut probs) = (Vec::new(), Vec::new());
    for chunk in starts.chunks(INFER_BATCH) {
        let ctx = context.as_deref().map(|c| context_rows(c, chunk.len(), device));
        let emb = folded.forward_embedding(tile_batch(mel, chunk, width, device), ctx);
        let logits = folded.head_logits(emb.clone());
        embeddings.extend(emb.into_data().try_into_vec::<f32>().unwrap_or_default());
        probs.extend(softmax(logits, 1).into_data().try_into_vec::<f32>().unwrap_or_default());
    }
    TileOutputs { embeddings, probs, n_tiles: starts.len() }
}

impl LoadedModel {
    /// Runs every tile of `mel` (the config's tiling) through the network: on the CPU through the fused
    /// path ([`CpuNet`](crate::CpuNet), tiles in parallel), on another device through burn in batches.
    pub fn infer_tiles(&self, mel: &LogMel, device: &Device) -> TileOutputs {
        self.tiles_through(crate::is_cpu(device).then_some(&self.engine), mel, device)
    }

    /// [`infer_tiles`](Self::infer_tiles) through the fused CPU path.
    pub fn infer_tiles_fused(&self, mel: &LogMel) -> TileOutputs {
        self.tiles_through(Some(&self.engine), mel, &Device::flex())
    }

    /// [`infer_tiles`](Self::infer_tiles) through burn's folded network on `device`, in batches.
    pub fn infer_tiles_burn(&self, mel: &LogMel, device: &Device) -> TileOutputs {
        self.tiles_through(None, mel, device)
    }

    fn tiles_through(&self, engine: Option<&CpuNet>, mel: &LogMel, device: &Device) -> TileOutputs {
        let fe = &self.config.frontend;
        let starts = tile_starts(mel.n_frames, fe.tile_frames, fe.tile_hop);
        run_tiles(&self.folded, engine, mel, &starts, fe.tile_frames, device)
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
