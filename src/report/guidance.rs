//! Classifier-free guidance across a sweep (exercise 5): the final value of a
//! metric for each (p_uncond, guidance scale) pair, gathered once
//! ([`guidance_grid`]) and shown four ways — a table of every pair
//! ([`section`]), lines and a heatmap against the scale, precision against
//! recall, the quality–diversity front ([`charts`]) — and read as findings
//! ([`notes`]): where each metric is best, how fidelity and diversity move
//! with the scale, and which p_uncond is best by the stated rule.

use super::charts::{Body, Chart, Line};
use super::collect::{unique_jobs, RunData, SweepData};
use super::document::Block;
use super::findings;
use super::format::num;
use super::stats::summarize;
use std::collections::BTreeMap;

/// Whether a metric depends on the guidance scale and is worth showing
/// against it: the sample-quality metrics, not the per-column statistics.
pub fn is_guidance_metric(m: &str) -> bool {
    ["fd_", "is_", "precision_", "recall_", "class_accuracy_"]
        .iter()
        .any(|p| m.starts_with(p))
        || ["fid", "sliced_wasserstein", "mmd2_rbf"].contains(&m)
}

/// The distance to the data that ranks p_uncond (the stated rule of
/// [`best_p_uncond`]): the first Fréchet distance, else sliced Wasserstein.
pub fn ranking_metric(headline: &[String]) -> Option<&String> {
    headline
        .iter()
        .find(|m| m.starts_with("fd_") || *m == "fid")
        .or_else(|| headline.iter().find(|m| *m == "sliced_wasserstein"))
}

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
        if !is_guidance_metric(metric) {
            continue;
        }
        let grid = guidance_grid(s, metric);
        if grid.is_empty() {
            continue;
        }
        out.push(against_scale(s, mi, metric, &grid));
        if p_unconds(&grid).len() > 1 {
            out.push(heatmap(mi, metric, &grid, &scales));
        }
    }
    out.extend(precision_recall(s, headline));
    out
}

