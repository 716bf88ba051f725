//! The report's text, section by section, as [`Block`]s that
//! [`super::document`] renders as Markdown and HTML: the verdict on the
//! exercise ([`super::verdict`]), what was run and what is missing from the
//! numbers (each problem with its fix), the results table, bits/dim run by
//! run (± its standard error, the estimator, the variance), the findings,
//! the figures, every final metric and the spec. Numbers are printed to 3
//! significant figures and intervals to 2 ([`super::format`]).

use super::collect::{self, unique_jobs, RunData, SweepData, UnreadableKind};
use super::document::Block;
use super::format::{half, num};
use super::tables::SummaryRow;
use super::{findings, tool_commit, variant_key};
use crate::run::SweepDir;

/// What the document is made of, computed by the earlier steps.
pub struct Parts<'a> {
    pub s: &'a SweepData,
    pub variants: &'a [(String, Vec<&'a RunData>)],
    pub rows: &'a [SummaryRow],
    pub headline: &'a [String],
    /// The verdict block the report opens with ([`super::verdict::blocks`];
    /// empty without an exercise).
    pub verdict: Vec<Block>,
    /// The findings list ([`findings::all`]).
    pub findings: Vec<String>,
    /// "Holm–Bonferroni over k comparisons", of the report's family.
    pub correction: String,
    /// The charts' and the sample grids' image blocks.
    pub charts: Vec<Block>,
    pub samples: Vec<Block>,
}

/// The whole report, in order.
pub fn document(p: Parts) -> Vec<Block> {
    let s = p.s;
    let mut b = vec![Block::Heading(1, format!("Report: {}", s.name))];
    if !p.verdict.is_empty() {
        b.push(Block::Verdict(p.verdict));
    }
    if !s.description.is_empty() {
        b.push(Block::Para(s.description.clone()));
    }
    b.push(Block::Toc);
    b.extend(what_was_run(s, p.variants.len()));
    b.extend(not_completed_section(s));
    b.extend(not_evaluated_section(s));
    b.extend(stale_section(s));
    b.extend(unreadable_sections(s));
    if !s.orphans.is_empty() {
        b.push(Block::Para(format!(
            "Run folders not in the current plan (an earlier version of the spec), not aggregated: {}.",
            s.orphans.join(", ")
        )));
    }
    b.extend(results(p.variants, p.rows, p.headline));
    b.extend(super::guidance::section(s, p.headline));
    b.extend(super::methods::blocks(s));
    b.extend(bits_per_dim(p.variants));
    b.extend(findings_section(p.variants, p.findings, &p.correction));
    if !p.charts.is_empty() {
        b.push(Block::Heading(2, "Charts".into()));
        b.extend(p.charts);
    }
    if !p.samples.is_empty() {
        b.push(Block::Heading(2, "Samples".into()));
        b.extend(p.samples);
    }
    b.extend(all_final_metrics(p.rows));
    if !s.spec_text.is_empty() {
        b.push(Block::Heading(2, "The spec".into()));
        b.push(Block::Code(s.spec_text.clone()));
    }
    b
}

/// The runs that did not complete, each with its state (and why, when its
/// status says).
pub fn not_completed(s: &SweepData) -> Vec<(String, String)> {
    s.runs
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
        .collect()
}

/// The completed runs whose job's evaluation left no numbers for them;
/// those whose job has an evaluation table that cannot be read are left to
/// the unreadable files' section, which gives that fix.
pub fn not_evaluated(s: &SweepData) -> Vec<&RunData> {
    let dir = SweepDir::at(&s.root);
    let bad_table = |r: &RunData| {
        let job = dir.job_dir(&r.job);
        s.unreadable
            .iter()
            .any(|u| u.kind == UnreadableKind::EvalTable && u.path.starts_with(&job))
    };
    s.runs
        .iter()
        .filter(|r| r.completed() && !r.evaluated() && r.stale.is_none() && !bad_table(r))
        .collect()
}

/// The completed runs whose job was evaluated with other `eval.*` settings
/// than the run asks for: left out of the numbers, never mixed in.
pub fn stale(s: &SweepData) -> Vec<&RunData> {
    s.runs
        .iter()
        .filter(|r| r.completed() && r.stale.is_some())
        .collect()
}

