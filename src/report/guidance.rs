//! Classifier-free guidance across a sweep (exercise 5): the final value of a
//! metric for each (p_uncond, guidance scale) pair, gathered once
//! ([`guidance_grid`]) and shown three ways — lines and a heatmap against the
//! scale, precision against recall ([`charts`]) — and read as findings
//! ([`notes`]).

use super::charts::{Body, Chart, Line};
use super::collect::{unique_jobs, RunData, SweepData};
use super::findings;
use super::format::num;
use super::stats::summarize;
use std::collections::BTreeMap;

/// (p_uncond, guidance) in millionths → (p_uncond, guidance, values over jobs).
type GuidanceGrid = BTreeMap<(i64, i64), (f64, f64, Vec<f64>)>;

/// (p_uncond, guidance) → final values of `metric` over distinct jobs.
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

/// The p_uncond values of a guidance grid, ascending.
fn p_unconds(grid: &GuidanceGrid) -> Vec<f64> {
    let mut ps: Vec<f64> = grid.values().map(|v| v.0).collect();
    ps.sort_by(|a, b| a.total_cmp(b));
    ps.dedup();
    ps
}

/// Every guidance scale any run was evaluated at, ascending.
fn scales(s: &SweepData) -> Vec<f64> {
    let mut v: Vec<f64> = s
        .runs
        .iter()
        .flat_map(|r| r.eval.iter().filter_map(|m| m.guidance))
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup();
    v
}

/// The guidance charts, with captions: for each headline quality metric, its
/// value against the scale (one line per p_uncond) and, with several
/// p_uncond, a heatmap; then precision against recall. None with fewer than
/// two scales.
pub fn charts(s: &SweepData, headline: &[String]) -> Vec<(Chart, String)> {
    let scales = scales(s);
    if scales.len() < 2 {
        return vec![];
    }
    let mut out = vec![];
    for (mi, metric) in headline.iter().enumerate() {
        if metric.starts_with("bpd") || metric == "final_loss" {
            continue;
        }
        let grid = guidance_grid(s, metric);
        if grid.is_empty() {
            continue;
        }
        out.push(against_scale(mi, metric, &grid));
        if p_unconds(&grid).len() > 1 {
            out.push(heatmap(mi, metric, &grid, &scales));
        }
    }
    out.extend(precision_recall(s, headline));
    out
}

/// `metric` against the guidance scale, one line per p_uncond.
fn against_scale(mi: usize, metric: &str, grid: &GuidanceGrid) -> (Chart, String) {
    let lines: Vec<Line> = p_unconds(grid)
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
    (
        Chart {
            name: format!("guidance_{mi}"),
            title: format!("{metric} against the guidance scale"),
            x_label: "guidance scale s".into(),
            y_label: metric.to_string(),
            log_y: true,
            body: Body::Lines(lines),
        },
        format!("{metric} at the final checkpoint against the guidance scale, one line per p_uncond (exercise 5)."),
    )
}

/// `metric` for each p_uncond (rows) and guidance scale (columns).
fn heatmap(mi: usize, metric: &str, grid: &GuidanceGrid, scales: &[f64]) -> (Chart, String) {
    let ps = p_unconds(grid);
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
    (
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
    )
}

/// Precision against recall, each point a guidance scale, one line per
/// p_uncond; when the headline has both.
fn precision_recall(s: &SweepData, headline: &[String]) -> Option<(Chart, String)> {
    let pm = headline.iter().find(|m| m.starts_with("precision_"))?;
    let rm = headline.iter().find(|m| m.starts_with("recall_"))?;
    let (gp, gr) = (guidance_grid(s, pm), guidance_grid(s, rm));
    let lines: Vec<Line> = p_unconds(&gp)
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
    Some((
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
    ))
}

/// Guidance findings (exercise 5): per p_uncond, the scale where each of the
/// quality metrics is best, against the smallest and the largest scale.
pub fn notes(s: &SweepData, headline: &[String]) -> Vec<String> {
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
                "p_uncond = {p}: {metric} is best at guidance {} ({}), against {} at {} and {} at {} ({} seed(s){}).",
                best.0,
                num(best.1),
                num(first.1),
                first.0,
                num(last.1),
                last.0,
                n,
                if n < 2 { "; no interval" } else { "" }
            ));
        }
    }
    out
}
