//! A store's song vectors in PostgreSQL with pgvector (0.8 or newer), for libraries and request rates past one
//! machine: [`push`] writes the songs and their vectors (incrementally, bulk-loaded with `COPY`, in one
//! transaction, so a push killed half-way leaves the previous state readable) with an HNSW index (cosine);
//! [`DbCatalog`] answers the same recommendations as the in-process index, filters included, through
//! pgvector's iterative index scans (a selective filter still returns k whenever k songs pass).
//!
//! Two tables: `soundalike_meta` (format version, model fingerprint and name, vector width, class labels,
//! library folder, vector precision) and `soundalike_songs`. Every push and every query checks the meta row
//! against the store or the caller's model and refuses a mismatch. The URL's password is never printed
//! ([`redact`]).
//!
//! ```no_run
//! # async fn f() -> Result<(), soundalike_db::DbError> {
//! use soundalike_db::{push, Db, DbCatalog, Precision};
//! let store = soundalike_recommend::Store::open(std::path::Path::new("my-store")).unwrap();
//! let db = Db::connect("postgres://me:secret@localhost/music", 4).await?;
//! push(&db, &store, Precision::Half).await?;
//! let cat = DbCatalog::open(db, Some(&store.header.model_fingerprint)).await?;
//! let song = cat.resolve("Blue in Green").await?;
//! let recs = cat.recommend(&cat.vector(&song.id).await?, 10, &Default::default()).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::SinkExt;
use soundalike_recommend::{Answer, ClusterScope, Filters, GenreSource, Library, LibraryError, LibraryStats, Request, Scored, SongRecord, SongTags, SongView, Store, TagSource};
use tokio_postgres::NoTls;

/// Version of the table layout.
pub const DB_FORMAT_VERSION: u32 = 1;

/// pgvector older than this has no iterative index scans.
pub const MIN_PGVECTOR: (u32, u32) = (0, 8);

/// Errors, each naming what is wrong (never the password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL could not be parsed.
    #[error("{url}: not a PostgreSQL URL ({reason}); write postgres://USER:PASSWORD@HOST:PORT/DATABASE")]
    Url {
        /// The URL, password hidden.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server could not be reached or refused the login.
    #[error("{url}: {reason}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// Why.
        reason: String,
    },
    /// The database holds something else (another model's vectors, another format, no pgvector).
    #[error("{url}: {reason}")]
    Incompatible {
        /// The URL, password hidden.
        url: String,
        /// What does not match.
        reason: String,
    },
    /// A bad query.
    #[error("{0}")]
    Invalid(String),
    /// No such song (or no song matches the text).
    #[error("{0}")]
    NotFound(String),
    /// A statement failed.
    #[error("{url}: {what}: {reason}")]
    Sql {
        /// The URL, password hidden.
        url: String,
        /// What was being done.
        what: String,
        /// The server's message.
        reason: String,
    },
}

/// Result alias.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// The URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    // postgres://user:password@host... or key=value with password=...
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((auth, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = auth.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
        return url.to_string();
    }
    url.split_whitespace().map(|kv| if kv.starts_with("password=") { "password=***".to_string() } else { kv.to_string() }).collect::<Vec<_>>().join(" ")
}

/// How the vectors are kept in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// `halfvec` (2 bytes a value; see the README for its recall).
    Half,
    /// `vector` (4 bytes a value).
    Full,
}

impl Precision {
    fn column(self, dim: usize) -> String {
        match self {
            Precision::Half => format!("halfvec({dim})"),
            Precision::Full => format!("vector({dim})"),
        }
    }
    fn ops(self) -> &'static str {
        match self {
            Precision::Half => "halfvec_cosine_ops",
            Precision::Full => "vector_cosine_ops",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Precision::Half => "half",
            Precision::Full => "full",
        }
    }
    fn parse(s: &str) -> Option<Precision> {
        match s {
            "half" => Some(Precision::Half),
            "full" => Some(Precision::Full),
            _ => None,
        }
    }
}

/// A pool of connections to one database.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    url: String,
}

fn sql_err(url: &str, what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Sql { url: url.to_string(), what: what.to_string(), reason: e.to_string() }
}

/// The server's own message of a tokio-postgres error (its `Display` alone says only "db error").
fn pg_reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(c) = src {
                s = format!("{s}: {c}");
                src = c.source();
            }
            s
        }
    }
}

impl Db {
    /// Connects (a pool of at most `max` connections) and checks that the server answers and has
    /// pgvector 0.8 or newer installed.
    pub async fn connect(url: &str, max: usize) -> Result<Db> {
        let shown = redact(url);
        let cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| DbError::Url { url: shown.clone(), reason: pg_reason(&e) })?;
        let mgr = Manager::from_config(cfg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr).max_size(max.max(1)).build().map_err(|e| DbError::Connect { url: shown.clone(), reason: e.to_string() })?;
        let db = Db { pool, url: shown };
        let c = db.client().await?;
        let avail = c
            .query_opt("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'", &[])
            .await
            .map_err(|e| sql_err(&db.url, "checking pgvector", pg_reason(&e)))?;
        let Some(row) = avail else {
            return Err(DbError::Incompatible { url: db.url.clone(), reason: "pgvector is not installed on this server (see scripts/deploy/install_pgvector.sh)".into() });
        };
        let v: String = row.get(0);
        let mut parts = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < MIN_PGVECTOR {
            return Err(DbError::Incompatible { url: db.url.clone(), reason: format!("pgvector {v} is too old: 0.8 or newer is needed (iterative index scans)") });
        }
        Ok(db)
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            let reason = match &e {
                deadpool_postgres::PoolError::Backend(pe) => pg_reason(pe),
                other => other.to_string(),
            };
            DbError::Connect { url: self.url.clone(), reason }
        })
    }
}

