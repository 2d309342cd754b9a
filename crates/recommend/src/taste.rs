//! A listener's taste: a profile of liked and disliked songs (a folder beside nothing else, tied to the
//! model whose vectors it holds, written atomically, one writer at a time), and a classifier on the song
//! vectors that says how likely they are to like a song. Two kinds are compared by stratified
//! cross-validation and the better kept: L2-regularised logistic regression (class-balanced) and a
//! similarity-weighted k-nearest-neighbour vote. With likes but no dislikes, songs drawn from the library
//! stand in as the "not marked" class (positive-unlabelled learning), and the result says so.

use std::path::{Path, PathBuf};

use soundalike_core::SplitMix64;
use serde::{Deserialize, Serialize};

use soundalike_store::{io_err, read_if_exists, write_atomic};
use crate::{dot, Catalog, IndexError, LockWait, Recommendation, Result, SongRecord, StoreHeader, StoreLock};

/// Version of a profile's `marks.json` and `taste.json`.
pub const PROFILE_FORMAT_VERSION: u32 = 1;

/// A listener's verdict on a song.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// They like it.
    Like,
    /// They do not.
    Dislike,
}

impl std::str::FromStr for Mark {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mark, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "like" | "liked" | "1" | "yes" | "+" | "+1" => Ok(Mark::Like),
            "dislike" | "disliked" | "0" | "no" | "-" | "-1" => Ok(Mark::Dislike),
            o => Err(format!("{o:?} is not a mark: like or dislike")),
        }
    }
}

/// One marked song, with its vector (a profile works on its own, even once the song leaves the store).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marked {
    /// Song id in the store.
    pub id: String,
    /// Content fingerprint when marked.
    pub fingerprint: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: Option<String>,
    /// The verdict.
    pub mark: Mark,
    /// The song's vector when marked.
    pub vector: Vec<f32>,
}

/// A listener's marks (`PROFILE/marks.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// [`PROFILE_FORMAT_VERSION`].
    pub format_version: u32,
    /// Fingerprint of the model whose vectors the marks hold.
    pub model_fingerprint: String,
    /// Its name.
    pub model_name: String,
    /// Marks, sorted by id.
    pub marks: Vec<Marked>,
}

impl Profile {
    /// `PROFILE/marks.json`.
    pub fn marks_path(dir: &Path) -> PathBuf {
        dir.join("marks.json")
    }

    /// A new, empty profile for a store's model.
    pub fn new(header: &StoreHeader) -> Profile {
        Profile { format_version: PROFILE_FORMAT_VERSION, model_fingerprint: header.model_fingerprint.clone(), model_name: header.model_name.clone(), marks: vec![] }
    }

    /// Loads a profile folder (`Ok(None)` if it has no marks yet), refusing one of another format or one
    /// made with another model than the store's.
    pub fn load(dir: &Path, header: &StoreHeader) -> Result<Option<Profile>> {
        let p = Self::marks_path(dir);
        let Some(bytes) = read_if_exists(&p)? else { return Ok(None) };
        let prof: Profile = serde_json::from_slice(&bytes).map_err(|e| IndexError::Incompatible { path: p.clone(), reason: format!("not a soundalike taste profile ({e})") })?;
        if prof.format_version != PROFILE_FORMAT_VERSION {
            return Err(IndexError::Incompatible { path: p, reason: format!("profile format {} (this soundalike reads {PROFILE_FORMAT_VERSION})", prof.format_version) });
        }
        if prof.model_fingerprint != header.model_fingerprint {
            return Err(IndexError::Incompatible {
                path: p,
                reason: format!(
                    "this profile's marks hold vectors of model {} ({}), but the store is {} ({}); mark the songs again in a new profile",
                    prof.model_name, prof.model_fingerprint, header.model_name, header.model_fingerprint
                ),
            });
        }
        if prof.marks.iter().any(|m| m.vector.len() != header.dim) {
            return Err(IndexError::Incompatible { path: p, reason: format!("a mark's vector is not {} wide", header.dim) });
        }
        Ok(Some(prof))
    }

