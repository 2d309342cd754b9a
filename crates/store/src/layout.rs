//! Every file a store folder holds, by name (the one place that lists them).
//!
//! | path | what | written by |
//! |---|---|---|
//! | `store.json` | the header | `embed`, `merge` |
//! | `songs.jsonl` | the journal of song records | `embed`, `merge`, `store check --repair` |
//! | `.lock` | the writer's OS file lock (holds its pid) | every writer |
//! | `index/index.bin` | the HNSW index (`soundalike_vectors::AnnIndex`) | `embed`, `index`, a reader that finds the lock free |
//! | `clusters.json` | the library's clusters | `clusters`, `embed` |
//! | `shard.json` | a shard store's place in a sharded embedding | `embed --shard` |
//! | `.NAME.PID.tmp` | a file being written (renamed when complete; removed when a writer that died left it) | any writer |

/// The header.
pub const HEADER: &str = "store.json";
/// The journal.
pub const JOURNAL: &str = "songs.jsonl";
/// The clusters.
pub const CLUSTERS: &str = "clusters.json";
/// A shard store's marker.
pub const SHARD: &str = "shard.json";

/// The index folder of the store at `dir` (`index/`: the vector crate's `AnnIndex` saves there).
pub use soundalike_vectors::index_dir;
/// The writer's lock file.
pub use crate::lock::LOCK_FILE as LOCK;
