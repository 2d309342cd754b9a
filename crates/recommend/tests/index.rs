//! Store journal, exact search and the HNSW wrapper.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use proptest::prelude::*;
use soundalike_recommend::*;

fn header(dir: &std::path::Path, fp: &str) -> StoreHeader {
    StoreHeader {
        format_version: STORE_FORMAT_VERSION,
        model_fingerprint: fp.into(),
        model_name: "test".into(),
        frontend: serde_json::json!({"n_mels": 128}),
        labels: vec!["a".into(), "b".into()],
        dim: 4,
        library_root: dir.to_path_buf(),
        metadata_version: soundalike_recommend::METADATA_VERSION,
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
        from_path: Vec::new(),
        fingerprint: "f".into(),
        size: 1,
        mtime: 1,
        probs: vec![0.5, 0.5],
        vector,
        facts: None,
        tags: None,
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
    j.extend_from_slice(b"{\"op\":\"put\",\"song\":{\"id\":\"torn-record");
    std::fs::write(&jp, &j).unwrap();
    let s = Store::open(d.path()).unwrap();
    let ids: Vec<&str> = s.songs().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["a.mp3", "b.mp3"]);
    // Re-opened for writing after the torn line: new records still parse.
    let mut s = Store::open_or_create(d.path(), header(d.path(), "m1")).unwrap();
    s.put(song("d.mp3", [0.0, 0.0, 0.0, 1.0], "rock")).unwrap();
    s.compact().unwrap();
    let text = std::fs::read_to_string(&jp).unwrap();
    // The model line, then one put per live song.
    assert_eq!(text.lines().count(), 4);
    assert!(text.lines().next().unwrap().contains("\"op\":\"model\"") && text.lines().next().unwrap().contains("m1"));
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

/// A store of `n` random songs (dim 16), every 100th one "classical".
fn random_store(dir: &std::path::Path, n: usize, seed: u64) -> Store {
    let dim = 16;
    let v = random_unit_vectors(n, dim, seed);
    let mut h = header(dir, "m1");
    h.dim = dim;
    let mut s = Store::open_or_create(dir, h).unwrap();
    for (i, x) in v.chunks_exact(dim).enumerate() {
        let mut r = song(&format!("s{i:05}.mp3"), [0.0; 4], if i % 100 == 0 { "classical" } else { "pop" });
        r.vector = x.to_vec();
        r.fingerprint = format!("fp{i}");
        s.put(r).unwrap();
    }
    s.compact().unwrap();
    s
}

#[test]
fn filtered_search_returns_k_when_k_exist() {
    // 2,000 songs, 1% of them "classical": a selective filter on the graph.
    let d = tempfile::tempdir().unwrap();
    drop(random_store(d.path(), 2000, 7));
    let cat = Catalog::open(d.path(), Method::Ann, &AnnParams::default()).unwrap();
    assert!(cat.uses_index());
    let exact = Catalog::open(d.path(), Method::Exact, &AnnParams::default()).unwrap();
    assert!(!exact.uses_index());
    let q = cat.vector(5).to_vec();
    let f = Filters { genre: Some("Classical".into()), ..Default::default() };
    let hits = cat.recommend(&q, 10, &f).unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.genre == Some("classical")));
    let want: Vec<&str> = exact.recommend(&q, 10, &f).unwrap().iter().map(|h| h.id).collect();
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), want);
    // Fewer than k exist: all of them, no padding.
    let f = Filters { genre: Some("classical".into()), exclude_artists: (3..20).map(|i| format!("artist of s{:05}.mp3", i * 100)).collect(), ..Default::default() };
    assert_eq!(cat.recommend(&q, 10, &f).unwrap().len(), 3);
    // k = 0, a wrong query length, an unknown genre.
    assert!(cat.recommend(&q, 0, &Filters::default()).is_err());
    assert!(cat.recommend(&q[..3], 5, &Filters::default()).is_err());
    assert!(cat.recommend(&q, 5, &Filters { genre: Some("polka".into()), ..Default::default() }).unwrap().is_empty());
    // Huge k: every song but the excluded one.
    let all = cat.recommend(&q, 1_000_000, &Filters { exclude: vec!["s00005.mp3".into()], ..Default::default() }).unwrap();
    assert_eq!(all.len(), 1999);
    assert!(all.iter().all(|h| h.id != "s00005.mp3"));
}

