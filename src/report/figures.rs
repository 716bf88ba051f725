//! The report's figures: which charts a sweep gets, described as data
//! ([`Chart`]) from its runs and summary rows ([`build`]), then drawn under
//! `charts/` by [`super::charts`] ([`draw`]); each variant's sample grid
//! copied beside them ([`sample_grids`]); and the figures of an earlier
//! report that this one did not draw removed ([`remove_stale`]).

use super::charts::{self, Body, Chart, Line};
use super::collect::{completed, unique_jobs, RunData, SweepData};
use super::document::Block;
use super::stats::{self, summarize};
use super::tables::SummaryRow;
use super::{guidance, variant_key, ReportError};
use crate::run::{EvalDir, EvalKeys, SweepDir, Weights};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The runs of each variant, by variant label, in spec order.
type Variants<'a> = [(String, Vec<&'a RunData>)];

/// Every chart of the report, with its caption, in the report's order.
pub fn build(
    s: &SweepData,
    variants: &Variants,
    headline: &[String],
    rows: &[SummaryRow],
    window: usize,
) -> Vec<(Chart, String)> {
    let mut out = vec![];
    out.extend(loss_curves(variants, window));
    out.extend(timestep_profiles(variants));
    out.extend(metrics_vs_step(variants, headline));
    out.extend(final_bars(variants, headline, rows));
    out.extend(quality_vs_bpd(variants, headline, rows));
    out.extend(metric_vs_std_rel(variants, headline, rows));
    out.extend(guidance::charts(s, headline));
    out
}