    /// Loads a profile or starts an empty one.
    pub fn load_or_new(dir: &Path, header: &StoreHeader) -> Result<Profile> {
        Ok(Self::load(dir, header)?.unwrap_or_else(|| Profile::new(header)))
    }

    /// Writes `marks.json` atomically, creating the folder (the caller holds [`Profile::lock`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let p = Self::marks_path(dir);
        write_atomic(&p, &serde_json::to_vec_pretty(self).map_err(|e| io_err(&p, e))?)
    }

    /// The profile folder's writer lock (created if needed): one process changes a profile at a time.
    pub fn lock(dir: &Path, wait: LockWait) -> Result<StoreLock> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        StoreLock::acquire(dir, wait)
    }

    /// Marks a song (replacing an earlier mark of it); returns the earlier mark, if any.
    pub fn mark(&mut self, song: &SongRecord, vector: &[f32], mark: Mark) -> Option<Mark> {
        let m = Marked { id: song.id.clone(), fingerprint: song.fingerprint.clone(), title: song.title.clone(), artist: song.artist.clone(), mark, vector: vector.to_vec() };
        match self.marks.binary_search_by(|x| x.id.cmp(&song.id)) {
            Ok(i) => Some(std::mem::replace(&mut self.marks[i], m).mark),
            Err(i) => {
                self.marks.insert(i, m);
                None
            }
        }
    }

    /// Removes a song's mark; returns it, if there was one.
    pub fn unmark(&mut self, id: &str) -> Option<Mark> {
        let i = self.marks.binary_search_by(|x| x.id.as_str().cmp(id)).ok()?;
        Some(self.marks.remove(i).mark)
    }

    /// A song's mark.
    pub fn mark_of(&self, id: &str) -> Option<Mark> {
        self.marks.binary_search_by(|x| x.id.as_str().cmp(id)).ok().map(|i| self.marks[i].mark)
    }

    /// BLAKE3 of the marks (ids, fingerprints and verdicts).
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for m in &self.marks {
            h.update(m.id.as_bytes());
            h.update(&[0]);
            h.update(m.fingerprint.as_bytes());
            h.update(&[m.mark as u8]);
        }
        h.finalize().to_hex().to_string()
    }

    /// Number of likes and dislikes.
    pub fn counts(&self) -> (usize, usize) {
        let likes = self.marks.iter().filter(|m| m.mark == Mark::Like).count();
        (likes, self.marks.len() - likes)
    }
}

/// Which classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Classifier {
    /// L2-regularised logistic regression on the vector: `p = sigmoid(w . v + b)`.
    Logistic {
        /// Regularisation strength (penalty `lambda / 2 * |w|^2`, loss averaged over class-balanced weights).
        lambda: f32,
        /// Weights.
        w: Vec<f32>,
        /// Bias.
        b: f32,
    },
    /// Similarity-weighted vote of the `k` most similar training songs (class-balanced).
    Knn {
        /// Neighbours.
        k: usize,
        /// Training vectors.
        vectors: Vec<Vec<f32>>,
        /// Their labels (true = like).
        likes: Vec<bool>,
    },
}