/// What the meta table says.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// Table layout version.
    pub format_version: u32,
    /// The model that made the vectors.
    pub model_fingerprint: String,
    /// Its name.
    pub model_name: String,
    /// Vector width.
    pub dim: usize,
    /// Class labels of the model (the predicted genres).
    pub labels: Vec<String>,
    /// The library folder the ids are relative to.
    pub library_root: String,
    /// Vector precision.
    pub precision: Precision,
}

const META: &str = "soundalike_meta";
const SONGS: &str = "soundalike_songs";

async fn read_meta(c: &impl GenericClient, url: &str) -> Result<Option<Meta>> {
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&META])
        .await
        .map_err(|e| sql_err(url, "reading the meta table", pg_reason(&e)))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = c.query(&format!("SELECT key, value FROM {META}"), &[]).await.map_err(|e| sql_err(url, "reading the meta table", pg_reason(&e)))?;
    let m: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let get = |k: &str| m.get(k).cloned().unwrap_or_default();
    let bad = |what: &str| DbError::Incompatible { url: url.to_string(), reason: format!("{META} is damaged ({what}); it was not written by soundalike") };
    Ok(Some(Meta {
        format_version: get("format_version").parse().map_err(|_| bad("format_version"))?,
        model_fingerprint: get("model_fingerprint"),
        model_name: get("model_name"),
        dim: get("dim").parse().map_err(|_| bad("dim"))?,
        labels: serde_json::from_str(&get("labels")).unwrap_or_default(),
        library_root: get("library_root"),
        precision: Precision::parse(&get("precision")).ok_or_else(|| bad("precision"))?,
    }))
}

/// Refuses a database of another layout version, or holding another model's vectors.
fn check_meta(m: &Meta, url: &str, fingerprint: Option<&str>, dim: Option<usize>) -> Result<()> {
    if m.format_version != DB_FORMAT_VERSION {
        return Err(DbError::Incompatible {
            url: url.into(),
            reason: format!("its soundalike tables are format {} (this soundalike reads {DB_FORMAT_VERSION}); push to another database, or drop {META} and {SONGS} first", m.format_version),
        });
    }
    if let Some(fp) = fingerprint {
        if fp != m.model_fingerprint {
            return Err(DbError::Incompatible {
                url: url.into(),
                reason: format!(
                    "it holds vectors of model {} ({}), not {fp}; vectors of two models are not comparable: push to another database, or drop {META} and {SONGS} first",
                    m.model_name, m.model_fingerprint
                ),
            });
        }
    }
    if dim.is_some_and(|d| d != m.dim) {
        return Err(DbError::Incompatible { url: url.into(), reason: format!("its vectors have {} values, the store's {}", m.dim, dim.unwrap_or(0)) });
    }
    Ok(())
}

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// Songs new to the database.
    pub added: usize,
    /// Songs whose content changed.
    pub updated: usize,
    /// Songs gone from the store, deleted.
    pub removed: usize,
    /// Songs already there, untouched.
    pub unchanged: usize,
    /// Whether the HNSW index was created by this push.
    pub index_created: bool,
}

/// For tests: `SOUNDALIKE_TEST_PUSH_ABORT=1` makes a push stop the process after all its writes, before it commits
/// (as a kill at the worst moment would).
const ABORT_HOOK: &str = "SOUNDALIKE_TEST_PUSH_ABORT";

fn vec_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 12 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{x}"));
    }
    s.push(']');
    s
}

