//! `soundalike taste` end to end: marking (flags, CSV, playlists), bad input changing nothing, training
//! with cross-validated metrics, discover with its filters and caps, playlist cleaning, `query --taste`.

mod util;

use util::*;

fn store_of(dir: &std::path::Path) -> std::path::PathBuf {
    let store = dir.join("store");
    let o = run(&["embed", "datasets/tiny", "--out", s(&store), "--labels", "datasets/tiny/tracks.csv", "--label-column", "source", "--group-column", "source"]);
    assert!(o.status.success(), "{}", stderr(&o));
    store
}

#[test]
fn marks_train_discover_filter_and_rerank() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path());
    let prof = dir.path().join("me");
    let st = s(&store);

    // Bad input changes nothing: unknown song, the same song liked and disliked, nothing to mark.
    let o = run(&["taste", "mark", s(&prof), "--store", st, "--like", "no such song at all"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such song at all"), "{}", stderr(&o));
    let o = run(&["taste", "mark", s(&prof), "--store", st, "--like", "introzik", "--dislike", "frozen-bubble-data/introzik.mp3"]);
    assert!(stderr(&o).contains("both liked and disliked"), "{}", stderr(&o));
    assert!(!prof.join("marks.json").exists());
    let o = run(&["taste", "train", s(&prof), "--store", st]);
    assert!(!o.status.success() && stderr(&o).contains("no marks yet"));

    // The listener likes the wesnoth soundtrack and dislikes frozen-bubble and hedgewars: by flags and a CSV.
    let csv = dir.path().join("marks.csv");
    std::fs::write(&csv, "song,mark\nhedgewars-data/Beach.mp3,dislike\nhedgewars-data/Desert.mp3,dislike\nfrozen-mainzik-1p,dislike\n").unwrap();
    let o = run(&["taste", "mark", s(&prof), "--store", st, "--like", "Battle Music", "--like", "Casualties of War", "--dislike", "introzik", "--from", s(&csv)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 likes, 4 dislikes"), "{}", stdout(&o));
    // A playlist of likes (M3U, relative paths).
    let m3u = dir.path().join("likes.m3u");
    let tiny = root().join("datasets/tiny");
    std::fs::write(&m3u, format!("#EXTM3U\n#EXTINF:15,Battle Epic\n{}\n", tiny.join("wesnoth-1.16-music/battle-epic.mp3").display())).unwrap();
    let o = run(&["taste", "mark", s(&prof), "--store", st, "--from", s(&m3u), "--as", "like"]);
    assert!(stdout(&o).contains("3 likes, 4 dislikes"), "{} {}", stdout(&o), stderr(&o));
    // Changing a mark replaces it; unmark forgets it.
    let o = run(&["taste", "mark", s(&prof), "--store", st, "--like", "Desert"]);
    assert!(stdout(&o).contains("Dislike -> Like"), "{}", stdout(&o));
    let o = run(&["taste", "mark", s(&prof), "--store", st, "--unmark", "Desert"]);
    assert!(stdout(&o).contains("3 likes, 3 dislikes"), "{}", stdout(&o));

    // Training: every candidate cross-validated, the kept one named, metrics and a picture saved.
    let o = run(&["taste", "train", s(&prof), "--store", st, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    let cv = j["cv"].as_array().unwrap();
    assert_eq!(cv.len(), 4);
    assert!(cv.iter().any(|c| c["classifier"] == j["model"]));
    for c in cv {
        let cm = c["confusion"].as_array().unwrap();
        assert_eq!(cm.iter().flat_map(|r| r.as_array().unwrap()).map(|x| x.as_u64().unwrap()).sum::<u64>(), 6);
        assert!((0.0..=1.0).contains(&c["roc_auc"].as_f64().unwrap()));
    }
    assert!(prof.join("taste.json").exists() && prof.join("taste.png").exists());

    // Discover: never a marked song; the artist/album cap; another genre than the likes'.
    let o = run(&["taste", "discover", s(&prof), "--store", st, "-k", "30", "--max-per-artist", "0", "--json", "--genre-source", "tag"]);
    let res = json(&o)["results"].as_array().unwrap().clone();
    assert_eq!(res.len(), 30 - 6);
    let marked = ["wesnoth-1.16-music/battle.mp3", "wesnoth-1.16-music/casualties_of_war.mp3", "wesnoth-1.16-music/battle-epic.mp3", "frozen-bubble-data/introzik.mp3"];
    assert!(res.iter().all(|r| !marked.contains(&r["id"].as_str().unwrap())));
    let probs: Vec<f64> = res.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "ranked by probability");
    let o = run(&["taste", "discover", s(&prof), "--store", st, "-k", "30", "--max-per-artist", "1", "--json"]);
    let capped = json(&o)["results"].as_array().unwrap().clone();
    let groups: std::collections::HashSet<&str> = capped.iter().map(|r| r["group"].as_str().unwrap()).collect();
    assert_eq!(groups.len(), capped.len(), "one song per album/group");
    let o = run(&["taste", "discover", s(&prof), "--store", st, "--other-genres", "--json", "--genre-source", "tag", "--max-per-artist", "0"]);
    let other = json(&o)["results"].as_array().unwrap().clone();
    let jl = dir.path().join("all.jsonl");
    assert!(run(&["export", st, "--format", "jsonl", "--out", s(&jl)]).status.success());
    let genre_of: std::collections::HashMap<String, String> = std::fs::read_to_string(&jl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["id"].as_str().unwrap().to_string(), v["genre"].as_str().unwrap_or("").to_string()))
        .collect();
    let liked_genres: Vec<&String> = marked[..3].iter().map(|id| &genre_of[*id]).collect();
    assert!(!other.is_empty() && other.iter().all(|r| !liked_genres.contains(&&r["genre"].as_str().unwrap().to_string())));
    assert!(other.len() < 24, "other genres leave some songs out");
    let playlist = dir.path().join("discover.m3u");
    assert!(run(&["taste", "discover", s(&prof), "--store", st, "-k", "3", "--m3u", s(&playlist)]).status.success());
    let m3u_text = std::fs::read_to_string(&playlist).unwrap();
    assert!(m3u_text.starts_with("#EXTM3U") && m3u_text.matches("#EXTINF").count() == 3);

    // Filter: a playlist with a liked song, a disliked-looking one, a missing file and a song outside the store.
    let pl = dir.path().join("party.m3u");
    let outside = dir.path().join("outside.mp3");
    std::fs::copy(tiny.join("asc-music/frontiers.mp3"), &outside).unwrap();
    std::fs::write(
        &pl,
        format!(
            "#EXTM3U\n{}\n{}\n{}\n{}\n",
            tiny.join("wesnoth-1.16-music/battle.mp3").display(),
            tiny.join("frozen-bubble-data/introzik.mp3").display(),
            dir.path().join("gone.mp3").display(),
            outside.display()
        ),
    )
    .unwrap();
    let cleaned = dir.path().join("clean.m3u");
    let o = run(&["taste", "filter", s(&prof), s(&pl), "--store", st, "--out", s(&cleaned), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rep = json(&o);
    let entries = rep["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["kept"], true);
    assert!(entries[2]["why"].as_str().unwrap().contains("missing") && entries[2]["kept"] == true);
    assert!(entries[3]["why"].as_str().unwrap().contains("not in the store"));
    let clean = std::fs::read_to_string(&cleaned).unwrap();
    assert!(clean.contains("battle.mp3") && clean.contains("gone.mp3"));
    // Every song it dropped is below the threshold, every judged song it kept above.
    for e in entries.iter().filter(|e| e["p_like"].is_number()) {
        assert_eq!(e["kept"] == true, e["p_like"].as_f64().unwrap() >= 0.5);
        assert_eq!(clean.contains(e["path"].as_str().unwrap()), e["kept"] == true);
    }
    let empty = dir.path().join("empty.m3u");
    std::fs::write(&empty, "#EXTM3U\n").unwrap();
    let o = run(&["taste", "filter", s(&prof), s(&empty), "--store", st, "--out", s(&dir.path().join("x.m3u"))]);
    assert!(!o.status.success() && stderr(&o).contains("empty"));

    // query --taste: no disliked song comes back, and the ranking moves towards the likes.
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let plain = json(&run(&["query", st, "--song", "frontiers", "-k", "8", "--json"]))["results"].clone();
    let tasted = json(&run(&["query", st, "--song", "frontiers", "-k", "8", "--json", "--taste", s(&prof), "--taste-weight", "0.8"]))["results"].clone();
    assert_ne!(ids(&plain), ids(&tasted));
    let disliked = ["frozen-bubble-data/introzik.mp3", "hedgewars-data/Beach.mp3", "frozen-bubble-data/frozen-mainzik-1p.mp3"];
    assert!(tasted.as_array().unwrap().iter().all(|r| !disliked.contains(&r["id"].as_str().unwrap())));
    let o = run(&["query", st, "--song", "frontiers", "--min-like", "0.5"]);
    assert!(!o.status.success() && stderr(&o).contains("--taste"));
}

#[test]
fn likes_only_use_the_library_as_background_and_other_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path());
    let prof = dir.path().join("me");
    let o = run(&["taste", "mark", s(&prof), "--store", s(&store), "--like", "Battle Music", "--like", "Battle Epic", "--like", "Casualties", "--like", "frontiers", "--like", "time_to_strike"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["taste", "train", s(&prof), "--store", s(&store), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["background"], 20);
    assert!(j["notes"][0].as_str().unwrap().contains("no dislikes"));
    // A profile of another model is refused with a message.
    let marks = prof.join("marks.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&marks).unwrap()).unwrap();
    v["model_fingerprint"] = "another-model".into();
    std::fs::write(&marks, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = run(&["taste", "discover", s(&prof), "--store", s(&store)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("another-model"), "{}", stderr(&o));
    // No likes at all.
    let other = dir.path().join("grumpy");
    assert!(run(&["taste", "mark", s(&other), "--store", s(&store), "--dislike", "introzik"]).status.success());
    let o = run(&["taste", "train", s(&other), "--store", s(&store)]);
    assert!(!o.status.success() && stderr(&o).contains("no likes"));
}
