//! A store opened for searching: songs, their vectors (one matrix, or the index's own copy), and (for
//! large libraries) the HNSW index kept in step with the store incrementally. What `query`, `demo` and `serve` share.

use soundalike_facts::{CamelotKey, KeyRule};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use soundalike_vectors::{exact_rows, Hit, REBUILD_DEAD_FRACTION};

use crate::{dot, AnnIndex, AnnParams, IndexError, Result, SongRecord, Store, StoreHeader};

/// Below this many songs, exact search is as fast as the graph and always exact.
pub const EXACT_BELOW: usize = 2000;

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Exact under [`EXACT_BELOW`] songs, HNSW above.
    Auto,
    /// Always brute force.
    Exact,
    /// Always the HNSW index.
    Ann,
}

/// What [`sync_index`] did to bring the saved index in step with the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexUpdate {
    /// Built from scratch (none saved, another format, or too many tombstones).
    pub rebuilt: bool,
    /// Songs inserted into an existing graph.
    pub added: usize,
    /// Songs tombstoned (removed or changed).
    pub removed: usize,
    /// Whether the result was written to disk. `false` when nothing changed, and when a reader found
    /// another process holding the store's lock (the graph was updated in memory only).
    pub saved: bool,
}

impl IndexUpdate {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.rebuilt || self.added > 0 || self.removed > 0
    }
}

/// The key a song has in the index: id and content fingerprint (a changed file is a new key).
fn song_key(s: &SongRecord) -> String {
    format!("{}\u{0}{}", s.id, s.fingerprint)
}

/// Brings the store's saved index in step with its songs: new and changed songs are inserted, vanished
/// and changed ones tombstoned, and the graph is rebuilt when tombstones pass [`REBUILD_DEAD_FRACTION`]
/// (or none is saved). Saved again (atomically) only when something changed, and only when the store's
/// writer lock can be had at once: a reader never waits for a writer, and never writes beside one (it then
/// searches the updated graph in memory and leaves saving to the writer).
pub fn sync_index(store: &Store, params: &AnnParams) -> Result<(AnnIndex, IndexUpdate)> {
    match store.lock() {
        Some(l) => sync_index_with(store, params, Some(l), false),
        None => {
            let lock = crate::StoreLock::try_acquire(store.dir()).ok().flatten();
            sync_index_with(store, params, lock.as_ref(), false)
        }
    }
}

/// [`sync_index`] for a caller that holds the store's lock (`lock`; `None` = do not save), with `rebuild`
/// building a new graph whatever is saved. Never takes the lock itself: a writer that holds it passes it
/// here (taking it again from the same process would fail, and the index would silently stay in memory).
/// The saved index is replaced by rename only once the new one is complete: a failed or killed build
/// leaves the old one in place.
pub fn sync_index_with(store: &Store, params: &AnnParams, lock: Option<&crate::StoreLock>, rebuild: bool) -> Result<(AnnIndex, IndexUpdate)> {
    let h = &store.header;
    let songs: Vec<&SongRecord> = store.songs().collect();
    let existing = if rebuild { None } else { AnnIndex::load(store.dir(), &h.model_fingerprint, h.dim)? };
    let mut update = IndexUpdate::default();
    // A graph rebuilt because tombstones piled up keeps the parameters it was built with (M, precision).
    let mut build_params = params.clone();
    let index = match existing {
        Some(mut ix) => {
            let want: HashSet<String> = songs.iter().map(|s| song_key(s)).collect();
            let mut have: HashMap<String, usize> = HashMap::new();
            let mut stale = Vec::new();
            for (slot, key) in ix.live() {
                if want.contains(key) && !have.contains_key(key) {
                    have.insert(key.to_string(), slot);
                } else {
                    stale.push(slot);
                }
            }
            let fresh: Vec<&SongRecord> = songs.iter().copied().filter(|s| !have.contains_key(&song_key(s))).collect();
            let dead_after = (ix.slots() - ix.len() + stale.len()) as f64;
            if dead_after / (ix.slots() + fresh.len()).max(1) as f64 > REBUILD_DEAD_FRACTION {
                build_params = AnnParams { ef_search: params.ef_search, ..ix.params.clone() };
                None
            } else {
                for slot in stale {
                    ix.remove(slot);
                    update.removed += 1;
                }
                for s in fresh {
                    ix.insert(&s.vector, song_key(s))?;
                    update.added += 1;
                }
                Some(ix)
            }
        }
        None => None,
    };
    let mut index = match index {
        Some(ix) => ix,
        None => {
            update.rebuilt = true;
            let (m, rows) = store.matrix();
            AnnIndex::build_keyed(&m, h.dim, &build_params, rows.iter().map(|s| song_key(s)).collect())?
        }
    };
    if update.changed() && lock.is_some() {
        index.save(store.dir(), &h.model_fingerprint)?;
        update.saved = true;
    }
    // The search list is the caller's choice, not the one saved with the graph.
    index.params.ef_search = params.ef_search;
    Ok((index, update))
}

