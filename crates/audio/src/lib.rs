//! The soundalike audio front end: any music file -> mono f32 -> resampled -> librosa-compatible log-mel
//! spectrogram -> fixed-size tiles. No machine-learning dependencies; builds in seconds.
//!
//! ```no_run
//! use soundalike_audio::{analyze_file, FrontendConfig};
//! let cfg = FrontendConfig::default(); // librosa defaults: 22050 Hz, n_fft 2048, hop 512, 128 mels
//! let a = analyze_file(std::path::Path::new("song.mp3"), &cfg)?;
//! let tiles = a.tiles(&cfg); // [n_tiles, 128, 128]
//! println!("{} frames, {} tiles", a.mel.n_frames, tiles.n_tiles);
//! # Ok::<(), soundalike_audio::AudioError>(())
//! ```
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod analyze;
mod config;
pub mod decode;
mod error;
pub mod mel;
pub mod output;
mod tiles;

pub use analyze::{analyze_file, analyze_file_with, analyze_file_with_facts, analyze_samples_with, Analysis, Extras, PowerMel};
pub use soundalike_facts as facts;
pub use config::FrontendConfig;
pub use decode::{decode_mono, read_file_tags, stream_mono, stream_mono_and_source, SourceInfo, StreamResampler, Tags};
pub use error::{AudioError, Result};
pub use mel::{log_mel, LogMel, MelStream};
pub use tiles::{make_tiles, tile_count, Tiles};

/// File extensions treated as audio when scanning a library.
pub const AUDIO_EXTENSIONS: &[&str] =
    &["mp3", "ogg", "oga", "flac", "wav", "wave", "aif", "aiff", "m4a", "mp4", "aac", "caf", "mka", "webm"];
