//! One recommendation path for every front end: `query` and `serve`, over a store or over the database.
//!
//! A front end turns what the user typed into a [`Request`] (which checks itself), hands it to a
//! [`Library`] (the store's [`Catalog`], or the database's catalog in `soundalike-db`), and shows the
//! [`Answer`]: the query songs and the scored results, each an owned [`SongView`] with the same fields
//! whichever library answered. A new filter is a field of [`Around`] (the request's filters around its
//! seeds), a check in [`Request::validate`], and its test in each library's search (the store's row filter
//! and the database's SQL).

use std::future::Future;

use crate::catalog::Catalog;
use crate::{Around, Filters, IndexError, Profile, TasteModel};

/// One song as every front end shows it (owned: the same from a store or a database).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SongView {
    /// Id: the path relative to the library root.
    pub id: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: Option<String>,
    /// Album.
    pub album: Option<String>,
    /// Genre, by the library's genre source (tag, prediction or either).
    pub genre: Option<String>,
    /// Group (a soundtrack, a production).
    pub group: Option<String>,
    /// Seconds of audio.
    pub duration_s: f64,
    /// The model's predicted class.
    pub predicted: Option<String>,
    /// Which of artist, album and title were read from the path (see [`crate::SongRecord::from_path`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_path: Vec<String>,
    /// Its cluster, when the library has clusters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<u32>,
    /// Tempo (BPM), when it has a steady beat and has been analysed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpm: Option<f32>,
    /// Key (Camelot, `8A`), when clear and analysed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<soundalike_facts::CamelotKey>,
    /// Integrated loudness (LUFS), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lufs: Option<f32>,
    /// True peak (dBTP), when measured: with `lufs`, what a DJ levels a track by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_peak_db: Option<f32>,
    /// The taggers' most probable tags (guesses, with their probabilities), when tagged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<soundalike_tags::TagScore>,
}

/// Tags a song view shows.
pub const VIEW_TAGS: usize = 5;

/// A song in a list of recommendations.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Scored {
    /// 1-based.
    pub rank: usize,
    /// Cosine similarity to the query.
    pub score: f32,
    /// The song.
    #[serde(flatten)]
    pub song: SongView,
}

/// Which clusters results may come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterScope {
    /// Any.
    #[default]
    Any,
    /// The query songs' own clusters (a new file's nearest).
    Same,
    /// This one (without query songs: the songs nearest its centre).
    Only(usize),
}

/// What to recommend: around which songs, how many, and what may come back.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Library songs to start from, by id (a playlist: their centroid). Never returned.
    pub seeds: Vec<String>,
    /// Vectors of files that are not in the library (an upload, `query --file`).
    pub extra: Vec<Vec<f32>>,
    /// How many results.
    pub k: usize,
    /// What may come back around the seed songs: a genre, the seeds' genre, other artists and groups, an
    /// album cap.
    pub around: Around,
    /// Which clusters results may come from.
    pub clusters: ClusterScope,
}