/// Pushes a store: creates the tables and the HNSW index on first use; then writes new and changed songs
/// (one `COPY` into a temporary table, then an upsert) and deletes vanished ones, all in one transaction
/// under an advisory lock (one push at a time per database). Refuses a database holding another model's
/// vectors or another layout.
pub async fn push(db: &Db, store: &Store, precision: Precision) -> Result<PushReport> {
    let url = db.url.clone();
    let h = &store.header;
    let mut c = db.client().await?;
    let e = |what: &'static str| { let url = url.clone(); move |err: tokio_postgres::Error| sql_err(&url, what, pg_reason(&err)) };
    let t = c.transaction().await.map_err(e("starting a transaction"))?;
    t.execute("SELECT pg_advisory_xact_lock(7351944001)", &[]).await.map_err(e("waiting for another push"))?;
    t.batch_execute("CREATE EXTENSION IF NOT EXISTS vector").await.map_err(e("creating the pgvector extension (the user may need the right to)"))?;
    let meta = read_meta(&t, &url).await?;
    let precision = match &meta {
        Some(m) => {
            check_meta(m, &url, Some(&h.model_fingerprint), Some(h.dim))?;
            m.precision
        }
        None => {
            t.batch_execute(&format!(
                "CREATE TABLE {META} (key text PRIMARY KEY, value text NOT NULL);
                 CREATE TABLE {SONGS} (id text PRIMARY KEY, title text NOT NULL, artist text, album text, genre text,
                   predicted text, grp text, path text NOT NULL, fingerprint text NOT NULL, duration_s double precision NOT NULL,
                   embedding {} NOT NULL, {FACTS_COLUMNS}, from_path text NOT NULL DEFAULT '')",
                precision.column(h.dim)
            ))
            .await
            .map_err(e("creating the tables"))?;
            precision
        }
    };
    // Tables pushed before songs had tempo, key and loudness get the columns (empty until the songs are
    // pushed again, which the facts version below makes happen).
    t.batch_execute(&format!(
        "ALTER TABLE {SONGS} ADD COLUMN IF NOT EXISTS bpm real, ADD COLUMN IF NOT EXISTS camelot text, ADD COLUMN IF NOT EXISTS lufs real, ADD COLUMN IF NOT EXISTS true_peak_db real,
           ADD COLUMN IF NOT EXISTS facts_version integer NOT NULL DEFAULT 0, ADD COLUMN IF NOT EXISTS tags jsonb,
           ADD COLUMN IF NOT EXISTS tags_version integer NOT NULL DEFAULT 0, ADD COLUMN IF NOT EXISTS from_path text NOT NULL DEFAULT ''"
    ))
    .await
    .map_err(e("adding the tempo, key, loudness, tag and from-path columns"))?;
    let have: HashMap<String, (String, i32, i32, String, bool)> = t
        .query(&format!("SELECT id, fingerprint, facts_version, tags_version, from_path, true_peak_db IS NOT NULL FROM {SONGS}"), &[])
        .await
        .map_err(e("reading the songs"))?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
        .collect();
    let mut report = PushReport::default();
    let live: HashSet<&str> = store.songs().map(|s| s.id.as_str()).collect();
    let changed: Vec<&SongRecord> = store
        .songs()
        .filter(|s| match have.get(&s.id) {
            // A row pushed before the from-path or true-peak column existed is written again when the song
            // has one.
            Some((fp, fv, tv, from, has_peak))
                if *fp == s.fingerprint
                    && *fv == s.facts.as_ref().map_or(0, |f| f.version as i32)
                    && *tv == s.tags.as_ref().map_or(0, |t| t.version as i32)
                    && *from == from_path_text(&s.from_path)
                    && *has_peak == s.true_peak_db().is_some() =>
            {
                report.unchanged += 1;
                false
            }
            Some(_) => {
                report.updated += 1;
                true
            }
            None => {
                report.added += 1;
                true
            }
        })
        .collect();
    let gone: Vec<String> = have.keys().filter(|id| !live.contains(id.as_str())).cloned().collect();
    report.removed = gone.len();
    if !changed.is_empty() {
        t.batch_execute(&format!("CREATE TEMP TABLE soundalike_incoming (LIKE {SONGS}) ON COMMIT DROP")).await.map_err(e("creating the load table"))?;
        let sink = t
            .copy_in(
                "COPY soundalike_incoming (id, title, artist, album, genre, predicted, grp, path, fingerprint, duration_s, embedding, bpm, camelot, lufs, true_peak_db, facts_version, tags, tags_version, from_path)
                 FROM STDIN WITH (FORMAT csv, FORCE_NULL (bpm, camelot, lufs, true_peak_db, tags))",
            )
            .await
            .map_err(e("starting COPY"))?;
        futures_util::pin_mut!(sink);
        let mut buf = Vec::with_capacity(1 << 20);
        for (i, s) in changed.iter().enumerate() {
            {
                // Every field quoted: no NULLs (an unknown artist is an empty string, read back as none).
                let mut w = csv::WriterBuilder::new().has_headers(false).quote_style(csv::QuoteStyle::Always).from_writer(&mut buf);
                let o = |v: &Option<String>| v.clone().unwrap_or_default();
                let mut rec: Vec<String> = vec![s.id.clone(), s.title.clone()];
                for v in [&s.artist, &s.album, &s.genre] {
                    rec.push(o(v));
                }
                rec.push(s.predicted(&h.labels).unwrap_or_default());
                rec.push(o(&s.group));
                rec.push(h.library_root.join(&s.id).to_string_lossy().into_owned());
                rec.push(s.fingerprint.clone());
                rec.push(format!("{}", s.duration_s));
                rec.push(vec_text(&s.vector));
                // Unknown tempo, key or loudness: an empty field, read as NULL (FORCE_NULL).
                rec.push(s.bpm().map_or(String::new(), |b| b.to_string()));
                rec.push(s.key().map_or(String::new(), |k| k.to_string()));
                rec.push(s.lufs().map_or(String::new(), |l| l.to_string()));
                rec.push(s.true_peak_db().map_or(String::new(), |p| p.to_string()));
                rec.push(s.facts.as_ref().map_or(0, |f| f.version).to_string());
                // The tags as the store keeps them (both taggers' probabilities, 4 decimals), or NULL.
                rec.push(s.tags.as_ref().map_or(String::new(), |t| serde_json::to_string(t).unwrap_or_default()));
                rec.push(s.tags.as_ref().map_or(0, |t| t.version).to_string());
                rec.push(from_path_text(&s.from_path));
                w.write_record(&rec).map_err(|err| sql_err(&url, "writing COPY rows", err))?;
                w.flush().map_err(|err| sql_err(&url, "writing COPY rows", err))?;
            }
            if buf.len() > (1 << 20) || i + 1 == changed.len() {
                sink.send(bytes::Bytes::from(std::mem::take(&mut buf))).await.map_err(e("sending COPY rows"))?;
            }
        }
        sink.finish().await.map_err(e("finishing COPY"))?;
        t.batch_execute(&format!(
            "INSERT INTO {SONGS} SELECT * FROM soundalike_incoming ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, artist = EXCLUDED.artist,
               album = EXCLUDED.album, genre = EXCLUDED.genre, predicted = EXCLUDED.predicted, grp = EXCLUDED.grp, path = EXCLUDED.path,
               fingerprint = EXCLUDED.fingerprint, duration_s = EXCLUDED.duration_s, embedding = EXCLUDED.embedding,
               bpm = EXCLUDED.bpm, camelot = EXCLUDED.camelot, lufs = EXCLUDED.lufs, true_peak_db = EXCLUDED.true_peak_db, facts_version = EXCLUDED.facts_version,
               tags = EXCLUDED.tags, tags_version = EXCLUDED.tags_version, from_path = EXCLUDED.from_path"
        ))
        .await
        .map_err(e("writing the songs"))?;
    }
    if !gone.is_empty() {
        t.execute(&format!("DELETE FROM {SONGS} WHERE id = ANY($1)"), &[&gone]).await.map_err(e("deleting vanished songs"))?;
    }
    let has_index: bool = t.query_one("SELECT to_regclass('soundalike_songs_hnsw') IS NOT NULL", &[]).await.map_err(e("looking for the index"))?.get(0);
    if !has_index {
        t.batch_execute(&format!(
            "SET LOCAL maintenance_work_mem = '512MB'; CREATE INDEX soundalike_songs_hnsw ON {SONGS} USING hnsw (embedding {}) WITH (m = 16, ef_construction = 64)",
            precision.ops()
        ))
        .await
        .map_err(e("building the HNSW index"))?;
        report.index_created = true;
    }
    let kv = [
        ("format_version", DB_FORMAT_VERSION.to_string()),
        ("model_fingerprint", h.model_fingerprint.clone()),
        ("model_name", h.model_name.clone()),
        ("dim", h.dim.to_string()),
        ("labels", serde_json::to_string(&h.labels).unwrap_or_default()),
        ("library_root", h.library_root.to_string_lossy().into_owned()),
        ("precision", precision.name().to_string()),
    ];
    for (k, v) in kv {
        t.execute(&format!("INSERT INTO {META} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"), &[&k, &v])
            .await
            .map_err(e("writing the meta table"))?;
    }
    if std::env::var(ABORT_HOOK).as_deref() == Ok("1") {
        eprintln!("{ABORT_HOOK}: stopping before the commit");
        std::process::exit(3);
    }
    t.commit().await.map_err(e("committing"))?;
    Ok(report)
}

