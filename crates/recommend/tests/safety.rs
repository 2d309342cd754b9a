//! Issue 16: one writer per store, journals that are not adopted, repair of a damaged journal, stale temp
//! files, and index rebuilds that never leave a store without its index.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use soundalike_recommend::*;

fn header(dir: &std::path::Path, fp: &str) -> StoreHeader {
    StoreHeader {
        format_version: STORE_FORMAT_VERSION,
        model_fingerprint: fp.into(),
        model_name: format!("model-{fp}"),
        frontend: serde_json::json!({"n_mels": 128}),
        labels: vec!["a".into(), "b".into()],
        dim: 4,
        library_root: dir.to_path_buf(),
        metadata_version: soundalike_recommend::METADATA_VERSION,
    }
}

fn song(id: &str, i: usize) -> SongRecord {
    let mut vector = vec![0.1f32; 4];
    vector[i % 4] = 1.0;
    normalise(&mut vector);
    SongRecord {
        id: id.into(),
        title: id.into(),
        artist: None,
        album: None,
        genre: None,
        group: None,
        duration_s: 1.0,
        from_path: Vec::new(),
        fingerprint: format!("f{i}"),
        size: 1,
        mtime: 1,
        probs: vec![0.5, 0.5],
        vector,
        facts: None,
        tags: None,
    }
}

fn filled(dir: &std::path::Path, n: usize) {
    let mut w = StoreWriter::open_or_create(dir, header(dir, "m1")).unwrap();
    for i in 0..n {
        w.put(song(&format!("s{i:02}.mp3"), i)).unwrap();
    }
    w.compact().unwrap();
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid_or_waits() {
    let d = tempfile::tempdir().unwrap();
    let first = StoreWriter::open_or_create(d.path(), header(d.path(), "m1")).unwrap();
    let e = StoreWriter::open_or_create(d.path(), header(d.path(), "m1")).err().unwrap();
    assert!(matches!(e, IndexError::Locked { .. }), "{e}");
    let msg = e.to_string();
    // The library names the holder and leaves flags to the command line (`hints` adds `--wait` there).
    assert!(msg.contains(&format!("pid {}", std::process::id())) && !msg.contains("--"), "{msg}");
    // Store (the whole-store writer) and index saves take the same lock.
    assert!(matches!(Store::open_or_create(d.path(), header(d.path(), "m1")), Err(IndexError::Locked { .. })));
    assert!(StoreLock::try_acquire(d.path()).unwrap().is_none());
    // Readers never block.
    assert_eq!(Store::open(d.path()).unwrap().len(), 0);
    // --wait: blocks until the holder is gone, then writes.
    let dir = d.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let mut w = StoreWriter::open_or_create_with(&dir, header(&dir, "m1"), LockWait::Yes).unwrap();
        w.put(song("late.mp3", 1)).unwrap();
        t.elapsed()
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    drop(first);
    assert!(waiter.join().unwrap() >= std::time::Duration::from_millis(300));
    assert_eq!(Store::open(d.path()).unwrap().len(), 1);
}

#[test]
fn an_orphan_or_foreign_journal_is_not_adopted() {
    let d = tempfile::tempdir().unwrap();
    filled(d.path(), 3);
    // store.json deleted: another model must not take the old vectors over.
    std::fs::remove_file(d.path().join("store.json")).unwrap();
    let e = StoreWriter::open_or_create(d.path(), header(d.path(), "m2")).err().unwrap().to_string();
    assert!(e.contains("without its store.json"), "{e}");
    assert!(!d.path().join("store.json").exists(), "nothing written");
    // A header swapped in from another model: the journal's model line refuses it.
    std::fs::write(d.path().join("store.json"), serde_json::to_vec(&header(d.path(), "m2")).unwrap()).unwrap();
    let e = Store::open(d.path()).err().unwrap().to_string();
    assert!(e.contains("made by model m1") && e.contains("m2"), "{e}");
}

#[test]
fn a_damaged_line_mid_journal_is_repaired_keeping_every_valid_record() {
    let d = tempfile::tempdir().unwrap();
    filled(d.path(), 5);
    let jp = d.path().join("songs.jsonl");
    let text = std::fs::read_to_string(&jp).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[3] = format!("{}#garbage", &lines[3][..40]);
    std::fs::write(&jp, lines.join("\n") + "\n").unwrap();
    let e = Store::open(d.path()).err().unwrap();
    assert!(matches!(e, IndexError::Damaged { line: 4, .. }), "{e}");
    assert!(e.to_string().contains("line 4"), "{e}");
    let c = check_journal(d.path()).unwrap();
    assert_eq!((c.valid_lines, c.songs, c.damaged.len()), (5, 4, 1));
    assert_eq!(c.damaged[0].0, 4);
    let lock = StoreLock::acquire(d.path(), LockWait::No).unwrap();
    let r = repair_journal(d.path(), &lock).unwrap();
    drop(lock);
    let aside = r.moved_to.unwrap();
    assert!(std::fs::read_to_string(aside).unwrap().contains("#garbage"));
    let s = Store::open(d.path()).unwrap();
    assert_eq!(s.len(), 4);
    assert!(s.get("s02.mp3").is_none() && s.get("s03.mp3").is_some());
    assert!(check_journal(d.path()).unwrap().damaged.is_empty());
}

#[test]
fn stale_temp_files_of_dead_writers_are_removed_when_the_lock_is_taken() {
    let d = tempfile::tempdir().unwrap();
    filled(d.path(), 2);
    let stale = d.path().join(".songs.jsonl.999999.tmp");
    std::fs::write(&stale, vec![b'x'; 10_000]).unwrap();
    let user_file = d.path().join("notes.txt");
    std::fs::write(&user_file, b"mine").unwrap();
    let w = StoreWriter::open_or_create(d.path(), header(d.path(), "m1")).unwrap();
    assert!(!stale.exists());
    assert!(user_file.exists(), "only the store's own temp files go");
    assert_eq!(w.len(), 2);
}

#[test]
fn a_failed_rebuild_keeps_the_saved_index() {
    let d = tempfile::tempdir().unwrap();
    filled(d.path(), 40);
    let store = Store::open(d.path()).unwrap();
    let lock = StoreLock::acquire(d.path(), LockWait::No).unwrap();
    sync_index_with(&store, &AnnParams::default(), Some(&lock), false).unwrap();
    let saved = index_dir(d.path()).join("index.bin");
    let before = std::fs::read(&saved).unwrap();
    let bad = AnnParams { m: 1, ..AnnParams::default() };
    assert!(sync_index_with(&store, &bad, Some(&lock), true).is_err());
    assert_eq!(std::fs::read(&saved).unwrap(), before, "the old index is untouched");
    // A reader that cannot take the lock updates the graph in memory but writes nothing.
    let mut w = StoreWriter::open_or_create_with(d.path(), header(d.path(), "m1"), LockWait::No);
    assert!(matches!(w, Err(IndexError::Locked { .. })));
    drop(lock);
    w = StoreWriter::open_or_create(d.path(), header(d.path(), "m1"));
    let mut w = w.unwrap();
    w.put(song("new.mp3", 3)).unwrap();
    w.compact().unwrap();
    let (ix, up) = sync_index(&Store::open(d.path()).unwrap(), &AnnParams::default()).unwrap();
    assert_eq!((up.added, ix.len()), (1, 41));
    assert_eq!(std::fs::read(&saved).unwrap(), before, "saving is the lock holder's job");
    drop(w);
    sync_index(&Store::open(d.path()).unwrap(), &AnnParams::default()).unwrap();
    assert_ne!(std::fs::read(&saved).unwrap(), before);
}
