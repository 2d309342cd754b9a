//! `clusters`: k-means over a store's song vectors, saved in the store with a summary per cluster, an
//! elbow plot and a map.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use soundalike_recommend::{choose_k, kmeans, silhouette, Clustering, KMeansOptions, SongRecord, Store, StoreLock};

#[derive(Args, Debug)]
pub struct ClustersArgs {
    /// Store folder (from `soundalike embed`).
    pub store: PathBuf,
    /// Number of clusters (default: chosen over --k-range).
    #[arg(long, conflicts_with = "k_range")]
    pub k: Option<usize>,
    /// Range of k to choose from, `LO..HI` (both included): k-means for each, then the elbow of the inertia
    /// curve unless the mean silhouette is clearly better elsewhere. Default 2..20, capped at the number of
    /// songs.
    #[arg(long, value_parser = parse_k_range)]
    pub k_range: Option<std::ops::RangeInclusive<usize>>,
    /// Seed (the same seed gives the same clusters).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent k-means runs per k; the lowest inertia is kept.
    #[arg(long, default_value_t = 4)]
    pub restarts: usize,
    /// Print the existing clusters of the store instead of fitting new ones.
    #[arg(long, conflicts_with_all = ["k", "k_range"])]
    pub show: bool,
    /// Print JSON (the summaries and how k was chosen) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Do not draw elbow.png and clusters.png.
    #[arg(long)]
    pub no_plots: bool,
    /// When another process is writing the store, wait for it to finish instead of stopping.
    #[arg(long)]
    pub wait: bool,
}

fn parse_k_range(s: &str) -> Result<std::ops::RangeInclusive<usize>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("{s:?}: write the range as LO..HI, e.g. 2..40"))?;
    let num = |x: &str| x.trim().trim_start_matches('=').parse::<usize>().map_err(|_| format!("{s:?}: {x:?} is not a whole number"));
    Ok(num(a)?..=num(b)?)
}

/// The silhouette is computed on at most this many songs (a seeded sample of a larger library).
const SILHOUETTE_ROWS: usize = 4000;

/// Choosing k over a range runs k-means on at most this many songs (a seeded sample); the chosen k is
/// then fitted on every song.
const CURVE_ROWS: usize = 50_000;

/// The default range of k.
const DEFAULT_RANGE: (usize, usize) = (2, 20);

pub fn run(a: ClustersArgs) -> Result<ExitCode> {
    let store = Store::open(&a.store)?;
    if a.show {
        let Some(c) = Clustering::load(&a.store, &store.header)? else {
            bail!("{}: no clusters yet; run `soundalike clusters {}`", a.store.display(), a.store.display());
        };
        report(&c, &a, &[]);
        return Ok(ExitCode::SUCCESS);
    }
    if store.is_empty() {
        bail!("{}: the store is empty; embed a library first (`soundalike embed LIBRARY --out STORE`)", a.store.display());
    }
    if a.restarts == 0 {
        bail!("--restarts must be at least 1");
    }
    let n = store.len();
    let opts = KMeansOptions { seed: a.seed, restarts: a.restarts, ..KMeansOptions::default() };
    // Validate before any work: a bad k or range writes nothing.
    match (a.k, &a.k_range) {
        (Some(0), _) => bail!("--k must be at least 1"),
        (Some(k), _) if k > n => bail!("--k {k} is more than the {n} songs in {}", a.store.display()),
        (_, Some(r)) if r.start() > r.end() => bail!("--k-range {}..{} is in the wrong order (write the smaller first)", r.start(), r.end()),
        (_, Some(r)) if *r.end() > n => bail!("--k-range goes up to {} but {} holds {n} songs", r.end(), a.store.display()),
        (None, None) if n < DEFAULT_RANGE.0 + 2 => bail!("{}: {n} songs are too few to choose k; pass --k", a.store.display()),
        _ => {}
    }
    let lock = StoreLock::acquire(&a.store, a.wait.into())?;
    let t = std::time::Instant::now();
    let (matrix, rows) = store.matrix();
    let dim = store.header.dim;
    let (k, choice) = match a.k {
        Some(k) => (k, None),
        None => {
            let range = a.k_range.clone().unwrap_or(DEFAULT_RANGE.0..=DEFAULT_RANGE.1.min(n - 1));
            eprintln!("choosing k over {}..{} ({} songs{})", range.start(), range.end(), n.min(CURVE_ROWS), if n > CURVE_ROWS { ", a seeded sample" } else { "" });
            let ch = choose_k(&matrix, dim, range, &opts, CURVE_ROWS, SILHOUETTE_ROWS)?;
            (ch.chosen, Some(ch))
        }
    };
    let fit = kmeans(&matrix, dim, &KMeansOptions { k, ..opts.clone() })?;
    let sil = silhouette(&matrix, dim, &fit.assign, k, SILHOUETTE_ROWS, a.seed);
    let c = Clustering::from_fit(&store.header, &rows, &fit, a.seed, a.restarts, sil, choice);
    c.save(&a.store)?;
    let mut pictures = Vec::new();
    if !a.no_plots {
        if let Some(ch) = &c.choice {
            let p = a.store.join("elbow.png");
            crate::draw::elbow_png(&p, ch)?;
            pictures.push(p);
        }
        let p = a.store.join("clusters.png");
        crate::draw::clusters_png(&p, &matrix, dim, &fit.assign, k)?;
        pictures.push(p);
    }
    drop(lock);
    eprintln!("{} songs in {k} clusters ({}, {:.2} s) -> {}", n, c.method, t.elapsed().as_secs_f64(), Clustering::path(&a.store).display());
    report(&c, &a, &pictures);
    Ok(ExitCode::SUCCESS)
}

