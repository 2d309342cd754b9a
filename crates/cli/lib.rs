//! The `soundalike` command line as a library: one module per subcommand in `commands/`, each with its
//! flags beside its `run`; flag groups several commands take are in `flags`, what they print in
//! `output`, and drawing in `draw`. The binary (`main.rs`) parses and runs [`Cli`]; the Python bindings
//! (`crates/python`) call the same commands' library functions, so both say the same things.

pub mod commands;
pub mod draw;
pub mod embedder;
pub mod flags;
pub mod hints;
pub mod output;
pub mod training;
pub mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Spectrogram(commands::spectrogram::SpectrogramArgs),
    /// A file's tempo (BPM, with the octave candidates), key (Camelot, Open Key) and loudness (LUFS), without a store.
    Analyze(commands::analyze::AnalyzeArgs),
    /// A file's tags (genre, mood, instrument, era), as the musicnn taggers guess them, without a store.
    Tags(commands::tags::TagsArgs),
    /// Precompute the spectrogram cache of a library (parallel, resumable).
    Cache(commands::cache::CacheArgs),
    /// Write a song-level, stratified, seeded train/val/test split of a library.
    Split(commands::split::SplitArgs),
    /// Train the CNN classifier on a labelled library and write a model folder.
    Train(Box<commands::train::TrainArgs>),
    /// A copy of a model whose song vectors are whitened by a map fitted on a store embedded with it.
    Whiten(commands::whiten::WhitenArgs),
    /// Evaluate a model on a labelled library's test split (and held-out groups).
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Redraw a model's training.png and confusion.png from its metrics.json.
    Plot(commands::plot::PlotArgs),
    /// Embed every song of a library into a store (incremental, resumable, shardable).
    Embed(commands::embed::EmbedArgs),
    /// Merge shard stores made by `embed --shard` into one store.
    Merge(commands::merge::MergeArgs),
    /// Export a store as CSV, JSON lines or .npy for Python or a database.
    Export(commands::export::ExportArgs),
    /// Build or update the HNSW index of a store.
    Index(commands::index::IndexArgs),
    /// Recommend songs that sound like a song, a new file, or a playlist.
    Query(commands::query::QueryArgs),
    /// The quickstart: embed the bundled tiny set with the shipped model, index it and print recommendations.
    Demo(commands::demo::DemoArgs),
    /// Web page and JSON API over a store: search, recommendations with previews, graph and map.
    Serve(commands::serve::ServeArgs),
    /// Group a store's songs into clusters (k-means on the song vectors), with a summary of each, an elbow
    /// plot and a map; `query --same-cluster` and the web page use them.
    Clusters(commands::clusters::ClustersArgs),
    /// A listener's taste: mark songs liked or disliked, train a model of it, then clean playlists,
    /// discover songs and re-rank recommendations with it.
    Taste(commands::taste::TasteArgs),
    /// Write a store's songs and vectors into PostgreSQL + pgvector (incremental, one transaction), for
    /// `query --db` and many stateless servers.
    Push(commands::push::PushArgs),
    /// Look after a store: `store check STORE` reports damaged journal lines, `--repair` keeps every valid
    /// record and moves the damage aside.
    Store(commands::store::StoreArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        use commands::*;
        match self {
            Command::Spectrogram(a) => spectrogram::run(a),
            Command::Analyze(a) => analyze::run(a),
            Command::Tags(a) => tags::run(a),
            Command::Cache(a) => cache::run(a),
            Command::Split(a) => split::run(a),
            Command::Train(a) => train::run(*a),
            Command::Whiten(a) => whiten::run(a),
            Command::Evaluate(a) => evaluate::run(a),
            Command::Plot(a) => plot::run(a),
            Command::Embed(a) => embed::run(a),
            Command::Merge(a) => merge::run(a),
            Command::Export(a) => export::run(a),
            Command::Index(a) => index::run(a),
            Command::Query(a) => query::run(a),
            Command::Demo(a) => demo::run(a),
            Command::Serve(a) => serve::run(a),
            Command::Store(a) => store::run(a),
            Command::Clusters(a) => clusters::run(a),
            Command::Taste(a) => taste::run(a),
            Command::Push(a) => push::run(a),
        }
    }
}

/// The binary: parse the command line, run it, print an error (with a hint where there is one) as exit 2.
pub fn main() -> ExitCode {
    soundalike_model::tune_allocator();
    match Cli::parse().command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soundalike: error: {e:#}");
            if let Some(h) = hints::hint(&e) {
                eprintln!("  hint: {h}");
            }
            ExitCode::from(2)
        }
    }
}
