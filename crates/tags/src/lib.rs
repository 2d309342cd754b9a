//! What the musicnn taggers say about a song, without the network: their two vocabularies, a song's tag
//! probabilities ([`SongTags`]), its top tags, and the genre they suggest. The network itself is in
//! `soundalike-model` (`musicnn`); this crate is what the store, the filters and the page need.
//!
//! A tag is a tagger's guess with a probability, never a fact: everything that shows one shows both.
//!
//! ```
//! use soundalike_tags::{resolve, SongTags, TagSource};
//! let mut tags = SongTags::empty(3);
//! tags.set(TagSource::Mtt, "piano", 0.62);
//! tags.set(TagSource::Msd, "jazz", 0.4);
//! assert_eq!(tags.prob(resolve("Piano").unwrap()), Some(0.62));
//! assert_eq!(tags.top(1)[0].tag, "piano");
//! assert_eq!(tags.genre().unwrap().0, "jazz");
//! assert!(resolve("pianno").unwrap_err().contains("piano"));
//! ```
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

/// Tags per model.
pub const N_TAGS: usize = 50;

/// Version of the tagger's settings (models, front end, patch plan: `soundalike_model::musicnn::EMBED_PLAN`):
/// a store whose songs were tagged by another version tags them again on its next `embed` (without
/// re-embedding their vectors). Bump it when any of them changes.
pub const TAGS_VERSION: u32 = 1;

mod vocab;
pub use vocab::{MSD_TAGS, MTT_TAGS};

/// Which tagger a tag comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagSource {
    /// MSD_musicnn (genres, eras, moods).
    Msd,
    /// MTT_musicnn (instruments, voices, tempo).
    Mtt,
}

impl TagSource {
    /// Both, in storage order.
    pub const ALL: [TagSource; 2] = [TagSource::Msd, TagSource::Mtt];

    /// The model's tag names, in output order.
    pub fn vocabulary(self) -> &'static [&'static str; N_TAGS] {
        match self {
            TagSource::Msd => &MSD_TAGS,
            TagSource::Mtt => &MTT_TAGS,
        }
    }

    /// `MSD_musicnn` or `MTT_musicnn`.
    pub fn model_name(self) -> &'static str {
        match self {
            TagSource::Msd => "MSD_musicnn",
            TagSource::Mtt => "MTT_musicnn",
        }
    }
}

/// What a tag describes, for grouping on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagKind {
    /// A genre or style ("jazz", "techno").
    Genre,
    /// A mood or use ("chill", "party", "sad").
    Mood,
    /// An instrument or a voice ("piano", "female vocal", "no vocals").
    Instrument,
    /// An era ("80s", "oldies").
    Era,
    /// Tempo, loudness and the rest ("fast", "quiet", "weird").
    Other,
}

/// The kind of a tag of either vocabulary.
pub fn kind(tag: &str) -> TagKind {
    match tag {
        "00s" | "60s" | "70s" | "80s" | "90s" | "oldies" => TagKind::Era,
        "beautiful" | "Mellow" | "chill" | "chillout" | "sexy" | "catchy" | "party" | "sad" | "happy" | "easy listening" | "soft" => TagKind::Mood,
        "female vocalists" | "male vocalists" | "female vocalist" | "guitar" | "instrumental" | "acoustic" | "strings" | "drums" | "piano" | "violin"
        | "vocal" | "synth" | "female" | "male" | "singing" | "vocals" | "no vocals" | "harpsichord" | "flute" | "woman" | "male vocal" | "no vocal"
        | "sitar" | "man" | "choir" | "voice" | "male voice" | "female vocal" | "harp" | "cello" | "no voice" | "female voice" | "choral" => TagKind::Instrument,
        "slow" | "fast" | "beat" | "beats" | "loud" | "quiet" | "solo" | "weird" => TagKind::Other,
        _ => TagKind::Genre,
    }
}

/// The MSD tags that name a genre a listener knows, for `--genre-source tags`.
pub const GENRE_TAGS: [&str; 30] = [
    "rock", "pop", "alternative", "indie", "electronic", "dance", "alternative rock", "jazz", "metal", "chillout", "classic rock", "soul",
    "indie rock", "electronica", "folk", "punk", "blues", "hard rock", "ambient", "experimental", "Hip-Hop", "country", "easy listening", "funk",
    "electro", "heavy metal", "Progressive rock", "rnb", "indie pop", "House",
];

