//! Tags end to end: `tags FILE...` on good and bad files, the store (the same tags as `tags` prints, and
//! an older store's upgrade without re-embedding), `query --tag` and `--genre-source tags`.

mod util;

use std::collections::HashMap;
use std::path::Path;

use soundalike_recommend::SongTags;
use util::*;

fn tags_json(files: &[&Path], extra: &[&str]) -> (std::process::Output, Vec<serde_json::Value>) {
    let mut args = vec!["tags", "--json"];
    args.extend(files.iter().map(|f| s(f)));
    args.extend_from_slice(extra);
    let o = run(&args);
    let lines = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (o, lines)
}

fn all_probs(j: &serde_json::Value) -> Vec<f64> {
    ["msd", "mtt"].iter().flat_map(|m| j[m].as_object().unwrap().values().map(|v| v.as_f64().unwrap())).collect()
}

#[test]
fn tags_names_bad_files_and_tags_every_kind_of_good_one() {
    let d = tempfile::tempdir().unwrap();
    let data = root().join("tests/data");
    let (junk, short, clipped) = (d.path().join("junk.mp3"), d.path().join("short.wav"), d.path().join("clipped.wav"));
    std::fs::write(&junk, b"not audio at all").unwrap();
    // 1.5 s: shorter than one 3-s patch (repeat-padded, as musicnn was trained).
    let tone = |secs: f32, amp: f32| -> Vec<f32> { (0..(secs * 22050.0) as usize).map(|i| amp * (i as f32 * 0.07).sin()).collect() };
    wav(&short, 22050, 1, &tone(1.5, 0.3));
    // Driven far into clipping, stereo, at 44.1 kHz.
    let loud: Vec<f32> = tone(8.0, 30.0).iter().flat_map(|v| [*v, 0.5 * *v]).collect();
    wav(&clipped, 44100, 2, &loud);
    let good = [
        data.join("clip.mp3"),
        data.join("stereo_48k_320k.mp3"),
        data.join("mpeg25_8k.mp3"),
        data.join("float_96k.wav"),
        data.join("surround_5_1.flac"),
        short.clone(),
        clipped.clone(),
    ];
    let mut files: Vec<&Path> = good.iter().map(|p| p.as_path()).collect();
    files.push(&junk);
    files.push(Path::new("tests/data/silence.mp3"));
    let (o, lines) = tags_json(&files, &["--top", "5"]);
    assert_eq!(o.status.code(), Some(1), "bad files make the exit non-zero: {}", stderr(&o));
    assert!(stderr(&o).contains("junk.mp3") && stderr(&o).contains("silence.mp3"), "each bad file is named: {}", stderr(&o));
    assert!(stderr(&o).contains("2 of 9 files could not be tagged"), "{}", stderr(&o));
    assert_eq!(lines.len(), good.len(), "every good file is tagged: {}", stdout(&o));
    for j in &lines {
        let p = all_probs(j);
        assert_eq!(p.len(), 100, "{j}");
        assert!(p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "never NaN: {j}");
        let top = j["top"].as_array().unwrap();
        assert_eq!(top.len(), 5, "{j}");
        assert!(top.windows(2).all(|w| w[0]["prob"].as_f64() >= w[1]["prob"].as_f64()), "best first: {j}");
        assert!(j["note"].as_str().unwrap().contains("guesses"), "a tag is shown as a guess: {j}");
        assert!(j["patches"].as_u64().unwrap() >= 1, "{j}");
    }
    let short_j = lines.iter().find(|j| j["file"].as_str().unwrap().ends_with("short.wav")).unwrap();
    assert_eq!(short_j["patches"], 1, "{short_j}");
    // More patches: the same order of magnitude, not the same numbers.
    let clip = data.join("clip.mp3");
    let (_, all) = tags_json(&[&clip], &["--patches", "all"]);
    let (_, one) = tags_json(&[&clip], &["--patches", "1"]);
    assert_eq!((all[0]["patches"].as_u64(), one[0]["patches"].as_u64()), (Some(5), Some(1)));
    assert_ne!(all_probs(&all[0]), all_probs(&one[0]));
    let o = run(&["tags", s(&clip), "--patches", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("at least 1"), "{}", stderr(&o));
    // The table names the tagger and calls them guesses; --list names all 100 by kind.
    let o = run(&["tags", s(&clip)]);
    assert!(stdout(&o).contains("guesses") && (stdout(&o).contains("MSD_musicnn") || stdout(&o).contains("MTT_musicnn")), "{}", stdout(&o));
    let o = run(&["tags", "--list"]);
    assert!(stdout(&o).contains("female vocal") && stdout(&o).lines().any(|l| l.starts_with("era") && l.contains("80s")), "{}", stdout(&o));
}

/// The store's tags, by id, from a JSONL export.
fn stored_tags(store: &Path, dir: &Path) -> HashMap<String, (Option<SongTags>, serde_json::Value)> {
    let out = dir.join("export.jsonl");
    assert!(run(&["export", s(store), "--format", "jsonl", "--out", s(&out)]).status.success());
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = (!j["tags"].is_null()).then(|| serde_json::from_value(j["tags"].clone()).unwrap());
            (j["id"].as_str().unwrap().to_string(), (t, j))
        })
        .collect()
}

