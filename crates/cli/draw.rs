//! Drawing, apart from the commands: `training.png` (loss and accuracy curves), `confusion.png` (song-level confusion matrix), and a store's
//! `elbow.png` and `clusters.png` (the map coloured by cluster), with plotters.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use soundalike_model::train::EpochRecord;
use soundalike_model::EvalReport;

const FONT: &[u8] = include_bytes!("assets/DejaVuSansMono.ttf");

fn font() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("plot: {err:?}")
}

/// Draws into an in-memory RGB buffer and writes the PNG atomically.
fn save(path: &Path, w: u32, h: u32, draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>) -> Result<()> {
    font();
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        draw(root.clone())?;
        root.present().map_err(e)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("plot buffer"))?;
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    soundalike_dataset::write_atomic(path, &bytes)?;
    Ok(())
}

/// Loss (left) and accuracy (right) per epoch.
pub fn training_png(path: &Path, history: &[EpochRecord]) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let n = history.len() as f64;
    // Trained without a validation set (`--val-fraction 0`): draw no validation lines at zero.
    let has_val = history.iter().any(|h| h.val_loss != 0.0 || h.val_song_accuracy != 0.0 || h.val_tile_accuracy != 0.0);
    save(path, 1100, 420, |root| {
        let (l, r) = root.split_horizontally(550);
        let max_loss = history.iter().flat_map(|h| [h.train_loss, h.val_loss]).filter(|v| v.is_finite()).fold(0.1, f64::max);
        let mut c = ChartBuilder::on(&l)
            .caption("loss", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(1f64..n.max(2.0), 0f64..max_loss * 1.05)
            .map_err(e)?;
        c.configure_mesh().x_desc("epoch").draw().map_err(e)?;
        let losses = [("train", BLUE, (|h: &EpochRecord| h.train_loss) as fn(&EpochRecord) -> f64), ("validation", RED, |h| h.val_loss)];
        for (name, color, f) in losses.into_iter().take(if has_val { 2 } else { 1 }) {
            c.draw_series(LineSeries::new(history.iter().map(|h| (h.epoch as f64, f(h))), color.stroke_width(2)))
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;
        let mut c = ChartBuilder::on(&r)
            .caption("accuracy", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(1f64..n.max(2.0), 0f64..1f64)
            .map_err(e)?;
        c.configure_mesh().x_desc("epoch").draw().map_err(e)?;
        let accuracies = [
            ("train tiles", BLUE, (|h: &EpochRecord| h.train_accuracy) as fn(&EpochRecord) -> f64),
            ("val tiles", RED, |h| h.val_tile_accuracy),
            ("val songs", GREEN, |h| h.val_song_accuracy),
        ];
        for (name, color, f) in accuracies.into_iter().take(if has_val { 3 } else { 1 }) {
            c.draw_series(LineSeries::new(history.iter().map(|h| (h.epoch as f64, f(h))), color.stroke_width(2)))
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        c.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;
        Ok(())
    })
}

/// Song-level confusion matrix, rows = true label, columns = predicted, each cell with its count.
pub fn confusion_png(path: &Path, report: &EvalReport, labels: &[String], title: &str) -> Result<()> {
    let k = labels.len();
    if k == 0 || report.confusion.len() != k {
        return Ok(());
    }
    let cell = 46u32;
    let left = 230u32;
    let (w, h) = (left + cell * k as u32 + 20, 84 + cell * k as u32 + 20);
    save(path, w, h, |root| {
        root.draw(&Text::new(title.to_string(), (10, 10), ("sans-serif", 18).into_font())).map_err(e)?;
        root.draw(&Text::new("rows: true, columns: predicted (songs)".to_string(), (10, 36), ("sans-serif", 13).into_font())).map_err(e)?;
        for j in 0..k {
            let x = left as i32 + cell as i32 * j as i32 + 14;
            root.draw(&Text::new(format!("{}", j + 1), (x, 60), ("sans-serif", 13).into_font())).map_err(e)?;
        }
        for (i, row) in report.confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            let y = 80 + cell as i32 * i as i32;
            let name: String = format!("{:>2} {}", i + 1, labels[i]).chars().take(28).collect();
            root.draw(&Text::new(name, (8, y + cell as i32 / 2 - 7), ("sans-serif", 13).into_font())).map_err(e)?;
            for (j, &v) in row.iter().enumerate() {
                let x = left as i32 + cell as i32 * j as i32;
                let shade = 1.0 - 0.85 * (v as f64 / total);
                let color = if i == j { RGBColor((255.0 * shade) as u8, 255, (255.0 * shade) as u8) } else { RGBColor(255, (255.0 * shade) as u8, (255.0 * shade) as u8) };
                root.draw(&Rectangle::new([(x, y), (x + cell as i32 - 2, y + cell as i32 - 2)], color.filled())).map_err(e)?;
                if v > 0 {
                    root.draw(&Text::new(v.to_string(), (x + 12, y + 14), ("sans-serif", 15).into_font())).map_err(e)?;
                }
            }
        }
        Ok(())
    })
}

/// A colour per cluster (a qualitative palette, repeated beyond its length with a darker shade).
pub fn cluster_colour(c: usize) -> RGBColor {
    const P: [(u8, u8, u8); 12] = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
        (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (57, 59, 121), (173, 73, 74),
    ];
    let (r, g, b) = P[c % P.len()];
    let f = if (c / P.len()) % 2 == 1 { 0.6 } else { 1.0 };
    RGBColor((r as f64 * f) as u8, (g as f64 * f) as u8, (b as f64 * f) as u8)
}

/// Inertia (left axis) and mean silhouette (right axis) against k, the elbow and the chosen k marked.
pub fn elbow_png(path: &Path, ch: &soundalike_recommend::KChoice) -> Result<()> {
    let (k0, k1) = (ch.curve.first().map_or(1, |p| p.k) as f64, ch.curve.last().map_or(2, |p| p.k) as f64);
    let max_i = ch.curve.iter().map(|p| p.inertia).fold(0f64, f64::max).max(1e-9) * 1.05;
    let sils: Vec<f64> = ch.curve.iter().filter_map(|p| p.silhouette).collect();
    let (slo, shi) = (sils.iter().copied().fold(0f64, f64::min).min(0.0), sils.iter().copied().fold(0.1f64, f64::max) * 1.1);
    save(path, 820, 440, |root| {
        let mut c = ChartBuilder::on(&root)
            .caption(format!("choosing k: {} (elbow {}, best silhouette {})", ch.chosen, ch.elbow, ch.best_silhouette), ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(34)
            .y_label_area_size(60)
            .right_y_label_area_size(52)
            .build_cartesian_2d(k0..k1.max(k0 + 1.0), 0f64..max_i)
            .map_err(e)?
            .set_secondary_coord(k0..k1.max(k0 + 1.0), slo..shi);
        c.configure_mesh().x_desc("k").x_label_formatter(&|x| format!("{x:.0}")).y_desc("inertia (sum of 1 - cos)").draw().map_err(e)?;
        c.configure_secondary_axes().y_desc("mean silhouette").draw().map_err(e)?;
        c.draw_series(std::iter::once(PathElement::new(vec![(ch.chosen as f64, 0.0), (ch.chosen as f64, max_i)], BLACK.mix(0.5).stroke_width(2))))
            .map_err(e)?
            .label(format!("chosen k = {}", ch.chosen))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5).stroke_width(2)));
        c.draw_series(LineSeries::new(ch.curve.iter().map(|p| (p.k as f64, p.inertia)), BLUE.stroke_width(2)).point_size(3))
            .map_err(e)?
            .label("inertia")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
        c.draw_secondary_series(LineSeries::new(ch.curve.iter().filter_map(|p| Some((p.k as f64, p.silhouette?))), RED.stroke_width(2)).point_size(3))
            .map_err(e)?
            .label("silhouette (right)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;
        Ok(())
    })
}

/// The library map (first two principal components of the song vectors; at most 20,000 songs drawn,
/// evenly spaced) coloured by cluster, each cluster's number at the mean of its songs on the map.
pub fn clusters_png(path: &Path, matrix: &[f32], dim: usize, assign: &[u32], k: usize) -> Result<()> {
    const MOST: usize = 20_000;
    let n = assign.len();
    let step = n.div_ceil(MOST).max(1);
    let rows: Vec<usize> = (0..n).step_by(step).collect();
    let sample: Vec<f32> = rows.iter().flat_map(|&i| matrix[i * dim..(i + 1) * dim].iter().copied()).collect();
    let pts = soundalike_recommend::pca_2d(&sample, dim);
    let mut centre = vec![(0f64, 0f64, 0usize); k];
    for (p, &i) in pts.iter().zip(&rows) {
        let c = &mut centre[assign[i] as usize];
        c.0 += p[0] as f64;
        c.1 += p[1] as f64;
        c.2 += 1;
    }
    save(path, 760, 720, |root| {
        let mut c = ChartBuilder::on(&root)
            .caption(format!("{k} clusters of {n} songs (PCA map{})", if step > 1 { format!(", every {step}th song") } else { String::new() }), ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(-1.05f64..1.05, -1.05f64..1.05)
            .map_err(e)?;
        c.configure_mesh().x_desc("PC 1").y_desc("PC 2").draw().map_err(e)?;
        let radius = if pts.len() > 5000 { 1 } else { 3 };
        c.draw_series(pts.iter().zip(&rows).map(|(p, &i)| Circle::new((p[0] as f64, p[1] as f64), radius, cluster_colour(assign[i] as usize).mix(0.7).filled())))
            .map_err(e)?;
        for (j, &(x, y, cnt)) in centre.iter().enumerate() {
            if cnt == 0 {
                continue;
            }
            let at = (x / cnt as f64, y / cnt as f64);
            c.draw_series(std::iter::once(Circle::new(at, 11, WHITE.filled()))).map_err(e)?;
            c.draw_series(std::iter::once(Circle::new(at, 11, cluster_colour(j).stroke_width(2)))).map_err(e)?;
            c.draw_series(std::iter::once(Text::new(j.to_string(), (at.0 - 0.012 * j.to_string().len() as f64, at.1 + 0.018), ("sans-serif", 14).into_font())))
                .map_err(e)?;
        }
        Ok(())
    })
}

/// The kept taste classifier's cross-validated ROC curve (left) and confusion matrix (right).
pub fn taste_png(path: &Path, m: &soundalike_recommend::TasteModel) -> Result<()> {
    let Some(cv) = m.cv.iter().find(|s| s.classifier == m.classifier.name()) else { return Ok(()) };
    // ROC points: thresholds from the highest score down.
    let mut s = cv.scores.clone();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = s.iter().filter(|x| x.1).count().max(1) as f64;
    let neg = (s.len() as f64 - pos).max(1.0);
    let (mut tp, mut fp) = (0f64, 0f64);
    let mut roc = vec![(0f64, 0f64)];
    for &(_, t) in &s {
        if t {
            tp += 1.0
        } else {
            fp += 1.0
        }
        roc.push((fp / neg, tp / pos));
    }
    save(path, 900, 420, |root| {
        let (l, r) = root.split_horizontally(470);
        let mut c = ChartBuilder::on(&l)
            .caption(format!("ROC, {}-fold CV (AUC {:.3})", cv.folds, cv.roc_auc), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(e)?;
        c.configure_mesh().x_desc("false like rate").y_desc("true like rate").draw().map_err(e)?;
        c.draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(e)?;
        c.draw_series(LineSeries::new(roc, BLUE.stroke_width(2))).map_err(e)?;
        r.draw(&Text::new(cv.classifier.clone(), (10, 14), ("sans-serif", 16).into_font())).map_err(e)?;
        r.draw(&Text::new("rows: marked, columns: predicted".to_string(), (10, 40), ("sans-serif", 13).into_font())).map_err(e)?;
        let names = ["dislike", "like"];
        let cell = 110i32;
        for (i, row) in cv.confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            let y = 90 + cell * i as i32;
            r.draw(&Text::new(names[i].to_string(), (10, y + cell / 2 - 8), ("sans-serif", 15).into_font())).map_err(e)?;
            for (j, &v) in row.iter().enumerate() {
                let x = 100 + cell * j as i32;
                if i == 0 {
                    r.draw(&Text::new(names[j].to_string(), (x + 25, 66), ("sans-serif", 15).into_font())).map_err(e)?;
                }
                let shade = 1.0 - 0.8 * (v as f64 / total);
                let colour = if i == j { RGBColor((255.0 * shade) as u8, 255, (255.0 * shade) as u8) } else { RGBColor(255, (255.0 * shade) as u8, (255.0 * shade) as u8) };
                r.draw(&Rectangle::new([(x, y), (x + cell - 4, y + cell - 4)], colour.filled())).map_err(e)?;
                r.draw(&Text::new(v.to_string(), (x + cell / 2 - 12, y + cell / 2 - 10), ("sans-serif", 20).into_font())).map_err(e)?;
            }
        }
        Ok(())
    })
}

/// Draws training.png and confusion.png from the model's metrics.json.
pub fn draw_plots(dir: &std::path::Path) -> Result<()> {
    let p = dir.join("metrics.json");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).map_err(|e| anyhow!("cannot read {}: {e}", p.display()))?)?;
    let history: Vec<soundalike_model::train::EpochRecord> = serde_json::from_value(m["history"].clone())?;
    let test: EvalReport = serde_json::from_value(m["test"].clone())?;
    let labels: Vec<String> = serde_json::from_value(m["labels"].clone())?;
    training_png(&dir.join("training.png"), &history)?;
    let title = format!("test songs: {:.1}% correct (chance {:.1}%)", 100.0 * test.song_accuracy, 100.0 * test.chance_majority);
    confusion_png(&dir.join("confusion.png"), &test, &labels, &title)
}
