//! Routes and handlers.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use soundalike_recommend::{Catalog, Filters, IndexError, Library, LibraryError, LibraryStats, SongView};
use tower::ServiceExt;
use tower_http::services::ServeFile;
use tower_http::timeout::TimeoutLayer;

use crate::{AppState, Served};

type Shared = State<Arc<AppState>>;

/// An error answer: status and a JSON `{"error": message}`.
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        let status = match e {
            IndexError::NotFound(_) => StatusCode::NOT_FOUND,
            IndexError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError(e.status(), e.body_text())
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

/// The page's three files (compiled in).
pub(crate) fn with_page<S: Clone + Send + Sync + 'static>(r: Router<S>) -> Router<S> {
    r.route("/", get(|| async { page("text/html; charset=utf-8", include_str!("../assets/index.html")) }))
        .route("/app.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("../assets/app.js")) }))
        .route("/app.css", get(|| async { page("text/css; charset=utf-8", include_str!("../assets/app.css")) }))
}

/// Around every route: a JSON 404, the request time limit and the [`guard`].
pub(crate) fn with_limits<S: Clone + Send + Sync + 'static>(r: Router<S>, cfg: &crate::ServerConfig) -> Router<S> {
    r.fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such page".into()) })
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, cfg.request_timeout))
        .layer(axum::middleware::from_fn_with_state(Arc::new(cfg.clone()), guard))
}

/// A request's song ids without repeats, at most `max` of them.
pub(crate) fn unique_ids(ids: &[String], max: usize) -> ApiResult<Vec<&String>> {
    if ids.is_empty() {
        return Err(bad("ids: name at least one song"));
    }
    let mut unique: Vec<&String> = Vec::new();
    for id in ids {
        if !unique.contains(&id) {
            if unique.len() == max {
                return Err(bad(format!("ids: at most {max} different songs per request")));
            }
            unique.push(id);
        }
    }
    Ok(unique)
}

/// The router: the page, the shared API ([`crate::routes`]), the store's own routes (clusters, taste), and
/// the limits (request time, upload size).
pub fn router(state: Arc<AppState>) -> Router {
    let cfg = state.cfg.clone();
    let r = crate::routes::routes(with_page(Router::new()), cfg.max_upload_bytes)
        .route("/api/clusters", get(clusters))
        .route("/api/cluster", get(cluster))
        .route("/api/taste", get(taste_get))
        .route("/api/taste/mark", post(taste_mark))
        .with_state(state);
    with_limits(r, &cfg)
}

impl Library for Served {
    fn count(&self) -> impl std::future::Future<Output = Result<usize, LibraryError>> + Send {
        Library::count(&self.cat)
    }
    fn stats(&self) -> impl std::future::Future<Output = Result<LibraryStats, LibraryError>> + Send {
        Library::stats(&self.cat)
    }
    fn song(&self, id: &str) -> impl std::future::Future<Output = Result<SongView, LibraryError>> + Send {
        Library::song(&self.cat, id)
    }
    fn resolve(&self, text: &str) -> impl std::future::Future<Output = Result<SongView, LibraryError>> + Send {
        Library::resolve(&self.cat, text)
    }
    fn search(&self, text: &str, limit: usize) -> impl std::future::Future<Output = Result<Vec<SongView>, LibraryError>> + Send {
        Library::search(&self.cat, text, limit)
    }
    fn recommend(&self, req: &soundalike_recommend::Request) -> impl std::future::Future<Output = Result<soundalike_recommend::Answer, LibraryError>> + Send {
        Library::recommend(&self.cat, req)
    }
}

