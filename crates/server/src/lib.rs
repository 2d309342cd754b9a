//! `soundalike serve`: a JSON API and a self-contained web page over a song-vector store.
//!
//! No machine-learning dependencies: embedding an uploaded file goes through the [`Embedder`] trait,
//! which the binary implements with the store's model. Everything the page needs (HTML, JS, CSS) is
//! compiled in; nothing is fetched from a CDN.
//!
//! Safety rules: binds to 127.0.0.1 unless told otherwise; audio is served only for songs in the store,
//! only from inside the library folder (symlinks resolved first); uploads and request time are bounded;
//! bad parameters get a 4xx with a JSON `{"error": ...}`, never a panic.
//!
//! ```no_run
//! use soundalike_index::{AnnParams, Catalog, Method};
//! use soundalike_server::{run, AppState, ServerConfig};
//! let cat = Catalog::open(std::path::Path::new("my-store"), Method::Auto, &AnnParams::default()).unwrap();
//! let state = AppState::new(cat, None, ServerConfig::default()).unwrap(); // no model: uploads off
//! run(state, "127.0.0.1", 8080, |addr| println!("http://{addr}/")).unwrap();
//! ```
#![warn(missing_docs)]

mod api;
mod dbserve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use soundalike_index::Catalog;

pub use api::{router, POST_HEADER};
pub use dbserve::{db_router, DbState};
pub use soundalike_index::pca_2d;

/// Turns an audio file that is not in the library into a song vector comparable with the store's.
pub trait Embedder: Send + Sync + 'static {
    /// The file's L2-normalised song vector, or why it cannot be read.
    fn embed_file(&self, path: &Path) -> Result<Vec<f32>, EmbedError>;
}

/// Why an uploaded file could not be embedded (the message names the file and the reason; it is shown to
/// the user, with the upload's own name in place of the temporary file's).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EmbedError(pub String);

/// Limits and sizes.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted upload.
    pub max_upload_bytes: usize,
    /// Time limit for producing a response.
    pub request_timeout: Duration,
    /// Time a client has to send a request's headers (slow-header clients would otherwise hold a
    /// connection open forever).
    pub header_timeout: Duration,
    /// Largest `k` a request may ask for.
    pub max_k: usize,
    /// Uploads embedded at once (each holds a decoded song in memory).
    pub upload_concurrency: usize,
    /// Most points in the library map (a large library is sampled evenly).
    pub map_points: usize,
    /// Most song ids in one `POST /api/similar` (a playlist); duplicates count once.
    pub max_ids: usize,
    /// Host names (without port) a request's `Host` header may carry; `None` accepts any. Serving on a
    /// loopback address, only loopback names (and those given with `--allow-host`) are accepted, so a web
    /// page elsewhere cannot reach the server through DNS rebinding.
    pub allowed_hosts: Option<Vec<String>>,
}

impl ServerConfig {
    /// The host names a server bound to `host` accepts: loopback names plus `extra` when `host` is a
    /// loopback address, any otherwise.
    pub fn hosts_for(host: &str, extra: &[String]) -> Option<Vec<String>> {
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback.then(|| ["localhost", "127.0.0.1", "[::1]", "::1"].iter().map(|s| s.to_string()).chain(extra.iter().map(|s| s.to_ascii_lowercase())).collect())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_upload_bytes: 50 << 20,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_k: 200,
            upload_concurrency: 2,
            map_points: 20_000,
            max_ids: 100,
            allowed_hosts: ServerConfig::hosts_for("127.0.0.1", &[]),
        }
    }
}

/// What the handlers share.
pub struct AppState {
    pub(crate) cat: Catalog,
    /// Library folder, canonical; `None` when it is not on this machine (previews are then off).
    pub(crate) root: Option<PathBuf>,
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    pub(crate) cfg: ServerConfig,
    pub(crate) map_json: Vec<u8>,
    pub(crate) uploads: Arc<tokio::sync::Semaphore>,
    /// The store's clusters (summaries and centroids; each song's cluster is in the catalog).
    pub(crate) clusters: Option<soundalike_index::Clustering>,
    /// A listener's profile, when serving with one (`--profile`).
    pub(crate) taste: Option<std::sync::Mutex<TasteState>>,
}

/// The listener's marks and the model trained on them; the server holds the profile's lock while it runs.
pub struct TasteState {
    pub(crate) dir: PathBuf,
    pub(crate) profile: soundalike_index::Profile,
    pub(crate) model: Option<soundalike_index::TasteModel>,
    _lock: soundalike_index::StoreLock,
}