/// Recommendations answered by PostgreSQL: what `query --db` and `serve --db` search through.
pub struct DbCatalog {
    db: Db,
    /// The database's meta row.
    pub meta: Meta,
    genre_source: GenreSource,
    /// HNSW search list (`hnsw.ef_search`).
    pub ef_search: usize,
}

const COLUMNS: &str = "id, title, artist, album, genre, predicted, grp, duration_s, bpm, camelot, lufs, true_peak_db, tags::text, from_path";

/// Which names were read from the path (`SongRecord::from_path`: "artist", "album", "title"), as the table
/// keeps them: comma-separated.
fn from_path_text(from_path: &[String]) -> String {
    from_path.join(",")
}
/// A song's genre by the tagger (`GenreSource::Tagger`), as `SongTags::genre` picks it: the genre tag with
/// the highest probability (the higher of the two taggers' where both know it; the last of equals), NULL
/// for a song without tags.
fn tagger_genre_sql() -> String {
    let list = |v: &[&str]| v.iter().map(|t| format!("'{}'", t.replace('\'', "''"))).collect::<Vec<_>>().join(",");
    let (msd, mtt) = (list(&soundalike_recommend::tags::MSD_TAGS), list(&soundalike_recommend::tags::MTT_TAGS));
    format!(
        "(CASE WHEN tags IS NULL THEN NULL ELSE (SELECT g.name FROM unnest(ARRAY[{}]) WITH ORDINALITY AS g(name, o)
           ORDER BY greatest(coalesce((tags->'msd'->>(array_position(ARRAY[{msd}], g.name) - 1))::real, -1),
                             coalesce((tags->'mtt'->>(array_position(ARRAY[{mtt}], g.name) - 1))::real, -1)) DESC, g.o DESC LIMIT 1) END)",
        list(&soundalike_recommend::tags::GENRE_TAGS)
    )
}

