//! Helpers for the end-to-end tests: run the binary, build small libraries from the committed clips.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::io::{Read, Write};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn model() -> PathBuf {
    root().join("models/default")
}

/// Runs `soundalike ARGS` from the repository root.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_soundalike")).args(args).current_dir(root()).output().expect("binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Copies `n` tiny-set clips (round-robin over soundtracks) into `dir/<soundtrack>/`.
pub fn library(dir: &Path, n: usize) -> Vec<String> {
    let tiny = root().join("datasets/tiny");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&tiny).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir() && !p.ends_with("licenses")).collect();
    sources.sort();
    let mut ids = Vec::new();
    'outer: for round in 0..3 {
        for s in &sources {
            let mut clips: Vec<PathBuf> = std::fs::read_dir(s).unwrap().map(|e| e.unwrap().path()).collect();
            clips.sort();
            if let Some(c) = clips.get(round) {
                let name = s.file_name().unwrap().to_string_lossy().into_owned();
                std::fs::create_dir_all(dir.join(&name)).unwrap();
                std::fs::copy(c, dir.join(&name).join(c.file_name().unwrap())).unwrap();
                ids.push(format!("{name}/{}", c.file_name().unwrap().to_string_lossy()));
                if ids.len() == n {
                    break 'outer;
                }
            }
        }
    }
    ids
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

/// One HTTP/1.1 request over a fresh connection; returns (status line, body).
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nX-Soundalike: 1\r\nConnection: close\r\n\r\n", body.len());
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(body).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    (head.lines().next().unwrap_or("").to_string(), out[split + 4..].to_vec())
}

pub fn body_json(b: &[u8]) -> serde_json::Value {
    // Responses may be chunked: take the JSON object between the first '{' and the last '}'.
    let (a, z) = (b.iter().position(|&c| c == b'{').unwrap(), b.iter().rposition(|&c| c == b'}').unwrap());
    serde_json::from_slice(&b[a..=z]).unwrap()
}


/// Writes a 16-bit PCM WAV of interleaved `samples` (`channels` of them per frame) at `rate`.
pub fn wav(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
    let mut b = Vec::new();
    let data = (samples.len() * 2) as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
    b.extend_from_slice(&(2 * channels).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for v in samples {
        b.extend_from_slice(&((v.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// Rewrites every song record in a store's journal with `edit` (to make what an older version wrote).
pub fn edit_journal(store: &Path, mut edit: impl FnMut(&mut serde_json::Map<String, serde_json::Value>)) {
    let jp = store.join("songs.jsonl");
    let text: String = std::fs::read_to_string(&jp)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(song) = v.get_mut("song").and_then(|x| x.as_object_mut()) {
                edit(song);
            }
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(&jp, text).unwrap();
}
