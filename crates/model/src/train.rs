//! The training loop: Adam, cosine learning-rate decay, class-weighted cross-entropy, random crops +
//! SpecAugment (and optional EQ-tilt and tempo augmentation), early stopping on validation loss, a checkpoint
//! every epoch and exact resume.
//!
//! Besides the classes the model predicts, training can learn auxiliary targets through heads on the same
//! 128-d embedding that are dropped when the model is saved: a tagger's soft tag probabilities
//! (distillation, binary cross-entropy), a song's group (e.g. its production) and its identity
//! (cross-entropy), and a pretrained model's embedding of it (mean squared error). The saved
//! model is the plain [`SoundNet`]: inference, embedding and the model format do not change.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, log_softmax};
use serde::{Deserialize, Serialize};
use soundalike_audio::LogMel;
use soundalike_core::SplitMix64;

use crate::SongContext;
use crate::data::{batch_tensor, eq_tilt, spec_augment, write_tile, write_tile_stretched};
use crate::eval::{evaluate, EvalReport};
use crate::{save_model, ModelConfig, ModelError, Result, SoundNet};

/// A song with its label index and spectrogram.
#[derive(Clone, Debug)]
pub struct LabelledSong {
    /// Song id (relative path).
    pub id: String,
    /// Index into the model's labels.
    pub label: usize,
    /// Log-mel spectrogram.
    pub mel: LogMel,
    /// Soft tag targets in `[0, 1]` (a tagger's probabilities), or empty when the song has none.
    pub tags: Vec<f32>,
    /// Index of the song's group (e.g. production) for the group head, if any.
    pub group: Option<usize>,
    /// A pretrained model's embedding of the song (standardised), regressed by the teacher-vector head; empty
    /// when none.
    pub teacher_vec: Vec<f32>,
    /// A pretrained model's vectors of stretches of the song (standardised, as wide as `teacher_vec` would
    /// be): when present, a crop's teacher-vector target is the mean of the patches it overlaps, weighted by
    /// the overlap ([`patch_target`]), instead of the song's one vector.
    pub teacher_patches: Vec<TeacherPatch>,
    /// Index of the work the song is a rendering of: songs sharing one are positives of each other in the
    /// contrastive term (e.g. one MIDI file through two soundfonts); `None` = a work of its own.
    pub work: Option<usize>,
    /// The song's musicnn penultimates (mean over the patches `embed` tags: MSD_musicnn's 200 values, and
    /// MTT_musicnn's after them when given), for a network whose song context is made of them; empty when none.
    pub tagger_vec: Vec<f32>,
}

impl LabelledSong {
    /// A song with a class label only (no tags, no group).
    pub fn new(id: impl Into<String>, label: usize, mel: LogMel) -> Self {
        LabelledSong { id: id.into(), label, mel, tags: Vec::new(), group: None, teacher_vec: Vec::new(), teacher_patches: Vec::new(), work: None, tagger_vec: Vec::new() }
    }

    /// The tagger's vector, if the song has one.
    pub fn tagger(&self) -> Option<&[f32]> {
        (!self.tagger_vec.is_empty()).then_some(self.tagger_vec.as_slice())
    }
}

/// A teacher's vector of one stretch of a song (seconds from the start of the audio the spectrogram was made of).
#[derive(Clone, Debug, PartialEq)]
pub struct TeacherPatch {
    /// Start of the stretch, seconds.
    pub start_s: f32,
    /// End of the stretch, seconds.
    pub end_s: f32,
    /// The teacher's vector of it.
    pub vec: Vec<f32>,
}

/// The teacher target of a crop covering `[start_s, end_s)`: the mean of the patches it overlaps, each weighted
/// by the seconds it shares with the crop; `None` when it overlaps none (e.g. past the last patch).
pub fn patch_target(patches: &[TeacherPatch], start_s: f32, end_s: f32) -> Option<Vec<f32>> {
    let mut out: Option<Vec<f32>> = None;
    let mut total = 0f32;
    for p in patches {
        let overlap = end_s.min(p.end_s) - start_s.max(p.start_s);
        if overlap <= 0.0 {
            continue;
        }
        let acc = out.get_or_insert_with(|| vec![0.0; p.vec.len()]);
        acc.iter_mut().zip(&p.vec).for_each(|(a, v)| *a += overlap * v);
        total += overlap;
    }
    out.map(|mut v| {
        v.iter_mut().for_each(|a| *a /= total);
        v
    })
}

/// Training settings (saved with the checkpoint; a resume must use the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Maximum epochs.
    pub epochs: usize,
    /// Tiles per step.
    pub batch_size: usize,
    /// Peak learning rate (Adam), decayed by a cosine over `epochs`.
    pub learning_rate: f64,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// Random crops drawn from each training song per epoch.
    pub crops_per_song: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Seed of initialisation, crops, masks and batch order.
    pub seed: u64,
    /// SpecAugment masks on training tiles.
    pub spec_augment: bool,
    /// Weight of the tag-distillation loss (0 = no tag head).
    #[serde(default)]
    pub tag_weight: f32,
    /// Weight of the group (production) cross-entropy (0 = no group head).
    #[serde(default)]
    pub group_weight: f32,
    /// Random EQ tilt (up to +-6 dB across the bands) and tempo change (up to +-8%) of training crops.
    #[serde(default)]
    pub augment: bool,
    /// Weight of a song-identity head (which training song a crop comes from: pulls crops of one song
    /// together and pushes other songs apart); 0 = none.
    #[serde(default)]
    pub song_weight: f32,
    /// Weight of the teacher-vector regression (mean squared error to a pretrained model's standardised
    /// embedding of the song: distillation of what it knows of music); 0 = none.
    #[serde(default)]
    pub vec_weight: f32,
    /// Weight of a supervised contrastive term (SupCon / NT-Xent) on the unit-length embeddings: crops of one
    /// song (or of renderings of one work) drawn in pairs into each batch are pulled together, every other
    /// crop in the batch pushed away; 0 = none (and batches are drawn crop by crop).
    #[serde(default)]
    pub contrast_weight: f32,
    /// Temperature of the contrastive term's softmax over cosine similarities.
    #[serde(default = "default_contrast_temperature")]
    pub contrast_temperature: f32,
    /// In the contrastive term, crops of songs of one group (production) are positives too, not only
    /// crops of one song or work.
    #[serde(default)]
    pub contrast_groups: bool,
    /// Weight of relational distillation (Park et al. 2019, "RKD", distance-wise): the distances between the
    /// batch's unit-length embeddings, each divided by their mean, are pulled towards the same of the
    /// teacher's unit-length vectors (`--teacher-vectors` or `--teacher-patches`): the student learns the
    /// teacher's similarity structure itself, which is what retrieval uses; 0 = none.
    #[serde(default)]
    pub relation_weight: f32,
    /// Mixup (Zhang et al. 2018) within each batch: this share of the training crops (0-1) is mixed with
    /// another crop of the batch, `lam * own + (1 - lam) * other` with `lam` uniform in [0.5, 1], in the
    /// network's input and in every target (class, tags, group, song, teacher vector; a target one of the two
    /// lacks stays the crop's own); 0 = none.
    #[serde(default)]
    pub mixup: f32,
    /// Scale of cosine (normalised-softmax) group and song-identity heads: their logits are `scale x` the
    /// cosine between the embedding and each class's weight vector, so they train the geometry retrieval
    /// uses (Zhai & Wu 2019, "Classification is a strong baseline for deep metric learning"); 0 = plain
    /// linear heads.
    #[serde(default)]
    pub cosine_scale: f32,
    /// Share of training crops (0-1) whose song context ([`crate::SongContext`]) is replaced by the
    /// training songs' mean (zeros after standardising), so the tiles' own pathway must still find what
    /// the context would give away (the song's statistics identify every training song); 0 = none.
    #[serde(default)]
    pub context_dropout: f32,
    /// Stochastic weight averaging (Izmailov et al. 2018): the model written is the mean of the network's
    /// weights at the end of each of the last `average_epochs` epochs of the schedule, its batch-norm
    /// running statistics then recomputed for those weights over an epoch of training crops
    /// ([`SoundNet::refresh_batch_norm`]), and the last epoch's own weights go to `OUT/last-epoch/` beside
    /// it; 0 = none (the best or last epoch's own weights, as before).
    #[serde(default)]
    pub average_epochs: usize,
    /// With `average_epochs`: the averaged epochs train at this constant learning rate, and the cosine of the
    /// epochs before them decays from the peak to it instead of to zero (the schedule of Izmailov et al.,
    /// whose averaged members differ); 0 = the plain cosine over the whole schedule. See [`learning_rate_at`].
    #[serde(default)]
    pub average_lr: f64,
}

