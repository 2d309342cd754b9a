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
//! use soundalike_recommend::{AnnParams, Catalog, Method};
//! use soundalike_server::{run, AppState, ServerConfig};
//! let cat = Catalog::open(std::path::Path::new("my-store"), Method::Auto, &AnnParams::default()).unwrap();
//! let state = AppState::new(cat, None, ServerConfig::default()).unwrap(); // no model: uploads off
//! run(state, "127.0.0.1", 8080, |addr| println!("http://{addr}/")).unwrap();
//! ```
#![warn(missing_docs)]

mod api;
#[cfg(feature = "db")]
mod dbserve;
mod routes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use soundalike_recommend::Catalog;

pub use api::{router, POST_HEADER};
#[cfg(feature = "db")]
pub use dbserve::{db_router, DbState};
pub use soundalike_recommend::pca_2d;

/// Turns an audio file that is not in the library into a song vector comparable with the store's.
pub trait Embedder: Send + Sync + 'static {
    /// The file's L2-normalised song vector, or why it cannot be read.
    fn embed_file(&self, path: &Path) -> Result<Vec<f32>, EmbedError>;
}

/// Why an uploaded file could not be embedded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The file cannot be used (not audio, damaged, too short, silent): the uploader's to fix (422). The
    /// reason does not name the file: the server names it by the uploader's file name.
    #[error("{reason}")]
    BadFile {
        /// Why, without the file's name.
        reason: String,
    },
    /// The model failed: the server's fault (500).
    #[error("{0}")]
    Model(String),
}

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

/// One loaded state of the store: the catalog, its map and clusters. A request takes the current one
/// ([`AppState::served`]) and reads only it, so a reload swapped in meanwhile is never half seen.
pub struct Served {
    pub(crate) cat: Catalog,
    pub(crate) map_json: Vec<u8>,
    /// The store's clusters (summaries and centroids; each song's cluster is in the catalog).
    pub(crate) clusters: Option<soundalike_recommend::Clustering>,
    /// When it was loaded, and how many times the store has been loaded before it.
    pub(crate) loaded_at: SystemTime,
    pub(crate) generation: u64,
    /// What changed against the state it replaced (none for the first).
    pub(crate) changes: Option<Changes>,
}

/// Songs added, removed and changed (same id, new content) between two loads of a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// Ids new to the store.
    pub added: usize,
    /// Ids gone from it.
    pub removed: usize,
    /// Ids whose file's content changed.
    pub changed: usize,
}

impl Changes {
    /// What changed from `old` to `new`.
    pub fn between(old: &Catalog, new: &Catalog) -> Changes {
        let before: std::collections::HashMap<&str, &str> = old.songs().iter().map(|s| (s.id.as_str(), s.fingerprint.as_str())).collect();
        let mut c = Changes::default();
        let mut kept = 0;
        for s in new.songs() {
            match before.get(s.id.as_str()) {
                None => c.added += 1,
                Some(fp) => {
                    kept += 1;
                    if *fp != s.fingerprint {
                        c.changed += 1;
                    }
                }
            }
        }
        c.removed = before.len() - kept;
        c
    }
}

impl Served {
    fn load(mut cat: Catalog, cfg: &ServerConfig, generation: u64, changes: Option<Changes>) -> Result<Served> {
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
        let map_json = api::map_json(&cat, cfg.map_points)?;
        Ok(Served { cat, map_json, clusters, loaded_at: SystemTime::now(), generation, changes })
    }
}

/// How a served store is reloaded when it changes on disk (see [`AppState::reloading`]).
pub struct Reload {
    /// The store folder that is watched.
    pub dir: PathBuf,
    /// Opens the store afresh (as the server first opened it: search method, genre source).
    pub open: Box<dyn Fn() -> Result<Catalog> + Send + Sync>,
    /// How often the store's files are looked at (a few `stat` calls).
    pub check_every: Duration,
    /// The least time between two reloads: a burst of changes (an `embed` appending for minutes) is
    /// loaded at most this often.
    pub min_gap: Duration,
}

