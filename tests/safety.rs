//! Issue 16 with the real binary: what a careless (or unlucky) user does must never lose a store.

mod util;

use std::process::Command;

use util::*;

fn spawn_embed(lib: &std::path::Path, store: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_soundalike"))
        .args(["embed", s(lib), "--out", s(store), "--json"])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_embeds_at_once_one_writes_the_other_names_the_holder() {
    let d = tempfile::tempdir().unwrap();
    let lib = d.path().join("lib");
    library(&lib, 6);
    for round in 0..5 {
        let store = d.path().join(format!("store{round}"));
        let (a, b) = (spawn_embed(&lib, &store), spawn_embed(&lib, &store));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
        assert!(ok >= 1, "round {round}: {} / {}", stderr(&a), stderr(&b));
        for o in [&a, &b] {
            if !o.status.success() {
                let e = stderr(o);
                assert!(e.contains("another soundalike (pid ") && e.contains("--wait"), "round {round}: {e}");
            }
        }
        // The store is whole: every command reads it, with every song.
        let r = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
        assert_eq!((r["songs_in_store"].as_u64(), r["embedded"].as_u64()), (Some(6), Some(0)), "round {round}");
        assert!(run(&["store", "check", s(&store)]).status.success(), "round {round}");
    }
    // --wait queues the second writer instead.
    let store = d.path().join("waited");
    let first = spawn_embed(&lib, &store);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let o = run(&["embed", s(&lib), "--out", s(&store), "--json", "--wait"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(first.wait_with_output().unwrap().status.success());
}

#[test]
fn an_empty_or_wrong_folder_does_not_empty_the_store() {
    let d = tempfile::tempdir().unwrap();
    let (lib, store) = (d.path().join("lib"), d.path().join("store"));
    let ids = library(&lib, 10);
    assert!(run(&["embed", s(&lib), "--out", s(&store)]).status.success());
    let before = std::fs::read(store.join("songs.jsonl")).unwrap();
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&["embed", s(&empty), "--out", s(&store)]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("10 of the store's 10 songs") && e.contains("--prune") && e.contains("nothing was changed"), "{e}");
    assert_eq!(std::fs::read(store.join("songs.jsonl")).unwrap(), before);
    // A missing folder (an unmounted drive) is an error before the store is touched.
    let o = run(&["embed", s(&d.path().join("unmounted")), "--out", s(&store)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unmounted"), "{}", stderr(&o));
    assert_eq!(std::fs::read(store.join("songs.jsonl")).unwrap(), before);
    // Losing 3 of 10 (over 20%) needs --prune; the removals are named.
    for id in &ids[..3] {
        std::fs::remove_file(lib.join(id)).unwrap();
    }
    assert_eq!(run(&["embed", s(&lib), "--out", s(&store)]).status.code(), Some(2));
    let o = run(&["embed", s(&lib), "--out", s(&store), "--prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(ids[..3].iter().all(|id| out.contains(&format!("removed {id}"))), "{out}");
    // Nothing at all to embed is not a success either.
    let o = run(&["embed", s(&empty), "--out", s(&d.path().join("new"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no audio files found"), "{}", stderr(&o));
}

#[test]
fn a_moved_library_keeps_its_vectors_and_the_store_follows_it() {
    let d = tempfile::tempdir().unwrap();
    let (lib, store) = (d.path().join("lib"), d.path().join("store"));
    library(&lib, 4);
    assert!(run(&["embed", s(&lib), "--out", s(&store)]).status.success());
    let moved = d.path().join("new-drive/music");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    // A copy (new mtimes) rather than a rename: the content decides, not the timestamps.
    Command::new("cp").args(["-r", s(&lib), s(&moved)]).status().unwrap();
    std::fs::remove_dir_all(&lib).unwrap();
    let r = json(&run(&["embed", s(&moved), "--out", s(&store), "--json"]));
    assert_eq!((r["embedded"].as_u64(), r["removed"].as_u64(), r["songs_in_store"].as_u64()), (Some(0), Some(0), Some(4)), "{r}");
    assert_eq!(r["library_root_updated"], true);
    let header: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join("store.json")).unwrap()).unwrap();
    assert_eq!(header["library_root"].as_str().unwrap(), std::fs::canonicalize(&moved).unwrap().to_str().unwrap());
}

#[cfg(unix)]
#[test]
fn odd_names_and_symlinks_are_embedded_each_once() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let (lib, store, elsewhere) = (d.path().join("lib"), d.path().join("store"), d.path().join("elsewhere"));
    std::fs::create_dir_all(&lib).unwrap();
    let ids = library(&elsewhere, 2);
    let clip = std::fs::read(elsewhere.join(&ids[0])).unwrap();
    for raw in [&b"bad\xffutf8.mp3"[..], &b"bad\xfeutf8.mp3"[..]] {
        std::fs::write(lib.join(std::ffi::OsStr::from_bytes(raw)), &clip).unwrap();
    }
    std::os::unix::fs::symlink(elsewhere.join(&ids[1]), lib.join("linked.mp3")).unwrap();
    let r = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!((r["embedded"].as_u64(), r["songs_in_store"].as_u64()), (Some(3), Some(3)), "{r}");
    let again = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!((again["embedded"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(3)), "ids are stable: {again}");
}

#[test]
fn index_rebuild_with_bad_settings_keeps_the_index_and_store_check_repairs() {
    let d = tempfile::tempdir().unwrap();
    let (lib, store) = (d.path().join("lib"), d.path().join("store"));
    library(&lib, 8);
    assert!(run(&["embed", s(&lib), "--out", s(&store)]).status.success());
    assert!(run(&["index", s(&store)]).status.success());
    let ix = soundalike_recommend_file(&store);
    let before = std::fs::read(&ix).unwrap();
    let o = run(&["index", s(&store), "--rebuild", "--m", "1"]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(std::fs::read(&ix).unwrap(), before);
    // A damaged line mid-journal: check names it, --repair keeps the rest, embed re-embeds the lost song.
    let jp = store.join("songs.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&jp).unwrap().lines().map(String::from).collect();
    lines[2] = lines[2].replace("\"vector\"", "\"vec\u{0}tor\"");
    std::fs::write(&jp, lines.join("\n") + "\n").unwrap();
    let o = run(&["query", s(&store), "--song", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let hint = format!("soundalike store check {}", store.display());
    assert!(stderr(&o).contains("line 3") && stderr(&o).contains(&hint) && stderr(&o).contains("--repair"), "{}", stderr(&o));
    // Another model's store is refused with what to do, and a folder that is no store says how to make one.
    let o = run(&["query", s(&lib), "--song", "x"]);
    assert!(stderr(&o).contains("not a soundalike store") && stderr(&o).contains("soundalike embed"), "{}", stderr(&o));
    let o = run(&["store", "check", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("line 3"), "{}", stdout(&o));
    let o = run(&["store", "check", s(&store), "--repair"]);
    assert!(o.status.success() && stdout(&o).contains("damaged-"), "{}", stdout(&o));
    let r = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!((r["embedded"].as_u64(), r["songs_in_store"].as_u64()), (Some(1), Some(8)), "{r}");
}

fn soundalike_recommend_file(store: &std::path::Path) -> std::path::PathBuf {
    let mut found = None;
    for e in walk(store) {
        if e.file_name().is_some_and(|n| n == "index.bin") {
            found = Some(e);
        }
    }
    found.expect("an index.bin in the store")
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn serve_refuses_an_upload_limit_that_would_overflow() {
    for bad in ["0", "99999999999999999", "-1", "4097"] {
        let o = run(&["serve", "no-such-store", &format!("--max-upload-mb={bad}")]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains("--max-upload-mb"), "{bad}: {}", stderr(&o));
    }
}
