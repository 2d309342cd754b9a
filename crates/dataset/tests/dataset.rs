//! Library handling on real files: scanning, label precedence, tags, splits, cache resume.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use soundalike_audio::FrontendConfig;
use soundalike_dataset::*;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name)
}

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/tiny")
}

/// A small library: two genre folders of real clips plus damaged files.
fn small_library() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (dir, src) in [("ambient", "hedgewars-data/Art.mp3"), ("ambient", "hedgewars-data/Beach.mp3"), ("rock", "nexuiz-music/desert3.mp3")] {
        std::fs::create_dir_all(d.path().join(dir)).unwrap();
        std::fs::copy(tiny().join(src), d.path().join(dir).join(Path::new(src).file_name().unwrap())).unwrap();
    }
    std::fs::write(d.path().join("rock/broken.mp3"), b"definitely not audio").unwrap();
    std::fs::write(d.path().join("rock/empty.mp3"), b"").unwrap();
    std::fs::write(d.path().join("rock/readme.txt"), b"ignored: not an audio extension").unwrap();
    d
}

#[test]
fn scan_finds_audio_recursively_sorted() {
    let lib = small_library();
    let files = scan_library(lib.path()).unwrap();
    let ids: Vec<&str> = files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(ids, ["ambient/Art.mp3", "ambient/Beach.mp3", "rock/broken.mp3", "rock/desert3.mp3", "rock/empty.mp3"]);
    assert!(scan_library(&lib.path().join("nope")).unwrap_err().to_string().contains("nope"));
}

#[test]
fn csv_label_beats_folder_label() {
    let lib = small_library();
    let files = scan_library(lib.path()).unwrap();
    let csv = lib.path().join("labels.csv");
    // Keyed by a path rooted one level higher than the library, like a data set's manifest.
    std::fs::write(&csv, "file,genre_label,title,artist,source\nmusic/ambient/Art.mp3,jazz,Art Piece,Some Artist,hedgewars\n").unwrap();
    let opts = LabelOptions { csv: Some(csv), label_column: Some("genre_label".into()), group_column: Some("source".into()), key_columns: vec![] };
    let cat = load_labels(&files, &opts).unwrap();
    let art = cat.iter().find(|e| e.rel_path == "ambient/Art.mp3").unwrap();
    assert_eq!(art.label.as_deref(), Some("jazz"));
    assert_eq!(art.label_source, Some(LabelSource::Csv));
    assert_eq!(art.title.as_deref(), Some("Art Piece"));
    assert_eq!(art.group.as_deref(), Some("hedgewars"));
    let beach = cat.iter().find(|e| e.rel_path == "ambient/Beach.mp3").unwrap();
    assert_eq!(beach.label.as_deref(), Some("ambient"));
    assert_eq!(beach.label_source, Some(LabelSource::Folder));
    // A missing label column is a clear error naming the CSV.
    let bad = LabelOptions { label_column: Some("nope".into()), ..opts };
    let e = load_labels(&files, &bad).unwrap_err().to_string();
    assert!(e.contains("labels.csv") && e.contains("nope"), "{e}");
}

#[test]
fn tags_are_read_from_real_files() {
    let cfg = FrontendConfig::default();
    let a = soundalike_audio::analyze_file(&data("tagged.mp3"), &cfg).unwrap();
    assert_eq!(a.info.tags.title.as_deref(), Some("Tagged Title"));
    assert_eq!(a.info.tags.artist.as_deref(), Some("Tag Artist"));
    assert_eq!(a.info.tags.album.as_deref(), Some("Tag Album"));
    assert_eq!(a.info.tags.genre.as_deref(), Some("Chiptune"));
    let o = soundalike_audio::analyze_file(&data("tagged.ogg"), &cfg).unwrap();
    assert_eq!(o.info.tags.title.as_deref(), Some("Vorbis Title"));
    assert_eq!(o.info.tags.genre.as_deref(), Some("Ambient"));
}