/// The last reload's outcome, for `/api/stats` and the log.
#[derive(Default)]
pub(crate) struct ReloadStatus {
    /// Why the last try failed (the old state is still served); `None` after a good load.
    pub(crate) error: Option<String>,
    pub(crate) failed_at: Option<SystemTime>,
}

/// What the handlers share.
pub struct AppState {
    served: std::sync::RwLock<Arc<Served>>,
    /// Library folder, canonical; `None` when it is not on this machine (previews are then off).
    pub(crate) root: Option<PathBuf>,
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    pub(crate) cfg: ServerConfig,
    pub(crate) uploads: Arc<tokio::sync::Semaphore>,
    /// A listener's profile, when serving with one (`--profile`).
    pub(crate) taste: Option<std::sync::Mutex<TasteState>>,
    reload: Option<Reload>,
    pub(crate) reload_status: std::sync::Mutex<ReloadStatus>,
}

/// The listener's marks and the model trained on them; the server holds the profile's lock while it runs.
pub struct TasteState {
    pub(crate) dir: PathBuf,
    pub(crate) profile: soundalike_recommend::Profile,
    pub(crate) model: Option<soundalike_recommend::TasteModel>,
    _lock: soundalike_recommend::StoreLock,
}

impl TasteState {
    /// Retrains the model on the current marks (none without a like).
    pub(crate) fn retrain(&mut self, cat: &Catalog) -> Result<()> {
        self.model = if self.profile.counts().0 > 0 { Some(soundalike_recommend::train_taste_on(&self.profile, cat, 0, false)?) } else { None };
        Ok(())
    }
}

impl AppState {
    /// Prepares the state: loads the store's clusters if it has them, resolves the library folder and
    /// computes the 2-D map.
    pub fn new(cat: Catalog, embedder: Option<Arc<dyn Embedder>>, cfg: ServerConfig) -> Result<AppState> {
        let root = match std::fs::canonicalize(&cat.header.library_root) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("note: previews are off: the library folder {} is not readable here ({e})", cat.header.library_root.display());
                None
            }
        };
        let served = Served::load(cat, &cfg, 0, None)?;
        let uploads = Arc::new(tokio::sync::Semaphore::new(cfg.upload_concurrency.max(1)));
        Ok(AppState { served: std::sync::RwLock::new(Arc::new(served)), root, embedder, cfg, uploads, taste: None, reload: None, reload_status: Default::default() })
    }

    /// Whether the server follows its store on disk ([`AppState::reloading`]).
    pub fn follows_store(&self) -> bool {
        self.reload.is_some()
    }

    /// The state a request reads, whole (a reload swaps in a new one between requests).
    pub fn served(&self) -> Arc<Served> {
        self.served.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Follows the store on disk: [`run`] then watches its files and, when they change, opens the store
    /// afresh beside the served one and swaps it in (see [`AppState::reload_now`]).
    pub fn reloading(mut self, reload: Reload) -> AppState {
        self.reload = Some(reload);
        self
    }

    /// Opens the store again and, if that works and it is still the same model's, swaps it in; the
    /// requests under way finish on the old state, which is freed after them. A store that cannot be
    /// opened (a damaged journal, another model's vectors) leaves the old state served; why is logged and
    /// shown in `/api/stats`. Returns what changed, or `None` when there is nothing to reload from.
    pub fn reload_now(&self) -> Option<Result<Changes>> {
        let r = self.reload.as_ref()?;
        let old = self.served();
        let loaded = (r.open)().and_then(|cat| {
            if cat.header.model_fingerprint != old.cat.header.model_fingerprint || cat.header.dim != old.cat.header.dim {
                anyhow::bail!(
                    "{}: the store now holds vectors of model {} ({}), not {} ({}) as when serving began; restart serve to serve it",
                    r.dir.display(),
                    cat.header.model_name,
                    cat.header.model_fingerprint,
                    old.cat.header.model_name,
                    old.cat.header.model_fingerprint
                );
            }
            let changes = Changes::between(&old.cat, &cat);
            Served::load(cat, &self.cfg, old.generation + 1, Some(changes))
        });
        let mut status = self.reload_status.lock().unwrap_or_else(|e| e.into_inner());
        match loaded {
            Ok(new) => {
                let changes = new.changes.unwrap_or_default();
                if let Some(t) = &self.taste {
                    let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = t.retrain(&new.cat) {
                        eprintln!("note: the taste model was not retrained on the reloaded store: {e:#}");
                    }
                }
                *self.served.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
                *status = ReloadStatus::default();
                drop(old);
                eprintln!("reloaded {}: {} added, {} removed, {} changed", r.dir.display(), changes.added, changes.removed, changes.changed);
                Some(Ok(changes))
            }
            Err(e) => {
                eprintln!("note: {} changed but was not reloaded; still serving the data loaded before: {e:#}", r.dir.display());
                status.error = Some(format!("{e:#}"));
                status.failed_at = Some(SystemTime::now());
                Some(Err(e))
            }
        }
    }
}