/// The learning rate of `epoch` (1-based): a cosine from the peak over the schedule's epochs
/// (`peak * (1 + cos(pi * (epoch - 1) / epochs)) / 2`); with `average_lr > 0` (and `average_epochs > 0`), a
/// cosine from the peak down to `average_lr` over the epochs before the averaged ones, then `average_lr`
/// through them.
pub fn learning_rate_at(opts: &TrainOptions, epoch: usize) -> f64 {
    let cosine = |span: usize, floor: f64| floor + (opts.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * (epoch - 1) as f64 / span as f64).cos());
    let decay = opts.epochs.saturating_sub(opts.average_epochs);
    if opts.average_epochs > 0 && opts.average_lr > 0.0 {
        if epoch > decay {
            return opts.average_lr;
        }
        return cosine(decay, opts.average_lr);
    }
    cosine(opts.epochs, 0.0)
}

fn default_contrast_temperature() -> f32 {
    0.1
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 30,
            batch_size: 32,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            crops_per_song: 8,
            patience: 6,
            seed: 42,
            spec_augment: true,
            tag_weight: 0.0,
            group_weight: 0.0,
            augment: false,
            song_weight: 0.0,
            vec_weight: 0.0,
            contrast_weight: 0.0,
            contrast_temperature: default_contrast_temperature(),
            contrast_groups: false,
            relation_weight: 0.0,
            mixup: 0.0,
            cosine_scale: 0.0,
            context_dropout: 0.0,
            average_epochs: 0,
            average_lr: 0.0,
        }
    }
}

/// What training optimises: the [`SoundNet`] plus the auxiliary heads on its embedding (absent when their
/// weight is 0). Only `net` is saved as the model.
#[derive(Module, Debug)]
pub struct TrainNet {
    /// The model.
    pub net: SoundNet,
    /// Tag logits from the embedding.
    pub tag_head: Option<Linear>,
    /// Group logits from the embedding.
    pub group_head: Option<Linear>,
    /// Song-identity logits from the embedding.
    pub song_head: Option<Linear>,
    /// The teacher's vector predicted from the embedding.
    pub vec_head: Option<Linear>,
}

impl TrainNet {
    /// A fresh network with heads for `n_tags` tags and `n_groups` groups (0 = no head).
    /// `n_songs` likewise for the song-identity head.
    /// `n_vec` for the teacher-vector head.
    pub fn new(arch: &crate::ArchConfig, n_classes: usize, n_tags: usize, n_groups: usize, n_songs: usize, n_vec: usize, device: &Device) -> Self {
        let head = |n: usize| (n > 0).then(|| LinearConfig::new(arch.embedding_dim, n).init(device));
        TrainNet {
            net: SoundNet::new(arch, n_classes, device),
            tag_head: head(n_tags),
            group_head: head(n_groups),
            song_head: head(n_songs),
            vec_head: head(n_vec),
        }
    }
}

/// One batch's targets for [`train_step_multi`].
pub struct BatchTargets {
    /// Class-weighted one-hot `[b, classes]`.
    pub class: Tensor<2>,
    /// Sum of the class weights.
    pub class_wsum: f32,
    /// Soft tags `[b, tags]` and a per-row mask `[b, 1]` (1 where the song has tags).
    pub tags: Option<(Tensor<2>, Tensor<2>, f32)>,
    /// One-hot groups `[b, groups]` (rows of songs without a group are zero) and how many rows have one.
    pub groups: Option<(Tensor<2>, f32)>,
    /// One-hot training-song index `[b, songs]`.
    pub songs: Option<Tensor<2>>,
    /// Teacher vectors `[b, d]`, a row mask `[b, 1]` and the number of rows that have one.
    pub vecs: Option<(Tensor<2>, Tensor<2>, f32)>,
    /// Contrastive targets: `[b, b]` positives (1 where two different rows are crops of one song or work).
    pub contrast: Option<Tensor<2>>,
    /// Relational targets: the teacher's pairwise distances `[b, b]` (over their mean) and the pairs that count
    /// (`[b, b]`, 1 where two different rows both have a teacher vector), from [`relation_targets`].
    pub relation: Option<(Tensor<2>, Tensor<2>)>,
}

/// Pairwise distances of the rows of `z` (`[b, d]`, unit length) over their mean over the pairs `mask` counts.
fn relative_distances(z: Tensor<2>, mask: Tensor<2>) -> Tensor<2> {
    let sim = z.clone().matmul(z.transpose());
    let d = sim.neg().add_scalar(1.0).mul_scalar(2.0).clamp_min(0.0).add_scalar(1e-4).sqrt(); // the epsilon bounds the gradient at 0
    let mean = d.clone().mul(mask.clone()).sum().div(mask.sum().clamp_min(1.0)).add_scalar(1e-8);
    d.div(mean.reshape([1, 1]))
}