/// Where a song's genre (for `--genre`, `--same-genre`, the page's selector and the tables) comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GenreSource {
    /// The genre tag or CSV column the store recorded; songs without one have no genre.
    Tag,
    /// The model's predicted class (the argmax of the stored probabilities), for every song.
    Predicted,
    /// The recorded genre where there is one, else the model's prediction (the default: most music folders
    /// have no usable genre tags).
    #[default]
    Either,
    /// The most probable of the tagger's genre tags ([`soundalike_tags::GENRE_TAGS`]); songs not tagged yet
    /// have no genre.
    Tagger,
}

impl std::str::FromStr for GenreSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tag" => Ok(GenreSource::Tag),
            "predicted" => Ok(GenreSource::Predicted),
            "either" => Ok(GenreSource::Either),
            "tags" => Ok(GenreSource::Tagger),
            o => Err(format!("unknown genre source {o:?}: tag, predicted, either or tags")),
        }
    }
}

/// A recommendation with what the table shows.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recommendation<'a> {
    /// 1-based.
    pub rank: usize,
    /// Cosine similarity to the query.
    pub score: f32,
    /// Song id (path relative to the library).
    pub id: &'a str,
    /// Title.
    pub title: &'a str,
    /// Artist.
    pub artist: Option<&'a str>,
    /// Album.
    pub album: Option<&'a str>,
    /// Genre.
    pub genre: Option<&'a str>,
    /// Group (e.g. soundtrack).
    pub group: Option<&'a str>,
    /// Cluster, when the store has clusters (see [`Catalog::use_clusters`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<u32>,
    /// Tempo, when it has a steady beat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpm: Option<f32>,
    /// Key (Camelot), when clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<CamelotKey>,
    /// Integrated loudness (LUFS), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lufs: Option<f32>,
    /// True peak (dBTP), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_peak_db: Option<f32>,
    /// The taggers' most probable tags (guesses, with probabilities), when tagged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<soundalike_tags::TagScore>,
}

/// Filters and diversity settings.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Song ids never returned (the query songs).
    pub exclude: Vec<String>,
    /// Only songs of this genre (filtered search in the graph).
    pub genre: Option<String>,
    /// Only songs sharing one of these genres.
    pub same_genres: Option<Vec<String>>,
    /// Drop songs by these artists.
    pub exclude_artists: Vec<String>,
    /// Drop songs of these groups.
    pub exclude_groups: Vec<String>,
    /// At most this many songs per album (or group when there is no album).
    pub max_per_album: Option<usize>,
    /// Only songs in one of these clusters (needs [`Catalog::use_clusters`]).
    pub clusters: Option<Vec<u32>>,
    /// Only songs whose tempo is in this range (songs without a steady beat are left out).
    pub bpm: Option<BpmRange>,
    /// Only songs whose tempo is in one of these ranges (around the query songs' tempi).
    pub bpm_near: Option<Vec<BpmRange>>,
    /// Only songs in one of these keys (songs whose key is unclear are left out).
    pub keys: Option<Vec<CamelotKey>>,
    /// Only songs the taggers give each of these tags (as [`soundalike_tags::resolve`] spells them) with at
    /// least [`Filters::tag_min`] probability (songs not tagged yet are left out).
    pub tags: Vec<&'static str>,
    /// The least probability a tag filter accepts.
    pub tag_min: f32,
}

