//! `train`: from a labelled library to a model folder with honest metrics (song-level split, early
//! stopping, checkpoints to resume from, plots).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use soundalike_dataset::{write_atomic, SpectrogramCache, SplitAssignment};
use soundalike_model::{eval::confusion_csv, ArchConfig, LabelledSong, ModelConfig, Pool, Progress, TrainOptions};

use crate::flags::{LabelArgs, Preset, SplitOpts};
use crate::training::{build_cache, column_of, counts, make_splits, print_report, songs_for};
use crate::util::{bar, frontend, scan_with_labels};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Library folder.
    pub library: PathBuf,
    #[command(flatten)]
    pub labels: LabelArgs,
    #[command(flatten)]
    pub split: SplitOpts,
    /// Output model folder (e.g. models/mine).
    #[arg(long)]
    pub out: PathBuf,
    /// Cache folder for spectrograms.
    #[arg(long, default_value = ".soundalike-cache")]
    pub cache: PathBuf,
    /// Front-end and architecture preset.
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
    /// Maximum epochs.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Tiles per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// L2 weight decay of the Adam optimiser (added to each weight's gradient).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,
    /// Stochastic weight averaging: the model written is the mean of the weights at the end of each of the
    /// schedule's last N epochs, its batch-norm statistics recomputed for them over an epoch of training
    /// crops (the last epoch's own weights go to OUT/last-epoch/); 0 = none.
    #[arg(long, default_value_t = 0)]
    pub average_epochs: usize,
    /// With --average-epochs: the averaged epochs train at this constant learning rate, and the cosine before
    /// them decays from --lr to it instead of to zero (so the averaged weights differ); 0 = the plain cosine.
    #[arg(long, default_value_t = 0.0)]
    pub average_lr: f64,
    /// Random crops per song per epoch.
    #[arg(long, default_value_t = 8)]
    pub crops_per_song: usize,
    /// Early-stopping patience in epochs.
    #[arg(long, default_value_t = 6)]
    pub patience: usize,
    /// Conv channels per block, comma separated (overrides the preset).
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<usize>>,
    /// How the last feature map reaches the dense layer: global (average over frequency and time, as in the
    /// 2017 design), time (average over time, keeping frequency bands) or time-std (also each band's standard
    /// deviation). Default: time-std, or global with --preset original2017.
    #[arg(long, value_enum)]
    pub pool: Option<PoolKind>,
    /// Frames per tile (and between tiles) instead of the preset's (128 frames = 3 s by default); the model
    /// records it, so embedding uses the same.
    #[arg(long)]
    pub tile_frames: Option<usize>,
    /// Frequency bands the time pools keep (default: every row of the last feature map, 8 for the default
    /// network on 128 mel bands).
    #[arg(long)]
    pub pool_bands: Option<usize>,
    /// How many conv blocks, counted from the last, reach the dense layer, each pooled as --pool says and
    /// joined (1: the last block only; 4 on the default network: every block's map, from low-level to
    /// high-level features).
    #[arg(long, default_value_t = 1)]
    pub pool_blocks: usize,
    /// Power normalisation of the song vectors this model embeds: each value of the tiles' mean is raised
    /// to this power (sign kept) before unit length. 1 (the default): the plain mean. Saved in the model's
    /// config; training itself is unchanged.
    #[arg(long, default_value_t = 1.0)]
    pub song_power: f32,
    /// Whitening of the song vectors this model embeds, of strength A: at the end of training the training
    /// songs are embedded, and the map that centres their vectors on their mean and decorrelates them (A=1:
    /// every direction the same variance; 0.5: half way, on a log scale; 0: only centred) is saved in the
    /// model's config and applied to every song vector before unit length. Off by default.
    #[arg(long, value_name = "A")]
    pub whiten: Option<f32>,
    /// Song context: the dense layer also reads the whole song's log-mel mean and spread (dB, before
    /// per-tile normalisation) in this many groups of mel bands, standardised by the training songs: the
    /// spectral balance and level that tiles lose. 0 (the default): none. With --context-musicnn, these
    /// statistics follow the tagger's values.
    #[arg(long, default_value_t = 0)]
    pub context_bands: usize,
    /// Share of training crops (0-1) whose song context is replaced by the training mean, so the tiles'
    /// own pathway still learns what the context would give away. Needs --context-bands or --context-musicnn.
    #[arg(long, default_value_t = 0.0)]
    pub context_dropout: f32,
    /// Song context from musicnn: the dense layer also reads the song's MSD_musicnn penultimate layer (200-d,
    /// mean over the patches `embed` tags), or MSD's and MTT_musicnn's joined (400-d), standardised by the
    /// training songs. CSV: `id`, then the 200 or 400 values, as `scripts/eval/musicnn_vectors.py` writes
    /// them with `soundalike tags --json --penultimate`; embedding runs the tagger for it. With
    /// --context-bands, the log-mel statistics join it.
    #[arg(long)]
    pub context_musicnn: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Compute device: cpu (default), wgpu (build with --features wgpu) or vulkan (--features vulkan).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Model name written to its config (default: the output folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Free text describing the labels (e.g. that they are a tagger's guesses).
    #[arg(long)]
    pub label_description: Option<String>,
    /// CSV of soft tag targets: `id` (the song's relative path, with or without extension) then one column per
    /// tag with probabilities in [0, 1] (a tagger's output, e.g. datasets/debian-music/tag.py). Trains a tag
    /// head on the embedding (distillation); the head is not part of the saved model.
    #[arg(long)]
    pub teacher_tags: Option<PathBuf>,
    /// Weight of the tag-distillation loss (with --teacher-tags).
    #[arg(long, default_value_t = 1.0)]
    pub tag_weight: f32,
    /// Weight of a group head (the --group-column's values, e.g. production) trained on the embedding; 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub group_weight: f32,
    /// Augment training crops with a random EQ tilt (+-6 dB) and tempo change (+-8%).
    #[arg(long)]
    pub augment: bool,
    /// Weight of a song-identity head on the embedding (crops of one song together, other songs apart); 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub song_weight: f32,
    /// CSV of a pretrained model's song vectors (`id`, then one column per dimension; e.g. musicnn's
    /// penultimate layer from datasets/debian-music/tag.py): each dimension is standardised over the training
    /// songs and regressed from the embedding (distillation); the head is not part of the saved model.
    /// Repeat it for several pretrained models: each song's vectors are joined end to end (a song must be in
    /// every file to get a target).
    #[arg(long)]
    pub teacher_vectors: Vec<PathBuf>,
    /// CSV of a pretrained model's vectors of stretches of each song (`id`, `start_s`, `end_s`, then one
    /// column per dimension, one row per stretch; e.g. musicnn's 3-s patches from datasets/debian-music/tag.py):
    /// each training crop regresses the mean of the patches it overlaps, weighted by the overlap (distillation
    /// crop by crop, instead of every crop regressing its song's mean). Repeat it for several pretrained models
    /// (their patches must match in number and start). In place of --teacher-vectors, not beside it.
    #[arg(long)]
    pub teacher_patches: Vec<PathBuf>,
    /// Weight of relational distillation (with --teacher-vectors or --teacher-patches): the distances between a
    /// batch's embeddings (unit length, over their mean) are pulled towards the teacher's, so the embedding
    /// learns the teacher's similarity structure rather than its coordinates; 0 = none. Works beside
    /// --vec-weight or alone (--vec-weight 0).
    #[arg(long, default_value_t = 0.0)]
    pub relation_weight: f32,
    /// Mixup within each batch: this share of the training crops (0-1) is mixed with another crop of the
    /// batch (`lam * own + (1 - lam) * other`, `lam` uniform in [0.5, 1]), input and targets alike; 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub mixup: f32,
    /// Cosine (normalised-softmax) group and song-identity heads: their logits are this scale times the
    /// cosine between the embedding and each class's weights, the geometry retrieval uses (20 is a usual
    /// scale); 0 = plain linear heads.
    #[arg(long, default_value_t = 0.0)]
    pub cosine_heads: f32,
    /// Weight of the teacher-vector regression (with --teacher-vectors, --teacher-patches and/or --logmel-target).
    #[arg(long, default_value_t = 1.0)]
    pub vec_weight: f32,
    /// Also regress the song's log-mel statistics (each band's mean and standard deviation over the song,
    /// relative to its loudest value, standardised over the training songs) from the embedding, appended to
    /// the teacher vector and weighted by --vec-weight: keeps in the embedding what plain log-mel statistics
    /// know about a production's sound.
    #[arg(long)]
    pub logmel_target: bool,
    /// Weight of a supervised contrastive term (SupCon/NT-Xent) on the embedding: each batch holds pairs of
    /// crops of one song (or of two renderings of one work, see --work-column), pulled together while every
    /// other crop in the batch is pushed away; 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub contrast_weight: f32,
    /// Temperature of the contrastive term.
    #[arg(long, default_value_t = 0.1)]
    pub contrast_temperature: f32,
    /// Column of the labels CSV naming the work a song renders (e.g. `work`: one MIDI file through two
    /// soundfonts): songs sharing a value are positives of each other in the contrastive term.
    #[arg(long)]
    pub work_column: Option<String>,
    /// In the contrastive term, songs of one --group-column value (production) are positives of each other
    /// too (supervised contrastive learning of the group).
    #[arg(long)]
    pub contrast_groups: bool,
}

/// `train --pool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolKind {
    Global,
    Time,
    TimeStd,
}