/// Every tag name of both vocabularies once, sorted case-insensitively.
pub fn all_tags() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = MSD_TAGS.iter().chain(MTT_TAGS.iter()).copied().collect();
    v.sort_by_key(|t| t.to_lowercase());
    v.dedup();
    v
}

/// The vocabulary's spelling of `name` (case and surrounding spaces ignored), if it is a tag: a cheap test
/// for text that may or may not be one (a search box).
pub fn lookup(name: &str) -> Option<&'static str> {
    let want = name.trim();
    MSD_TAGS.iter().chain(MTT_TAGS.iter()).find(|t| t.eq_ignore_ascii_case(want)).copied()
}

/// [`lookup`], or a message naming the closest tags (for a tag the user meant to type).
pub fn resolve(name: &str) -> Result<&'static str, String> {
    if let Some(t) = lookup(name) {
        return Ok(t);
    }
    let want = name.trim().to_lowercase();
    let tags = all_tags();
    let mut close: Vec<(usize, &str)> = tags.iter().map(|t| (edit_distance(&want, &t.to_lowercase()), *t)).collect();
    close.sort();
    let near: Vec<String> = close.iter().take(3).map(|(_, t)| format!("{t:?}")).collect();
    Err(format!("unknown tag {name:?}: the taggers know {} tags (`soundalike tags --list`); closest: {}", tags.len(), near.join(", ")))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// One tag of a song.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TagScore {
    /// The tag, as its vocabulary spells it.
    pub tag: &'static str,
    /// The tagger that gave the probability (the higher one when both know the tag).
    pub source: TagSource,
    /// The tagger's probability (4 decimals in JSON).
    #[serde(serialize_with = "four_decimals")]
    pub prob: f32,
}

fn to4(p: f32) -> f64 {
    (p as f64 * 10_000.0).round() / 10_000.0
}

fn four_decimals<S: serde::Serializer>(p: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(to4(*p))
}

fn all_four_decimals<S: serde::Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|p| to4(*p)))
}

/// A song's tags: each tagger's probabilities, the mean over the patches it read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SongTags {
    /// [`TAGS_VERSION`] of the tagger that produced this.
    pub version: u32,
    /// How many 3-s patches each tagger read.
    pub patches: u32,
    /// MSD_musicnn's probabilities, in [`MSD_TAGS`] order (4 decimals in JSON).
    #[serde(serialize_with = "all_four_decimals")]
    pub msd: Vec<f32>,
    /// MTT_musicnn's probabilities, in [`MTT_TAGS`] order.
    #[serde(serialize_with = "all_four_decimals")]
    pub mtt: Vec<f32>,
}

impl SongTags {
    /// All probabilities zero (tests and builders).
    pub fn empty(patches: u32) -> SongTags {
        SongTags { version: TAGS_VERSION, patches, msd: vec![0.0; N_TAGS], mtt: vec![0.0; N_TAGS] }
    }

    /// Sets one probability (rounded to 4 decimals, as stored).
    pub fn set(&mut self, source: TagSource, tag: &str, prob: f32) {
        if let Some(i) = source.vocabulary().iter().position(|t| *t == tag) {
            self.probs_mut(source)[i] = round4(prob);
        }
    }

    /// From the two taggers' outputs, rounded to 4 decimals (what the store keeps); `None` unless both
    /// have 50 finite values.
    pub fn from_probs(patches: u32, msd: &[f32], mtt: &[f32]) -> Option<SongTags> {
        let ok = |v: &[f32]| v.len() == N_TAGS && v.iter().all(|p| p.is_finite());
        (ok(msd) && ok(mtt)).then(|| SongTags {
            version: TAGS_VERSION,
            patches,
            msd: msd.iter().map(|&p| round4(p)).collect(),
            mtt: mtt.iter().map(|&p| round4(p)).collect(),
        })
    }

    /// One tagger's probabilities.
    pub fn probs(&self, source: TagSource) -> &[f32] {
        match source {
            TagSource::Msd => &self.msd,
            TagSource::Mtt => &self.mtt,
        }
    }

    fn probs_mut(&mut self, source: TagSource) -> &mut Vec<f32> {
        match source {
            TagSource::Msd => &mut self.msd,
            TagSource::Mtt => &mut self.mtt,
        }
    }