/// Where the embedding (or the distance) sits after [`COLUMNS`]: their count.
const AFTER_COLUMNS: usize = {
    let (b, mut i, mut n) = (COLUMNS.as_bytes(), 0, 1);
    while i < b.len() {
        if b[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
};
/// Tempo, key (Camelot) and loudness of each song, and the version of the estimators that found them.
const FACTS_COLUMNS: &str = "bpm real, camelot text, lufs real, true_peak_db real, facts_version integer NOT NULL DEFAULT 0, tags jsonb, tags_version integer NOT NULL DEFAULT 0";

/// Text matched literally inside an ILIKE pattern.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

impl DbCatalog {
    /// Opens the database's songs for searching; with `model`, refuses vectors of any other model.
    pub async fn open(db: Db, model: Option<&str>) -> Result<DbCatalog> {
        let c = db.client().await?;
        let meta = read_meta(&c, &db.url).await?.ok_or_else(|| DbError::Incompatible { url: db.url.clone(), reason: "it holds no soundalike songs yet (run `soundalike push STORE --db URL`)".into() })?;
        check_meta(&meta, &db.url, model, None)?;
        let has_facts: bool = c
            .query_one("SELECT count(*) = 3 FROM information_schema.columns WHERE table_name = $1 AND column_name IN ('bpm', 'tags', 'true_peak_db')", &[&SONGS])
            .await
            .map_err(|e| sql_err(&db.url, "reading the table's columns", pg_reason(&e)))?
            .get(0);
        if !has_facts {
            return Err(DbError::Incompatible { url: db.url.clone(), reason: "its songs were pushed before they had tempo, key, loudness and tag columns: push the store again".into() });
        }
        Ok(DbCatalog { db, meta, genre_source: GenreSource::default(), ef_search: 64 })
    }

    /// The database's URL, password hidden.
    pub fn url(&self) -> &str {
        self.db.url()
    }

    /// Where a song's genre comes from (as [`soundalike_recommend::Catalog::use_genres`]).
    pub fn use_genres(&mut self, source: GenreSource) {
        self.genre_source = source;
    }

    fn genre_sql(&self) -> String {
        match self.genre_source {
            GenreSource::Tag => "nullif(genre, '')".into(),
            GenreSource::Predicted => "nullif(predicted, '')".into(),
            GenreSource::Either => "coalesce(nullif(genre, ''), nullif(predicted, ''))".into(),
            GenreSource::Tagger => tagger_genre_sql(),
        }
    }

    fn song(&self, r: &tokio_postgres::Row) -> SongView {
        let tags: Option<SongTags> = r.get::<_, Option<String>>(12).and_then(|t| serde_json::from_str(&t).ok());
        let genre: Option<String> = r.get(4);
        let predicted: Option<String> = r.get(5);
        let g = match self.genre_source {
            GenreSource::Tag => genre.filter(|x| !x.is_empty()),
            GenreSource::Predicted => predicted.filter(|x| !x.is_empty()),
            GenreSource::Either => genre.filter(|x| !x.is_empty()).or(predicted.filter(|x| !x.is_empty())),
            GenreSource::Tagger => tags.as_ref().and_then(|t| t.genre()).map(|(g, _)| g.to_string()),
        };
        let some = |v: Option<String>| v.filter(|x| !x.is_empty());
        SongView {
            id: r.get(0),
            title: r.get(1),
            artist: some(r.get(2)),
            album: some(r.get(3)),
            genre: g,
            group: some(r.get(6)),
            duration_s: r.get(7),
            predicted: some(r.get(5)),
            from_path: r.get::<_, String>(13).split(',').filter(|x| !x.is_empty()).map(str::to_string).collect(),
            cluster: None,
            bpm: r.get(8),
            key: r.get::<_, Option<String>>(9).and_then(|k| k.parse().ok()),
            lufs: r.get(10),
            true_peak_db: r.get(11),
            tags: tags.as_ref().map(|t| t.top(soundalike_recommend::VIEW_TAGS)).unwrap_or_default(),
        }
    }

    /// Number of songs.
    pub async fn len(&self) -> Result<usize> {
        let c = self.db.client().await?;
        let n: i64 = c.query_one(&format!("SELECT count(*) FROM {SONGS}"), &[]).await.map_err(|e| sql_err(&self.db.url, "counting songs", pg_reason(&e)))?.get(0);
        Ok(n as usize)
    }

    /// The song a user means: exact id, else text in title, artist or id (ambiguous text is an error listing
    /// the candidates).
    pub async fn resolve(&self, q: &str) -> Result<SongView> {
        let c = self.db.client().await?;
        let err = |e: tokio_postgres::Error| sql_err(&self.db.url, "finding a song", pg_reason(&e));
        if let Some(r) = c.query_opt(&format!("SELECT {COLUMNS} FROM {SONGS} WHERE id = $1"), &[&q]).await.map_err(err)? {
            return Ok(self.song(&r));
        }
        let pattern = format!("%{}%", like_escape(q));
        let rows = c
            .query(&format!("SELECT {COLUMNS} FROM {SONGS} WHERE title ILIKE $1 OR coalesce(artist, '') ILIKE $1 OR id ILIKE $1 ORDER BY id LIMIT 11"), &[&pattern])
            .await
            .map_err(err)?;
        let exact: Vec<&tokio_postgres::Row> = rows.iter().filter(|r| r.get::<_, String>(1).eq_ignore_ascii_case(q)).collect();
        match (rows.len(), exact.len()) {
            (0, _) => Err(DbError::NotFound(format!("no song matches {q:?} in {}", self.db.url))),
            (1, _) => Ok(self.song(&rows[0])),
            (_, 1) => Ok(self.song(exact[0])),
            _ => Err(DbError::Invalid(format!(
                "{q:?} matches {}{} songs; name one by id:\n{}",
                if rows.len() > 10 { "more than " } else { "" },
                rows.len().min(10),
                rows.iter().take(10).map(|r| format!("  {}  ({})", r.get::<_, String>(0), r.get::<_, String>(1))).collect::<Vec<_>>().join("\n")
            ))),
        }
    }

    /// A song by id.
    pub async fn get(&self, id: &str) -> Result<Option<SongView>> {
        let c = self.db.client().await?;
        let r = c.query_opt(&format!("SELECT {COLUMNS} FROM {SONGS} WHERE id = $1"), &[&id]).await.map_err(|e| sql_err(&self.db.url, "reading a song", pg_reason(&e)))?;
        Ok(r.map(|r| self.song(&r)))
    }

    /// Songs whose title, artist or id contain every word of `text` (case-insensitive), titles starting
    /// with the text first; then, when `text` is a tag, the songs the taggers give it.
    pub async fn search_text(&self, text: &str, limit: usize) -> Result<Vec<SongView>> {
        let words: Vec<String> = text.split_whitespace().map(|w| format!("%{}%", like_escape(w))).collect();
        if words.is_empty() {
            return Ok(vec![]);
        }
        let c = self.db.client().await?;
        let starts = format!("{}%", like_escape(text.trim()));
        // A text that is a tag also finds the songs tagged with it, after the songs it names (as the store's
        // search does).
        let tag = soundalike_recommend::tags::lookup(text);
        let place = |src: TagSource| tag.and_then(|t| src.vocabulary().iter().position(|v| *v == t)).map(|i| i as i32);
        let rows = c
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM (SELECT *,
                       (SELECT bool_and(title || ' ' || coalesce(artist, '') || ' ' || coalesce(album, '') || ' ' || id ILIKE w) FROM unnest($1::text[]) AS w) AS by_text,
                       greatest(coalesce((tags->'msd'->>$4::int)::real, -1), coalesce((tags->'mtt'->>$5::int)::real, -1)) >= $6 AS by_tag FROM {SONGS}) s
                     WHERE by_text OR by_tag ORDER BY NOT by_text, NOT (title ILIKE $2), id LIMIT $3"
                ),
                &[&words, &starts, &(limit as i64), &place(TagSource::Msd), &place(TagSource::Mtt), &soundalike_recommend::DEFAULT_TAG_MIN],
            )
            .await
            .map_err(|e| sql_err(&self.db.url, "searching titles", pg_reason(&e)))?;
        Ok(rows.iter().map(|r| self.song(r)).collect())
    }

    /// Hours of audio and the number of songs of each group, by name.
    pub async fn hours_and_groups(&self) -> Result<(f64, Vec<(String, usize)>)> {
        let c = self.db.client().await?;
        let err = |e: tokio_postgres::Error| sql_err(&self.db.url, "counting hours and groups", pg_reason(&e));
        let secs: f64 = c.query_one(&format!("SELECT coalesce(sum(duration_s), 0)::float8 FROM {SONGS}"), &[]).await.map_err(err)?.get(0);
        let rows = c.query(&format!("SELECT grp, count(*) FROM {SONGS} WHERE nullif(grp, '') IS NOT NULL GROUP BY 1"), &[]).await.map_err(err)?;
        // Sorted here, byte by byte as the store sorts, not by the database's collation.
        let mut groups: Vec<(String, usize)> = rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as usize)).collect();
        groups.sort();
        Ok((secs / 3600.0, groups))
    }

    /// The number of songs of each genre (by the genre source), most first.
    pub async fn genres(&self) -> Result<Vec<(String, usize)>> {
        let c = self.db.client().await?;
        let g = self.genre_sql();
        let rows = c
            .query(&format!("SELECT {g} AS g, count(*) FROM {SONGS} WHERE {g} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"), &[])
            .await
            .map_err(|e| sql_err(&self.db.url, "counting genres", pg_reason(&e)))?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as usize)).collect())
    }

    /// At most `limit` songs with their vectors, evenly spread over the ids (for the library map).
    pub async fn sample(&self, limit: usize) -> Result<Vec<(SongView, Vec<f32>)>> {
        let c = self.db.client().await?;
        let n = self.len().await?;
        let step = n.div_ceil(limit.max(1)).max(1) as i64;
        let rows = c
            .query(
                &format!("SELECT {COLUMNS}, embedding::vector FROM (SELECT *, row_number() OVER (ORDER BY id) AS rn FROM {SONGS}) t WHERE (rn - 1) % $1 = 0 ORDER BY id"),
                &[&step],
            )
            .await
            .map_err(|e| sql_err(&self.db.url, "sampling songs", pg_reason(&e)))?;
        Ok(rows.iter().map(|r| (self.song(r), r.get::<_, pgvector::Vector>(AFTER_COLUMNS).to_vec())).collect())
    }

    /// A song's vector, as stored.
    pub async fn vector(&self, id: &str) -> Result<Vec<f32>> {
        let c = self.db.client().await?;
        let row = c
            .query_opt(&format!("SELECT embedding::vector FROM {SONGS} WHERE id = $1"), &[&id])
            .await
            .map_err(|e| sql_err(&self.db.url, "reading a vector", pg_reason(&e)))?
            .ok_or_else(|| DbError::NotFound(format!("no song with id {id:?}")))?;
        Ok(row.get::<_, pgvector::Vector>(0).to_vec())
    }

    /// The query vector of a request: the L2-normalised sum of the stored vectors of the songs `ids` and of
    /// `extra` vectors (a new file), as [`soundalike_recommend::Catalog::centroid`] makes it from a store.
    pub async fn centroid(&self, ids: &[&str], extra: &[&[f32]]) -> Result<Vec<f32>> {
        let mut q = vec![0f32; self.meta.dim];
        for id in ids {
            self.vector(id).await?.iter().zip(q.iter_mut()).for_each(|(x, a)| *a += x);
        }
        extra.iter().for_each(|v| v.iter().zip(q.iter_mut()).for_each(|(x, a)| *a += x));
        soundalike_recommend::normalise(&mut q);
        Ok(q)
    }

    /// Songs per tag at the default least probability, most first (as the store's catalog counts them).
    pub async fn tag_counts(&self) -> Result<Vec<(String, usize)>> {
        let c = self.db.client().await?;
        let names = |s: TagSource| s.vocabulary().iter().map(|t| t.to_string()).collect::<Vec<String>>();
        let rows = c
            .query(
                &format!(
                    "SELECT name, count(DISTINCT id) FROM {SONGS}, LATERAL (
                       SELECT ($2::text[])[o] AS name, v::real AS p FROM jsonb_array_elements_text(tags->'msd') WITH ORDINALITY AS e(v, o)
                       UNION ALL SELECT ($3::text[])[o], v::real FROM jsonb_array_elements_text(tags->'mtt') WITH ORDINALITY AS e(v, o)) x
                     WHERE tags IS NOT NULL AND x.p >= $1 GROUP BY name ORDER BY count(DISTINCT id) DESC, name"
                ),
                &[&soundalike_recommend::DEFAULT_TAG_MIN, &names(TagSource::Msd), &names(TagSource::Mtt)],
            )
            .await
            .map_err(|e| sql_err(&self.db.url, "counting tags", pg_reason(&e)))?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as usize)).collect())
    }

    /// How many songs a tempo or key filter leaves out for having no value (as the store's catalog says).
    pub async fn facts_notes(&self, f: &Filters) -> Result<Vec<String>> {
        if !f.asks_for_facts() {
            return Ok(Vec::new());
        }
        let c = self.db.client().await?;
        let r = c
            .query_one(
                &format!("SELECT count(*) FILTER (WHERE bpm IS NULL), count(*) FILTER (WHERE camelot IS NULL), count(*) FILTER (WHERE tags IS NULL) FROM {SONGS}"),
                &[],
            )
            .await
            .map_err(|e| sql_err(&self.db.url, "counting songs without tempo, key or tags", pg_reason(&e)))?;
        let (no_bpm, no_key, no_tags): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        Ok(f.facts_notes(no_bpm as usize, no_key as usize, no_tags as usize))
    }

    /// The `k` songs most similar to `query` that pass `f` (all of [`Filters`] but clusters): a filtered
    /// HNSW search with iterative scans, an exact scan when it still returns fewer than k, then the
    /// per-album cap (fetching more until k pass it or the songs run out).
    pub async fn recommend(&self, query: &[f32], k: usize, f: &Filters) -> Result<Vec<Scored>> {
        if k == 0 {
            return Err(DbError::Invalid("k must be at least 1".into()));
        }
        if query.len() != self.meta.dim {
            return Err(DbError::Invalid(format!("query has {} values, the database's vectors {}", query.len(), self.meta.dim)));
        }
        if f.clusters.is_some() {
            return Err(DbError::Invalid("cluster filters are not available from the database yet; query the store".into()));
        }
        // With a per-album cap, fetch more and cap greedily; grow until k are kept or every song that passes
        // the filters was fetched (as the store's catalog does).
        let mut want = if f.max_per_album.is_some() { k * 4 } else { k };
        loop {
            let mut rows = self.search(query, want, f, false).await?;
            if rows.len() < want {
                // What the graph could not fill (a very selective filter): an exact scan of the rows that pass.
                let exact = self.search(query, want, f, true).await?;
                if exact.len() > rows.len() {
                    rows = exact;
                }
            }
            let exhausted = rows.len() < want;
            let mut per_album: HashMap<String, usize> = HashMap::new();
            let mut out = Vec::new();
            for (score, song) in rows {
                if let Some(cap) = f.max_per_album {
                    let key = song.album.clone().or(song.group.clone()).unwrap_or(song.id.clone());
                    let c = per_album.entry(key).or_default();
                    if *c >= cap {
                        continue;
                    }
                    *c += 1;
                }
                out.push(Scored { rank: out.len() + 1, score, song });
                if out.len() == k {
                    break;
                }
            }
            if out.len() == k || exhausted {
                return Ok(out);
            }
            want = want.saturating_mul(4);
        }
    }

    async fn search(&self, query: &[f32], k: usize, f: &Filters, exact: bool) -> Result<Vec<(f32, SongView)>> {
        let url = &self.db.url;
        let err = |what: &'static str| move |e: tokio_postgres::Error| sql_err(url, what, pg_reason(&e));
        let mut c = self.db.client().await?;
        let t = c.transaction().await.map_err(err("starting a transaction"))?;
        let settings = if exact {
            "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off".to_string()
        } else {
            format!("SET LOCAL hnsw.ef_search = {}; SET LOCAL hnsw.iterative_scan = relaxed_order", self.ef_search.max(k).min(1000))
        };
        t.batch_execute(&settings).await.map_err(err("setting the search"))?;
        let g = self.genre_sql();
        let lower = |v: &[String]| v.iter().map(|x| x.to_lowercase()).collect::<Vec<String>>();
        let genre = f.genre.as_ref().map(|x| x.to_lowercase());
        let same: Option<Vec<String>> = f.same_genres.as_ref().map(|v| lower(v));
        let (artists, groups) = (lower(&f.exclude_artists), lower(&f.exclude_groups));
        let cast = match self.meta.precision {
            Precision::Half => "halfvec",
            Precision::Full => "vector",
        };
        let sql = format!(
            "SELECT {COLUMNS}, embedding <=> $1::vector::{cast} AS d FROM {SONGS}
             WHERE NOT (id = ANY($2)) AND ($3::text IS NULL OR lower({g}) = $3) AND ($4::text[] IS NULL OR lower({g}) = ANY($4))
               AND NOT (lower(coalesce(artist, '')) = ANY($5)) AND NOT (lower(coalesce(grp, '')) = ANY($6))
               AND ($8::real IS NULL OR bpm BETWEEN $8 AND $9 OR ($10 AND (bpm * 2 BETWEEN $8 AND $9 OR bpm / 2 BETWEEN $8 AND $9)))
               AND ($11::real[] IS NULL OR EXISTS (SELECT 1 FROM unnest($11::real[], $12::real[]) AS r(lo, hi)
                    WHERE bpm BETWEEN lo AND hi OR ($13 AND (bpm * 2 BETWEEN lo AND hi OR bpm / 2 BETWEEN lo AND hi))))
               AND ($14::text[] IS NULL OR camelot = ANY($14))
               AND NOT EXISTS (SELECT 1 FROM unnest($15::int[], $16::int[]) AS g(a, b)
                    WHERE greatest(coalesce((tags->'msd'->>a)::real, -1), coalesce((tags->'mtt'->>b)::real, -1)) < $17)
             ORDER BY embedding <=> $1::vector::{cast} LIMIT $7"
        );
        let qv = pgvector::Vector::from(query.to_vec());
        let artists: Vec<String> = artists.into_iter().filter(|a| !a.is_empty()).collect();
        let groups: Vec<String> = groups.into_iter().filter(|a| !a.is_empty()).collect();
        // Tempo ranges widened by 0.05 BPM, as the store's filter compares (BPMs are kept to one decimal).
        let (bpm_lo, bpm_hi, bpm_fold) = f.bpm.map_or((None, None, false), |r| (Some(r.lo - 0.05), Some(r.hi + 0.05), r.fold));
        let near_lo: Option<Vec<f32>> = f.bpm_near.as_ref().map(|rs| rs.iter().map(|r| r.lo - 0.05).collect());
        let near_hi: Option<Vec<f32>> = f.bpm_near.as_ref().map(|rs| rs.iter().map(|r| r.hi + 0.05).collect());
        let near_fold = f.bpm_near.as_ref().is_some_and(|rs| rs.iter().any(|r| r.fold));
        let keys: Option<Vec<String>> = f.keys.as_ref().map(|ks| ks.iter().map(|k| k.to_string()).collect());
        // Each tag by its place in each tagger's output (NULL where a tagger does not know it): the song's
        // probability is the higher of the two, as the store's `SongTags::prob` takes it.
        let place = |src: TagSource, tag: &str| src.vocabulary().iter().position(|t| *t == tag).map(|i| i as i32);
        let msd_at: Vec<Option<i32>> = f.tags.iter().map(|t| place(TagSource::Msd, t)).collect();
        let mtt_at: Vec<Option<i32>> = f.tags.iter().map(|t| place(TagSource::Mtt, t)).collect();
        let rows = t
            .query(
                &sql,
                &[&qv, &f.exclude, &genre, &same, &artists, &groups, &(k as i64), &bpm_lo, &bpm_hi, &bpm_fold, &near_lo, &near_hi, &near_fold, &keys, &msd_at, &mtt_at, &f.tag_min],
            )
            .await
            .map_err(err("searching"))?;
        t.commit().await.map_err(err("ending the search"))?;
        let mut out: Vec<(f32, SongView)> = rows.iter().map(|r| (1.0 - r.get::<_, f64>(AFTER_COLUMNS) as f32, self.song(r))).collect();
        // Iterative scans in relaxed order may return neighbours slightly out of order.
        out.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        Ok(out)
    }
}

