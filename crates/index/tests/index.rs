//! Store journal, exact search and the HNSW wrapper.

use proptest::prelude::*;
use soundalike_index::*;

fn rng_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    let mut v: Vec<f32> = (0..n * dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    v.chunks_exact_mut(dim).for_each(normalise);
    v
}

fn header(dir: &std::path::Path, fp: &str) -> StoreHeader {
    StoreHeader {
        format_version: STORE_FORMAT_VERSION,
        model_fingerprint: fp.into(),
        model_name: "test".into(),
        frontend: serde_json::json!({"n_mels": 128}),
        labels: vec!["a".into(), "b".into()],
        dim: 4,
        library_root: dir.to_path_buf(),
    }
}

fn song(id: &str, v: [f32; 4], genre: &str) -> SongRecord {
    let mut vector = v.to_vec();
    normalise(&mut vector);
    SongRecord {
        id: id.into(),
        title: id.into(),
        artist: Some(format!("artist of {id}")),
        album: None,
        genre: Some(genre.into()),
        group: None,
        duration_s: 1.0,
        fingerprint: "f".into(),
        size: 1,
        mtime: 1,
        probs: vec![0.5, 0.5],
        vector,
    }
}

#[test]
fn journal_survives_a_torn_write_and_compacts_sorted() {
    let d = tempfile::tempdir().unwrap();
    let mut s = Store::open_or_create(d.path(), header(d.path(), "m1")).unwrap();
    s.put(song("b.mp3", [1.0, 0.0, 0.0, 0.0], "rock")).unwrap();
    s.put(song("a.mp3", [0.0, 1.0, 0.0, 0.0], "jazz")).unwrap();
    s.put(song("c.mp3", [0.0, 0.0, 1.0, 0.0], "jazz")).unwrap();
    s.remove("c.mp3").unwrap();
    s.sync().unwrap();
    drop(s);
    // A crash mid-line: half a record at the end.
    let jp = d.path().join("songs.jsonl");
    let mut j = std::fs::read(&jp).unwrap();
    j.extend_from_slice(b"{\"op\":\"put\",\"song\":{\"id\":\"zz");
    std::fs::write(&jp, &j).unwrap();
    let s = Store::open(d.path()).unwrap();
    let ids: Vec<&str> = s.songs().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["a.mp3", "b.mp3"]);
    // Re-opened for writing after the torn line: new records still parse.
    let mut s = Store::open_or_create(d.path(), header(d.path(), "m1")).unwrap();
    s.put(song("d.mp3", [0.0, 0.0, 0.0, 1.0], "rock")).unwrap();
    s.compact().unwrap();
    let text = std::fs::read_to_string(&jp).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.find("a.mp3").unwrap() < text.find("b.mp3").unwrap());
    assert_eq!(Store::open(d.path()).unwrap().len(), 3);
}

#[test]
fn store_of_another_model_is_refused() {
    let d = tempfile::tempdir().unwrap();
    Store::open_or_create(d.path(), header(d.path(), "m1")).unwrap();
    let e = Store::open_or_create(d.path(), header(d.path(), "m2")).err().unwrap().to_string();
    assert!(e.contains("m1") && e.contains("m2") && e.contains("store.json"), "{e}");
    let e = Store::open(&d.path().join("missing")).err().unwrap().to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn wrong_dimension_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut s = Store::open_or_create(d.path(), header(d.path(), "m1")).unwrap();
    let mut bad = song("x", [1.0, 0.0, 0.0, 0.0], "rock");
    bad.vector.push(0.0);
    assert!(s.put(bad).is_err());
}

#[test]
fn filtered_search_returns_k_when_k_exist() {
    // 2,000 vectors, 1% of them "classical": a selective filter on the graph.
    let dim = 16;
    let v = rng_vectors(2000, dim, 7);
    let idx = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
    let keep = |i: usize| i.is_multiple_of(100);
    let q = &v[5 * dim..6 * dim];
    let hits = idx.search(&v, q, 10, &keep).unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| keep(h.row)));
    let exact = exact_search(&v, dim, q, 10, &keep);
    assert_eq!(hits.iter().map(|h| h.row).collect::<Vec<_>>(), exact.iter().map(|h| h.row).collect::<Vec<_>>());
    // Fewer than k exist: all of them, no padding.
    let rare = |i: usize| i < 3;
    assert_eq!(idx.search(&v, q, 10, &rare).unwrap().len(), 3);
    // k = 0 and a wrong query length.
    assert!(idx.search(&v, q, 0, &|_| true).unwrap().is_empty());
    assert!(idx.search(&v, &q[..3], 5, &|_| true).is_err());
}

#[test]
fn bad_parameters_are_refused_not_fatal() {
    let v = rng_vectors(10, 4, 1);
    assert!(AnnIndex::build(&v, 4, &AnnParams { m: 300, ..Default::default() }).is_err());
    assert!(AnnIndex::build(&v, 4, &AnnParams { ef_search: 0, ..Default::default() }).is_err());
    assert!(AnnIndex::build(&v[..7], 4, &AnnParams::default()).is_err());
}

#[test]
fn index_save_load_roundtrip_and_model_check() {
    let d = tempfile::tempdir().unwrap();
    let dim = 8;
    let v = rng_vectors(300, dim, 3);
    let idx = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
    idx.save(d.path(), "m1", "rows1").unwrap();
    let back = AnnIndex::load(d.path(), "m1", "rows1", dim).unwrap().expect("index present");
    let q = &v[..dim];
    assert_eq!(back.search(&v, q, 5, &|_| true).unwrap(), idx.search(&v, q, 5, &|_| true).unwrap());
    // Other rows: stale, rebuilt by the caller. Other model: refused.
    assert!(AnnIndex::load(d.path(), "m1", "rows2", dim).unwrap().is_none());
    assert!(AnnIndex::load(d.path(), "m2", "rows1", dim).is_err());
}

#[test]
fn small_graphs_are_deterministic_and_find_every_point() {
    // The case that failed once in CI with parallel insertion.
    let (dim, n) = (12, 139);
    let v = rng_vectors(n, dim, 1_624_954_827_799_433_338);
    let a = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
    let b = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
    for qi in 0..n {
        let q = &v[qi * dim..(qi + 1) * dim];
        let ha = a.search(&v, q, 5, &|_| true).unwrap();
        assert_eq!(ha[0].row, qi);
        assert_eq!(ha, b.search(&v, q, 5, &|_| true).unwrap());
        assert_eq!(a.search_all(&v, q, 1).unwrap()[0].row, qi);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn hnsw_top1_equals_exact(n in 20usize..400, seed in any::<u64>()) {
        let dim = 12;
        let v = rng_vectors(n, dim, seed);
        let idx = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
        for qi in [0, n / 2, n - 1] {
            let q = &v[qi * dim..(qi + 1) * dim];
            let a = idx.search(&v, q, 1, &|_| true).unwrap();
            let e = exact_search(&v, dim, q, 1, &|_| true);
            prop_assert_eq!(a[0].row, e[0].row);
        }
    }
}
