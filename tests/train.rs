//! `soundalike train` end to end on the committed tiny set: the multi-task options reach the run and its
//! metrics, the model it writes embeds, and contradictory options are refused before any work.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests stop at the first surprise

mod util;

use util::*;

fn base<'a>(out: &'a str, cache: &'a str) -> Vec<&'a str> {
    vec![
        "train", "datasets/tiny", "--labels", "datasets/tiny/tracks.csv", "--label-column", "teacher_genre", "--group-column", "source",
        "--out", out, "--cache", cache, "--epochs", "1", "--crops-per-song", "2", "--batch-size", "8", "--val-fraction", "0",
        "--test-fraction", "0.2",
    ]
}

#[test]
fn contrastive_training_runs_records_its_options_and_embeds() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cache) = (dir.path().join("model"), dir.path().join("cache"));
    // Two teachers' vectors, joined per song; a song missing from one file gets no target.
    let ids: Vec<String> = std::fs::read_to_string(root().join("datasets/tiny/tracks.csv")).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    let (ta, tb) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let rows = |cols: usize, skip: usize| -> String {
        let head = std::iter::once("id".to_string()).chain((0..cols).map(|c| format!("v{c}"))).collect::<Vec<_>>().join(",");
        let body: Vec<String> = ids.iter().enumerate().skip(skip).map(|(i, id)| format!("{id},{}", (0..cols).map(|c| format!("{}", (i * 7 + c) % 5)).collect::<Vec<_>>().join(","))).collect();
        format!("{head}\n{}\n", body.join("\n"))
    };
    std::fs::write(&ta, rows(2, 0)).unwrap();
    std::fs::write(&tb, rows(3, 1)).unwrap();
    let mut args = base(s(&out), s(&cache));
    args.extend(["--teacher-vectors", s(&ta), "--teacher-vectors", s(&tb)]);
    args.extend(["--contrast-weight", "0.5", "--contrast-temperature", "0.2", "--contrast-groups", "--work-column", "source", "--pool-bands", "4", "--pool-blocks", "2", "--tile-frames", "96", "--weight-decay", "0.003", "--average-epochs", "1", "--average-lr", "0.0004", "--song-power", "0.7", "--whiten", "0.5"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("works (source):"), "{}", stderr(&o));
    let line = stderr(&o).lines().find(|l| l.starts_with("teacher vectors:")).unwrap_or_default().to_string();
    let n_train: usize = line.rsplit(" of ").next().and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(line.starts_with("teacher vectors: 5 dimensions for ") && n_train > 1, "{line}");
    // The first song (missing from the second file) has no target if it trains.
    let have: usize = line.trim_start_matches("teacher vectors: 5 dimensions for ").split(' ').next().unwrap().parse().unwrap();
    let split: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
    let first_trains = split["assignment"][format!("{}.mp3", ids[0])] == "train";
    assert_eq!(have, n_train - usize::from(first_trains), "{line}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["options"]["contrast_weight"], 0.5);
    assert_eq!(m["options"]["contrast_groups"], true);
    assert!((m["options"]["contrast_temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert!((m["options"]["weight_decay"].as_f64().unwrap() - 0.003).abs() < 1e-6, "{}", m["options"]);
    // Weight averaging: the last epoch's own weights are kept beside the averaged model, with its settings.
    assert_eq!(m["options"]["average_epochs"], 1);
    assert!((m["options"]["average_lr"].as_f64().unwrap() - 4e-4).abs() < 1e-12, "{}", m["options"]);
    let last: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("last-epoch/config.json")).unwrap()).unwrap();
    assert_eq!(last["frontend"]["tile_frames"], 96);
    assert_eq!(m["work_column"], "source");
    assert_eq!(m["teacher_vectors"].as_array().map(Vec::len), Some(2));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["arch"]["pool"]["time"]["rows"], 4);
    assert_eq!(cfg["arch"]["pool_blocks"], 2);
    assert!((cfg["arch"]["song_power"].as_f64().unwrap() - 0.7).abs() < 1e-6, "{}", cfg["arch"]);
    // Whitening: fitted on the training songs (a few, for 128 dimensions: said so), saved in the config,
    // reported in the metrics, and the metrics carry the final fingerprint.
    let w = &cfg["arch"]["song_whitening"];
    assert_eq!(w["fitted_on"].as_u64(), Some(n_train as u64), "{w}");
    assert_eq!((w["mean"].as_array().map(Vec::len), w["matrix"].as_array().map(Vec::len)), (Some(128), Some(128 * 128)));
    assert_eq!(m["song_whitening"]["fitted_on"].as_u64(), Some(n_train as u64));
    assert!((m["song_whitening"]["alpha"].as_f64().unwrap() - 0.5).abs() < 1e-6);
    assert_eq!(m["fingerprint"], cfg["fingerprint"]);
    assert!(stderr(&o).contains(&format!("warning: whitening fitted on {n_train} songs for 128 dimensions")), "{}", stderr(&o));
    assert!(last.get("arch").and_then(|a| a.get("song_whitening")).is_none(), "the last epoch's own model is not whitened");
    assert_eq!((cfg["frontend"]["tile_frames"].as_u64(), cfg["frontend"]["tile_hop"].as_u64()), (Some(96), Some(96)));
    // The model it wrote embeds a song.
    let store = dir.path().join("store");
    let o = run(&["embed", "datasets/tiny/asc-music", "--model", s(&out), "--out", s(&store), "--index", "false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(store.join("songs.jsonl")).unwrap().lines().count() >= 3);
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join("store.json")).unwrap()).unwrap();
    assert!(st.to_string().contains("\"tile_frames\":96"), "the store records the model's tiles: {st}");
}

#[test]
fn contradictory_training_options_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cache) = (dir.path().join("model"), dir.path().join("cache"));
    for (extra, why) in [
        (&["--pool", "global", "--pool-bands", "4"][..], "the global pool has none"),
        (&["--work-column", "source"][..], "give --contrast-weight too"),
        (&["--contrast-groups"][..], "give --contrast-weight too"),
        (&["--teacher-patches", "p.csv", "--teacher-vectors", "v.csv"][..], "give --teacher-patches alone"),
        (&["--relation-weight", "1"][..], "give --teacher-vectors or --teacher-patches too"),
        (&["--pool-blocks", "9"][..], "the network has 4"),
        (&["--mixup", "1.5"][..], "give a number from 0 to 1"),
        (&["--cosine-heads", "20"][..], "give --group-weight or --song-weight too"),
        (&["--cosine-heads=-1", "--group-weight", "1"][..], "give a number >= 0"),
        (&["--mixup", "0.5", "--contrast-weight", "1"][..], "do not go together"),
        (&["--weight-decay=-0.1"][..], "give a number of 0 or more"),
        (&["--average-epochs", "2"][..], "more epochs than the schedule's 1"),
        (&["--average-lr", "1e-4"][..], "give --average-epochs too"),
        (&["--average-epochs", "1", "--average-lr=-1"][..], "give a number of 0 or more"),
        (&["--song-power", "0"][..], "above 0 and at most 1"),
        (&["--song-power", "1.5"][..], "above 0 and at most 1"),
        (&["--whiten", "1.5"][..], "from 0 (only centred) to 1"),
        (&["--whiten=-0.5"][..], "from 0 (only centred) to 1"),
    ] {
        let mut args = base(s(&out), s(&cache));
        args.extend(extra);
        let o = run(&args);
        assert!(!o.status.success() && stderr(&o).contains(why), "{extra:?}: {}", stderr(&o));
        assert!(!out.join("config.json").exists(), "{extra:?} wrote a model");
    }
}

