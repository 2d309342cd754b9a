//! The soundalike model: a burn CNN over log-mel tiles whose 128-d penultimate layer is the song
//! embedding. The only crate of the workspace that depends on burn.
//!
//! Layout follows burn's examples: [`model`] (the network and its layers), [`data`] (tiles -> tensors),
//! [`train`] (loop, heads, checkpoints), [`eval`] (honest metrics), [`infer`] (embeddings), [`bundle`] (the
//! model directory). [`fast`] holds the speed paths (CPU training kernels, the fused CPU inference path, the
//! GPU training convolution) and [`fast::Layers`], the one switch that forces a layer implementation.
//!
//! ```no_run
//! let device = soundalike_model::Device::flex();
//! let model = soundalike_model::load_model(std::path::Path::new("models/default"), &device).unwrap();
//! let mel = soundalike_audio::analyze_file(std::path::Path::new("song.mp3"), &model.config.frontend).unwrap().mel;
//! let song = model.embed_mel(&mel, &device); // 128-d, unit length
//! assert_eq!(song.vector.len(), 128);
//! ```
#![warn(missing_docs)]

pub mod bundle;
pub mod data;
pub mod eval;
pub mod fast;
pub mod infer;
pub mod model;
pub mod musicnn;
pub mod train;

pub use bundle::{config_json, load_config, load_model, load_model_bytes, read_weights, save_model, set_song_whitening, with_song_whitening, LoadedModel, ModelConfig, MODEL_FORMAT_VERSION};
pub use fast::cpu_infer::CpuNet;
pub use fast::{Impl, Layers};
pub use eval::{evaluate, EvalReport};
pub use infer::{l2_normalise, power_normalise, SongEmbedding};
pub use model::{ArchConfig, ContextSource, FoldedNet, Pool, SongContext, SoundNet, CONTEXT_CLIP};
pub use musicnn::{Musicnn, PatchOutput, PatchPlan};
pub use train::{average_into, head_logits, learning_rate_at, mix_rows, optimizer, patch_target, train, train_step, train_step_multi, BatchTargets, LabelledSong, Progress, relation_loss, relation_targets, supcon_loss, TeacherPatch, TrainJob, TrainNet, TrainOptions, TrainSummary};

pub use burn::prelude::Device;
pub use soundalike_vectors::Whitening;

/// Errors of the model crate: cases a caller can act on, each naming the file it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// No model at this path (its `config.json` is missing): a mistyped path, most likely.
    #[error("{}: no soundalike model here (no config.json)", .0.display())]
    NotFound(std::path::PathBuf),
    /// Reading or writing a model file failed.
    #[error("{}: {}", .path.display(), .source)]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A model file that is not what it should be: not a model config, another format version, settings
    /// that do not validate, weights that do not load.
    #[error("{}: {reason}", .path.display())]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Files that do not belong together (weights that are not the config's).
    #[error("{}: {reason}", .path.display())]
    Mismatch {
        /// The file.
        path: std::path::PathBuf,
        /// What does not match.
        reason: String,
    },
    /// Training diverged (a loss that is not finite).
    #[error("training diverged at epoch {epoch} step {step} (loss {loss})")]
    Diverged {
        /// The epoch (from 1).
        epoch: usize,
        /// The step within it (from 1).
        step: usize,
        /// The loss.
        loss: f32,
    },
    /// No compute device of that name in this build.
    #[error("unknown device {name:?}; available: {available}")]
    UnknownDevice {
        /// The name asked for.
        name: String,
        /// The names this build has.
        available: String,
    },
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
}

impl ModelError {
    /// An I/O error about `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> ModelError {
        ModelError::Io { path: path.to_path_buf(), source }
    }

    /// A file at `path` that is not what it should be.
    pub fn format(path: &std::path::Path, reason: impl std::fmt::Display) -> ModelError {
        ModelError::Format { path: path.to_path_buf(), reason: reason.to_string() }
    }
}

/// Result alias.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Whether `device` is the CPU (burn's flex backend), with or without autodiff: where inference runs the
/// fused path ([`CpuNet`]) and the layers pick their CPU implementations ([`fast::Layers`]).
pub fn is_cpu(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// Picks the compute device by name: `cpu` (burn's flex backend, the default) or, when built with the
/// `wgpu` feature, `wgpu` (any GPU through Vulkan/Metal/DX12), or with the `vulkan` feature also `vulkan`
/// (wgpu pinned to Vulkan, shaders compiled to SPIR-V).
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" | "gpu" => Ok(Device::wgpu(Default::default())),
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(Default::default())),
        other => Err(ModelError::UnknownDevice {
            name: other.to_string(),
            available: if cfg!(feature = "vulkan") {
                "cpu, wgpu, vulkan"
            } else if cfg!(feature = "wgpu") {
                "cpu, wgpu"
            } else {
                "cpu (a build with the wgpu feature adds the GPU)"
            }
            .to_string(),
        }),
    }
}

/// Makes glibc keep freed memory for reuse instead of returning each large tensor buffer to the kernel.
/// By default every buffer over 128 kB is a fresh `mmap`, so each layer of each batch page-faults its
/// output in again (and flushes TLBs on both cores when it is unmapped): measured here, that cost a third
/// of inference time (`scripts/bench/bench_train.sh`: 116 -> 168 tiles/s) and a quarter of training time.
/// Call once at start-up, before threads are spawned. A no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