#[test]
fn cache_lists_bad_files_and_resumes() {
    let lib = small_library();
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = FrontendConfig::default();
    let cache = SpectrogramCache::open(cache_dir.path(), &cfg).unwrap();
    let files = scan_library(lib.path()).unwrap();
    let (fps, r) = cache.build(&files, &|_| {});
    assert_eq!(r.computed, 3);
    assert_eq!(r.reused, 0);
    let failed: Vec<&str> = r.failed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(failed, ["rock/broken.mp3", "rock/empty.mp3"]);
    assert!(r.failed.iter().all(|(p, why)| why.contains(p.rsplit('/').next().unwrap())));
    assert_eq!(fps.iter().filter(|f| f.is_some()).count(), 3);
    // Simulate a run killed after two files: one entry is missing. The re-run redoes only that one.
    let victim = fps[0].as_ref().unwrap();
    let entry = cache_dir.path().join(frontend_fingerprint(&cfg)).join(format!("{victim}.mel"));
    std::fs::remove_file(&entry).unwrap();
    let (_, r2) = cache.build(&files, &|_| {});
    assert_eq!((r2.computed, r2.reused), (1, 2));
    // The cached spectrogram is within the quantisation step of the direct computation.
    let direct = soundalike_audio::analyze_file(&files[0].path, &cfg).unwrap().mel;
    let cached = cache.load(victim).unwrap().mel;
    assert_eq!((cached.n_mels, cached.n_frames), (direct.n_mels, direct.n_frames));
    let step = (direct.max() - direct.min()) / 255.0;
    let worst = cached.data.iter().zip(&direct.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= step / 2.0 + 1e-3, "worst {worst} step {step}");
    // Other settings => another cache folder, never a mix.
    let other = SpectrogramCache::open(cache_dir.path(), &FrontendConfig { n_mels: 64, ..cfg }).unwrap();
    assert!(!other.contains(victim));
}

#[test]
fn tiny_manifest_labels_every_clip() {
    let files = scan_library(&tiny()).unwrap();
    assert_eq!(files.len(), 30);
    let opts = LabelOptions { csv: Some(tiny().join("tracks.csv")), label_column: Some("teacher_genre".into()), group_column: Some("source".into()), key_columns: vec![] };
    let cat = load_labels(&files, &opts).unwrap();
    assert!(cat.iter().all(|e| e.label_source == Some(LabelSource::Csv) && e.group.is_some()), "{cat:?}");
}