pub fn run(a: TrainArgs) -> Result<ExitCode> {
    let t_start = Instant::now();
    let mut fe = frontend(a.preset);
    if let Some(n) = a.tile_frames {
        anyhow::ensure!(n > 0, "--tile-frames must be > 0");
        (fe.tile_frames, fe.tile_hop) = (n, n);
    }
    let mut arch = match a.preset {
        Preset::Default => ArchConfig::default(),
        Preset::Original2017 => ArchConfig::original_2017(),
    };
    if let Some(ch) = &a.channels {
        anyhow::ensure!(!ch.is_empty() && ch.iter().all(|&c| c > 0), "--channels needs positive numbers");
        arch.channels = ch.clone();
    }
    // The default network pools over time in frequency bands (what the yardstick measured best); the 2017
    // network keeps its global pool.
    let kind = a.pool.unwrap_or(match a.preset {
        Preset::Default => PoolKind::TimeStd,
        Preset::Original2017 => PoolKind::Global,
    });
    anyhow::ensure!(
        !(matches!(kind, PoolKind::Global) && a.pool_bands.is_some()),
        "--pool-bands sets the bands of --pool time or time-std; the global pool has none"
    );
    let rows = a.pool_bands.unwrap_or(fe.n_mels >> arch.channels.len());
    arch.pool = match kind {
        PoolKind::Global => Pool::Global,
        PoolKind::Time => Pool::Time { rows, std: false },
        PoolKind::TimeStd => Pool::Time { rows, std: true },
    };
    arch.pool_blocks = a.pool_blocks;
    anyhow::ensure!(a.song_power > 0.0 && a.song_power <= 1.0, "--song-power is the power each value of a song vector is raised to: give a number above 0 and at most 1, not {}", a.song_power);
    arch.song_power = a.song_power;
    if let Some(w) = a.whiten {
        super::whiten::check_strength("--whiten", w)?;
    }
    let tagger_vecs = match &a.context_musicnn {
        Some(p) => {
            let (_, vecs) = read_csv_vectors(p, None)?;
            let d = soundalike_model::musicnn::PENULTIMATE;
            let width = vecs.values().next().map_or(0, Vec::len);
            if let Some((id, v)) = vecs.iter().find(|(_, v)| v.len() != width || (width != d && width != 2 * d)) {
                bail!("{}: {id} has {} values; musicnn's penultimate has {d} (MSD) or {} (MSD and MTT), the same for every row", p.display(), v.len(), 2 * d);
            }
            vecs
        }
        None => Default::default(),
    };
    arch.context = match (&a.context_musicnn, a.context_bands) {
        (Some(_), b) => Some(soundalike_model::SongContext::musicnn_and_log_mel(tagger_vecs.values().next().is_some_and(|v| v.len() > soundalike_model::musicnn::PENULTIMATE), b)),
        (None, 0) => None,
        (None, b) => Some(soundalike_model::SongContext::log_mel(b)),
    };
    anyhow::ensure!(
        a.teacher_patches.is_empty() || (a.teacher_vectors.is_empty() && !a.logmel_target),
        "--teacher-patches, --teacher-vectors and --logmel-target train one head: give --teacher-patches alone"
    );
    anyhow::ensure!(
        a.relation_weight == 0.0 || !a.teacher_vectors.is_empty() || !a.teacher_patches.is_empty(),
        "--relation-weight distils a teacher's similarities: give --teacher-vectors or --teacher-patches too"
    );
    anyhow::ensure!(a.work_column.is_none() || a.labels.labels.is_some(), "--work-column needs --labels (a CSV)");
    anyhow::ensure!(a.work_column.is_none() || a.contrast_weight > 0.0, "--work-column is used by the contrastive term: give --contrast-weight too");
    anyhow::ensure!(!a.contrast_groups || a.contrast_weight > 0.0, "--contrast-groups is part of the contrastive term: give --contrast-weight too");
    anyhow::ensure!(a.cosine_heads.is_finite() && a.cosine_heads >= 0.0, "--cosine-heads is a logit scale: give a number >= 0 (0 = plain heads), not {}", a.cosine_heads);
    anyhow::ensure!(a.cosine_heads == 0.0 || a.group_weight > 0.0 || a.song_weight > 0.0, "--cosine-heads changes the group and song-identity heads: give --group-weight or --song-weight too");
    anyhow::ensure!(a.average_epochs <= a.epochs, "--average-epochs {} is more epochs than the schedule's {} (--epochs)", a.average_epochs, a.epochs);
    anyhow::ensure!(a.average_lr.is_finite() && a.average_lr >= 0.0, "--average-lr is a learning rate: give a number of 0 or more, not {}", a.average_lr);
    anyhow::ensure!(a.average_lr == 0.0 || a.average_epochs > 0, "--average-lr is the learning rate of the averaged epochs: give --average-epochs too");
    anyhow::ensure!(a.weight_decay.is_finite() && a.weight_decay >= 0.0, "--weight-decay is the L2 penalty on the weights: give a number of 0 or more, not {}", a.weight_decay);
    anyhow::ensure!((0.0..1.0).contains(&a.context_dropout), "--context-dropout is the share of crops without the song context: give a number from 0 to below 1, not {}", a.context_dropout);
    anyhow::ensure!(a.context_dropout == 0.0 || arch.context.is_some(), "--context-dropout drops the song context: it needs --context-bands or --context-musicnn");
    anyhow::ensure!((0.0..=1.0).contains(&a.mixup), "--mixup is the share of crops mixed: give a number from 0 to 1, not {}", a.mixup);
    anyhow::ensure!(a.mixup == 0.0 || a.contrast_weight == 0.0, "--mixup and --contrast-weight do not go together (a mixed crop has no clear positive): give one");
    let device = soundalike_model::device_from_name(&a.device)?;
    let (files, entries) = scan_with_labels(&a.library, &a.labels, true)?;
    let splits = make_splits(&files, &entries, &a.labels, &a.split)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    write_atomic(&a.out.join("split.json"), &serde_json::to_vec_pretty(&splits)?)?;
    eprintln!("split by {}: {}", a.split.split_column.as_deref().unwrap_or("song"), counts(&splits));

    let cache = SpectrogramCache::open(&a.cache, &fe)?;
    let fps = build_cache(&cache, &files);
    let labels: Vec<String> = entries
        .iter()
        .filter(|e| splits.assignment.get(&e.rel_path) == Some(&SplitAssignment::Train))
        .filter_map(|e| e.label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Each song's tagger vector, for a musicnn context (a song without one reads the training mean).
    let load = |p| -> Result<Vec<LabelledSong>> {
        let mut songs = songs_for(p, &splits, &files, &entries, &fps, &cache, &labels)?;
        for s in &mut songs {
            if let Some(v) = tagger_vecs.get(&s.id).or_else(|| tagger_vecs.get(strip_ext(&s.id))) {
                s.tagger_vec = v.clone();
            }
        }
        Ok(songs)
    };
    let (mut train_set, val_set) = (load(SplitAssignment::Train)?, load(SplitAssignment::Val)?);
    if let Some(p) = &a.context_musicnn {
        let have = train_set.iter().filter(|s| s.tagger().is_some()).count();
        anyhow::ensure!(have > 0, "{}: no row matches a training song", p.display());
        eprintln!("musicnn context: vectors for {have} of {} training songs (the others read the training mean)", train_set.len());
    }
    let tag_names = match &a.teacher_tags {
        Some(p) => {
            let (names, tags) = read_teacher_tags(p)?;
            let mut missing = 0;
            for s in &mut train_set {
                match tags.get(&s.id).or_else(|| tags.get(strip_ext(&s.id))) {
                    Some(t) => s.tags = t.clone(),
                    None => missing += 1,
                }
            }
            eprintln!("teacher tags: {} tags for {} of {} training songs", names.len(), train_set.len() - missing, train_set.len());
            names
        }
        None => Vec::new(),
    };
    // Regression targets per training song: the teacher's vector and/or the song's log-mel statistics.
    let mut raw: Vec<Option<Vec<f32>>> = vec![Some(Vec::new()); train_set.len()];
    for p in &a.teacher_vectors {
        let (_, vecs) = read_csv_vectors(p, None)?;
        for (s, r) in train_set.iter().zip(&mut raw) {
            match vecs.get(&s.id).or_else(|| vecs.get(strip_ext(&s.id))) {
                Some(v) => r.iter_mut().for_each(|r| r.extend_from_slice(v)),
                None => *r = None,
            }
        }
        anyhow::ensure!(raw.iter().any(Option::is_some), "{}: no row matches a training song", p.display());
    }
    if a.logmel_target {
        for (s, r) in train_set.iter().zip(&mut raw) {
            if let Some(r) = r {
                r.extend(s.mel.band_statistics());
            }
        }
    }
    if !a.teacher_vectors.is_empty() || a.logmel_target {
        // Standardise each dimension over the training songs that have a row (a flat dimension stays 0).
        let rows: Vec<(usize, &Vec<f32>)> = raw.iter().enumerate().filter_map(|(i, r)| Some((i, r.as_ref()?))).collect();
        let d = rows[0].1.len();
        let standardise = standardiser(&rows.iter().map(|(_, v)| v.as_slice()).collect::<Vec<_>>());
        let std_rows: Vec<(usize, Vec<f32>)> = rows.iter().map(|(i, v)| (*i, standardise(v))).collect();
        let have = std_rows.len();
        for (i, v) in std_rows {
            train_set[i].teacher_vec = v;
        }
        let what = match (!a.teacher_vectors.is_empty(), a.logmel_target) {
            (true, true) => "teacher vectors + log-mel statistics",
            (true, false) => "teacher vectors",
            _ => "log-mel statistics",
        };
        eprintln!("{what}: {d} dimensions for {have} of {} training songs", train_set.len());
    }
    if !a.teacher_patches.is_empty() {
        let (d, n_patches, have) = attach_teacher_patches(&mut train_set, &a.teacher_patches)?;
        eprintln!("teacher patches: {d} dimensions, {n_patches} patches for {have} of {} training songs", train_set.len());
    }
    let groups: Vec<String> = if a.group_weight > 0.0 || a.contrast_groups {
        let g: BTreeSet<String> = entries
            .iter()
            .filter(|e| splits.assignment.get(&e.rel_path) == Some(&SplitAssignment::Train))
            .filter_map(|e| e.group.clone())
            .collect();
        anyhow::ensure!(g.len() >= 2, "--group-weight and --contrast-groups need a --group-column with at least two groups among the training songs");
        let group_of: std::collections::HashMap<&str, usize> = entries
            .iter()
            .filter_map(|e| Some((e.rel_path.as_str(), g.iter().position(|x| Some(x) == e.group.as_ref())?)))
            .collect();
        for s in &mut train_set {
            s.group = group_of.get(s.id.as_str()).copied();
        }
        g.into_iter().collect()
    } else {
        Vec::new()
    };
    if let Some(col) = &a.work_column {
        // The labels CSV again, read with the work column as the group: the same row-to-file matching.
        let work_of = column_of(&files, &a.labels, col)?;
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for s in &mut train_set {
            if let Some(wk) = work_of.get(s.id.as_str()) {
                let n = index.len();
                s.work = Some(*index.entry(wk.as_str()).or_insert(n));
            }
        }
        let shared = {
            let mut count = vec![0usize; index.len()];
            train_set.iter().filter_map(|s| s.work).for_each(|w| count[w] += 1);
            count.iter().filter(|&&c| c > 1).count()
        };
        eprintln!("works ({col}): {} for {} training songs, {shared} with more than one rendering", index.len(), train_set.iter().filter(|s| s.work.is_some()).count());
    }
    eprintln!("{} classes, {} train songs, {} validation songs", labels.len(), train_set.len(), val_set.len());
    anyhow::ensure!(labels.len() >= 2, "need at least two labels to train a classifier, found {labels:?}");

    let name = a.name.clone().unwrap_or_else(|| a.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or("model".into()));
    let desc = a.label_description.clone().unwrap_or_else(|| a.labels.label_column.clone());
    let cfg = ModelConfig::new(&name, fe.clone(), arch, labels.clone(), &desc);
    let opts = TrainOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.lr,
        weight_decay: a.weight_decay,
        average_epochs: a.average_epochs,
        average_lr: a.average_lr,
        crops_per_song: a.crops_per_song,
        patience: a.patience,
        seed: a.split.seed,
        tag_weight: if a.teacher_tags.is_some() { a.tag_weight } else { 0.0 },
        group_weight: a.group_weight,
        augment: a.augment,
        song_weight: a.song_weight,
        vec_weight: if !a.teacher_vectors.is_empty() || a.logmel_target || !a.teacher_patches.is_empty() { a.vec_weight } else { 0.0 },
        contrast_weight: a.contrast_weight,
        contrast_temperature: a.contrast_temperature,
        contrast_groups: a.contrast_groups,
        relation_weight: a.relation_weight,
        mixup: a.mixup,
        cosine_scale: a.cosine_heads,
        context_dropout: a.context_dropout,
        ..Default::default()
    };
    let steps_total = (train_set.len() * opts.crops_per_song).div_ceil(opts.batch_size) as u64;
    let pb = bar(steps_total, "epoch 1");
    let job = soundalike_model::TrainJob { out_dir: &a.out, config: &cfg, train: &train_set, val: &val_set, opts: &opts, resume: a.resume, device: &device };
    let summary = soundalike_model::train(job, &mut |p| match p {
        Progress::Step { epoch, step, loss, accuracy, .. } => {
            pb.set_prefix(format!("epoch {epoch}/{}", opts.epochs));
            pb.set_position(step as u64);
            pb.set_message(format!("loss {loss:.3} acc {:.1}%", 100.0 * accuracy));
        }
        Progress::Epoch(r) => {
            let line = format!(
                "epoch {:>3}: train loss {:.3} acc {:5.1}% | val loss {:.3} tile acc {:5.1}% song acc {:5.1}% | {:.0} tiles/s, {:.0} s",
                r.epoch, r.train_loss, 100.0 * r.train_accuracy, r.val_loss, 100.0 * r.val_tile_accuracy, 100.0 * r.val_song_accuracy, r.tiles_per_second, r.seconds
            );
            // indicatif draws nothing when stderr is not a terminal: log the epoch there anyway.
            if pb.is_hidden() {
                eprintln!("{line}");
            } else {
                pb.println(line);
            }
            pb.reset();
        }
    }, &|_| false)?;
    pb.finish_and_clear();
    let model = soundalike_model::load_model(&a.out, &device)?;
    let w = fe.tile_frames;
    let test = soundalike_model::evaluate(&model.net, &load(SplitAssignment::Test)?, &labels, w, w, &device);
    let holdout = soundalike_model::evaluate(&model.net, &load(SplitAssignment::Holdout)?, &labels, w, w, &device);
    let mut fingerprint = summary.config.fingerprint.clone();
    let whitening = match a.whiten {
        Some(alpha) => {
            let pb = bar(train_set.len() as u64, "whitening: embedding the training songs");
            let fit = model.fit_song_whitening(train_set.iter().map(|s| (&s.mel, s.tagger())), alpha, &device, &mut || pb.inc(1))?;
            pb.finish_and_clear();
            super::whiten::warn_if_few(fit.fitted_on, model.config.arch.embedding_dim);
            let report = json!({ "alpha": fit.alpha, "fitted_on": fit.fitted_on });
            fingerprint = soundalike_model::set_song_whitening(&a.out, Some(fit))?.fingerprint;
            eprintln!("song vectors whitened (strength {alpha}), fitted on {} training songs", report["fitted_on"]);
            Some(report)
        }
        None => None,
    };
    let metrics = json!({
        "model": name,
        "fingerprint": fingerprint,
        "labels": labels,
        "label_description": desc,
        "label_column": a.labels.label_column,
        "split": counts(&splits),
        "split_seed": a.split.seed,
        "holdout_groups": a.split.holdout_groups,
        "split_column": a.split.split_column,
        "best_epoch": summary.state.best_epoch,
        "epochs_run": summary.state.epochs_done,
        "stopped_early": summary.stopped_early,
        "options": opts,
        "teacher_tags": a.teacher_tags.as_ref().map(|p| p.display().to_string()),
        "tag_names": tag_names,
        "teacher_vectors": a.teacher_vectors.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "teacher_patches": a.teacher_patches.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "logmel_target": a.logmel_target,
        "song_whitening": whitening,
        "work_column": a.work_column,
        "groups": groups,
        "validation": summary.best_val,
        "test": test,
        "holdout": holdout,
        "history": summary.state.history,
        "wall_seconds": t_start.elapsed().as_secs_f64(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": format!("{} threads, {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), a.device),
    });
    write_atomic(&a.out.join("metrics.json"), &serde_json::to_vec_pretty(&metrics)?)?;
    write_atomic(&a.out.join("confusion.csv"), confusion_csv(&test, &labels).as_bytes())?;
    crate::draw::draw_plots(&a.out)?;
    println!("model written to {} (best epoch {}, fingerprint {fingerprint})", a.out.display(), summary.state.best_epoch);
    print_report("validation", &summary.best_val);
    print_report("test", &test);
    if holdout.n_songs > 0 {
        print_report("held-out groups", &holdout);
    }
    Ok(ExitCode::SUCCESS)
}

