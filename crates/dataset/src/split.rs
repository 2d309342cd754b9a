//! Song-level, stratified, seeded splits, with whole groups held out on request.

use std::collections::{BTreeMap, BTreeSet};

use crate::{DatasetError, Result, SplitMix64};

/// Version of the split file format.
pub const SPLIT_FORMAT_VERSION: u32 = 1;

/// Which part a song belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitAssignment {
    /// Used to fit weights.
    Train,
    /// Early stopping and model selection.
    Val,
    /// Reported once, at the end.
    Test,
    /// Songs of held-out groups: never seen in training.
    Holdout,
}

/// Split settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SplitOptions {
    /// Seed of the shuffle.
    pub seed: u64,
    /// Fraction of each label's songs for validation.
    pub val_fraction: f64,
    /// Fraction of each label's songs for test.
    pub test_fraction: f64,
    /// Groups whose songs all go to `Holdout`.
    pub holdout_groups: Vec<String>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions { seed: 42, val_fraction: 0.15, test_fraction: 0.15, holdout_groups: vec![] }
    }
}

/// The split of a data set: song id -> part. Serialised to JSON and read by training and evaluation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Splits {
    /// [`SPLIT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Settings used.
    pub seed: u64,
    /// Held-out groups.
    pub holdout_groups: Vec<String>,
    /// Song id -> part, sorted by id.
    pub assignment: BTreeMap<String, SplitAssignment>,
}

impl Splits {
    /// Ids in `part`, sorted.
    pub fn ids(&self, part: SplitAssignment) -> Vec<&str> {
        self.assignment.iter().filter(|(_, &p)| p == part).map(|(k, _)| k.as_str()).collect()
    }
}

/// Splits songs `(id, label, group)` by song, stratified by label: in each label the songs are sorted by
/// id, shuffled with the seed, and the first `round(n * test)` go to test, the next `round(n * val)` to
/// validation (each at least 1 when the label has 3+ songs), the rest to train. Songs of a held-out group go
/// to `Holdout` whatever their label. ([`split_songs_by_unit`] with no units.)
pub fn split_songs(songs: &[(String, String, Option<String>)], opts: &SplitOptions) -> Result<Splits> {
    let songs: Vec<_> = songs.iter().map(|(id, label, group)| (id.clone(), label.clone(), group.clone(), None)).collect();
    split_songs_by_unit(&songs, opts)
}

/// [`split_songs`] over units of songs `(id, label, group, unit)`: songs sharing a unit (the renderings or
/// the windows of one work) always land in the same part, so no test song has a sibling in training. A
/// held-out group's songs go to `Holdout` one by one; the rest are gathered by unit (a song with no unit is
/// a unit of its own, under its id), each unit takes the label of its first song in id order, the units are
/// split as [`split_songs`] describes for songs, and every song takes its unit's part.
pub fn split_songs_by_unit(songs: &[(String, String, Option<String>, Option<String>)], opts: &SplitOptions) -> Result<Splits> {
    if !(0.0..1.0).contains(&(opts.val_fraction + opts.test_fraction)) || opts.val_fraction < 0.0 || opts.test_fraction < 0.0 {
        return Err(DatasetError::Invalid("val + test fractions must be in [0, 1)".into()));
    }
    let holdout: BTreeSet<&str> = opts.holdout_groups.iter().map(String::as_str).collect();
    let mut sorted: Vec<&(String, String, Option<String>, Option<String>)> = songs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut assignment = BTreeMap::new();
    // Unit key -> (label, member ids). Units are keyed apart from song ids so that a unit named like a
    // song cannot merge with it.
    let mut units: BTreeMap<String, (&str, Vec<&str>)> = BTreeMap::new();
    for (k, (id, label, group, unit)) in sorted.iter().enumerate() {
        if k > 0 && sorted[k - 1].0 == *id {
            return Err(DatasetError::Invalid(format!("duplicate song id {id}")));
        }
        if group.as_deref().is_some_and(|g| holdout.contains(g)) {
            assignment.insert(id.clone(), SplitAssignment::Holdout);
            continue;
        }
        let key = match unit {
            Some(u) => format!("\u{1}{u}"),
            None => id.clone(),
        };
        units.entry(key).or_insert_with(|| (label.as_str(), Vec::new())).1.push(id.as_str());
    }
    let mut by_label: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, (label, _)) in &units {
        by_label.entry(label).or_default().push(key.as_str());
    }
    for (label, mut keys) in by_label {
        // Units come sorted by key (BTreeMap order). Seed per label so adding a label does not reshuffle the others.
        let mut rng = SplitMix64(opts.seed ^ blake3::hash(label.as_bytes()).as_bytes()[..8].iter().fold(0u64, |a, &b| a << 8 | b as u64));
        rng.shuffle(&mut keys);
        let n = keys.len();
        let at_least = |x: f64| if n >= 3 && x > 0.0 { ((n as f64 * x).round() as usize).max(1) } else { (n as f64 * x).round() as usize };
        let n_test = at_least(opts.test_fraction);
        let n_val = at_least(opts.val_fraction).min(n - n_test.min(n));
        for (i, key) in keys.into_iter().enumerate() {
            let part = if i < n_test {
                SplitAssignment::Test
            } else if i < n_test + n_val {
                SplitAssignment::Val
            } else {
                SplitAssignment::Train
            };
            for id in &units[key].1 {
                assignment.insert(id.to_string(), part);
            }
        }
    }
    Ok(Splits { format_version: SPLIT_FORMAT_VERSION, seed: opts.seed, holdout_groups: opts.holdout_groups.clone(), assignment })
}