/// Size and modification time of the files a store's state lives in: journal, header, index, clusters.
fn store_signature(dir: &Path) -> Vec<Option<(u64, SystemTime)>> {
    use soundalike_recommend::layout;
    let files = [dir.join(layout::JOURNAL), dir.join(layout::HEADER), layout::index_dir(dir).join("index.bin"), dir.join(layout::CLUSTERS)];
    files.iter().map(|f| std::fs::metadata(f).ok().map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))).collect()
}

/// The watcher: a thread that looks at the store's files every `check_every` and reloads when they
/// changed, at most once per `min_gap`. A reload that fails is not tried again until the files change again.
fn watch(state: Arc<AppState>) {
    let Some(r) = state.reload.as_ref() else { return };
    let (dir, every, gap) = (r.dir.clone(), r.check_every, r.min_gap);
    std::thread::spawn(move || {
        let mut seen = store_signature(&dir);
        let mut last = std::time::Instant::now();
        loop {
            std::thread::sleep(every);
            let now = store_signature(&dir);
            if now == seen || last.elapsed() < gap {
                continue;
            }
            last = std::time::Instant::now();
            seen = now;
            state.reload_now();
        }
    });
}

impl AppState {
    /// Serves with a listener's profile folder (created if absent): like/dislike marks from the page are
    /// saved there (atomically; the server holds its lock), and the taste model is retrained on each.
    pub fn with_profile(mut self, dir: &Path) -> Result<AppState> {
        let lock = soundalike_recommend::Profile::lock(dir, soundalike_recommend::LockWait::No).with_context(|| format!("cannot use the profile {}", dir.display()))?;
        let profile = soundalike_recommend::Profile::load_or_new(dir, &self.served().cat.header)?;
        let mut t = TasteState { dir: dir.to_path_buf(), profile, model: None, _lock: lock };
        t.retrain(&self.served().cat)?;
        self.taste = Some(std::sync::Mutex::new(t));
        Ok(self)
    }
}

/// Serves `state` on `host:port` (port 0: any free port) until Ctrl-C; `on_ready` gets the bound address.
/// Each connection is HTTP/1.1 with a header-read time-out ([`ServerConfig::header_timeout`]).
pub fn run(state: AppState, host: &str, port: u16, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let rt = runtime()?;
    let header_timeout = state.cfg.header_timeout;
    let state = Arc::new(state);
    watch(state.clone());
    rt.block_on(serve_router(router(state), header_timeout, host, port, on_ready))
}

#[cfg(feature = "db")]
/// `serve --db`: connects to the database (a pool of `pool` connections; refusing another model's vectors
/// when `model_fingerprint` is given), then serves the page and API from it as [`run`] does.
#[allow(clippy::too_many_arguments)]
pub fn run_db(
    url: &str,
    pool: usize,
    model_fingerprint: Option<String>,
    genre_source: soundalike_recommend::GenreSource,
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
