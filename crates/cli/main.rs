//! `soundalike`: what sounds like this song? One binary, subcommands for each job.

mod args;
mod clusters;
mod db;
mod demo;
mod embed;
mod embedder;
mod output;
mod plots;
mod query;
mod serve;
mod spectrogram;
mod taste;
mod train;
mod util;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    soundalike_model::tune_allocator();
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Spectrogram(a) => spectrogram::spectrogram(a),
        args::Command::Cache(a) => train::cache(a),
        args::Command::Split(a) => train::split(a),
        args::Command::Train(a) => train::train(*a),
        args::Command::Evaluate(a) => train::evaluate(a),
        args::Command::Plot(a) => plots::plot(a),
        args::Command::Embed(a) => embed::embed(a),
        args::Command::Merge(a) => embed::merge(a),
        args::Command::Export(a) => embed::export(a),
        args::Command::Index(a) => query::index(a),
        args::Command::Query(a) => query::query(a),
        args::Command::Demo(a) => demo::demo(a),
        args::Command::Serve(a) => serve::serve(a),
        args::Command::Store(a) => embed::store(a),
        args::Command::Clusters(a) => clusters::clusters(a),
        args::Command::Taste(a) => taste::taste(a),
        args::Command::Push(a) => db::push(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soundalike: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
