//! `serve --db`: the same page and API answered from PostgreSQL + pgvector, so any number of stateless
//! processes can sit behind a load balancer on one primary and its read replicas. Each process keeps only
//! its connection pool, the library map computed at start, and (with a model) the embedder for uploads:
//! counts, genres, search and recommendations are read per request, so pushed rows are served at once.
//! Clusters and listener profiles live in stores, not (yet) in the database: those endpoints say so.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use soundalike_db::{DbCatalog, DbError, DbSong};
use soundalike_index::{Filters, SongRecord};

use crate::api::{audio_url, bad, file_in_library, map_bytes, receive_upload, send_audio, unique_ids, with_limits, with_page, ApiError, ApiResult, SongIdQuery, SearchQ, SimilarOpts, SimilarPost, Upload, UploadQ};
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

type Shared = State<Arc<DbState>>;

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        let status = match e {
            DbError::Invalid(_) => StatusCode::BAD_REQUEST,
            DbError::Connect { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
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

/// The router of `serve --db`: the same page, the same API paths.
pub fn db_router(state: Arc<DbState>) -> Router {
    let upload_limit = state.cfg.max_upload_bytes;
    let cfg = state.cfg.clone();
    let r = with_page(Router::new())
        .route("/api/health", get(health))
        .route("/api/stats", get(stats))
        .route("/api/search", get(search))
        .route("/api/song", get(song))
        .route("/api/similar", get(similar_get).post(similar_post))
        .route("/api/similar/upload", post(similar_upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/api/map", get(|State(st): Shared| async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], st.map_json.clone()).into_response() }))
        .route("/api/audio", get(audio))
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

fn summary(s: &DbSong) -> Value {
    json!({"id": s.id, "title": s.title, "artist": s.artist, "album": s.album, "genre": s.genre, "group": s.group, "cluster": null})
}

async fn health(State(st): Shared) -> ApiResult<Json<Value>> {
    // Counted per request: rows pushed while the server runs are served at once.
    Ok(Json(json!({"status": "ok", "songs": st.db.len().await?, "db": st.db_url()})))
}

impl DbState {
    fn db_url(&self) -> String {
        self.db.url().to_string()
    }
}

async fn stats(State(st): Shared) -> ApiResult<Json<Value>> {
    let m = &st.db.meta;
    // Read per request (the database is the state; nothing to reload). The map is the one computed at start.
    let (songs, genres) = (st.db.len().await?, st.db.genres().await?);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(Json(json!({
        "songs": songs, "hours": 0.0, "model": m.model_name, "model_fingerprint": m.model_fingerprint, "dim": m.dim,
        "labels": m.labels, "search": "pgvector",
        "genres": genres.iter().map(|(g, n)| json!({"name": g, "songs": n})).collect::<Vec<_>>(), "groups": [],
        "upload": st.embedder.is_some(), "previews": st.root.is_some(), "max_upload_bytes": st.cfg.max_upload_bytes,
        "max_k": st.cfg.max_k, "clusters": null, "taste": false,
        "loaded": {"at": now, "generation": null, "changes": null, "follows_store": true, "reload_error": null, "reload_failed_at": null,
                   "source": "the database, read per request (the map: at start)"},
    })))
}

async fn search(State(st): Shared, q: Result<Query<SearchQ>, QueryRejection>) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let found = st.db.search_text(&q.q, q.limit.unwrap_or(10).clamp(1, 100)).await?;
    Ok(Json(json!({"results": found.iter().map(summary).collect::<Vec<_>>()})))
}

async fn get_song(st: &DbState, id: &str) -> ApiResult<DbSong> {
    st.db.get(id).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no song with id {id:?} in this library")))
}

async fn song(State(st): Shared, q: Result<Query<SongIdQuery>, QueryRejection>) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let s = get_song(&st, &q.id).await?;
    let mut v = summary(&s);
    v["audio"] = json!(audio_url(&s.id));
    Ok(Json(v))
}

/// Recommendations for the centroid of `seeds`' vectors plus `extra`, with the request's filters.
async fn recommend(st: &DbState, seeds: &[DbSong], extra: Option<&[f32]>, o: SimilarOpts) -> ApiResult<Value> {
    let k = o.k.unwrap_or(10);
    if k == 0 || k > st.cfg.max_k {
        return Err(bad(format!("k must be between 1 and {}", st.cfg.max_k)));
    }
    if o.max_per_album == Some(0) {
        return Err(bad("max_per_album must be at least 1"));
    }
    if o.same_cluster || o.cluster.is_some() || o.taste {
        return Err(ApiError(StatusCode::NOT_FOUND, "cluster and taste filters are served from a store, not from the database".into()));
    }
    let genre = o.genre.filter(|g| !g.trim().is_empty());
    if let Some(g) = genre.as_deref() {
        if !st.db.genres().await?.iter().any(|(x, _)| x.eq_ignore_ascii_case(g)) {
            return Err(bad(format!("no song in this library has genre {g:?} (see /api/stats)")));
        }
    }
    let records: Vec<SongRecord> = seeds.iter().map(DbSong::record).collect();
    let refs: Vec<&SongRecord> = records.iter().collect();
    let filters = Filters::around(&refs, soundalike_index::Around { genre, same_genre: o.same_genre, exclude_same_artist: o.exclude_same_artist, exclude_same_group: o.exclude_same_group, max_per_album: o.max_per_album });
    if filters.same_genres.as_ref().is_some_and(|g| g.is_empty()) {
        return Err(bad("same_genre: the query songs have no genre in this library"));
    }
    let ids: Vec<&str> = seeds.iter().map(|s| s.id.as_str()).collect();
    let q = st.db.centroid(&ids, &extra.into_iter().collect::<Vec<_>>()).await?;
    let recs = st.db.recommend(&q, k, &filters).await?;
    Ok(json!({
        "query": seeds.iter().map(summary).collect::<Vec<_>>(),
        "taste": false,
        "results": recs.iter().map(|r| {
            let mut v = summary(&r.song);
            v["rank"] = json!(r.rank);
            v["score"] = json!(r.score);
            v["audio"] = json!(audio_url(&r.song.id));
            v
        }).collect::<Vec<_>>(),
    }))
}

async fn similar_get(State(st): Shared, q: Result<Query<SongIdQuery>, QueryRejection>, o: Result<Query<SimilarOpts>, QueryRejection>) -> ApiResult<Json<Value>> {
    let (Query(q), Query(o)) = (q?, o?);
    let s = get_song(&st, &q.id).await?;
    Ok(Json(recommend(&st, &[s], None, o).await?))
}

async fn similar_post(State(st): Shared, body: Result<Json<SimilarPost>, JsonRejection>) -> ApiResult<Json<Value>> {
    let Json(b) = body?;
    let unique = unique_ids(&b.ids, st.cfg.max_ids)?;
    let mut seeds = Vec::new();
    for id in unique {
        seeds.push(get_song(&st, id).await?);
    }
    Ok(Json(recommend(&st, &seeds, None, b.opts).await?))
}

async fn similar_upload(State(st): Shared, q: Result<Query<UploadQ>, QueryRejection>, o: Result<Query<SimilarOpts>, QueryRejection>, body: Body) -> ApiResult<Response> {
    let (Query(q), Query(o)) = (q?, o?);
    let (vector, shown) = match receive_upload(st.embedder.clone(), &st.uploads, &st.cfg, q.name.as_deref(), body).await? {
        Upload::Vector(v, n) => (v, n),
        Upload::Busy(res) => return Ok(res),
    };
    if vector.len() != st.db.meta.dim {
        return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the model's vectors do not match the database's".into()));
    }
    let mut out = recommend(&st, &[], Some(&vector), o).await?;
    out["query"] = json!([{"title": shown, "upload": true}]);
    Ok(Json(out).into_response())
}

async fn audio(State(st): Shared, q: Result<Query<SongIdQuery>, QueryRejection>, req: Request) -> ApiResult {
    let Query(q) = q?;
    let known = match &st.root {
        Some(_) => st.db.get(&q.id).await?.is_some(),
        None => false,
    };
    let path = st.root.as_ref().filter(|_| known).and_then(|root| file_in_library(root, &q.id));
    send_audio(path, req).await
}
