//! The HTTP API, in process (no socket): answers, filters, limits, and what it refuses to serve.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use soundalike_recommend::{normalise, AnnParams, Catalog, Method, SongRecord, Store, StoreHeader, STORE_FORMAT_VERSION};
use soundalike_server::{router, AppState, EmbedError, Embedder, ServerConfig, POST_HEADER};
use tower::ServiceExt;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/tiny");

/// Embeds by file size (deterministic), refuses files that do not start like an mp3.
struct FakeEmbedder;

impl Embedder for FakeEmbedder {
    fn embed_file(&self, path: &Path) -> Result<Vec<f32>, EmbedError> {
        let b = std::fs::read(path).map_err(|e| EmbedError::BadFile { reason: e.to_string() })?;
        if !(b.starts_with(b"ID3") || b.starts_with(&[0xFF])) {
            return Err(EmbedError::BadFile { reason: "not a supported audio file".into() });
        }
        let mut v = vec![0f32; 8];
        v[0] = 1.0;
        v[1] = (b.len() % 7) as f32 / 10.0;
        normalise(&mut v);
        Ok(v)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    _outside: tempfile::TempDir,
    lib: PathBuf,
    store: PathBuf,
}

/// A library of 12 songs (real mp3s, copied from datasets/tiny), 3 genres, plus a symlink that points
/// out of the library; a store over all of them with synthetic vectors.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.mp3");
    std::fs::write(&secret, b"ID3 not yours").unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(lib.join("a b")).unwrap();
    let src = Path::new(TINY).join("wesnoth-1.16-music/battle.mp3");
    let genres = ["rock", "jazz", "classical"];
    let h = StoreHeader {
        format_version: STORE_FORMAT_VERSION,
        model_fingerprint: "m1".into(),
        model_name: "test".into(),
        frontend: json!({}),
        labels: vec!["x".into(), "y".into()],
        dim: 8,
        library_root: lib.clone(),
        metadata_version: soundalike_recommend::METADATA_VERSION,
    };
    let store_dir = dir.path().join("store");
    let mut store = Store::open_or_create(&store_dir, h).unwrap();
    for i in 0..13 {
        let id = if i == 12 { "a b/link.mp3".to_string() } else { format!("a b/s{i:02}.mp3") };
        if i == 12 {
            std::os::unix::fs::symlink(&secret, lib.join(&id)).unwrap();
        } else {
            std::fs::copy(&src, lib.join(&id)).unwrap();
        }
        let mut v: Vec<f32> = (0..8).map(|j| ((i * 7 + j * 3) % 11) as f32 + if j == i % 3 { 20.0 } else { 0.0 }).collect();
        normalise(&mut v);
        store
            .put(SongRecord {
                id: id.clone(),
                title: format!("Song {i}"),
                artist: Some(format!("Artist {}", i % 4)),
                album: None,
                genre: Some(genres[i % 3].into()),
                group: Some(format!("group{}", i % 2)),
                duration_s: 15.0,
                from_path: Vec::new(),
                fingerprint: format!("fp{i}"),
                size: 1,
                mtime: 1,
                probs: vec![0.3, 0.7],
                vector: v,
                facts: None,
                tags: Some(tags_of(i)),
            })
            .unwrap();
    }
    store.compact().unwrap();
    Fixture { _dir: dir, _outside: outside, lib, store: store_dir }
}

/// Song `i`'s tags: even songs "piano" (0.6; song 0 only 0.1), odd ones "techno" (0.5), all "ambient"
/// (0.05, under the default least probability).
fn tags_of(i: usize) -> soundalike_recommend::SongTags {
    use soundalike_recommend::TagSource;
    let mut t = soundalike_recommend::SongTags::empty(2);
    match i {
        0 => t.set(TagSource::Mtt, "piano", 0.1),
        i if i % 2 == 0 => t.set(TagSource::Mtt, "piano", 0.6),
        _ => t.set(TagSource::Mtt, "techno", 0.5),
    }
    t.set(TagSource::Msd, "ambient", 0.05);
    t
}

