//! Samples across the guidance scale (exercise 5), so that a reader sees
//! what the guidance metrics measure: for each p_uncond, one run's samples
//! at up to four scales (the smallest, the largest and two between) — image
//! grids joined left to right into one enlarged strip, or for 2-D data one
//! scatter with a colour per scale.

use super::charts::{self, Body, Chart, Line};
use super::collect::{RunData, SweepData};
use super::document::Block;
use super::figures::grid_zoom;
use super::ReportError;
use crate::run::eval_key::EvalKeys;
use crate::run::{EvalDir, SweepDir};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Points drawn per scale in a scatter (enough to see the shape).
const SCATTER_POINTS: usize = 600;
/// White pixels between joined grids.
const GAP: u32 = 12;

/// Up to four of `scales` (ascending): the ends and two between.
pub fn pick(scales: &[f64]) -> Vec<f64> {
    let n = scales.len();
    if n <= 4 {
        return scales.to_vec();
    }
    let mut idx = vec![0, n / 3, (2 * n) / 3, n - 1];
    idx.dedup();
    idx.into_iter().map(|i| scales[i]).collect()
}

/// For each p_uncond (ascending), its first completed run's last evaluated
/// step and the scales it was evaluated at there.
fn runs_per_p_uncond(s: &SweepData) -> Vec<(f64, &RunData, u64, Vec<f64>)> {
    let mut out: BTreeMap<i64, (f64, &RunData, u64, Vec<f64>)> = BTreeMap::new();
    for r in s.runs.iter().filter(|r| r.completed()) {
        let p = r.config.train.p_uncond;
        let key = (p * 1e6).round() as i64;
        if out.contains_key(&key) {
            continue;
        }
        let Some(step) = r
            .eval
            .iter()
            .filter(|m| m.guidance.is_some())
            .map(|m| m.step)
            .max()
        else {
            continue;
        };
        let mut g: Vec<f64> = r
            .eval
            .iter()
            .filter(|m| m.step == step)
            .filter_map(|m| m.guidance)
            .collect();
        g.sort_by(|a, b| a.total_cmp(b));
        g.dedup();
        out.insert(key, (p, r, step, g));
    }
    out.into_values().collect()
}

/// The sample file of `r` at `step` and scale `g`, with extension `ext`.
fn sample_file(root: &Path, r: &RunData, step: u64, g: f64, ext: &str) -> PathBuf {
    let key = EvalKeys::of(&r.config.eval).samples;
    EvalDir::new(SweepDir::at(root).job(&r.job).eval())
        .samples()
        .join(format!(
            "{}.{ext}",
            EvalDir::sample_stem(step, r.weights, g, &key)
        ))
}