/// The teacher's side of the relational term for a batch of `b` rows of `width` values (`mask[i]` 1 where row
/// `i` has a vector): pairwise distances of the unit-length rows over their mean, and the pair mask.
pub fn relation_targets(values: &[f32], mask: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let b = mask.len();
    let unit: Vec<Vec<f32>> = values
        .chunks_exact(width)
        .map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-8);
            r.iter().map(|v| v / n).collect()
        })
        .collect();
    let mut d = vec![0f32; b * b];
    let mut m = vec![0f32; b * b];
    let (mut sum, mut n) = (0f64, 0f64);
    for i in 0..b {
        for j in 0..b {
            if i != j && mask[i] > 0.0 && mask[j] > 0.0 {
                let cos: f32 = unit[i].iter().zip(&unit[j]).map(|(x, y)| x * y).sum();
                let dist = ((2.0 - 2.0 * cos).max(0.0) + 1e-4).sqrt(); // as the student's side
                d[i * b + j] = dist;
                m[i * b + j] = 1.0;
                sum += dist as f64;
                n += 1.0;
            }
        }
    }
    let mean = if n > 0.0 { (sum / n) as f32 + 1e-8 } else { 1.0 };
    d.iter_mut().for_each(|v| *v /= mean);
    (d, m)
}

/// The relational distillation loss: mean squared difference between the student's relative pairwise
/// distances (of `emb [b, d]`, made unit length) and the teacher's (`target`, from [`relation_targets`]) over
/// the pairs `mask` counts. Returns a scalar tensor.
pub fn relation_loss(emb: Tensor<2>, target: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let norm = emb.clone().powf_scalar(2.0).sum_dim(1).add_scalar(1e-8).sqrt();
    let diff = relative_distances(emb.div(norm), mask.clone()).sub(target);
    diff.clone().mul(diff).mul(mask.clone()).sum().div(mask.sum().clamp_min(1.0))
}

/// The supervised contrastive loss (Khosla et al. 2020, "SupCon"; NT-Xent when every row has one positive)
/// of embeddings `emb [b, d]`: cosine similarities over `temperature`, each row's log-softmax over the other
/// rows (a large number subtracted on the diagonal removes the row itself), averaged over the row's
/// `positives` (`[b, b]`, 0 on the diagonal), then over the rows that have any. Returns a scalar tensor.
pub fn supcon_loss(emb: Tensor<2>, positives: Tensor<2>, temperature: f32) -> Tensor<1> {
    let b = emb.dims()[0];
    let self_mask = Tensor::<2>::eye(b, &emb.device()).mul_scalar(1e4);
    let norm = emb.clone().powf_scalar(2.0).sum_dim(1).add_scalar(1e-8).sqrt();
    let z = emb.div(norm);
    let sim = z.clone().matmul(z.transpose()).div_scalar(temperature).sub(self_mask);
    let logp = log_softmax(sim, 1);
    let n_pos = positives.clone().sum_dim(1); // [b, 1]
    let anchors = n_pos.clone().clamp_max(1.0).sum();
    let per_row = logp.mul(positives).sum_dim(1).div(n_pos.clamp_min(1.0));
    per_row.sum().neg().div(anchors.clamp_min(1.0))
}

/// A head's logits: the plain linear layer, or with `cosine_scale > 0` that scale times the cosine between
/// each row of `emb` and each column of the head's weight (its bias unused).
pub fn head_logits(head: &Linear, emb: Tensor<2>, cosine_scale: f32) -> Tensor<2> {
    if cosine_scale <= 0.0 {
        return head.forward(emb);
    }
    let w = head.weight.val(); // [d, classes]
    let w = w.clone().div(w.powf_scalar(2.0).sum_dim(0).add_scalar(1e-8).sqrt());
    let e = emb.clone().div(emb.powf_scalar(2.0).sum_dim(1).add_scalar(1e-8).sqrt());
    e.matmul(w).mul_scalar(cosine_scale)
}

/// One optimiser step of the multi-task loss: class cross-entropy + `tag_weight` x tag binary cross-entropy
/// (mean over tags and tagged rows) + `group_weight` x group cross-entropy + `vec_weight` x teacher-vector
/// squared error + `song_weight` x song-identity cross-entropy, for the heads `net` has. Returns the updated network, the
/// total loss and the class logits.
/// `context`: each row's song context, for a network that reads one.
#[allow(clippy::too_many_arguments, reason = "the step's inputs, targets and settings")]
pub fn train_step_multi(net: TrainNet, optim: &mut ModuleOptimizer, x: Tensor<4>, context: Option<Tensor<2>>, t: BatchTargets, opts: &TrainOptions, lr: f64) -> (TrainNet, f32, Tensor<2>) {
    let emb = net.net.forward_embedding(x, context);
    let logits = net.net.head_logits(emb.clone());
    let mut loss = log_softmax(logits.clone(), 1).mul(t.class).sum().neg().div_scalar(t.class_wsum.max(1e-6));
    if let (Some(head), Some((tags, mask, n))) = (&net.tag_head, t.tags) {
        let z = head.forward(emb.clone());
        let n_tags = z.dims()[1] as f32;
        let bce = tags.clone().mul(log_sigmoid(z.clone())).add(tags.neg().add_scalar(1.0).mul(log_sigmoid(z.neg())));
        loss = loss.add(bce.mul(mask).sum().neg().div_scalar((n * n_tags).max(1e-6)).mul_scalar(opts.tag_weight));
    }
    if let (Some(head), Some((groups, n))) = (&net.group_head, t.groups) {
        let z = head_logits(head, emb.clone(), opts.cosine_scale);
        loss = loss.add(log_softmax(z, 1).mul(groups).sum().neg().div_scalar(n.max(1e-6)).mul_scalar(opts.group_weight));
    }
    if let (Some(head), Some((vecs, mask, n))) = (&net.vec_head, t.vecs) {
        let d = vecs.dims()[1] as f32;
        let diff = head.forward(emb.clone()).sub(vecs);
        loss = loss.add(diff.clone().mul(diff).mul(mask).sum().div_scalar((n * d).max(1e-6)).mul_scalar(opts.vec_weight));
    }
    if let Some((target, mask)) = t.relation {
        loss = loss.add(relation_loss(emb.clone(), target, mask).mul_scalar(opts.relation_weight));
    }
    if let Some(pos) = t.contrast {
        loss = loss.add(supcon_loss(emb.clone(), pos, opts.contrast_temperature).mul_scalar(opts.contrast_weight));
    }
    if let (Some(head), Some(songs)) = (&net.song_head, t.songs) {
        let b = songs.dims()[0] as f32;
        let z = head_logits(head, emb, opts.cosine_scale);
        loss = loss.add(log_softmax(z, 1).mul(songs).sum().neg().div_scalar(b).mul_scalar(opts.song_weight));
    }
    let loss_v = loss.clone().into_data().try_into_vec::<f32>().unwrap_or_default().first().copied().unwrap_or(f32::NAN);
    if !loss_v.is_finite() {
        return (net, loss_v, logits);
    }
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    (optim.step(lr, net, grads), loss_v, logits)
}

