//! Reports: a sweep folder read back ([`collect`]), aggregated into Polars
//! tables ([`tables`]), drawn as charts ([`charts`]), and written up as
//! `report.md` and a self-contained `report.html` ([`document`]) whose
//! findings are computed from the data ([`findings`]).
//!
//! `ddpm-lab report results/<sweep>` re-aggregates any sweep, partial ones
//! included; a sweep calls it when it ends. Everything is regenerated from
//! the run folders, so a report can be rebuilt at any time and never holds
//! numbers the tables do not.

pub mod charts;
pub mod collect;
pub mod document;
pub mod findings;
pub mod stats;
pub mod tables;

use crate::run::Weights;
use charts::{Body, Chart, Line};
use collect::{RunData, SweepData};
use document::Block;
use stats::summarize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Collect(#[from] collect::CollectError),
    #[error("{0}")]
    Write(String),
}

impl ReportError {
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ReportError::Collect(_))
    }
}

/// How to report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Moving-average window of the training curves (points of the log).
    pub smoothing: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { smoothing: 5 }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    pub report_md: PathBuf,
    pub report_html: PathBuf,
    pub tables: Vec<PathBuf>,
    pub charts: Vec<PathBuf>,
    pub runs: usize,
    pub completed: usize,
    pub not_completed: Vec<(String, String)>,
    /// Evaluation tables that exist but could not be read (left out).
    pub unreadable: Vec<String>,
}

/// The `[report]` table of a resolved spec (`spec.toml`), if any.
pub fn options_from_spec(spec_text: &str) -> ReportOptions {
    let mut o = ReportOptions::default();
    if let Ok(v) = spec_text.parse::<toml::Table>() {
        if let Some(w) = v
            .get("report")
            .and_then(|r| r.get("smoothing"))
            .and_then(|w| w.as_integer())
        {
            o.smoothing = w.max(1) as usize;
        }
    }
    o
}

fn completed<'a>(runs: &[&'a RunData]) -> Vec<&'a RunData> {
    runs.iter().copied().filter(|r| r.completed()).collect()
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

/// The runs of each variant that are distinct jobs (runs sharing a job share its numbers).
fn unique_jobs<'a>(runs: &[&'a RunData]) -> Vec<&'a RunData> {
    let mut seen: Vec<&str> = vec![];
    let mut out = vec![];
    for r in runs {
        if !seen.contains(&r.job.as_str()) {
            seen.push(&r.job);
            out.push(*r);
        }
    }
    out
}

