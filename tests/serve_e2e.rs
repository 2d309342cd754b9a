//! `soundalike serve` for real: the binary on a loopback port with the shipped model, over raw HTTP and
//! in headless Chromium (tests/e2e/browser.mjs, playwright-core driving Debian's /usr/bin/chromium).
//! The browser part needs `node`, `/usr/bin/chromium` and `npm ci --prefix tests/e2e`; without them it
//! is skipped with a message, unless SOUNDALIKE_E2E=require (set by .ci/run), when it fails.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use util::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_answers_over_http_and_in_a_real_browser() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let o = run(&["embed", "datasets/tiny", "--out", s(&store), "--labels", "datasets/tiny/tracks.csv", "--label-column", "source", "--group-column", "source"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Four clusters, so the API and the page have them.
    let o = run(&["clusters", s(&store), "--k", "4", "--no-plots"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut child = Command::new(env!("CARGO_BIN_EXE_soundalike"))
        .args(["serve", s(&store), "--model", "models/default", "--port", "0", "--profile", s(&d.path().join("listener"))])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server = Server(child);
    // Loopback only by default.
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();

    let (status, b) = http(&addr, "GET", "/api/health", b"");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body_json(&b)["songs"], 30);
    // Clusters: summaries, one cluster's songs at random or nearest its centre, and similar songs
    // kept inside the query's cluster.
    let (status, b) = http(&addr, "GET", "/api/clusters", b"");
    assert!(status.contains("200"), "{status}");
    let c = body_json(&b);
    assert_eq!(c["k"], 4);
    assert_eq!(c["clusters"].as_array().unwrap().iter().map(|x| x["size"].as_u64().unwrap()).sum::<u64>(), 30);
    let map = body_json(&http(&addr, "GET", "/api/map", b"").1);
    let cluster_of: std::collections::HashMap<String, u64> =
        map["points"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap().to_string(), p["cluster"].as_u64().unwrap())).collect();
    let biggest = c["clusters"].as_array().unwrap().iter().max_by_key(|x| x["size"].as_u64()).unwrap()["cluster"].as_u64().unwrap();
    let draw = |seed: u32| body_json(&http(&addr, "GET", &format!("/api/cluster?id={biggest}&random=3&seed={seed}"), b"").1)["songs"].clone();
    let drawn = draw(1);
    assert_eq!(drawn.as_array().unwrap().len(), 3.min(c["clusters"][biggest as usize]["size"].as_u64().unwrap() as usize));
    assert!(drawn.as_array().unwrap().iter().all(|x| cluster_of[x["id"].as_str().unwrap()] == biggest));
    assert_eq!(drawn, draw(1), "the same seed draws the same songs");
    let near = body_json(&http(&addr, "GET", &format!("/api/cluster?id={biggest}&k=2"), b"").1);
    assert_eq!(near["songs"][0]["id"], near["cluster"]["medoids"][0]["id"]);
    let (status, b) = http(&addr, "GET", "/api/cluster?id=9", b"");
    assert!(status.contains("404") && body_json(&b)["error"].as_str().unwrap().contains("0 to 3"), "{status}");
    let q = "wesnoth-1.16-music/battle.mp3";
    let v = body_json(&http(&addr, "GET", &format!("/api/similar?id={q}&k=30&same_cluster=true"), b"").1);
    let res = v["results"].as_array().unwrap();
    assert_eq!(res.len(), cluster_of.values().filter(|&&x| x == cluster_of[q]).count() - 1);
    assert!(res.iter().all(|r| r["cluster"].as_u64() == Some(cluster_of[q])));
    // Taste: a mark is saved in the profile and answered with "for you" songs; the taste ranking carries
    // each song's probability; bad marks are refused.
    let mark = |id: &str, m: &str| {
        let body = format!("{{\"id\": \"{id}\", \"mark\": \"{m}\"}}");
        let mut c = TcpStream::connect(&addr).unwrap();
        let head = format!("POST /api/taste/mark HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body.as_bytes()).unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        (text.lines().next().unwrap_or("").to_string(), out)
    };
    let (status, _) = mark(q, "like");
    assert!(status.contains("200"), "{status}");
    let (status, b) = mark("asc-music/frontiers.mp3", "dislike");
    assert!(status.contains("200"), "{status}");
    let t = body_json(&b);
    assert_eq!((t["likes"].as_u64(), t["dislikes"].as_u64()), (Some(1), Some(1)));
    assert!(!t["for_you"].as_array().unwrap().is_empty());
    assert!(t["for_you"].as_array().unwrap().iter().all(|r| r["id"] != q && r["id"] != "asc-music/frontiers.mp3"));
    let marks: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("listener/marks.json")).unwrap()).unwrap();
    assert_eq!(marks["marks"].as_array().unwrap().len(), 2);
    let v = body_json(&http(&addr, "GET", "/api/similar?id=hedgewars-data/Beach.mp3&k=5&taste=true", b"").1);
    assert!(v["results"].as_array().unwrap().iter().all(|r| r["p_like"].is_number() && r["id"] != "asc-music/frontiers.mp3"));
    assert!(mark("no/such.mp3", "like").0.contains("404"));
    assert!(mark(q, "adore").0.contains("400"));
    // Forget both again, so the page starts from an empty profile.
    assert!(mark(q, "none").0.contains("200") && mark("asc-music/frontiers.mp3", "none").0.contains("200"));
    // Upload through the real model: the library's own copy of the file is the best match.
    let clip = std::fs::read(root().join("datasets/tiny/wesnoth-1.16-music/battle.mp3")).unwrap();
    let (status, b) = http(&addr, "POST", "/api/similar/upload?name=battle.mp3&k=3", &clip);
    assert!(status.contains("200"), "{status} {}", String::from_utf8_lossy(&b));
    let v = body_json(&b);
    assert_eq!(v["results"][0]["id"], "wesnoth-1.16-music/battle.mp3");
    assert!(v["results"][0]["score"].as_f64().unwrap() > 0.999);
    // A truncated upload is named and refused, and the server keeps serving.
    let (status, b) = http(&addr, "POST", "/api/similar/upload?name=broken.mp3", &clip[..300]);
    assert!(status.contains("422"), "{status} {}", String::from_utf8_lossy(&b));
    assert!(body_json(&b)["error"].as_str().unwrap().starts_with("broken.mp3: "));
    assert!(http(&addr, "GET", "/api/health", b"").0.contains("200"));

    let e2e = root().join("tests/e2e");
    let have_browser = std::path::Path::new("/usr/bin/chromium").exists()
        && e2e.join("node_modules/playwright-core").exists()
        && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have_browser {
        let msg = "browser test skipped: needs node, /usr/bin/chromium (apt-get install chromium) and `npm ci --prefix tests/e2e`";
        assert!(std::env::var("SOUNDALIKE_E2E").as_deref() != Ok("require"), "{msg}");
        eprintln!("{msg}");
        return;
    }
    let shot = d.path().join("page.png");
    let o = Command::new("node")
        .arg(e2e.join("browser.mjs"))
        .args([&url, s(&root().join("datasets/tiny/wesnoth-1.16-music/battle.mp3")), s(&shot)])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "browser test failed: {out}\n{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(r["map_points"], 30);
    assert_eq!((r["results"].as_u64(), r["graph_nodes"].as_u64()), (Some(10), Some(11)));
    assert!(r["played_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(r["upload_top"], "wesnoth-1.16-music/battle.mp3");
    assert_eq!((r["cluster_chips"].as_u64(), r["legend_entries"].as_u64()), (Some(4), Some(4)));
    assert!(r["cluster_random"].as_u64().unwrap() > 0 && r["same_cluster_results"].as_u64().unwrap() > 0);
    assert_eq!(r["taste_marks"], serde_json::json!([2, 2]));
    assert!(r["for_you"].as_u64().unwrap() > 0);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    drop(server);
}