fn strip_ext(id: &str) -> &str {
    match id.rfind('.') {
        Some(i) if !id[i..].contains('/') => &id[..i],
        _ => id,
    }
}

/// Column names and one vector per song id, from a CSV of `id` + numeric columns.
type CsvVectors = (Vec<String>, std::collections::HashMap<String, Vec<f32>>);

/// Per dimension, the mean and standard deviation over `rows` (all as wide as the first): a function that
/// standardises a row with them (a dimension flat over `rows` becomes 0).
fn standardiser(rows: &[&[f32]]) -> impl Fn(&[f32]) -> Vec<f32> {
    let d = rows.first().map_or(0, |r| r.len());
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..d).map(|j| rows.iter().map(|v| v[j] as f64).sum::<f64>() / n).collect();
    let sd: Vec<f64> = (0..d).map(|j| (rows.iter().map(|v| (v[j] as f64 - mean[j]).powi(2)).sum::<f64>() / n).sqrt()).collect();
    move |v| v.iter().zip(mean.iter().zip(&sd)).map(|(&x, (m, s))| if *s > 1e-9 { ((x as f64 - m) / s) as f32 } else { 0.0 }).collect()
}

/// Row `i` (0-based, after the header) of a CSV of `width` columns: the record and its values after the first
/// column, each a finite number (in `range` when given), as many as the header has columns.
fn csv_values(rec: csv::Result<csv::StringRecord>, p: &std::path::Path, i: usize, width: usize, range: Option<(f32, f32)>) -> Result<(csv::StringRecord, Vec<f32>)> {
    let rec = rec.with_context(|| format!("{}: row {}", p.display(), i + 2))?;
    let v: Vec<f32> = rec
        .iter()
        .skip(1)
        .map(|x| x.trim().parse::<f32>().ok().filter(|v| v.is_finite() && range.is_none_or(|(lo, hi)| (lo..=hi).contains(v))))
        .collect::<Option<_>>()
        .with_context(|| match range {
            Some((lo, hi)) => format!("{}: row {}: values must be numbers in [{lo}, {hi}]", p.display(), i + 2),
            None => format!("{}: row {}: values must be finite numbers", p.display(), i + 2),
        })?;
    anyhow::ensure!(v.len() == width - 1, "{}: row {} has {} values for {} columns", p.display(), i + 2, v.len(), width - 1);
    Ok((rec, v))
}