/// The candidates cross-validation compares.
pub fn candidates(n_train: usize) -> Vec<Classifier> {
    let mut c: Vec<Classifier> = [0.001f32, 0.01, 0.1].iter().map(|&lambda| Classifier::Logistic { lambda, w: vec![], b: 0.0 }).collect();
    c.push(Classifier::Knn { k: 7.min(n_train.saturating_sub(1)).max(1), vectors: vec![], likes: vec![] });
    c
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Class weights so likes and dislikes count equally in total.
fn balance(y: &[bool]) -> (f32, f32) {
    let pos = y.iter().filter(|&&v| v).count().max(1) as f32;
    let neg = (y.len() as f32 - pos).max(1.0);
    let n = y.len() as f32;
    (n / (2.0 * pos), n / (2.0 * neg))
}

impl Classifier {
    /// A short name, e.g. `logistic (lambda 0.01)`.
    pub fn name(&self) -> String {
        match self {
            Classifier::Logistic { lambda, .. } => format!("logistic regression (lambda {lambda})"),
            Classifier::Knn { k, .. } => format!("{k}-nearest-neighbour vote"),
        }
    }

    /// This kind of classifier trained on `x` (rows of `dim`) with labels `y` (true = like).
    pub fn fit(&self, x: &[&[f32]], y: &[bool]) -> Classifier {
        let (wp, wn) = balance(y);
        match self {
            Classifier::Logistic { lambda, .. } => {
                let dim = x.first().map_or(0, |r| r.len());
                let (mut w, mut b) = (vec![0f32; dim], 0f32);
                let n = x.len().max(1) as f32;
                // Gradient descent with step 1/L: the loss's curvature is at most
                // max(wp, wn) * (max |v|^2 + 1) / 4, plus lambda.
                let r2 = x.iter().map(|v| dot(v, v)).fold(0f32, f32::max);
                let step = 1.0 / (wp.max(wn) * (r2 + 1.0) / 4.0 + lambda);
                let mut g = vec![0f32; dim];
                for _ in 0..3000 {
                    g.iter_mut().zip(&w).for_each(|(g, &wi)| *g = lambda * wi);
                    let mut gb = 0f32;
                    for (v, &yi) in x.iter().zip(y) {
                        let p = sigmoid(dot(&w, v) + b);
                        let (t, cw) = if yi { (1.0, wp) } else { (0.0, wn) };
                        let r = cw * (p - t) / n;
                        g.iter_mut().zip(v.iter()).for_each(|(g, &vi)| *g += r * vi);
                        gb += r;
                    }
                    let norm: f32 = g.iter().map(|x| x * x).sum::<f32>() + gb * gb;
                    w.iter_mut().zip(&g).for_each(|(w, g)| *w -= step * g);
                    b -= step * gb;
                    if norm < 1e-10 {
                        break;
                    }
                }
                Classifier::Logistic { lambda: *lambda, w, b }
            }
            Classifier::Knn { k, .. } => Classifier::Knn { k: (*k).min(x.len()).max(1), vectors: x.iter().map(|v| v.to_vec()).collect(), likes: y.to_vec() },
        }
    }

    /// The probability that the listener likes a song with vector `v`.
    pub fn predict(&self, v: &[f32]) -> f32 {
        match self {
            Classifier::Logistic { w, b, .. } => sigmoid(dot(w, v) + b),
            Classifier::Knn { k, vectors, likes } => {
                let (wp, wn) = balance(likes);
                let mut sims: Vec<(f32, bool)> = vectors.iter().zip(likes).map(|(x, &l)| (dot(x, v), l)).collect();
                sims.sort_by(|a, b| b.0.total_cmp(&a.0));
                let (mut yes, mut all) = (0f32, 0f32);
                for &(s, l) in sims.iter().take(*k) {
                    let w = (s.max(0.0) + 1e-3) * if l { wp } else { wn };
                    all += w;
                    if l {
                        yes += w;
                    }
                }
                if all > 0.0 {
                    yes / all
                } else {
                    0.5
                }
            }
        }
    }
}

/// Cross-validated quality of one candidate (pooled out-of-fold predictions, threshold 0.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvScores {
    /// The classifier.
    pub classifier: String,
    /// Folds.
    pub folds: usize,
    /// Share of marks predicted right.
    pub accuracy: f64,
    /// Of the songs predicted liked, the share really liked.
    pub precision: f64,
    /// Of the liked songs, the share predicted liked.
    pub recall: f64,
    /// Area under the ROC curve (0.5 = chance).
    pub roc_auc: f64,
    /// `[[true dislikes, false likes], [missed likes, true likes]]`.
    pub confusion: [[usize; 2]; 2],
    /// Out-of-fold probability of each training example (likes first, in the training order).
    #[serde(skip)]
    pub scores: Vec<(f32, bool)>,
}

