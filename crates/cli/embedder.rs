//! The store's model, loaded to embed a file that is not in the library: `query --file`, `serve` uploads.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// The store's model, loaded to embed files that are not in the library (`query --file`, `serve` uploads).
pub struct FileEmbedder {
    model: soundalike_model::LoadedModel,
    device: soundalike_model::Device,
}

impl FileEmbedder {
    /// Loads the model at `model_dir` and checks it is the one that made the store.
    pub fn load(model_dir: &Path, store_fingerprint: &str, store_model: &str) -> Result<FileEmbedder> {
        let device = soundalike_model::device_from_name("cpu")?;
        let model = soundalike_model::load_model(model_dir, &device)
            .with_context(|| format!("embedding a new file needs the store's model; pass --model (tried {})", model_dir.display()))?;
        if model.config.fingerprint != store_fingerprint {
            bail!(
                "model {} ({}) is not the one that made this store ({store_model} {store_fingerprint}); vectors would not be comparable",
                model_dir.display(),
                model.config.fingerprint,
            );
        }
        Ok(FileEmbedder { model, device })
    }

    /// The file's song vector (L2-normalised).
    pub fn embed(&self, file: &Path) -> Result<Vec<f32>> {
        let extras = self.model.analysis_extras(soundalike_audio::Extras::default());
        let mut an = soundalike_audio::analyze_file_with(file, &self.model.config.frontend, &extras)?;
        Ok(self.model.embed_analysis(&mut an, &self.device).0.vector)
    }
}

