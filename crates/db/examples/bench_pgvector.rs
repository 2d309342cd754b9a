//! pgvector beside the in-process index: N random unit vectors (128-d, the distribution of bench_ann's
//! synthetic set), a thousand of them held out as queries, pushed with `soundalike push`'s code into a
//! SCRATCH database (its soundalike tables are dropped first), then for several `hnsw.ef_search`: queries/s
//! (one connection, one query at a time, each as `query --db` runs it: a transaction, its settings, the
//! filtered-search SQL) and recall@10 against exact f32 search; build time, table and index size. Both vector
//! precisions (halfvec and vector). Prints one JSON line per precision.
//!   cargo run --release -p soundalike-db --example bench_pgvector -- URL [N=100000] [VECTORS.f32]
//! VECTORS.f32: N x 128 little-endian f32 (the last 1,000 are the queries), as `scripts/bench/bench_ann.sh` writes
//! them, so pgvector sees the same vectors as the other tools (`SOUNDALIKE_BENCH_PG=URL bash scripts/bench/bench_ann.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::time::Instant;

use soundalike_db::{Db, DbCatalog, Precision};
use soundalike_recommend::{exact_search, normalise, random_unit_vectors, Filters, SongRecord, Store, StoreHeader, StoreWriter, STORE_FORMAT_VERSION};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let url = a.first().expect("usage: bench_pgvector URL [N]").clone();
    let n: usize = a.get(1).and_then(|x| x.parse().ok()).unwrap_or(100_000);
    let (dim, nq) = (128, 1000);
    let v: Vec<f32> = match a.get(2) {
        Some(p) => std::fs::read(p).expect("vectors file").chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        None => random_unit_vectors(n, dim, 0x2545_F491_4F6C_DD1D),
    };
    let n = v.len() / dim;
    let (base, queries) = v.split_at((n - nq) * dim);
    let nb = n - nq;
    let dir = std::env::temp_dir().join(format!("soundalike-bench-pg-{n}-{}", if a.get(2).is_some() { "file" } else { "xorshift" }));
    if !dir.join("songs.jsonl").exists() {
        let header = StoreHeader {
            format_version: STORE_FORMAT_VERSION,
            model_fingerprint: "bench".into(),
            model_name: "bench".into(),
            frontend: serde_json::json!({}),
            labels: vec![],
            dim,
            library_root: "/music".into(),
            metadata_version: soundalike_recommend::METADATA_VERSION,
        };
        let mut w = StoreWriter::open_or_create(&dir, header).expect("store");
        for i in 0..nb {
            let mut vector = base[i * dim..(i + 1) * dim].to_vec();
            normalise(&mut vector);
            w.put(SongRecord {
                id: format!("s{i:07}"),
                title: format!("Song {i}"),
                artist: None,
                album: None,
                genre: None,
                group: None,
                duration_s: 30.0,
                from_path: Vec::new(),
                fingerprint: format!("f{i}"),
                size: 1,
                mtime: 1,
                probs: vec![],
                vector,
                facts: None,
                tags: None,
            })
            .expect("put");
        }
        w.compact().expect("compact");
    }
    let store = Store::open(&dir).expect("open store");
    let truth: Vec<Vec<String>> = queries
        .chunks_exact(dim)
        .map(|q| exact_search(base, dim, q, 10, &|_| true).into_iter().map(|h| format!("s{:07}", h.row)).collect())
        .collect();
    let rt = soundalike_db::runtime().expect("runtime");
    for precision in [Precision::Half, Precision::Full] {
        rt.block_on(async {
            let db = Db::connect(&url, 2).await.expect("connect");
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.batch_execute("DROP TABLE IF EXISTS soundalike_songs; DROP TABLE IF EXISTS soundalike_meta").await.expect("drop");
            let t = Instant::now();
            soundalike_db::push(&db, &store, precision).await.expect("push");
            let build_s = t.elapsed().as_secs_f64();
            let size = |rel: &'static str| {
                let client = &client;
                async move { client.query_one(&format!("SELECT pg_total_relation_size('{rel}')"), &[]).await.expect("size").get::<_, i64>(0) as f64 / 1e6 }
            };
            let (table_mb, index_mb) = (size("soundalike_songs").await, size("soundalike_songs_hnsw").await);
            let mut cat = DbCatalog::open(db, Some("bench")).await.expect("open");
            let mut rows = Vec::new();
            for ef in [10, 20, 40, 80, 160, 320, 640, 1000] {
                cat.ef_search = ef;
                let t = Instant::now();
                let mut hits = 0usize;
                for (q, want) in queries.chunks_exact(dim).zip(&truth) {
                    let got = cat.recommend(q, 10, &Filters::default()).await.expect("query");
                    hits += got.iter().filter(|r| want.contains(&r.song.id)).count();
                }
                let s = t.elapsed().as_secs_f64();
                rows.push(serde_json::json!({"ef": ef, "qps": (nq as f64 / s).round(), "recall_at_10": hits as f64 / (10 * nq) as f64}));
            }
            println!(
                "{}",
                serde_json::json!({
                    "tool": format!("pgvector 0.8 ({})", if precision == Precision::Half { "halfvec" } else { "vector" }), "n": nb, "dim": dim, "queries": nq,
                    "build_seconds": build_s, "index_mem_mb": index_mb, "table_mb": table_mb, "raw_vectors_mb": (nb * dim * 4) as f64 / 1e6,
                    "hnsw": {"m": 16, "ef_construction": 64}, "note": "push (COPY + upsert + index build) time; index size on disk; queries through query --db's code", "results": rows,
                })
            );
        });
    }
}
