//! A store's clusters: the k-means fit of its song vectors saved as `clusters.json` in the store
//! (format-versioned, tied to the model fingerprint, written atomically), a summary of every cluster, and
//! the bookkeeping that keeps it usable as the library changes: `embed` gives new and changed songs their
//! nearest centroid and counts them as stale until `soundalike clusters` runs again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use soundalike_store::{io_err, read_if_exists, write_atomic};
use soundalike_vectors::{KChoice, KMeansFit};
use crate::{dot, IndexError, Result, SongRecord, StoreHeader};

/// Version of `clusters.json`.
pub const CLUSTERS_FORMAT_VERSION: u32 = 1;

/// The file in a store folder.
pub const CLUSTERS_FILE: &str = soundalike_store::layout::CLUSTERS;

/// Songs listed as a cluster's medoids (nearest its centroid).
pub const MEDOIDS: usize = 5;

/// A genre and its share of a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// Genre.
    pub genre: String,
    /// Songs of the cluster with it.
    pub songs: usize,
    /// Their share of the cluster (0 to 1).
    pub share: f64,
}

/// A song near a cluster's centroid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Medoid {
    /// Song id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: Option<String>,
    /// Cosine similarity to the centroid.
    pub similarity: f32,
}

/// Another cluster and how close its centroid is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Cluster number.
    pub cluster: usize,
    /// Cosine similarity of the two centroids.
    pub similarity: f32,
}

/// What a cluster holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// Cluster number (0-based).
    pub cluster: usize,
    /// Songs in it.
    pub size: usize,
    /// Their share of the library.
    pub share: f64,
    /// Mean cosine similarity of its songs to its centroid (1 = all alike).
    pub cohesion: f64,
    /// Most common genres from tags or the labels CSV (songs without one are not counted).
    pub genres_tag: Vec<Share>,
    /// Most common genres the model predicts.
    pub genres_predicted: Vec<Share>,
    /// The songs nearest its centroid.
    pub medoids: Vec<Medoid>,
    /// The other clusters nearest it.
    pub nearest: Vec<Neighbour>,
}

/// One song's place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Song id.
    pub id: String,
    /// Its content fingerprint when placed (a changed file is placed again).
    pub fingerprint: String,
    /// Cluster number.
    pub cluster: u32,
    /// Placed by nearest centroid after the fit (not part of it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

/// Songs that changed since the fit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staleness {
    /// New songs placed by nearest centroid.
    pub added: usize,
    /// Changed songs placed again by nearest centroid.
    pub changed: usize,
    /// Songs gone from the store.
    pub removed: usize,
}

impl Staleness {
    /// Whether anything changed since the fit.
    pub fn any(&self) -> bool {
        self.added + self.changed + self.removed > 0
    }
}

/// A store's clustering, as saved in `clusters.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clustering {
    /// [`CLUSTERS_FORMAT_VERSION`].
    pub format_version: u32,
    /// Fingerprint of the model whose vectors were clustered.
    pub model_fingerprint: String,
    /// Its name.
    pub model_name: String,
    /// Vector width.
    pub dim: usize,
    /// Number of clusters.
    pub k: usize,
    /// Seed of the fit.
    pub seed: u64,
    /// Restarts of the fit.
    pub restarts: usize,
    /// `lloyd` or `mini-batch`.
    pub method: String,
    /// Sum over the fitted songs of `1 - cos` to their centroid.
    pub inertia: f64,
    /// Mean silhouette of the fit (exact, or on a sample of a large library).
    pub silhouette: Option<f64>,
    /// How k was chosen, when a range was searched.
    pub choice: Option<KChoice>,
    /// Songs in the fit.
    pub fitted_songs: usize,
    /// Changes since the fit.
    pub stale: Staleness,
    /// Summary per cluster.
    pub summaries: Vec<ClusterSummary>,
    /// Unit-length centroids.
    pub centroids: Vec<Vec<f32>>,
    /// Every song's cluster, sorted by id.
    pub members: Vec<Member>,
}