    /// Every tag once with its probability (the higher one when both taggers know it), highest first.
    pub fn scores(&self) -> Vec<TagScore> {
        let mut out: Vec<TagScore> = Vec::with_capacity(2 * N_TAGS);
        for source in TagSource::ALL {
            for (tag, &prob) in source.vocabulary().iter().zip(self.probs(source)) {
                match out.iter_mut().find(|s| s.tag == *tag) {
                    Some(s) if s.prob >= prob => {}
                    Some(s) => *s = TagScore { tag, source, prob },
                    None => out.push(TagScore { tag, source, prob }),
                }
            }
        }
        out.sort_by(|a, b| b.prob.total_cmp(&a.prob).then(a.tag.cmp(b.tag)));
        out
    }

    /// The `k` most probable tags.
    pub fn top(&self, k: usize) -> Vec<TagScore> {
        let mut s = self.scores();
        s.truncate(k);
        s
    }

    /// The probability of a tag (as [`resolve`] spells it): the higher of the taggers that know it.
    pub fn prob(&self, tag: &str) -> Option<f32> {
        TagSource::ALL
            .iter()
            .filter_map(|&s| s.vocabulary().iter().position(|t| *t == tag).and_then(|i| self.probs(s).get(i).copied()))
            .reduce(f32::max)
    }

    /// The most probable of the [`GENRE_TAGS`], with its probability.
    pub fn genre(&self) -> Option<(&'static str, f32)> {
        GENRE_TAGS.iter().filter_map(|&g| self.prob(g).map(|p| (g, p))).max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

fn round4(p: f32) -> f32 {
    (p * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_have_fifty_distinct_tags_each() {
        for s in TagSource::ALL {
            let mut v = s.vocabulary().to_vec();
            v.sort();
            v.dedup();
            assert_eq!(v.len(), N_TAGS, "{s:?}");
        }
        // Shared names ("rock", "electronic", "guitar", ...) are listed once.
        let all = all_tags();
        assert!(all.len() < 2 * N_TAGS && all.len() > N_TAGS);
        assert!(all.contains(&"female vocal") && all.contains(&"80s"));
    }

    #[test]
    fn a_shared_tag_takes_the_higher_probability() {
        let mut t = SongTags::empty(1);
        t.set(TagSource::Msd, "rock", 0.2);
        t.set(TagSource::Mtt, "rock", 0.7);
        assert_eq!(t.prob("rock"), Some(0.7));
        let s = t.scores();
        assert_eq!(s.iter().filter(|s| s.tag == "rock").count(), 1);
        assert_eq!((s[0].tag, s[0].source), ("rock", TagSource::Mtt));
        assert_eq!(t.prob("no such tag"), None);
    }

    #[test]
    fn resolve_is_case_insensitive_and_suggests() {
        assert_eq!(resolve(" hip-hop ").unwrap(), "Hip-Hop");
        assert_eq!(lookup("FEMALE vocal"), Some("female vocal"));
        assert_eq!(lookup("female"), Some("female"));
        assert_eq!(lookup("song 1"), None);
        assert_eq!(resolve("MELLOW").unwrap(), "Mellow");
        let e = resolve("femal vocal").unwrap_err();
        assert!(e.contains("\"female vocal\""), "{e}");
    }

    #[test]
    fn from_probs_refuses_nan_and_wrong_lengths() {
        let ok = vec![0.123456; N_TAGS];
        let t = SongTags::from_probs(2, &ok, &ok).unwrap();
        assert_eq!(t.msd[0], 0.1235);
        let mut bad = ok.clone();
        bad[3] = f32::NAN;
        assert!(SongTags::from_probs(2, &bad, &ok).is_none());
        assert!(SongTags::from_probs(2, &ok[..10], &ok).is_none());
    }

    #[test]
    fn genre_is_the_best_genre_tag_not_a_mood_or_era() {
        let mut t = SongTags::empty(1);
        t.set(TagSource::Msd, "80s", 0.9);
        t.set(TagSource::Msd, "chill", 0.8);
        t.set(TagSource::Msd, "funk", 0.3);
        t.set(TagSource::Msd, "soul", 0.2);
        assert_eq!(t.genre(), Some(("funk", 0.3)));
        assert_eq!(kind("80s"), TagKind::Era);
        assert_eq!(kind("piano"), TagKind::Instrument);
        assert_eq!(kind("techno"), TagKind::Genre);
    }

    #[test]
    fn stored_form_round_trips() {
        let t = SongTags::from_probs(4, &[0.5; N_TAGS], &[0.25; N_TAGS]).unwrap();
        let back: SongTags = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