impl crate::routes::Backend for AppState {
    type Lib = Served;
    fn library(&self) -> impl std::ops::Deref<Target = Served> + Send + Sync + '_ {
        self.served()
    }
    fn cfg(&self) -> &crate::ServerConfig {
        &self.cfg
    }
    fn root(&self) -> Option<&std::path::Path> {
        self.root.as_deref()
    }
    fn embedder(&self) -> Option<Arc<dyn crate::Embedder>> {
        self.embedder.clone()
    }
    fn uploads(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.uploads
    }
    fn map_json(&self) -> Vec<u8> {
        self.served().map_json.clone()
    }
    fn model(&self, sv: &Served) -> Value {
        let h = &sv.cat.header;
        json!({"model": h.model_name, "model_fingerprint": h.model_fingerprint, "dim": h.dim, "labels": h.labels})
    }
    fn stats_extra(&self, sv: &Served) -> Value {
        json!({"clusters": sv.clusters.as_ref().map(|c| c.k), "taste": self.taste.is_some(), "loaded": loaded_json(self, sv)})
    }
    fn song_extra(&self, sv: &Served, id: &str, v: &mut Value) {
        let Some(s) = sv.cat.get(id) else { return };
        let mut probs: Vec<(&String, f32)> = sv.cat.header.labels.iter().zip(s.probs.iter().copied()).collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        v["probabilities"] = json!(probs.iter().take(5).map(|(l, p)| json!({"label": l, "p": p})).collect::<Vec<_>>());
        v["fingerprint"] = json!(s.fingerprint);
    }
    /// Plain answers from the catalog; with `taste`, a wider pool re-ranked by the served profile (never a
    /// disliked song), each result with the listener's mark.
    async fn similar(&self, req: soundalike_recommend::Request, taste: bool) -> ApiResult<Value> {
        let sv = self.served();
        let cat = &sv.cat;
        let guard = self.taste.as_ref().map(|t| t.lock().unwrap_or_else(|e| e.into_inner()));
        let (query, results, notes) = match (&guard, taste) {
            (Some(t), true) => {
                let Some(model) = &t.model else { return Err(bad("taste: mark a song you like first")) };
                let (a, p_like) = cat.answer_by_taste(&req, model, &t.profile, TASTE_WEIGHT, None)?;
                (a.query, a.results.into_iter().zip(p_like.into_iter().map(Some)).collect(), a.notes)
            }
            (None, true) => return Err(bad("taste: this server has no profile (start serve with --profile DIR)")),
            _ => {
                let a = cat.answer(&req)?;
                (a.query, a.results.into_iter().map(|r| (r, None)).collect(), a.notes)
            }
        };
        let mark_of = |id: &str| guard.as_ref().and_then(|t| t.profile.mark_of(id));
        Ok(crate::routes::answer_json(&query, results, taste, &notes, &mark_of))
    }
}

/// The header a non-JSON POST (an upload) must carry: a cross-site form or `text/plain` POST cannot set
/// it without the browser asking the server first (CORS preflight), which this server never allows.
pub const POST_HEADER: &str = "x-soundalike";

/// Around every request: the `Host` check (DNS rebinding), the POST rule (JSON or [`POST_HEADER`]),
/// `X-Content-Type-Options: nosniff`, and JSON bodies for error answers made outside the handlers (time-outs,
/// body limits).
pub(crate) async fn guard(State(cfg): State<Arc<crate::ServerConfig>>, req: Request, next: Next) -> Response {
    // A request without a Host header (HTTP/1.0 tools) is not a browser's: only a present, foreign Host is refused.
    if let (Some(allowed), Some(host)) = (&cfg.allowed_hosts, req.headers().get(header::HOST)) {
        let host = host.to_str().unwrap_or("?").to_ascii_lowercase();
        let name = match host.strip_prefix('[') {
            Some(rest) => format!("[{}]", rest.split(']').next().unwrap_or("")),
            None => host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h).to_string(),
        };
        if !allowed.contains(&name) {
            return nosniff(ApiError(StatusCode::MISDIRECTED_REQUEST, format!("host {host:?} is not served here (allowed: {}; add names with --allow-host)", allowed.join(", "))).into_response());
        }
    }
    if req.method() == Method::POST {
        let json = req.headers().get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("application/json"));
        if !json && !req.headers().contains_key(POST_HEADER) {
            return nosniff(ApiError(StatusCode::FORBIDDEN, format!("POST needs Content-Type: application/json, or for uploads the header {POST_HEADER}: 1")).into_response());
        }
    }
    let res = next.run(req).await;
    let is_json = res.headers().get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).is_some_and(|c| c.starts_with("application/json"));
    let failed = res.status().is_client_error() || res.status().is_server_error();
    let res = if failed && !is_json {
        let status = res.status();
        let retry = res.headers().get(header::RETRY_AFTER).cloned();
        let body = axum::body::to_bytes(res.into_body(), 64 << 10).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        let msg = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
        let mut r = ApiError(status, msg).into_response();
        if let Some(v) = retry {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    } else {
        res
    };
    nosniff(res)
}