/// Area under the ROC curve of `scores` (Mann-Whitney, ties count half); `NaN` without both classes.
pub fn roc_auc(scores: &[(f32, bool)]) -> f64 {
    let mut s: Vec<(f32, bool)> = scores.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = s.iter().filter(|x| x.1).count() as f64;
    let neg = s.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    // Rank sum of the positives, ties given their mean rank.
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < s.len() {
        let mut j = i;
        while j + 1 < s.len() && s[j + 1].0 == s[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += s[i..=j].iter().filter(|x| x.1).count() as f64 * mean_rank;
        i = j + 1;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Stratified k-fold cross-validation of `c` (folds dealt per class in a seeded order).
pub fn cross_validate(c: &Classifier, x: &[&[f32]], y: &[bool], folds: usize, seed: u64) -> CvScores {
    let mut rng = SplitMix64(seed);
    let mut fold_of = vec![0usize; y.len()];
    for class in [true, false] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        rng.shuffle(&mut idx);
        for (j, &i) in idx.iter().enumerate() {
            fold_of[i] = j % folds;
        }
    }
    let mut scores = vec![(0f32, false); y.len()];
    for f in 0..folds {
        let train: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] != f).collect();
        let tx: Vec<&[f32]> = train.iter().map(|&i| x[i]).collect();
        let ty: Vec<bool> = train.iter().map(|&i| y[i]).collect();
        let m = c.fit(&tx, &ty);
        for i in (0..y.len()).filter(|&i| fold_of[i] == f) {
            scores[i] = (m.predict(x[i]), y[i]);
        }
    }
    let mut cm = [[0usize; 2]; 2];
    for &(p, t) in &scores {
        cm[t as usize][(p >= 0.5) as usize] += 1;
    }
    let (tp, fp, fneg, tn) = (cm[1][1] as f64, cm[0][1] as f64, cm[1][0] as f64, cm[0][0] as f64);
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    CvScores {
        classifier: c.name(),
        folds,
        accuracy: div(tp + tn, tp + tn + fp + fneg),
        precision: div(tp, tp + fp),
        recall: div(tp, tp + fneg),
        roc_auc: roc_auc(&scores),
        confusion: cm,
        scores,
    }
}

/// The feature transform every classifier sees: each dimension centred on the library's mean and divided
/// by its standard deviation (song vectors share a large common direction, which would otherwise swamp
/// the differences a taste is made of).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardise {
    /// Per-dimension mean.
    pub mean: Vec<f32>,
    /// Per-dimension 1 / standard deviation.
    pub inv_std: Vec<f32>,
}

impl Standardise {
    /// From rows (at least one).
    pub fn fit(rows: &[&[f32]]) -> Standardise {
        let dim = rows.first().map_or(0, |r| r.len());
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0f64; dim];
        rows.iter().for_each(|r| mean.iter_mut().zip(r.iter()).for_each(|(m, &x)| *m += x as f64 / n));
        let mut var = vec![0f64; dim];
        rows.iter().for_each(|r| var.iter_mut().zip(r.iter().zip(&mean)).for_each(|(v, (&x, m))| *v += (x as f64 - m).powi(2) / n));
        // Dimensions that barely vary are scaled as if they varied as much as the median one.
        let mut sorted = var.clone();
        sorted.sort_by(f64::total_cmp);
        let floor = sorted.get(dim / 2).copied().unwrap_or(1.0).max(1e-12) * 1e-2;
        Standardise { mean: mean.iter().map(|&m| m as f32).collect(), inv_std: var.iter().map(|&v| (1.0 / v.max(floor).sqrt()) as f32).collect() }
    }

    /// The transformed vector.
    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        v.iter().zip(&self.mean).zip(&self.inv_std).map(|((&x, m), s)| (x - m) * s).collect()
    }
}