/// A small runtime for the command line: keep it while the pool is used (connections live on it).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

impl From<DbError> for LibraryError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(m) => LibraryError::NotFound(m),
            DbError::Invalid(m) => LibraryError::Invalid(m),
            e @ DbError::Connect { .. } => LibraryError::Unavailable(e.to_string()),
            e => LibraryError::Failed(e.to_string()),
        }
    }
}

impl DbCatalog {
    /// [`Library::recommend`] from the database: the same request, the same checks and filters as the
    /// store's, answered by pgvector. Cluster scopes are refused (clusters live in stores).
    pub async fn answer(&self, req: &Request) -> std::result::Result<Answer, LibraryError> {
        if req.clusters != ClusterScope::Any {
            return Err(LibraryError::Invalid("cluster filters are served from a store, not from the database".into()));
        }
        let mut seeds = Vec::new();
        for id in &req.seeds {
            seeds.push(self.get(id).await?.ok_or_else(|| LibraryError::NotFound(format!("no song with id {id:?} in this library")))?);
        }
        let genres = if req.around.genre.is_some() { self.genres().await? } else { Vec::new() };
        req.check_against(self.meta.dim, |g| genres.iter().any(|(x, _)| x.eq_ignore_ascii_case(g)))?;
        let filters = req.filters(&seeds)?;
        let ids: Vec<&str> = seeds.iter().map(|s| s.id.as_str()).collect();
        let extra: Vec<&[f32]> = req.extra.iter().map(Vec::as_slice).collect();
        let q = self.centroid(&ids, &extra).await?;
        let found = self.recommend(&q, req.k, &filters).await?;
        let notes = self.facts_notes(&filters).await?;
        Ok(Answer { query: seeds, clusters: None, results: found, notes })
    }
}