/// The least probability `--tag` accepts unless told: musicnn's probabilities are low (a song's top tag
/// is often 0.3 to 0.5), so 0.5 would find almost nothing.
pub const DEFAULT_TAG_MIN: f32 = 0.2;

impl Filters {
    /// Whether these filters ask for a tempo, a key or tags (and so leave out songs without one).
    pub fn asks_for_facts(&self) -> bool {
        self.bpm.is_some() || self.bpm_near.is_some() || self.keys.is_some() || !self.tags.is_empty()
    }

    /// What to say of a library with `no_bpm` songs without a tempo and `no_key` without a key, under
    /// these filters (the songs they had to leave out).
    pub fn facts_notes(&self, no_bpm: usize, no_key: usize, no_tags: usize) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.tags.is_empty() && no_tags > 0 {
            notes.push(format!("{no_tags} songs not tagged yet (run `embed` on the library again) were left out"));
        }
        if (self.bpm.is_some() || self.bpm_near.is_some()) && no_bpm > 0 {
            notes.push(format!("{no_bpm} songs without a tempo (no steady beat, or not analysed yet) were left out"));
        }
        if self.keys.is_some() && no_key > 0 {
            notes.push(format!("{no_key} songs without a key (unclear, or not analysed yet) were left out"));
        }
        notes
    }

    /// Whether `s` passes the tempo and key filters.
    pub fn facts_pass(&self, s: &SongRecord) -> bool {
        let bpm = s.bpm();
        self.bpm.is_none_or(|r| bpm.is_some_and(|b| r.contains(b)))
            && self.bpm_near.as_ref().is_none_or(|rs| bpm.is_some_and(|b| rs.iter().any(|r| r.contains(b))))
            && self.keys.as_ref().is_none_or(|ks| s.key().is_some_and(|k| ks.contains(&k)))
            && self.tags.iter().all(|t| s.tag_prob(t).is_some_and(|p| p >= self.tag_min))
    }
}

/// A tempo range, `lo` to `hi` BPM; with `fold`, half and double tempo count too (a 87 BPM song is in
/// 170-178).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BpmRange {
    /// Lowest BPM.
    pub lo: f32,
    /// Highest BPM.
    pub hi: f32,
    /// Also accept half and double tempo.
    pub fold: bool,
}

impl BpmRange {
    /// Whether `bpm` is in the range (or, folding, half or double of it is).
    pub fn contains(&self, bpm: f32) -> bool {
        let within = |b: f32| b >= self.lo - 0.05 && b <= self.hi + 0.05;
        within(bpm) || (self.fold && (within(bpm * 2.0) || within(bpm / 2.0)))
    }

    /// `pct` percent either side of `bpm`.
    pub fn around(bpm: f32, pct: f32, fold: bool) -> BpmRange {
        BpmRange { lo: bpm * (1.0 - pct / 100.0), hi: bpm * (1.0 + pct / 100.0), fold }
    }
}

impl std::str::FromStr for BpmRange {
    type Err = String;

    /// `120-128`, `120..128` or `124` (that tempo, ±0.5).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?}: write a tempo range as LO-HI, e.g. 120-128 (or one BPM)");
        let num = |x: &str| x.trim().parse::<f32>().ok().filter(|v| v.is_finite() && *v > 0.0 && *v < 1000.0).ok_or_else(bad);
        let (lo, hi) = match s.split_once("..").or_else(|| s.split_once('-')) {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let v = num(s)?;
                (v - 0.5, v + 0.5)
            }
        };
        if lo > hi {
            return Err(format!("{s:?}: the lower tempo comes first"));
        }
        Ok(BpmRange { lo, hi, fold: false })
    }
}