impl Request {
    /// Checks the request and normalises it (a blank genre is no genre): `k` between 1 and `max_k`, an
    /// album cap of at least 1, something to start from.
    pub fn validate(mut self, max_k: usize) -> Result<Request, LibraryError> {
        if self.seeds.is_empty() && self.extra.is_empty() && !matches!(self.clusters, ClusterScope::Only(_)) {
            return Err(LibraryError::Invalid("name at least one song (or a file, or a cluster) to start from".into()));
        }
        if self.k == 0 || self.k > max_k {
            return Err(LibraryError::Invalid(format!("k must be between 1 and {max_k}")));
        }
        if let Some(r) = self.around.bpm {
            if !(r.lo > 0.0 && r.lo <= r.hi) {
                return Err(LibraryError::Invalid("a tempo range needs 0 < low <= high".into()));
            }
        }
        if self.around.bpm_near.is_some_and(|p| !(p > 0.0 && p <= 50.0)) {
            return Err(LibraryError::Invalid("a tempo tolerance is a percentage above 0 and at most 50".into()));
        }
        if self.around.tag_min.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
            return Err(LibraryError::Invalid("a tag's least probability is between 0 and 1".into()));
        }
        if self.around.max_per_album == Some(0) {
            return Err(LibraryError::Invalid("max_per_album must be at least 1".into()));
        }
        self.around.genre = self.around.genre.map(|g| g.trim().to_string()).filter(|g| !g.is_empty());
        let mut seen = std::collections::HashSet::new();
        self.seeds.retain(|s| seen.insert(s.clone()));
        Ok(self)
    }

    /// Checks it against a library whose vectors have `dim` values and which knows the genres
    /// `knows_genre` accepts: the extra vectors' width, and a target genre some song has.
    pub fn check_against(&self, dim: usize, knows_genre: impl FnOnce(&str) -> bool) -> Result<(), LibraryError> {
        if self.extra.iter().any(|v| v.len() != dim) {
            return Err(LibraryError::Invalid(format!("a query vector does not have the library's {dim} values")));
        }
        match self.around.genre.as_deref() {
            Some(g) if !knows_genre(g) => Err(LibraryError::Invalid(format!("no song in this library has genre {g:?}"))),
            _ => Ok(()),
        }
    }

    /// The filters it asks for around its seed songs (as the library holds them).
    pub fn filters(&self, seeds: &[SongView]) -> Result<Filters, LibraryError> {
        let f = Filters::around(seeds, self.around.clone());
        if f.same_genres.as_ref().is_some_and(|g| g.is_empty()) {
            return Err(LibraryError::NoSeedGenre);
        }
        if f.bpm_near.as_ref().is_some_and(|r| r.is_empty()) {
            return Err(LibraryError::Invalid("no query song has a steady beat (or an analysed tempo) to keep the tempo near".into()));
        }
        if self.around.key.is_none() && f.keys.as_ref().is_some_and(|k| k.is_empty()) {
            return Err(LibraryError::Invalid("no query song has a clear (or an analysed) key to find compatible keys for".into()));
        }
        Ok(f)
    }
}

/// What a library answers: the query songs and the results.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Answer {
    /// The library songs the request started from.
    pub query: Vec<SongView>,
    /// The clusters results were kept to, if the request asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<u32>>,
    /// Best first.
    pub results: Vec<Scored>,
    /// What the library wants said about the answer (songs a tempo or key filter had to leave out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The library as a whole: counts, hours, genres and groups.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LibraryStats {
    /// Songs.
    pub songs: usize,
    /// Hours of audio.
    pub hours: f64,
    /// Songs per genre (by the genre source), by name.
    pub genres: Vec<(String, usize)>,
    /// Songs per group, by name.
    pub groups: Vec<(String, usize)>,
    /// Songs per tag (the taggers give it at least [`crate::DEFAULT_TAG_MIN`]), most first.
    pub tags: Vec<(String, usize)>,
    /// How it searches: `exact`, `hnsw` or `pgvector`.
    pub search: String,
}

/// Why a library could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LibraryError {
    /// No such song (or no song matches the text).
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be answered as asked (bad k, unknown genre, ambiguous text, ...).
    #[error("{0}")]
    Invalid(String),
    /// `same_genre`, but no query song has a genre.
    #[error("same genre: the query songs have no genre in this library")]
    NoSeedGenre,
    /// The library cannot be reached (a database that is down).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (a damaged index, an I/O error).
    #[error("{0}")]
    Failed(String),
}

impl From<IndexError> for LibraryError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::NotFound(m) => LibraryError::NotFound(m),
            IndexError::Invalid(m) => LibraryError::Invalid(m),
            e => LibraryError::Failed(e.to_string()),
        }
    }
}

/// A library that answers recommendation requests: the store's [`Catalog`], or the database's.
/// Methods return futures so that a database can answer without blocking; the store answers at once.
pub trait Library: Send + Sync {
    /// How many songs.
    fn count(&self) -> impl Future<Output = Result<usize, LibraryError>> + Send;
    /// Counts, hours, genres and groups.
    fn stats(&self) -> impl Future<Output = Result<LibraryStats, LibraryError>> + Send;
    /// A song by id ([`LibraryError::NotFound`] when there is none).
    fn song(&self, id: &str) -> impl Future<Output = Result<SongView, LibraryError>> + Send;
    /// The song a user means: an id, or text in its title, artist or id (ambiguous text is an error
    /// listing the candidates).
    fn resolve(&self, text: &str) -> impl Future<Output = Result<SongView, LibraryError>> + Send;
    /// Songs whose title, artist, album or id contain every word of `text` (and, from a store, songs
    /// tagged with it when `text` is a tag).
    fn search(&self, text: &str, limit: usize) -> impl Future<Output = Result<Vec<SongView>, LibraryError>> + Send;
    /// Recommendations for a validated request.
    fn recommend(&self, req: &Request) -> impl Future<Output = Result<Answer, LibraryError>> + Send;
}