#[test]
fn index_follows_store_changes_with_inserts_and_tombstones() {
    let d = tempfile::tempdir().unwrap();
    let mut store = random_store(d.path(), 400, 11);
    let p = AnnParams::default();
    let (_, up) = sync_index(&store, &p).unwrap();
    assert!(up.rebuilt);
    // Unchanged store: nothing to do, nothing rewritten.
    let graph = index_dir(d.path()).join("index.bin");
    let before = std::fs::metadata(&graph).unwrap().modified().unwrap();
    let (_, up) = sync_index(&store, &p).unwrap();
    assert!(!up.changed(), "{up:?}");
    assert_eq!(std::fs::metadata(&graph).unwrap().modified().unwrap(), before);
    // Remove 20 songs, change one file, add 30: an update, not a rebuild.
    for i in 0..20 {
        store.remove(&format!("s{i:05}.mp3")).unwrap();
    }
    let mut changed = store.get("s00100.mp3").unwrap().clone();
    changed.fingerprint = "new content".into();
    changed.vector = random_unit_vectors(1, 16, 99);
    store.put(changed.clone()).unwrap();
    let extra = random_unit_vectors(30, 16, 12);
    for (i, x) in extra.chunks_exact(16).enumerate() {
        let mut r = song(&format!("new{i:03}.mp3"), [0.0; 4], "pop");
        r.vector = x.to_vec();
        store.put(r).unwrap();
    }
    store.compact().unwrap();
    let (ix, up) = sync_index(&store, &p).unwrap();
    assert_eq!(up, IndexUpdate { rebuilt: false, added: 31, removed: 21, saved: true });
    assert_eq!(ix.len(), store.len());
    assert_eq!(ix.slots(), 400 + 31);
    drop(store);
    // The updated graph, saved and reloaded, finds every live song as its own nearest neighbour and
    // never returns a removed one.
    let cat = Catalog::open(d.path(), Method::Ann, &p).unwrap();
    assert_eq!(cat.index_update, Some(IndexUpdate::default()));
    for r in 0..cat.len() {
        let hits = cat.recommend(&cat.vector(r), 3, &Filters::default()).unwrap();
        assert_eq!(hits[0].id, cat.songs()[r].id);
        assert!(hits.iter().all(|h| !h.id.starts_with("s0000") && !h.id.starts_with("s0001")));
    }
    let r = cat.row("s00100.mp3").unwrap();
    // The changed song's new vector (as the index holds it: 16-bit by default).
    assert!(cat.vector(r).iter().zip(&changed.vector).all(|(a, b)| (a - b).abs() < 1e-4), "{:?} vs {:?}", cat.vector(r), changed.vector);
    // Removing most songs: tombstones pass the threshold, so the graph is rebuilt.
    let mut store = Store::open_or_create(d.path(), { let mut h = header(d.path(), "m1"); h.dim = 16; h }).unwrap();
    let ids: Vec<String> = store.songs().map(|s| s.id.clone()).take(300).collect();
    for id in ids {
        store.remove(&id).unwrap();
    }
    let (ix, up) = sync_index(&store, &p).unwrap();
    assert!(up.rebuilt);
    assert_eq!((ix.len(), ix.slots()), (store.len(), store.len()));
}

#[test]
fn text_search_and_resolve() {
    let d = tempfile::tempdir().unwrap();
    drop(random_store(d.path(), 30, 5));
    let cat = Catalog::open(d.path(), Method::Auto, &AnnParams::default()).unwrap();
    assert_eq!(cat.resolve("s00007.mp3").unwrap(), 7);
    assert!(matches!(cat.resolve("nothing like it"), Err(IndexError::NotFound(_))));
    let e = cat.resolve("s0000").unwrap_err().to_string();
    assert!(e.contains("matches 10 songs"), "{e}");
    assert_eq!(cat.search_text("ARTIST s00012", 5), vec![12]);
    assert_eq!(cat.search_text("s000", 4).len(), 4);
    assert!(cat.search_text("   ", 4).is_empty());
}

#[test]
fn bad_parameters_are_refused_not_fatal() {
    let v = random_unit_vectors(10, 4, 1);
    assert!(AnnIndex::build(&v, 4, &AnnParams { m: 300, ..Default::default() }).is_err());
    assert!(AnnIndex::build(&v, 4, &AnnParams { ef_search: 0, ..Default::default() }).is_err());
    assert!(AnnIndex::build(&v[..7], 4, &AnnParams::default()).is_err());
}

#[test]
fn both_builders_find_the_true_neighbours() {
    // The native construction and hnsw_rs's, searched by the same code on the same data.
    let (dim, n) = (16, 2500);
    let v = random_unit_vectors(n, dim, 11);
    for (builder, vectors) in [(Builder::Native, Precision::F32), (Builder::HnswRs, Precision::F32), (Builder::Native, Precision::I16)] {
        let idx = AnnIndex::build(&v, dim, &AnnParams { m: 12, ef_construction: 100, ef_search: 64, builder, vectors }).unwrap();
        let mut hit = 0;
        for qi in (0..n).step_by(25) {
            let q = &v[qi * dim..(qi + 1) * dim];
            let exact = exact_search(&v, dim, q, 10, &|_| true);
            let got = idx.search_all(q, 10).unwrap();
            assert_eq!(got.len(), 10);
            hit += got.iter().filter(|h| exact.iter().any(|e| e.row == h.row)).count();
        }
        let recall = hit as f64 / 1000.0;
        assert!(recall > 0.95, "{builder:?} {vectors:?}: recall@10 {recall}");
    }
}

