//! End-to-end tests of the `soundalike` binary on real audio and the shipped model.

mod util;

use std::path::Path;

use serde_json::json;
use util::*;

fn data(name: &str) -> String {
    root().join("tests/data").join(name).to_string_lossy().into_owned()
}

#[test]
fn spectrogram_writes_npy_png_and_tiles() {
    let d = tempfile::tempdir().unwrap();
    let (npy, png, tiles) = (d.path().join("m.npy"), d.path().join("m.png"), d.path().join("tiles"));
    let o = run(&["spectrogram", &data("clip.mp3"), "--npy", s(&npy), "--png", s(&png), "--tiles-png", s(&tiles)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let b = std::fs::read(&npy).unwrap();
    let header = String::from_utf8_lossy(&b[10..128]);
    assert!(header.contains("'shape': (128, 646)"), "{header}");
    assert_eq!(b.len(), 128 + 128 * 646 * 4);
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    assert_eq!(std::fs::read_dir(&tiles).unwrap().count(), 5);
    let o = run(&["spectrogram", &data("clip.mp3"), "--preset", "original2017"]);
    assert!(stdout(&o).contains("256 mels"), "{}", stdout(&o));
}

#[test]
fn bad_input_is_one_clear_line_and_nonzero_exit() {
    let d = tempfile::tempdir().unwrap();
    let text = d.path().join("shopping.mp3");
    std::fs::write(&text, "eggs, milk, bread\n").unwrap();
    for (file, why) in [
        (s(&text).to_string(), "not a supported audio file"),
        (data("half_second.mp3"), "too short"),
        (data("silence.mp3"), "digital silence"),
        (s(&d.path().join("missing.mp3")).to_string(), "cannot read"),
    ] {
        let o = run(&["spectrogram", &file]);
        assert_eq!(o.status.code(), Some(2), "{file}");
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(Path::new(&file).file_name().unwrap().to_str().unwrap()) && err.contains(why), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A library of `n` real clips plus one file of each bad class.
fn mixed_library(dir: &Path, n: usize) -> Vec<String> {
    let ids = library(dir, n);
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("empty.mp3"), b"").unwrap();
    std::fs::write(bad.join("notes.mp3"), "not music at all\n".repeat(20)).unwrap();
    std::fs::write(bad.join("random.mp3"), (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<u8>>()).unwrap();
    std::fs::copy(data("half_second.mp3"), bad.join("half_second.mp3")).unwrap();
    std::fs::copy(data("silence.mp3"), bad.join("silence.mp3")).unwrap();
    let mut tag = b"ID3\x03\x00\x00\x00\x00\x00\x64".to_vec();
    tag.extend(std::iter::repeat_n(0u8, 100));
    std::fs::write(bad.join("tag_only.mp3"), &tag).unwrap();
    // Damaged but usable: an Ogg file named .mp3 and an mp3 cut off at a third.
    let odd = dir.join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(data("ogg_named.mp3"), odd.join("ogg_named.mp3")).unwrap();
    let clip = std::fs::read(data("clip.mp3")).unwrap();
    std::fs::write(odd.join("truncated.mp3"), &clip[..clip.len() / 3]).unwrap();
    ids
}

#[test]
fn embed_reports_bad_files_and_keeps_the_rest_then_is_incremental() {
    let d = tempfile::tempdir().unwrap();
    let lib = d.path().join("lib");
    let store = d.path().join("store");
    let ids = mixed_library(&lib, 5);
    let o = run(&["embed", s(&lib), "--out", s(&store), "--json"]);
    assert_eq!(o.status.code(), Some(1), "a failed file makes the exit code say so: {}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["songs_in_store"], 7);
    assert_eq!(r["embedded"], 7);
    let failed: Vec<&str> = r["failed"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(failed, ["bad/empty.mp3", "bad/half_second.mp3", "bad/notes.mp3", "bad/random.mp3", "bad/silence.mp3", "bad/tag_only.mp3"]);
    let kinds: Vec<&str> = r["failed"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..5], ["empty", "too_short", "unsupported", "unsupported", "silent"]);
    let journal = std::fs::read(store.join("songs.jsonl")).unwrap();

    // Unchanged library: nothing re-embedded, store byte-identical.
    let r2 = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!((r2["embedded"].as_u64(), r2["unchanged"].as_u64()), (Some(0), Some(7)));
    assert_eq!(std::fs::read(store.join("songs.jsonl")).unwrap(), journal);

    // A changed file is re-embedded; a vanished one is dropped.
    let changed = lib.join(&ids[0]);
    std::fs::copy(data("vbr_44k.mp3"), &changed).unwrap();
    std::fs::remove_file(lib.join(&ids[1])).unwrap();
    let r3 = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!((r3["embedded"].as_u64(), r3["removed"].as_u64(), r3["songs_in_store"].as_u64()), (Some(1), Some(1), Some(6)));
    let text = std::fs::read_to_string(store.join("songs.jsonl")).unwrap();
    assert!(!text.contains(&ids[1]));
    let rec: serde_json::Value = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v["song"]["id"] == ids[0].as_str()).unwrap();
    assert!((rec["song"]["duration_s"].as_f64().unwrap() - 3.0).abs() < 0.1);
}

#[test]
fn kill_and_resume_equals_uninterrupted_and_shards_merge_to_the_same() {
    let d = tempfile::tempdir().unwrap();
    let lib = d.path().join("lib");
    library(&lib, 12);
    let whole = d.path().join("whole");
    assert!(run(&["embed", s(&lib), "--out", s(&whole), "--batch", "2"]).status.success());
    let want = std::fs::read(whole.join("songs.jsonl")).unwrap();
    // The model line, then one line per song.
    assert_eq!(want.iter().filter(|&&b| b == b'\n').count(), 13);

    // kill -9 partway (wherever it is), then run again.
    let killed = d.path().join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_soundalike"))
        .args(["embed", s(&lib), "--out", s(&killed), "--batch", "2"])
        .current_dir(root())
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while t.elapsed().as_secs_f64() < 20.0 {
        let lines = std::fs::read(killed.join("songs.jsonl")).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0);
        // The model line and two songs.
        if lines >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Also tear the journal's last line, as a crash mid-write would.
    if let Ok(mut j) = std::fs::read(killed.join("songs.jsonl")) {
        if j.len() > 40 {
            j.truncate(j.len() - 37);
            std::fs::write(killed.join("songs.jsonl"), &j).unwrap();
        }
    }
    let o = run(&["embed", s(&lib), "--out", s(&killed), "--batch", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(killed.join("songs.jsonl")).unwrap() == want, "resumed store differs from an uninterrupted one");

    // Two shards merged = one run.
    let (a, b, merged) = (d.path().join("a"), d.path().join("b"), d.path().join("merged"));
    assert!(run(&["embed", s(&lib), "--out", s(&a), "--shard", "0/2"]).status.success());
    assert!(run(&["embed", s(&lib), "--out", s(&b), "--shard", "1/2"]).status.success());
    let na = std::fs::read_to_string(a.join("songs.jsonl")).unwrap().lines().filter(|l| l.contains("\"op\":\"put\"")).count();
    assert!(na > 0 && na < 12, "shard 0 holds {na} of 12");
    let o = run(&["merge", "--out", s(&merged), s(&a), s(&b)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(merged.join("songs.jsonl")).unwrap() == want, "merged shards differ from a single run");

    // A store of another model is refused, by embed and by merge.
    let hp = b.join("store.json");
    let mut h: serde_json::Value = serde_json::from_slice(&std::fs::read(&hp).unwrap()).unwrap();
    h["model_fingerprint"] = "feedfacefeedface".into();
    std::fs::write(&hp, serde_json::to_vec(&h).unwrap()).unwrap();
    let o = run(&["embed", s(&lib), "--out", s(&b)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("feedfacefeedface"), "{}", stderr(&o));
    let o = run(&["merge", "--out", s(&d.path().join("m2")), s(&a), s(&b)]);
    // The doctored store is refused as soon as it is opened (its journal names the real model), or by the
    // header comparison: either way nothing is merged.
    assert!(!o.status.success() && (stderr(&o).contains("different models") || stderr(&o).contains("not adopted")), "{}", stderr(&o));
    assert!(!d.path().join("m2").join("songs.jsonl").exists());
    let o = run(&["embed", s(&lib), "--out", s(&d.path().join("x")), "--shard", "3/2"]);
    assert!(stderr(&o).contains("0 <= K < N"), "{}", stderr(&o));
}

#[test]
fn query_by_song_text_file_playlist_and_filters() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let tiny = root().join("datasets/tiny");
    let csv = tiny.join("tracks.csv");
    let o = run(&["embed", s(&tiny), "--out", s(&store), "--labels", s(&csv), "--label-column", "source", "--group-column", "source"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q = |args: &[&str]| {
        let mut a = vec!["query", s(&store), "--json"];
        a.extend_from_slice(args);
        run(&a)
    };
    // By id: k results, best first, never the query itself.
    let r = json(&q(&["--song", "hedgewars-data/Art.mp3", "-k", "5"]));
    let res = r["results"].as_array().unwrap();
    assert_eq!(res.len(), 5);
    assert!(res.iter().all(|x| x["id"] != "hedgewars-data/Art.mp3"));
    let scores: Vec<f64> = res.iter().map(|x| x["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // By text, exact and --exact agree with the default path.
    let r2 = json(&q(&["--song", "Art", "-k", "5", "--exact"]));
    assert_eq!(r2["results"], r["results"]);
    // The HNSW index on real embeddings: for every song, its top 5 equal exact search's.
    let songs: Vec<String> = std::fs::read_to_string(store.join("songs.jsonl")).unwrap().lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["song"]["id"].as_str().map(String::from)).collect();
    assert_eq!(songs.len(), 30);
    let (mut agree, mut total) = (0, 0);
    for id in &songs {
        let ids = |o: serde_json::Value| o["results"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let a = ids(json(&q(&["--song", id, "-k", "5", "--ann"])));
        let e = ids(json(&q(&["--song", id, "-k", "5", "--exact"])));
        agree += a.iter().filter(|x| e.contains(x)).count();
        total += 5;
    }
    assert!(agree as f64 / total as f64 >= 0.99, "recall@5 of the index on real embeddings: {agree}/{total}");
    // The same through a graph that hnsw_rs built; a damaged index file is refused, naming it and the fix.
    let o = run(&["index", s(&store), "--rebuild", "--builder", "hnsw-rs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ids_of = |v: &serde_json::Value| v["results"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids_of(&json(&q(&["--song", "Art", "-k", "5", "--ann"]))), ids_of(&r2));
    // The default index keeps 16-bit vectors (the loop above ran on it); `--vectors f32` keeps f32.
    // Either way the same songs, with scores within rounding of exact search's.
    let header_has = |w: &[u8]| std::fs::read(store.join("index").join("index.bin")).unwrap().windows(w.len()).any(|x| x == w);
    let score = |v: &serde_json::Value| v["results"].as_array().unwrap().iter().map(|x| x["score"].as_f64().unwrap()).collect::<Vec<_>>();
    for (precision, tol) in [("i16", 1e-4), ("f32", 1e-6)] {
        let o = run(&["index", s(&store), "--rebuild", "--vectors", precision]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(header_has(format!("\"vectors\":\"{precision}\"").as_bytes()), "{precision}");
        let got = json(&q(&["--song", "Art", "-k", "5", "--ann"]));
        assert_eq!(ids_of(&got), ids_of(&r2), "{precision}");
        assert!(score(&got).iter().zip(score(&r2)).all(|(a, b)| (a - b).abs() < tol), "{precision}: {:?} vs {:?}", score(&got), score(&r2));
    }
    let bin = store.join("index").join("index.bin");
    let mut bytes = std::fs::read(&bin).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    std::fs::write(&bin, &bytes).unwrap();
    let o = q(&["--song", "Art", "--ann"]);
    assert!(!o.status.success() && stderr(&o).contains("index.bin") && stderr(&o).contains("--rebuild"), "{}", stderr(&o));
    let o = run(&["index", s(&store), "--rebuild"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Target genre (teacher_genre column of the CSV): k results, all of that genre.
    let r = json(&q(&["--song", "hedgewars-data/Art.mp3", "-k", "2", "--genre", "ambient"]));
    let res = r["results"].as_array().unwrap();
    assert_eq!(res.len(), 2);
    assert!(res.iter().all(|x| x["genre"] == "ambient"), "{res:?}");
    // Exclude the query's soundtrack; cap one per group.
    let r = json(&q(&["--song", "hedgewars-data/Art.mp3", "-k", "4", "--exclude-same-group", "--max-per-album", "1"]));
    let groups: Vec<&str> = r["results"].as_array().unwrap().iter().map(|x| x["group"].as_str().unwrap()).collect();
    assert_eq!(groups.len(), 4);
    assert!(!groups.contains(&"hedgewars-data"));
    let uniq: std::collections::BTreeSet<_> = groups.iter().collect();
    assert_eq!(uniq.len(), 4, "{groups:?}");
    // Playlist of two songs: neither is returned.
    let r = json(&q(&["--song", "hedgewars-data/Art.mp3", "--song", "nexuiz-music/desert3.mp3", "-k", "28"]));
    let res = r["results"].as_array().unwrap();
    assert_eq!(res.len(), 28);
    assert!(res.iter().all(|x| x["id"] != "hedgewars-data/Art.mp3" && x["id"] != "nexuiz-music/desert3.mp3"));
    // A new file (the DJ case): its own library copy ranks first.
    let r = json(&q(&["--file", s(&tiny.join("wesnoth-1.16-music/battle.mp3")), "--model", "models/default", "-k", "3"]));
    let first = &r["results"].as_array().unwrap()[0];
    assert_eq!(first["id"], "wesnoth-1.16-music/battle.mp3");
    assert!(first["score"].as_f64().unwrap() > 0.999);
    // Errors: unknown song, ambiguous text, k = 0, empty query.
    let o = q(&["--song", "no such song anywhere"]);
    assert!(!o.status.success() && stderr(&o).contains("no song matches"), "{}", stderr(&o));
    let o = q(&["--song", "music"]);
    assert!(stderr(&o).contains("matches") && stderr(&o).contains("name one by id"), "{}", stderr(&o));
    let o = q(&["--song", "Art", "-k", "0"]);
    assert!(stderr(&o).contains("-k must be at least 1"), "{}", stderr(&o));
    // Huge k: every other song, no error.
    let r = json(&q(&["--song", "Art", "-k", "100000"]));
    assert_eq!(r["results"].as_array().unwrap().len(), 29);
    // Human-readable table.
    let o = run(&["query", s(&store), "--song", "Art", "-k", "3"]);
    assert!(stdout(&o).contains("rank") && stdout(&o).lines().count() == 5, "{}", stdout(&o));
}

#[test]
fn export_writes_csv_jsonl_and_npy() {
    let d = tempfile::tempdir().unwrap();
    let lib = d.path().join("lib");
    library(&lib, 3);
    let store = d.path().join("store");
    assert!(run(&["embed", s(&lib), "--out", s(&store)]).status.success());
    let csv = d.path().join("x.csv");
    assert!(run(&["export", s(&store), "--format", "csv", "--out", s(&csv)]).status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    // 14 columns, the tags (top five, then each tagger's 50 probabilities), the vector.
    assert_eq!(lines[0].split(',').count(), 14 + 101 + 128);
    assert!(lines[0].starts_with("id,title,artist,album,genre,group,duration_s,predicted,cluster,bpm,key,open_key,lufs,true_peak_db,top_tags,msd:rock,"));
    assert!(lines[0].contains(",mtt:female vocal,") && lines[0].contains(",mtt:choral,v0,"), "{}", lines[0]);
    // Every clip is real music: its loudness is measured (a negative LUFS), its key in both notations
    // or empty when unclear.
    for l in &lines[1..] {
        let f: Vec<&str> = l.split(',').collect();
        let lufs = f[12].parse::<f32>().unwrap_or(f32::NAN);
        assert!(lufs < 0.0 && lufs > -70.0, "{l}");
        // Its true peak: above the integrated loudness, and at most a little over full scale (mp3 previews
        // of mastered music pass 0 dBTP by a few tenths).
        assert!(f[13].parse::<f32>().is_ok_and(|p| p > lufs && p < 3.0), "{l}");
        assert_eq!(f[10].is_empty(), f[11].is_empty(), "{l}");
        // Tagged: five `tag p` pairs, 100 probabilities.
        assert_eq!(f[14].split("; ").count(), 5, "{l}");
        assert!(f[15..115].iter().all(|p| p.parse::<f32>().is_ok_and(|p| (0.0..=1.0).contains(&p))), "{l}");
    }
    let v: Vec<f64> = lines[1].split(',').skip(14 + 101).map(|x| x.parse().unwrap()).collect();
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-3);
    let jl = d.path().join("x.jsonl");
    assert!(run(&["export", s(&store), "--format", "jsonl", "--out", s(&jl)]).status.success());
    let jl_text = std::fs::read_to_string(&jl).unwrap();
    assert_eq!(jl_text.lines().count(), 3);
    for l in jl_text.lines() {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(j["lufs"].is_number() && j["true_peak_db"].is_number() && j["facts"]["version"].is_number() && j.get("bpm").is_some(), "{l}");
        assert!(j["tags"]["msd"].as_array().is_some_and(|a| a.len() == 50) && j["top_tags"].as_array().is_some_and(|a| a.len() == 5), "{l}");
    }
    let npy = d.path().join("x.npy");
    assert!(run(&["export", s(&store), "--format", "npy", "--out", s(&npy)]).status.success());
    let b = std::fs::read(&npy).unwrap();
    assert!(String::from_utf8_lossy(&b[..128]).contains("(3, 128)"));
    assert_eq!(std::fs::read_to_string(d.path().join("x.ids.txt")).unwrap().lines().count(), 3);
    let facts = std::fs::read_to_string(d.path().join("x.facts.csv")).unwrap();
    assert!(facts.starts_with("id,bpm,key,open_key,lufs,true_peak_db\n") && facts.lines().count() == 4, "{facts}");
    let tags = std::fs::read_to_string(d.path().join("x.tags.csv")).unwrap();
    assert!(tags.starts_with("id,top_tags,msd:rock,") && tags.lines().count() == 4, "{tags}");
}

#[test]
fn demo_runs_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&["demo", "--out", s(&d.path().join("store"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("30 songs (30 embedded"), "{out}");
    assert!(out.matches("songs that sound like").count() >= 3, "{out}");
}

/// Issue 15, item 6: most folders have no genre tags; `--genre-source` picks the tag, the model's predicted
/// genre, or either (the default).
#[test]
fn genre_filters_use_the_predicted_genre_where_there_is_no_tag() {
    let d = tempfile::tempdir().unwrap();
    let (lib, store) = (d.path().join("flat"), d.path().join("store"));
    std::fs::create_dir_all(&lib).unwrap();
    // A flat folder of untagged clips: no CSV, no genre folders.
    let staged = d.path().join("staged");
    for id in library(&staged, 8) {
        let name = id.replace('/', "_");
        std::fs::copy(staged.join(&id), lib.join(name)).unwrap();
    }
    assert!(run(&["embed", s(&lib), "--out", s(&store)]).status.success());
    let export = d.path().join("songs.jsonl");
    assert!(run(&["export", s(&store), "--format", "jsonl", "--out", s(&export)]).status.success());
    let songs: Vec<serde_json::Value> = std::fs::read_to_string(&export).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(songs.iter().all(|x| x["genre"].is_null()), "untagged");
    let first = songs[0]["id"].as_str().unwrap();
    let predicted = songs[0]["predicted"].as_str().unwrap();
    let q = |extra: &[&str]| {
        let mut a = vec!["query", s(&store), "--song", first, "-k", "3", "--json", "--same-genre"];
        a.extend_from_slice(extra);
        run(&a)
    };
    let o = q(&["--genre-source", "tag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--genre-source"), "{}", stderr(&o));
    for src in [&["--genre-source", "predicted"][..], &[][..]] {
        let o = q(src);
        assert!(o.status.success(), "{}", stderr(&o));
        let r = json(&o);
        let same: Vec<&serde_json::Value> = songs.iter().filter(|x| x["predicted"] == predicted && x["id"] != first).collect();
        let res = r["results"].as_array().unwrap();
        assert_eq!(res.len(), same.len().min(3));
        assert!(res.iter().all(|x| x["genre"] == predicted), "{r}");
    }
}

#[test]
fn shard_stores_are_never_mixed_up() {
    let d = tempfile::tempdir().unwrap();
    let lib = d.path().join("lib");
    library(&lib, 6);
    let sh = |k: usize, n: usize| d.path().join(format!("s{k}of{n}"));
    for k in 0..2 {
        let o = run(&["embed", s(&lib), "--out", s(&sh(k, 2)), "--shard", &format!("{k}/2")]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Another shard into the same store, or a whole-library embed into a shard store: refused.
    let o = run(&["embed", s(&lib), "--out", s(&sh(0, 2)), "--shard", "1/2"]);
    assert!(!o.status.success() && stderr(&o).contains("shard 0/2"), "{}", stderr(&o));
    let o = run(&["embed", s(&lib), "--out", s(&sh(0, 2))]);
    assert!(!o.status.success() && stderr(&o).contains("merge"), "{}", stderr(&o));
    // A shard of another split, a shard twice, a plain store among shards: refused, nothing written.
    assert!(run(&["embed", s(&lib), "--out", s(&sh(0, 3)), "--shard", "0/3"]).status.success());
    let out = d.path().join("merged");
    for (stores, why) in [
        (vec![sh(0, 2), sh(0, 3)], "different runs"),
        (vec![sh(0, 2), sh(0, 2), sh(1, 2)], "given twice"),
    ] {
        let mut a = vec!["merge".to_string(), "--out".into(), s(&out).into()];
        a.extend(stores.iter().map(|p| s(p).to_string()));
        let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!o.status.success() && stderr(&o).contains(why), "{why}: {}", stderr(&o));
        assert!(!out.exists());
    }
    let o = run(&["merge", "--out", s(&out), s(&sh(0, 2)), s(&sh(1, 2))]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Issue 30, items 1, 2 and 5: a library kept the way most people keep music (`Artist/Album/NN Title.mp3`,
/// no tags). `embed` saves the index it reports (under the lock it holds); folders are never genres
/// (genres come from tags, else the model); artist, album and title fall back to the path and say so;
/// `export --out -` writes to standard output.
#[test]
fn a_tagless_artist_album_library_gets_no_folder_genres_and_a_saved_index() {
    let d = tempfile::tempdir().unwrap();
    let (lib, store, staged) = (d.path().join("Music"), d.path().join("store"), d.path().join("staged"));
    let ids = library(&staged, 8);
    let place = |i: usize| {
        let dir = lib.join(format!("Artist {}", i % 2)).join("Greatest Hits");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(staged.join(&ids[i]), dir.join(format!("{:02} Song {i}.mp3", i + 1))).unwrap();
    };
    (0..6).for_each(place);
    let o = run(&["embed", s(&lib), "--out", s(&store), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["index"], "built, saved");
    let graph = store.join("index/index.bin");
    let before = std::fs::read(&graph).expect("embed writes the index it builds");

    let o = run(&["export", s(&store), "--format", "jsonl", "--out", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let songs: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(songs.len(), 6);
    for x in &songs {
        assert!(x["genre"].is_null(), "a folder is no genre: {x}");
        assert!(x["artist"] == "Artist 0" || x["artist"] == "Artist 1", "{x}");
        assert_eq!(x["album"], "Greatest Hits");
        assert!(x["title"].as_str().unwrap().starts_with("Song "), "{x}");
        let from: Vec<&str> = x["from_path"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(from, ["title", "artist", "album"], "{x}");
    }
    let o = run(&["export", s(&store), "--format", "csv", "--out", "-"]);
    assert!(stdout(&o).starts_with("id,title,artist,album,genre"), "{}", stdout(&o));
    assert_eq!(stdout(&o).lines().count(), 7);
    assert!(run(&["export", s(&store), "--format", "npy", "--out", "-"]).status.code() != Some(0));

    // `--same-genre` is the predicted genre, never "same folder".
    let first = songs[0]["id"].as_str().unwrap();
    let r = json(&run(&["query", s(&store), "--song", first, "-k", "5", "--json", "--same-genre"]));
    let predicted = &songs[0]["predicted"];
    assert!(r["results"].as_array().unwrap().iter().all(|x| &x["genre"] == predicted), "{r}");

    // Two more songs: the saved index is updated by embed itself.
    (6..8).for_each(place);
    let o = run(&["embed", s(&lib), "--out", s(&store), "--json"]);
    assert_eq!(json(&o)["index"], "updated: 2 added, 0 removed, saved");
    assert_ne!(std::fs::read(&graph).unwrap(), before, "the saved index follows the store");

    // A store named by the old rules (made before this change: the top folder as genre, no `from_path`, no
    // `metadata_version`): the next embed renames its songs from their tags alone, once.
    let header: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join("store.json")).unwrap()).unwrap();
    assert_eq!(header["metadata_version"], 1);
    let mut old_header = header.clone();
    old_header.as_object_mut().unwrap().remove("metadata_version");
    std::fs::write(store.join("store.json"), serde_json::to_vec_pretty(&old_header).unwrap()).unwrap();
    edit_journal(&store, |song| {
        let folder = song["id"].as_str().unwrap().split('/').next().unwrap().to_string();
        song.insert("genre".into(), folder.into());
        song.remove("from_path");
    });
    let o = run(&["embed", s(&lib), "--out", s(&store), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!((json(&o)["renamed"].as_u64(), json(&o)["embedded"].as_u64()), (Some(8), Some(0)));
    let o = run(&["export", s(&store), "--format", "jsonl", "--out", "-"]);
    for x in stdout(&o).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()) {
        assert!(x["genre"].is_null() && x["from_path"].as_array().is_some_and(|a| a.len() == 3), "{x}");
    }
    assert_eq!(json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]))["renamed"], 0);
}

/// Unit rows of a store's journal, by song id.
fn store_vectors(store: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    std::fs::read_to_string(store.join("songs.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let song = v.get("song").unwrap_or(&v);
            let id = song.get("id")?.as_str()?.to_string();
            let vec: Vec<f32> = song.get("vector")?.as_array()?.iter().map(|x| x.as_f64().unwrap() as f32).collect();
            Some((id, vec))
        })
        .collect()
}

#[test]
fn whiten_copies_a_model_with_a_map_fitted_on_a_store_and_embeds_with_it() {
    let d = tempfile::tempdir().unwrap();
    let lib = d.path().join("lib");
    let ids = library(&lib, 5);
    let (store, out, store2) = (d.path().join("store"), d.path().join("white"), d.path().join("store2"));
    // The shipped model is whitened itself: start from its weights without the map (`whiten --remove`),
    // which is the model it was made from: the same weights, no map, the fingerprint of weights alone.
    let base = d.path().join("plain-default");
    let o = run(&["whiten", "--model", s(&model()), "--remove", "--out", s(&base)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let weights = std::fs::read(model().join("model.bpk")).unwrap();
    assert_eq!(std::fs::read(base.join("model.bpk")).unwrap(), weights);
    let plain_cfg = soundalike_model::load_config(&base).unwrap();
    let default_cfg = soundalike_model::load_config(&model()).unwrap();
    assert!(default_cfg.arch.song_whitening.is_some() && plain_cfg.arch.song_whitening.is_none());
    let want = soundalike_model::with_song_whitening(default_cfg.clone(), &weights, None).unwrap();
    assert_eq!(plain_cfg.fingerprint, want.fingerprint);
    assert_ne!(plain_cfg.fingerprint, default_cfg.fingerprint);
    let removed: serde_json::Value = serde_json::from_slice(&std::fs::read(base.join("whitening.json")).unwrap()).unwrap();
    assert_eq!((removed["removed"].as_bool(), removed["from_fingerprint"].as_str()), (Some(true), Some(default_cfg.fingerprint.as_str())));
    assert!(run(&["embed", s(&lib), "--model", s(&base), "--out", s(&store), "--index", "false"]).status.success());
    // Fitted on the training songs of a split.json: three of the five.
    let split = d.path().join("split.json");
    let assignment: serde_json::Map<String, serde_json::Value> = ids.iter().enumerate().map(|(i, id)| (id.clone(), json!(if i < 3 { "train" } else { "test" }))).collect();
    std::fs::write(&split, json!({ "assignment": assignment }).to_string()).unwrap();
    let o = run(&["whiten", "--model", s(&base), "--store", s(&store), "--out", s(&out), "--strength", "0.5", "--songs", s(&split)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: whitening fitted on 3 songs for 128 dimensions"), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("whitening.json")).unwrap()).unwrap();
    assert_eq!((report["fitted_on"].as_u64(), report["strength"].as_f64()), (Some(3), Some(0.5)));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let base_cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(base.join("config.json")).unwrap()).unwrap();
    assert_ne!(cfg["fingerprint"], base_cfg["fingerprint"]);
    assert_eq!(report["fingerprint"], cfg["fingerprint"]);
    // Embedding with the copy gives each song's plain vector, whitened by the saved map, unit length again.
    let o = run(&["embed", s(&lib), "--model", s(&out), "--out", s(&store2), "--index", "false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let w = &cfg["arch"]["song_whitening"];
    let f = |k: &str| -> Vec<f32> { w[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    let (mean, matrix) = (f("mean"), f("matrix"));
    let (plain, white) = (store_vectors(&store), store_vectors(&store2));
    assert_eq!(white.len(), 5);
    for (id, v) in &plain {
        let c: Vec<f32> = v.iter().zip(&mean).map(|(x, m)| x - m).collect();
        let mut want: Vec<f32> = matrix.chunks_exact(128).map(|row| row.iter().zip(&c).map(|(a, b)| a * b).sum()).collect();
        let n = want.iter().map(|x| x * x).sum::<f32>().sqrt();
        want.iter_mut().for_each(|x| *x /= n);
        let diff = want.iter().zip(&white[id]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "{id}: differs by {diff}");
        assert!(v.iter().zip(&white[id]).any(|(a, b)| (a - b).abs() > 1e-3), "{id}: whitening changed nothing");
    }
    // Refused, each before writing anything: weights that do not match their config, an existing folder, a
    // whitened model, removing a map that is not there (or with a store), fitting with no store, a store of
    // another model, a strength out of range, a song list that matches nothing.
    let fresh = d.path().join("fresh");
    // A folder whose weights are not the ones its config names.
    let mixed = d.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(model().join("config.json"), mixed.join("config.json")).unwrap();
    let mut w = weights.clone();
    *w.last_mut().unwrap() ^= 1;
    std::fs::write(mixed.join("model.bpk"), &w).unwrap();
    for (args, why) in [
        (vec!["--model", s(&mixed), "--remove", "--out", s(&fresh)], "the model directory is mixed up"),
        (vec!["--model", s(&base), "--store", s(&store), "--out", s(&out)], "already exists and is not empty"),
        (vec!["--model", s(&out), "--store", s(&store2), "--out", s(&fresh)], "whitened already"),
        (vec!["--model", s(&base), "--remove", "--out", s(&fresh)], "no map to remove"),
        (vec!["--model", s(&out), "--remove", "--store", s(&store2), "--out", s(&fresh)], "cannot be used with"),
        (vec!["--model", s(&out), "--remove", "--out", s(&base)], "already exists and is not empty"),
        (vec!["--model", s(&base), "--out", s(&fresh)], "--store"),
        (vec!["--model", s(&base), "--store", s(&store2), "--out", s(&fresh)], "embed the songs with the model you whiten"),
        (vec!["--model", s(&base), "--store", s(&store), "--out", s(&fresh), "--strength", "2"], "from 0 (only centred) to 1"),
        (vec!["--model", s(&base), "--store", s(&store), "--out", s(&fresh), "--songs", s(&lib.join("nothing.txt"))], "cannot read"),
    ] {
        let mut all = vec!["whiten"];
        all.extend(args);
        let o = run(&all);
        assert!(!o.status.success() && stderr(&o).contains(why), "{why}: {}", stderr(&o));
        assert!(!fresh.exists(), "{why}: wrote {}", fresh.display());
    }
    let none = d.path().join("none.txt");
    std::fs::write(&none, "not/a-song.mp3\n").unwrap();
    let o = run(&["whiten", "--model", s(&base), "--store", s(&store), "--out", s(&fresh), "--songs", s(&none)]);
    assert!(!o.status.success() && stderr(&o).contains("none of its 1 songs"), "{}", stderr(&o));
}
