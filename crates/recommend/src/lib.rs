//! What a music library is made of, on top of the store and the vectors: the catalog that searches a
//! store (exact or through its HNSW index, kept in step incrementally), the one recommendation path every
//! front end uses ([`Request`], [`Library`], [`Answer`]), the library's clusters, and a listener's taste.
//! Re-exports what callers need of `soundalike-store` (the store on disk) and `soundalike-vectors` (dot
//! products, exact and HNSW search, k-means, PCA), so a front end depends on this crate alone.
//!
//! ```
//! use soundalike_recommend::{exact_search, kmeans, random_unit_vectors, KMeansOptions};
//! let songs = random_unit_vectors(1000, 128, 7); // 1,000 song vectors, row-major
//! let query = &songs[..128];
//! let hits = exact_search(&songs, 128, query, 5, &|_| true);
//! assert_eq!(hits[0].row, 0); // a song is most like itself
//! let fit = kmeans(&songs, 128, &KMeansOptions { k: 8, ..Default::default() }).unwrap();
//! assert_eq!(fit.assign.len(), 1000);
//! ```
#![warn(missing_docs)]

mod catalog;
mod clusters;
mod recommend;
mod taste;

pub use catalog::{sync_index, sync_index_with, Around, BpmRange, Catalog, Filters, GenreSource, IndexUpdate, Method, Recommendation, DEFAULT_TAG_MIN, EXACT_BELOW};
pub use clusters::{ClusterSummary, Clustering, Medoid, Member, Neighbour, Share, Staleness, CLUSTERS_FILE, CLUSTERS_FORMAT_VERSION, MEDOIDS};
pub use soundalike_facts::{CamelotKey, Facts, KeyRule};
pub use soundalike_tags::{self as tags, SongTags, TagScore, TagSource, TAGS_VERSION};
pub use recommend::{Answer, ClusterScope, Library, LibraryError, LibraryStats, Plan, Request, Scored, SongView, VIEW_TAGS};
pub use taste::{candidates, cross_validate, discover, rerank, roc_auc, train as train_taste, train_on as train_taste_on, Classifier, CvScores, Mark, Marked, Profile, Standardise, TasteModel, BACKGROUND_PER_LIKE, BACKGROUND_POOL, PROFILE_FORMAT_VERSION};

pub use soundalike_store::{check_journal, layout, repair_journal, IndexError, JournalCheck, LockWait, Result, ShardInfo, SongMeta, SongRecord, Store, StoreHeader, StoreLock, StoreWriter, LOCK_FILE, METADATA_VERSION, STORE_FORMAT_VERSION};
pub use soundalike_vectors::{
    choose_k, dot, elbow, exact_search, index_dir, kmeans, nearest_centroid, normalise, pca_2d, random_unit_vectors, silhouette, AnnIndex, AnnParams, Builder, CurvePoint, Hit, KChoice, KMeansFit, KMeansOptions, Precision, VectorError,
    INDEX_FORMAT_VERSION, REBUILD_DEAD_FRACTION, SILHOUETTE_MARGIN,
};