/// A trained taste model (`PROFILE/taste.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TasteModel {
    /// [`PROFILE_FORMAT_VERSION`].
    pub format_version: u32,
    /// The model whose vectors it reads.
    pub model_fingerprint: String,
    /// Likes it learned from.
    pub likes: usize,
    /// Dislikes it learned from.
    pub dislikes: usize,
    /// Library songs that stood in for dislikes (no dislikes marked), else 0.
    pub background: usize,
    /// What was said about the training data (e.g. the background stand-in).
    pub notes: Vec<String>,
    /// Each candidate's cross-validated scores (empty when there were too few marks to cross-validate).
    pub cv: Vec<CvScores>,
    /// The transform applied to a song vector before the classifier.
    pub standardise: Standardise,
    /// The kept classifier, trained on every mark.
    pub classifier: Classifier,
    /// BLAKE3 of the marks it learned from (a model older than the marks is trained again).
    pub marks_digest: String,
}

impl TasteModel {
    /// `PROFILE/taste.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("taste.json")
    }

    /// The probability that the listener likes a song with vector `v`.
    pub fn predict(&self, v: &[f32]) -> f32 {
        self.classifier.predict(&self.standardise.apply(v))
    }

    /// Writes `taste.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = Self::path(dir);
        write_atomic(&p, &serde_json::to_vec_pretty(self).map_err(|e| io_err(&p, e))?)
    }

    /// Loads a trained model, refusing another format or model.
    pub fn load(dir: &Path, header: &StoreHeader) -> Result<Option<TasteModel>> {
        let p = Self::path(dir);
        let Some(bytes) = read_if_exists(&p)? else { return Ok(None) };
        let m: TasteModel = serde_json::from_slice(&bytes).map_err(|e| IndexError::Incompatible { path: p.clone(), reason: format!("not a taste model ({e}); run `soundalike taste train` again") })?;
        if m.format_version != PROFILE_FORMAT_VERSION || m.model_fingerprint != header.model_fingerprint {
            return Err(IndexError::Incompatible { path: p, reason: "made for another model or format; run `soundalike taste train` again".into() });
        }
        Ok(Some(m))
    }
}

/// How [`train`] draws background songs when there are no dislikes.
pub const BACKGROUND_PER_LIKE: usize = 4;

/// Trains a taste model from a profile: standardises the vectors (on `library`'s songs), cross-validates every candidate (when each class has at least 2
/// examples), keeps the best by ROC AUC (logistic regression on ties), and fits it on every mark.
/// `library` (vectors of songs in the store, with ids) supplies background songs when there are no dislikes.
pub fn train(profile: &Profile, library: &[(&str, &[f32])], seed: u64) -> Result<TasteModel> {
    train_with(profile, library, seed, true)
}