/// The stale runs, each with what changed.
fn stale_section(s: &SweepData) -> Vec<Block> {
    let runs = stale(s);
    if runs.is_empty() {
        return vec![];
    }
    vec![
        Block::Heading(3, "Runs evaluated with other settings".into()),
        Block::Para(format!(
            "{} completed run(s) were evaluated with other `eval.*` settings than the spec asks for now, so their old numbers are left out of every table below (numbers from different evaluation settings are never mixed). Run `ddpm-lab sweep {}` again: it re-evaluates them and does not retrain.",
            runs.len(),
            s.spec_path
        )),
        Block::List(
            runs.iter()
                .map(|r| {
                    let changes = r.stale.as_deref().unwrap_or_default();
                    format!("{}: {}", r.id, changes.join(", "))
                })
                .collect(),
        ),
    ]
}

/// The sweep in a few lines: runs, tool, devices, wall time, folder.
fn what_was_run(s: &SweepData, variants: usize) -> Vec<Block> {
    let done = s.runs.iter().filter(|r| r.completed()).count();
    let all: Vec<&RunData> = s.runs.iter().collect();
    let jobs = unique_jobs(&all);
    let wall: f64 = jobs.iter().map(|r| r.wall_time_s).sum();
    let eval_wall: f64 = jobs.iter().map(|r| r.eval_wall_s).sum();
    let devices = if s.devices.is_empty() {
        "unknown".to_string()
    } else {
        s.devices.join(", ")
    };
    vec![
        Block::Heading(2, "What was run".into()),
        Block::List(vec![
            format!(
                "{} runs in {variants} variants; {done} completed.",
                s.runs.len()
            ),
            format!(
                "Tool: ddpm-lab {} (commit `{}`).",
                env!("CARGO_PKG_VERSION"),
                tool_commit()
            ),
            format!("Devices: {devices}."),
            format!("Wall time over all jobs: training {wall:.0} s, evaluation {eval_wall:.0} s."),
            format!(
                "Folder: `{}`; tables under `tables/`, charts under `charts/`.",
                s.root.display()
            ),
        ]),
    ]
}

fn not_completed_section(s: &SweepData) -> Vec<Block> {
    let not_done = not_completed(s);
    if not_done.is_empty() {
        return vec![];
    }
    vec![
        Block::Heading(3, "Runs that did not complete".into()),
        Block::Para(format!(
            "{} of {} runs are not in the numbers below (a partial sweep: run `ddpm-lab sweep` again to finish it).",
            not_done.len(),
            s.runs.len()
        )),
        Block::Table {
            header: vec!["run".into(), "state".into()],
            rows: not_done.into_iter().map(|(a, c)| vec![a, c]).collect(),
        },
    ]
}

/// Completed runs without evaluation numbers: counted as completed, so the
/// report says why their metrics are missing and how to get them.
fn not_evaluated_section(s: &SweepData) -> Vec<Block> {
    let runs = not_evaluated(s);
    if runs.is_empty() {
        return vec![];
    }
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let dir = SweepDir::at(&s.root);
    let jobs: Vec<String> = unique_jobs(&runs)
        .iter()
        .map(|r| format!("`{}`", dir.job_dir(&r.job).display()))
        .collect();
    vec![
        Block::Heading(3, "Completed runs without evaluation numbers".into()),
        Block::Para(format!(
            "{} completed run(s) have no evaluation numbers (evaluation skipped or not finished): {}; run `ddpm-lab sweep {}` again (with the same options, without `--no-eval`) or `ddpm-lab eval` on their job ({}).",
            runs.len(),
            ids.join(", "),
            s.spec_path,
            jobs.join(", ")
        )),
    ]
}

/// Files that exist but cannot be read, by kind, each kind with its fix.
fn unreadable_sections(s: &SweepData) -> Vec<Block> {
    let of = |kind| -> Vec<String> {
        s.unreadable
            .iter()
            .filter(|u| u.kind == kind)
            .map(|u| u.line())
            .collect()
    };
    let (tables, statuses) = (of(UnreadableKind::EvalTable), of(UnreadableKind::Status));
    let mut b = vec![];
    if !tables.is_empty() {
        b.push(Block::Heading(
            3,
            "Evaluation tables that could not be read".into(),
        ));
        b.push(Block::Para(
            "Their rows are missing from the numbers below. Delete the job's `eval/` folder and run `ddpm-lab sweep` again (or `ddpm-lab eval` on the job) to evaluate it anew.".into(),
        ));
        b.push(Block::List(tables));
    }
    if !statuses.is_empty() {
        b.push(Block::Heading(
            3,
            "Job statuses that could not be read".into(),
        ));
        b.push(Block::Para(format!(
            "Their runs count as `unknown` and are not in the numbers below. Run `ddpm-lab sweep {}` again (with the same options), which restarts each such job from scratch, or restore its `status.json` if you have a good copy.",
            s.spec_path
        )));
        b.push(Block::List(statuses));
    }
    b
}

