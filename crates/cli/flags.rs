//! Flag groups more than one command takes (labels, split, ANN settings, presets, genre source).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use soundalike_recommend::AnnParams;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum Preset {
    /// 128 mel bands, 128-frame tiles (about 3 s), no overlap.
    Default,
    /// The 2017 original: 256 bands, 256-frame tiles (about 5.9 s), no overlap.
    Original2017,
}

#[derive(Args, Debug, Clone)]
pub struct LabelArgs {
    /// CSV with one row per song (keyed by relative path or id).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Column of the CSV holding the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Column naming a group (soundtrack, artist) for hold-out splits and `--exclude-same-group`.
    #[arg(long)]
    pub group_column: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SplitOpts {
    /// Seed of the split (and of training).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fraction of each label's songs for validation.
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// Fraction of each label's songs for test.
    #[arg(long, default_value_t = 0.15)]
    pub test_fraction: f64,
    /// Hold out every song of this group (repeatable): evaluated as never-seen music.
    #[arg(long = "holdout-group")]
    pub holdout_groups: Vec<String>,
    /// Column of the labels CSV naming the work a song belongs to (e.g. `work`: the renderings of one MIDI
    /// file, the windows of one track): songs sharing a value land in the same part, so no test song has a
    /// sibling in training.
    #[arg(long)]
    pub split_column: Option<String>,
}

#[derive(Args, Debug)]
pub struct AnnArgs {
    /// HNSW links per node.
    #[arg(long, default_value_t = 24)]
    pub m: usize,
    /// HNSW build candidate list.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// HNSW search candidate list.
    #[arg(long, default_value_t = 64)]
    pub ef_search: usize,
    /// Who builds the graph: soundalike's own construction, or hnsw_rs (slower; same search and file).
    #[arg(long, value_enum, default_value = "native")]
    pub builder: BuilderArg,
    /// How the index keeps its copy of the vectors: i16 (16-bit fixed point with a scale per vector: about
    /// half the memory, faster; cosines within ~1e-4 of f32) or f32. The store always keeps f32, and
    /// `--exact` searches those.
    #[arg(long, value_enum, default_value = "i16")]
    pub vectors: PrecisionArg,
}

/// `--vectors` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PrecisionArg {
    F32,
    I16,
}

impl From<PrecisionArg> for soundalike_recommend::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => soundalike_recommend::Precision::F32,
            PrecisionArg::I16 => soundalike_recommend::Precision::I16,
        }
    }
}

/// `--builder` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BuilderArg {
    Native,
    HnswRs,
}

impl From<BuilderArg> for soundalike_recommend::Builder {
    fn from(b: BuilderArg) -> Self {
        match b {
            BuilderArg::Native => soundalike_recommend::Builder::Native,
            BuilderArg::HnswRs => soundalike_recommend::Builder::HnswRs,
        }
    }
}

pub fn parse_genre_source(s: &str) -> Result<soundalike_recommend::GenreSource, String> {
    s.parse()
}

impl AnnArgs {
    /// The HNSW settings these flags name.
    pub fn params(&self) -> AnnParams {
        AnnParams { m: self.m, ef_construction: self.ef_construction, ef_search: self.ef_search, builder: self.builder.into(), vectors: self.vectors.into() }
    }
}