fn songs(labels: &[(usize, usize)]) -> Vec<(String, String, Option<String>)> {
    // (label, count) -> songs with groups g0..g2 cycling.
    let mut v = Vec::new();
    for &(l, n) in labels {
        for i in 0..n {
            v.push((format!("l{l}/song{i:03}.mp3"), format!("label{l}"), Some(format!("g{}", i % 3))));
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn split_invariants(counts in prop::collection::vec(1usize..40, 1..6), seed in any::<u64>(), hold in any::<bool>()) {
        let s = songs(&counts.iter().copied().enumerate().collect::<Vec<_>>());
        let opts = SplitOptions { seed, holdout_groups: if hold { vec!["g2".into()] } else { vec![] }, ..Default::default() };
        let sp = split_songs(&s, &opts).unwrap();
        // Every song in exactly one part.
        prop_assert_eq!(sp.assignment.len(), s.len());
        for (id, _, g) in &s {
            let part = sp.assignment[id];
            // Group hold-out holds.
            prop_assert_eq!(part == SplitAssignment::Holdout, hold && g.as_deref() == Some("g2"));
        }
        // Stratified: per label, test and val sizes follow the fractions.
        for (l, _) in counts.iter().enumerate() {
            let ids: Vec<&String> = s.iter().filter(|x| x.1 == format!("label{l}") && sp.assignment[&x.0] != SplitAssignment::Holdout).map(|x| &x.0).collect();
            let n = ids.len();
            let test = ids.iter().filter(|i| sp.assignment[**i] == SplitAssignment::Test).count();
            let want = if n >= 3 { ((n as f64 * 0.15).round() as usize).max(1) } else { (n as f64 * 0.15).round() as usize };
            prop_assert_eq!(test, want);
            prop_assert!(ids.iter().filter(|i| sp.assignment[**i] == SplitAssignment::Train).count() >= n.saturating_sub(2 * want + 1));
        }
        // Deterministic from the seed.
        prop_assert_eq!(&split_songs(&s, &opts).unwrap(), &sp);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Songs of one unit (a work's renderings or windows) share a part; without units the split is the
    /// song-level one; held-out groups still go to Holdout song by song.
    #[test]
    fn unit_split_keeps_siblings_together(counts in prop::collection::vec(3usize..30, 1..5), per_unit in 1usize..4,
                                          seed in any::<u64>(), hold in any::<bool>()) {
        let s = songs(&counts.iter().copied().enumerate().collect::<Vec<_>>());
        let opts = SplitOptions { seed, holdout_groups: if hold { vec!["g2".into()] } else { vec![] }, ..Default::default() };
        let none: Vec<_> = s.iter().map(|(i, l, g)| (i.clone(), l.clone(), g.clone(), None)).collect();
        prop_assert_eq!(split_songs_by_unit(&none, &opts).unwrap(), split_songs(&s, &opts).unwrap());
        // Consecutive songs of a label form a unit of `per_unit` songs.
        let units: Vec<_> = s.iter().enumerate().map(|(k, (i, l, g))| (i.clone(), l.clone(), g.clone(), Some(format!("{l}-w{}", k / per_unit)))).collect();
        let sp = split_songs_by_unit(&units, &opts).unwrap();
        prop_assert_eq!(sp.assignment.len(), s.len());
        for (i, _, g, u) in &units {
            let part = sp.assignment[i];
            prop_assert_eq!(part == SplitAssignment::Holdout, hold && g.as_deref() == Some("g2"));
            for (j, _, g2, u2) in &units {
                if u == u2 && !(hold && (g.as_deref() == Some("g2") || g2.as_deref() == Some("g2"))) {
                    prop_assert_eq!(part, sp.assignment[j], "{} and {} share unit {:?}", i, j, u);
                }
            }
        }
        // Some song is in test whenever a label has 3+ units outside the held-out group.
        if counts.iter().any(|&n| n >= 12 * per_unit) {
            prop_assert!(sp.assignment.values().any(|p| *p == SplitAssignment::Test));
        }
    }
}

#[test]
fn unit_split_refuses_duplicates() {
    let mut s: Vec<_> = songs(&[(0, 5)]).into_iter().map(|(i, l, g)| (i, l, g, Some("w".to_string()))).collect();
    s.push(s[0].clone());
    assert!(split_songs_by_unit(&s, &SplitOptions::default()).unwrap_err().to_string().contains("duplicate"));
}

#[test]
fn split_refuses_duplicates_and_bad_fractions() {
    let mut s = songs(&[(0, 5)]);
    s.push(s[0].clone());
    assert!(split_songs(&s, &SplitOptions::default()).unwrap_err().to_string().contains("duplicate"));
    let bad = SplitOptions { val_fraction: 0.6, test_fraction: 0.5, ..Default::default() };
    assert!(split_songs(&songs(&[(0, 5)]), &bad).is_err());
}

#[test]
fn different_seeds_give_different_splits() {
    let s = songs(&[(0, 30), (1, 30)]);
    let a = split_songs(&s, &SplitOptions { seed: 1, ..Default::default() }).unwrap();
    let b = split_songs(&s, &SplitOptions { seed: 2, ..Default::default() }).unwrap();
    assert_ne!(a.assignment, b.assignment);
}

#[test]
fn genre_tags_label_songs_that_have_no_csv_or_folder_label() {
    let d = tempfile::tempdir().unwrap();
    // A flat library: no folders, no CSV; two tagged files and one without a genre tag.
    std::fs::copy(data("tagged.mp3"), d.path().join("a.mp3")).unwrap();
    std::fs::copy(data("tagged.ogg"), d.path().join("b.ogg")).unwrap();
    std::fs::copy(tiny().join("hedgewars-data/Art.mp3"), d.path().join("c.mp3")).unwrap();
    std::fs::write(d.path().join("d.mp3"), b"not audio").unwrap();
    // And a tagged file in a folder: the folder label wins.
    std::fs::create_dir_all(d.path().join("techno")).unwrap();
    std::fs::copy(data("tagged.mp3"), d.path().join("techno/e.mp3")).unwrap();
    let files = scan_library(d.path()).unwrap();
    let mut cat = load_labels(&files, &LabelOptions::default()).unwrap();
    assert!(cat.iter().filter(|e| e.rel_path != "techno/e.mp3").all(|e| e.label.is_none()));
    fill_tag_labels(&files, &mut cat);
    let get = |id: &str| cat.iter().find(|e| e.rel_path == id).unwrap().clone();
    assert_eq!((get("a.mp3").label.as_deref(), get("a.mp3").label_source), (Some("Chiptune"), Some(LabelSource::Tag)));
    assert_eq!(get("a.mp3").title.as_deref(), Some("Tagged Title"));
    assert_eq!(get("b.ogg").label.as_deref(), Some("Ambient"));
    assert_eq!(get("c.mp3").label, None);
    assert_eq!(get("d.mp3").label, None);
    assert_eq!((get("techno/e.mp3").label.as_deref(), get("techno/e.mp3").label_source), (Some("techno"), Some(LabelSource::Folder)));
}

/// Issue 16, item 5: two names that differ only in bytes that are not UTF-8 get two ids, stable across scans.
#[cfg(unix)]
#[test]
fn non_utf8_names_get_distinct_stable_ids() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let clip = std::fs::read(data("clip.mp3")).unwrap();
    for raw in [&b"bad\xffutf8.mp3"[..], &b"bad\xfeutf8.mp3"[..], "bad\u{FFFD}ff.mp3".as_bytes()] {
        std::fs::write(d.path().join(std::ffi::OsStr::from_bytes(raw)), &clip).unwrap();
    }
    let a = scan_library(d.path()).unwrap();
    let ids: std::collections::BTreeSet<&str> = a.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains("bad\u{FFFD}ffutf8.mp3") && ids.contains("bad\u{FFFD}feutf8.mp3"), "{ids:?}");
    // A literal U+FFFD is doubled, so it cannot pose as an escaped byte.
    assert!(ids.contains("bad\u{FFFD}\u{FFFD}ff.mp3"), "{ids:?}");
    assert_eq!(scan_library(d.path()).unwrap(), a);
    // Each id still reaches its own file.
    assert!(a.iter().all(|f| f.path.exists()));
}

/// Issue 16, item 8: symlinked songs and folders are followed; a link loop and a dangling link do no harm.
#[cfg(unix)]
#[test]
fn symlinked_songs_and_folders_are_followed_once() {
    let d = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    std::fs::create_dir(store.path().join("album")).unwrap();
    std::fs::copy(data("clip.mp3"), store.path().join("album/one.mp3")).unwrap();
    std::fs::copy(data("clip.mp3"), store.path().join("single.mp3")).unwrap();
    let lib = d.path();
    std::os::unix::fs::symlink(store.path().join("album"), lib.join("linked-album")).unwrap();
    std::os::unix::fs::symlink(store.path().join("single.mp3"), lib.join("linked.mp3")).unwrap();
    std::os::unix::fs::symlink(lib, lib.join("loop")).unwrap();
    std::os::unix::fs::symlink(lib.join("missing.mp3"), lib.join("dangling.mp3")).unwrap();
    let ids: Vec<String> = scan_library(lib).unwrap().into_iter().map(|f| f.rel_path).collect();
    assert_eq!(ids, ["linked-album/one.mp3", "linked.mp3"]);
}

/// Issue 30: the `Artist/Album/NN Title` layout names artist, album and title when tags are empty; one
/// folder alone is never taken for an artist (it may be a genre or an album).
#[test]
fn metadata_from_the_usual_artist_album_layout() {
    let m = metadata_from_path("Daft Punk/Discovery/01 One More Time.mp3");
    assert_eq!((m.artist.as_deref(), m.album.as_deref(), m.title.as_str()), (Some("Daft Punk"), Some("Discovery"), "One More Time"));
    let m = metadata_from_path("Music/Miles Davis/Kind of Blue/1-03 - Blue in Green.flac");
    assert_eq!((m.artist.as_deref(), m.album.as_deref(), m.title.as_str()), (Some("Miles Davis"), Some("Kind of Blue"), "Blue in Green"));
    for (path, title) in [("Album/05. Song.ogg", "Song"), ("Album/07_Intro.mp3", "Intro"), ("x/12.mp3", "12"), ("x/2001 A Space Odyssey.mp3", "2001 A Space Odyssey"), ("x/99 Luftballons.mp3", "Luftballons"), ("flat.mp3", "flat")] {
        let m = metadata_from_path(path);
        assert_eq!((m.artist, m.album, m.title.as_str()), (None, None, title), "{path}");
    }
}
