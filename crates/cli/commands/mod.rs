//! One module per subcommand: its flags (clap) beside its `run`.

pub mod analyze;
pub mod cache;
pub mod clusters;
pub mod demo;
pub mod embed;
pub mod evaluate;
pub mod export;
pub mod index;
pub mod merge;
pub mod plot;
pub mod push;
pub mod query;
pub mod serve;
pub mod spectrogram;
pub mod split;
pub mod store;
pub mod tags;
pub mod taste;
pub mod train;
pub mod whiten;