impl Filters {
    /// The filters a request around `seeds` (the query songs) asks for (see [`Around`]): never the seeds
    /// themselves, and what `around` asks.
    pub fn around(seeds: &[crate::SongView], around: Around) -> Filters {
        let of = |f: fn(&crate::SongView) -> &Option<String>| seeds.iter().filter_map(|s| f(s).clone()).collect::<Vec<String>>();
        Filters {
            exclude: seeds.iter().map(|s| s.id.clone()).collect(),
            genre: around.genre,
            same_genres: around.same_genre.then(|| of(|s| &s.genre)),
            exclude_artists: if around.exclude_same_artist { of(|s| &s.artist) } else { vec![] },
            exclude_groups: if around.exclude_same_group { of(|s| &s.group) } else { vec![] },
            max_per_album: around.max_per_album,
            clusters: None,
            tags: around.tags.clone(),
            tag_min: around.tag_min.unwrap_or(DEFAULT_TAG_MIN),
            bpm: around.bpm.map(|r| BpmRange { fold: around.bpm_fold || r.fold, ..r }),
            bpm_near: around.bpm_near.map(|pct| seeds.iter().filter_map(|s| s.bpm).map(|b| BpmRange::around(b, pct, around.bpm_fold)).collect()),
            keys: match (around.key, around.key_compatible) {
                (Some(k), false) => Some(vec![k]),
                (Some(k), true) => Some(k.neighbours(around.key_rule)),
                (None, true) => {
                    let mut ks: Vec<CamelotKey> = seeds.iter().filter_map(|s| s.key).flat_map(|k| k.neighbours(around.key_rule)).collect();
                    ks.dedup();
                    Some(ks)
                }
                (None, false) => None,
            },
        }
    }
}

/// What a request around some songs asks for ([`Filters::around`]); the default asks for nothing more
/// than leaving the query songs out.
#[derive(Clone, Debug, Default)]
pub struct Around {
    /// Only songs of this genre.
    pub genre: Option<String>,
    /// Only songs sharing a query song's genre.
    pub same_genre: bool,
    /// None by a query song's artist.
    pub exclude_same_artist: bool,
    /// None of a query song's group.
    pub exclude_same_group: bool,
    /// At most this many songs per album (or group).
    pub max_per_album: Option<usize>,
    /// Only songs in this tempo range.
    pub bpm: Option<BpmRange>,
    /// Only songs within this many percent of a query song's tempo.
    pub bpm_near: Option<f32>,
    /// Half and double tempo count as in range (for `bpm` and `bpm_near`).
    pub bpm_fold: bool,
    /// Only songs in this key (or, with `key_compatible`, in a key that mixes with it).
    pub key: Option<CamelotKey>,
    /// Only songs in a key that mixes with `key`, or else with the query songs' keys.
    pub key_compatible: bool,
    /// Which keys mix.
    pub key_rule: KeyRule,
    /// Only songs with all of these tags (spelt as [`soundalike_tags::resolve`] spells them; `Request::validate`
    /// resolves what was typed).
    pub tags: Vec<&'static str>,
    /// The least probability a tag filter accepts ([`DEFAULT_TAG_MIN`] unless set).
    pub tag_min: Option<f32>,
}

fn eq(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.eq_ignore_ascii_case(b))
}

/// A store opened for searching: row `i` is `songs()[i]`, sorted by id. Song vectors live once (the
/// records' `vector` fields are emptied): in a row-major matrix, or, when the index is used, in the
/// index's graph, read through a row -> slot map.
pub struct Catalog {
    /// The store's header.
    pub header: StoreHeader,
    dir: PathBuf,
    songs: Vec<SongRecord>,
    /// Row-major vectors, one row per song; empty when the index holds them (see `row_slot`).
    matrix: Vec<f32>,
    index: Option<AnnIndex>,
    /// Per index slot: its row (None for tombstones).
    slot_row: Vec<Option<usize>>,
    /// Per row: its index slot, whose vector it reads (so a large library keeps its vectors once).
    row_slot: Vec<u32>,
    /// What opening did to the index, if one is used.
    pub index_update: Option<IndexUpdate>,
    /// Per row: its cluster (empty until [`Catalog::use_clusters`]).
    cluster: Vec<Option<u32>>,
    /// The clusters' centres (empty until [`Catalog::use_clusters`]).
    centroids: Vec<Vec<f32>>,
}