/// One line of the training history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Mean training loss (class-weighted).
    pub train_loss: f64,
    /// Training tile accuracy (on augmented crops).
    pub train_accuracy: f64,
    /// Validation loss per tile.
    pub val_loss: f64,
    /// Validation tile accuracy.
    pub val_tile_accuracy: f64,
    /// Validation song accuracy.
    pub val_song_accuracy: f64,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
    /// Training tiles per second.
    pub tiles_per_second: f64,
}

/// Saved after every epoch: with the checkpoint's weights and optimizer state it resumes exactly.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs finished.
    pub epochs_done: usize,
    /// Best validation loss so far.
    pub best_val_loss: f64,
    /// Epoch of the best validation loss.
    pub best_epoch: usize,
    /// History.
    pub history: Vec<EpochRecord>,
    /// Options (a resume with other options is refused).
    pub options: TrainOptions,
    /// Folder under `checkpoint/` holding this epoch's weights and optimizer.
    pub checkpoint: String,
    /// Epochs in the weight average so far (`average.bpk` in the checkpoint folder; see
    /// [`TrainOptions::average_epochs`]).
    #[serde(default)]
    pub averaged: usize,
}

/// Every float tensor of a module (parameters and running statistics), flattened, in visiting order.
struct Gather(Vec<Tensor<1>>);

impl burn::module::ModuleVisitor for Gather {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

/// Moves each float tensor of a module a share `w` of the way towards the same tensor of another module of
/// the same architecture (given flattened, in visiting order): `x + w * (other - x)`.
struct Towards {
    other: std::vec::IntoIter<Tensor<1>>,
    w: f32,
}

impl burn::module::ModuleMapper for Towards {
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
        // Modules of one architecture visit the same tensors in the same order, so there is always one.
        let Some(o) = self.other.next() else { return param };
        let w = self.w;
        param.map(|t| {
            let shape = t.shape();
            t.clone().add(o.reshape(shape).sub(t).mul_scalar(w))
        })
    }
}

/// Adds `net` as the `n`-th member (1-based) of the running mean `avg` of networks of one architecture:
/// `avg + (net - avg) / n`, over every weight and batch-norm running statistic. The first member is `net`.
///
/// burn keeps running statistics behind a handle that a module's clones share, and mapping a module writes
/// them in place; the result is therefore built on `valid()` copies, which have their own, so neither `avg`'s
/// clones nor `net` change.
pub fn average_into(avg: Option<SoundNet>, net: &SoundNet, n: usize) -> SoundNet {
    match avg {
        None => net.valid(),
        Some(avg) => {
            let mut g = Gather(Vec::new());
            net.visit(&mut g);
            avg.valid().map(&mut Towards { other: g.0.into_iter(), w: 1.0 / n.max(1) as f32 })
        }
    }
}

/// Progress events for the caller's progress bar.
pub enum Progress<'a> {
    /// A training step finished.
    Step {
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
        /// Steps in the epoch.
        steps: usize,
        /// Running mean loss.
        loss: f64,
        /// Running accuracy.
        accuracy: f64,
    },
    /// An epoch finished.
    Epoch(&'a EpochRecord),
}

/// What training produced.
pub struct TrainSummary {
    /// The final state (history, best epoch).
    pub state: TrainState,
    /// The config of the best model written to the output folder.
    pub config: ModelConfig,
    /// Validation report of the best model.
    pub best_val: EvalReport,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}

/// Mixup of `[b, width]` rows in place: for each `(i, j, lam)` of `mixes`, row `i` becomes `lam * row i +
/// (1 - lam) * row j` of the rows as they were before any mixing. With `mask` (1 where a row has the
/// target), a pair where either row lacks it leaves row `i` as it was.
pub fn mix_rows(values: &mut [f32], width: usize, mixes: &[(usize, usize, f32)], mask: Option<&[f32]>) {
    if width == 0 || mixes.is_empty() {
        return;
    }
    let orig = values.to_vec();
    for &(i, j, lam) in mixes {
        if mask.is_some_and(|m| m[i] == 0.0 || m[j] == 0.0) {
            continue;
        }
        let (ri, rj) = (&orig[i * width..(i + 1) * width], &orig[j * width..(j + 1) * width]);
        for (o, (a, b)) in values[i * width..(i + 1) * width].iter_mut().zip(ri.iter().zip(rj)) {
            *o = lam * a + (1.0 - lam) * b;
        }
    }
}

