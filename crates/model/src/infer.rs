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

/// Raises each value to the power `p`, its sign kept (`ArchConfig::song_power`); 1 leaves `v` as it is.
pub fn power_normalise(v: &mut [f32], p: f32) {
    if p != 1.0 {
        v.iter_mut().for_each(|x| *x = x.signum() * x.abs().powf(p));
    }
}

/// `context` (one song's) repeated for `n` rows: `[n, context.len()]`.
pub fn context_rows(context: &[f32], n: usize, device: &Device) -> Tensor<2> {
    let data: Vec<f32> = (0..n).flat_map(|_| context.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [n, context.len()]), device)
}

/// The tiles of `mel` starting at `starts` through the folded network: through `engine` (the same weights,
/// fused CPU path, tiles in parallel) when given, else through burn on `device` in batches. A network with
/// a song context reads the whole spectrogram's ([`FoldedNet::song_context`]) beside every tile.
/// `tagger`: the song's musicnn penultimate, for a network whose context is made of it.
pub(crate) fn run_tiles(folded: &FoldedNet, engine: Option<&CpuNet>, mel: &LogMel, tagger: Option<&[f32]>, starts: &[usize], width: usize, device: &Device) -> TileOutputs {
    let context = folded.song_context(mel, tagger);
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
        self.tiles_through(crate::is_cpu(device).then_some(&self.engine), mel, None, device)
    }

    /// [`infer_tiles`](Self::infer_tiles) through the fused CPU path.
    pub fn infer_tiles_fused(&self, mel: &LogMel) -> TileOutputs {
        self.tiles_through(Some(&self.engine), mel, None, &Device::flex())
    }

    /// [`infer_tiles`](Self::infer_tiles) through burn's folded network on `device`, in batches.
    pub fn infer_tiles_burn(&self, mel: &LogMel, device: &Device) -> TileOutputs {
        self.tiles_through(None, mel, None, device)
    }

    fn tiles_through(&self, engine: Option<&CpuNet>, mel: &LogMel, tagger: Option<&[f32]>, device: &Device) -> TileOutputs {
        let fe = &self.config.frontend;
        let starts = tile_starts(mel.n_frames, fe.tile_frames, fe.tile_hop);
        run_tiles(&self.folded, engine, mel, tagger, &starts, fe.tile_frames, device)
    }

    /// Whether embedding a song needs the tagger's penultimate layer ([`Self::embed_mel_with`]): the
    /// network's song context is made of it.
    pub fn needs_tagger(&self) -> bool {
        self.config.arch.context.as_ref().is_some_and(crate::SongContext::needs_tagger)
    }

    /// `extras` and, when [`Self::needs_tagger`], the tagger's spectrogram: what the decode pass must
    /// compute to embed a song with this model ([`Self::embed_analysis`]).
    pub fn analysis_extras(&self, mut extras: soundalike_audio::Extras) -> soundalike_audio::Extras {
        if self.needs_tagger() && extras.power_mel.is_none() {
            extras.power_mel = Some(crate::musicnn::frontend());
        }
        extras
    }

    /// Embeds an analysis made with [`Self::analysis_extras`], and tags it when it carries the tagger's
    /// spectrogram (taken out of it): the tags (`None` without that spectrogram or when the tagger's output
    /// is not usable) come from the same patches as the song context's penultimate.
    pub fn embed_analysis(&self, a: &mut soundalike_audio::Analysis, device: &Device) -> (SongEmbedding, Option<soundalike_tags::SongTags>) {
        let tagged = a.power_mel.take().and_then(|pm| crate::musicnn::tag_power_mel_with_penultimate(pm.data, crate::musicnn::EMBED_PLAN));
        let (tags, penultimate) = tagged.map_or((None, None), |(t, p)| (Some(t), Some(p)));
        (self.embed_mel_with(&a.mel, penultimate.as_deref(), device), tags)
    }

    /// Song vector: mean of the tile embeddings (each value to the power `arch.song_power`, sign kept),
    /// L2-normalised, then, for a model with `arch.song_whitening`, whitened and L2-normalised again; and
    /// mean class probabilities.
    pub fn embed_mel(&self, mel: &LogMel, device: &Device) -> SongEmbedding {
        self.embed_mel_with(mel, None, device)
    }

    /// [`Self::embed_mel`] for a network whose song context is the tagger's penultimate ([`Self::needs_tagger`]):
    /// `tagger` is the song's (`musicnn::tag_power_mel_with_penultimate`); without it the context is the
    /// training songs' mean.
    pub fn embed_mel_with(&self, mel: &LogMel, tagger: Option<&[f32]>, device: &Device) -> SongEmbedding {
        let mut e = self.embed_unwhitened(mel, tagger, device);
        if let Some(w) = &self.config.arch.song_whitening {
            w.apply_unit(&mut e.vector);
        }
        e
    }

    /// Fits a whitening map ([`ArchConfig::song_whitening`](crate::ArchConfig)) of strength `alpha` on the
    /// song vectors of `songs` (each a spectrogram and, for a network whose context is the tagger's
    /// penultimate, the song's), as this model makes them before any whitening of its own. `done` is
    /// called after each song. Songs whose vector is zero are left out of the fit.
    pub fn fit_song_whitening<'a>(&self, songs: impl IntoIterator<Item = (&'a LogMel, Option<&'a [f32]>)>, alpha: f32, device: &Device, done: &mut dyn FnMut()) -> crate::Result<soundalike_vectors::Whitening> {
        // Refused before the songs are embedded, not after.
        soundalike_vectors::Whitening::check_strength(alpha).map_err(crate::ModelError::Invalid)?;
        let mut rows = Vec::new();
        for (mel, tagger) in songs {
            rows.extend(self.embed_unwhitened(mel, tagger, device).vector);
            done();
        }
        soundalike_vectors::Whitening::fit(&rows, self.config.arch.embedding_dim, alpha).map_err(|e| crate::ModelError::Invalid(e.to_string()))
    }

    /// [`Self::embed_mel_with`] without the model's whitening.
    fn embed_unwhitened(&self, mel: &LogMel, tagger: Option<&[f32]>, device: &Device) -> SongEmbedding {
        let out = self.tiles_through(crate::is_cpu(device).then_some(&self.engine), mel, tagger, device);
        let d = self.config.arch.embedding_dim;
        let k = self.config.labels.len();
        let n = out.n_tiles.max(1) as f32;
        let mut vector = vec![0f32; d];
        for t in out.embeddings.chunks_exact(d) {
            vector.iter_mut().zip(t).for_each(|(a, b)| *a += b / n);
        }
        power_normalise(&mut vector, self.config.arch.song_power);
        l2_normalise(&mut vector);
        let mut probs = vec![0f32; k];
        for t in out.probs.chunks_exact(k) {
            probs.iter_mut().zip(t).for_each(|(a, b)| *a += b / n);
        }
        SongEmbedding { vector, probs, n_tiles: out.n_tiles }
    }
}