impl Catalog {
    /// Opens the store at `dir`; with `Method::Ann`, or `Auto` and at least [`EXACT_BELOW`] songs, also
    /// its index (loaded and updated, or built).
    pub fn open(dir: &Path, method: Method, params: &AnnParams) -> Result<Catalog> {
        Self::from_store(Store::open(dir)?, method, params)
    }

    /// [`Catalog::open`] that never takes the store's lock and never writes: an index out of step with the
    /// store is brought in step in memory only. For a long-running reader (`serve` reloading its store), so
    /// that it never holds the lock a writer (`embed`) is about to take.
    pub fn open_without_saving(dir: &Path, method: Method, params: &AnnParams) -> Result<Catalog> {
        Self::from_store_saving(Store::open(dir)?, method, params, false)
    }

    /// [`Catalog::open`] over an already opened store.
    pub fn from_store(store: Store, method: Method, params: &AnnParams) -> Result<Catalog> {
        Self::from_store_saving(store, method, params, true)
    }

    fn from_store_saving(store: Store, method: Method, params: &AnnParams, save: bool) -> Result<Catalog> {
        let use_index = method == Method::Ann || (method == Method::Auto && store.len() >= EXACT_BELOW);
        let sync = |store: &Store| if save { sync_index(store, params) } else { sync_index_with(store, params, None, false) };
        let synced = if use_index && !store.is_empty() { Some(sync(&store)?) } else { None };
        let dir = store.dir().to_path_buf();
        let (header, mut songs) = store.into_parts();
        let (mut matrix, mut slot_row, mut row_slot, mut index, mut index_update) = (Vec::new(), Vec::new(), Vec::new(), None, None);
        if let Some((ix, up)) = synced {
            let row_of: HashMap<String, usize> = songs.iter().enumerate().map(|(i, s)| (song_key(s), i)).collect();
            slot_row = vec![None; ix.slots()];
            row_slot = vec![u32::MAX; songs.len()];
            for (slot, key) in ix.live() {
                if let Some(&r) = row_of.get(key) {
                    slot_row[slot] = Some(r);
                    row_slot[r] = slot as u32;
                }
            }
            if row_slot.contains(&u32::MAX) {
                return Err(IndexError::StaleIndex { path: dir.to_path_buf(), reason: "the index does not hold every song".into() });
            }
            index = Some(ix);
            index_update = Some(up);
        } else {
            matrix.reserve(songs.len() * header.dim);
            songs.iter().for_each(|s| matrix.extend_from_slice(&s.vector));
        }
        songs.iter_mut().for_each(|s| s.vector = Vec::new());
        Ok(Catalog { header, dir, songs, matrix, index, slot_row, row_slot, index_update, cluster: Vec::new(), centroids: Vec::new() })
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Songs sorted by id (their `vector` is empty: see [`Catalog::vector`]).
    pub fn songs(&self) -> &[SongRecord] {
        &self.songs
    }

    /// Number of songs.
    pub fn len(&self) -> usize {
        self.songs.len()
    }

    /// Whether there are no songs.
    pub fn is_empty(&self) -> bool {
        self.songs.is_empty()
    }

    /// Whether searches go through the HNSW index.
    pub fn uses_index(&self) -> bool {
        self.index.is_some()
    }

    /// The row of a song id.
    pub fn row(&self, id: &str) -> Option<usize> {
        self.songs.binary_search_by(|s| s.id.as_str().cmp(id)).ok()
    }

    /// A song by id.
    pub fn get(&self, id: &str) -> Option<&SongRecord> {
        self.row(id).map(|r| &self.songs[r])
    }

    /// Sets where every song's genre comes from (see [`GenreSource`]): the songs' `genre` is replaced in
    /// memory (the store is not changed); returns how many songs' genre is now the model's prediction.
    pub fn use_genres(&mut self, source: GenreSource) -> usize {
        let labels = self.header.labels.clone();
        let mut predicted = 0;
        for s in &mut self.songs {
            let pred = s.predicted(&labels);
            let (g, from_model) = match source {
                GenreSource::Tag => (s.genre.take(), false),
                GenreSource::Predicted => (pred, true),
                GenreSource::Tagger => (s.tags.as_ref().and_then(|t| t.genre()).map(|(g, _)| g.to_string()), false),
                GenreSource::Either => match s.genre.take().filter(|g| !g.trim().is_empty()) {
                    Some(g) => (Some(g), false),
                    None => (pred, true),
                },
            };
            predicted += usize::from(from_model && g.is_some());
            s.genre = g;
        }
        predicted
    }

    /// Loads the store's clusters (`soundalike clusters`) so filters and results can use them; songs added
    /// since, not yet placed by `embed`, get their nearest centroid here (in memory). `Ok(None)` when the
    /// store has none; an error when they belong to another model.
    pub fn use_clusters(&mut self) -> Result<Option<crate::Clustering>> {
        let Some(c) = crate::Clustering::load(&self.dir, &self.header)? else { return Ok(None) };
        self.cluster = (0..self.songs.len()).map(|r| Some(c.place(&self.songs[r].id, &self.songs[r].fingerprint, &self.vector(r)))).collect();
        self.centroids = c.centroids.clone();
        Ok(Some(c))
    }

    /// The clusters' centres, once [`Catalog::use_clusters`] found clusters (else empty).
    pub fn centroids(&self) -> &[Vec<f32>] {
        &self.centroids
    }

    /// The cluster whose centre is nearest `v` (0 without clusters).
    pub fn nearest_cluster(&self, v: &[f32]) -> u32 {
        let mut best = (0, f32::NEG_INFINITY);
        for (c, centre) in self.centroids.iter().enumerate() {
            let s = dot(centre, v);
            if s > best.1 {
                best = (c as u32, s);
            }
        }
        best.0
    }

    /// The cluster of row `row`, once [`Catalog::use_clusters`] found clusters.
    pub fn cluster_of(&self, row: usize) -> Option<u32> {
        self.cluster.get(row).copied().flatten()
    }

    /// `k` rows drawn at random (seeded) from the songs in `clusters`, leaving out `exclude` ids.
    pub fn random_in_clusters(&self, clusters: &[u32], k: usize, exclude: &[String], seed: u64) -> Vec<usize> {
        let pool: Vec<usize> =
            (0..self.songs.len()).filter(|&r| self.cluster_of(r).is_some_and(|c| clusters.contains(&c)) && !exclude.contains(&self.songs[r].id)).collect();
        let mut picked: Vec<usize> = soundalike_core::SplitMix64(seed).sample(pool.len(), k).into_iter().map(|i| pool[i]).collect();
        picked.sort_unstable();
        picked
    }

    /// A row as a [`Recommendation`] (rank and score given).
    pub fn recommendation(&self, row: usize, rank: usize, score: f32) -> Recommendation<'_> {
        let s = &self.songs[row];
        Recommendation {
            rank,
            score,
            id: &s.id,
            title: &s.title,
            artist: s.artist.as_deref(),
            album: s.album.as_deref(),
            genre: s.genre.as_deref(),
            group: s.group.as_deref(),
            cluster: self.cluster_of(row),
            bpm: s.bpm(),
            key: s.key(),
            lufs: s.lufs(),
            true_peak_db: s.true_peak_db(),
            tags: s.tags.as_ref().map(|t| t.top(crate::VIEW_TAGS)).unwrap_or_default(),
        }
    }