/// `metric` against the guidance scale, one line per p_uncond.
fn against_scale(s: &SweepData, mi: usize, metric: &str, grid: &GuidanceGrid) -> (Chart, String) {
    let mut lines: Vec<Line> = p_unconds(grid)
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
    let all: Vec<&RunData> = s.runs.iter().filter(|r| r.completed()).collect();
    lines.extend(super::figures::floor_line(&all, metric, &lines));
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
    for metric in headline.iter().filter(|m| {
        m.starts_with("fd_")
            || ["fid", "sliced_wasserstein"].contains(&m.as_str())
            || m.starts_with("class_accuracy_")
    }) {
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
    out.extend(trade_off_notes(s, headline));
    out
}

/// The guidance section: every (p_uncond, scale) pair's final values of the
/// guidance metrics (up to five), mean ± 95% CI over seeds, then the best
/// p_uncond by the stated rule. Empty with fewer than two scales.
pub fn section(s: &SweepData, headline: &[String]) -> Vec<Block> {
    if scales(s).len() < 2 {
        return vec![];
    }
    let shown: Vec<&String> = headline
        .iter()
        .filter(|m| is_guidance_metric(m))
        .take(5)
        .collect();
    let grids: Vec<GuidanceGrid> = shown.iter().map(|m| guidance_grid(s, m)).collect();
    let mut keys: Vec<(i64, i64)> = grids.iter().flat_map(|g| g.keys().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut header = vec!["p_uncond".to_string(), "s".to_string()];
    header.extend(shown.iter().map(|m| format!("{m} (95% CI)")));
    let rows = keys
        .iter()
        .map(|k| {
            let mut row = vec![
                (k.0 as f64 / 1e6).to_string(),
                (k.1 as f64 / 1e6).to_string(),
            ];
            row.extend(grids.iter().map(|g| {
                g.get(k)
                    .map_or("—".into(), |v| findings::mean_ci(&summarize(&v.2)))
            }));
            row
        })
        .collect();
    let mut b = vec![
        Block::Heading(2, "Guidance".into()),
        Block::Para(
            "Every p_uncond at every guidance scale s, at the final checkpoint: mean ± 95% CI over seeds (n = the seeds). p_uncond = 0 never learns the unconditional prediction, so it has s = 1 only.".into(),
        ),
        Block::Table { header, rows },
    ];
    b.extend(best_p_uncond(s, headline).map(Block::Para));
    b
}

/// Each completed job's lowest final `metric` over the guidance scales,
/// with the scale, grouped by p_uncond (in millionths).
fn best_per_job(s: &SweepData, metric: &str) -> BTreeMap<i64, Vec<(f64, f64)>> {
    let all: Vec<&RunData> = s.runs.iter().filter(|r| r.completed()).collect();
    let mut out: BTreeMap<i64, Vec<(f64, f64)>> = BTreeMap::new();
    for r in unique_jobs(&all) {
        let rows: Vec<_> = r
            .eval
            .iter()
            .filter(|m| m.metric == metric && m.guidance.is_some() && m.value.is_finite())
            .collect();
        let Some(last) = rows.iter().map(|m| m.step).max() else {
            continue;
        };
        let best = rows
            .iter()
            .filter(|m| m.step == last)
            .map(|m| (m.value, m.guidance.unwrap_or(1.0)))
            .reduce(|a, b| if b.0 < a.0 { b } else { a });
        if let Some(b) = best {
            let p = (r.config.train.p_uncond * 1e6).round() as i64;
            out.entry(p).or_default().push(b);
        }
    }
    out
}

/// The stated rule for the best p_uncond: the lowest distance to the data
/// ([`ranking_metric`]) at each run's own best guidance scale, mean over
/// seeds. A distance to the data counts lost fidelity and lost diversity
/// alike, so its minimum over s is the best point of each front.
pub fn best_p_uncond(s: &SweepData, headline: &[String]) -> Option<String> {
    let metric = ranking_metric(headline)?;
    let per_p = best_per_job(s, metric);
    if per_p.len() < 2 {
        return None;
    }
    let ranked: Vec<(f64, String)> = per_p
        .iter()
        .map(|(p, v)| {
            let vals: Vec<f64> = v.iter().map(|x| x.0).collect();
            let scales: Vec<String> = v.iter().map(|x| x.1.to_string()).collect();
            let st = summarize(&vals);
            (
                st.mean,
                format!(
                    "p_uncond = {}: {} at s = {}",
                    *p as f64 / 1e6,
                    findings::mean_ci(&st),
                    scales.join(", ")
                ),
            )
        })
        .collect();
    let best = ranked
        .iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|b| b.1.clone())?;
    Some(format!(
        "Best p_uncond by the stated rule (the lowest {metric} at each run's best guidance scale, mean over seeds): {best}. All: {}. The verdict above tests the chapter's claim on the same numbers with paired statistics.",
        ranked.iter().map(|r| r.1.as_str()).collect::<Vec<_>>().join("; ")
    ))
}

/// How fidelity and diversity move with the scale, per p_uncond: precision
/// and recall at the smallest and the largest scale.
fn trade_off_notes(s: &SweepData, headline: &[String]) -> Vec<String> {
    let (Some(pm), Some(rm)) = (
        headline.iter().find(|m| m.starts_with("precision_")),
        headline.iter().find(|m| m.starts_with("recall_")),
    ) else {
        return vec![];
    };
    let (gp, gr) = (guidance_grid(s, pm), guidance_grid(s, rm));
    let ends = |g: &GuidanceGrid, p: f64| -> Option<((f64, f64), (f64, f64))> {
        let mut pts: Vec<(f64, f64)> = g
            .values()
            .filter(|v| v.0 == p)
            .map(|v| (v.1, summarize(&v.2).mean))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some((*pts.first()?, *pts.last()?)).filter(|(a, b)| a.0 < b.0)
    };
    let word = |a: f64, b: f64| if b > a { "rises" } else { "falls" };
    p_unconds(&gp)
        .into_iter()
        .filter_map(|p| {
            let ((s0, p0), (s1, p1)) = ends(&gp, p)?;
            let ((_, r0), (_, r1)) = ends(&gr, p)?;
            Some(format!(
                "p_uncond = {p}: from s = {s0} to s = {s1}, {pm} {} ({} → {}) and {rm} {} ({} → {}).",
                word(p0, p1),
                num(p0),
                num(p1),
                word(r0, r1),
                num(r0),
                num(r1)
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::document::markdown;
    use crate::report::testing::fake_run;

    /// A run of `p_uncond` and `seed` with, at each scale, the given
    /// (metric, value) pairs.
    fn run(p: f64, seed: i64, at: &[(f64, &[(&str, f64)])]) -> RunData {
        let mut r = fake_run(&[("train.p_uncond", p.into())], seed, &[]);
        r.config.train.p_uncond = p;
        for (g, metrics) in at {
            for (m, v) in *metrics {
                let mut row = fake_run(&[], 0, &[(m, *v)]).eval.remove(0);
                row.run = r.id.clone();
                row.guidance = Some(*g);
                r.eval.push(row);
            }
        }
        r
    }

    fn sweep() -> SweepData {
        // p = 0.1: distance best at s = 2 (seed 0: 2.0, seed 1: 4.0 → mean 3);
        // p = 0.5: best at s = 1 (5.0, 7.0 → mean 6).
        let runs = vec![
            run(
                0.1,
                0,
                &[
                    (
                        1.0,
                        &[
                            ("sliced_wasserstein", 3.0),
                            ("precision_exact", 0.9),
                            ("recall_exact", 0.97),
                        ],
                    ),
                    (
                        2.0,
                        &[
                            ("sliced_wasserstein", 2.0),
                            ("precision_exact", 0.99),
                            ("recall_exact", 0.8),
                        ],
                    ),
                ],
            ),
            run(
                0.1,
                1,
                &[
                    (
                        1.0,
                        &[
                            ("sliced_wasserstein", 5.0),
                            ("precision_exact", 0.9),
                            ("recall_exact", 0.95),
                        ],
                    ),
                    (
                        2.0,
                        &[
                            ("sliced_wasserstein", 4.0),
                            ("precision_exact", 0.97),
                            ("recall_exact", 0.8),
                        ],
                    ),
                ],
            ),
            run(
                0.5,
                0,
                &[
                    (
                        1.0,
                        &[
                            ("sliced_wasserstein", 5.0),
                            ("precision_exact", 0.8),
                            ("recall_exact", 0.9),
                        ],
                    ),
                    (
                        2.0,
                        &[
                            ("sliced_wasserstein", 6.0),
                            ("precision_exact", 0.85),
                            ("recall_exact", 0.85),
                        ],
                    ),
                ],
            ),
            run(
                0.5,
                1,
                &[
                    (
                        1.0,
                        &[
                            ("sliced_wasserstein", 7.0),
                            ("precision_exact", 0.8),
                            ("recall_exact", 0.9),
                        ],
                    ),
                    (
                        2.0,
                        &[
                            ("sliced_wasserstein", 9.0),
                            ("precision_exact", 0.85),
                            ("recall_exact", 0.85),
                        ],
                    ),
                ],
            ),
        ];
        SweepData {
            runs,
            ..SweepData::default()
        }
    }

    fn headline() -> Vec<String> {
        [
            "precision_exact",
            "recall_exact",
            "sliced_wasserstein",
            "ks_max",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn the_section_tabulates_every_pair_with_its_interval() {
        let md = markdown(&section(&sweep(), &headline()));
        assert!(md.contains("| p_uncond | s | precision_exact (95% CI) | recall_exact (95% CI) | sliced_wasserstein (95% CI) |"), "{md}");
        // p = 0.1, s = 2: sliced W over seeds 2 and 4: mean 3, sd √2, so
        // the CI's half-width is t(0.975, 1)·√2/√2 = 12.7.
        let half = crate::report::stats::t975(1.0) * 2f64.sqrt() / 2f64.sqrt();
        let cell = format!("3.00 ± {} (n = 2)", crate::report::format::half(half));
        assert_eq!(cell, "3.00 ± 13 (n = 2)");
        assert!(md.contains("| 0.1 | 2 | "), "{md}");
        assert!(md.contains(&cell), "{cell} not in {md}");
        assert!(!md.contains("ks_max"), "not a guidance metric: {md}");
        // One scale only: no section.
        let mut one = sweep();
        for r in &mut one.runs {
            r.eval.retain(|m| m.guidance == Some(1.0));
        }
        assert!(section(&one, &headline()).is_empty());
    }

    #[test]
    fn the_best_p_uncond_is_the_lowest_distance_at_each_run_s_best_scale() {
        let text = best_p_uncond(&sweep(), &headline()).unwrap();
        // p = 0.1: bests 2.0 (s = 2) and 4.0 (s = 2) → 3.00; p = 0.5: 5.0
        // and 7.0 (both s = 1) → 6.00.
        assert!(text.contains("lowest sliced_wasserstein"), "{text}");
        assert!(
            text.contains("): p_uncond = 0.1: 3.00 ± 13 (n = 2) at s = 2, 2."),
            "{text}"
        );
        assert!(
            text.contains("p_uncond = 0.5: 6.00 ± 13 (n = 2) at s = 1, 1."),
            "{text}"
        );
    }

    #[test]
    fn the_trade_off_says_which_way_precision_and_recall_move() {
        let notes = trade_off_notes(&sweep(), &headline());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[0], "p_uncond = 0.1: from s = 1 to s = 2, precision_exact rises (0.900 → 0.980) and recall_exact falls (0.960 → 0.800).");
        assert!(
            notes[1].contains("recall_exact falls (0.900 → 0.850)"),
            "{notes:?}"
        );
    }
}