/// Where a request starts in the store: its seed rows, the query vector, the filters (with the cluster
/// scope resolved). [`Library::recommend`] searches with it; `query` and `serve` also use it to draw at
/// random from clusters or to re-rank a wider pool by a listener's taste.
pub struct Plan {
    /// The seed songs' rows.
    pub rows: Vec<usize>,
    /// The seed songs.
    pub seeds: Vec<SongView>,
    /// The query vector: the seeds' and extra vectors' normalised centroid, or a cluster's centre.
    pub query: Vec<f32>,
    /// What may come back.
    pub filters: Filters,
}

impl Catalog {
    /// A row as a [`SongView`].
    pub fn view(&self, row: usize) -> SongView {
        let s = &self.songs()[row];
        SongView {
            id: s.id.clone(),
            title: s.title.clone(),
            artist: s.artist.clone(),
            album: s.album.clone(),
            genre: s.genre.clone(),
            group: s.group.clone(),
            duration_s: s.duration_s,
            predicted: s.predicted(&self.header.labels),
            from_path: s.from_path.clone(),
            cluster: self.cluster_of(row),
            bpm: s.bpm(),
            key: s.key(),
            lufs: s.lufs(),
            true_peak_db: s.true_peak_db(),
            tags: s.tags.as_ref().map(|t| t.top(VIEW_TAGS)).unwrap_or_default(),
        }
    }

    fn row_or_not_found(&self, id: &str) -> Result<usize, LibraryError> {
        self.row(id).ok_or_else(|| LibraryError::NotFound(format!("no song with id {id:?} in this library")))
    }

    /// Resolves a request against the store: seeds by id, filters, clusters, the query vector.
    pub fn plan(&self, req: &Request) -> Result<Plan, LibraryError> {
        let rows = req.seeds.iter().map(|id| self.row_or_not_found(id)).collect::<Result<Vec<_>, _>>()?;
        req.check_against(self.header.dim, |g| self.has_genre(g))?;
        let seeds: Vec<SongView> = rows.iter().map(|&r| self.view(r)).collect();
        let mut filters = req.filters(&seeds)?;
        let extra: Vec<&[f32]> = req.extra.iter().map(Vec::as_slice).collect();
        let no_clusters = || LibraryError::Invalid("this library has no clusters yet (run `soundalike clusters STORE`)".into());
        let centroids = self.centroids();
        filters.clusters = match req.clusters {
            ClusterScope::Any => None,
            _ if centroids.is_empty() => return Err(no_clusters()),
            ClusterScope::Only(n) if n >= centroids.len() => return Err(LibraryError::Invalid(format!("cluster {n}: this library has clusters 0 to {}", centroids.len() - 1))),
            ClusterScope::Only(n) => Some(vec![n as u32]),
            ClusterScope::Same => {
                let mut cs: Vec<u32> = rows.iter().filter_map(|&r| self.cluster_of(r)).collect();
                cs.extend(extra.iter().map(|v| self.nearest_cluster(v)));
                cs.sort_unstable();
                cs.dedup();
                Some(cs)
            }
        };
        let query = match req.clusters {
            ClusterScope::Only(n) if rows.is_empty() && extra.is_empty() => centroids[n].clone(),
            _ => self.centroid(&rows, &extra),
        };
        Ok(Plan { rows, seeds, query, filters })
    }

    /// How many songs a tempo or key filter left out for having no value to compare (no steady beat, an
    /// unclear key, or not analysed yet).
    pub fn facts_notes(&self, f: &Filters) -> Vec<String> {
        if !f.asks_for_facts() {
            return Vec::new();
        }
        let no_bpm = self.songs().iter().filter(|s| s.bpm().is_none()).count();
        let no_key = self.songs().iter().filter(|s| s.key().is_none()).count();
        let no_tags = self.songs().iter().filter(|s| s.tags.is_none()).count();
        f.facts_notes(no_bpm, no_key, no_tags)
    }