/// [`train`], or with `cross_validate` false, logistic regression (lambda 0.01) without the comparison
/// (what `serve` does on each new mark, to answer at once).
pub fn train_with(profile: &Profile, library: &[(&str, &[f32])], seed: u64, cross_validate_candidates: bool) -> Result<TasteModel> {
    let (likes, dislikes) = profile.counts();
    if likes == 0 {
        return Err(IndexError::Invalid("no likes at all: mark at least one song the listener likes".into()));
    }
    let mut x: Vec<&[f32]> = profile.marks.iter().map(|m| m.vector.as_slice()).collect();
    let mut y: Vec<bool> = profile.marks.iter().map(|m| m.mark == Mark::Like).collect();
    let mut notes = Vec::new();
    let mut background = 0;
    if dislikes == 0 {
        let marked: std::collections::HashSet<&str> = profile.marks.iter().map(|m| m.id.as_str()).collect();
        let pool: Vec<&(&str, &[f32])> = library.iter().filter(|(id, _)| !marked.contains(id)).collect();
        let want = (BACKGROUND_PER_LIKE * likes).max(20).min(pool.len());
        if want == 0 {
            return Err(IndexError::Invalid("no dislikes, and no other songs in the library to compare the likes with".into()));
        }
        let mut rng = SplitMix64(seed ^ 0xbac6_0a1d);
        for i in rng.sample(pool.len(), want) {
            x.push(pool[i].1);
            y.push(false);
        }
        background = want;
        notes.push(format!(
            "no dislikes: {want} songs drawn at random from the library stand in as \"not marked\" (positive-unlabelled learning); read probabilities as \"more like the likes than the library at large\""
        ));
    }
    // Standardised on the library's songs when there are some, else on the marks themselves.
    let standardise = if library.len() >= 2 { Standardise::fit(&library.iter().map(|(_, v)| *v).collect::<Vec<_>>()) } else { Standardise::fit(&x) };
    let z: Vec<Vec<f32>> = x.iter().map(|v| standardise.apply(v)).collect();
    let x: Vec<&[f32]> = z.iter().map(Vec::as_slice).collect();
    let neg = y.iter().filter(|&&v| !v).count();
    let folds = likes.min(neg).min(5);
    let cands = candidates(x.len());
    let mut cv = Vec::new();
    let best = if !cross_validate_candidates {
        notes.push("not cross-validated (retrained on each mark); `soundalike taste train` compares the classifiers".into());
        1
    } else if folds >= 2 {
        cv = cands.iter().map(|c| cross_validate(c, &x, &y, folds, seed)).collect();
        let mut best = 0;
        for (i, s) in cv.iter().enumerate() {
            if s.roc_auc > cv[best].roc_auc + 1e-9 {
                best = i;
            }
        }
        best
    } else {
        notes.push(format!("{likes} likes and {neg} dislikes are too few to cross-validate (each needs 2); kept logistic regression (lambda 0.01) untested"));
        1
    };
    let classifier = cands[best].fit(&x, &y);
    Ok(TasteModel {
        format_version: PROFILE_FORMAT_VERSION,
        model_fingerprint: profile.model_fingerprint.clone(),
        likes,
        dislikes,
        background,
        notes,
        cv,
        standardise,
        classifier,
        marks_digest: profile.digest(),
    })
}

/// Library songs offered to training as background when there are no dislikes: evenly spaced, at most this many.
pub const BACKGROUND_POOL: usize = 5000;

/// [`train`] on a catalog's songs (background candidates evenly spaced through it).
pub fn train_on(profile: &Profile, cat: &Catalog, seed: u64, cross_validate_candidates: bool) -> Result<TasteModel> {
    let step = cat.len().div_ceil(BACKGROUND_POOL).max(1);
    let vecs: Vec<(usize, Vec<f32>)> = (0..cat.len()).step_by(step).map(|r| (r, cat.vector(r).into_owned())).collect();
    let lib: Vec<(&str, &[f32])> = vecs.iter().map(|(r, v)| (cat.songs()[*r].id.as_str(), v.as_slice())).collect();
    train_with(profile, &lib, seed, cross_validate_candidates)
}