/// One song's patches from a teacher-patch CSV: `(start_s, end_s, vector)` in file order.
type Patches = Vec<(f32, f32, Vec<f32>)>;

/// Reads a teacher-patch CSV: `id`, `start_s`, `end_s`, then one column per dimension; a row per patch.
fn read_patch_csv(p: &std::path::Path) -> Result<std::collections::HashMap<String, Patches>> {
    let mut rdr = csv::Reader::from_path(p).with_context(|| format!("cannot read {}", p.display()))?;
    let headers: Vec<String> = rdr.headers().with_context(|| format!("{}: no header", p.display()))?.iter().map(String::from).collect();
    anyhow::ensure!(
        headers.len() >= 4 && headers[..3] == ["id", "start_s", "end_s"],
        "{}: the columns must be `id`, `start_s`, `end_s`, then one column per dimension",
        p.display()
    );
    let mut out: std::collections::HashMap<String, Patches> = std::collections::HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let (rec, v) = csv_values(rec, p, i, headers.len(), None)?;
        anyhow::ensure!(v[1] > v[0] && v[0] >= 0.0, "{}: row {}: a patch must end after it starts (start_s {}, end_s {})", p.display(), i + 2, v[0], v[1]);
        out.entry(rec[0].to_string()).or_default().push((v[0], v[1], v[2..].to_vec()));
    }
    Ok(out)
}