#[test]
fn teacher_patches_from_two_files_are_joined_per_song_and_train() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cache) = (dir.path().join("model"), dir.path().join("cache"));
    let ids: Vec<String> = std::fs::read_to_string(root().join("datasets/tiny/tracks.csv")).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    // Three 3-s patches a song; file b lacks the first song and starts the second song's patches elsewhere,
    // so those two songs get no patches; every other song gets 2 + 3 dimensions.
    let rows = |cols: usize, b: bool| -> String {
        let head = ["id", "start_s", "end_s"].into_iter().map(String::from).chain((0..cols).map(|c| format!("v{c}"))).collect::<Vec<_>>().join(",");
        let mut body = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if b && i == 0 {
                continue;
            }
            for k in 0..3 {
                let start = 3.0 * k as f32 + if b && i == 1 { 1.0 } else { 0.0 };
                body.push(format!("{id},{start},{},{}", start + 3.0, (0..cols).map(|c| format!("{}", (i * 7 + c + k) % 5)).collect::<Vec<_>>().join(",")));
            }
        }
        format!("{head}\n{}\n", body.join("\n"))
    };
    let (pa, pb) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    std::fs::write(&pa, rows(2, false)).unwrap();
    std::fs::write(&pb, rows(3, true)).unwrap();
    let mut args = base(s(&out), s(&cache));
    args.extend(["--teacher-patches", s(&pa), "--teacher-patches", s(&pb), "--vec-weight", "2", "--relation-weight", "3", "--mixup", "0.5", "--song-weight", "1", "--cosine-heads", "16"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stderr(&o).lines().find(|l| l.starts_with("teacher patches:")).unwrap_or_default().to_string();
    let split: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
    let trains = |i: usize| split["assignment"][format!("{}.mp3", ids[i])] == "train";
    let n_train = (0..ids.len()).filter(|&i| trains(i)).count();
    let have = n_train - usize::from(trains(0)) - usize::from(trains(1));
    assert_eq!(line, format!("teacher patches: 5 dimensions, {} patches for {have} of {n_train} training songs", 3 * have));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["teacher_patches"].as_array().map(Vec::len), Some(2));
    assert_eq!(m["options"]["vec_weight"], 2.0);
    assert_eq!(m["options"]["relation_weight"], 3.0);
    assert_eq!(m["options"]["mixup"], 0.5);
    assert_eq!(m["options"]["cosine_scale"], 16.0);
    // A patch that ends before it starts is refused, naming the file and row.
    std::fs::write(&pa, "id,start_s,end_s,v0\nx,3,1,0.5\n").unwrap();
    let mut args = base(s(&out), s(&cache));
    args.extend(["--teacher-patches", s(&pa)]);
    let o = run(&args);
    assert!(!o.status.success() && stderr(&o).contains("row 2: a patch must end after it starts"), "{}", stderr(&o));
}