impl Library for DbCatalog {
    async fn count(&self) -> std::result::Result<usize, LibraryError> {
        Ok(self.len().await?)
    }

    async fn stats(&self) -> std::result::Result<LibraryStats, LibraryError> {
        let (songs, mut genres, (hours, groups)) = (self.len().await?, self.genres().await?, self.hours_and_groups().await?);
        // By name, as the store lists them (`genres` counts most first, for its other callers).
        genres.sort();
        let tags = self.tag_counts().await?;
        Ok(LibraryStats { songs, hours, genres, groups, tags, search: "pgvector".into() })
    }

    async fn song(&self, id: &str) -> std::result::Result<SongView, LibraryError> {
        self.get(id).await?.ok_or_else(|| LibraryError::NotFound(format!("no song with id {id:?} in this library")))
    }

    async fn resolve(&self, text: &str) -> std::result::Result<SongView, LibraryError> {
        Ok(DbCatalog::resolve(self, text).await?)
    }

    async fn search(&self, text: &str, limit: usize) -> std::result::Result<Vec<SongView>, LibraryError> {
        Ok(self.search_text(text, limit).await?)
    }

    async fn recommend(&self, req: &Request) -> std::result::Result<Answer, LibraryError> {
        self.answer(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(redact("postgres://me:s3cret@db.example:5432/music"), "postgres://me:***@db.example:5432/music");
        assert_eq!(redact("postgres://me@db/music"), "postgres://me@db/music");
        assert_eq!(redact("host=db user=me password=s3cret dbname=music"), "host=db user=me password=*** dbname=music");
        assert!(!redact("postgres://a:b:c@host/x").contains("b:c"));
    }

    #[test]
    fn vectors_are_written_as_pgvector_text() {
        assert_eq!(vec_text(&[0.5, -1.0, 0.25]), "[0.5,-1,0.25]");
    }
}
