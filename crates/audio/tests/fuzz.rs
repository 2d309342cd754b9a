//! Fuzzing on stable Rust (proptest): the decoder and the tile path get random bytes and mutated real files
//! (flipped bytes, cut tails, spliced headers) and must answer Ok or a clear error, never panic or hang.
//! Case counts keep this to seconds in CI; `PROPTEST_CASES=5000 cargo test -p soundalike-audio --test fuzz`
//! runs a longer campaign.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks stop at the first surprise

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use soundalike_audio::{analyze_file, FrontendConfig};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name)
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    ["clip.mp3", "vbr_44k.mp3", "tagged.ogg", "pcm24_44k.wav", "surround_5_1.flac"]
        .into_iter()
        .map(|n| (n, std::fs::read(data(n)).unwrap()))
        .collect()
}

fn check(name: &str, bytes: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    let t = std::time::Instant::now();
    match analyze_file(&p, &FrontendConfig::default()) {
        Ok(a) => {
            assert!(a.mel.data.iter().all(|v| v.is_finite()), "{name}: non-finite spectrogram");
            assert_eq!(a.mel.data.len(), a.mel.n_mels * a.mel.n_frames);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // A mutated 60-second file at most: anything slower means a loop on bad data.
    assert!(t.elapsed() < std::time::Duration::from_secs(20), "{name}: {:?}", t.elapsed());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), ext in prop::sample::select(vec!["mp3", "ogg", "wav", "flac", "m4a"])) {
        check(&format!("x.{ext}"), &bytes);
    }

    #[test]
    fn mutated_real_files_never_panic(which in 0usize..5, flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..24), cut in any::<prop::sample::Index>(), cut_it in any::<bool>()) {
        let s = seeds();
        let (name, mut bytes) = s[which].clone();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if cut_it {
            let n = cut.index(bytes.len());
            bytes.truncate(n);
        }
        check(name, &bytes);
    }

    #[test]
    fn headers_spliced_onto_other_data_never_panic(a in 0usize..5, b in 0usize..5, head in 16usize..2048) {
        let s = seeds();
        let mut bytes = s[a].1[..head.min(s[a].1.len())].to_vec();
        bytes.extend_from_slice(&s[b].1[s[b].1.len() / 2..]);
        check(s[a].0, &bytes);
    }
}
