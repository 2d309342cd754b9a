//! Tempo, key and loudness end to end: `analyze`, the store (and an older store's upgrade without
//! re-embedding), `query`'s tempo and key filters, `--mixes-with`, and what a filter leaves out.

mod util;

use util::*;

/// A drum-machine-like loop: a decaying noise burst on every beat at `bpm`, over an A-minor chord
/// (A, C, E sines) held throughout, for `seconds`.
fn beat_in_a_minor(bpm: f32, seconds: f32) -> Vec<f32> {
    let rate = 22050.0;
    let period = 60.0 / bpm;
    let mut x = 1u32;
    (0..(seconds * rate) as usize)
        .map(|i| {
            let t = i as f32 / rate;
            let since = t % period;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let noise = (x as f32 / u32::MAX as f32) * 2.0 - 1.0;
            let hit = 0.6 * noise * (-since * 40.0).exp();
            let chord: f32 = [220.0f32, 261.63, 329.63].iter().map(|f| (2.0 * std::f32::consts::PI * f * t).sin()).sum();
            hit + 0.1 * chord
        })
        .collect()
}

#[test]
fn analyze_names_tempo_key_and_loudness_and_skips_bad_files() {
    let d = tempfile::tempdir().unwrap();
    let (beat, silence, junk) = (d.path().join("beat.wav"), d.path().join("silence.wav"), d.path().join("junk.mp3"));
    let short = d.path().join("short.wav");
    wav(&beat, 22050, 1, &beat_in_a_minor(124.0, 20.0));
    wav(&short, 22050, 1, &beat_in_a_minor(124.0, 2.0));
    wav(&silence, 22050, 1, &vec![0.0; 22050 * 5]);
    std::fs::write(&junk, b"not audio at all").unwrap();
    let o = run(&["analyze", s(&beat), s(&silence), s(&junk), s(&short), "--json"]);
    assert_eq!(o.status.code(), Some(1), "a bad file makes the exit non-zero: {}", stderr(&o));
    assert!(stderr(&o).contains("junk.mp3"), "the bad file is named: {}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let b = lines.iter().find(|j| j["file"].as_str().unwrap().ends_with("beat.wav")).expect("the good file is analysed");
    let bpm = b["bpm"].as_f64().expect("a steady beat");
    assert!((bpm / 124.0 - 1.0).abs() < 0.02, "{b}");
    assert_eq!((b["key"].as_str(), b["open_key"].as_str(), b["key_name"].as_str()), (Some("8A"), Some("1m"), Some("A minor")), "{b}");
    assert!(b["lufs"].as_f64().is_some_and(|l| l < -5.0 && l > -40.0), "{b}");
    let (peak, true_peak) = (b["peak_db"].as_f64().unwrap(), b["true_peak_db"].as_f64().expect("a true peak"));
    assert!(true_peak >= peak && true_peak < peak + 3.0, "the true peak is the sample peak or a little above: {b}");
    // Two seconds are too few beats and too little harmony to be sure of: no number is invented.
    let q = lines.iter().find(|j| j["file"].as_str().unwrap().ends_with("short.wav")).expect("a short file is analysed");
    assert!(q["bpm"].is_null() && q["tempo"] == "no steady beat" && q["key"].is_null() && q["key_text"] == "key unclear", "{q}");
    assert!(q["lufs"].as_f64().is_some(), "two seconds are enough for loudness: {q}");
    // Silence is no error here: it says what it cannot tell, with no number invented.
    let q = lines.iter().find(|j| j["file"].as_str().unwrap().ends_with("silence.wav"));
    if let Some(q) = q {
        assert!(q["bpm"].is_null() && q["key"].is_null() && q["lufs"].is_null(), "{q}");
    } else {
        assert!(stderr(&o).contains("silence.wav"), "silence is reported: {}", stderr(&o));
    }
}

#[test]
fn the_store_carries_facts_old_stores_get_them_and_queries_filter_by_them() {
    let d = tempfile::tempdir().unwrap();
    let (lib, store) = (d.path().join("lib"), d.path().join("store"));
    let ids = library(&lib, 6);
    wav(&lib.join("beat124.wav"), 22050, 1, &beat_in_a_minor(124.0, 20.0));
    wav(&lib.join("beat62.wav"), 22050, 1, &beat_in_a_minor(62.0, 20.0));
    let r = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!(r["embedded"].as_u64(), Some(8), "{r}");
    // An older store: the same journal without the facts. The next embed analyses, and embeds nothing.
    edit_journal(&store, |song| {
        song.remove("facts");
    });
    let o = run(&["query", s(&store), "--song", "beat124", "--bpm", "120-128"]);
    assert!(!o.status.success() || stdout(&o).contains("without a tempo"), "unanalysed songs are counted: {}", stdout(&o));
    let r = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!((r["embedded"].as_u64(), r["analysed"].as_u64(), r["unchanged"].as_u64()), (Some(0), Some(8), Some(8)), "{r}");
    let again = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!(again["analysed"].as_u64(), Some(0), "once: {again}");
    // Songs analysed by version 1 (no true peak) are analysed again, and embedded not again.
    edit_journal(&store, |song| {
        let facts = song.get_mut("facts").unwrap().as_object_mut().unwrap();
        facts.insert("version".into(), 1.into());
        facts.get_mut("loudness").unwrap().as_object_mut().unwrap().remove("true_peak_db");
    });
    let r = json(&run(&["embed", s(&lib), "--out", s(&store), "--json"]));
    assert_eq!((r["embedded"].as_u64(), r["analysed"].as_u64()), (Some(0), Some(8)), "{r}");
    let jl = d.path().join("x.jsonl");
    assert!(run(&["export", s(&store), "--format", "jsonl", "--out", s(&jl)]).status.success());
    for l in std::fs::read_to_string(&jl).unwrap().lines() {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(j["facts"]["loudness"]["true_peak_db"].is_number(), "{l}");
    }
    // A tempo range: the 124 BPM loop is in 120-128 only with --bpm-fold for the 62 BPM one.
    let q = json(&run(&["query", s(&store), "--song", &ids[0], "--bpm", "120-128", "--json", "-k", "20"]));
    let got: Vec<&str> = q["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(got.contains(&"beat124.wav") && !got.contains(&"beat62.wav"), "{q}");
    for r in q["results"].as_array().unwrap() {
        let b = r["bpm"].as_f64().unwrap();
        assert!((119.9..=128.1).contains(&b), "{r}");
    }
    let q = json(&run(&["query", s(&store), "--song", &ids[0], "--bpm", "120-128", "--bpm-fold", "--json", "-k", "20"]));
    let got: Vec<&str> = q["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(got.contains(&"beat124.wav") && got.contains(&"beat62.wav"), "{q}");
    // Mixes with the 124 BPM loop in A minor: the 62 BPM one (half tempo, same key) and nothing out of key.
    let q = json(&run(&["query", s(&store), "--mixes-with", "beat124", "--json", "-k", "20"]));
    assert!(q["query"][0].as_str().unwrap().contains("8A"), "{q}");
    for r in q["results"].as_array().unwrap() {
        let k: soundalike_recommend::CamelotKey = r["key"].as_str().unwrap().parse().unwrap();
        assert!(k.mixes_with("8A".parse().unwrap(), soundalike_recommend::KeyRule::Strict), "{r}");
    }
    assert!(q["results"].as_array().unwrap().iter().any(|r| r["id"] == "beat62.wav"), "{q}");
    // A key: only songs in it; a bad key or range is one clear line.
    let q = json(&run(&["query", s(&store), "--song", &ids[0], "--key", "A minor", "--json", "-k", "20"]));
    assert!(q["results"].as_array().unwrap().iter().all(|r| r["key"] == "8A"), "{q}");
    let o = run(&["query", s(&store), "--song", &ids[0], "--key", "13C"]);
    assert!(!o.status.success() && stderr(&o).contains("Camelot"), "{}", stderr(&o));
    let o = run(&["query", s(&store), "--song", &ids[0], "--bpm", "130-120"]);
    assert!(!o.status.success() && stderr(&o).contains("lower tempo comes first"), "{}", stderr(&o));
    // Tables show the columns; exports carry them.
    let o = run(&["query", s(&store), "--song", "beat124", "-k", "3"]);
    assert!(stdout(&o).contains("bpm") && stdout(&o).contains("124"), "{}", stdout(&o));
    // ... and each row's loudness and true peak, as the JSON gives them.
    let q = json(&run(&["query", s(&store), "--song", "beat124", "-k", "3", "--json"]));
    let table = stdout(&o);
    let mut lines = table.lines().skip_while(|l| !l.trim_start().starts_with("rank"));
    assert!(lines.next().is_some_and(|h| h.contains("LUFS") && h.contains("dBTP")), "{table}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), q["results"].as_array().unwrap().len(), "{table}");
    for (r, line) in q["results"].as_array().unwrap().iter().zip(rows) {
        let (l, tp) = (r["lufs"].as_f64().unwrap(), r["true_peak_db"].as_f64().unwrap());
        assert!(line.contains(&format!(" {l:.1} ")) && line.contains(&format!(" {tp:.1} ")), "{line} / {r}");
    }
}
