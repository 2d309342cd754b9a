//! `soundalike clusters` end to end: choosing k, the saved clustering and pictures, queries inside a
//! cluster, the export column, `embed` placing new songs, and bad input writing nothing.

mod util;

use util::*;

fn embed(lib: &std::path::Path, store: &std::path::Path) {
    let m = model();
    let o = run(&["embed", s(lib), "--model", s(&m), "--out", s(store)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn clusters_are_chosen_saved_queried_exported_and_kept_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let (lib, store) = (dir.path().join("lib"), dir.path().join("store"));
    let ids = library(&lib, 14);
    embed(&lib, &store);

    // Bad input first: nothing is written.
    for (args, why) in [
        (vec!["--k", "0"], "at least 1"),
        (vec!["--k", "15"], "more than the 14 songs"),
        (vec!["--k-range", "6..3"], "wrong order"),
        (vec!["--k-range", "2..40"], "holds 14 songs"),
        (vec!["--k-range", "two..5"], "not a whole number"),
    ] {
        let mut a = vec!["clusters", s(&store)];
        a.extend(args);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}");
        assert!(stderr(&o).contains(why), "{a:?}: {}", stderr(&o));
        assert!(!store.join("clusters.json").exists());
    }
    let o = run(&["query", s(&store), "--song", &ids[0], "--same-cluster"]);
    assert!(!o.status.success() && stderr(&o).contains("no clusters yet"), "{}", stderr(&o));

    // k chosen over a range, by a stated rule; the same seed gives the same clusters.
    let o = run(&["clusters", s(&store), "--k-range", "2..6", "--seed", "3", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    let k = j["k"].as_u64().unwrap() as usize;
    assert!((2..=6).contains(&k));
    assert_eq!(j["choice"]["curve"].as_array().unwrap().len(), 5);
    assert_eq!(j["choice"]["chosen"].as_u64().unwrap() as usize, k);
    assert!(j["choice"]["reason"].as_str().unwrap().contains(&format!("k = {k}")));
    let sizes: Vec<u64> = j["clusters"].as_array().unwrap().iter().map(|c| c["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 14);
    assert!(j["clusters"][0]["medoids"].as_array().is_some_and(|m| !m.is_empty()));
    for f in ["clusters.json", "elbow.png", "clusters.png"] {
        assert!(store.join(f).exists(), "{f}");
    }
    let first = std::fs::read(store.join("clusters.json")).unwrap();
    let o = run(&["clusters", s(&store), "--k-range", "2..6", "--seed", "3", "--no-plots"]);
    assert!(o.status.success());
    assert_eq!(std::fs::read(store.join("clusters.json")).unwrap(), first, "same seed, same clusters");
    assert!(stdout(&o).contains("<- chosen"));

    // A fixed k; the table and --show.
    let o = run(&["clusters", s(&store), "--k", "3", "--no-plots"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = run(&["clusters", s(&store), "--show", "--json"]);
    let j = json(&shown);
    assert_eq!(j["k"], 3);

    // Every song's cluster, from the export.
    let csv_path = dir.path().join("e.csv");
    assert!(run(&["export", s(&store), "--format", "csv", "--out", s(&csv_path)]).status.success());
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "cluster").expect("a cluster column");
    let cluster_of: std::collections::HashMap<String, String> =
        csv.lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>()).map(|f| (f[0].to_string(), f[col].to_string())).collect();
    assert!(cluster_of.values().all(|c| ["0", "1", "2"].contains(&c.as_str())));

    // --same-cluster returns only songs of the query's cluster; --cluster N only N's.
    let q = &ids[0];
    let o = run(&["query", s(&store), "--song", q, "--same-cluster", "-k", "20", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let res = json(&o)["results"].as_array().unwrap().clone();
    let mates = cluster_of.iter().filter(|(id, c)| **c == cluster_of[q] && *id != q).count();
    assert_eq!(res.len(), mates);
    assert!(res.iter().all(|r| cluster_of[r["id"].as_str().unwrap()] == cluster_of[q]));
    let o = run(&["query", s(&store), "--cluster", "2", "-k", "20", "--json"]);
    let res = json(&o)["results"].as_array().unwrap().clone();
    assert_eq!(res.len(), cluster_of.values().filter(|c| *c == "2").count());
    assert!(res.iter().all(|r| r["cluster"] == 2));
    // Random songs from the query's cluster: from it, never the query, the same for a seed.
    let draw = |seed: &str| json(&run(&["query", s(&store), "--song", q, "--random-from-cluster", "--seed", seed, "-k", "2", "--json"]))["results"].clone();
    let d = draw("5");
    assert_eq!(d, draw("5"));
    assert!(d.as_array().unwrap().iter().all(|r| r["id"] != q.as_str() && cluster_of[r["id"].as_str().unwrap()] == cluster_of[q]));
    let o = run(&["query", s(&store), "--cluster", "3"]);
    assert!(!o.status.success() && stderr(&o).contains("clusters 0 to 2"));

    // embed: a new song gets its nearest cluster and the clustering is marked stale.
    library(&lib, 16);
    let o = run(&["embed", s(&lib), "--model", s(&model()), "--out", s(&store), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json(&o)["clusters"].as_str().unwrap().contains("2 added"), "{}", stdout(&o));
    let j = json(&run(&["clusters", s(&store), "--show", "--json"]));
    assert_eq!(j["songs"], 16);
    assert_eq!(j["stale"]["added"], 2);
    assert_eq!(j["clusters"].as_array().unwrap().iter().map(|c| c["size"].as_u64().unwrap()).sum::<u64>(), 16);
    // Fitting again clears it.
    assert!(run(&["clusters", s(&store), "--k", "3", "--no-plots"]).status.success());
    assert_eq!(json(&run(&["clusters", s(&store), "--show", "--json"]))["stale"]["added"], 0);
}

#[test]
fn a_clustering_from_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (lib, store) = (dir.path().join("lib"), dir.path().join("store"));
    let ids = library(&lib, 6);
    embed(&lib, &store);
    assert!(run(&["clusters", s(&store), "--k", "2", "--no-plots"]).status.success());
    let p = store.join("clusters.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    c["model_fingerprint"] = "another-model".into();
    std::fs::write(&p, serde_json::to_vec(&c).unwrap()).unwrap();
    let o = run(&["query", s(&store), "--song", &ids[0], "--same-cluster"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("another-model") && stderr(&o).contains("soundalike clusters"), "{}", stderr(&o));
    let o = run(&["clusters", s(&store), "--show"]);
    assert_eq!(o.status.code(), Some(2));
    // An empty store: a clear error, nothing written.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(&["clusters", s(&empty)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!empty.join("clusters.json").exists());
}
