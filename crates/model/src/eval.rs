//! Honest evaluation on held-out songs: tile and song accuracy, macro-F1, per-class accuracy, confusion
//! matrix and chance levels.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::tile_starts;
use crate::infer::run_tiles;
use crate::{CpuNet, LabelledSong, SoundNet};

/// Evaluation results on one set of songs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvalReport {
    /// Songs evaluated.
    pub n_songs: usize,
    /// Tiles evaluated.
    pub n_tiles: usize,
    /// Mean cross-entropy per tile.
    pub loss: f64,
    /// Fraction of tiles whose arg-max is the song's label.
    pub tile_accuracy: f64,
    /// Fraction of songs whose mean tile probability arg-max is the label.
    pub song_accuracy: f64,
    /// Unweighted mean over classes (present in the set) of song-level F1.
    pub song_macro_f1: f64,
    /// Song-level accuracy (recall) per class name; `null` for classes absent from the set.
    pub per_class_accuracy: Vec<(String, Option<f64>)>,
    /// Song-level confusion matrix, `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Accuracy of always answering the most frequent class of this set.
    pub chance_majority: f64,
    /// 1 / number of classes.
    pub chance_uniform: f64,
}

/// Evaluates `net` (inference mode) on `songs` with tiles of `width` frames every `hop` frames, through its
/// folded network as embedding runs it (the fused path on the CPU, burn elsewhere).
pub fn evaluate(net: &SoundNet, songs: &[LabelledSong], labels: &[String], width: usize, hop: usize, device: &Device) -> EvalReport {
    let k = labels.len();
    let folded = net.fold_batch_norm();
    let engine = crate::is_cpu(device).then(|| CpuNet::from_folded(&folded));
    let mut confusion = vec![vec![0usize; k]; k];
    let (mut tiles, mut tile_hits, mut loss_sum) = (0usize, 0usize, 0f64);
    for s in songs {
        let starts = tile_starts(s.mel.n_frames, width, hop);
        let mut mean = vec![0f64; k];
        for row in run_tiles(&folded, engine.as_ref(), &s.mel, s.tagger(), &starts, width, device).probs.chunks_exact(k) {
            tiles += 1;
            loss_sum -= (row[s.label].max(1e-7) as f64).ln();
            if argmax(row) == s.label {
                tile_hits += 1;
            }
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
        }
        let pred = argmax(&mean.iter().map(|&v| v as f32).collect::<Vec<_>>());
        confusion[s.label][pred] += 1;
    }
    report_from_confusion(confusion, labels, tiles, tile_hits, loss_sum)
}

/// Index of the largest value (the first on ties).
pub(crate) fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
}

/// Derives every song-level figure from a confusion matrix.
pub fn report_from_confusion(confusion: Vec<Vec<usize>>, labels: &[String], n_tiles: usize, tile_hits: usize, loss_sum: f64) -> EvalReport {
    let k = labels.len();
    let n: usize = confusion.iter().map(|r| r.iter().sum::<usize>()).sum();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let support: Vec<usize> = confusion.iter().map(|r| r.iter().sum()).collect();
    let predicted: Vec<usize> = (0..k).map(|j| confusion.iter().map(|r| r[j]).sum()).collect();
    let mut f1s = Vec::new();
    let per_class_accuracy = (0..k)
        .map(|i| {
            if support[i] == 0 {
                return (labels[i].clone(), None);
            }
            let recall = confusion[i][i] as f64 / support[i] as f64;
            let precision = if predicted[i] > 0 { confusion[i][i] as f64 / predicted[i] as f64 } else { 0.0 };
            f1s.push(if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 });
            (labels[i].clone(), Some(recall))
        })
        .collect();
    let div = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
    EvalReport {
        n_songs: n,
        n_tiles,
        loss: div(loss_sum, n_tiles),
        tile_accuracy: div(tile_hits as f64, n_tiles),
        song_accuracy: div(correct as f64, n),
        song_macro_f1: div(f1s.iter().sum(), f1s.len()),
        per_class_accuracy,
        chance_majority: div(support.iter().copied().max().unwrap_or(0) as f64, n),
        chance_uniform: if k == 0 { 0.0 } else { 1.0 / k as f64 },
        confusion,
    }
}

/// The confusion matrix as CSV: header `true\predicted,<labels...>`, one row per true label.
pub fn confusion_csv(r: &EvalReport, labels: &[String]) -> String {
    let mut s = format!("true\\predicted,{}\n", labels.join(","));
    for (i, row) in r.confusion.iter().enumerate() {
        s.push_str(&labels[i]);
        for v in row {
            s.push_str(&format!(",{v}"));
        }
        s.push('\n');
    }
    s
}
