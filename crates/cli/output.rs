//! What the commands print: recommendation tables and one-line reports, shared by `query`, `demo`,
//! `taste`, `embed` and `index`.

use soundalike_recommend::{IndexUpdate, Recommendation, Scored};

/// One line for what an index sync did.
pub fn describe_update(u: &IndexUpdate) -> String {
    let what = if u.rebuilt {
        "built".to_string()
    } else if u.changed() {
        format!("updated: {} added, {} removed", u.added, u.removed)
    } else {
        return "unchanged".into();
    };
    if u.saved {
        format!("{what}, saved")
    } else {
        format!("{what} in memory only (not saved: another process holds the store's lock)")
    }
}

pub fn print_table(recs: &[Recommendation]) {
    print_rows(recs.iter().map(|r| (r.rank, r.score, r.title, r.artist, r.genre, r.cluster, r.id)));
}

/// Rows of (rank, score, title, artist, genre, cluster, path) as a table.
pub fn print_rows<'a>(rows: impl Iterator<Item = (usize, f32, &'a str, Option<&'a str>, Option<&'a str>, Option<u32>, &'a str)> + Clone) {
    let clusters = rows.clone().any(|r| r.5.is_some());
    println!("{:>4}  {:>6}  {:<28} {:<16} {:<14} {}path", "rank", "score", "title", "artist", "genre", if clusters { "clu  " } else { "" });
    for (rank, score, title, artist, genre, cluster, id) in rows {
        let cut = |s: &str, n: usize| if s.chars().count() > n { format!("{}…", s.chars().take(n - 1).collect::<String>()) } else { s.to_string() };
        println!(
            "{:>4}  {:>6.3}  {:<28} {:<16} {:<14} {}{}",
            rank,
            score,
            cut(title, 28),
            cut(artist.unwrap_or("-"), 16),
            cut(genre.unwrap_or("-"), 14),
            if clusters { format!("{:<5}", cluster.map_or("-".into(), |c| c.to_string())) } else { String::new() },
            id
        );
    }
}

/// Recommendations as a table.
pub fn print_scored(recs: &[Scored]) {
    print_rows(recs.iter().map(|r| (r.rank, r.score, r.song.title.as_str(), r.song.artist.as_deref(), r.song.genre.as_deref(), r.song.cluster, r.song.id.as_str())));
}


/// A song's facts as JSON: tempo (BPM, confidence, candidates, change), key (Camelot, Open Key, name,
/// strength, change) and loudness, each with words for what could not be told.
pub fn facts_json(f: &soundalike_audio::facts::Facts) -> serde_json::Value {
    let k = f.key.key;
    serde_json::json!({
        "bpm": f.tempo.bpm,
        "tempo_confidence": (f.tempo.confidence * 1000.0).round() / 1000.0,
        "tempo_candidates": f.tempo.candidates,
        "tempo": f.tempo.describe(),
        "tempo_changes_at_s": f.tempo.changes_at_s,
        "key": k.map(|k| k.to_string()),
        "open_key": k.map(|k| k.open_key()),
        "key_name": k.map(|k| k.name()),
        "key_strength": (f.key.strength * 1000.0).round() / 1000.0,
        "key_text": f.key.describe(),
        "key_changes_at_s": f.key.changes_at_s,
        "lufs": f.loudness.as_ref().and_then(|l| l.lufs),
        "peak_db": f.loudness.as_ref().map(|l| l.peak_db),
        "facts_version": f.version,
    })
}

/// Camelot, Open Key and name of a key, or `-`, `-`, `unclear`.
pub fn key_cell(k: &soundalike_audio::facts::Key) -> (String, String, String) {
    match k.key {
        Some(k) => (k.to_string(), k.open_key(), k.name()),
        None => ("-".into(), "-".into(), "key unclear".into()),
    }
}

/// Integrated loudness for a table.
pub fn lufs_cell(f: &soundalike_audio::facts::Facts) -> String {
    f.loudness.as_ref().and_then(|l| l.lufs).map_or("-".into(), |l| format!("{l:.1}"))
}
