//! `export`: a store as CSV, JSON lines or .npy for Python or a database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use soundalike_recommend::Store;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
    Npy,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Store folder.
    pub store: PathBuf,
    /// Format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output file (for npy, ids go to OUT.ids.txt beside it); `-` writes csv or jsonl to standard output.
    #[arg(long)]
    pub out: PathBuf,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `bpm,key,open_key,lufs,true_peak_db` of a song (empty where unknown).
fn facts_columns(s: &soundalike_recommend::SongRecord) -> String {
    let k = s.key();
    format!(
        "{},{},{},{},{}",
        s.bpm().map_or(String::new(), |b| format!("{b:.1}")),
        k.map_or(String::new(), |k| k.to_string()),
        k.map_or(String::new(), |k| k.open_key()),
        s.lufs().map_or(String::new(), |l| format!("{l:.1}")),
        s.true_peak_db().map_or(String::new(), |p| format!("{p:.1}"))
    )
}

/// `top_tags,msd:rock,...,mtt:guitar,...`: the header of the tag columns.
fn tag_header() -> String {
    let mut h = String::from("top_tags");
    for src in soundalike_recommend::TagSource::ALL {
        for t in src.vocabulary() {
            h.push(',');
            h.push_str(&csv_field(&format!("{}:{t}", src.model_name()[..3].to_lowercase())));
        }
    }
    h
}

/// A song's tag columns: its five most probable tags (`tag p; ...`) and each tagger's probability of every
/// tag (empty when not tagged).
fn tag_columns(s: &soundalike_recommend::SongRecord) -> String {
    match &s.tags {
        Some(t) => {
            let top: Vec<String> = t.top(soundalike_recommend::VIEW_TAGS).iter().map(|x| format!("{} {:.2}", x.tag, x.prob)).collect();
            let probs = t.msd.iter().chain(&t.mtt).map(|p| crate::commands::tags::round4(*p).to_string()).collect::<Vec<_>>().join(",");
            format!("{},{probs}", csv_field(&top.join("; ")))
        }
        None => ",".repeat(2 * soundalike_tags::N_TAGS),
    }
}

pub fn run(a: ExportArgs) -> Result<ExitCode> {
    let store = Store::open(&a.store)?;
    let labels = &store.header.labels;
    // The cluster column: empty until `soundalike clusters` has run.
    let clustering = soundalike_recommend::Clustering::load(&a.store, &store.header).unwrap_or_else(|e| {
        eprintln!("note: no cluster column: {e}");
        None
    });
    let cluster = |s: &soundalike_recommend::SongRecord| clustering.as_ref().map(|c| c.place(&s.id, &s.fingerprint, &s.vector));
    let mut out = String::new();
    match a.format {
        ExportFormat::Csv => {
            out.push_str("id,title,artist,album,genre,group,duration_s,predicted,cluster,bpm,key,open_key,lufs,true_peak_db,");
            out.push_str(&tag_header());
            (0..store.header.dim).for_each(|i| out.push_str(&format!(",v{i}")));
            out.push('\n');
            for s in store.songs() {
                let o = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
                out.push_str(&format!(
                    "{},{},{},{},{},{},{:.3},{},{},{},{}",
                    csv_field(&s.id),
                    csv_field(&s.title),
                    o(&s.artist),
                    o(&s.album),
                    o(&s.genre),
                    o(&s.group),
                    s.duration_s,
                    csv_field(&s.predicted(labels).unwrap_or_default()),
                    cluster(s).map_or(String::new(), |c| c.to_string()),
                    facts_columns(s),
                    tag_columns(s)
                ));
                s.vector.iter().for_each(|v| out.push_str(&format!(",{v}")));
                out.push('\n');
            }
            write_export(&a.out, &out)?;
        }
        ExportFormat::Jsonl => {
            for s in store.songs() {
                let mut v = serde_json::to_value(s)?;
                v["predicted"] = json!(s.predicted(labels));
                v["cluster"] = json!(cluster(s));
                v["bpm"] = json!(s.bpm());
                v["key"] = json!(s.key().map(|k| k.to_string()));
                v["open_key"] = json!(s.key().map(|k| k.open_key()));
                v["lufs"] = json!(s.lufs());
                v["true_peak_db"] = json!(s.true_peak_db());
                v["top_tags"] = json!(s.tags.as_ref().map(|t| t.top(soundalike_recommend::VIEW_TAGS)));
                out.push_str(&serde_json::to_string(&v)?);
                out.push('\n');
            }
            write_export(&a.out, &out)?;
        }
        ExportFormat::Npy => {
            if is_stdout(&a.out) {
                bail!("--out -: npy is written to a file (with its ids beside it); standard output takes csv or jsonl");
            }
            let (m, rows) = store.matrix();
            soundalike_dataset::write_atomic(&a.out, &soundalike_audio::output::npy_bytes(&[rows.len(), store.header.dim], &m))?;
            let ids: String = rows.iter().map(|s| format!("{}\n", s.id)).collect();
            let ids_path = a.out.with_extension("ids.txt");
            soundalike_dataset::write_atomic(&ids_path, ids.as_bytes())?;
            println!("ids in {}", ids_path.display());
            let facts: String = std::iter::once("id,bpm,key,open_key,lufs,true_peak_db\n".to_string())
                .chain(rows.iter().map(|s| format!("{},{}\n", csv_field(&s.id), facts_columns(s))))
                .collect();
            let facts_path = a.out.with_extension("facts.csv");
            soundalike_dataset::write_atomic(&facts_path, facts.as_bytes())?;
            println!("tempo, key and loudness in {}", facts_path.display());
            let tags: String = std::iter::once(format!("id,{}\n", tag_header()))
                .chain(rows.iter().map(|s| format!("{},{}\n", csv_field(&s.id), tag_columns(s))))
                .collect();
            let tags_path = a.out.with_extension("tags.csv");
            soundalike_dataset::write_atomic(&tags_path, tags.as_bytes())?;
            println!("tags (the taggers' probabilities) in {}", tags_path.display());
            if clustering.is_some() {
                let cs: String = rows.iter().map(|s| format!("{}\n", cluster(s).unwrap_or_default())).collect();
                let cs_path = a.out.with_extension("clusters.txt");
                soundalike_dataset::write_atomic(&cs_path, cs.as_bytes())?;
                println!("clusters in {}", cs_path.display());
            }
        }
    }
    if is_stdout(&a.out) {
        eprintln!("exported {} songs to standard output", store.len());
    } else {
        println!("exported {} songs to {}", store.len(), a.out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--out -`: standard output.
fn is_stdout(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Writes an export to its file atomically, or to standard output for `-` (a reader that stops early, as
/// `head` does, ends the export quietly).
fn write_export(out: &Path, text: &str) -> Result<()> {
    if !is_stdout(out) {
        return Ok(soundalike_dataset::write_atomic(out, text.as_bytes())?);
    }
    use std::io::Write;
    let mut so = std::io::stdout().lock();
    match so.write_all(text.as_bytes()).and_then(|_| so.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
        _ => Ok(()),
    }
}
