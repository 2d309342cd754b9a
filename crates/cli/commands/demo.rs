//! `demo`: the quickstart: embed the bundled tiny set with the shipped model, index it and print
//! recommendations.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use soundalike_recommend::{AnnParams, Catalog, Filters, Method};

use crate::commands::embed::EmbedArgs;
use crate::flags::{parse_genre_source, LabelArgs};
use crate::output::print_table;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Library to embed (default: the bundled tiny set).
    #[arg(long, default_value = "datasets/tiny")]
    pub library: PathBuf,
    /// Model folder.
    #[arg(long, default_value = "models/default")]
    pub model: PathBuf,
    /// Store folder.
    #[arg(long, default_value = "target/demo-store")]
    pub out: PathBuf,
    /// Recommendations per query.
    #[arg(short, long, default_value_t = 5)]
    pub k: usize,
    /// Where a song's genre comes from for --genre, --same-genre and the tables: `tag` (the genre tag or CSV
    /// column recorded at embed time), `predicted` (the model's predicted genre) or `either` (the tag where
    /// there is one, else the prediction).
    #[arg(long, default_value = "either", value_parser = parse_genre_source)]
    pub genre_source: soundalike_recommend::GenreSource,
}

pub fn run(a: DemoArgs) -> Result<ExitCode> {
    let csv = a.library.join("tracks.csv");
    let labels = LabelArgs {
        labels: csv.exists().then_some(csv),
        label_column: "source".into(),
        group_column: Some("source".into()),
    };
    let code = crate::commands::embed::run(EmbedArgs {
        library: a.library.clone(),
        model: a.model.clone(),
        out: a.out.clone(),
        labels,
        shard: None,
        json: false,
        device: "cpu".into(),
        index: true,
        batch: 16,
        wait: false,
        prune: false,
        tags: true,
    })?;
    let mut cat = Catalog::open(&a.out, Method::Auto, &AnnParams::default())?;
    cat.use_genres(a.genre_source);
    let first: Vec<usize> = {
        // One query per group, so the demo shows different kinds of music.
        let mut seen = std::collections::BTreeSet::new();
        (0..cat.len()).filter(|&r| seen.insert(cat.songs()[r].group.clone())).take(3).collect()
    };
    for &r in &first {
        let s = &cat.songs()[r];
        println!("\nsongs that sound like {} [{}] ({}):", s.title, s.genre.as_deref().unwrap_or("-"), s.id);
        let f = Filters { exclude: vec![s.id.clone()], ..Default::default() };
        print_table(&cat.recommend(&cat.vector(r), a.k, &f)?);
    }
    if let Some(&r) = first.first() {
        let s = &cat.songs()[r];
        let target = cat.songs().iter().filter_map(|x| x.genre.clone()).find(|g| Some(g) != s.genre.as_ref());
        if let Some(g) = target {
            println!("\n{} {g} songs that sound like {} [{}]:", a.k.min(3), s.title, s.genre.as_deref().unwrap_or("-"));
            let f = Filters { exclude: vec![s.id.clone()], genre: Some(g), ..Default::default() };
            print_table(&cat.recommend(&cat.vector(r), a.k.min(3), &f)?);
        }
    }
    println!("\nnext: soundalike query {} --song \"<title or id>\" -k 10", a.out.display());
    println!("  or: soundalike serve {} --model {}   (then open http://127.0.0.1:8080/)", a.out.display(), a.model.display());
    Ok(code)
}
