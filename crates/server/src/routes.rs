//! The routes `serve` and `serve --db` share: one handler per path, over a [`Backend`] (a store, reloaded
//! when it changes, or a database). A request's filters become one [`Request`] whichever answers it.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request as HttpRequest, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use soundalike_recommend::{ClusterScope, Library, LibraryError, Request, Scored, SongView};

use crate::api::{audio_url, file_in_library, receive_upload, send_audio, unique_ids, ApiError, ApiResult, SearchQ, SimilarOpts, SimilarPost, SongIdQuery, Upload, UploadQ};
use crate::{Embedder, ServerConfig};

impl From<LibraryError> for ApiError {
    fn from(e: LibraryError) -> Self {
        let status = match e {
            LibraryError::NotFound(_) => StatusCode::NOT_FOUND,
            LibraryError::Invalid(_) | LibraryError::NoSeedGenre => StatusCode::BAD_REQUEST,
            LibraryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// What a server answers from: the library, the settings, and what one kind of library adds (a store's
/// clusters, taste and reloads; a database's address).
pub(crate) trait Backend: Send + Sync + 'static {
    /// The library.
    type Lib: Library;
    /// The library a request reads, whole (a store that reloads hands out one loaded state).
    fn library(&self) -> impl Deref<Target = Self::Lib> + Send + Sync + '_;
    fn cfg(&self) -> &ServerConfig;
    /// The library folder, canonical, when it is on this machine (previews).
    fn root(&self) -> Option<&Path>;
    fn embedder(&self) -> Option<Arc<dyn Embedder>>;
    fn uploads(&self) -> &Arc<tokio::sync::Semaphore>;
    fn map_json(&self) -> Vec<u8>;
    /// The model's name, fingerprint, vector width and class labels. The `lib` arguments are the library
    /// a request took, so all its parts come from one loaded state.
    fn model(&self, lib: &Self::Lib) -> Value;
    /// What `/api/health` adds.
    fn health_extra(&self) -> Value {
        json!({})
    }
    /// What `/api/stats` adds: clusters, taste, when the data was loaded.
    fn stats_extra(&self, lib: &Self::Lib) -> Value;
    /// What `/api/song` adds to the song's fields (a store: its class probabilities and fingerprint).
    fn song_extra(&self, _lib: &Self::Lib, _id: &str, _v: &mut Value) {}
    /// Answers a validated request as the API's JSON; `taste` re-ranks by the served profile (a store's).
    fn similar(&self, req: Request, taste: bool) -> impl std::future::Future<Output = ApiResult<Value>> + Send;
}

/// The shared routes.
pub(crate) fn routes<B: Backend>(r: Router<Arc<B>>, upload_limit: usize) -> Router<Arc<B>> {
    r.route("/api/health", get(health::<B>))
        .route("/api/stats", get(stats::<B>))
        .route("/api/search", get(search::<B>))
        .route("/api/song", get(song::<B>))
        .route("/api/similar", get(similar_get::<B>).post(similar_post::<B>))
        .route("/api/similar/upload", post(similar_upload::<B>).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/api/map", get(map::<B>))
        .route("/api/audio", get(audio::<B>))
}

type St<B> = State<Arc<B>>;

/// Adds `extra`'s fields to `v`.
fn merge(v: &mut Value, extra: Value) {
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
}

async fn health<B: Backend>(State(st): St<B>) -> ApiResult<Json<Value>> {
    let mut v = json!({"status": "ok", "songs": st.library().count().await?});
    merge(&mut v, st.health_extra());
    Ok(Json(v))
}

async fn stats<B: Backend>(State(st): St<B>) -> ApiResult<Json<Value>> {
    let lib = st.library();
    let s = lib.stats().await?;
    let count = |m: &[(String, usize)]| m.iter().map(|(k, n)| json!({"name": k, "songs": n})).collect::<Vec<_>>();
    let cfg = st.cfg();
    let mut v = json!({
        "songs": s.songs,
        "hours": s.hours,
        "search": s.search,
        "genres": count(&s.genres),
        "groups": count(&s.groups),
        "tags": count(&s.tags),
        "tag_min": soundalike_recommend::DEFAULT_TAG_MIN,
        "upload": st.embedder().is_some(),
        "previews": st.root().is_some(),
        "max_upload_bytes": cfg.max_upload_bytes,
        "max_k": cfg.max_k,
    });
    merge(&mut v, st.model(&lib));
    merge(&mut v, st.stats_extra(&lib));
    Ok(Json(v))
}

async fn search<B: Backend>(State(st): St<B>, q: Result<Query<SearchQ>, QueryRejection>) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let found = st.library().search(&q.q, q.limit.unwrap_or(10).clamp(1, 100)).await?;
    Ok(Json(json!({"results": found})))
}

async fn song<B: Backend>(State(st): St<B>, q: Result<Query<SongIdQuery>, QueryRejection>) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let lib = st.library();
    let s = lib.song(&q.id).await?;
    let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
    v["audio"] = json!(audio_url(&s.id));
    st.song_extra(&lib, &s.id, &mut v);
    Ok(Json(v))
}

impl SimilarOpts {
    /// The request these options ask for around `seeds` (ids) and `extra` vectors, checked.
    pub(crate) fn request(&self, seeds: Vec<String>, extra: Vec<Vec<f32>>, max_k: usize) -> ApiResult<Request> {
        let clusters = match (self.cluster, self.same_cluster) {
            (Some(n), _) => ClusterScope::Only(n),
            (None, true) => ClusterScope::Same,
            (None, false) => ClusterScope::Any,
        };
        let req = Request {
            seeds,
            extra,
            k: self.k.unwrap_or(10),
            around: soundalike_recommend::Around {
                genre: self.genre.clone(),
                same_genre: self.same_genre,
                exclude_same_artist: self.exclude_same_artist,
                exclude_same_group: self.exclude_same_group,
                max_per_album: self.max_per_album,
                bpm: self.bpm.as_deref().filter(|s| !s.trim().is_empty()).map(str::parse).transpose().map_err(crate::api::bad)?,
                bpm_near: self.bpm_near,
                bpm_fold: self.bpm_fold,
                key: self.key.as_deref().filter(|s| !s.trim().is_empty()).map(str::parse).transpose().map_err(crate::api::bad)?,
                key_compatible: self.key_compatible,
                key_rule: self.key_rule.as_deref().map(str::parse).transpose().map_err(crate::api::bad)?.unwrap_or_default(),
                tags: self
                    .tags
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .filter(|t| !t.trim().is_empty())
                    .map(soundalike_recommend::tags::resolve)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(crate::api::bad)?,
                tag_min: self.tag_min,
            },
            clusters,
        };
        Ok(req.validate(max_k)?)
    }
}

/// The API's answer: the query songs, and each result with its audio address, the listener's mark
/// (`mark_of`) and, re-ranked by taste, its probability of being liked.
pub(crate) fn answer_json(query: &[SongView], results: Vec<(Scored, Option<f32>)>, taste: bool, notes: &[String], mark_of: &dyn Fn(&str) -> Option<soundalike_recommend::Mark>) -> Value {
    json!({
        "query": query,
        "taste": taste,
        "notes": notes,
        "results": results.into_iter().map(|(r, p)| {
            // The song's fields, then rank and score (serde's flatten is slow on this hot path).
            let mut v = serde_json::to_value(&r.song).unwrap_or(Value::Null);
            v["rank"] = json!(r.rank);
            v["score"] = json!(r.score);
            v["audio"] = json!(audio_url(&r.song.id));
            v["mark"] = json!(mark_of(&r.song.id));
            if let Some(p) = p {
                v["p_like"] = json!(p);
            }
            v
        }).collect::<Vec<_>>(),
    })
}

// The query string is read twice (id, then the options): `serde(flatten)` would turn numbers into strings.
async fn similar_get<B: Backend>(State(st): St<B>, q: Result<Query<SongIdQuery>, QueryRejection>, o: Result<Query<SimilarOpts>, QueryRejection>) -> ApiResult<Json<Value>> {
    let (Query(q), Query(o)) = (q?, o?);
    let req = o.request(vec![q.id], vec![], st.cfg().max_k)?;
    Ok(Json(st.similar(req, o.taste).await?))
}

async fn similar_post<B: Backend>(State(st): St<B>, body: Result<Json<SimilarPost>, JsonRejection>) -> ApiResult<Json<Value>> {
    let Json(b) = body?;
    let ids = unique_ids(&b.ids, st.cfg().max_ids)?.into_iter().cloned().collect();
    let req = b.opts.request(ids, vec![], st.cfg().max_k)?;
    Ok(Json(st.similar(req, b.opts.taste).await?))
}

async fn similar_upload<B: Backend>(State(st): St<B>, q: Result<Query<UploadQ>, QueryRejection>, o: Result<Query<SimilarOpts>, QueryRejection>, body: Body) -> ApiResult<Response> {
    let (Query(q), Query(o)) = (q?, o?);
    let (vector, shown) = match receive_upload(st.embedder(), st.uploads(), st.cfg(), q.name.as_deref(), body).await? {
        Upload::Vector(v, n) => (v, n),
        Upload::Busy(res) => return Ok(res),
    };
    let req = o.request(vec![], vec![vector], st.cfg().max_k)?;
    let mut out = st.similar(req, o.taste).await?;
    out["query"] = json!([{"title": shown, "upload": true}]);
    Ok(Json(out).into_response())
}

async fn map<B: Backend>(State(st): St<B>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], st.map_json()).into_response()
}

/// A song's file, only for songs of the library and only from inside its folder.
async fn audio<B: Backend>(State(st): St<B>, q: Result<Query<SongIdQuery>, QueryRejection>, req: HttpRequest) -> ApiResult {
    let Query(q) = q?;
    let known = st.root().is_some() && st.library().song(&q.id).await.is_ok();
    let path = st.root().filter(|_| known).and_then(|root| file_in_library(root, &q.id));
    send_audio(path, req).await
}