/// The results table: each variant's leading headline metrics (up to six)
/// with their intervals, keyed V1, V2, … as in the charts.
fn results(
    variants: &[(String, Vec<&RunData>)],
    rows: &[SummaryRow],
    headline: &[String],
) -> Vec<Block> {
    let mut b = vec![Block::Heading(2, "Results".into())];
    let shown: Vec<&String> = headline.iter().take(6).collect();
    if shown.is_empty() {
        return b;
    }
    let mut header = vec!["key".to_string(), "variant".to_string()];
    header.extend(shown.iter().map(|m| format!("{m} (95% CI)")));
    b.push(Block::Table {
        header,
        rows: variants
            .iter()
            .enumerate()
            .map(|(i, (l, _))| {
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
    b
}

/// Bits/dim run by run: the value ± its standard error, its prior and
/// decoder terms, how the sum over t was taken and the bound's variance. The
/// results table's interval is over seeds; this one is within a run.
fn bits_per_dim(variants: &[(String, Vec<&RunData>)]) -> Vec<Block> {
    let mut rows = vec![];
    for (i, (_, runs)) in variants.iter().enumerate() {
        for r in runs.iter().filter(|r| r.completed()) {
            let f = super::tables::final_metrics(r);
            let Some(&(bpd, se)) = f.get("bpd") else {
                continue;
            };
            let part = |m: &str| f.get(m).map_or("—".into(), |v| super::format::num(v.0));
            let (estimator, mut variance) = super::tables::bpd_method(&r.config);
            if r.config.diffusion.weighting == crate::diffusion::WeightingKind::Vlb {
                variance.push_str(" (and its VLB weighting)");
            }
            rows.push(vec![
                variant_key(i),
                r.id.clone(),
                match se.filter(|se| se.is_finite()) {
                    Some(se) => {
                        format!("{} ± {}", super::format::num(bpd), super::format::half(se))
                    }
                    None => super::format::num(bpd),
                },
                part("bpd_prior"),
                part("bpd_decoder"),
                estimator,
                r.config.eval.bpd_images.to_string(),
                variance,
            ]);
        }
    }
    if rows.is_empty() {
        return vec![];
    }
    vec![
        Block::Heading(3, "Bits/dim".into()),
        Block::Para(
            "The variational bound of each run's weights on held-out images on the 8-bit grid (resized images are rounded back to it), in bits per dimension: the prior KL, the sum of the KL terms over t, and the discretized-Gaussian decoder's negative log-likelihood (each bin's probability floored at 1e-12). ± is the standard error over the images (at most `eval.bpd_images` of the test split); for a stratified estimate it covers the timesteps drawn too. The variance is σ²_t of p_θ(x_{t−1} | x_t) in the bound (`eval.bpd_variance`: σ̃²_t for fixed-small, β_t for fixed-large).".into(),
        ),
        Block::Table {
            header: [
                "key",
                "run",
                "bits/dim ± SE",
                "prior",
                "decoder",
                "estimator",
                "bpd_images",
                "variance",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            rows,
        },
    ]
}

/// What the comparisons are against, and the findings.
fn findings_section(
    variants: &[(String, Vec<&RunData>)],
    found: Vec<String>,
    correction: &str,
) -> Vec<Block> {
    let mut b = vec![Block::Heading(2, "Findings".into())];
    if variants.len() > 1 {
        b.push(Block::Para(format!(
            "Each variant against `{}` (the first in the spec), on the final metrics: paired by seed where the variants share seeds, else Welch's t; intervals are 95%, and significant means a p-value below 0.05 after {correction} (this report's, the verdict's included).",
            variants[0].0
        )));
    }
    b.push(Block::List(found));
    b
}

/// Every variant × metric of the summary: n, mean, std and interval.
fn all_final_metrics(rows: &[SummaryRow]) -> Vec<Block> {
    vec![
        Block::Heading(2, "All final metrics".into()),
        Block::Para("To 3 significant figures (intervals to 2); `tables/summary.csv` and `.parquet` keep every digit.".into()),
        Block::Table {
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
                        num(r.stats.mean),
                        num(r.stats.std),
                        half(r.stats.ci95),
                    ]
                })
                .collect(),
        },
    ]
}