#[test]
fn split_column_keeps_the_songs_of_one_work_in_one_part() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("split.json");
    // `source` as the unit: every song of a source lands in one part (the tiny set has a handful of sources,
    // so with a test fraction of a third some source is test and others train).
    let args = ["split", "datasets/tiny", "--labels", "datasets/tiny/tracks.csv", "--label-column", "teacher_genre", "--test-fraction", "0.34",
                "--val-fraction", "0", "--split-column", "source", "--out", s(&out)];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let split: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let csv = std::fs::read_to_string(root().join("datasets/tiny/tracks.csv")).unwrap();
    let mut part_of_source: std::collections::HashMap<String, std::collections::BTreeSet<String>> = Default::default();
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let part = split["assignment"][cols[1]].as_str().unwrap_or_else(|| panic!("{} not in the split", cols[1])).to_string();
        part_of_source.entry(cols[2].to_string()).or_default().insert(part);
    }
    assert!(part_of_source.values().all(|p| p.len() == 1), "{part_of_source:?}");
    let parts: std::collections::BTreeSet<_> = part_of_source.values().flatten().cloned().collect();
    assert!(parts.contains("test") && parts.contains("train"), "{parts:?}");
    // Song by song, the same settings put songs of one source in both parts.
    let o = run(&args[..args.len() - 4].iter().chain(["--out", s(&out)].iter()).copied().collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let split: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let mixed = csv.lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>()).fold(std::collections::HashMap::<String, std::collections::BTreeSet<String>>::new(), |mut m, c| {
        m.entry(c[2].to_string()).or_default().insert(split["assignment"][c[1]].as_str().unwrap().to_string());
        m
    });
    assert!(mixed.values().any(|p| p.len() > 1), "{mixed:?}");
    // A column the CSV lacks is named.
    let o = run(&["split", "datasets/tiny", "--labels", "datasets/tiny/tracks.csv", "--label-column", "teacher_genre", "--split-column", "nope", "--out", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("\"nope\""), "{}", stderr(&o));
    // A unit column needs a CSV.
    let o = run(&["split", "datasets/tiny", "--split-column", "source", "--out", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("--split-column needs --labels"), "{}", stderr(&o));
}

#[test]
fn a_musicnn_context_reads_the_taggers_own_vectors_and_the_model_embeds() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cache, csv) = (dir.path().join("model"), dir.path().join("cache"), dir.path().join("musicnn.csv"));
    // The tagger's penultimate of every song but one, as `tags --json --penultimate` prints it.
    let tiny = root().join("datasets/tiny");
    let mut files: Vec<String> = std::fs::read_dir(&tiny).unwrap().flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten()).map(|e| e.unwrap().path().display().to_string()).filter(|p| p.ends_with(".mp3")).collect();
    files.sort();
    let left_out = files.pop().unwrap();
    let mut args = vec!["tags", "--json", "--penultimate"];
    args.extend(files.iter().map(String::as_str));
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut body = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let v: Vec<f64> = j["msd_penultimate"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(v.len(), 200);
        assert_eq!(j["mtt_penultimate"].as_array().map(Vec::len), Some(200));
        assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
        let id = std::path::Path::new(j["file"].as_str().unwrap()).strip_prefix(&tiny).unwrap().with_extension("").display().to_string();
        body.push(format!("{id},{}", v.iter().map(f64::to_string).collect::<Vec<_>>().join(",")));
    }
    assert_eq!(body.len(), files.len());
    let head = std::iter::once("id".to_string()).chain((0..200).map(|k| format!("p{k}"))).collect::<Vec<_>>().join(",");
    std::fs::write(&csv, format!("{head}\n{}\n", body.join("\n"))).unwrap();
    // --penultimate prints with --json only.
    let o = run(&["tags", "--penultimate", &files[0]]);
    assert!(!o.status.success() && stderr(&o).contains("--json"), "{}", stderr(&o));
    let mut args = base(s(&out), s(&cache));
    args.extend(["--context-musicnn", s(&csv), "--context-dropout", "0.25"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // The song left out of the file has no vector if it trains (it reads the training songs' mean).
    let line = stderr(&o).lines().find(|l| l.starts_with("musicnn context:")).unwrap_or_default().to_string();
    let split: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
    let rel = |p: &str| std::path::Path::new(p).strip_prefix(&tiny).unwrap().display().to_string();
    let trains = |p: &str| split["assignment"][rel(p)] == "train";
    let n_train = files.iter().chain([&left_out]).filter(|p| trains(p)).count();
    let have = files.iter().filter(|p| trains(p)).count();
    assert_eq!(line, format!("musicnn context: vectors for {have} of {n_train} training songs (the others read the training mean)"));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["arch"]["context"]["source"], "musicnn");
    assert_eq!(cfg["arch"]["context"]["mean"].as_array().map(Vec::len), Some(200));
    // `evaluate` runs the tagger on each test song as training read its vector: the same report, when the
    // song left out of the file is not a test song (it read the mean in training).
    let o = run(&["evaluate", s(&out), "datasets/tiny", "--labels", "datasets/tiny/tracks.csv", "--label-column", "teacher_genre", "--cache", s(&cache), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_ne!(split["assignment"][rel(&left_out)], "test", "the split is seeded: pick another song to leave out");
    assert!(ev["test"]["n_songs"].as_u64().unwrap() > 0);
    assert_eq!(ev["test"]["confusion"], m["test"]["confusion"]);
    assert!((ev["test"]["loss"].as_f64().unwrap() - m["test"]["loss"].as_f64().unwrap()).abs() < 1e-6, "{} vs {}", ev["test"], m["test"]);
    // The model runs the tagger when it embeds, even with the store's tags off.
    let store = dir.path().join("store");
    let o = run(&["embed", "datasets/tiny/asc-music", "--model", s(&out), "--out", s(&store), "--index", "false", "--tags", "false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let songs = std::fs::read_to_string(store.join("songs.jsonl")).unwrap();
    assert_eq!(songs.lines().filter(|l| l.contains("\"vector\"")).count(), 3, "{songs}");
    assert!(!songs.contains("\"tags\":{"), "tags stay out of the store when --tags false");
    // Both contexts: the tagger's 200 values, then the log-mel statistics of 4 band groups (8 more).
    let both = dir.path().join("both");
    let mut args = base(s(&both), s(&cache));
    args.extend(["--context-musicnn", s(&csv), "--context-bands", "4", "--context-dropout", "0.25"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(both.join("config.json")).unwrap()).unwrap();
    assert_eq!((&cfg["arch"]["context"]["source"], &cfg["arch"]["context"]["bands"]), (&"musicnn".into(), &4.into()));
    assert_eq!(cfg["arch"]["context"]["std"].as_array().map(Vec::len), Some(208));
    let o = run(&["embed", "datasets/tiny/asc-music", "--model", s(&both), "--out", s(&dir.path().join("both-store")), "--index", "false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Refused before any work: vectors of another width.
    std::fs::write(&csv, "id,p0,p1\nasc-music/frontiers,1,2\n").unwrap();
    let gone = dir.path().join("gone");
    for (extra, why) in [(&["--context-musicnn", s(&csv)][..], "musicnn's penultimate has 200"), (&["--context-bands", "4", "--context-musicnn", s(&csv)][..], "musicnn's penultimate has 200")] {
        let mut args = base(s(&gone), s(&cache));
        args.extend(extra);
        let o = run(&args);
        assert!(!o.status.success() && stderr(&o).contains(why), "{extra:?}: {}", stderr(&o));
        assert!(!gone.join("config.json").exists());
    }
}
