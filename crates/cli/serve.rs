//! `serve`: the web page and JSON API (crates/server), with the store's model for uploads.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use soundalike_index::{AnnParams, Catalog, Method};
use soundalike_server::{AppState, Embedder, ServerConfig};

use crate::args::ServeArgs;
use crate::query::FileEmbedder;

/// The model behind a lock: one upload runs inference at a time (it uses every core anyway).
struct ModelEmbedder(Mutex<FileEmbedder>);

impl Embedder for ModelEmbedder {
    fn embed_file(&self, path: &Path) -> Result<Vec<f32>> {
        let e = self.0.lock().map_err(|_| anyhow::anyhow!("the model is unavailable after an earlier failure"))?;
        e.embed(path)
    }
}

pub fn serve(a: ServeArgs) -> Result<ExitCode> {
    let method = if a.exact { Method::Exact } else { Method::Auto };
    let mut cat = Catalog::open(&a.store, method, &AnnParams::default())?;
    cat.use_genres(a.genre_source);
    let model_dir = a.model.clone().unwrap_or_else(|| Path::new("models").join(&cat.header.model_name));
    let embedder: Option<Arc<dyn Embedder>> = match FileEmbedder::load(&model_dir, &cat.header.model_fingerprint, &cat.header.model_name) {
        Ok(e) => Some(Arc::new(ModelEmbedder(Mutex::new(e)))),
        Err(e) if a.model.is_some() => return Err(e),
        Err(e) => {
            eprintln!("note: uploads are off: {e:#}");
            None
        }
    };
    let cfg = ServerConfig {
        max_upload_bytes: (a.max_upload_mb as usize) << 20,
        allowed_hosts: ServerConfig::hosts_for(&a.host, &a.allow_hosts),
        request_timeout: std::time::Duration::from_secs(a.timeout.max(1)),
        ..ServerConfig::default()
    };
    let songs = cat.len();
    let mut state = AppState::new(cat, embedder, cfg)?;
    if let Some(dir) = &a.profile {
        state = state.with_profile(dir)?;
    }
    soundalike_server::run(state, &a.host, a.port, |addr| {
        println!("serving {songs} songs on http://{addr}/ (Ctrl-C stops)");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(ExitCode::SUCCESS)
}