fn nosniff(mut res: Response) -> Response {
    res.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    res
}

pub(crate) fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// When the served data was loaded, what changed then, and why the last reload failed (if it did).
fn loaded_json(st: &AppState, sv: &Served) -> Value {
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let status = st.reload_status.lock().unwrap_or_else(|e| e.into_inner());
    json!({
        "at": secs(sv.loaded_at),
        "generation": sv.generation,
        "changes": sv.changes,
        "follows_store": st.follows_store(),
        "reload_error": status.error,
        "reload_failed_at": status.failed_at.map(secs),
    })
}


#[derive(Deserialize)]
pub(crate) struct SearchQ {
    pub(crate) q: String,
    pub(crate) limit: Option<usize>,
}

#[derive(Deserialize)]
pub(crate) struct SongIdQuery {
    pub(crate) id: String,
}

/// Filters and `k` as a request names them (query string or JSON).
#[derive(Deserialize, Default)]
pub(crate) struct SimilarOpts {
    pub(crate) k: Option<usize>,
    pub(crate) genre: Option<String>,
    #[serde(default)]
    pub(crate) same_genre: bool,
    #[serde(default)]
    pub(crate) exclude_same_artist: bool,
    #[serde(default)]
    pub(crate) exclude_same_group: bool,
    pub(crate) max_per_album: Option<usize>,
    /// Only songs in the query's cluster(s).
    #[serde(default)]
    pub(crate) same_cluster: bool,
    /// Only songs in this cluster.
    pub(crate) cluster: Option<usize>,
    /// Re-rank by the served profile's taste.
    #[serde(default)]
    pub(crate) taste: bool,
    /// Only songs in this tempo range (`120-128`).
    pub(crate) bpm: Option<String>,
    /// Only songs within this many percent of the query's tempo.
    pub(crate) bpm_near: Option<f32>,
    /// Half and double tempo count as in range.
    #[serde(default)]
    pub(crate) bpm_fold: bool,
    /// Only songs in this key (`8A`, `1m`, `A minor`).
    pub(crate) key: Option<String>,
    /// Only songs in a key that mixes with `key`, or else with the query's.
    #[serde(default)]
    pub(crate) key_compatible: bool,
    /// `strict` (default) or `wide`.
    pub(crate) key_rule: Option<String>,
    /// Only songs the taggers give these tags (comma-separated, e.g. `piano,chill`; all of them).
    #[serde(default)]
    pub(crate) tags: Option<String>,
    /// The least probability a tag filter accepts (default 0.2).
    pub(crate) tag_min: Option<f32>,
}

#[derive(Deserialize)]
pub(crate) struct SimilarPost {
    pub(crate) ids: Vec<String>,
    #[serde(flatten)]
    pub(crate) opts: SimilarOpts,
}

#[derive(Deserialize)]
pub(crate) struct UploadQ {
    /// The file's name (its extension helps pick the decoder).
    pub(crate) name: Option<String>,
}

