//! `push` and `query --db` against a real PostgreSQL with pgvector 0.8+ (started by the test on a temp data
//! directory and a free loopback port, password authentication on). A plain `cargo test` leaves it out and
//! counts it as ignored; with `--include-ignored` but without PostgreSQL and pgvector it says what is missing
//! and returns, unless SOUNDALIKE_PG=require (set by .ci/run, which installs them with
//! scripts/deploy/install_pgvector.sh), when it fails.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use soundalike_recommend::{normalise, random_unit_vectors, SongRecord, StoreHeader, StoreWriter, STORE_FORMAT_VERSION};
use util::*;

struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

const PASSWORD: &str = "s3cret-pw";

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.cmd("pg_ctl").args(["-D", s(&data), "-m", "immediate", "stop"]).output();
    }
}

/// The newest PostgreSQL server installed under /usr/lib/postgresql whose pgvector is 0.8 or newer.
fn find_pg() -> Option<PathBuf> {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| Some(e.ok()?.path().join("bin"))).filter(|b| b.join("initdb").exists()).collect();
    bins.sort();
    bins.into_iter().rev().find(|b| {
        let share = Command::new(b.join("pg_config")).arg("--sharedir").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let control = share.and_then(|d| std::fs::read_to_string(Path::new(&d).join("extension/vector.control")).ok()).unwrap_or_default();
        let v = control.lines().find_map(|l| l.strip_prefix("default_version")).map(|v| v.trim_matches(|c: char| c == ' ' || c == '=' || c == '\'').to_string());
        v.and_then(|v| {
            let mut p = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
            Some((p.next()?, p.next()?))
        })
        .is_some_and(|mm| mm >= (0, 8))
    })
}