    /// Whether any song has genre `g` (case-insensitive, as the filters compare).
    pub fn has_genre(&self, g: &str) -> bool {
        self.songs.iter().any(|s| eq(s.genre.as_deref(), g))
    }

    /// Every vector as one row-major `[len, dim]` matrix, when the catalog holds them so (`None` when they
    /// live in the HNSW index: read them with [`Catalog::vector`]).
    pub fn matrix(&self) -> Option<&[f32]> {
        (self.index.is_none()).then_some(self.matrix.as_slice())
    }

    /// The vector of row `row` (from the index when there is one: decoded if it keeps 16-bit values).
    pub fn vector(&self, row: usize) -> Cow<'_, [f32]> {
        match &self.index {
            Some(ix) => ix.vector(self.row_slot[row] as usize),
            None => Cow::Borrowed(&self.matrix[row * self.header.dim..(row + 1) * self.header.dim]),
        }
    }

    /// Exact search over every row `keep` accepts (against the vectors as held: the index's 16-bit values
    /// when it keeps them).
    fn exact(&self, query: &[f32], want: usize, keep: &dyn Fn(usize) -> bool) -> Vec<Hit> {
        match &self.index {
            Some(ix) => exact_rows(self.songs.len(), &|r| ix.similarity(query, self.row_slot[r] as usize), want, keep),
            None => exact_rows(self.songs.len(), &|r| dot(&self.matrix[r * self.header.dim..(r + 1) * self.header.dim], query), want, keep),
        }
    }

    /// Songs whose title, artist, album or id contain every word of `text` (case-insensitive), titles
    /// starting with the text first; then, when `text` is a tag, the songs the taggers give it.
    pub fn search_text(&self, text: &str, limit: usize) -> Vec<usize> {
        let words: Vec<String> = text.to_lowercase().split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            return vec![];
        }
        let needle = text.trim().to_lowercase();
        // A tag the taggers give the song (at the default least probability) is found too, after songs
        // whose title, artist, album or path match.
        let tag = soundalike_tags::lookup(&needle);
        let mut hits: Vec<(bool, bool, usize)> = self
            .songs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let hay = format!("{} {} {} {}", s.title, s.artist.as_deref().unwrap_or(""), s.album.as_deref().unwrap_or(""), s.id).to_lowercase();
                if words.iter().all(|w| hay.contains(w.as_str())) {
                    Some((false, !s.title.to_lowercase().starts_with(&needle), i))
                } else {
                    tag.filter(|t| s.tag_prob(t).is_some_and(|p| p >= DEFAULT_TAG_MIN)).map(|_| (true, true, i))
                }
            })
            .collect();
        hits.sort();
        hits.into_iter().take(limit).map(|(_, _, i)| i).collect()
    }

    /// Finds the song a user means: exact id, a path inside the library, or text in title/artist/id
    /// (ambiguous text is an error listing the candidates). Returns its row.
    pub fn resolve(&self, q: &str) -> Result<usize> {
        if let Some(r) = self.row(q) {
            return Ok(r);
        }
        let p = Path::new(q);
        if p.exists() {
            if let (Ok(abs), Ok(root)) = (std::fs::canonicalize(p), std::fs::canonicalize(&self.header.library_root)) {
                if let Ok(rel) = abs.strip_prefix(&root) {
                    let id = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                    if let Some(r) = self.row(&id) {
                        return Ok(r);
                    }
                }
            }
        }
        let needle = q.to_lowercase();
        let hits: Vec<usize> = (0..self.songs.len())
            .filter(|&i| {
                let s = &self.songs[i];
                format!("{} {} {}", s.title, s.artist.as_deref().unwrap_or(""), s.id).to_lowercase().contains(&needle)
            })
            .collect();
        match hits.len() {
            0 => Err(IndexError::NotFound(format!("no song matches {q:?} (try an id from `soundalike export`, a path, or part of a title)"))),
            1 => Ok(hits[0]),
            _ => {
                let exact: Vec<usize> = hits.iter().copied().filter(|&i| self.songs[i].title.to_lowercase() == needle).collect();
                if exact.len() == 1 {
                    return Ok(exact[0]);
                }
                let list: Vec<String> = hits.iter().take(10).map(|&i| format!("  {}  ({})", self.songs[i].id, self.songs[i].title)).collect();
                Err(IndexError::Invalid(format!(
                    "{q:?} matches {} songs; name one by id:\n{}{}",
                    hits.len(),
                    list.join("\n"),
                    if hits.len() > 10 { "\n  ..." } else { "" }
                )))
            }
        }
    }

    /// The L2-normalised centroid of some rows plus extra vectors (a playlist, or a new file).
    pub fn centroid(&self, rows: &[usize], extra: &[&[f32]]) -> Vec<f32> {
        let mut q = vec![0f32; self.header.dim];
        for v in rows.iter().map(|&r| self.vector(r)).chain(extra.iter().map(|&v| Cow::Borrowed(v))) {
            q.iter_mut().zip(v.iter()).for_each(|(a, b)| *a += b);
        }
        crate::normalise(&mut q);
        q
    }

    /// The `k` songs most similar to `query` that pass `f`: filtered in the index (not
    /// search-then-filter, with an exact fallback, so k come back whenever k pass), then the per-album cap.
    pub fn recommend(&self, query: &[f32], k: usize, f: &Filters) -> Result<Vec<Recommendation<'_>>> {
        Ok(self.recommend_rows(query, k, f)?.into_iter().enumerate().map(|(i, h)| self.recommendation(h.row, i + 1, h.score)).collect())
    }

    /// [`Catalog::recommend`] as rows and scores, best first.
    pub fn recommend_rows(&self, query: &[f32], k: usize, f: &Filters) -> Result<Vec<Hit>> {
        if self.songs.is_empty() {
            return Err(IndexError::Invalid(format!("{}: the store is empty", self.dir.display())));
        }
        if k == 0 {
            return Err(IndexError::Invalid("k must be at least 1".into()));
        }
        if query.len() != self.header.dim {
            return Err(IndexError::Invalid(format!("query has {} values, store dim {}", query.len(), self.header.dim)));
        }
        let keep = |i: usize| {
            let s = &self.songs[i];
            !f.exclude.contains(&s.id)
                && f.genre.as_deref().is_none_or(|g| eq(s.genre.as_deref(), g))
                && f.same_genres.as_ref().is_none_or(|gs| gs.iter().any(|g| eq(s.genre.as_deref(), g)))
                && !f.exclude_artists.iter().any(|a| eq(s.artist.as_deref(), a))
                && !f.exclude_groups.iter().any(|g| eq(s.group.as_deref(), g))
                && f.clusters.as_ref().is_none_or(|cs| self.cluster_of(i).is_some_and(|c| cs.contains(&c)))
                && f.facts_pass(s)
        };
        let n = self.songs.len();
        let only_excludes = f.genre.is_none() && f.same_genres.is_none() && f.exclude_artists.is_empty() && f.exclude_groups.is_empty() && f.clusters.is_none() && !f.asks_for_facts();
        // With a per-album cap, fetch more and cap greedily; grow until k are kept or the library is exhausted.
        let mut want = if f.max_per_album.is_some() { k * 4 } else { k }.min(n);
        loop {
            let hits: Vec<Hit> = match &self.index {
                None => self.exact(query, want, &keep),
                Some(ix) => {
                    let to_row = |h: Hit| self.slot_row.get(h.row).copied().flatten().map(|row| Hit { row, score: h.score });
                    let mut h: Vec<Hit> = if only_excludes {
                        // No real filter: the plain graph search (faster), asking for as many extra as are excluded.
                        ix.search_all(query, want + f.exclude.len())?.into_iter().filter_map(to_row).filter(|h| keep(h.row)).collect()
                    } else {
                        let keep_slot = |slot: usize| self.slot_row.get(slot).copied().flatten().is_some_and(keep);
                        ix.search(query, want, &keep_slot)?.into_iter().filter_map(to_row).collect()
                    };
                    h.truncate(want);
                    if h.len() < want {
                        // A selective filter the graph could not fill: exact over the rows that pass.
                        let e = self.exact(query, want, &keep);
                        if e.len() > h.len() {
                            h = e;
                        }
                    }
                    h
                }
            };
            let exhausted = hits.len() < want;
            let mut per_album: HashMap<&str, usize> = HashMap::new();
            let mut out = Vec::new();
            for h in hits {
                let s = &self.songs[h.row];
                if let Some(cap) = f.max_per_album {
                    let key = s.album.as_deref().or(s.group.as_deref()).unwrap_or(&s.id);
                    let c = per_album.entry(key).or_default();
                    if *c >= cap {
                        continue;
                    }
                    *c += 1;
                }
                out.push(h);
                if out.len() == k {
                    break;
                }
            }
            if out.len() == k || exhausted || want >= n {
                return Ok(out);
            }
            want = (want * 4).min(n);
        }
    }
}