/// A safe file name for the upload: the last path component, only plain characters.
fn upload_name(name: Option<&str>) -> String {
    let base = name.and_then(|n| n.rsplit(['/', '\\']).next()).unwrap_or("upload");
    let clean: String = base.chars().map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') { c } else { '_' }).take(100).collect();
    let clean = clean.trim_start_matches('.').trim().to_string();
    if clean.is_empty() { "upload".into() } else { clean }
}

/// What [`receive_upload`] gives: the uploaded file's song vector and its (sanitised) name, or an answer to
/// send at once (uploads busy).
pub(crate) enum Upload {
    Vector(Vec<f32>, String),
    Busy(Response),
}

/// Streams an upload to a temp file (memory: one chunk), then embeds it on a blocking thread, at most
/// `upload_concurrency` at once. Shared by the store's and the database's servers.
pub(crate) async fn receive_upload(
    embedder: Option<Arc<dyn crate::Embedder>>,
    uploads: &Arc<tokio::sync::Semaphore>,
    cfg: &crate::ServerConfig,
    name: Option<&str>,
    body: Body,
) -> ApiResult<Upload> {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let Some(embedder) = embedder else {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "uploads need the store's model: start serve with --model".into()));
    };
    let name = upload_name(name);
    // The slot is taken before the body is read (at most `upload_concurrency` uploads in memory or on disk
    // at once; others are told to come back), and the permit moves into the blocking task: a request that
    // times out does not free its slot before the decoding it started has finished.
    let Ok(permit) = uploads.clone().try_acquire_owned() else {
        let mut res = ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{} uploads are being embedded; try again in a few seconds", cfg.upload_concurrency)).into_response();
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Ok(Upload::Busy(res));
    };
    // Streamed to a temp file in chunks: memory stays one chunk per upload whatever its size.
    let io = |e: std::io::Error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot store the upload: {e}"));
    let dir = tempfile::tempdir().map_err(io)?;
    let path = dir.path().join(&name);
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let (mut body, mut size) = (body, 0usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad(format!("the upload was cut short: {e}")))?;
        if let Ok(data) = frame.into_data() {
            size += data.len();
            if size > cfg.max_upload_bytes {
                return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("the upload is over {} MB", cfg.max_upload_bytes >> 20)));
            }
            file.write_all(&data).await.map_err(io)?;
        }
    }
    file.flush().await.map_err(io)?;
    drop(file);
    if size == 0 {
        return Err(bad("the upload is empty"));
    }
    let shown = name.clone();
    let vector = tokio::task::spawn_blocking(move || -> Result<Vec<f32>, crate::EmbedError> {
        let _permit = permit;
        let _dir = dir;
        embedder.embed_file(&path)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("embedding failed: {e}")))?
    .map_err(|e| match e {
        // Named by the uploader's file name, not the temp file's.
        crate::EmbedError::BadFile { reason } => ApiError(StatusCode::UNPROCESSABLE_ENTITY, format!("{shown}: {reason}")),
        e => ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{shown}: the model failed: {e}")),
    })?;
    Ok(Upload::Vector(vector, name))
}

/// The weight of taste in the page's "taste ranking" (`(1 - w) * similarity + w * p(like)`).
const TASTE_WEIGHT: f32 = 0.5;
/// Songs in the "for you" list.
const FOR_YOU: usize = 10;

