//! `serve --db`: the same page and API answered from PostgreSQL + pgvector, so any number of stateless
//! processes can sit behind a load balancer on one primary and its read replicas. Each process keeps only
//! its connection pool, the library map computed at start, and (with a model) the embedder for uploads:
//! counts, genres, search and recommendations are read per request, so pushed rows are served at once.
//! Clusters and listener profiles live in stores, not (yet) in the database: those endpoints say so.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use soundalike_db::DbCatalog;

use crate::api::{map_bytes, with_limits, with_page, ApiError, ApiResult};
use crate::{Embedder, ServerConfig};

/// What the database server's handlers share.
pub struct DbState {
    pub(crate) db: DbCatalog,
    /// Songs at start (for the first line printed; the API counts per request).
    pub(crate) songs: usize,
    pub(crate) root: Option<PathBuf>,
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    pub(crate) cfg: ServerConfig,
    pub(crate) map_json: Vec<u8>,
    pub(crate) uploads: Arc<tokio::sync::Semaphore>,
}

impl DbState {
    /// Connects the state: counts, genres, the library folder (for previews, when it is on this machine)
    /// and the map (PCA of an even sample of the vectors).
    pub async fn new(db: DbCatalog, embedder: Option<Arc<dyn Embedder>>, cfg: ServerConfig) -> anyhow::Result<DbState> {
        let songs = db.len().await?;
        let root = std::fs::canonicalize(&db.meta.library_root).ok();
        if root.is_none() {
            eprintln!("note: previews are off: the library folder {} is not on this machine", db.meta.library_root);
        }
        let sample = db.sample(cfg.map_points).await?;
        let m: Vec<f32> = sample.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let points = sample.iter().map(|(s, _)| json!({"id": s.id, "title": s.title, "genre": s.genre, "cluster": null})).collect();
        let map_json = map_bytes(points, &m, db.meta.dim, songs)?;
        let uploads = Arc::new(tokio::sync::Semaphore::new(cfg.upload_concurrency.max(1)));
        Ok(DbState { db, songs, root, embedder, cfg, map_json, uploads })
    }
}

/// The router of `serve --db`: the same page and the same API routes ([`crate::routes`]); clusters and
/// listener profiles say they are served from a store.
pub fn db_router(state: Arc<DbState>) -> Router {
    let cfg = state.cfg.clone();
    let r = crate::routes::routes(with_page(Router::new()), cfg.max_upload_bytes)
        .route("/api/clusters", get(not_here))
        .route("/api/cluster", get(not_here))
        .route("/api/taste", get(not_here))
        .route("/api/taste/mark", post(not_here))
        .with_state(state);
    with_limits(r, &cfg)
}

async fn not_here() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "clusters and listener profiles are served from a store, not from the database (serve STORE)".into())
}

impl crate::routes::Backend for DbState {
    type Lib = DbCatalog;
    fn library(&self) -> impl std::ops::Deref<Target = DbCatalog> + Send + Sync + '_ {
        &self.db
    }
    fn cfg(&self) -> &ServerConfig {
        &self.cfg
    }
    fn root(&self) -> Option<&std::path::Path> {
        self.root.as_deref()
    }
    fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        self.embedder.clone()
    }
    fn uploads(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.uploads
    }
    fn map_json(&self) -> Vec<u8> {
        self.map_json.clone()
    }
    fn model(&self, db: &DbCatalog) -> Value {
        let m = &db.meta;
        json!({"model": m.model_name, "model_fingerprint": m.model_fingerprint, "dim": m.dim, "labels": m.labels})
    }
    fn health_extra(&self) -> Value {
        json!({"db": self.db.url()})
    }
    fn stats_extra(&self, _db: &DbCatalog) -> Value {
        // Read per request (the database is the state; nothing to reload). The map is the one computed at start.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        json!({
            "clusters": null, "taste": false,
            "loaded": {"at": now, "generation": null, "changes": null, "follows_store": true, "reload_error": null, "reload_failed_at": null,
                       "source": "the database, read per request (the map: at start)"},
        })
    }
    async fn similar(&self, req: soundalike_recommend::Request, taste: bool) -> ApiResult<Value> {
        if taste {
            return Err(ApiError(StatusCode::NOT_FOUND, "cluster and taste filters are served from a store, not from the database".into()));
        }
        let a = self.db.answer(&req).await?;
        Ok(crate::routes::answer_json(&a.query, a.results.into_iter().map(|r| (r, None)).collect(), false, &a.notes, &|_| None))
    }
}