impl Pg {
    fn cmd(&self, prog: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(prog));
            c
        } else {
            Command::new(self.bin.join(prog))
        }
    }

    fn start() -> Option<Pg> {
        let Some(bin) = find_pg() else {
            let msg = "PostgreSQL test skipped: needs PostgreSQL and pgvector >= 0.8 (bash scripts/deploy/install_pgvector.sh)";
            assert!(std::env::var("SOUNDALIKE_PG").as_deref() != Ok("require"), "{msg}");
            eprintln!("{msg}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // initdb refuses to run as root: then the server runs as the postgres user.
        let as_postgres = String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0";
        if as_postgres {
            let uid: u32 = String::from_utf8_lossy(&Command::new("id").args(["-u", "postgres"]).output().unwrap().stdout).trim().parse().expect("a postgres user");
            std::os::unix::fs::chown(dir.path(), Some(uid), None).unwrap();
        }
        let pw = dir.path().join("pw");
        std::fs::write(&pw, PASSWORD).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Pg { dir, bin, port, as_postgres };
        let data = pg.dir.path().join("data");
        let o = pg
            .cmd("initdb")
            .args(["-D", s(&data), "-U", "soundalike", "--pwfile", s(&pw), "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(o.status.success(), "initdb: {}", stderr(&o));
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", pg.dir.path().display());
        let o = pg.cmd("pg_ctl").args(["-D", s(&data), "-l", s(&pg.dir.path().join("log")), "-o", &opts, "-w", "start"]).output().unwrap();
        assert!(o.status.success(), "pg_ctl start: {} {}", stderr(&o), std::fs::read_to_string(pg.dir.path().join("log")).unwrap_or_default());
        Some(pg)
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://soundalike:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let o = Command::new(self.bin.join("psql")).args([&self.url(db), "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
        assert!(o.status.success(), "psql {sql}: {}", stderr(&o));
        stdout(&o)
    }
}

/// A synthetic store of `n` random songs, `rare` of them in genre "rare", the rest "common".
fn synthetic_store(dir: &Path, n: usize, rare: usize, fingerprint: &str) {
    let header = StoreHeader {
        format_version: STORE_FORMAT_VERSION,
        model_fingerprint: fingerprint.into(),
        model_name: "synthetic".into(),
        frontend: serde_json::json!({}),
        labels: vec![],
        dim: 128,
        library_root: "/music".into(),
        metadata_version: soundalike_recommend::METADATA_VERSION,
    };
    let v = random_unit_vectors(n, 128, 99);
    let mut w = StoreWriter::open_or_create(dir, header).unwrap();
    for i in 0..n {
        let mut vector = v[i * 128..(i + 1) * 128].to_vec();
        normalise(&mut vector);
        w.put(SongRecord {
            id: format!("s{i:05}.mp3"),
            title: format!("Song {i}"),
            artist: Some(format!("Artist {}", i % 50)),
            // One big compilation, and an album of its own for each rare song: a per-album cap of 1 keeps
            // few of any top 4k, so the search must widen to fill k.
            album: Some(if i % (n / rare) == 0 { format!("Album {i}") } else { "Compilation".into() }),
            genre: Some(if i % (n / rare) == 0 { "rare" } else { "common" }.into()),
            group: None,
            duration_s: 30.0,
            // Some songs' names were read from their paths (the store says which), others' from their tags.
            from_path: match i % 3 {
                0 => vec!["artist".into(), "title".into()],
                1 => vec!["album".into()],
                _ => Vec::new(),
            },
            fingerprint: format!("f{i}"),
            size: 1,
            mtime: 1,
            probs: vec![],
            vector,
            facts: None,
            tags: None,
        })
        .unwrap();
    }
    w.compact().unwrap();
}

fn ids(v: &serde_json::Value) -> Vec<(String, f64)> {
    v["results"].as_array().unwrap().iter().map(|r| (r["id"].as_str().unwrap().to_string(), r["score"].as_f64().unwrap())).collect()
}

#[test]
#[ignore = "needs PostgreSQL 15+ with pgvector (sudo bash scripts/deploy/install_pgvector.sh; run with --include-ignored)"]
fn push_and_query_from_postgres_match_the_store() {
    let Some(pg) = Pg::start() else { return };
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let o = run(&["embed", "datasets/tiny", "--out", s(&store), "--labels", "datasets/tiny/tracks.csv", "--label-column", "source", "--group-column", "source"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let url = pg.url("postgres");

    // Push: everything new, then nothing to do; the password is never printed.
    let o = run(&["push", s(&store), "--db", &url, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains(PASSWORD));
    let r = json(&o);
    assert_eq!((r["report"]["added"].as_u64(), r["report"]["index_created"].as_bool()), (Some(30), Some(true)));
    let o = run(&["push", s(&store), "--db", &url, "--json"]);
    assert_eq!(json(&o)["report"]["unchanged"], 30);
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM soundalike_songs").trim(), "30");
    assert_eq!(pg.psql("postgres", "SELECT value FROM soundalike_meta WHERE key = 'precision'").trim(), "half");

    // Every song's top 5 from the database equals the in-process exact search's (up to near-ties that the
    // table's 16-bit vectors may order either way).
    let export = d.path().join("all.jsonl");
    assert!(run(&["export", s(&store), "--format", "jsonl", "--out", s(&export)]).status.success());
    let all: Vec<String> = std::fs::read_to_string(&export).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(all.len(), 30);
    for id in &all {
        let exact = ids(&json(&run(&["query", s(&store), "--song", id, "-k", "6", "--exact", "--json"])));
        let o = run(&["query", "--db", &url, "--song", id, "-k", "5", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let db = ids(&json(&o));
        assert_eq!(db.len(), 5);
        for (i, (got, score)) in db.iter().enumerate() {
            let (want, want_score) = &exact[i];
            let tie = exact.iter().any(|(x, s)| x == got && (s - want_score).abs() < 3e-3);
            assert!(got == want || tie, "{id}: rank {} is {got} ({score}), exact search has {want} ({want_score})", i + 1);
            assert!((score - exact.iter().find(|(x, _)| x == got).map_or(-9.0, |e| e.1)).abs() < 3e-3);
        }
    }
    // A selective filter returns every song that passes, as the store does.
    let genre = "jazz_blues";
    let o = run(&["query", "--db", &url, "--song", &all[0], "-k", "10", "--genre", genre, "--json"]);
    let db = ids(&json(&o));
    let local = ids(&json(&run(&["query", s(&store), "--song", &all[0], "-k", "10", "--genre", genre, "--exact", "--json"])));
    assert!(!local.is_empty());
    assert_eq!(db.iter().map(|x| &x.0).collect::<Vec<_>>(), local.iter().map(|x| &x.0).collect::<Vec<_>>());
    // Tempo and key filters and --mixes-with give the store's songs, with the same columns and notes.
    for flags in [
        &["--bpm", "100-140", "--bpm-fold"][..],
        &["--key-compatible", "--key-rule", "wide"][..],
        &["--bpm-near", "8"][..],
        &["--tag", "electronic"][..],
        &["--tag", "ambient", "--tag", "instrumental", "--tag-min", "0.1"][..],
        &["--genre-source", "tags", "--same-genre"][..],
    ] {
        let song = &all[1];
        let mut db_args = vec!["query", "--db", &url, "--song", song, "-k", "10", "--json"];
        db_args.extend_from_slice(flags);
        let mut store_args = vec!["query", s(&store), "--song", song, "-k", "10", "--exact", "--json"];
        store_args.extend_from_slice(flags);
        let (dbj, lj) = (json(&run(&db_args)), json(&run(&store_args)));
        let pick = |v: &serde_json::Value| {
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let loud = (r["lufs"].as_f64().map(|x| (x * 10.0).round() as i64), r["true_peak_db"].as_f64().map(|x| (x * 10.0).round() as i64));
                    (r["id"].as_str().unwrap().to_string(), r["bpm"].as_f64(), (r["key"].as_str().map(String::from), r["tags"].to_string(), r["genre"].to_string(), loud))
                })
                .collect::<Vec<_>>()
        };
        let (mut a, mut b) = (pick(&dbj), pick(&lj));
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a.len(), b.len(), "{flags:?}: {dbj} / {lj}");
        assert!(!a.is_empty() || !["--bpm", "--tag", "--genre-source"].contains(&flags[0]), "{flags:?} keeps songs: {dbj}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.0, &x.2), (&y.0, &y.2), "{flags:?}");
            assert!((x.1.unwrap_or(0.0) - y.1.unwrap_or(0.0)).abs() < 0.01, "{flags:?}: {x:?} {y:?}");
        }
        assert_eq!(dbj["notes"], lj["notes"], "{flags:?}");
    }
    // A table pushed before songs had tempo and key (no such columns), or before the true peak: readers
    // refuse it and say to push again; the next push adds the columns and fills them (every song re-pushed).
    let push_again_after = |drop: &str| {
        pg.psql("postgres", &format!("ALTER TABLE soundalike_songs {drop}"));
        let o = run(&["query", "--db", &url, "--song", &all[0]]);
        assert!(!o.status.success() && stderr(&o).contains("push the store again"), "{drop}: {}", stderr(&o));
        let r = json(&run(&["push", s(&store), "--db", &url, "--json"]));
        assert_eq!((r["report"]["updated"].as_u64(), r["report"]["unchanged"].as_u64()), (Some(30), Some(0)), "{drop}: {r}");
    };
    push_again_after("DROP COLUMN bpm, DROP COLUMN camelot, DROP COLUMN lufs, DROP COLUMN facts_version, DROP COLUMN tags, DROP COLUMN tags_version");
    assert_ne!(pg.psql("postgres", "SELECT count(*) FROM soundalike_songs WHERE bpm IS NOT NULL OR camelot IS NOT NULL").trim(), "0");
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM soundalike_songs WHERE tags IS NOT NULL").trim(), "30");
    assert!(run(&["query", "--db", &url, "--song", &all[0], "--key-compatible"]).status.success());
    push_again_after("DROP COLUMN true_peak_db");
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM soundalike_songs WHERE true_peak_db > lufs").trim(), "30");
    let r = json(&run(&["query", "--db", &url, "--song", &all[0], "--json"]));
    assert!(r["results"].as_array().unwrap().iter().all(|x| x["true_peak_db"].is_number()), "{r}");

    // A push killed before it commits leaves the previous state: a store with 5 songs fewer, aborted.
    let smaller = d.path().join("smaller");
    copy_dir(&store, &smaller);
    {
        let mut w = StoreWriter::open_or_create(&smaller, soundalike_recommend::Store::open(&store).unwrap().header).unwrap();
        for id in &all[..5] {
            w.remove(id).unwrap();
        }
        w.compact().unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_soundalike")).args(["push", s(&smaller), "--db", &url]).env("SOUNDALIKE_TEST_PUSH_ABORT", "1").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM soundalike_songs").trim(), "30");
    let o = run(&["push", s(&smaller), "--db", &url, "--json"]);
    assert_eq!(json(&o)["report"]["removed"], 5);
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM soundalike_songs").trim(), "25");
    assert!(run(&["push", s(&store), "--db", &url]).status.success());
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM soundalike_songs").trim(), "30");

    // Wrong password, unreachable server: named, password not shown.
    let bad = url.replace(PASSWORD, "not-the-pw");
    let o = run(&["query", "--db", &bad, "--song", &all[0]]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("password authentication failed") && !stderr(&o).contains("not-the-pw"), "{}", stderr(&o));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = run(&["query", "--db", &format!("postgres://soundalike:{PASSWORD}@127.0.0.1:{closed}/postgres"), "--song", &all[0]]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&format!("127.0.0.1:{closed}")) && !stderr(&o).contains(PASSWORD), "{}", stderr(&o));
    // The URL from the environment.
    let o = Command::new(env!("CARGO_BIN_EXE_soundalike")).args(["query", "--song", &all[0], "-k", "3", "--json"]).env("SOUNDALIKE_DB", &url).current_dir(root()).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ids(&json(&o)).len(), 3);

    // serve --db: two stateless processes on one database answer the page's API as `query --db` does.
    let servers: Vec<(Server, String)> = (0..2).map(|_| serve_db(&url)).collect();
    let q = "wesnoth-1.16-music/battle.mp3";
    let want: Vec<String> = ids(&json(&run(&["query", "--db", &url, "--song", q, "-k", "5", "--json"]))).into_iter().map(|x| x.0).collect();
    for (_, addr) in &servers {
        let h = body_json(&http(addr, "GET", "/api/health", b"").1);
        assert_eq!(h["songs"], 30);
        assert!(!h.to_string().contains(PASSWORD));
        let st = body_json(&http(addr, "GET", "/api/stats", b"").1);
        assert_eq!((st["search"].as_str(), st["upload"].as_bool(), st["previews"].as_bool()), (Some("pgvector"), Some(true), Some(true)));
        let v = body_json(&http(addr, "GET", &format!("/api/similar?id={q}&k=5"), b"").1);
        let got: Vec<String> = v["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(got, want);
        let found = body_json(&http(addr, "GET", "/api/search?q=battle", b"").1);
        assert!(found["results"].as_array().unwrap().iter().any(|r| r["id"] == q));
        let (status, _) = http(addr, "GET", &format!("/api/audio?id={q}"), b"");
        assert!(status.contains("200"), "{status}");
        assert!(http(addr, "GET", "/api/audio?id=../../etc/passwd", b"").0.contains("404"));
        assert!(http(addr, "GET", "/api/clusters", b"").0.contains("404"));
        assert!(body_json(&http(addr, "GET", "/api/map", b"").1)["points"].as_array().unwrap().len() == 30);
    }
    // Issue 31: `/api/stats` and the songs' fields over the database say what the store's say: hours,
    // groups, each song's duration and predicted genre.
    let songs: Vec<serde_json::Value> = std::fs::read_to_string(&export).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let hours: f64 = songs.iter().map(|x| x["duration_s"].as_f64().unwrap()).sum::<f64>() / 3600.0;
    let mut groups: std::collections::BTreeMap<String, u64> = Default::default();
    songs.iter().for_each(|x| *groups.entry(x["group"].as_str().unwrap().to_string()).or_default() += 1);
    let st = body_json(&http(&servers[0].1, "GET", "/api/stats", b"").1);
    assert!((st["hours"].as_f64().unwrap() - hours).abs() < 1e-6, "{st}");
    let served: std::collections::BTreeMap<String, u64> = st["groups"].as_array().unwrap().iter().map(|g| (g["name"].as_str().unwrap().to_string(), g["songs"].as_u64().unwrap())).collect();
    assert_eq!(served, groups);
    let song = body_json(&http(&servers[0].1, "GET", &format!("/api/song?id={q}"), b"").1);
    let want = songs.iter().find(|x| x["id"] == q).unwrap();
    assert_eq!((&song["duration_s"], &song["predicted"]), (&want["duration_s"], &want["predicted"]), "{song}");
    // Issue 33: the library's tags with counts and each song's top tags, as the store has them.
    let cat = soundalike_recommend::Catalog::open(&store, soundalike_recommend::Method::Exact, &Default::default()).unwrap();
    let want_tags: Vec<(String, u64)> = cat.stats().tags.into_iter().map(|(t, n)| (t, n as u64)).collect();
    let served_tags: Vec<(String, u64)> = st["tags"].as_array().unwrap().iter().map(|g| (g["name"].as_str().unwrap().to_string(), g["songs"].as_u64().unwrap())).collect();
    assert!(!want_tags.is_empty());
    assert_eq!(served_tags, want_tags);
    assert_eq!(song["tags"], want["top_tags"], "{song}");
    // Text search finds songs by tag, the same songs as the store's search.
    let tag = &want_tags[0].0;
    let found = body_json(&http(&servers[0].1, "GET", &format!("/api/search?q={tag}&limit=100"), b"").1);
    let mut got: Vec<&str> = found["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    let mut local: Vec<String> = cat.search_text(tag, 100).into_iter().map(|r| cat.songs()[r].id.clone()).collect();
    got.sort();
    local.sort();
    assert_eq!(got.len(), want_tags[0].1 as usize, "every song tagged {tag}: {found}");
    assert_eq!(got, local, "{found}");
    // Issue 36: the database is the state: rows pushed while the servers run are counted and served at once.
    assert!(run(&["push", s(&smaller), "--db", &url]).status.success());
    let st = body_json(&http(&servers[1].1, "GET", "/api/stats", b"").1);
    assert_eq!((st["songs"].as_u64(), st["loaded"]["follows_store"].as_bool()), (Some(25), Some(true)), "{st}");
    assert!(http(&servers[1].1, "GET", &format!("/api/similar?id={}&k=3", all[0]), b"").0.contains("404"));
    assert!(run(&["push", s(&store), "--db", &url]).status.success());
    assert_eq!(body_json(&http(&servers[1].1, "GET", "/api/health", b"").1)["songs"], 30);
    assert!(http(&servers[1].1, "GET", &format!("/api/similar?id={}&k=3", all[0]), b"").0.contains("200"));
    // An upload through the model: the library's own copy of the file comes first.
    let clip = std::fs::read(root().join("datasets/tiny").join(q)).unwrap();
    let (status, b) = http(&servers[0].1, "POST", "/api/similar/upload?name=battle.mp3&k=3", &clip);
    assert!(status.contains("200"), "{status} {}", String::from_utf8_lossy(&b));
    let v = body_json(&b);
    assert_eq!(v["results"][0]["id"], q);
    assert!(v["results"][0]["score"].as_f64().unwrap() > 0.99);
    // The page itself, from the database, in headless Chromium (when the browser test's tools are here).
    let e2e = root().join("tests/e2e");
    if std::path::Path::new("/usr/bin/chromium").exists() && e2e.join("node_modules/playwright-core").exists() {
        let o = Command::new("node").arg(e2e.join("browser.mjs")).args([&format!("http://{}/", servers[0].1), s(&root().join("datasets/tiny").join(q))]).output().unwrap();
        assert!(o.status.success(), "browser test against serve --db: {}\n{}", stdout(&o), stderr(&o));
        let r: serde_json::Value = serde_json::from_str(stdout(&o).trim().lines().last().unwrap()).unwrap();
        assert_eq!((r["results"].as_u64(), r["map_points"].as_u64()), (Some(10), Some(30)));
        assert_eq!(r["upload_top"], q);
    } else {
        eprintln!("browser check of serve --db skipped: needs /usr/bin/chromium and `npm ci --prefix tests/e2e`");
    }
    drop(servers);

    // Another model's store into this database: refused, nothing written.
    let synth = d.path().join("synth");
    synthetic_store(&synth, 3000, 60, "synthetic-model");
    let o = run(&["push", s(&synth), "--db", &url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("holds vectors of model"), "{}", stderr(&o));
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM soundalike_songs").trim(), "30");

    // A 2% filter: a plain HNSW scan misses most of the k; iterative scans (what query --db uses) return k,
    // the exact top k.
    pg.psql("postgres", "CREATE DATABASE synth");
    let surl = pg.url("synth");
    assert!(run(&["push", s(&synth), "--db", &surl]).status.success());
    let plain = pg.psql(
        "synth",
        "SET enable_seqscan = off; SET hnsw.ef_search = 40; SELECT count(*) FROM (SELECT id FROM soundalike_songs WHERE genre = 'rare' \
         ORDER BY embedding <=> (SELECT embedding FROM soundalike_songs WHERE id = 's00001.mp3') LIMIT 10) t",
    );
    let plain: usize = plain.trim().parse().unwrap();
    assert!(plain < 10, "a plain HNSW scan returned {plain} of 10 (expected fewer: the point of iterative scans)");
    let o = run(&["query", "--db", &surl, "--song", "s00001.mp3", "--genre", "rare", "-k", "10", "--json", "--genre-source", "tag"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let db = ids(&json(&o));
    let exact = ids(&json(&run(&["query", s(&synth), "--song", "s00001.mp3", "--genre", "rare", "-k", "10", "--exact", "--json", "--genre-source", "tag"])));
    assert_eq!(db.len(), 10);
    let (a, b): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) = (db.iter().map(|x| x.0.clone()).collect(), exact.iter().map(|x| x.0.clone()).collect());
    assert!(a.intersection(&b).count() >= 9, "db {a:?} vs exact {b:?}");
    // Which names came from the path travels with each song, as the store has it.
    let (dbj, exj) = (json(&o), json(&run(&["query", s(&synth), "--song", "s00001.mp3", "--genre", "rare", "-k", "10", "--exact", "--json", "--genre-source", "tag"])));
    let from_path = |v: &serde_json::Value| -> std::collections::BTreeMap<String, serde_json::Value> {
        v["results"].as_array().unwrap().iter().map(|r| (r["id"].as_str().unwrap().to_string(), r["from_path"].clone())).collect()
    };
    let (fd, fe) = (from_path(&dbj), from_path(&exj));
    let shared: Vec<&String> = fd.keys().filter(|k| fe.contains_key(*k)).collect();
    assert!(shared.len() >= 9);
    assert!(shared.iter().all(|k| fd[*k] == fe[*k]), "from_path: db {fd:?} vs store {fe:?}");
    assert!(fd.values().any(|v| v.as_array().is_some_and(|a| !a.is_empty())), "some songs have names from their paths: {fd:?}");
    // A table pushed before the column existed gets it on the next push, which writes again the songs that
    // have names from their paths (two in three here) and leaves the others.
    pg.psql("synth", "ALTER TABLE soundalike_songs DROP COLUMN from_path");
    let r = json(&run(&["push", s(&synth), "--db", &surl, "--json"]));
    assert_eq!((r["report"]["updated"].as_u64(), r["report"]["unchanged"].as_u64()), (Some(2000), Some(1000)), "{r}");
    let again = json(&run(&["query", "--db", &surl, "--song", "s00001.mp3", "--genre", "rare", "-k", "10", "--json", "--genre-source", "tag"]));
    assert_eq!(from_path(&again), fd);
    eprintln!("2% filter: plain HNSW scan {plain} of 10, query --db 10 of 10");

    // Issue 31: a per-album cap returns k songs from the database as from the store (it widens its search).
    let capped = |args: &[&str]| {
        let mut a = vec!["query", "--song", "s00001.mp3", "-k", "10", "--max-per-album", "1", "--json", "--genre-source", "tag"];
        a.extend_from_slice(args);
        ids(&json(&run(&a)))
    };
    let (db, store) = (capped(&["--db", &surl]), capped(&[s(&synth), "--exact"]));
    assert_eq!((db.len(), store.len()), (10, 10), "db {db:?} store {store:?}");
    let (a, b): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) = (db.iter().map(|x| x.0.clone()).collect(), store.iter().map(|x| x.0.clone()).collect());
    assert!(a.intersection(&b).count() >= 9, "db {a:?} vs store {b:?}");

    // A table of another layout version is refused.
    pg.psql("synth", "UPDATE soundalike_meta SET value = '99' WHERE key = 'format_version'");
    let o = run(&["query", "--db", &surl, "--song", "s00001.mp3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("format 99"), "{}", stderr(&o));
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve --db URL` on a free loopback port: the process and its address.
fn serve_db(url: &str) -> (Server, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_soundalike"))
        .args(["serve", "--db", url, "--model", "models/default", "--port", "0"])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(!line.contains(PASSWORD), "{line}");
    let addr = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in {line:?}")).trim_start_matches("http://").trim_end_matches('/').to_string();
    (Server(child), addr)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
