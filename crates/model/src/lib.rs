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
pub mod train;

pub use bundle::{load_config, load_model, save_model, LoadedModel, ModelConfig, MODEL_FORMAT_VERSION};
pub use fast::cpu_infer::CpuNet;
pub use fast::{Impl, Layers};
pub use eval::{evaluate, EvalReport};
pub use infer::{l2_normalise, SongEmbedding};
pub use model::{ArchConfig, FoldedNet, Pool, SoundNet};
pub use train::{head_logits, mix_rows, optimizer, patch_target, train, train_step, train_step_multi, BatchTargets, LabelledSong, Progress, relation_loss, relation_targets, supcon_loss, TeacherPatch, TrainJob, TrainNet, TrainOptions, TrainSummary};

pub use burn::prelude::Device;

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing model files failed.
    #[error("{0}")]
    Io(String),
    /// A model or checkpoint that does not match what is asked of it.
    #[error("{0}")]
    Incompatible(String),
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
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
        other => Err(ModelError::Invalid(format!(
            "unknown device {other:?}; available: cpu{}",
            if cfg!(feature = "vulkan") {
                ", wgpu, vulkan"
            } else if cfg!(feature = "wgpu") {
                ", wgpu"
            } else {
                " (rebuild with --features wgpu for a GPU)"
            }
        ))),
    }
}

/// Makes glibc keep freed memory for reuse instead of returning each large tensor buffer to the kernel.
/// By default every buffer over 128 kB is a fresh `mmap`, so each layer of each batch page-faults its
/// output in again (and flushes TLBs on both cores when it is unmapped): measured here, that cost a third
/// of inference time (`scripts/bench_train.sh`: 116 -> 168 tiles/s) and a quarter of training time.
/// Call once at start-up, before threads are spawned. A no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
