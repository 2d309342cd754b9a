//! What the commands print: recommendation tables and one-line reports, shared by `query`, `demo`,
//! `taste`, `embed` and `index`.

use soundalike_recommend::{IndexUpdate, Recommendation, Scored};

/// The end of a command over files (`analyze`, `tags`): how many could not be `done` (each was named
/// as it was skipped) and a failing exit code when any could not.
pub fn files_exit(failed: usize, total: usize, done: &str) -> std::process::ExitCode {
    if failed > 0 {
        eprintln!("{failed} of {total} files could not be {done} (named above)");
        return std::process::ExitCode::from(1);
    }
    std::process::ExitCode::SUCCESS
}

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
    print_rows(recs.iter().map(|r| Row { rank: r.rank, score: r.score, title: r.title, artist: r.artist, genre: r.genre, cluster: r.cluster, id: r.id, bpm: r.bpm, key: r.key, lufs: r.lufs, true_peak_db: r.true_peak_db, tags: &r.tags }));
}

/// One line of a recommendation table.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    rank: usize,
    score: f32,
    title: &'a str,
    artist: Option<&'a str>,
    genre: Option<&'a str>,
    cluster: Option<u32>,
    id: &'a str,
    bpm: Option<f32>,
    key: Option<soundalike_recommend::CamelotKey>,
    lufs: Option<f32>,
    true_peak_db: Option<f32>,
    tags: &'a [soundalike_recommend::TagScore],
}

/// A song's two most probable tags with their probabilities (`electronic .42, drums .39`).
fn tags_cell(tags: &[soundalike_recommend::TagScore]) -> String {
    if tags.is_empty() {
        return "-".into();
    }
    tags.iter().take(2).map(|t| format!("{} {:.2}", t.tag, t.prob).replace(" 0.", " .")).collect::<Vec<_>>().join(", ")
}

/// Rows as a table (rank, score, title, artist, genre, BPM, key, loudness, true peak, tags, cluster,
/// path; BPM and key columns when any song has them, loudness (LUFS) and true peak (dBTP) when any song
/// was measured, tags when any song is tagged).
pub fn print_rows<'a>(rows: impl Iterator<Item = Row<'a>> + Clone) {
    let clusters = rows.clone().any(|r| r.cluster.is_some());
    let facts = rows.clone().any(|r| r.bpm.is_some() || r.key.is_some());
    let loud = rows.clone().any(|r| r.lufs.is_some());
    let tagged = rows.clone().any(|r| !r.tags.is_empty());
    let fh = if facts { format!("{:>6} {:<4} ", "bpm", "key") } else { String::new() };
    let lh = if loud { format!("{:>6} {:>5} ", "LUFS", "dBTP") } else { String::new() };
    let th = if tagged { format!("{:<30} ", "tags (tagger's guesses)") } else { String::new() };
    println!("{:>4}  {:>6}  {:<28} {:<16} {:<14} {fh}{lh}{th}{}path", "rank", "score", "title", "artist", "genre", if clusters { "clu  " } else { "" });
    let one = |v: Option<f32>| v.map_or("-".into(), |v| format!("{v:.1}"));
    for r in rows {
        let cut = |s: &str, n: usize| if s.chars().count() > n { format!("{}…", s.chars().take(n - 1).collect::<String>()) } else { s.to_string() };
        let f = if facts { format!("{:>6} {:<4} ", one(r.bpm), r.key.map_or("-".into(), |k| k.to_string())) } else { String::new() };
        let l = if loud { format!("{:>6} {:>5} ", one(r.lufs), one(r.true_peak_db)) } else { String::new() };
        let t = if tagged { format!("{:<30} ", cut(&tags_cell(r.tags), 30)) } else { String::new() };
        println!(
            "{:>4}  {:>6.3}  {:<28} {:<16} {:<14} {f}{l}{t}{}{}",
            r.rank,
            r.score,
            cut(r.title, 28),
            cut(r.artist.unwrap_or("-"), 16),
            cut(r.genre.unwrap_or("-"), 14),
            if clusters { format!("{:<5}", r.cluster.map_or("-".into(), |c| c.to_string())) } else { String::new() },
            r.id
        );
    }
}

/// Recommendations as a table.
pub fn print_scored(recs: &[Scored]) {
    print_rows(recs.iter().map(|r| Row {
        rank: r.rank,
        score: r.score,
        title: r.song.title.as_str(),
        artist: r.song.artist.as_deref(),
        genre: r.song.genre.as_deref(),
        cluster: r.song.cluster,
        id: r.song.id.as_str(),
        bpm: r.song.bpm,
        key: r.song.key,
        lufs: r.song.lufs,
        true_peak_db: r.song.true_peak_db,
        tags: &r.song.tags,
    }));
}


/// A song's facts as JSON: tempo (BPM, confidence, candidates, change), key (Camelot, Open Key, name,
/// strength, change) and loudness, each with words for what could not be told.
pub fn facts_json(f: &soundalike_audio::facts::Facts) -> serde_json::Value {
    let k = f.key.key;
    serde_json::json!({
        "bpm": f.tempo.bpm,
        "tempo_confidence": f.tempo.confidence,
        "tempo_candidates": f.tempo.candidates,
        "tempo": f.tempo.describe(),
        "tempo_changes_at_s": f.tempo.changes_at_s,
        "key": k.map(|k| k.to_string()),
        "open_key": k.map(|k| k.open_key()),
        "key_name": k.map(|k| k.name()),
        "key_strength": f.key.strength,
        "key_text": f.key.describe(),
        "key_changes_at_s": f.key.changes_at_s,
        "lufs": f.lufs(),
        "peak_db": f.loudness.as_ref().map(|l| l.peak_db),
        "true_peak_db": f.loudness.as_ref().and_then(|l| l.true_peak_db),
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
    f.lufs().map_or("-".into(), |l| format!("{l:.1}"))
}