impl TasteState {
    /// Retrains the model on the current marks (none without a like).
    pub(crate) fn retrain(&mut self, cat: &Catalog) -> Result<()> {
        self.model = if self.profile.counts().0 > 0 { Some(soundalike_index::train_taste_on(&self.profile, cat, 0, false)?) } else { None };
        Ok(())
    }
}

impl AppState {
    /// Prepares the state: loads the store's clusters if it has them, resolves the library folder and
    /// computes the 2-D map.
    pub fn new(mut cat: Catalog, embedder: Option<Arc<dyn Embedder>>, cfg: ServerConfig) -> Result<AppState> {
        // Clusters are optional: a store without them, or with another model's, is served without.
        let clusters = match cat.use_clusters() {
            Ok(c) => c.map(|mut c| {
                c.members = Vec::new();
                c
            }),
            Err(e) => {
                eprintln!("note: clusters are off: {e}");
                None
            }
        };
        let root = match std::fs::canonicalize(&cat.header.library_root) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("note: previews are off: the library folder {} is not readable here ({e})", cat.header.library_root.display());
                None
            }
        };
        let map_json = api::map_json(&cat, cfg.map_points)?;
        let uploads = Arc::new(tokio::sync::Semaphore::new(cfg.upload_concurrency.max(1)));
        Ok(AppState { cat, root, embedder, cfg, map_json, uploads, clusters, taste: None })
    }
}

impl AppState {
    /// Serves with a listener's profile folder (created if absent): like/dislike marks from the page are
    /// saved there (atomically; the server holds its lock), and the taste model is retrained on each.
    pub fn with_profile(mut self, dir: &Path) -> Result<AppState> {
        let lock = soundalike_index::Profile::lock(dir, soundalike_index::LockWait::No).with_context(|| format!("cannot use the profile {}", dir.display()))?;
        let profile = soundalike_index::Profile::load_or_new(dir, &self.cat.header)?;
        let mut t = TasteState { dir: dir.to_path_buf(), profile, model: None, _lock: lock };
        t.retrain(&self.cat)?;
        self.taste = Some(std::sync::Mutex::new(t));
        Ok(self)
    }
}

/// Serves `state` on `host:port` (port 0: any free port) until Ctrl-C; `on_ready` gets the bound address.
/// Each connection is HTTP/1.1 with a header-read time-out ([`ServerConfig::header_timeout`]).
pub fn run(state: AppState, host: &str, port: u16, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let rt = runtime()?;
    let header_timeout = state.cfg.header_timeout;
    rt.block_on(serve_router(router(Arc::new(state)), header_timeout, host, port, on_ready))
}

/// `serve --db`: connects to the database (a pool of `pool` connections; refusing another model's vectors
/// when `model_fingerprint` is given), then serves the page and API from it as [`run`] does.
#[allow(clippy::too_many_arguments)]
pub fn run_db(
    url: &str,
    pool: usize,
    model_fingerprint: Option<String>,
    genre_source: soundalike_index::GenreSource,
    embedder_for: impl FnOnce(&soundalike_db::Meta) -> Option<Arc<dyn Embedder>>,
    cfg: ServerConfig,
    host: &str,
    port: u16,
    on_ready: impl FnOnce(SocketAddr, usize),
) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        let db = soundalike_db::Db::connect(url, pool).await?;
        let mut cat = soundalike_db::DbCatalog::open(db, model_fingerprint.as_deref()).await?;
        cat.use_genres(genre_source);
        let embedder = embedder_for(&cat.meta);
        let header_timeout = cfg.header_timeout;
        let state = DbState::new(cat, embedder, cfg).await?;
        let songs = state.songs;
        serve_router(db_router(Arc::new(state)), header_timeout, host, port, |a| on_ready(a, songs)).await
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// The accept loop: HTTP/1.1 connections with a header-read time-out, until Ctrl-C.
async fn serve_router(app: axum::Router, header_timeout: Duration, host: &str, port: u16, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port)).await.with_context(|| format!("cannot listen on {host}:{port}"))?;
    on_ready(listener.local_addr()?);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (too many open files, a reset) ends that connection, not the server.
                let Ok((stream, _)) = accepted else { continue };
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
                    let _ = b.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                });
            }
            _ = &mut stop => return Ok(()),
        }
    }
}