fn taste_state(st: &AppState) -> ApiResult<std::sync::MutexGuard<'_, crate::TasteState>> {
    let t = st.taste.as_ref().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this server has no listener profile (start serve with --profile DIR)".into()))?;
    Ok(t.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The marks, the model, and the songs the listener would most likely like ("for you").
fn taste_json(sv: &Served, t: &crate::TasteState) -> Value {
    let cat = &sv.cat;
    let (likes, dislikes) = t.profile.counts();
    let for_you: Vec<Value> = t
        .model
        .as_ref()
        .map(|m| soundalike_recommend::discover(cat, &t.profile, m, FOR_YOU, 2, &|_| true))
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, (r, p))| {
            let mut v = serde_json::to_value(cat.recommendation(r, i + 1, p)).unwrap_or(Value::Null);
            v["audio"] = json!(audio_url(&cat.songs()[r].id));
            v["p_like"] = json!(p);
            v
        })
        .collect();
    json!({
        "profile": t.dir.file_name().map(|n| n.to_string_lossy().into_owned()),
        "likes": likes, "dislikes": dislikes,
        "marks": t.profile.marks.iter().map(|m| json!({"id": m.id, "title": m.title, "mark": m.mark})).collect::<Vec<_>>(),
        "model": t.model.as_ref().map(|m| m.classifier.name()),
        "notes": t.model.as_ref().map(|m| m.notes.clone()).unwrap_or_default(),
        "for_you": for_you,
    })
}

async fn taste_get(State(st): Shared) -> ApiResult<Json<Value>> {
    let t = taste_state(&st)?;
    Ok(Json(taste_json(&st.served(), &t)))
}

#[derive(Deserialize)]
struct MarkBody {
    id: String,
    /// `like`, `dislike` or `none` (forget).
    mark: String,
}

/// Marks a song, saves the profile (atomically) and retrains the model; answers as `GET /api/taste`.
async fn taste_mark(State(st): Shared, body: Result<Json<MarkBody>, JsonRejection>) -> ApiResult<Json<Value>> {
    let Json(b) = body?;
    let sv = st.served();
    let row = sv.cat.row(&b.id).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no song with id {:?} in this library", b.id)))?;
    let mark = match b.mark.as_str() {
        "none" => None,
        m => Some(m.parse::<soundalike_recommend::Mark>().map_err(bad)?),
    };
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<Json<Value>> {
        let st = st2;
        let mut t = taste_state(&st)?;
        let before = t.profile.clone();
        match mark {
            Some(m) => {
                t.profile.mark(&sv.cat.songs()[row], &sv.cat.vector(row), m);
            }
            None => {
                t.profile.unmark(&b.id);
            }
        }
        let saved = t.profile.save(&t.dir).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the mark was not saved: {e}")));
        if let Err(e) = saved {
            t.profile = before;
            return Err(e);
        }
        t.retrain(&sv.cat).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        Ok(Json(taste_json(&sv, &t)))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

fn clusters_of(sv: &Served) -> ApiResult<&soundalike_recommend::Clustering> {
    sv.clusters.as_ref().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this library has no clusters yet (run `soundalike clusters STORE`; serve picks them up)".into()))
}

/// Every cluster's summary, and how k was chosen.
async fn clusters(State(st): Shared) -> ApiResult<Json<Value>> {
    let sv = st.served();
    let c = clusters_of(&sv)?;
    Ok(Json(json!({
        "k": c.k, "method": c.method, "silhouette": c.silhouette, "fitted_songs": c.fitted_songs,
        "stale": c.stale, "choice": c.choice, "clusters": c.summaries,
    })))
}

#[derive(Deserialize)]
struct ClusterQ {
    id: usize,
    /// This many songs at random from the cluster (instead of those nearest its centre).
    random: Option<usize>,
    /// Seed of the random draw (default: a new one each time).
    seed: Option<u64>,
    /// How many songs nearest the centre (without `random`).
    k: Option<usize>,
}

/// One cluster: its summary and songs, either nearest its centre or drawn at random.
async fn cluster(State(st): Shared, q: Result<Query<ClusterQ>, QueryRejection>) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let sv = st.served();
    let c = clusters_of(&sv)?;
    if q.id >= c.k {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no cluster {}; this library has clusters 0 to {}", q.id, c.k - 1)));
    }
    let cat = &sv.cat;
    let n = q.random.or(q.k).unwrap_or(10);
    if n == 0 || n > st.cfg.max_k {
        return Err(bad(format!("random and k must be between 1 and {}", st.cfg.max_k)));
    }
    let centre = &c.centroids[q.id];
    let recs = match q.random {
        Some(n) => {
            let seed = q.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
            let rows = cat.random_in_clusters(&[q.id as u32], n, &[], seed);
            rows.iter().enumerate().map(|(i, &r)| cat.recommendation(r, i + 1, soundalike_recommend::dot(&cat.vector(r), centre))).collect()
        }
        None => cat.recommend(centre, n, &Filters { clusters: Some(vec![q.id as u32]), ..Default::default() })?,
    };
    Ok(Json(json!({
        "cluster": c.summaries[q.id],
        "random": q.random.is_some(),
        "songs": recs.iter().map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            v["audio"] = json!(audio_url(r.id));
            v
        }).collect::<Vec<_>>(),
    })))
}