impl Clustering {
    /// The clustering of `songs` (in the order the fit saw them) from a [`KMeansFit`].
    pub fn from_fit(header: &StoreHeader, songs: &[&SongRecord], fit: &KMeansFit, seed: u64, restarts: usize, silhouette: Option<f64>, choice: Option<KChoice>) -> Clustering {
        let mut members: Vec<Member> = songs
            .iter()
            .zip(&fit.assign)
            .map(|(s, &c)| Member { id: s.id.clone(), fingerprint: s.fingerprint.clone(), cluster: c, late: false })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let mut c = Clustering {
            format_version: CLUSTERS_FORMAT_VERSION,
            model_fingerprint: header.model_fingerprint.clone(),
            model_name: header.model_name.clone(),
            dim: fit.dim,
            k: fit.k,
            seed,
            restarts,
            method: if fit.mini_batch { "mini-batch" } else { "lloyd" }.into(),
            inertia: fit.inertia,
            silhouette,
            choice,
            fitted_songs: songs.len(),
            stale: Staleness::default(),
            summaries: vec![],
            centroids: (0..fit.k).map(|c| fit.centroid(c).to_vec()).collect(),
            members,
        };
        c.summarise(header, songs);
        c
    }

    /// `STORE/clusters.json`.
    pub fn path(store_dir: &Path) -> PathBuf {
        store_dir.join(CLUSTERS_FILE)
    }

    /// Loads a store's clustering, if it has one; refuses one of another format version, or made from
    /// another model's vectors.
    pub fn load(store_dir: &Path, header: &StoreHeader) -> Result<Option<Clustering>> {
        let p = Self::path(store_dir);
        let Some(bytes) = read_if_exists(&p)? else { return Ok(None) };
        #[derive(Deserialize)]
        struct Head {
            format_version: u32,
            model_fingerprint: String,
            model_name: String,
        }
        let rerun = "run `soundalike clusters` again to replace it";
        let head: Head = serde_json::from_slice(&bytes)
            .map_err(|e| IndexError::Incompatible { path: p.clone(), reason: format!("not a soundalike clustering ({e}); {rerun}") })?;
        if head.format_version != CLUSTERS_FORMAT_VERSION {
            return Err(IndexError::Incompatible {
                path: p,
                reason: format!("clusters format {} (this soundalike reads {CLUSTERS_FORMAT_VERSION}); {rerun}", head.format_version),
            });
        }
        if head.model_fingerprint != header.model_fingerprint {
            return Err(IndexError::Incompatible {
                path: p,
                reason: format!(
                    "clusters of model {} ({}), but the store holds vectors of {} ({}); {rerun}",
                    head.model_name, head.model_fingerprint, header.model_name, header.model_fingerprint
                ),
            });
        }
        let c: Clustering = serde_json::from_slice(&bytes).map_err(|e| IndexError::Incompatible { path: p.clone(), reason: format!("damaged ({e}); {rerun}") })?;
        if c.centroids.len() != c.k || c.centroids.iter().any(|v| v.len() != header.dim) || c.members.iter().any(|m| m.cluster as usize >= c.k) {
            return Err(IndexError::Incompatible { path: p, reason: format!("centroids or members do not match k = {} and dim {}; {rerun}", c.k, header.dim) });
        }
        Ok(Some(c))
    }

    /// Writes `clusters.json` atomically (the caller holds the store's lock).
    pub fn save(&self, store_dir: &Path) -> Result<()> {
        let p = Self::path(store_dir);
        write_atomic(&p, &serde_json::to_vec(self).map_err(|e| io_err(&p, e))?)
    }

    /// The cluster of a song id.
    pub fn cluster_of(&self, id: &str) -> Option<u32> {
        self.members.binary_search_by(|m| m.id.as_str().cmp(id)).ok().map(|i| self.members[i].cluster)
    }

    /// The cluster whose centroid is most similar to `vector`.
    pub fn nearest(&self, vector: &[f32]) -> u32 {
        let mut best = (0, f32::NEG_INFINITY);
        for (c, centre) in self.centroids.iter().enumerate() {
            let s = dot(centre, vector);
            if s > best.1 {
                best = (c, s);
            }
        }
        best.0 as u32
    }

    /// The cluster of a song: its member's, when placed with this content, else its nearest centroid.
    pub fn place(&self, id: &str, fingerprint: &str, vector: &[f32]) -> u32 {
        match self.members.binary_search_by(|m| m.id.as_str().cmp(id)) {
            Ok(i) if self.members[i].fingerprint == fingerprint => self.members[i].cluster,
            _ => self.nearest(vector),
        }
    }

