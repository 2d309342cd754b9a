//! Fuzzing on stable Rust (proptest): the journal and index readers get mutated real files and must
//! answer Ok or a clear error, never panic, hang or allocate without bound (lengths in the files are
//! checked before they are trusted).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use proptest::prelude::*;
use soundalike_recommend::*;

fn header(dir: &std::path::Path) -> StoreHeader {
    StoreHeader {
        format_version: STORE_FORMAT_VERSION,
        model_fingerprint: "m1".into(),
        model_name: "m".into(),
        frontend: serde_json::json!({}),
        labels: vec!["a".into(), "b".into()],
        dim: 8,
        library_root: dir.to_path_buf(),
        metadata_version: soundalike_recommend::METADATA_VERSION,
    }
}

/// A store of 40 songs with its saved index: (folder guard, journal bytes, index bytes).
fn real_store() -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::open_or_create(d.path(), header(d.path())).unwrap();
    for i in 0..40u32 {
        let mut v: Vec<f32> = (0..8).map(|j| ((i * 7 + j * 3) % 11) as f32 - 5.0).collect();
        normalise(&mut v);
        w.put(SongRecord {
            id: format!("s{i:02}.mp3"),
            title: format!("song {i}"),
            artist: None,
            album: None,
            genre: Some("rock".into()),
            group: None,
            duration_s: 30.0,
            from_path: Vec::new(),
            fingerprint: format!("{i:032x}"),
            size: 1,
            mtime: 1,
            probs: vec![0.5, 0.5],
            vector: v,
            facts: None,
            tags: None,
        })
        .unwrap();
    }
    w.compact().unwrap();
    let lock = w.lock();
    let store = Store::open(d.path()).unwrap();
    sync_index_with(&store, &AnnParams::default(), Some(lock), true).unwrap();
    drop(w);
    let j = std::fs::read(d.path().join("songs.jsonl")).unwrap();
    let ix = std::fs::read(index_dir(d.path()).join("index.bin")).unwrap();
    (d, j, ix)
}

fn mutate(mut bytes: Vec<u8>, flips: &[(prop::sample::Index, u8)], cut: Option<prop::sample::Index>) -> Vec<u8> {
    for (at, v) in flips {
        let i = at.index(bytes.len());
        bytes[i] = *v;
    }
    if let Some(c) = cut {
        let n = c.index(bytes.len());
        bytes.truncate(n);
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_journals_are_read_or_refused(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16), cut in proptest::option::of(any::<prop::sample::Index>())) {
        let (d, j, _) = real_store();
        std::fs::write(d.path().join("songs.jsonl"), mutate(j, &flips, cut)).unwrap();
        if let Ok(s) = Store::open(d.path()) {
            prop_assert!(s.len() <= 40);
            prop_assert!(s.songs().all(|x| x.vector.len() == 8));
        }
        let c = check_journal(d.path()).unwrap();
        prop_assert!(c.songs <= 40);
        // Repair always leaves a journal every reader accepts.
        let lock = StoreLock::acquire(d.path(), LockWait::No).unwrap();
        repair_journal(d.path(), &lock).unwrap();
        prop_assert!(Store::open(d.path()).is_ok());
    }

    #[test]
    fn mutated_indexes_are_loaded_or_refused(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16), cut in proptest::option::of(any::<prop::sample::Index>())) {
        let (d, _, ix) = real_store();
        let bad = mutate(ix.clone(), &flips, cut);
        std::fs::write(index_dir(d.path()).join("index.bin"), &bad).unwrap();
        match AnnIndex::load(d.path(), "m1", 8) {
            // The checksum covers every byte: only an unchanged file loads.
            Ok(Some(_)) => prop_assert_eq!(&bad, &ix),
            Ok(None) => {}
            Err(e) => prop_assert!(e.to_string().contains("index")),
        }
    }

    #[test]
    fn random_bytes_as_journal_or_index_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (d, _, _) = real_store();
        std::fs::write(d.path().join("songs.jsonl"), &bytes).unwrap();
        let _ = Store::open(d.path());
        let _ = check_journal(d.path());
        std::fs::write(index_dir(d.path()).join("index.bin"), &bytes).unwrap();
        let _ = AnnIndex::load(d.path(), "m1", 8);
    }
}