#[test]
fn quantised_index_holds_half_the_vectors_and_survives_a_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let (dim, n) = (128, 400);
    let v = random_unit_vectors(n, dim, 5);
    let full = AnnIndex::build(&v, dim, &AnnParams { vectors: Precision::F32, ..Default::default() }).unwrap();
    let small = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
    assert_eq!(small.params.vectors, Precision::I16, "16-bit vectors are the default");
    // Two bytes fewer per value, one scale word more per vector, everything else the same.
    assert_eq!(full.heap_bytes() - small.heap_bytes(), n * (dim * 2 - 4));
    for qi in [0, 7, n - 1] {
        let q = &v[qi * dim..(qi + 1) * dim];
        let (a, b) = (full.search_all(q, 5).unwrap(), small.search_all(q, 5).unwrap());
        assert_eq!(b[0].row, qi);
        // Cosines within rounding of the exact ones.
        for h in &b {
            let exact = soundalike_recommend::exact_search(&v, dim, q, n, &|r| r == h.row)[0].score;
            assert!((h.score - exact).abs() < 1e-4, "{} vs {exact}", h.score);
            assert!((small.similarity(q, h.row) - exact).abs() < 1e-4);
        }
        assert_eq!(a.iter().map(|h| h.row).collect::<Vec<_>>(), b.iter().map(|h| h.row).collect::<Vec<_>>());
    }
    small.save(d.path(), "m").unwrap();
    let mut back = AnnIndex::load(d.path(), "m", dim).unwrap().expect("saved");
    assert_eq!(back.params.vectors, Precision::I16);
    let q = &v[dim..2 * dim];
    assert_eq!(back.search_all(q, 5).unwrap(), small.search_all(q, 5).unwrap());
    let extra = random_unit_vectors(1, dim, 77);
    let slot = back.insert(&extra, "x".into()).unwrap();
    assert_eq!(back.search_all(&extra, 1).unwrap()[0].row, slot);
}

#[test]
fn index_save_load_roundtrip_and_model_check() {
    let d = tempfile::tempdir().unwrap();
    let dim = 8;
    let v = random_unit_vectors(300, dim, 3);
    let idx = AnnIndex::build(&v, dim, &AnnParams { vectors: Precision::F32, ..Default::default() }).unwrap();
    idx.save(d.path(), "m1").unwrap();
    let back = AnnIndex::load(d.path(), "m1", dim).unwrap().expect("index present");
    let q = &v[..dim];
    assert_eq!(back.search(q, 5, &|_| true).unwrap(), idx.search(q, 5, &|_| true).unwrap());
    // After a reload the graph takes inserts again, and the saved file is checked before use.
    let mut more = AnnIndex::load(d.path(), "m1", dim).unwrap().unwrap();
    let extra = random_unit_vectors(1, dim, 99);
    let slot = more.insert(&extra, "x".into()).unwrap();
    assert_eq!(slot, 300);
    assert_eq!(more.search(&extra, 1, &|_| true).unwrap()[0].row, 300);
    let bytes = more.heap_bytes();
    // Vectors plus 2M + 1 = 49 layer-0 words per point, a few upper-layer ones and the lock stripes.
    assert!(bytes >= 301 * dim * 4 && bytes < 301 * (dim + 2 * 49) * 4 + 40_000, "{bytes}");
    let file = soundalike_recommend::index_dir(d.path()).join("index.bin");
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(&file, &flipped).unwrap();
    let e = AnnIndex::load(d.path(), "m1", dim).err().expect("a damaged index is refused");
    assert!(matches!(e, soundalike_recommend::VectorError::StaleIndex { .. }), "{e}");
    assert!(e.to_string().contains("index.bin") && e.to_string().contains("rebuilt"), "{e}");
    std::fs::write(&file, &good[..good.len() - 10]).unwrap();
    assert!(AnnIndex::load(d.path(), "m1", dim).is_err());
    std::fs::write(&file, b"not an index").unwrap();
    assert!(AnnIndex::load(d.path(), "m1", dim).err().unwrap().to_string().contains("not a soundalike index"));
    std::fs::write(&file, &good).unwrap();
    // Another width: stale, rebuilt by the caller. Other model: refused.
    assert!(AnnIndex::load(d.path(), "m1", dim + 1).unwrap().is_none());
    assert!(AnnIndex::load(d.path(), "m2", dim).is_err());
}