/// Precomputes the map's JSON: PCA of the song vectors, evenly sampled down to `max_points`.
pub(crate) fn map_json(cat: &Catalog, max_points: usize) -> anyhow::Result<Vec<u8>> {
    let n = cat.len();
    let step = n.div_ceil(max_points.max(1)).max(1);
    let rows: Vec<usize> = (0..n).step_by(step).collect();
    let mut m = Vec::with_capacity(rows.len() * cat.header.dim);
    rows.iter().for_each(|&r| m.extend_from_slice(&cat.vector(r)));
    let points = rows.iter().map(|&r| {
        let s = &cat.songs()[r];
        json!({"id": s.id, "title": s.title, "genre": s.genre, "cluster": cat.cluster_of(r)})
    });
    map_bytes(points.collect(), &m, cat.header.dim, n)
}

/// The map's JSON for sampled songs (`points`: each song's `id`, `title`, `genre`, `cluster`) with their
/// vectors (row-major, `dim` wide) in a library of `songs`: each point placed at the first two principal
/// components. Shared by the store's and the database's servers.
pub(crate) fn map_bytes(points: Vec<Value>, vectors: &[f32], dim: usize, songs: usize) -> anyhow::Result<Vec<u8>> {
    let pts = crate::pca_2d(vectors, dim);
    let points: Vec<Value> = points
        .into_iter()
        .zip(&pts)
        .map(|(mut v, p)| {
            v["x"] = json!(p[0]);
            v["y"] = json!(p[1]);
            v
        })
        .collect();
    Ok(serde_json::to_vec(&json!({"songs": songs, "sampled": points.len() < songs, "points": points}))?)
}

/// `id`'s file under the library folder `root` (canonical), only if it resolves (symlinks followed) to a
/// file inside it.
pub(crate) fn file_in_library(root: &std::path::Path, id: &str) -> Option<PathBuf> {
    let p = std::fs::canonicalize(root.join(id)).ok()?;
    (p.starts_with(root) && p.is_file()).then_some(p)
}

/// Serves a song's file (ranges and all), or one 404 for "not in the library", "outside the library" and
/// "gone": nothing to learn by probing.
pub(crate) async fn send_audio(path: Option<PathBuf>, req: Request) -> ApiResult {
    let Some(path) = path else {
        return Err(ApiError(StatusCode::NOT_FOUND, "no such song".into()));
    };
    let res = ServeFile::new(path).oneshot(req).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(res.map(Body::new))
}

/// Where the page fetches a song's audio.
pub(crate) fn audio_url(id: &str) -> String {
    format!("/api/audio?id={}", urlencode(id))
}

/// Percent-encodes a query-string value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_plain_file_names() {
        assert_eq!(upload_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(upload_name(Some("C:\\music\\Song (live).mp3")), "Song _live_.mp3");
        assert_eq!(upload_name(Some("..")), "upload");
        assert_eq!(upload_name(None), "upload");
        assert_eq!(urlencode("a b/ç.mp3"), "a%20b/%C3%A7.mp3");
    }
}
