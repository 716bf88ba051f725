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
    out.extend(guidance::charts(s, headline));
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

/// Training loss, smoothed, per variant (mean over seeds).
fn loss_curves(variants: &Variants, window: usize) -> Option<(Chart, String)> {
    let lines: Vec<Line> = variants
        .iter()
        .map(|(label, runs)| Line {
            label: label.clone(),
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
        })
        .filter(|l| !l.points.is_empty())
        .collect();
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
            "Training loss per variant, smoothed, mean over seeds.".into(),
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
            out.push((
                Chart {
                    name: format!("metric_vs_step_{mi}"),
                    title: format!("{metric} during training"),
                    x_label: "training step".into(),
                    y_label: metric.clone(),
                    log_y: false,
                    body: Body::Lines(lines),
                },
                format!("{metric} at each evaluation point, mean over seeds with 95% intervals."),
            ));
        }
    }
    out
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
                log_y: false,
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
            std::fs::copy(&src, &dst).map_err(write(&dst))?;
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