    /// Brings the members in step with the store's `songs` (with their vectors): new and changed songs
    /// get their nearest centroid, vanished ones are dropped, and the summaries are recomputed. Returns
    /// what changed now (also added to [`Clustering::stale`]).
    pub fn refresh(&mut self, header: &StoreHeader, songs: &[&SongRecord]) -> Staleness {
        let old: HashMap<&str, &Member> = self.members.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut now = Staleness::default();
        let mut members = Vec::with_capacity(songs.len());
        for s in songs {
            match old.get(s.id.as_str()) {
                Some(m) if m.fingerprint == s.fingerprint => members.push((*m).clone()),
                prev => {
                    if prev.is_some() {
                        now.changed += 1;
                    } else {
                        now.added += 1;
                    }
                    let c = self.nearest(&s.vector);
                    members.push(Member { id: s.id.clone(), fingerprint: s.fingerprint.clone(), cluster: c, late: true });
                }
            }
        }
        let live: std::collections::HashSet<&str> = songs.iter().map(|s| s.id.as_str()).collect();
        now.removed = self.members.iter().filter(|m| !live.contains(m.id.as_str())).count();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        self.members = members;
        self.stale.added += now.added;
        self.stale.changed += now.changed;
        self.stale.removed += now.removed;
        if now.any() {
            self.summarise(header, songs);
        }
        now
    }

    /// One line on staleness, if the library changed since the fit.
    pub fn stale_note(&self) -> Option<String> {
        self.stale.any().then(|| {
            format!(
                "the library changed since these clusters were fitted ({} added, {} changed, {} removed; new songs have their nearest cluster): run `soundalike clusters` to fit them again",
                self.stale.added, self.stale.changed, self.stale.removed
            )
        })
    }

