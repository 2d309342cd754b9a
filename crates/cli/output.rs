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

