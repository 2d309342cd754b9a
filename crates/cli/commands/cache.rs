//! `cache`: the spectrogram cache of a library, computed in parallel and resumable.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use soundalike_dataset::SpectrogramCache;

use crate::flags::Preset;
use crate::training::build_cache;
use crate::util::frontend;

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

pub fn run(a: CacheArgs) -> Result<ExitCode> {
    let files = soundalike_dataset::scan_library(&a.library)?;
    let cache = SpectrogramCache::open(&a.cache, &frontend(a.preset))?;
    let fps = build_cache(&cache, &files);
    Ok(if fps.iter().any(Option::is_none) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
