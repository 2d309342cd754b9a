//! `tags FILE...`: what the musicnn taggers guess about files, without a store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use rayon::prelude::*;
use serde_json::json;
use soundalike_audio::{analyze_file_with, Extras, FrontendConfig};
use soundalike_model::musicnn::{self, PatchPlan};
use soundalike_recommend::{SongTags, TagSource};

#[derive(Args, Debug)]
pub struct TagsArgs {
    /// Audio files (any format the decoder reads).
    #[arg(required_unless_present = "list")]
    pub files: Vec<PathBuf>,
    /// Tags shown per file.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// 3-s patches read per file: `embed` (what `embed` stores: one per 7.5 s of song, at most 6), `all`
    /// (every one, as the musicnn package does) or at most N spread over the song.
    #[arg(long, default_value = "embed", value_parser = parse_patches)]
    pub patches: PatchPlan,
    /// Print one JSON object per file (every tag's probability from both taggers).
    #[arg(long)]
    pub json: bool,
    /// With --json: also each tagger's penultimate layer (200 values each, the mean over the same patches) as
    /// `msd_penultimate` and `mtt_penultimate`: the taggers' own song vectors, what a model trained with
    /// `--context-musicnn` reads.
    #[arg(long, requires = "json")]
    pub penultimate: bool,
    /// List the 100 tags the taggers know, by kind, and stop.
    #[arg(long)]
    pub list: bool,
}

fn parse_patches(s: &str) -> Result<PatchPlan, String> {
    match s {
        "all" => Ok(PatchPlan::All),
        "embed" => Ok(musicnn::EMBED_PLAN),
        n => match n.parse::<usize>() {
            Ok(k) if k >= 1 => Ok(PatchPlan::Spread(k)),
            _ => Err(format!("{s:?}: `embed`, `all` or a number of patches (at least 1)")),
        },
    }
}

/// A file's tags, the penultimate means (MSD's, then MTT's) and seconds, or why it could not be read.
type Tagged = Result<(SongTags, Vec<f32>, f64), String>;

/// Tags a file as `embed` does (the same decode, the same front end), with `plan`'s patches.
pub fn tag_file(path: &std::path::Path, plan: PatchPlan) -> Tagged {
    let mut a = analyze_file_with(path, &FrontendConfig::default(), &tag_extras()).map_err(|e| e.to_string())?;
    let (t, p) = tagged_of(&mut a, plan, path)?;
    Ok((t, p, a.info.duration_s))
}

/// What the decode pass computes for tagging: the tagger's spectrogram alone (not the log-mel).
pub fn tag_extras() -> Extras {
    Extras { facts: false, power_mel: Some(musicnn::frontend()), no_log_mel: true }
}

/// The tags of an analysis whose extras asked for the tagger's spectrogram ([`tag_extras`], or `embed`'s),
/// with the taggers' penultimate means (MSD's, then MTT's); `name` names the file in errors.
pub fn tagged_of(a: &mut soundalike_audio::Analysis, plan: PatchPlan, name: &std::path::Path) -> Result<(SongTags, Vec<f32>), String> {
    let pm = a.power_mel.take().ok_or_else(|| format!("{}: the tagger's spectrogram could not be made", name.display()))?;
    musicnn::tag_power_mel_with_penultimate(pm.data, plan).ok_or_else(|| format!("{}: the tagger gave no usable output", name.display()))
}

/// [`tagged_of`] without the penultimate means.
pub fn tags_of(a: &mut soundalike_audio::Analysis, plan: PatchPlan, name: &std::path::Path) -> Result<SongTags, String> {
    tagged_of(a, plan, name).map(|(t, _)| t)
}

/// A stored probability (4 decimals) as JSON shows it, without float32's tail.
pub fn round4(p: f32) -> f64 {
    (p as f64 * 10_000.0).round() / 10_000.0
}

/// A file's tags as `tags --json` prints them: the top `top`, and every tag's probability from both
/// taggers.
pub fn tags_json(file: &std::path::Path, t: &SongTags, seconds: f64, top: usize) -> serde_json::Value {
    let per = |s: TagSource| -> serde_json::Map<String, serde_json::Value> {
        s.vocabulary().iter().zip(t.probs(s)).map(|(k, p)| (k.to_string(), json!(round4(*p)))).collect()
    };
    let top: Vec<_> = t.top(top).iter().map(|s| json!({"tag": s.tag, "prob": round4(s.prob), "source": s.source, "kind": soundalike_tags::kind(s.tag)})).collect();
    json!({
        "file": file.display().to_string(),
        "duration_s": (seconds * 10.0).round() / 10.0,
        "patches": t.patches,
        "note": "musicnn's guesses (MSD_musicnn, MTT_musicnn), each with its probability",
        "top": top,
        "msd": per(TagSource::Msd),
        "mtt": per(TagSource::Mtt),
    })
}

fn list() {
    use soundalike_tags::TagKind;
    for kind in [TagKind::Genre, TagKind::Mood, TagKind::Instrument, TagKind::Era, TagKind::Other] {
        let tags: Vec<&str> = soundalike_tags::all_tags().into_iter().filter(|t| soundalike_tags::kind(t) == kind).collect();
        println!("{:<11} {}", format!("{kind:?}").to_lowercase(), tags.join(", "));
    }
}

/// `soundalike tags FILE...`: each file's most probable tags (a tagger's guesses, with probabilities);
/// a file that cannot be read is named with the reason and the others are still tagged.
pub fn run(a: TagsArgs) -> Result<ExitCode> {
    if a.list {
        list();
        return Ok(ExitCode::SUCCESS);
    }
    if a.top == 0 {
        bail!("--top must be at least 1");
    }
    let results: Vec<(PathBuf, Tagged)> = a.files.par_iter().map(|f| (f.clone(), tag_file(f, a.patches))).collect();
    let mut failed = 0;
    for (file, r) in &results {
        match r {
            Ok((t, p, seconds)) if a.json => {
                let mut j = tags_json(file, t, *seconds, a.top);
                if a.penultimate {
                    let (msd, mtt) = p.split_at(p.len() / 2);
                    j["msd_penultimate"] = json!(msd);
                    j["mtt_penultimate"] = json!(mtt);
                }
                println!("{j}");
            }
            Ok((t, _, _)) => {
                println!("{}  ({} patch{} of 3 s; the tagger's guesses)", file.display(), t.patches, if t.patches == 1 { "" } else { "es" });
                for s in t.top(a.top) {
                    println!("  {:>5.2}  {:<18} {}", s.prob, s.tag, s.source.model_name());
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("skipped: {e}");
            }
        }
    }
    Ok(crate::output::files_exit(failed, results.len(), "tagged"))
}