/// Each headline metric (FD and bits/dim on images) against the post-hoc
/// EMA length σ_rel, one
/// point per `phema-<σ>` variant with its interval over seeds (the EDM2
/// figure); when at least two lengths were evaluated.
fn metric_vs_std_rel(
    variants: &Variants,
    headline: &[String],
    rows: &[SummaryRow],
) -> Vec<(Chart, String)> {
    let mut out = vec![];
    let charted = headline.iter().filter(|m| *m != "final_loss");
    for (mi, metric) in charted.enumerate() {
        let mut pts: Vec<(f64, f64, Option<f64>)> = variants
            .iter()
            .filter_map(|(label, runs)| {
                let std_rel = runs.first()?.weights.std_rel()?;
                let r = rows
                    .iter()
                    .find(|r| &r.variant == label && &r.metric == metric)?;
                Some((
                    std_rel,
                    r.stats.mean,
                    r.stats.ci95.is_finite().then_some(r.stats.ci95),
                ))
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if pts.len() < 2 {
            continue;
        }
        out.push((
            Chart {
                name: format!("std_rel_{mi}"),
                title: format!("Final {metric} against the post-hoc EMA length"),
                x_label: "EMA length σ_rel (std of the averaging profile / training time)".into(),
                y_label: metric.clone(),
                log_y: false,
                body: Body::Lines(vec![Line {
                    label: format!("phema-σ_rel, {metric}"),
                    points: pts,
                    dashed: false,
                    markers_only: false,
                }]),
            },
            format!("Final {metric} of the post-hoc EMA reconstructed at each length σ_rel from one training per seed: mean over seeds with its 95% Student-t interval. The lowest point is the best averaging length for this run length; a flat curve says the choice hardly matters."),
        ));
    }
    out
}

/// Mean over runs of a per-run series keyed by x.
fn mean_series(series: Vec<Vec<(f64, f64)>>) -> Vec<(f64, f64, Option<f64>)> {
    let mut by_x: BTreeMap<i64, (f64, Vec<f64>)> = BTreeMap::new();
    for s in series {
        for (x, y) in s {
            by_x.entry((x * 1e6).round() as i64)
                .or_insert((x, vec![]))
                .1
                .push(y);
        }
    }
    by_x.into_values()
        .map(|(x, ys)| {
            let s = summarize(&ys);
            (x, s.mean, s.ci95.is_finite().then_some(s.ci95))
        })
        .collect()
}

/// Training loss, smoothed, per variant (mean over seeds). Variants that
/// share their training jobs (they differ only in evaluation settings) have
/// one curve, labelled with all of their keys.
fn loss_curves(variants: &Variants, window: usize) -> Option<(Chart, String)> {
    let mut shared: Vec<(Vec<String>, Vec<usize>)> = vec![];
    for (i, (_, runs)) in variants.iter().enumerate() {
        let mut jobs: Vec<String> = runs.iter().map(|r| r.job.clone()).collect();
        jobs.sort();
        jobs.dedup();
        match shared.iter_mut().find(|(j, _)| *j == jobs) {
            Some((_, members)) => members.push(i),
            None => shared.push((jobs, vec![i])),
        }
    }
    let lines: Vec<Line> = shared
        .iter()
        .map(|(_, members)| {
            let runs = unique_jobs(&variants[members[0]].1);
            let label = match members.as_slice() {
                [one] => variants[*one].0.clone(),
                many => format!(
                    "{} (one training)",
                    many.iter()
                        .map(|&i| variant_key(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            Line {
                label,
                points: mean_series(
                    runs.iter()
                        .map(|r| {
                            let l: Vec<f64> = r.log.iter().map(|x| x.loss).collect();
                            stats::smooth(&l, window)
                                .into_iter()
                                .zip(&r.log)
                                .map(|(y, rec)| (rec.step as f64, y))
                                .collect()
                        })
                        .collect(),
                )
                .into_iter()
                .map(|(x, y, _)| (x, y, None))
                .collect(),
                dashed: false,
                markers_only: false,
            }
        })
        .filter(|l| !l.points.is_empty())
        .collect();
    let caption = if shared.iter().any(|(_, m)| m.len() > 1) {
        "Training loss, smoothed, mean over seeds; variants that share their training jobs (they differ only in how they are evaluated) are one curve, named by their keys."
    } else {
        "Training loss per variant, smoothed, mean over seeds."
    };
    (!lines.is_empty()).then(|| {
        (
            Chart {
                name: "loss_curves".into(),
                title: format!("Training loss (moving average of {window} log points)"),
                x_label: "training step".into(),
                y_label: "loss (the run's weighting)".into(),
                log_y: true,
                body: Body::Lines(lines),
            },
            caption.into(),
        )
    })
}

/// The per-timestep loss profile per variant (of its first completed run,
/// else its first run): one line per evaluation step; raw weights dashed.
fn timestep_profiles(variants: &Variants) -> Vec<(Chart, String)> {
    let mut out = vec![];
    for (i, (label, runs)) in variants.iter().enumerate() {
        let Some(r) = completed(runs).into_iter().next().or(runs.first().copied()) else {
            continue;
        };
        let lines = timestep_lines(r);
        if !lines.is_empty() {
            out.push((
                Chart {
                    name: format!("timestep_profile_{i}"),
                    title: format!("Per-timestep loss: {label}"),
                    x_label: "timestep t (bin centre)".into(),
                    y_label: "unweighted loss".into(),
                    log_y: true,
                    body: Body::Lines(lines),
                },
                format!("The loss per timestep bin at each evaluation step, run {} ({}; raw weights dashed).", r.id, r.weights),
            ));
        }
    }
    out
}

/// One line per evaluation step of the run's own weights, then (for
/// non-raw weights) one dashed line per step of the raw weights.
fn timestep_lines(r: &RunData) -> Vec<Line> {
    let mut steps: Vec<u64> = r.timestep.iter().map(|t| t.step).collect();
    steps.sort();
    steps.dedup();
    let mut lines = vec![];
    for w in [r.weights, Weights::Raw] {
        if w == Weights::Raw && r.weights == Weights::Raw && !lines.is_empty() {
            break;
        }
        for &st in &steps {
            let pts: Vec<(f64, f64, Option<f64>)> = r
                .timestep
                .iter()
                .filter(|t| t.step == st && t.weights == w)
                .map(|t| ((t.t_lo + t.t_hi) as f64 / 2.0, t.loss_unweighted, None))
                .collect();
            if !pts.is_empty() {
                lines.push(Line {
                    label: format!("step {st} ({w})"),
                    points: pts,
                    dashed: w == Weights::Raw && r.weights != Weights::Raw,
                    markers_only: false,
                });
            }
        }
    }
    lines
}

/// Each headline metric against the training step, per variant (mean over
/// its distinct jobs, at each run's own guidance scale); when some variant
/// has more than one evaluation point.
fn metrics_vs_step(variants: &Variants, headline: &[String]) -> Vec<(Chart, String)> {
    let mut out = vec![];
    for (mi, metric) in headline.iter().enumerate() {
        if metric == "final_loss" {
            continue;
        }
        let lines: Vec<Line> = variants
            .iter()
            .map(|(label, runs)| {
                let series = unique_jobs(runs)
                    .iter()
                    .map(|r| {
                        let g = r.config.eval.guidance_scale;
                        r.eval
                            .iter()
                            .filter(|m| m.metric == *metric && m.guidance.is_none_or(|x| x == g))
                            .map(|m| (m.step as f64, m.value))
                            .collect()
                    })
                    .collect();
                Line {
                    label: label.clone(),
                    points: mean_series(series),
                    dashed: false,
                    markers_only: false,
                }
            })
            .filter(|l| !l.points.is_empty())
            .collect();
        if lines.iter().any(|l| l.points.len() > 1) {
            let all: Vec<&RunData> = variants
                .iter()
                .flat_map(|(_, r)| r.iter().copied())
                .collect();
            let mut lines = lines;
            lines.extend(floor_line(&all, metric, &lines));
            out.push((
                Chart {
                    name: format!("metric_vs_step_{mi}"),
                    title: format!("{metric} during training"),
                    x_label: "training step".into(),
                    y_label: metric.clone(),
                    log_y: true,
                    body: Body::Lines(lines),
                },
                format!("{metric} at each evaluation point, mean over seeds with 95% intervals."),
            ));
        }
    }
    out
}

/// The floor of a Fréchet distance (`floor_fd_<evaluator>`, `floor_fid`:
/// real images against the same reference at the same sample count), mean
/// over `runs`' last recorded values, as a dashed line across the x range
/// of `lines`; None for other metrics or when no run recorded it.
pub fn floor_line(runs: &[&RunData], metric: &str, lines: &[Line]) -> Option<Line> {
    if !(metric.starts_with("fd_") || metric == "fid") {
        return None;
    }
    let floor = format!("floor_{metric}");
    let values: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            r.eval
                .iter()
                .filter(|m| m.metric == floor)
                .max_by_key(|m| m.step)
                .map(|m| m.value)
        })
        .collect();
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if values.is_empty() || !lo.is_finite() {
        return None;
    }
    let v = super::stats::summarize(&values).mean;
    Some(Line {
        label: format!("floor: real vs real ({})", super::format::num(v)),
        points: vec![(lo, v, None), (hi, v, None)],
        dashed: true,
        markers_only: false,
    })
}

/// Each headline metric's final value per variant, as bars with their
/// intervals; when more than one variant has it.
fn final_bars(
    variants: &Variants,
    headline: &[String],
    rows: &[SummaryRow],
) -> Vec<(Chart, String)> {
    let mut out = vec![];
    for (mi, metric) in headline.iter().enumerate() {
        let bars: Vec<(String, f64, Option<f64>)> = variants
            .iter()
            .enumerate()
            .filter_map(|(i, (label, _))| {
                let r = rows
                    .iter()
                    .find(|r| &r.variant == label && &r.metric == metric)?;
                Some((
                    variant_key(i),
                    r.stats.mean,
                    r.stats.ci95.is_finite().then_some(r.stats.ci95),
                ))
            })
            .collect();
        if bars.len() > 1 {
            out.push((
                Chart {
                    name: format!("bars_{mi}"),
                    title: format!("Final {metric} per variant"),
                    x_label: "variant (the key is the report's results table)".into(),
                    y_label: metric.clone(),
                    log_y: false,
                    body: Body::Bars(bars),
                },
                format!("Final {metric}: mean over seeds with its 95% Student-t interval."),
            ));
        }
    }
    out
}

/// Sample quality (the first Fréchet distance of the headline) against
/// bits/dim, one point per variant; when more than one variant has both.
fn quality_vs_bpd(
    variants: &Variants,
    headline: &[String],
    rows: &[SummaryRow],
) -> Option<(Chart, String)> {
    let q = headline
        .iter()
        .find(|m| m.starts_with("fd_") || *m == "fid")?;
    let pts: Vec<Line> = variants
        .iter()
        .filter_map(|(label, _)| {
            let get = |m: &str| rows.iter().find(|r| &r.variant == label && r.metric == m);
            let (b, f) = (get("bpd")?, get(q)?);
            Some(Line {
                label: label.clone(),
                points: vec![(
                    b.stats.mean,
                    f.stats.mean,
                    f.stats.ci95.is_finite().then_some(f.stats.ci95),
                )],
                dashed: false,
                markers_only: true,
            })
        })
        .collect();
    (pts.len() > 1).then(|| {
        (
            Chart {
                name: "quality_vs_bpd".into(),
                title: format!("{q} against bits/dim"),
                x_label: "bits/dim".into(),
                y_label: q.clone(),
                log_y: true,
                body: Body::Lines(pts),
            },
            "Sample quality against likelihood, one point per variant (exercise 3).".into(),
        )
    })
}

/// Draw `charts` under `dir`: the report's image blocks (paths relative to
/// the sweep folder) and the PNGs written.
pub fn draw(
    charts: Vec<(Chart, String)>,
    dir: &Path,
) -> Result<(Vec<Block>, Vec<PathBuf>), ReportError> {
    let mut blocks = vec![];
    let mut paths = vec![];
    for (c, caption) in charts {
        let png = charts::render(&c, dir)?;
        blocks.push(Block::Image {
            path: PathBuf::from("charts").join(png.file_name().unwrap_or_default()),
            caption,
        });
        paths.push(png);
    }
    Ok((blocks, paths))
}

/// Copy each variant's final sample grid (its first completed run's, at that
/// run's weights and guidance scale) into `dir` as `samples_<i>.png`: the
/// report's image blocks and the copies. Variants without one are skipped.
pub fn sample_grids(
    root: &Path,
    variants: &Variants,
    dir: &Path,
) -> Result<(Vec<Block>, Vec<PathBuf>), ReportError> {
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ReportError::Write { path, error }
    };
    let mut blocks = vec![];
    let mut paths = vec![];
    for (i, (label, runs)) in variants.iter().enumerate() {
        let Some(r) = completed(runs).into_iter().next() else {
            continue;
        };
        let samples = EvalDir::new(SweepDir::at(root).job(&r.job).eval()).samples();
        let Some(step) = r.eval.iter().map(|m| m.step).max() else {
            continue;
        };
        let g = r.config.eval.guidance_scale;
        let key = EvalKeys::of(&r.config.eval).samples;
        let src = samples.join(format!(
            "{}.png",
            EvalDir::sample_stem(step, r.weights, g, &key)
        ));
        if src.exists() {
            let dst = dir.join(format!("samples_{i}.png"));
            std::fs::create_dir_all(dir).map_err(write(dir))?;
            let side = crate::config::data_shape(&r.config)
                .sample
                .last()
                .copied()
                .unwrap_or(64);
            upscaled_copy(&src, &dst, grid_zoom(side)).map_err(write(&dst))?;
            blocks.push(Block::Image {
                path: PathBuf::from("charts").join(format!("samples_{i}.png")),
                caption: format!(
                    "Samples of {label} at step {step} ({}, guidance {g})",
                    r.weights
                ),
            });
            paths.push(dst);
        }
    }
    Ok((blocks, paths))
}

/// How many times a sample grid is enlarged so that each image is at least
/// 64 pixels wide (×5 for 14×14 MNIST, ×2 for 32×32 CIFAR-10).
pub fn grid_zoom(side: i64) -> u32 {
    (64 + side.max(1) - 1).div_euclid(side.max(1)).max(1) as u32
}

/// Copy the PNG `src` to `dst`, each pixel a `zoom` × `zoom` block
/// (nearest neighbour: no new values, so the samples are shown as drawn).
fn upscaled_copy(src: &Path, dst: &Path, zoom: u32) -> std::io::Result<()> {
    let img = image::open(src).map_err(std::io::Error::other)?;
    let big = img.resize_exact(
        img.width() * zoom,
        img.height() * zoom,
        image::imageops::FilterType::Nearest,
    );
    crate::run::atomic::write_with(dst, |tmp| {
        big.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

/// Remove the charts (PNG, SVG) under `dir` that are not `drawn`: those of an
/// earlier report (fewer variants, say) would sit beside the new ones as if
/// current. Other files are the user's and stay.
pub fn remove_stale(dir: &Path, drawn: &[PathBuf]) {
    let drawn: Vec<_> = drawn.iter().filter_map(|p| p.file_stem()).collect();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let chart = p.extension().is_some_and(|x| x == "png" || x == "svg");
        if chart && !p.file_stem().is_some_and(|s| drawn.contains(&s)) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(job: &str, weights: Weights) -> RunData {
        let mut r = crate::report::testing::bare_run(job, weights);
        r.log = (1..=4)
            .map(|i| crate::run::records::LogRecord {
                step: i * 10,
                loss: 1.0 / i as f64,
                loss_unweighted: 1.0,
                loss_q: [None; 4],
                grad_norm: 1.0,
                lr: 1e-3,
                ema_decay: Default::default(),
                loss_scale: 1.0,
                skipped_steps: 0,
                images_per_s: 1.0,
                data_wait_frac: 0.0,
                wall_time_s: 1.0,
            })
            .collect();
        r
    }

    #[test]
    fn variants_that_share_their_training_are_one_loss_curve() {
        let (a, b, c) = (
            run("j1", Weights::Raw),
            run("j1", Weights::ema(0.99)),
            run("j2", Weights::Raw),
        );
        let variants = vec![
            ("raw".to_string(), vec![&a]),
            ("ema".to_string(), vec![&b]),
            ("other".to_string(), vec![&c]),
        ];
        let (chart, caption) = loss_curves(&variants, 1).unwrap();
        let Body::Lines(lines) = chart.body else {
            panic!("lines")
        };
        let labels: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["V1, V2 (one training)", "other"]);
        assert!(caption.contains("share their training jobs"), "{caption}");
        assert_eq!(lines[0].points.len(), 4);
    }

    #[test]
    fn sample_grids_are_enlarged_by_whole_pixels_to_at_least_64_per_image() {
        assert_eq!(
            [14, 28, 32, 64, 128].map(grid_zoom),
            [5, 3, 2, 1, 1],
            "14×14 at least 4×"
        );
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("a.png"), dir.path().join("b.png"));
        let img = image::GrayImage::from_raw(2, 1, vec![10, 200]).unwrap();
        img.save(&src).unwrap();
        upscaled_copy(&src, &dst, 5).unwrap();
        let big = image::open(&dst).unwrap().to_luma8();
        assert_eq!((big.width(), big.height()), (10, 5));
        for (x, y, p) in big.enumerate_pixels() {
            assert_eq!(p.0[0], if x < 5 { 10 } else { 200 }, "({x}, {y})");
        }
    }

    #[test]
    fn the_fd_floor_is_a_dashed_line_at_the_runs_mean_across_the_chart() {
        let runs: Vec<RunData> = [3.0, 5.0]
            .iter()
            .enumerate()
            .map(|(seed, f)| {
                crate::report::testing::fake_run(&[], seed as i64, &[("floor_fd_x", *f)])
            })
            .collect();
        let all: Vec<&RunData> = runs.iter().collect();
        let lines = vec![Line {
            label: "a".into(),
            points: vec![(250.0, 9.0, None), (1000.0, 7.0, None)],
            dashed: false,
            markers_only: false,
        }];
        let floor = floor_line(&all, "fd_x", &lines).unwrap();
        assert!(floor.dashed);
        assert_eq!(floor.points, vec![(250.0, 4.0, None), (1000.0, 4.0, None)]);
        assert_eq!(floor.label, "floor: real vs real (4.00)");
        // No floor for other metrics, or where none was recorded.
        assert!(floor_line(&all, "precision_x", &lines).is_none());
        assert!(floor_line(&all, "fd_y", &lines).is_none());
    }
}