fn report(c: &Clustering, a: &ClustersArgs, pictures: &[std::path::PathBuf]) {
    if a.json {
        let v = json!({
            "k": c.k, "method": c.method, "seed": c.seed, "inertia": c.inertia, "silhouette": c.silhouette,
            "choice": c.choice, "stale": c.stale, "songs": c.members.len(), "clusters": c.summaries,
            "pictures": pictures,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    if let Some(ch) = &c.choice {
        println!("{:>4}  {:>12}  {:>10}", "k", "inertia", "silhouette");
        for p in &ch.curve {
            let mark = if p.k == ch.chosen { "  <- chosen" } else if p.k == ch.elbow { "  (elbow)" } else { "" };
            println!("{:>4}  {:>12.3}  {:>10}{mark}", p.k, p.inertia, p.silhouette.map(|s| format!("{s:.3}")).unwrap_or("-".into()));
        }
        println!("k = {}: {}", ch.chosen, ch.reason);
    }
    println!(
        "\n{} clusters of {} songs ({}; mean silhouette {})",
        c.k,
        c.members.len(),
        c.method,
        c.silhouette.map(|s| format!("{s:.3}")).unwrap_or("-".into())
    );
    let shares = |v: &[soundalike_recommend::Share]| v.iter().take(2).map(|s| format!("{} {:.0}%", s.genre, 100.0 * s.share)).collect::<Vec<_>>().join(", ");
    println!("{:>3}  {:>6}  {:>5}  {:>8}  {:<26} {:<26} {:<10} nearest the centre", "#", "songs", "share", "cohesion", "genres (tags)", "genres (model)", "near");
    for s in &c.summaries {
        let cut = |t: String, n: usize| if t.chars().count() > n { format!("{}…", t.chars().take(n - 1).collect::<String>()) } else { t };
        let near = s.nearest.iter().map(|x| x.cluster.to_string()).collect::<Vec<_>>().join(",");
        let medoid = s.medoids.first().map(|m| m.title.clone()).unwrap_or_default();
        println!(
            "{:>3}  {:>6}  {:>4.0}%  {:>8.3}  {:<26} {:<26} {:<10} {}",
            s.cluster,
            s.size,
            100.0 * s.share,
            s.cohesion,
            cut(if s.genres_tag.is_empty() { "-".into() } else { shares(&s.genres_tag) }, 26),
            cut(shares(&s.genres_predicted), 26),
            near,
            cut(medoid, 40)
        );
    }
    for p in pictures {
        println!("wrote {}", p.display());
    }
    if let Some(note) = c.stale_note() {
        println!("note: {note}");
    }
}

/// After `embed` changed a store: gives new and changed songs their nearest cluster and records them as
/// stale (the caller holds the store's lock). Returns a line for the report when anything changed.
pub fn refresh_after_embed(store: &Store) -> Result<Option<String>> {
    let Some(mut c) = Clustering::load(store.dir(), &store.header)? else { return Ok(None) };
    let songs: Vec<&SongRecord> = store.songs().collect();
    if !c.refresh(&store.header, &songs).any() {
        return Ok(None);
    }
    c.save(store.dir())?;
    Ok(c.stale_note())
}