fn rng_for(seed: u64, epoch: usize) -> SplitMix64 {
    SplitMix64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The batch's contrastive positives, `[b, b]`: 1 where two different rows share a key (the group with
/// `by_group`, else the work, else the song).
fn contrast_positives(songs: &[LabelledSong], batch: &[(usize, usize)], by_group: bool) -> Vec<f32> {
    let key = |si: usize| {
        let s = &songs[si];
        match (by_group, s.group, s.work) {
            (true, Some(g), _) => (0, g),
            (_, _, Some(wk)) => (1, wk),
            _ => (2, si),
        }
    };
    let b = batch.len();
    let mut pos = vec![0f32; b * b];
    for (i, &(si, _)) in batch.iter().enumerate() {
        for (j, &(sj, _)) in batch.iter().enumerate() {
            if i != j && key(si) == key(sj) {
                pos[i * b + j] = 1.0;
            }
        }
    }
    pos
}

/// Each training song's standardised song context (empty rows without one), fitting `context`'s statistics
/// first when it has none. A context that needs the tagger is fitted on the songs that have the tagger's
/// vector; the others read exactly what embedding gives them ([`SongContext::of`] without a vector: the
/// tagger's part at the training mean, zeros once standardised, and their own log-mel statistics, if any).
fn song_contexts(context: Option<&mut SongContext>, songs: &[LabelledSong]) -> Result<Vec<Vec<f32>>> {
    let Some(c) = context else { return Ok(vec![Vec::new(); songs.len()]) };
    let known = |s: &LabelledSong| !c.needs_tagger() || s.tagger().is_some();
    // The raw inputs of the songs that have them all, computed once for fitting and standardising.
    let raws: Vec<Option<Vec<f32>>> = songs.iter().map(|s| known(s).then(|| c.raw(&s.mel, s.tagger()))).collect();
    if c.mean.is_empty() {
        let have: Vec<Vec<f32>> = raws.iter().flatten().cloned().collect();
        if have.is_empty() {
            return Err(ModelError::Invalid("the song context is made of the tagger's vectors, and no training song has one".into()));
        }
        c.fit(&have);
    }
    Ok(raws.into_iter().zip(songs).map(|(r, s)| r.map_or_else(|| c.of(&s.mel, None), |r| c.standardise(r))).collect())
}

/// Width of a per-song soft target (tags, teacher vectors) when its loss has a weight: the longest song's,
/// which every song that has one must share (songs without one are masked out of the loss).
fn soft_width(songs: &[LabelledSong], weight: f32, of: impl Fn(&LabelledSong) -> &Vec<f32>, what: &str) -> Result<usize> {
    let width = if weight > 0.0 { songs.iter().map(|s| of(s).len()).max().unwrap_or(0) } else { 0 };
    if width > 0 && songs.iter().any(|s| !of(s).is_empty() && of(s).len() != width) {
        return Err(ModelError::Invalid(format!("training songs have different {what}")));
    }
    Ok(width)
}

/// One batch's rows of a soft target: `[b, width]` values, a `[b, 1]` mask (1 where the song has the target)
/// and how many rows have it.
struct SoftRows {
    width: usize,
    values: Vec<f32>,
    mask: Vec<f32>,
    n: f32,
}

impl SoftRows {
    fn new(b: usize, width: usize) -> Self {
        SoftRows { width, values: vec![0f32; b * width], mask: vec![0f32; b], n: 0.0 }
    }

    /// Row `i` takes `v` if it has the target's width (a song without the target leaves it masked).
    fn set(&mut self, i: usize, v: &[f32]) {
        if self.width > 0 && v.len() == self.width {
            self.values[i * self.width..(i + 1) * self.width].copy_from_slice(v);
            self.mask[i] = 1.0;
            self.n += 1.0;
        }
    }

    /// The tensors [`BatchTargets`] takes, or `None` when the target is not trained.
    fn tensors(self, device: &Device) -> Option<(Tensor<2>, Tensor<2>, f32)> {
        let b = self.mask.len();
        (self.width > 0).then(|| {
            (
                Tensor::<2>::from_data(TensorData::new(self.values, [b, self.width]), device),
                Tensor::<2>::from_data(TensorData::new(self.mask, [b, 1]), device),
                self.n,
            )
        })
    }
}

/// One epoch's (song, crop start) items in batch order. Without `pairs`: `crops` random crops per song,
/// shuffled. With `pairs`: `crops / 2` (rounded up) pairs per song, each a crop of the song and a crop of a
/// random rendering of its work (itself when it has no other), adjacent in the order, pairs shuffled; a batch
/// of even size then holds whole pairs, the contrastive term's positives.
fn epoch_items(songs: &[LabelledSong], works: &[Vec<usize>], crops: usize, pairs: bool, w: usize, rng: &mut SplitMix64) -> Vec<(usize, usize)> {
    let start = |si: usize, rng: &mut SplitMix64| rng.below(songs[si].mel.n_frames.saturating_sub(w) + 1);
    let mut groups: Vec<Vec<(usize, usize)>> = Vec::with_capacity(songs.len() * crops);
    for (si, song) in songs.iter().enumerate() {
        if pairs {
            for _ in 0..crops.div_ceil(2) {
                let partner = match song.work.map(|wk| &works[wk]) {
                    Some(m) if m.len() > 1 => m[rng.below(m.len())],
                    _ => si,
                };
                groups.push(vec![(si, start(si, rng)), (partner, start(partner, rng))]);
            }
        } else {
            for _ in 0..crops {
                groups.push(vec![(si, start(si, rng))]);
            }
        }
    }
    for i in (1..groups.len()).rev() {
        groups.swap(i, rng.below(i + 1));
    }
    groups.concat()
}

/// Class weights `sqrt(N / (K * n_c))` normalised to mean 1 over training songs: rare soundtracks count
/// more without letting a 2-song class dominate.
pub fn class_weights(songs: &[LabelledSong], k: usize) -> Vec<f32> {
    let mut counts = vec![0usize; k];
    songs.iter().for_each(|s| counts[s.label] += 1);
    let n = songs.len().max(1) as f32;
    let w: Vec<f32> = counts.iter().map(|&c| if c == 0 { 0.0 } else { (n / (k as f32 * c as f32)).sqrt() }).collect();
    let mean = songs.iter().map(|s| w[s.label]).sum::<f32>() / n;
    w.iter().map(|x| x / mean.max(1e-6)).collect()
}

fn io_err(p: &Path, e: std::io::Error) -> ModelError {
    ModelError::io(p, e)
}

/// A checkpoint file burn or serde could not read or write.
fn file_err(p: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::format(p, e)
}

/// Trains a model into `out_dir` (best weights + config, `checkpoint/`, `history.json`).
///
/// `stop(epoch)` is asked after each epoch's checkpoint; `true` ends the run there (interruptions, tests).
///
/// The optimiser training uses: Adam with L2 weight decay.
pub fn optimizer(weight_decay: f32) -> ModuleOptimizer {
    AdamConfig::new().with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(weight_decay))).init()
}

/// One optimiser step on a batch (`x` and the weighted one-hot `target` on an autodiff device; `wsum` the
/// sum of the target weights): weighted cross-entropy, backward, Adam. Returns the updated model, the
/// loss and the logits.
pub fn train_step(model: SoundNet, optim: &mut ModuleOptimizer, x: Tensor<4>, target: Tensor<2>, wsum: f32, lr: f64) -> (SoundNet, f32, Tensor<2>) {
    let net = TrainNet { net: model, tag_head: None, group_head: None, song_head: None, vec_head: None };
    let t = BatchTargets { class: target, class_wsum: wsum, tags: None, groups: None, songs: None, vecs: None, contrast: None, relation: None };
    let (net, loss, logits) = train_step_multi(net, optim, x, None, t, &TrainOptions::default(), lr);
    (net.net, loss, logits)
}