fn build_charts(
    s: &SweepData,
    variants: &[(String, Vec<&RunData>)],
    headline: &[String],
    rows: &[tables::SummaryRow],
    window: usize,
) -> Vec<(Chart, String)> {
    let mut out = vec![];
    // 1. Training loss, smoothed, per variant (mean over seeds).
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
    if !lines.is_empty() {
        out.push((
            Chart {
                name: "loss_curves".into(),
                title: format!("Training loss (moving average of {window} log points)"),
                x_label: "training step".into(),
                y_label: "loss (the run's weighting)".into(),
                log_y: true,
                body: Body::Lines(lines),
            },
            "Training loss per variant, smoothed, mean over seeds.".into(),
        ));
    }
    // 2. The per-timestep loss profile per variant: one line per evaluation step; raw dashed.
    for (i, (label, runs)) in variants.iter().enumerate() {
        let Some(r) = completed(runs).into_iter().next().or(runs.first().copied()) else {
            continue;
        };
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
    // 3. Each headline metric against training step, per variant; 4. bars with CIs.
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
    // 5. Sample quality against bits/dim.
    if let Some(q) = headline
        .iter()
        .find(|m| m.starts_with("fd_") || *m == "fid")
    {
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
        if pts.len() > 1 {
            out.push((
                Chart {
                    name: "quality_vs_bpd".into(),
                    title: format!("{q} against bits/dim"),
                    x_label: "bits/dim".into(),
                    y_label: q.clone(),
                    log_y: false,
                    body: Body::Lines(pts),
                },
                "Sample quality against likelihood, one point per variant (exercise 3).".into(),
            ));
        }
    }
    // 6. Guidance: metric against scale, one line per p_uncond; heatmap; precision–recall.
    out.extend(guidance_charts(s, headline));
    out
}

/// (p_uncond, guidance) → mean final value of `metric` over distinct jobs.
fn guidance_grid(s: &SweepData, metric: &str) -> GuidanceGrid {
    let mut grid = GuidanceGrid::new();
    let all: Vec<&RunData> = s.runs.iter().filter(|r| r.completed()).collect();
    for r in unique_jobs(&all) {
        let Some(last) = r
            .eval
            .iter()
            .filter(|m| m.metric == metric)
            .map(|m| m.step)
            .max()
        else {
            continue;
        };
        for m in r
            .eval
            .iter()
            .filter(|m| m.metric == metric && m.step == last)
        {
            let Some(g) = m.guidance else { continue };
            let p = r.config.train.p_uncond;
            grid.entry(((p * 1e6) as i64, (g * 1e6) as i64))
                .or_insert((p, g, vec![]))
                .2
                .push(m.value);
        }
    }
    grid
}

type GuidanceGrid = BTreeMap<(i64, i64), (f64, f64, Vec<f64>)>;

/// The p_uncond values of a guidance grid, ascending.
fn p_unconds(grid: &GuidanceGrid) -> Vec<f64> {
    let mut ps: Vec<f64> = grid.values().map(|v| v.0).collect();
    ps.sort_by(|a, b| a.total_cmp(b));
    ps.dedup();
    ps
}

fn guidance_charts(s: &SweepData, headline: &[String]) -> Vec<(Chart, String)> {
    let mut out = vec![];
    let scales: Vec<f64> = {
        let mut v: Vec<f64> = s
            .runs
            .iter()
            .flat_map(|r| r.eval.iter().filter_map(|m| m.guidance))
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.dedup();
        v
    };
    if scales.len() < 2 {
        return out;
    }
    for (mi, metric) in headline.iter().enumerate() {
        if metric.starts_with("bpd") || metric == "final_loss" {
            continue;
        }
        let grid = guidance_grid(s, metric);
        if grid.is_empty() {
            continue;
        }
        let ps = p_unconds(&grid);
        let lines: Vec<Line> = ps
            .iter()
            .map(|&p| Line {
                label: format!("p_uncond = {p}"),
                points: grid
                    .values()
                    .filter(|v| v.0 == p)
                    .map(|v| {
                        let st = summarize(&v.2);
                        (v.1, st.mean, st.ci95.is_finite().then_some(st.ci95))
                    })
                    .collect(),
                dashed: false,
                markers_only: false,
            })
            .collect();
        out.push((
            Chart {
                name: format!("guidance_{mi}"),
                title: format!("{metric} against the guidance scale"),
                x_label: "guidance scale s".into(),
                y_label: metric.clone(),
                log_y: false,
                body: Body::Lines(lines),
            },
            format!("{metric} at the final checkpoint against the guidance scale, one line per p_uncond (exercise 5)."),
        ));
        if ps.len() > 1 {
            let values: Vec<Vec<f64>> = ps
                .iter()
                .map(|&p| {
                    scales
                        .iter()
                        .map(|&g| {
                            grid.values()
                                .find(|v| v.0 == p && v.1 == g)
                                .map_or(f64::NAN, |v| summarize(&v.2).mean)
                        })
                        .collect()
                })
                .collect();
            out.push((
                Chart {
                    name: format!("guidance_heatmap_{mi}"),
                    title: format!("{metric}: p_uncond × guidance scale"),
                    x_label: "guidance scale s".into(),
                    y_label: "p_uncond".into(),
                    log_y: false,
                    body: Body::Heatmap {
                        rows: ps.iter().map(|p| p.to_string()).collect(),
                        cols: scales.iter().map(|g| g.to_string()).collect(),
                        values,
                    },
                },
                format!("{metric} for each p_uncond and guidance scale (mean over seeds)."),
            ));
        }
    }
    let (prec, rec) = (
        headline.iter().find(|m| m.starts_with("precision_")),
        headline.iter().find(|m| m.starts_with("recall_")),
    );
    if let (Some(pm), Some(rm)) = (prec, rec) {
        let (gp, gr) = (guidance_grid(s, pm), guidance_grid(s, rm));
        let ps = p_unconds(&gp);
        let lines: Vec<Line> = ps
            .iter()
            .map(|&p| Line {
                label: format!("p_uncond = {p}"),
                points: gp
                    .iter()
                    .filter(|(_, v)| v.0 == p)
                    .filter_map(|(k, v)| {
                        let r = gr.get(k)?;
                        Some((summarize(&r.2).mean, summarize(&v.2).mean, None))
                    })
                    .collect(),
                dashed: false,
                markers_only: false,
            })
            .collect();
        out.push((
            Chart {
                name: "precision_recall".into(),
                title: "Precision against recall across guidance scales".into(),
                x_label: rm.clone(),
                y_label: pm.clone(),
                log_y: false,
                body: Body::Lines(lines),
            },
            "The quality–diversity trade-off: each point a guidance scale, one line per p_uncond."
                .into(),
        ));
    }
    out
}

/// The short name of the i-th variant in charts: V1, V2, …
pub fn variant_key(i: usize) -> String {
    format!("V{}", i + 1)
}

/// Guidance findings (exercise 5): per p_uncond, the scale where each of the
/// quality metrics is best, against scale 1 and the largest scale.
fn guidance_notes(s: &SweepData, headline: &[String]) -> Vec<String> {
    let mut out = vec![];
    for metric in headline
        .iter()
        .filter(|m| m.starts_with("fd_") || *m == "fid" || m.starts_with("class_accuracy_"))
    {
        let grid = guidance_grid(s, metric);
        let lower = findings::lower_is_better(metric).unwrap_or(true);
        for p in p_unconds(&grid) {
            let mut pts: Vec<(f64, f64, usize)> = grid
                .values()
                .filter(|v| v.0 == p)
                .map(|v| (v.1, summarize(&v.2).mean, v.2.len()))
                .collect();
            if pts.len() < 2 {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let best = pts
                .iter()
                .copied()
                .reduce(|a, b| if (b.1 < a.1) == lower { b } else { a })
                .unwrap_or(pts[0]);
            let (first, last) = (pts[0], pts[pts.len() - 1]);
            let n = pts.iter().map(|x| x.2).min().unwrap_or(0);
            out.push(format!(
                "p_uncond = {p}: {metric} is best at guidance {} ({:.4}), against {:.4} at {} and {:.4} at {} ({} seed(s){}).",
                best.0,
                best.1,
                first.1,
                first.0,
                last.1,
                last.0,
                n,
                if n < 2 { "; no interval" } else { "" }
            ));
        }
    }
    out
}

/// The commit the binary was built from (set by build.rs when built in a git checkout).
pub fn tool_commit() -> &'static str {
    option_env!("DDPMLAB_BUILD_COMMIT").unwrap_or("unknown")
}

/// The question an axis asks, where the chapter has one.
fn question(axis: &str) -> Option<&'static str> {
    Some(match axis {
        "diffusion.prediction" => "Exercise 1: which prediction target (ε, x₀ or v) trains best?",
        "ema.decay" => "Exercise 2: do EMA weights beat the raw weights?",
        "diffusion.weighting" | "diffusion.loss_weighting" => {
            "Exercise 3: how does the loss weighting trade sample quality against bits/dim?"
        }
        "train.p_uncond" | "eval.guidance_scale" => {
            "Exercise 5: how do CFG dropout and the guidance scale trade quality against diversity?"
        }
        _ => return None,
    })
}