/// Re-ranks recommendations by taste: each scored `(1 - weight) * similarity + weight * p(like)`, songs the
/// listener disliked and (with `min_like`) songs less likely to be liked left out, best `k` kept.
pub fn rerank<'a>(cat: &Catalog, pool: Vec<Recommendation<'a>>, model: &TasteModel, profile: &Profile, weight: f32, min_like: Option<f32>, k: usize) -> Vec<(Recommendation<'a>, f32)> {
    let mut scored: Vec<(f32, f32, Recommendation<'a>)> = pool
        .into_iter()
        .filter(|r| profile.mark_of(r.id) != Some(Mark::Dislike))
        .filter_map(|r| {
            let p = model.predict(&cat.vector(cat.row(r.id)?));
            min_like.is_none_or(|m| p >= m).then_some(((1.0 - weight) * r.score + weight * p, p, r))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.id.cmp(b.2.id)));
    scored.into_iter().take(k).enumerate().map(|(i, (s, p, r))| (Recommendation { rank: i + 1, score: s, ..r }, p)).collect()
}

/// The unmarked songs (that `keep` accepts) the listener is most likely to like, best first, at most
/// `max_per` per artist and per album (or group) when `max_per > 0`: (row, probability).
pub fn discover(cat: &Catalog, profile: &Profile, model: &TasteModel, k: usize, max_per: usize, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, f32)> {
    use std::collections::HashMap;
    let mut ranked: Vec<(f32, usize)> =
        (0..cat.len()).filter(|&r| profile.mark_of(&cat.songs()[r].id).is_none() && keep(r)).map(|r| (model.predict(&cat.vector(r)), r)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let (mut per_artist, mut per_album): (HashMap<String, usize>, HashMap<String, usize>) = Default::default();
    let mut out = Vec::new();
    for (p, r) in ranked {
        if out.len() == k {
            break;
        }
        let s = &cat.songs()[r];
        if max_per > 0 {
            let artist = s.artist.as_ref().map(|x| x.to_lowercase());
            let album = s.album.as_ref().or(s.group.as_ref()).map(|x| x.to_lowercase());
            let full = |m: &HashMap<String, usize>, key: &Option<String>| key.as_ref().is_some_and(|x| m.get(x).copied().unwrap_or(0) >= max_per);
            if full(&per_artist, &artist) || full(&per_album, &album) {
                continue;
            }
            artist.into_iter().for_each(|a| *per_artist.entry(a).or_default() += 1);
            album.into_iter().for_each(|a| *per_album.entry(a).or_default() += 1);
        }
        out.push((r, p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        crate::normalise(&mut v);
        v
    }

    #[test]
    fn roc_auc_counts_pairs_and_ties() {
        assert_eq!(roc_auc(&[(0.9, true), (0.1, false)]), 1.0);
        assert_eq!(roc_auc(&[(0.1, true), (0.9, false)]), 0.0);
        assert_eq!(roc_auc(&[(0.5, true), (0.5, false)]), 0.5);
        assert!((roc_auc(&[(0.8, true), (0.4, true), (0.6, false), (0.2, false)]) - 0.75).abs() < 1e-12);
        assert!(roc_auc(&[(0.5, true)]).is_nan());
    }

    /// Likes point one way (x), dislikes another (y), with noise; 16-d.
    fn data(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<bool>) {
        let noise = crate::random_unit_vectors(n, 16, seed);
        (0..n)
            .map(|i| {
                let like = i % 3 == 0;
                let mut v: Vec<f32> = noise[i * 16..(i + 1) * 16].iter().map(|x| 0.6 * x).collect();
                v[if like { 0 } else { 1 }] += 1.0;
                (unit(&v), like)
            })
            .unzip()
    }

    #[test]
    fn both_classifiers_learn_a_separable_taste_and_cv_scores_it() {
        let (x, y) = data(60, 3);
        let xs: Vec<&[f32]> = x.iter().map(Vec::as_slice).collect();
        for c in candidates(60) {
            let s = cross_validate(&c, &xs, &y, 5, 1);
            assert!(s.roc_auc > 0.95, "{}: {}", s.classifier, s.roc_auc);
            assert!(s.accuracy > 0.85, "{}: {}", s.classifier, s.accuracy);
            assert_eq!(s.confusion.iter().flatten().sum::<usize>(), 60);
            let m = c.fit(&xs, &y);
            let mut like = vec![0f32; 16];
            like[0] = 1.0;
            let mut dislike = vec![0f32; 16];
            dislike[1] = 1.0;
            assert!(m.predict(&like) > 0.5 && m.predict(&dislike) < 0.5, "{}", c.name());
        }
        // Labels that say nothing: cross-validated AUC near chance.
        let shuffled: Vec<bool> = (0..60).map(|i| (i / 2) % 3 == 0).collect();
        let s = cross_validate(&candidates(60)[1], &xs, &shuffled, 5, 1);
        assert!(s.roc_auc < 0.75, "{}", s.roc_auc);
    }

    fn header() -> StoreHeader {
        StoreHeader {
            format_version: crate::STORE_FORMAT_VERSION,
            model_fingerprint: "fp".into(),
            model_name: "m".into(),
            frontend: serde_json::json!({}),
            labels: vec![],
            dim: 16,
            library_root: "/lib".into(),
            metadata_version: crate::METADATA_VERSION,
        }
    }

    fn song(id: &str) -> SongRecord {
        SongRecord {
            id: id.into(),
            title: id.into(),
            artist: None,
            album: None,
            genre: None,
            group: None,
            duration_s: 1.0,
            from_path: Vec::new(),
            fingerprint: format!("f{id}"),
            size: 1,
            mtime: 1,
            probs: vec![],
            vector: vec![],
            facts: None,
            tags: None,
        }
    }

    #[test]
    fn profiles_mark_save_load_and_refuse_another_model() {
        let (x, y) = data(30, 5);
        let h = header();
        let mut p = Profile::new(&h);
        for (i, (v, &l)) in x.iter().zip(&y).enumerate().take(12) {
            assert_eq!(p.mark(&song(&format!("s{i:02}")), v, if l { Mark::Like } else { Mark::Dislike }), None);
        }
        assert_eq!(p.counts(), (4, 8));
        // Marking again replaces; unmarking removes.
        assert_eq!(p.mark(&song("s01"), &x[1], Mark::Like), Some(Mark::Dislike));
        assert_eq!(p.unmark("s01"), Some(Mark::Like));
        assert_eq!(p.mark_of("s01"), None);
        let dir = tempfile::tempdir().unwrap();
        let pd = dir.path().join("me");
        p.save(&pd).unwrap();
        assert_eq!(Profile::load(&pd, &h).unwrap().unwrap(), p);
        let e = Profile::load(&pd, &StoreHeader { model_fingerprint: "other".into(), ..h.clone() }).unwrap_err().to_string();
        assert!(e.contains("model m") && e.contains("new profile"), "{e}");
        // Training: cross-validated, the best kept, saved and loaded.
        let m = train(&p, &[], 1).unwrap();
        assert_eq!((m.likes, m.dislikes, m.background), (4, 7, 0));
        assert_eq!(m.cv.len(), 4);
        let best = m.cv.iter().map(|s| s.roc_auc).fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(m.cv.iter().find(|s| s.classifier == m.classifier.name()).unwrap().roc_auc, best);
        m.save(&pd).unwrap();
        let back = TasteModel::load(&pd, &h).unwrap().unwrap();
        assert_eq!((&back.classifier, back.cv.len()), (&m.classifier, 4));
        assert!((back.cv[0].roc_auc - m.cv[0].roc_auc).abs() < 1e-12);
    }

    #[test]
    fn likes_alone_use_the_library_as_background_and_no_likes_is_an_error() {
        let (x, y) = data(90, 9);
        let h = header();
        let mut p = Profile::new(&h);
        let likes: Vec<usize> = (0..90).filter(|&i| y[i]).take(5).collect();
        for &i in &likes {
            p.mark(&song(&format!("s{i:02}")), &x[i], Mark::Like);
        }
        let ids: Vec<String> = (0..90).map(|i| format!("s{i:02}")).collect();
        let lib: Vec<(&str, &[f32])> = ids.iter().zip(&x).map(|(id, v)| (id.as_str(), v.as_slice())).collect();
        let m = train(&p, &lib, 2).unwrap();
        assert_eq!(m.background, 20);
        assert!(m.notes[0].contains("no dislikes"));
        // Unmarked likes score above unmarked dislikes.
        let rest: Vec<(f32, bool)> = (0..90).filter(|i| !likes.contains(i)).map(|i| (m.predict(&x[i]), y[i])).collect();
        assert!(roc_auc(&rest) > 0.8, "{}", roc_auc(&rest)); // chance is 0.5; a third of the background are unmarked likes
        let mut none = Profile::new(&h);
        none.mark(&song("a"), &x[1], Mark::Dislike);
        assert!(train(&none, &lib, 1).unwrap_err().to_string().contains("no likes"));
    }
}