#[test]
fn the_store_carries_tags_old_stores_get_them_and_queries_filter_by_them() {
    let d = tempfile::tempdir().unwrap();
    let (lib, store) = (d.path().join("lib"), d.path().join("store"));
    let ids = library(&lib, 6);
    let r = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!(r["embedded"].as_u64(), Some(6), "{r}");
    let tags = stored_tags(&store, d.path());
    // The same decode, front end and patches as `tags` prints (4 decimals).
    let (_, printed) = tags_json(&[&lib.join(&ids[0])], &[]);
    let (mine, _) = &tags[&ids[0]];
    let mine = mine.as_ref().expect("tagged by embed");
    let want: Vec<f64> = all_probs(&printed[0]);
    let got: Vec<f64> = mine.msd.iter().chain(&mine.mtt).map(|v| *v as f64).collect();
    let msd_names: Vec<&str> = printed[0]["msd"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(msd_names.len(), 50);
    let by_name: HashMap<&str, f64> = printed[0]["msd"].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_f64().unwrap())).collect();
    for (name, p) in soundalike_recommend::tags::MSD_TAGS.iter().zip(&mine.msd) {
        assert!((by_name[name] - *p as f64).abs() < 1e-4, "{name}: store {p}, tags {}", by_name[name]);
    }
    assert_eq!(want.len(), got.len());

    // An older store: the same journal without the tags. A tag filter counts what it leaves out; the next
    // embed tags, and embeds nothing.
    edit_journal(&store, |song| {
        song.remove("tags");
    });
    let q = json(&run(&["query", s(&store), "--song", &ids[0], "--tag", "electronic", "--json"]));
    assert!(q["results"].as_array().unwrap().is_empty(), "{q}");
    assert!(q["notes"][0].as_str().unwrap().contains("not tagged yet"), "{q}");
    let r = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!((r["embedded"].as_u64(), r["analysed"].as_u64(), r["unchanged"].as_u64()), (Some(0), Some(6), Some(6)), "{r}");
    let again = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!(again["analysed"].as_u64(), Some(0), "once: {again}");
    let tags = stored_tags(&store, d.path());
    assert!(tags.values().all(|(t, _)| t.is_some()), "every song tagged again");

    // --tag: every result has each tag at the least probability asked; AND over repeated tags.
    let best = |name: &str| tags.values().filter_map(|(t, _)| t.as_ref()?.prob(name)).fold(0f32, f32::max);
    let tag = ["electronic", "ambient", "drums", "rock", "guitar"].into_iter().max_by(|a, b| best(a).total_cmp(&best(b))).unwrap();
    let min = (best(tag) * 0.5).to_string();
    let q = json(&run(&["query", s(&store), "--song", &ids[1], "--tag", tag, "--tag-min", &min, "--json", "-k", "10"]));
    let results = q["results"].as_array().unwrap();
    assert!(!results.is_empty(), "some song has {tag:?} at half the best probability: {q}");
    let want = tags.iter().filter(|(id, (t, _))| *id != &ids[1] && t.as_ref().unwrap().prob(tag).unwrap() >= min.parse::<f32>().unwrap()).count();
    assert_eq!(results.len(), want, "every song that has it, and no other: {q}");
    for r in results {
        let (t, _) = &tags[r["id"].as_str().unwrap()];
        assert!(t.as_ref().unwrap().prob(tag).unwrap() >= min.parse::<f32>().unwrap(), "{r}");
        assert!(r["tags"].as_array().unwrap().iter().all(|t| t["prob"].is_number()), "tags come with probabilities: {r}");
    }
    let q = json(&run(&["query", s(&store), "--song", &ids[1], "--tag", tag, "--tag", "opera", "--tag-min", "0.99", "--json"]));
    assert!(q["results"].as_array().unwrap().is_empty(), "{q}");
    let o = run(&["query", s(&store), "--song", &ids[1], "--tag", "pianno"]);
    assert!(!o.status.success() && stderr(&o).contains("\"piano\""), "a misspelt tag suggests: {}", stderr(&o));
    let o = run(&["query", s(&store), "--song", &ids[1], "--tag", "piano", "--tag-min", "1.5"]);
    assert!(!o.status.success() && stderr(&o).contains("between 0 and 1"), "{}", stderr(&o));

    // --genre-source tags: each song's genre is its most probable genre tag.
    let q = json(&run(&["query", s(&store), "--song", &ids[0], "--genre-source", "tags", "--json", "-k", "5"]));
    for r in q["results"].as_array().unwrap() {
        let (t, _) = &tags[r["id"].as_str().unwrap()];
        assert_eq!(r["genre"].as_str(), t.as_ref().unwrap().genre().map(|g| g.0), "{r}");
    }
    // The table shows the tags as guesses.
    let o = run(&["query", s(&store), "--song", &ids[0], "-k", "3"]);
    assert!(stdout(&o).contains("tagger's guesses"), "{}", stdout(&o));
}