/// Aggregate `root` (a sweep folder) into tables, charts and the report.
pub fn report(root: &Path, opts: &ReportOptions) -> Result<ReportOutcome, ReportError> {
    let s = collect::collect(root)?;
    let werr = ReportError::Write;
    let variants = tables::by_variant(&s);
    let rows = tables::summary_rows(&s);
    let tdir = root.join("tables");
    let mut written = vec![];
    for (name, df) in [
        ("runs", tables::runs_table(&s)),
        ("curves", tables::curves_table(&s, opts.smoothing)),
        ("timestep_profile", tables::timestep_table(&s)),
        ("eval", tables::eval_table(&s)),
        ("summary", tables::summary_table(&rows)),
    ] {
        let mut df = df.map_err(|e| werr(format!("building the {name} table: {e}")))?;
        tables::write_table(&tdir, name, &mut df).map_err(werr)?;
        written.push(tdir.join(format!("{name}.parquet")));
    }
    let metric_names: Vec<String> = {
        let mut m: Vec<String> = rows.iter().map(|r| r.metric.clone()).collect();
        m.sort();
        m.dedup();
        m
    };
    let headline = findings::headline(&metric_names);
    let cdir = root.join("charts");
    let mut chart_paths = vec![];
    let mut chart_blocks = vec![];
    for (c, caption) in build_charts(&s, &variants, &headline, &rows, opts.smoothing) {
        let png = charts::render(&c, &cdir).map_err(werr)?;
        chart_blocks.push(Block::Image {
            path: PathBuf::from("charts").join(png.file_name().unwrap_or_default()),
            caption,
        });
        chart_paths.push(png);
    }
    // Sample grids: each variant's final grid (first completed seed, its weights and guidance).
    let mut grids = vec![];
    for (i, (label, runs)) in variants.iter().enumerate() {
        let Some(r) = completed(runs).into_iter().next() else {
            continue;
        };
        let samples = root.join("jobs").join(&r.job).join("eval/samples");
        let step = r.eval.iter().map(|m| m.step).max();
        let Some(step) = step else { continue };
        let g = r.config.eval.guidance_scale;
        let src = samples.join(format!("step-{step}_{}_g{g}.png", r.weights));
        if src.exists() {
            let dst = cdir.join(format!("samples_{i}.png"));
            std::fs::create_dir_all(&cdir).map_err(|e| werr(format!("{}: {e}", cdir.display())))?;
            std::fs::copy(&src, &dst).map_err(|e| werr(format!("{}: {e}", dst.display())))?;
            grids.push(Block::Image {
                path: PathBuf::from("charts").join(format!("samples_{i}.png")),
                caption: format!(
                    "Samples of {label} at step {step} ({}, guidance {g})",
                    r.weights
                ),
            });
            chart_paths.push(dst);
        }
    }

    // Charts of an earlier report that this one did not draw (fewer
    // variants, say) would sit beside the new ones as if current.
    let drawn: Vec<_> = chart_paths.iter().filter_map(|p| p.file_stem()).collect();
    for e in std::fs::read_dir(&cdir).into_iter().flatten().flatten() {
        let p = e.path();
        let chart = p.extension().is_some_and(|x| x == "png" || x == "svg");
        if chart && !p.file_stem().is_some_and(|s| drawn.contains(&s)) {
            let _ = std::fs::remove_file(&p);
        }
    }

    // The document.
    let mut b = vec![Block::Heading(1, format!("Report: {}", s.name))];
    if !s.description.is_empty() {
        b.push(Block::Para(s.description.clone()));
    }
    let done = s.runs.iter().filter(|r| r.completed()).count();
    let wall: f64 = {
        let all: Vec<&RunData> = s.runs.iter().collect();
        unique_jobs(&all).iter().map(|r| r.wall_time_s).sum()
    };
    b.push(Block::Heading(2, "What was run".into()));
    b.push(Block::List(vec![
        format!(
            "{} runs in {} variants; {done} completed.",
            s.runs.len(),
            variants.len()
        ),
        format!(
            "Tool: ddpm-lab {} (commit `{}`).",
            env!("CARGO_PKG_VERSION"),
            tool_commit()
        ),
        format!(
            "Devices: {}.",
            if s.devices.is_empty() {
                "unknown".to_string()
            } else {
                s.devices.join(", ")
            }
        ),
        format!("Training wall time: {:.0} s over all jobs.", wall),
        format!(
            "Folder: `{}`; tables under `tables/`, charts under `charts/`.",
            s.root.display()
        ),
    ]));
    let not_done: Vec<(String, String)> = s
        .runs
        .iter()
        .filter(|r| !r.completed())
        .map(|r| {
            (
                r.id.clone(),
                format!(
                    "{}{}",
                    collect::state_label(r.state),
                    if r.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.reason)
                    }
                ),
            )
        })
        .collect();
    if !not_done.is_empty() {
        b.push(Block::Heading(3, "Runs that did not complete".into()));
        b.push(Block::Para(format!(
            "{} of {} runs are not in the numbers below (a partial sweep: run `ddpm-lab sweep` again to finish it).",
            not_done.len(),
            s.runs.len()
        )));
        b.push(Block::Table {
            header: vec!["run".into(), "state".into()],
            rows: not_done
                .iter()
                .map(|(a, c)| vec![a.clone(), c.clone()])
                .collect(),
        });
    }
    if !s.unreadable.is_empty() {
        b.push(Block::Heading(
            3,
            "Evaluation tables that could not be read".into(),
        ));
        b.push(Block::Para(
            "Their rows are missing from the numbers below. Delete the job's `eval/` folder and run `ddpm-lab sweep` again (or `ddpm-lab eval` on the job) to evaluate it anew.".into(),
        ));
        b.push(Block::List(s.unreadable.clone()));
    }
    if !s.orphans.is_empty() {
        b.push(Block::Para(format!(
            "Run folders not in the current plan (an earlier version of the spec), not aggregated: {}.",
            s.orphans.join(", ")
        )));
    }
    b.push(Block::Heading(2, "Results".into()));
    let labels: Vec<String> = variants.iter().map(|(l, _)| l.clone()).collect();
    let shown: Vec<&String> = headline.iter().take(6).collect();
    if !shown.is_empty() {
        let mut header = vec!["key".to_string(), "variant".to_string()];
        header.extend(shown.iter().map(|m| format!("{m} (95% CI)")));
        b.push(Block::Table {
            header,
            rows: labels
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let mut row = vec![variant_key(i), l.clone()];
                    for m in &shown {
                        row.push(
                            rows.iter()
                                .find(|r| &r.variant == l && &r.metric == *m)
                                .map_or("—".into(), |r| findings::mean_ci(&r.stats)),
                        );
                    }
                    row
                })
                .collect(),
        });
    }
    let mut questions: Vec<&str> = s.axes().iter().filter_map(|a| question(a)).collect();
    questions.dedup();
    b.push(Block::Heading(2, "Findings".into()));
    if !questions.is_empty() {
        b.push(Block::Para(format!(
            "The question: {}",
            questions.join(" ")
        )));
    }
    let mut f = vec![];
    if labels.len() > 1 {
        b.push(Block::Para(format!(
            "Each variant against `{}` (the first in the spec), on the final metrics; intervals are 95% (Welch).",
            labels[0]
        )));
        // The leading metrics; every number is in the tables below.
        for m in headline.iter().take(3) {
            f.extend(findings::comparisons(&rows, &labels, m));
        }
    }
    f.extend(guidance_notes(&s, &headline));
    f.extend(findings::timestep_notes(&variants));
    f.extend(findings::ema_warmup_notes(&s));
    if f.is_empty() {
        f.push("Nothing to compare yet: one variant, or no completed runs.".into());
    }
    b.push(Block::List(f));
    if !chart_blocks.is_empty() {
        b.push(Block::Heading(2, "Charts".into()));
        b.extend(chart_blocks);
    }
    if !grids.is_empty() {
        b.push(Block::Heading(2, "Samples".into()));
        b.extend(grids);
    }
    b.push(Block::Heading(2, "All final metrics".into()));
    b.push(Block::Table {
        header: ["variant", "metric", "n", "mean", "std", "95% CI"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.variant.clone(),
                    r.metric.clone(),
                    r.stats.n.to_string(),
                    format!("{:.6}", r.stats.mean),
                    format!("{:.6}", r.stats.std),
                    format!("{:.6}", r.stats.ci95),
                ]
            })
            .collect(),
    });
    if !s.spec_text.is_empty() {
        b.push(Block::Heading(2, "The spec".into()));
        b.push(Block::Code(s.spec_text.clone()));
    }
    let md_path = root.join("report.md");
    let html_path = root.join("report.html");
    let write = |p: &Path, text: String| -> Result<(), ReportError> {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| werr(format!("{}: {e}", p.display())))?;
        std::fs::rename(&tmp, p).map_err(|e| werr(format!("{}: {e}", p.display())))
    };
    write(&md_path, document::markdown(&b))?;
    write(
        &html_path,
        document::html(&format!("ddpm-lab report: {}", s.name), &b, root),
    )?;
    Ok(ReportOutcome {
        report_md: md_path,
        report_html: html_path,
        tables: written,
        charts: chart_paths,
        runs: s.runs.len(),
        completed: done,
        not_completed: not_done,
        unreadable: s.unreadable.clone(),
    })
}