    /// [`Library::recommend`], at once.
    pub fn answer(&self, req: &Request) -> Result<Answer, LibraryError> {
        let plan = self.plan(req)?;
        let hits = self.recommend_rows(&plan.query, req.k, &plan.filters)?;
        let results = hits.into_iter().enumerate().map(|(i, h)| Scored { rank: i + 1, score: h.score, song: self.view(h.row) }).collect();
        Ok(Answer { notes: self.facts_notes(&plan.filters), query: plan.seeds, clusters: plan.filters.clusters, results })
    }

    /// [`Catalog::answer`] re-ranked by a listener's taste: a wider pool of similar songs (ten times k, at
    /// least 200) re-ranked by [`crate::rerank`] (never a song the listener disliked; each scored
    /// `(1 - weight) * similarity + weight * p(like)`), with each result's probability of being liked.
    pub fn answer_by_taste(&self, req: &Request, model: &TasteModel, profile: &Profile, weight: f32, min_like: Option<f32>) -> Result<(Answer, Vec<f32>), LibraryError> {
        let plan = self.plan(req)?;
        let pool = self.recommend(&plan.query, (req.k * 10).max(200).min(self.len()), &plan.filters)?;
        let mut results = Vec::new();
        let mut p_like = Vec::new();
        for (r, p) in crate::rerank(self, pool, model, profile, weight, min_like, req.k) {
            results.push(Scored { rank: r.rank, score: r.score, song: self.view(self.row_or_not_found(r.id)?) });
            p_like.push(p);
        }
        Ok((Answer { notes: self.facts_notes(&plan.filters), query: plan.seeds, clusters: plan.filters.clusters, results }, p_like))
    }

    /// [`Library::stats`], at once.
    pub fn stats(&self) -> LibraryStats {
        let mut genres: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut groups: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut tags: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut seconds = 0.0;
        for s in self.songs() {
            for t in s.tags.as_ref().map(|t| t.scores()).unwrap_or_default() {
                if t.prob >= crate::DEFAULT_TAG_MIN {
                    *tags.entry(t.tag).or_default() += 1;
                }
            }
            if let Some(g) = &s.genre {
                *genres.entry(g).or_default() += 1;
            }
            if let Some(g) = &s.group {
                *groups.entry(g).or_default() += 1;
            }
            seconds += s.duration_s;
        }
        let sorted = |m: std::collections::BTreeMap<&str, usize>| m.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        LibraryStats {
            songs: self.len(),
            hours: seconds / 3600.0,
            genres: sorted(genres),
            groups: sorted(groups),
            tags: {
                let mut t: Vec<(String, usize)> = sorted(tags);
                t.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                t
            },
            search: if self.uses_index() { "hnsw" } else { "exact" }.into(),
        }
    }
}

impl Library for Catalog {
    fn count(&self) -> impl Future<Output = Result<usize, LibraryError>> + Send {
        std::future::ready(Ok(self.len()))
    }

    fn stats(&self) -> impl Future<Output = Result<LibraryStats, LibraryError>> + Send {
        std::future::ready(Ok(Catalog::stats(self)))
    }

    fn song(&self, id: &str) -> impl Future<Output = Result<SongView, LibraryError>> + Send {
        std::future::ready(self.row_or_not_found(id).map(|r| self.view(r)))
    }

    fn resolve(&self, text: &str) -> impl Future<Output = Result<SongView, LibraryError>> + Send {
        std::future::ready(Catalog::resolve(self, text).map(|r| self.view(r)).map_err(LibraryError::from))
    }

    fn search(&self, text: &str, limit: usize) -> impl Future<Output = Result<Vec<SongView>, LibraryError>> + Send {
        std::future::ready(Ok(self.search_text(text, limit).into_iter().map(|r| self.view(r)).collect()))
    }

    fn recommend(&self, req: &Request) -> impl Future<Output = Result<Answer, LibraryError>> + Send {
        std::future::ready(self.answer(req))
    }
}
