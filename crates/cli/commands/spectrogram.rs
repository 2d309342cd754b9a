//! `spectrogram`: what the model sees of a file (log-mel as .npy, PNG, and the tiles as PNGs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use soundalike_audio::{analyze_file, output};

use crate::flags::Preset;
use crate::util::frontend;

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

/// `soundalike spectrogram FILE [--npy] [--png] [--tiles-png]`.
pub fn run(a: SpectrogramArgs) -> Result<ExitCode> {
    let cfg = frontend(a.preset);
    let an = analyze_file(&a.file, &cfg)?;
    let tiles = an.tiles(&cfg);
    println!(
        "{}: {:.2} s, {} Hz, {} ch -> log-mel [{} mels x {} frames], {:.1}..{:.1} dB, {} tiles of {} frames{}",
        a.file.display(),
        an.info.duration_s,
        an.info.sample_rate,
        an.info.channels,
        an.mel.n_mels,
        an.mel.n_frames,
        an.mel.min(),
        an.mel.max(),
        tiles.n_tiles,
        cfg.tile_frames,
        if an.info.skipped_packets > 0 { format!(", {} corrupt packets skipped", an.info.skipped_packets) } else { String::new() }
    );
    if let Some(p) = &a.npy {
        output::write_npy(p, &an.mel)?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &a.png {
        output::write_png(p, &an.mel)?;
        println!("wrote {}", p.display());
    }
    if let Some(d) = &a.tiles_png {
        let written = output::write_tile_pngs(d, &tiles)?;
        println!("wrote {} tiles to {}", written.len(), d.display());
    }
    Ok(ExitCode::SUCCESS)
}