/// One training run: where it writes, what it learns from, with which options, on which device.
pub struct TrainJob<'a> {
    /// The model folder written (its `checkpoint/` is what `resume` continues from).
    pub out_dir: &'a Path,
    /// Front end, architecture and labels.
    pub config: &'a ModelConfig,
    /// Training songs.
    pub train: &'a [LabelledSong],
    /// Validation songs (may be empty: the whole schedule runs and the last epoch is kept).
    pub val: &'a [LabelledSong],
    /// Schedule, heads and seeds.
    pub opts: &'a TrainOptions,
    /// Continue from the folder's checkpoint instead of starting afresh.
    pub resume: bool,
    /// Where to train.
    pub device: &'a Device,
}

/// Trains `job`, reporting to `on` and stopping early when `stop(epoch)` says so. With `job.resume`,
/// continues from `out_dir/checkpoint/state.json`: same options required; the result is the same as an
/// uninterrupted run with the same seed (epoch-level determinism: every epoch's crops, masks and order
/// derive from `(seed, epoch)`).
pub fn train(job: TrainJob<'_>, on: &mut dyn FnMut(Progress), stop: &dyn Fn(usize) -> bool) -> Result<TrainSummary> {
    let TrainJob { out_dir, config, train: train_songs, val: val_songs, opts, resume, device } = job;
    if train_songs.is_empty() {
        return Err(ModelError::Invalid("no training songs".into()));
    }
    if opts.batch_size == 0 || opts.crops_per_song == 0 || opts.epochs == 0 {
        return Err(ModelError::Invalid("epochs, batch size and crops per song must be > 0".into()));
    }
    let loss_weights = [opts.tag_weight, opts.group_weight, opts.song_weight, opts.vec_weight, opts.contrast_weight, opts.relation_weight];
    if loss_weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(ModelError::Invalid(format!("loss weights must be finite and >= 0, got {loss_weights:?}")));
    }
    if opts.contrast_weight > 0.0 && !(opts.contrast_temperature.is_finite() && opts.contrast_temperature > 0.0) {
        return Err(ModelError::Invalid(format!("the contrastive temperature must be > 0, got {}", opts.contrast_temperature)));
    }
    if !(0.0..=1.0).contains(&opts.mixup) {
        return Err(ModelError::Invalid(format!("the mixup share must be in [0, 1], got {}", opts.mixup)));
    }
    if !(opts.cosine_scale.is_finite() && opts.cosine_scale >= 0.0) {
        return Err(ModelError::Invalid(format!("the cosine head scale must be >= 0, got {}", opts.cosine_scale)));
    }
    if !(0.0..1.0).contains(&opts.context_dropout) {
        return Err(ModelError::Invalid(format!("the context dropout share must be in [0, 1), got {}", opts.context_dropout)));
    }
    if opts.average_epochs > opts.epochs {
        return Err(ModelError::Invalid(format!("cannot average the last {} epochs of a {}-epoch schedule", opts.average_epochs, opts.epochs)));
    }
    if !(opts.average_lr.is_finite() && opts.average_lr >= 0.0) {
        return Err(ModelError::Invalid(format!("the averaging learning rate must be >= 0, got {}", opts.average_lr)));
    }
    if opts.average_lr > 0.0 && opts.average_epochs == 0 {
        return Err(ModelError::Invalid("a learning rate for the averaged epochs needs epochs to average".into()));
    }
    if opts.mixup > 0.0 && opts.contrast_weight > 0.0 {
        return Err(ModelError::Invalid("mixup and the contrastive term do not go together (a mixed crop has no clear positive)".into()));
    }
    if opts.contrast_groups && train_songs.iter().all(|s| s.group.is_none()) {
        return Err(ModelError::Invalid("contrastive positives by group need songs with a group".into()));
    }
    let k = config.labels.len();
    let (h, w) = (config.frontend.n_mels, config.frontend.tile_frames);
    config.frontend.validate().map_err(|e| crate::ModelError::Invalid(e.to_string()))?;
    config.arch.validate(h, w)?;
    // A song context standardised by the training songs' statistics (kept when the config has them already).
    let mut config = config.clone();
    let contexts = song_contexts(config.arch.context.as_mut(), train_songs)?;
    let config = &config;
    let n_ctx = config.arch.context.as_ref().map_or(0, |c| c.features());
    let ad = device.clone().autodiff();
    ad.seed(opts.seed);
    let ckpt_root = out_dir.join("checkpoint");
    std::fs::create_dir_all(&ckpt_root).map_err(|e| io_err(&ckpt_root, e))?;
    let state_path = ckpt_root.join("state.json");

    let n_tags = soft_width(train_songs, opts.tag_weight, |s| &s.tags, "numbers of tags")?;
    let n_groups = if opts.group_weight > 0.0 { train_songs.iter().filter_map(|s| s.group).max().map_or(0, |g| g + 1) } else { 0 };
    let n_song_ids = if opts.song_weight > 0.0 { train_songs.len() } else { 0 };
    let n_vec = soft_width(train_songs, opts.vec_weight.max(opts.relation_weight), |s| s.teacher_patches.first().map_or(&s.teacher_vec, |p| &p.vec), "teacher vector lengths")?;
    if train_songs.iter().any(|s| s.teacher_patches.iter().any(|p| p.vec.len() != n_vec) || (!s.teacher_patches.is_empty() && !s.teacher_vec.is_empty() && s.teacher_vec.len() != n_vec)) {
        return Err(ModelError::Invalid("teacher patches and vectors of different lengths".into()));
    }
    if opts.relation_weight > 0.0 && n_vec == 0 {
        return Err(ModelError::Invalid("the relational term needs teacher vectors or patches".into()));
    }
    // Seconds per spectrogram frame, to place a crop among the teacher's patches.
    let frame_s = config.frontend.hop_length as f32 / config.frontend.sample_rate as f32;
    let vec_head = if opts.vec_weight > 0.0 { n_vec } else { 0 };
    let mut model = TrainNet::new(&config.arch, k, n_tags, n_groups, n_song_ids, vec_head, &ad);
    let mut optim = optimizer(opts.weight_decay);
    let mut state = TrainState { epochs_done: 0, best_val_loss: f64::INFINITY, best_epoch: 0, history: vec![], options: opts.clone(), checkpoint: String::new(), averaged: 0 };
    // The weight average of the schedule's last epochs (stochastic weight averaging), when asked for.
    let mut average: Option<SoundNet> = None;
    if resume && state_path.exists() {
        let b = std::fs::read(&state_path).map_err(|e| io_err(&state_path, e))?;
        state = serde_json::from_slice(&b).map_err(|e| file_err(&state_path, e))?;
        if state.options != *opts {
            return Err(ModelError::Mismatch {
                path: state_path.clone(),
                reason: "the checkpoint was made with other training options".into(),
            });
        }
        let dir = ckpt_root.join(&state.checkpoint);
        model = model.try_load_file(dir.join("model.bpk")).map_err(|e| file_err(&dir, e))?;
        optim = optim.load(dir.join("optim.bpk")).map_err(|e| file_err(&dir, e))?;
        if state.averaged > 0 {
            let avg = model.net.valid().try_load_file(dir.join("average.bpk")).map_err(|e| file_err(&dir, e))?;
            average = Some(avg);
        }
    }
    let weights = class_weights(train_songs, k);
    let contrast = opts.contrast_weight > 0.0;
    // Contrastive batches hold whole pairs: an even number of crops.
    let batch_size = if contrast { (opts.batch_size.max(2) + 1) & !1 } else { opts.batch_size };
    let n_works = train_songs.iter().filter_map(|s| s.work).max().map_or(0, |m| m + 1);
    let mut works: Vec<Vec<usize>> = vec![Vec::new(); n_works];
    for (si, s) in train_songs.iter().enumerate() {
        if let Some(wk) = s.work {
            works[wk].push(si);
        }
    }
    let mut best_cfg = if state.best_epoch > 0 { crate::load_config(out_dir).ok() } else { None };
    let mut stopped_early = false;

    for epoch in state.epochs_done + 1..=opts.epochs {
        if state.epochs_done >= state.best_epoch + opts.patience && state.best_epoch > 0 {
            stopped_early = true;
            break;
        }
        let t0 = Instant::now();
        // Dropout masks come from the device RNG: seed it per epoch so a resumed run draws what an
        // uninterrupted one would.
        ad.seed(opts.seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let lr = learning_rate_at(opts, epoch);
        let mut rng = rng_for(opts.seed, epoch);
        let items = epoch_items(train_songs, &works, opts.crops_per_song, contrast, w, &mut rng);
        let steps = items.len().div_ceil(batch_size);
        let (mut loss_sum, mut hits, mut seen) = (0f64, 0usize, 0usize);
        for (step, batch) in items.chunks(batch_size).enumerate() {
            let b = batch.len();
            let mut data = vec![0f32; b * h * w];
            let mut target = vec![0f32; b * k];
            let mut tags = SoftRows::new(b, n_tags);
            let (mut groups, mut n_grouped) = (vec![0f32; b * n_groups], 0f32);
            let mut song_ids = vec![0f32; b * n_song_ids];
            let mut vecs = SoftRows::new(b, n_vec);
            let mut ctx = vec![0f32; b * n_ctx];
            let mut wsum = 0f32;
            for (i, &(si, start)) in batch.iter().enumerate() {
                let song = &train_songs[si];
                // A dropped context stays zeros: the training songs' mean.
                if n_ctx > 0 && !(opts.context_dropout > 0.0 && rng.unit() < opts.context_dropout) {
                    ctx[i * n_ctx..(i + 1) * n_ctx].copy_from_slice(&contexts[si]);
                }
                let tile = &mut data[i * h * w..(i + 1) * h * w];
                if opts.augment {
                    // Tempo: read 0.92-1.08 tiles' worth of frames and resample them to one tile.
                    let rate = 0.92 + 0.16 * rng.unit();
                    write_tile_stretched(&song.mel, start, w, rate, tile);
                    eq_tilt(tile, h, w, (rng.unit() - 0.5) * 2.0 * 6.0);
                } else {
                    write_tile(&song.mel, start, w, tile);
                }
                if opts.spec_augment {
                    spec_augment(tile, h, w, h / 8, w / 8, &mut || rng.unit());
                }
                let lw = weights[song.label];
                target[i * k + song.label] = lw;
                wsum += lw;
                tags.set(i, &song.tags);
                if let (true, Some(g)) = (n_groups > 0, song.group) {
                    groups[i * n_groups + g] = 1.0;
                    n_grouped += 1.0;
                }
                if n_song_ids > 0 {
                    song_ids[i * n_song_ids + si] = 1.0;
                }
                match patch_target(&song.teacher_patches, start as f32 * frame_s, (start + w) as f32 * frame_s) {
                    Some(v) => vecs.set(i, &v),
                    None => vecs.set(i, &song.teacher_vec),
                }
            }
            if opts.mixup > 0.0 && b > 1 {
                let mut mixes: Vec<(usize, usize, f32)> = Vec::new();
                for i in 0..b {
                    if rng.unit() < opts.mixup {
                        let j = (i + 1 + rng.below(b - 1)) % b; // another row
                        mixes.push((i, j, 0.5 + 0.5 * rng.unit()));
                    }
                }
                let has_group: Vec<f32> = batch.iter().map(|&(si, _)| if train_songs[si].group.is_some() { 1.0 } else { 0.0 }).collect();
                mix_rows(&mut data, h * w, &mixes, None);
                mix_rows(&mut ctx, n_ctx, &mixes, None);
                mix_rows(&mut target, k, &mixes, None);
                wsum = target.iter().sum();
                mix_rows(&mut tags.values, tags.width, &mixes, Some(&tags.mask));
                mix_rows(&mut groups, n_groups, &mixes, Some(&has_group));
                mix_rows(&mut song_ids, n_song_ids, &mixes, None);
                mix_rows(&mut vecs.values, vecs.width, &mixes, Some(&vecs.mask));
            }
            let relation = (opts.relation_weight > 0.0).then(|| relation_targets(&vecs.values, &vecs.mask, n_vec));
            let x = batch_tensor(data, b, h, w, &ad);
            let t2 = |v: Vec<f32>, cols: usize| Tensor::<2>::from_data(TensorData::new(v, [b, cols]), &ad);
            let bt = BatchTargets {
                class: t2(target.clone(), k),
                class_wsum: wsum,
                tags: tags.tensors(&ad),
                groups: (n_groups > 0).then(|| (t2(groups, n_groups), n_grouped)),
                songs: (n_song_ids > 0).then(|| t2(song_ids, n_song_ids)),
                vecs: vecs.tensors(&ad),
                contrast: contrast.then(|| t2(contrast_positives(train_songs, batch, opts.contrast_groups), b)),
                relation: relation.map(|(d, m)| (t2(d, b), t2(m, b))),
            };
            let ctx = (n_ctx > 0).then(|| t2(ctx, n_ctx));
            let (next, loss_v, logits) = train_step_multi(model, &mut optim, x, ctx, bt, opts, lr);
            model = next;
            if !loss_v.is_finite() {
                return Err(ModelError::Diverged { epoch, step: step + 1, loss: loss_v });
            }
            let lv = logits.into_data().try_into_vec::<f32>().unwrap_or_default();
            for (i, row) in lv.chunks_exact(k).enumerate() {
                if target[i * k + crate::eval::argmax(row)] > 0.0 {
                    hits += 1;
                }
            }
            seen += b;
            loss_sum += loss_v as f64 * b as f64;
            on(Progress::Step { epoch, step: step + 1, steps, loss: loss_sum / seen as f64, accuracy: hits as f64 / seen as f64 });
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let valid = model.net.valid();
        let val = if val_songs.is_empty() { EvalReport::default() } else { evaluate(&valid, val_songs, &config.labels, w, w, device) };
        let rec = EpochRecord {
            epoch,
            learning_rate: lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: hits as f64 / seen.max(1) as f64,
            val_loss: val.loss,
            val_tile_accuracy: val.tile_accuracy,
            val_song_accuracy: val.song_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
            tiles_per_second: seen as f64 / train_secs.max(1e-9),
        };
        on(Progress::Epoch(&rec));
        // With no validation set, the last epoch is the best.
        let improved = val_songs.is_empty() || val.loss < state.best_val_loss;
        if improved {
            state.best_val_loss = val.loss;
            state.best_epoch = epoch;
            best_cfg = Some(save_model(out_dir, &valid, config)?);
        }
        state.history.push(rec);
        state.epochs_done = epoch;
        if opts.average_epochs > 0 && epoch + opts.average_epochs > opts.epochs {
            state.averaged += 1;
            average = Some(average_into(average.take(), &valid, state.averaged));
        }
        // Checkpoint: a fresh folder, then the state file that points at it (the commit), then cleanup.
        let name = format!("epoch-{epoch:04}");
        let dir = ckpt_root.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        model.clone().save_file(dir.join("model.bpk")).map_err(|e| file_err(&dir, e))?;
        optim.save(dir.join("optim.bpk")).map_err(|e| file_err(&dir, e))?;
        if let Some(avg) = &average {
            avg.clone().save_file(dir.join("average.bpk")).map_err(|e| file_err(&dir, e))?;
        }
        let old = std::mem::replace(&mut state.checkpoint, name);
        soundalike_core::write_atomic(&state_path, &serde_json::to_vec_pretty(&state).map_err(|e| file_err(&state_path, e))?).map_err(|e| io_err(&state_path, e))?;
        if !old.is_empty() && old != state.checkpoint {
            let _ = std::fs::remove_dir_all(ckpt_root.join(old));
        }
        if stop(epoch) {
            break;
        }
    }
    let config = match (&average, best_cfg) {
        // The average is the model; the last epoch's own weights are kept beside it for comparison.
        (Some(avg), _) => {
            save_model(&out_dir.join("last-epoch"), &model.net.valid(), config)?;
            // The average's batch-norm statistics, recomputed for its own weights over an epoch of plain
            // crops (seeded past the schedule's epochs, so a resumed run draws the same).
            let mut rng = rng_for(opts.seed, opts.epochs + 1);
            let items = epoch_items(train_songs, &works, opts.crops_per_song, false, w, &mut rng);
            let batches = items.chunks(batch_size).map(|batch| {
                let mut data = vec![0f32; batch.len() * h * w];
                for (tile, &(si, start)) in data.chunks_exact_mut(h * w).zip(batch) {
                    write_tile(&train_songs[si].mel, start, w, tile);
                }
                batch_tensor(data, batch.len(), h, w, device)
            });
            save_model(out_dir, &avg.refresh_batch_norm(batches), config)?
        }
        (None, Some(c)) => c,
        (None, None) => save_model(out_dir, &model.net.valid(), config)?,
    };
    let best = crate::load_model(out_dir, device)?;
    let best_val = if val_songs.is_empty() { EvalReport::default() } else { evaluate(&best.net, val_songs, &config.labels, w, w, device) };
    Ok(TrainSummary { state, config, best_val, stopped_early })
}

/// Path of the checkpoint state file inside a model output folder.
pub fn checkpoint_state_path(out_dir: &Path) -> PathBuf {
    out_dir.join("checkpoint").join("state.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(k: usize, tagger: bool) -> LabelledSong {
        let (n_mels, n_frames) = (8, 20);
        let mel = LogMel { n_mels, n_frames, data: (0..n_mels * n_frames).map(|i| -60.0 + (10 * k + i % 7) as f32 - (i / n_frames) as f32).collect() };
        let tagger_vec = if tagger { (0..crate::musicnn::PENULTIMATE).map(|j| (j % 5 + k) as f32).collect() } else { Vec::new() };
        LabelledSong { tagger_vec, ..LabelledSong::new(format!("s{k}"), 0, mel) }
    }

    #[test]
    fn a_training_song_without_the_taggers_vector_reads_what_embedding_gives_it() {
        let d = crate::musicnn::PENULTIMATE;
        let songs = [song(0, true), song(3, false), song(2, true)];
        let mut joint = SongContext::musicnn_and_log_mel(false, 2);
        let rows = song_contexts(Some(&mut joint), &songs).unwrap();
        // Fitted on the two songs with a vector.
        assert!((joint.mean[0] - 1.0).abs() < 1e-6 && (joint.mean[d] - (songs[0].mel.data.iter().take(80).sum::<f32>() / 80.0 + 10.0)).abs() < 1e-3, "{} {}", joint.mean[0], joint.mean[d]);
        assert_eq!(rows[0], joint.of(&songs[0].mel, songs[0].tagger()));
        // The song without one: the tagger's part at the mean (zeros), its own statistics after it.
        assert_eq!(rows[1], joint.of(&songs[1].mel, None));
        assert!(rows[1][..d].iter().all(|&x| x == 0.0) && rows[1][d..].iter().any(|&x| x != 0.0), "{:?}", &rows[1][d..]);
        // The tagger's values alone: zeros for that song; a log-mel context needs no vector; none: empty rows.
        let mut alone = SongContext::musicnn(false);
        assert_eq!(song_contexts(Some(&mut alone), &songs).unwrap()[1], vec![0.0; d]);
        let mut stats = SongContext::log_mel(2);
        assert_eq!(song_contexts(Some(&mut stats), &songs).unwrap()[1], stats.of(&songs[1].mel, None));
        assert_eq!(song_contexts(None, &songs).unwrap(), vec![Vec::<f32>::new(); 3]);
        // No training song with a vector: refused.
        let mut fresh = SongContext::musicnn_and_log_mel(false, 2);
        let err = song_contexts(Some(&mut fresh), &[song(1, false)]).unwrap_err();
        assert!(err.to_string().contains("no training song has one"), "{err}");
    }
}