/// The figures, written under `dir`: the image blocks and the files. None
/// unless some run was evaluated at two or more scales.
pub fn figures(
    root: &Path,
    s: &SweepData,
    dir: &Path,
) -> Result<(Vec<Block>, Vec<PathBuf>), ReportError> {
    let mut blocks = vec![];
    let mut paths = vec![];
    for (i, (p, r, step, scales)) in runs_per_p_uncond(s).into_iter().enumerate() {
        if scales.len() < 2 {
            continue;
        }
        let shown = pick(&scales);
        let images: Vec<PathBuf> = shown
            .iter()
            .map(|g| sample_file(root, r, step, *g, "png"))
            .collect();
        let caption = |what: &str| {
            format!(
                "p_uncond = {p}, run {} at step {step} ({}): {what} at s = {}.",
                r.id,
                r.weights,
                shown
                    .iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if images.iter().all(|p| p.exists()) {
            let name = format!("guidance_samples_{i}.png");
            let dst = dir.join(&name);
            let side = crate::config::data_shape(&r.config)
                .sample
                .last()
                .copied()
                .unwrap_or(64);
            join_grids(&images, &dst, grid_zoom(side)).map_err(|error| ReportError::Write {
                path: dst.clone(),
                error,
            })?;
            blocks.push(Block::Image {
                path: PathBuf::from("charts").join(name),
                caption: caption("sample grids, left to right"),
            });
            paths.push(dst);
        } else if let Some(chart) = scatter(root, r, step, &shown, i) {
            let png = charts::render(&chart, dir)?;
            blocks.push(Block::Image {
                path: PathBuf::from("charts").join(png.file_name().unwrap_or_default()),
                caption: caption("samples, a colour per scale"),
            });
            paths.push(png);
        }
    }
    Ok((blocks, paths))
}

/// The PNG grids `srcs`, each enlarged `zoom` times (nearest neighbour),
/// joined left to right with a white gap, written atomically to `dst`.
fn join_grids(srcs: &[PathBuf], dst: &Path, zoom: u32) -> std::io::Result<()> {
    let mut grids = vec![];
    for src in srcs {
        let img = image::open(src).map_err(std::io::Error::other)?.to_rgb8();
        let (w, h) = (img.width() * zoom, img.height() * zoom);
        grids.push(image::imageops::resize(
            &img,
            w,
            h,
            image::imageops::FilterType::Nearest,
        ));
    }
    let width = grids.iter().map(|g| g.width()).sum::<u32>() + GAP * (grids.len() as u32 - 1);
    let height = grids.iter().map(|g| g.height()).max().unwrap_or(1);
    let mut out = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut x = 0;
    for g in &grids {
        image::imageops::replace(&mut out, g, i64::from(x), 0);
        x += g.width() + GAP;
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::run::atomic::write_with(dst, |tmp| {
        out.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

/// The first two columns of a samples Parquet file, at most `n` rows.
fn read_points(path: &Path, n: usize) -> Option<Vec<(f64, f64)>> {
    let df = ParquetReader::new(std::fs::File::open(path).ok()?)
        .finish()
        .ok()?;
    let cols = df.columns();
    let (x, y) = (cols.first()?, cols.get(1)?);
    let (x, y) = (
        x.cast(&DataType::Float64).ok()?,
        y.cast(&DataType::Float64).ok()?,
    );
    let (x, y) = (x.f64().ok()?, y.f64().ok()?);
    Some(
        x.iter()
            .zip(y.iter())
            .filter_map(|(a, b)| Some((a?, b?)))
            .take(n)
            .collect(),
    )
}

/// A scatter of `r`'s 2-D samples at each of `scales`, in ascending order so
/// that the tighter clouds of larger scales are drawn on top.
fn scatter(root: &Path, r: &RunData, step: u64, scales: &[f64], i: usize) -> Option<Chart> {
    let mut lines = vec![];
    for g in scales {
        let pts = read_points(&sample_file(root, r, step, *g, "parquet"), SCATTER_POINTS)?;
        lines.push(Line {
            label: format!("s = {g}"),
            points: pts.into_iter().map(|(x, y)| (x, y, None)).collect(),
            dashed: false,
            markers_only: true,
        });
    }
    let names = crate::eval::quality::column_names(&r.config);
    let name = |j: usize| names.get(j).cloned().unwrap_or_else(|| format!("x{j}"));
    Some(Chart {
        name: format!("guidance_samples_{i}"),
        title: format!(
            "Samples against the guidance scale, p_uncond = {}",
            r.config.train.p_uncond
        ),
        x_label: name(0),
        y_label: name(1),
        log_y: false,
        body: Body::Lines(lines),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_scales_are_picked_from_the_ends_and_between() {
        let all = [1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0];
        assert_eq!(pick(&all), vec![1.0, 2.0, 5.0, 10.0]);
        assert_eq!(pick(&[1.0, 3.0]), vec![1.0, 3.0]);
        assert_eq!(pick(&[1.0, 2.0, 3.0, 4.0, 5.0]), vec![1.0, 2.0, 4.0, 5.0]);
    }

    #[test]
    fn joined_grids_are_side_by_side_enlarged_with_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
        image::RgbImage::from_pixel(3, 2, image::Rgb([0, 0, 0]))
            .save(&a)
            .unwrap();
        image::RgbImage::from_pixel(3, 4, image::Rgb([9, 9, 9]))
            .save(&b)
            .unwrap();
        let dst = dir.path().join("joined.png");
        join_grids(&[a, b], &dst, 2).unwrap();
        let img = image::open(&dst).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (6 + GAP + 6, 8));
        assert_eq!(img.get_pixel(5, 3), &image::Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(6, 0), &image::Rgb([255, 255, 255]));
        assert_eq!(img.get_pixel(6 + GAP, 7), &image::Rgb([9, 9, 9]));
        // Below the shorter grid: white.
        assert_eq!(img.get_pixel(0, 6), &image::Rgb([255, 255, 255]));
    }
}