fn app(f: &Fixture, embedder: bool, cfg: ServerConfig) -> axum::Router {
    let cat = Catalog::open(&f.store, Method::Auto, &AnnParams::default()).unwrap();
    let e: Option<Arc<dyn Embedder>> = if embedder { Some(Arc::new(FakeEmbedder)) } else { None };
    router(Arc::new(AppState::new(cat, e, cfg).unwrap()))
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (parts.status, parts.headers, to_bytes(body, usize::MAX).await.unwrap().to_vec())
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let (s, _, b) = call(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn post(app: &axum::Router, uri: &str, ct: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let (s, _, b) = call(app, Request::post(uri).header(header::CONTENT_TYPE, ct).header(POST_HEADER, "1").body(Body::from(body)).unwrap()).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<String> {
    v["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn health_stats_search_song_and_map() {
    let f = fixture();
    let app = app(&f, true, ServerConfig::default());
    let (s, v) = get(&app, "/api/health").await;
    assert_eq!((s, v["songs"].as_u64()), (StatusCode::OK, Some(13)));
    let (_, v) = get(&app, "/api/stats").await;
    assert_eq!(v["genres"], json!([{"name": "classical", "songs": 4}, {"name": "jazz", "songs": 4}, {"name": "rock", "songs": 5}]));
    assert_eq!(v["search"], "exact");
    assert_eq!(v["upload"], true);
    let (_, v) = get(&app, "/api/search?q=song%201&limit=50").await;
    // Every word must match somewhere: "Song 1", "Song 10", "Song 11", "Song 12" by title (listed first,
    // as their titles start with the text), "Song 5" and "Song 9" by their artist, "Artist 1".
    let titles: Vec<&str> = v["results"].as_array().unwrap().iter().map(|x| x["title"].as_str().unwrap()).collect();
    // (Song 12 is "a b/link.mp3", first in id order.)
    assert_eq!(titles, ["Song 12", "Song 1", "Song 10", "Song 11", "Song 5", "Song 9"]);
    let (s, v) = get(&app, "/api/search").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = get(&app, "/api/song?id=a%20b/s03.mp3").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((v["title"].as_str(), v["genre"].as_str(), v["predicted"].as_str()), (Some("Song 3"), Some("rock"), Some("y")));
    assert_eq!(v["audio"], "/api/audio?id=a%20b/s03.mp3");
    let (s, _) = get(&app, "/api/song?id=nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v) = get(&app, "/api/map").await;
    let pts = v["points"].as_array().unwrap();
    assert_eq!(pts.len(), 13);
    assert!(pts.iter().all(|p| p["x"].as_f64().unwrap().abs() <= 1.0 && p["y"].as_f64().unwrap().abs() <= 1.0));
    // A big library is sampled for the map.
    let small = app_with_map_limit(&f, 5);
    let (_, v) = get(&small, "/api/map").await;
    assert_eq!((v["points"].as_array().unwrap().len(), v["sampled"].as_bool()), (5, Some(true)));
}

fn app_with_map_limit(f: &Fixture, n: usize) -> axum::Router {
    app(f, false, ServerConfig { map_points: n, ..ServerConfig::default() })
}

#[tokio::test]
async fn similar_songs_with_filters_and_playlists() {
    let f = fixture();
    let app = app(&f, true, ServerConfig::default());
    let (s, v) = get(&app, "/api/similar?id=a%20b/s00.mp3&k=5").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = ids(&v);
    assert_eq!(r.len(), 5);
    assert!(!r.contains(&"a b/s00.mp3".to_string()));
    let scores: Vec<f64> = v["results"].as_array().unwrap().iter().map(|x| x["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    // Target genre: k results, all of that genre (case-insensitive), even though most neighbours are not.
    let (_, v) = get(&app, "/api/similar?id=a%20b/s00.mp3&k=4&genre=JAZZ").await;
    assert_eq!(v["results"].as_array().unwrap().len(), 4);
    assert!(v["results"].as_array().unwrap().iter().all(|x| x["genre"] == "jazz"));
    // Same genre and other artists / groups.
    let (_, v) = get(&app, "/api/similar?id=a%20b/s00.mp3&k=10&same_genre=true").await;
    assert!(v["results"].as_array().unwrap().iter().all(|x| x["genre"] == "rock"));
    let (_, v) = get(&app, "/api/similar?id=a%20b/s00.mp3&k=12&exclude_same_artist=true&exclude_same_group=true").await;
    assert!(v["results"].as_array().unwrap().iter().all(|x| x["artist"] != "Artist 0" && x["group"] != "group0"));
    assert!(!v["results"].as_array().unwrap().is_empty());
    // A playlist (POST JSON): none of the seeds comes back.
    let body = json!({"ids": ["a b/s00.mp3", "a b/s01.mp3"], "k": 3, "genre": "classical"});
    let (s, v) = post(&app, "/api/similar", "application/json", body.to_string().into_bytes()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["query"].as_array().unwrap().len(), 2);
    assert!(ids(&v).iter().all(|i| i != "a b/s00.mp3" && i != "a b/s01.mp3"));
    assert!(v["results"].as_array().unwrap().iter().all(|x| x["genre"] == "classical"));
}

#[tokio::test]
async fn bad_requests_get_4xx_with_a_message() {
    let f = fixture();
    let app = app(&f, true, ServerConfig::default());
    for (uri, want) in [
        ("/api/similar?id=nope", StatusCode::NOT_FOUND),
        ("/api/similar?id=a%20b/s00.mp3&k=0", StatusCode::BAD_REQUEST),
        ("/api/similar?id=a%20b/s00.mp3&k=abc", StatusCode::BAD_REQUEST),
        ("/api/similar?id=a%20b/s00.mp3&k=-1", StatusCode::BAD_REQUEST),
        ("/api/similar?id=a%20b/s00.mp3&k=100000", StatusCode::BAD_REQUEST),
        ("/api/similar?id=a%20b/s00.mp3&genre=polka", StatusCode::BAD_REQUEST),
        ("/api/similar?id=a%20b/s00.mp3&same_genre=maybe", StatusCode::BAD_REQUEST),
        ("/api/similar?id=a%20b/s00.mp3&max_per_album=0", StatusCode::BAD_REQUEST),
        ("/api/similar", StatusCode::BAD_REQUEST),
        ("/api/nothing", StatusCode::NOT_FOUND),
    ] {
        let (s, v) = get(&app, uri).await;
        assert_eq!(s, want, "{uri}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{uri}: {v}");
    }
    for (body, ct, want) in [
        ("{\"ids\": [", "application/json", StatusCode::BAD_REQUEST),
        ("{\"ids\": []}", "application/json", StatusCode::BAD_REQUEST),
        ("{\"ids\": \"a\"}", "application/json", StatusCode::UNPROCESSABLE_ENTITY),
        ("{\"ids\": [\"a b/s00.mp3\"], \"k\": \"ten\"}", "application/json", StatusCode::UNPROCESSABLE_ENTITY),
        ("{\"ids\": [\"a b/s00.mp3\"]}", "text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let (s, v) = post(&app, "/api/similar", ct, body.as_bytes().to_vec()).await;
        assert_eq!(s, want, "{body}: {v}");
        assert!(v["error"].as_str().is_some(), "{body}: {v}");
    }
}

#[tokio::test]
async fn audio_is_served_with_ranges_and_only_from_the_library() {
    let f = fixture();
    let app = app(&f, true, ServerConfig::default());
    let size = std::fs::metadata(f.lib.join("a b/s01.mp3")).unwrap().len();
    let (s, h, b) = call(&app, Request::get("/api/audio?id=a%20b/s01.mp3").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.len() as u64, size);
    assert_eq!(h[header::CONTENT_TYPE], "audio/mpeg");
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    let req = Request::get("/api/audio?id=a%20b/s01.mp3").header(header::RANGE, "bytes=100-199").body(Body::empty()).unwrap();
    let (s, h, b) = call(&app, req).await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(b.len(), 100);
    assert_eq!(h[header::CONTENT_RANGE], format!("bytes 100-199/{size}").as_str());
    assert_eq!(b, std::fs::read(f.lib.join("a b/s01.mp3")).unwrap()[100..200]);
    let req = Request::get("/api/audio?id=a%20b/s01.mp3").header(header::RANGE, format!("bytes={}-", size + 10)).body(Body::empty()).unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::RANGE_NOT_SATISFIABLE);
    // Anything that is not a song of the store, or leaves the library, is a plain 404.
    let store_json = f.store.join("store.json");
    for uri in [
        "/api/audio?id=../store/store.json".to_string(),
        "/api/audio?id=..%2Fstore%2Fstore.json".to_string(),
        "/api/audio?id=%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".to_string(),
        format!("/api/audio?id={}", store_json.display()),
        "/api/audio?id=/etc/passwd".to_string(),
        "/api/audio?id=a%20b/link.mp3".to_string(),
        "/api/audio?id=a%20b".to_string(),
        "/../../etc/passwd".to_string(),
        "/api/../../etc/passwd".to_string(),
    ] {
        let (s, _, b) = call(&app, Request::get(uri.as_str()).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert!(!String::from_utf8_lossy(&b).contains("not yours"), "{uri}");
    }
    // A song deleted after the server started: 404, not 500.
    std::fs::remove_file(f.lib.join("a b/s02.mp3")).unwrap();
    assert_eq!(get(&app, "/api/audio?id=a%20b/s02.mp3").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn uploads_are_bounded_and_bad_ones_named() {
    let f = fixture();
    let app = app(&f, true, ServerConfig { max_upload_bytes: 64 << 10, ..ServerConfig::default() });
    let mp3 = std::fs::read(Path::new(TINY).join("wesnoth-1.16-music/battle.mp3")).unwrap();
    let small = mp3[..60_000].to_vec();
    let (s, v) = post(&app, "/api/similar/upload?name=My%20Song.mp3&k=3&genre=rock", "audio/mpeg", small.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["query"][0]["title"], "My Song.mp3");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    assert!(v["results"].as_array().unwrap().iter().all(|x| x["genre"] == "rock"));
    let (s, v) = post(&app, "/api/similar/upload?name=notes.txt", "text/plain", b"just some text".to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let e = v["error"].as_str().unwrap();
    assert!(e.starts_with("notes.txt: ") && e.contains("not a supported audio file") && !e.contains("/tmp"), "{e}");
    assert_eq!(post(&app, "/api/similar/upload?name=x.mp3", "audio/mpeg", vec![]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(post(&app, "/api/similar/upload?name=x.mp3", "audio/mpeg", mp3.clone()).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(post(&app, "/api/similar/upload?name=x.mp3&k=0", "audio/mpeg", small.clone()).await.0, StatusCode::BAD_REQUEST);
    // Without a model, uploads are refused with a reason.
    let off = app_with_map_limit(&f, 100);
    let (s, v) = post(&off, "/api/similar/upload?name=x.mp3", "audio/mpeg", small).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v["error"].as_str().unwrap().contains("--model"));
}

#[tokio::test]
async fn the_page_is_self_contained() {
    let f = fixture();
    let app = app(&f, true, ServerConfig::default());
    for (uri, ct) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let (s, h, b) = call(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ct), "{uri}");
        let text = String::from_utf8(b).unwrap();
        // Nothing from a CDN or any other host: users' machines may be offline. (The SVG namespace is
        // an identifier, not a download.)
        let external = text.replace("http://www.w3.org/2000/svg", "");
        assert!(!external.contains("http://") && !external.contains("https://") && !external.contains("//cdn"), "{uri}");
    }
}

struct SlowEmbedder;

impl Embedder for SlowEmbedder {
    fn embed_file(&self, _: &Path) -> Result<Vec<f32>, EmbedError> {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        Ok(vec![1.0; 8])
    }
}

#[tokio::test]
async fn slow_requests_time_out() {
    let f = fixture();
    let cat = Catalog::open(&f.store, Method::Auto, &AnnParams::default()).unwrap();
    let cfg = ServerConfig { request_timeout: std::time::Duration::from_millis(200), ..ServerConfig::default() };
    let app = router(Arc::new(AppState::new(cat, Some(Arc::new(SlowEmbedder)), cfg).unwrap()));
    let t = std::time::Instant::now();
    let (s, _) = post(&app, "/api/similar/upload?name=x.mp3", "audio/mpeg", b"ID3".to_vec()).await;
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT);
    assert!(t.elapsed() < std::time::Duration::from_millis(1400));
    // Other requests are still answered.
    assert_eq!(get(&app, "/api/health").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_store_whose_library_moved_still_answers_without_previews() {
    let f = fixture();
    std::fs::rename(&f.lib, f.lib.with_file_name("moved")).unwrap();
    let app = app(&f, false, ServerConfig::default());
    let (_, v) = get(&app, "/api/stats").await;
    assert_eq!(v["previews"], false);
    let (s, v) = get(&app, "/api/similar?id=a%20b/s00.mp3&k=3").await;
    assert_eq!((s, v["results"].as_array().map(Vec::len)), (StatusCode::OK, Some(3)));
    assert_eq!(get(&app, "/api/audio?id=a%20b/s00.mp3").await.0, StatusCode::NOT_FOUND);
}

/// Guards from issue 16: the Host check, the POST rule, nosniff, JSON errors, bounded playlists, uploads
/// that wait for a slot before their body is read.
#[tokio::test]
async fn foreign_hosts_simple_posts_and_oversized_playlists_are_refused() {
    let f = fixture();
    let app = app(&f, true, ServerConfig::default());
    let req = |host: &str| Request::get("/api/health").header(header::HOST, host).body(Body::empty()).unwrap();
    for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080"] {
        let (s, h, _) = call(&app, req(ok)).await;
        assert_eq!(s, StatusCode::OK, "{ok}");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    for bad in ["evil.example:8080", "127.0.0.1.evil.example", "attacker.test"] {
        let (s, h, b) = call(&app, req(bad)).await;
        assert_eq!(s, StatusCode::MISDIRECTED_REQUEST, "{bad}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(serde_json::from_slice::<Value>(&b).unwrap()["error"].as_str().unwrap().contains("--allow-host"));
    }
    // Names given with --allow-host, and any name when serving on a public address.
    let cfg = ServerConfig { allowed_hosts: ServerConfig::hosts_for("127.0.0.1", &["studio.lan".into()]), ..ServerConfig::default() };
    assert_eq!(call(&app_cfg(&f, cfg), req("studio.lan:8080")).await.0, StatusCode::OK);
    assert_eq!(ServerConfig::hosts_for("0.0.0.0", &[]), None);

    // A cross-site form/text POST (no preflight) is refused before anything is read or embedded.
    let mp3 = std::fs::read(Path::new(TINY).join("wesnoth-1.16-music/battle.mp3")).unwrap();
    let plain = Request::post("/api/similar/upload?name=x.mp3").header(header::CONTENT_TYPE, "text/plain").body(Body::from(mp3[..60_000].to_vec())).unwrap();
    let (s, _, b) = call(&app, plain).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&b).contains(POST_HEADER));

    // Playlists: duplicates count once; more than max_ids different songs is a 400, not a 10 MB answer.
    let one = "a b/s00.mp3";
    let many = json!({"ids": vec![one; 60_000], "k": 3});
    let (s, v) = post(&app, "/api/similar", "application/json", serde_json::to_vec(&many).unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["query"].as_array().unwrap().len(), 1);
    let cfg = ServerConfig { max_ids: 1, ..ServerConfig::default() };
    let two = json!({"ids": [one, "a b/s01.mp3"]});
    let (s, v) = post(&app_cfg(&f, cfg), "/api/similar", "application/json", serde_json::to_vec(&two).unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("at most 1"), "{v}");
}

fn app_cfg(f: &Fixture, cfg: ServerConfig) -> axum::Router {
    app(f, true, cfg)
}

#[tokio::test]
async fn uploads_over_the_slots_get_503_before_their_body_is_read() {
    let f = fixture();
    let cat = Catalog::open(&f.store, Method::Auto, &AnnParams::default()).unwrap();
    let cfg = ServerConfig { upload_concurrency: 1, ..ServerConfig::default() };
    let app = router(Arc::new(AppState::new(cat, Some(Arc::new(SlowEmbedder)), cfg).unwrap()));
    let slow = tokio::spawn({
        let app = app.clone();
        async move { post(&app, "/api/similar/upload?name=x.mp3", "audio/mpeg", b"ID3".to_vec()).await.0 }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A body that would never end: it must not be read at all.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
    let stream = tokio_stream_from(rx);
    let req = Request::post("/api/similar/upload?name=y.mp3").header(header::CONTENT_TYPE, "audio/mpeg").header(POST_HEADER, "1").body(Body::from_stream(stream)).unwrap();
    let (s, h, b) = call(&app, req).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.contains_key(header::RETRY_AFTER));
    assert!(serde_json::from_slice::<Value>(&b).unwrap()["error"].is_string());
    drop(tx);
    assert_eq!(slow.await.unwrap(), StatusCode::OK, "the first upload goes on");
}

/// A body stream from a channel (no extra dependency).
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>,
) -> impl futures_core_stream::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
    futures_core_stream::poll_fn(move |cx| rx.poll_recv(cx))
}

mod futures_core_stream {
    pub use futures_util::stream::{poll_fn, Stream};
}

#[tokio::test]
async fn time_outs_and_body_limits_answer_json() {
    let f = fixture();
    let cat = Catalog::open(&f.store, Method::Auto, &AnnParams::default()).unwrap();
    let cfg = ServerConfig { request_timeout: std::time::Duration::from_millis(200), ..ServerConfig::default() };
    let app = router(Arc::new(AppState::new(cat, Some(Arc::new(SlowEmbedder)), cfg).unwrap()));
    let (s, v) = post(&app, "/api/similar/upload?name=x.mp3", "audio/mpeg", b"ID3".to_vec()).await;
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT);
    assert!(v["error"].is_string(), "{v}");
    let app = app_cfg(&f, ServerConfig { max_upload_bytes: 1000, ..ServerConfig::default() });
    let (s, v) = post(&app, "/api/similar/upload?name=x.mp3", "audio/mpeg", vec![7u8; 5000]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["error"].as_str().unwrap().contains("over"), "{v}");
}

/// A client that never finishes its headers is cut off after the header time-out (slowloris).
#[test]
fn slow_header_clients_are_disconnected() {
    use std::io::{Read, Write};
    let f = fixture();
    let cat = Catalog::open(&f.store, Method::Auto, &AnnParams::default()).unwrap();
    let cfg = ServerConfig { header_timeout: std::time::Duration::from_millis(300), ..ServerConfig::default() };
    let state = AppState::new(cat, None, cfg).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || soundalike_server::run(state, "127.0.0.1", 0, |a| tx.send(a).unwrap()));
    let addr = rx.recv().unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert!(t.elapsed() < std::time::Duration::from_secs(4), "connection held {:?}", t.elapsed());
    // A complete request on a new connection is still answered.
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

struct BrokenModel;

impl Embedder for BrokenModel {
    fn embed_file(&self, _: &Path) -> Result<Vec<f32>, EmbedError> {
        Err(EmbedError::Model("the model ran out of memory".into()))
    }
}

/// Issue 31, item 4: a file the uploader must fix is a 422 named by the upload's name; a model that fails
/// is the server's fault, a 500.
#[tokio::test]
async fn a_failing_model_is_a_500_and_a_bad_file_a_422() {
    let f = fixture();
    let cat = Catalog::open(&f.store, Method::Auto, &AnnParams::default()).unwrap();
    let broken = router(Arc::new(AppState::new(cat, Some(Arc::new(BrokenModel)), ServerConfig::default()).unwrap()));
    let (s, v) = post(&broken, "/api/similar/upload?name=song.mp3", "audio/mpeg", b"ID3 some bytes".to_vec()).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert!(v["error"].as_str().unwrap().contains("out of memory"), "{v}");
    let app = app(&f, true, ServerConfig::default());
    let (s, v) = post(&app, "/api/similar/upload?name=song.mp3", "audio/mpeg", b"not audio".to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("song.mp3: "), "{v}");
}

#[tokio::test]
async fn tags_are_counted_filtered_searched_and_shown_as_guesses() {
    let f = fixture();
    let app = app(&f, false, ServerConfig::default());
    // The library's tags with counts: only what the taggers give at the default least probability.
    let (_, v) = get(&app, "/api/stats").await;
    assert_eq!(v["tags"], json!([{"name": "piano", "songs": 6}, {"name": "techno", "songs": 6}]), "{v}");
    assert_eq!(v["tag_min"].as_f64(), Some(0.2f32 as f64));
    // Every song carries its top tags with the tagger and the probability.
    let (_, v) = get(&app, "/api/song?id=a%20b/s02.mp3").await;
    assert_eq!(v["tags"][0], json!({"tag": "piano", "source": "mtt", "prob": 0.6}), "{v}");
    // A tag filter: exactly the songs with it (s00 has piano at 0.1 only; "link" is song 12), AND over
    // several.
    let (s, v) = get(&app, "/api/similar?id=a%20b/s01.mp3&k=20&tags=Piano").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut got = ids(&v);
    got.sort();
    assert_eq!(got, ["a b/link.mp3", "a b/s02.mp3", "a b/s04.mp3", "a b/s06.mp3", "a b/s08.mp3", "a b/s10.mp3"], "{v}");
    let (_, v) = get(&app, "/api/similar?id=a%20b/s01.mp3&k=20&tags=piano&tag_min=0.05").await;
    assert_eq!(ids(&v).len(), 7, "a lower least probability lets s00 in: {v}");
    let (_, v) = get(&app, "/api/similar?id=a%20b/s01.mp3&k=20&tags=piano,techno").await;
    assert!(ids(&v).is_empty(), "no song has both: {v}");
    let (s, v) = get(&app, "/api/similar?id=a%20b/s01.mp3&tags=pianno").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("\"piano\""), "{v}");
    let (s, _) = get(&app, "/api/similar?id=a%20b/s01.mp3&tags=piano&tag_min=2").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Text search finds songs by tag (after title matches, of which there are none here).
    let (_, v) = get(&app, "/api/search?q=techno&limit=50").await;
    let titles: Vec<&str> = v["results"].as_array().unwrap().iter().map(|x| x["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), 6, "{v}");
    assert!(titles.iter().all(|t| t.trim_start_matches("Song ").parse::<usize>().unwrap() % 2 == 1), "{v}");
}