#[test]
fn small_graphs_are_deterministic_and_find_every_point() {
    // The case that failed once in CI with parallel insertion.
    let (dim, n) = (12, 139);
    let v = random_unit_vectors(n, dim, 1_624_954_827_799_433_338);
    let a = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
    let b = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
    for qi in 0..n {
        let q = &v[qi * dim..(qi + 1) * dim];
        let ha = a.search(q, 5, &|_| true).unwrap();
        assert_eq!(ha[0].row, qi);
        assert_eq!(ha, b.search(q, 5, &|_| true).unwrap());
        assert_eq!(a.search_all(q, 1).unwrap()[0].row, qi);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn hnsw_top1_equals_exact(n in 20usize..400, seed in any::<u64>()) {
        let dim = 12;
        let v = random_unit_vectors(n, dim, seed);
        let idx = AnnIndex::build(&v, dim, &AnnParams::default()).unwrap();
        for qi in [0, n / 2, n - 1] {
            let q = &v[qi * dim..(qi + 1) * dim];
            let a = idx.search(q, 1, &|_| true).unwrap();
            let e = exact_search(&v, dim, q, 1, &|_| true);
            prop_assert_eq!(a[0].row, e[0].row);
        }
    }
}

#[test]
fn lean_writer_matches_the_store_and_survives_two_torn_writes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let songs = [("b.mp3", [1.0, 0.0, 0.0, 0.0]), ("a.mp3", [0.0, 1.0, 0.5, 0.0]), ("c.mp3", [0.0, 0.0, 1.0, 0.25])];
    // The same operations through Store and through StoreWriter.
    let mut s = Store::open_or_create(a.path(), header(a.path(), "m1")).unwrap();
    let mut w = StoreWriter::open_or_create(b.path(), header(a.path(), "m1")).unwrap();
    for (id, v) in songs {
        s.put(song(id, v, "rock")).unwrap();
        w.put(song(id, v, "rock")).unwrap();
    }
    s.remove("c.mp3").unwrap();
    assert!(w.remove("c.mp3").unwrap());
    let mut changed = song("a.mp3", [0.0, 0.0, 0.0, 1.0], "jazz");
    changed.size = 99;
    s.put(changed.clone()).unwrap();
    w.put(changed).unwrap();
    assert_eq!(w.get("a.mp3").map(|m| m.size), Some(99));
    assert_eq!(w.ids().collect::<Vec<_>>(), ["a.mp3", "b.mp3"]);
    s.compact().unwrap();
    w.compact().unwrap();
    let journal = |d: &tempfile::TempDir| std::fs::read(d.path().join("songs.jsonl")).unwrap();
    assert_eq!(journal(&a), journal(&b));
    // Appends after a compaction land at the right offsets: a second compaction keeps them.
    w.put(song("d.mp3", [1.0, 1.0, 0.0, 0.0], "pop")).unwrap();
    w.compact().unwrap();
    assert_eq!(Store::open(b.path()).unwrap().len(), 3);
    drop(w);
    // Killed mid-write twice in a row, with a resumed run in between that also got killed.
    let jp = b.path().join("songs.jsonl");
    let torn = |p: &std::path::Path| {
        let mut j = std::fs::read(p).unwrap();
        j.extend_from_slice(b"{\"op\":\"put\",\"song\":{\"id\":\"torn-record");
        std::fs::write(p, &j).unwrap();
    };
    torn(&jp);
    let mut w = StoreWriter::open_or_create(b.path(), header(a.path(), "m1")).unwrap();
    w.put(song("e.mp3", [0.0, 1.0, 1.0, 0.0], "pop")).unwrap();
    drop(w);
    torn(&jp);
    let w = StoreWriter::open_or_create(b.path(), header(a.path(), "m1")).unwrap();
    assert_eq!(w.ids().collect::<Vec<_>>(), ["a.mp3", "b.mp3", "d.mp3", "e.mp3"]);
    drop(w);
    let s = Store::open(b.path()).unwrap();
    assert_eq!(s.len(), 4);
    let text = std::fs::read_to_string(&jp).unwrap();
    assert!(!text.contains("torn-record"), "{text}");
    // The same double interruption through Store.
    torn(&jp);
    let mut s = Store::open_or_create(b.path(), header(a.path(), "m1")).unwrap();
    s.put(song("f.mp3", [0.0, 0.0, 1.0, 1.0], "pop")).unwrap();
    drop(s);
    torn(&jp);
    drop(Store::open_or_create(b.path(), header(a.path(), "m1")).unwrap());
    assert_eq!(Store::open(b.path()).unwrap().len(), 5);
    // Another model is refused by the writer too.
    assert!(StoreWriter::open_or_create(b.path(), header(a.path(), "m2")).is_err());
}
