//! Command-line flags (clap). Validation into config structs happens in each command module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What sounds like this song? Log-mel CNN embeddings and HNSW search over your music library.
#[derive(Parser, Debug)]
#[command(name = "soundalike", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compute a file's log-mel spectrogram (librosa defaults) and write it as .npy and/or PNG.
    Spectrogram(SpectrogramArgs),
    /// Precompute the spectrogram cache of a library (parallel, resumable).
    Cache(CacheArgs),
    /// Write a song-level, stratified, seeded train/val/test split of a library.
    Split(SplitArgs),
    /// Train the CNN classifier on a labelled library and write a model folder.
    Train(Box<TrainArgs>),
    /// Evaluate a model on a labelled library's test split (and held-out groups).
    Evaluate(EvaluateArgs),
    /// Redraw a model's training.png and confusion.png from its metrics.json.
    Plot(PlotArgs),
    /// Embed every song of a library into a store (incremental, resumable, shardable).
    Embed(EmbedArgs),
    /// Merge shard stores made by `embed --shard` into one store.
    Merge(MergeArgs),
    /// Export a store as CSV, JSON lines or .npy for Python or a database.
    Export(ExportArgs),
    /// Build or update the HNSW index of a store.
    Index(IndexArgs),
    /// Recommend songs that sound like a song, a new file, or a playlist.
    Query(QueryArgs),
    /// The quickstart: embed the bundled tiny set with the shipped model, index it and print recommendations.
    Demo(DemoArgs),
    /// Web page and JSON API over a store: search, recommendations with previews, graph and map.
    Serve(ServeArgs),
    /// Group a store's songs into clusters (k-means on the song vectors), with a summary of each, an elbow
    /// plot and a map; `query --same-cluster` and the web page use them.
    Clusters(ClustersArgs),
    /// A listener's taste: mark songs liked or disliked, train a model of it, then clean playlists,
    /// discover songs and re-rank recommendations with it.
    Taste(TasteArgs),
    /// Write a store's songs and vectors into PostgreSQL + pgvector (incremental, one transaction), for
    /// `query --db` and many stateless servers.
    Push(PushArgs),
    /// Look after a store: `store check STORE` reports damaged journal lines, `--repair` keeps every valid
    /// record and moves the damage aside.
    Store(StoreArgs),
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Store folder.
    pub store: PathBuf,
    /// PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE (default: $SOUNDALIKE_DB, then
    /// $DATABASE_URL); the password is never printed.
    #[arg(long)]
    pub db: Option<String>,
    /// How the table keeps the vectors: half (halfvec, 2 bytes a value) or full (vector, 4 bytes). Fixed by
    /// the first push.
    #[arg(long, default_value = "half", value_parser = ["half", "full"])]
    pub precision: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ClustersArgs {
    /// Store folder (from `soundalike embed`).
    pub store: PathBuf,
    /// Number of clusters (default: chosen over --k-range).
    #[arg(long, conflicts_with = "k_range")]
    pub k: Option<usize>,
    /// Range of k to choose from, `LO..HI` (both included): k-means for each, then the elbow of the inertia
    /// curve unless the mean silhouette is clearly better elsewhere. Default 2..20, capped at the number of
    /// songs.
    #[arg(long, value_parser = parse_k_range)]
    pub k_range: Option<std::ops::RangeInclusive<usize>>,
    /// Seed (the same seed gives the same clusters).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent k-means runs per k; the lowest inertia is kept.
    #[arg(long, default_value_t = 4)]
    pub restarts: usize,
    /// Print the existing clusters of the store instead of fitting new ones.
    #[arg(long, conflicts_with_all = ["k", "k_range"])]
    pub show: bool,
    /// Print JSON (the summaries and how k was chosen) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Do not draw elbow.png and clusters.png.
    #[arg(long)]
    pub no_plots: bool,
    /// When another process is writing the store, wait for it to finish instead of stopping.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct TasteArgs {
    #[command(subcommand)]
    pub cmd: TasteCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TasteCommand {
    /// Mark songs as liked or disliked (by id, path, or text in the title), from flags or a file.
    Mark(TasteMarkArgs),
    /// Train the taste model: logistic regression and a k-NN vote compared by cross-validation, the
    /// better kept; accuracy, precision, recall, ROC AUC and the confusion matrix printed and saved
    /// (PROFILE/taste.json, PROFILE/taste.png).
    Train(TasteTrainArgs),
    /// Drop the songs of a playlist (M3U or a plain list of paths) the listener would likely dislike.
    Filter(TasteFilterArgs),
    /// Songs the listener has not marked that they are most likely to like.
    Discover(TasteDiscoverArgs),
}

#[derive(Args, Debug)]
pub struct TasteMarkArgs {
    /// Profile folder (created on first use; one per listener).
    pub profile: PathBuf,
    /// Store the songs are in.
    #[arg(long)]
    pub store: PathBuf,
    /// A song they like (repeatable).
    #[arg(long = "like")]
    pub likes: Vec<String>,
    /// A song they dislike (repeatable).
    #[arg(long = "dislike")]
    pub dislikes: Vec<String>,
    /// Forget a song's mark (repeatable).
    #[arg(long = "unmark")]
    pub unmarks: Vec<String>,
    /// A file of marks: CSV with a `song` (or `id`, `path`, `title`) and a `mark` column (like/dislike),
    /// or an M3U / plain list of paths marked as `--as` says.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// The mark for every song of a playlist given with --from.
    #[arg(long = "as", value_parser = parse_mark)]
    pub as_mark: Option<soundalike_recommend::Mark>,
    /// When another process is changing the profile, wait for it instead of stopping.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct TasteTrainArgs {
    /// Profile folder.
    pub profile: PathBuf,
    /// Store the songs are in (supplies background songs when there are no dislikes).
    #[arg(long)]
    pub store: PathBuf,
    /// Seed of the cross-validation folds and background draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not draw taste.png.
    #[arg(long)]
    pub no_plots: bool,
}

#[derive(Args, Debug)]
pub struct TasteFilterArgs {
    /// Profile folder.
    pub profile: PathBuf,
    /// Playlist (.m3u, .m3u8 or a text file with one path per line).
    pub playlist: PathBuf,
    /// Store the songs are in.
    #[arg(long)]
    pub store: PathBuf,
    /// The cleaned playlist.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep songs at least this likely to be liked.
    #[arg(long, default_value_t = 0.5)]
    pub min_like: f32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TasteDiscoverArgs {
    /// Profile folder.
    pub profile: PathBuf,
    /// Store the songs are in.
    #[arg(long)]
    pub store: PathBuf,
    /// How many.
    #[arg(short, long, default_value_t = 30)]
    pub k: usize,
    /// Only this genre.
    #[arg(long, conflicts_with = "other_genres")]
    pub genre: Option<String>,
    /// Only genres none of their liked songs has (explore).
    #[arg(long)]
    pub other_genres: bool,
    /// At most this many songs per artist, and per album (0: no limit).
    #[arg(long, default_value_t = 2)]
    pub max_per_artist: usize,
    /// Also write the list as an M3U playlist.
    #[arg(long)]
    pub m3u: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Where a song's genre comes from (tag, predicted or either).
    #[arg(long, default_value = "either", value_parser = parse_genre_source)]
    pub genre_source: soundalike_recommend::GenreSource,
}

fn parse_mark(s: &str) -> Result<soundalike_recommend::Mark, String> {
    s.parse()
}

fn parse_k_range(s: &str) -> Result<std::ops::RangeInclusive<usize>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("{s:?}: write the range as LO..HI, e.g. 2..40"))?;
    let num = |x: &str| x.trim().trim_start_matches('=').parse::<usize>().map_err(|_| format!("{s:?}: {x:?} is not a whole number"));
    Ok(num(a)?..=num(b)?)
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub cmd: StoreCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Check every line of a store's journal; with --repair, rewrite it with the valid records only (the
    /// damaged bytes go to damaged-<time>.jsonl in the store; the next `embed` re-embeds what they held).
    Check {
        /// Store folder.
        store: PathBuf,
        /// Rewrite the journal without the damaged lines (takes the writer's lock).
        #[arg(long)]
        repair: bool,
        /// With --repair: wait for another writer instead of stopping.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum Preset {
    /// 128 mel bands, 128-frame tiles (about 3 s), no overlap.
    Default,
    /// The 2017 original: 256 bands, 256-frame tiles (about 5.9 s), no overlap.
    Original2017,
}

#[derive(Args, Debug)]
pub struct SpectrogramArgs {
    /// Audio file (mp3, ogg, flac, wav, m4a...).
    pub file: PathBuf,
    /// Write the log-mel matrix as float32 .npy, shape [n_mels, frames].
    #[arg(long)]
    pub npy: Option<PathBuf>,
    /// Write the whole spectrogram as a greyscale PNG.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Write one PNG per tile into this folder.
    #[arg(long)]
    pub tiles_png: Option<PathBuf>,
    /// Front-end preset.
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
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

#[derive(Args, Debug)]
pub struct CacheArgs {
    /// Library folder.
    pub library: PathBuf,
    /// Cache folder.
    #[arg(long, default_value = ".soundalike-cache")]
    pub cache: PathBuf,
    /// Front-end preset.
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
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
pub struct SplitArgs {
    /// Library folder.
    pub library: PathBuf,
    #[command(flatten)]
    pub labels: LabelArgs,
    #[command(flatten)]
    pub split: SplitOpts,
    /// Output JSON.
    #[arg(long)]
    pub out: PathBuf,
}

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

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// Model folder.
    pub model: PathBuf,
    /// Library folder.
    pub library: PathBuf,
    #[command(flatten)]
    pub labels: LabelArgs,
    /// Split file (default: the model's split.json).
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Cache folder.
    #[arg(long, default_value = ".soundalike-cache")]
    pub cache: PathBuf,
    /// Compute device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Model folder.
    pub model: PathBuf,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Library folder.
    pub library: PathBuf,
    /// Model folder.
    #[arg(long, default_value = "models/default")]
    pub model: PathBuf,
    /// Store folder.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub labels: LabelArgs,
    /// Embed only shard K of N (`K/N`, K from 0), for N machines; join with `soundalike merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Compute device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also build the HNSW index afterwards.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub index: bool,
    /// Songs decoded per batch (memory is bounded by this times the longest song).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// When another process is writing the store, wait for it to finish instead of stopping.
    #[arg(long)]
    pub wait: bool,
    /// Allow removing songs whose files are gone when the library is empty or more than
    /// `PRUNE_GUARD` (20%) of the store would go (an unmounted drive or a wrong folder looks like that).
    #[arg(long)]
    pub prune: bool,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Output store.
    #[arg(long)]
    pub out: PathBuf,
    /// Shard stores.
    #[arg(required = true)]
    pub stores: Vec<PathBuf>,
    /// When another process is writing the store, wait for it to finish instead of stopping.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
    Npy,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Store folder.
    pub store: PathBuf,
    /// Format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output file (for npy, ids go to OUT.ids.txt beside it); `-` writes csv or jsonl to standard output.
    #[arg(long)]
    pub out: PathBuf,
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

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Store folder.
    pub store: PathBuf,
    /// Build the graph from scratch instead of updating the saved one (inserts new songs, tombstones
    /// removed ones; rebuilt anyway once a quarter of it is tombstones).
    #[arg(long)]
    pub rebuild: bool,
    #[command(flatten)]
    pub ann: AnnArgs,
    /// When another process is writing the store, wait for it to finish instead of stopping.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Store folder (or, without one, the PostgreSQL database of --db, $SOUNDALIKE_DB or $DATABASE_URL).
    pub store: Option<PathBuf>,
    /// Answer from PostgreSQL + pgvector (a database `soundalike push` filled):
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(long, conflicts_with_all = ["store", "same_cluster", "cluster", "random_from_cluster", "taste", "exact", "ann_index"])]
    pub db: Option<String>,
    /// Query song: id, path, or text matched against title/artist/path. Repeat for a playlist.
    #[arg(long = "song")]
    pub songs: Vec<String>,
    /// Query with an audio file that is not in the library.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Model folder (needed with --file; default: the store's model from models/).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Number of recommendations.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Only recommend songs of this genre.
    #[arg(long)]
    pub genre: Option<String>,
    /// Only recommend songs sharing the query's genre.
    #[arg(long)]
    pub same_genre: bool,
    /// Leave out songs by the query's artist.
    #[arg(long)]
    pub exclude_same_artist: bool,
    /// Leave out songs of the query's group (soundtrack, label...).
    #[arg(long)]
    pub exclude_same_group: bool,
    /// At most this many songs per album (and per group when albums are unknown).
    #[arg(long)]
    pub max_per_album: Option<usize>,
    /// Only recommend songs in the query's cluster (see `soundalike clusters`).
    #[arg(long, conflicts_with = "cluster")]
    pub same_cluster: bool,
    /// Only recommend songs in cluster N (see `soundalike clusters`); works without a query song too.
    #[arg(long)]
    pub cluster: Option<usize>,
    /// Instead of the nearest songs, k songs drawn at random from the query's cluster (or --cluster N).
    #[arg(long)]
    pub random_from_cluster: bool,
    /// Seed of --random-from-cluster (default: a new draw each time).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Re-rank by a listener's taste (a profile folder from `soundalike taste`).
    #[arg(long)]
    pub taste: Option<PathBuf>,
    /// With --taste: the score is (1 - w) * similarity + w * probability of liking.
    #[arg(long, default_value_t = 0.5)]
    pub taste_weight: f32,
    /// With --taste: leave out songs less likely than this to be liked.
    #[arg(long)]
    pub min_like: Option<f32>,
    /// Brute-force search instead of the HNSW index.
    #[arg(long, conflicts_with = "ann_index")]
    pub exact: bool,
    /// Use the HNSW index even for a small library (by default under 2,000 songs are searched exactly).
    #[arg(long = "ann")]
    pub ann_index: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ann: AnnArgs,
    /// Where a song's genre comes from for --genre, --same-genre and the tables: `tag` (the genre tag or CSV
    /// column recorded at embed time), `predicted` (the model's predicted genre) or `either` (the tag where
    /// there is one, else the prediction).
    #[arg(long, default_value = "either", value_parser = parse_genre_source)]
    pub genre_source: soundalike_recommend::GenreSource,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Library to embed (default: the bundled tiny set).
    #[arg(long, default_value = "datasets/tiny")]
    pub library: PathBuf,
    /// Model folder.
    #[arg(long, default_value = "models/default")]
    pub model: PathBuf,
    /// Store folder.
    #[arg(long, default_value = "target/demo-store")]
    pub out: PathBuf,
    /// Recommendations per query.
    #[arg(short, long, default_value_t = 5)]
    pub k: usize,
    /// Where a song's genre comes from for --genre, --same-genre and the tables: `tag` (the genre tag or CSV
    /// column recorded at embed time), `predicted` (the model's predicted genre) or `either` (the tag where
    /// there is one, else the prediction).
    #[arg(long, default_value = "either", value_parser = parse_genre_source)]
    pub genre_source: soundalike_recommend::GenreSource,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Store folder (from `soundalike embed`); or, without one, the PostgreSQL database of --db,
    /// $SOUNDALIKE_DB or $DATABASE_URL.
    pub store: Option<PathBuf>,
    /// Serve from PostgreSQL + pgvector (a database `soundalike push` filled): stateless, so several
    /// processes can share one database. Clusters and listener profiles need a store.
    #[arg(long, conflicts_with_all = ["store", "profile", "exact"])]
    pub db: Option<String>,
    /// With --db: connections in this process's pool.
    #[arg(long, default_value_t = 8)]
    pub db_pool: usize,
    /// Model for uploads (default: models/<the store's model name>); without it uploads are off.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. The default serves this machine only; 0.0.0.0 opens it to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Largest upload, in MB (1 to 4096).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_upload_mb: u64,
    /// Another host name the page may be reached by (repeatable; e.g. this machine's name). Serving on a
    /// loopback address, only loopback names are accepted otherwise.
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// Seconds a request may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// A listener's profile folder (see `soundalike taste`; created if absent): the page shows like and
    /// dislike buttons, a "for you" list and a taste ranking, and saves the marks there.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Always brute-force search (default: exact under 2,000 songs, HNSW above).
    #[arg(long)]
    pub exact: bool,
    /// Where a song's genre comes from for --genre, --same-genre and the tables: `tag` (the genre tag or CSV
    /// column recorded at embed time), `predicted` (the model's predicted genre) or `either` (the tag where
    /// there is one, else the prediction).
    #[arg(long, default_value = "either", value_parser = parse_genre_source)]
    pub genre_source: soundalike_recommend::GenreSource,
    /// Follow the store: when `embed`, `index` or `clusters` change it, load it afresh beside the served
    /// data and swap it in, at most once per this many seconds (0: never; serve what was loaded at start).
    #[arg(long, default_value_t = 3.0, conflicts_with = "db")]
    pub reload_every: f64,
}

/// The filters a query's flags ask for around its songs.
pub fn around(a: &QueryArgs) -> soundalike_recommend::Around {
    soundalike_recommend::Around {
        genre: a.genre.clone(),
        same_genre: a.same_genre,
        exclude_same_artist: a.exclude_same_artist,
        exclude_same_group: a.exclude_same_group,
        max_per_album: a.max_per_album,
    }
}

fn parse_genre_source(s: &str) -> Result<soundalike_recommend::GenreSource, String> {
    s.parse()
}

/// `train --pool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolKind {
    Global,
    Time,
    TimeStd,
}
