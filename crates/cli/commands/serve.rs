//! `serve`: the web page and JSON API (crates/server), with the store's model for uploads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use std::sync::{Arc, Mutex};

use soundalike_recommend::{AnnParams, Catalog, Method};
use soundalike_server::{AppState, EmbedError, Embedder, Reload, ServerConfig};

use crate::embedder::FileEmbedder;
use crate::flags::parse_genre_source;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Store folder (from `soundalike embed`); or, without one, the PostgreSQL database of --db,
    /// $SOUNDALIKE_DB or $DATABASE_URL.
    pub store: Option<PathBuf>,
    /// Serve from PostgreSQL + pgvector (a database `soundalike push` filled): stateless, so several
    /// processes can share one database. Clusters and listener profiles need a store.
    #[arg(long, conflicts_with_all = ["store", "profile", "exact"])]
    pub db: Option<String>,
    /// With --db: connections in this process's pool.
    #[arg(long, default_value_t = 8)]
    pub db_pool: usize,
    /// Model for uploads (default: models/<the store's model name>); without it uploads are off.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. The default serves this machine only; 0.0.0.0 opens it to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Largest upload, in MB (1 to 4096).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_upload_mb: u64,
    /// Another host name the page may be reached by (repeatable; e.g. this machine's name). Serving on a
    /// loopback address, only loopback names are accepted otherwise.
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// Seconds a request may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// A listener's profile folder (see `soundalike taste`; created if absent): the page shows like and
    /// dislike buttons, a "for you" list and a taste ranking, and saves the marks there.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Always brute-force search (default: exact under 2,000 songs, HNSW above).
    #[arg(long)]
    pub exact: bool,
    /// Where a song's genre comes from for --genre, --same-genre and the tables: `tag` (the genre tag or CSV
    /// column recorded at embed time), `predicted` (the model's predicted genre) or `either` (the tag where
    /// there is one, else the prediction).
    #[arg(long, default_value = "either", value_parser = parse_genre_source)]
    pub genre_source: soundalike_recommend::GenreSource,
    /// Follow the store: when `embed`, `index` or `clusters` change it, load it afresh beside the served
    /// data and swap it in, at most once per this many seconds (0: never; serve what was loaded at start).
    #[arg(long, default_value_t = 3.0, conflicts_with = "db")]
    pub reload_every: f64,
}

/// The model behind a lock: one upload runs inference at a time (it uses every core anyway).
struct ModelEmbedder(Mutex<FileEmbedder>);

impl Embedder for ModelEmbedder {
    fn embed_file(&self, path: &Path) -> Result<Vec<f32>, EmbedError> {
        let e = self.0.lock().map_err(|_| EmbedError::Model("the model is unavailable after an earlier failure".into()))?;
        e.embed(path).map_err(|e| match e.downcast_ref::<soundalike_audio::AudioError>() {
            Some(a) => EmbedError::BadFile { reason: a.reason() },
            None => EmbedError::Model(format!("{e:#}")),
        })
    }
}

fn config(a: &ServeArgs) -> ServerConfig {
    ServerConfig {
        max_upload_bytes: (a.max_upload_mb as usize) << 20,
        allowed_hosts: ServerConfig::hosts_for(&a.host, &a.allow_hosts),
        request_timeout: std::time::Duration::from_secs(a.timeout.max(1)),
        ..ServerConfig::default()
    }
}

fn ready(songs: usize, addr: std::net::SocketAddr, from: &str) {
    println!("serving {songs} songs{from} on http://{addr}/ (Ctrl-C stops)");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// `serve --db`: the page and API answered from PostgreSQL.
fn serve_db(a: ServeArgs) -> Result<ExitCode> {
    let url = crate::util::db_url(a.db.as_deref())?;
    let model = a.model.clone();
    let embedder_for = |meta: &soundalike_db::Meta| -> Option<Arc<dyn Embedder>> {
        let dir = model.clone().unwrap_or_else(|| Path::new("models").join(&meta.model_name));
        match FileEmbedder::load(&dir, &meta.model_fingerprint, &meta.model_name) {
            Ok(e) => Some(Arc::new(ModelEmbedder(Mutex::new(e)))),
            Err(e) => {
                eprintln!("note: uploads are off: {e:#}");
                None
            }
        }
    };
    let shown = soundalike_db::redact(&url);
    soundalike_server::run_db(&url, a.db_pool, None, a.genre_source, embedder_for, config(&a), &a.host, a.port, |addr, songs| ready(songs, addr, &format!(" from {shown}")))?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let Some(store) = a.store.clone() else { return serve_db(a) };
    if !(a.reload_every >= 0.0 && a.reload_every <= 86_400.0) {
        anyhow::bail!("--reload-every {}: give seconds from 0 (never) to 86400", a.reload_every);
    }
    let method = if a.exact { Method::Exact } else { Method::Auto };
    let genre_source = a.genre_source;
    // A reload never takes the store's lock (a writer about to start must not find it held) and never
    // writes: `embed` saves the index it updates, and the server brings it in step in memory otherwise.
    let open = move |dir: &Path, save: bool| -> Result<Catalog> {
        let p = AnnParams::default();
        let mut cat = if save { Catalog::open(dir, method, &p)? } else { Catalog::open_without_saving(dir, method, &p)? };
        cat.use_genres(genre_source);
        Ok(cat)
    };
    let cat = open(&store, true)?;
    let model_dir = a.model.clone().unwrap_or_else(|| Path::new("models").join(&cat.header.model_name));
    let embedder: Option<Arc<dyn Embedder>> = match FileEmbedder::load(&model_dir, &cat.header.model_fingerprint, &cat.header.model_name) {
        Ok(e) => Some(Arc::new(ModelEmbedder(Mutex::new(e)))),
        Err(e) if a.model.is_some() => return Err(e),
        Err(e) => {
            eprintln!("note: uploads are off: {e:#}");
            None
        }
    };
    let cfg = config(&a);
    let songs = cat.len();
    let mut state = AppState::new(cat, embedder, cfg)?;
    if a.reload_every > 0.0 {
        let gap = std::time::Duration::from_secs_f64(a.reload_every);
        let dir = store.clone();
        state = state.reloading(Reload {
            dir: store.clone(),
            open: Box::new(move || open(&dir, false)),
            check_every: gap.min(std::time::Duration::from_secs(1)),
            min_gap: gap,
        });
    }
    if let Some(dir) = &a.profile {
        state = state.with_profile(dir)?;
    }
    soundalike_server::run(state, &a.host, a.port, |addr| ready(songs, addr, ""))?;
    Ok(ExitCode::SUCCESS)
}