/// Reads the teacher-patch CSVs, joins each song's patches across them (a song whose patches differ in number
/// or start between files, or that is missing from one, gets none), standardises every dimension over all
/// patches of the training songs, and attaches them. Returns (dimensions, patches, songs with patches).
fn attach_teacher_patches(train_set: &mut [soundalike_model::LabelledSong], paths: &[std::path::PathBuf]) -> Result<(usize, usize, usize)> {
    let files: Vec<_> = paths.iter().map(|p| read_patch_csv(p)).collect::<Result<_>>()?;
    let mut joined: Vec<Option<Patches>> = Vec::with_capacity(train_set.len());
    for s in train_set.iter() {
        let mut acc: Option<Patches> = None;
        for f in &files {
            let Some(mine) = f.get(&s.id).or_else(|| f.get(strip_ext(&s.id))) else {
                acc = None;
                break;
            };
            acc = match acc {
                None => Some(mine.clone()),
                Some(prev) if prev.len() == mine.len() && prev.iter().zip(mine).all(|(a, b)| (a.0 - b.0).abs() < 1e-3) => {
                    Some(prev.into_iter().zip(mine).map(|((s0, e0, mut v), (_, _, w))| {
                        v.extend_from_slice(w);
                        (s0, e0, v)
                    }).collect())
                }
                Some(_) => None,
            };
            if acc.is_none() {
                break;
            }
        }
        joined.push(acc);
    }
    let all: Vec<&[f32]> = joined.iter().flatten().flatten().map(|(_, _, v)| v.as_slice()).collect();
    anyhow::ensure!(!all.is_empty(), "{}: no patches match a training song", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    let d = all[0].len();
    anyhow::ensure!(all.iter().all(|v| v.len() == d), "teacher patches of different lengths");
    let standardise = standardiser(&all);
    let (mut have, mut count) = (0, 0);
    for (s, j) in train_set.iter_mut().zip(joined) {
        let Some(patches) = j else { continue };
        have += 1;
        count += patches.len();
        s.teacher_patches = patches
            .into_iter()
            .map(|(start_s, end_s, v)| soundalike_model::TeacherPatch { start_s, end_s, vec: standardise(&v) })
            .collect();
    }
    Ok((d, count, have))
}

/// Reads a teacher-tag CSV: `id` then one column per tag (probabilities in [0, 1]).
fn read_teacher_tags(p: &std::path::Path) -> Result<CsvVectors> {
    read_csv_vectors(p, Some((0.0, 1.0)))
}

/// Reads `id` + numeric columns; with `range`, every value must lie in it.
fn read_csv_vectors(p: &std::path::Path, range: Option<(f32, f32)>) -> Result<CsvVectors> {
    let mut rdr = csv::Reader::from_path(p).with_context(|| format!("cannot read {}", p.display()))?;
    let headers: Vec<String> = rdr.headers().with_context(|| format!("{}: no header", p.display()))?.iter().map(String::from).collect();
    anyhow::ensure!(headers.len() >= 2 && headers[0] == "id", "{}: the first column must be `id`, then one column per value", p.display());
    let mut out = std::collections::HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let (rec, v) = csv_values(rec, p, i, headers.len(), range)?;
        out.insert(rec[0].to_string(), v);
    }
    Ok((headers[1..].to_vec(), out))
}