    /// Recomputes every cluster's summary from the members and the songs' vectors and genres.
    fn summarise(&mut self, header: &StoreHeader, songs: &[&SongRecord]) {
        let by_id: HashMap<&str, &SongRecord> = songs.iter().map(|s| (s.id.as_str(), *s)).collect();
        let total = self.members.len().max(1);
        let mut groups: Vec<Vec<&SongRecord>> = vec![vec![]; self.k];
        for m in &self.members {
            if let Some(s) = by_id.get(m.id.as_str()) {
                groups[m.cluster as usize].push(s);
            }
        }
        let shares = |vals: Vec<String>, of: usize| -> Vec<Share> {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            vals.into_iter().for_each(|g| *counts.entry(g).or_default() += 1);
            let mut v: Vec<Share> = counts.into_iter().map(|(genre, songs)| Share { share: songs as f64 / of.max(1) as f64, genre, songs }).collect();
            v.sort_by(|a, b| b.songs.cmp(&a.songs).then(a.genre.cmp(&b.genre)));
            v.truncate(5);
            v
        };
        self.summaries = groups
            .iter()
            .enumerate()
            .map(|(c, g)| {
                let centre = &self.centroids[c];
                let mut sims: Vec<(f32, &SongRecord)> = g.iter().map(|s| (dot(&s.vector, centre), *s)).collect();
                let cohesion = if sims.is_empty() { 0.0 } else { sims.iter().map(|p| p.0 as f64).sum::<f64>() / sims.len() as f64 };
                sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
                let mut nearest: Vec<Neighbour> =
                    (0..self.k).filter(|&o| o != c).map(|o| Neighbour { cluster: o, similarity: dot(centre, &self.centroids[o]) }).collect();
                nearest.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.cluster.cmp(&b.cluster)));
                nearest.truncate(3);
                ClusterSummary {
                    cluster: c,
                    size: g.len(),
                    share: g.len() as f64 / total as f64,
                    cohesion,
                    genres_tag: shares(g.iter().filter_map(|s| s.genre.clone().filter(|x| !x.trim().is_empty())).collect(), g.len()),
                    genres_predicted: shares(g.iter().filter_map(|s| s.predicted(&header.labels)).collect(), g.len()),
                    medoids: sims
                        .iter()
                        .take(MEDOIDS)
                        .map(|(sim, s)| Medoid { id: s.id.clone(), title: s.title.clone(), artist: s.artist.clone(), similarity: *sim })
                        .collect(),
                    nearest,
                }
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use soundalike_vectors::{kmeans, KMeansOptions};

    fn header() -> StoreHeader {
        StoreHeader {
            format_version: crate::STORE_FORMAT_VERSION,
            model_fingerprint: "fp".into(),
            model_name: "m".into(),
            frontend: serde_json::json!({}),
            labels: vec!["calm".into(), "loud".into()],
            dim: 2,
            library_root: "/lib".into(),
            metadata_version: crate::METADATA_VERSION,
        }
    }

    fn song(id: &str, v: [f32; 2], genre: Option<&str>) -> SongRecord {
        let mut vector = v.to_vec();
        crate::normalise(&mut vector);
        SongRecord {
            id: id.into(),
            title: id.to_uppercase(),
            artist: None,
            album: None,
            genre: genre.map(str::to_string),
            group: None,
            duration_s: 1.0,
            from_path: Vec::new(),
            fingerprint: format!("f-{id}"),
            size: 1,
            mtime: 1,
            probs: if v[0] > v[1] { vec![0.9, 0.1] } else { vec![0.2, 0.8] },
            vector,
            facts: None,
            tags: None,
        }
    }

    #[test]
    fn summaries_refresh_and_refusal() {
        let songs = vec![
            song("a", [1.0, 0.05], Some("ambient")),
            song("b", [1.0, 0.0], Some("ambient")),
            song("c", [1.0, -0.05], None),
            song("d", [0.0, 1.0], Some("rock")),
            song("e", [0.05, 1.0], Some("rock")),
        ];
        let refs: Vec<&SongRecord> = songs.iter().collect();
        let data: Vec<f32> = songs.iter().flat_map(|s| s.vector.clone()).collect();
        let fit = kmeans(&data, 2, &KMeansOptions { k: 2, seed: 1, ..Default::default() }).unwrap();
        let h = header();
        let mut c = Clustering::from_fit(&h, &refs, &fit, 1, 4, None, None);
        let ca = c.cluster_of("a").unwrap();
        assert_eq!(c.cluster_of("b"), Some(ca));
        assert_ne!(c.cluster_of("d"), Some(ca));
        let s = &c.summaries[ca as usize];
        assert_eq!(s.size, 3);
        assert_eq!(s.genres_tag, vec![Share { genre: "ambient".into(), songs: 2, share: 2.0 / 3.0 }]);
        assert_eq!(s.genres_predicted[0].genre, "calm");
        assert_eq!(s.medoids[0].id, "b", "the song nearest the centroid comes first");
        assert_eq!(s.nearest.len(), 1);

        // Saved and loaded the same; another model's store refuses it.
        let dir = tempfile::tempdir().unwrap();
        c.save(dir.path()).unwrap();
        assert_eq!(Clustering::load(dir.path(), &h).unwrap().unwrap(), c);
        let other = StoreHeader { model_fingerprint: "other".into(), ..h.clone() };
        let e = Clustering::load(dir.path(), &other).unwrap_err().to_string();
        assert!(e.contains("clusters of model m") && e.contains("soundalike clusters"), "{e}");
        assert!(Clustering::load(tempfile::tempdir().unwrap().path(), &h).unwrap().is_none());

        // A new song near d/e joins their cluster; a removed song is dropped; a changed one is placed again.
        let mut songs2 = songs.clone();
        songs2.retain(|s| s.id != "c");
        songs2.push(song("f", [0.02, 1.0], None));
        songs2[0] = SongRecord { fingerprint: "new".into(), ..song("a", [0.01, 1.0], None) };
        let refs2: Vec<&SongRecord> = songs2.iter().collect();
        let now = c.refresh(&h, &refs2);
        assert_eq!(now, Staleness { added: 1, changed: 1, removed: 1 });
        assert_eq!(c.cluster_of("f"), c.cluster_of("d"));
        assert_eq!(c.cluster_of("a"), c.cluster_of("d"), "the changed song moved with its vector");
        assert_eq!(c.cluster_of("c"), None);
        assert!(c.stale_note().unwrap().contains("1 added, 1 changed, 1 removed"));
        assert_eq!(c.summaries.iter().map(|s| s.size).sum::<usize>(), 5);
        // Nothing new: nothing stale added.
        assert_eq!(c.refresh(&h, &refs2), Staleness::default());
    }
}
