//! Reports: a sweep folder read back ([`collect`]), aggregated into Polars
//! tables ([`tables`]), drawn as charts ([`figures`] chooses them, [`charts`]
//! draws them), and written up as `report.md` and a self-contained
//! `report.html` ([`sections`] builds the text, [`document`] renders it)
//! whose findings are computed from the data ([`findings`], [`guidance`]).
//! A spec that names its exercise gets a verdict on the chapter's prediction
//! ([`verdict`]); every comparison a report makes is tested together
//! ([`compare`], [`family`]: paired by seed where runs share seeds,
//! Holm–Bonferroni across the report).
//!
//! `ddpm-lab report results/<sweep>` re-aggregates any sweep, partial ones
//! included; a sweep calls it when it ends. Everything is regenerated from
//! the run folders, so a report can be rebuilt at any time and never holds
//! numbers the tables do not.

pub mod charts;
pub mod collect;
pub mod compare;
pub mod derived;
pub mod document;
pub mod family;
mod figures;
pub mod findings;
pub mod format;
mod guidance;
mod guidance_samples;
mod methods;
mod profile;
mod sections;
pub mod stats;
pub mod tables;
#[cfg(test)]
mod testing;
pub mod verdict;

use crate::config::ConfigError;
pub use crate::run::report_settings::ReportSettings;
use collect::{SweepData, Unreadable};
use document::Block;
use polars::prelude::PolarsError;
use std::path::{Path, PathBuf};

/// What can go wrong while reporting. The cause is in each message, not a
/// `#[source]`: `main` prints errors with `{:#}`, which would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The sweep folder cannot be read back: the only bad input.
    #[error(transparent)]
    Collect(#[from] collect::CollectError),
    /// The sweep folder's `spec.toml` has a `[report]` this version cannot read.
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error("building the {name} table: {error}")]
    Table {
        name: &'static str,
        error: PolarsError,
    },
    /// Writing a table's Parquet or CSV file.
    #[error("{}: {error}", path.display())]
    TableFile { path: PathBuf, error: PolarsError },
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    #[error("{}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl ReportError {
    /// A problem with the sweep folder given (exit code 2), not a failure
    /// to write the report.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ReportError::Collect(_) | ReportError::Settings(_))
    }
}

/// How to report: the spec's `[report]` ([`ReportSettings`]).
pub type ReportOptions = ReportSettings;

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
    /// Completed runs without evaluation numbers (evaluation skipped or not
    /// finished), by id.
    pub not_evaluated: Vec<String>,
    /// Completed runs evaluated with other `eval.*` settings, as
    /// `id (what changed)`: left out of the numbers.
    pub stale: Vec<String>,
    /// Evaluation tables and job statuses that exist but could not be read.
    pub unreadable: Vec<Unreadable>,
}

/// The `[report]` of a sweep folder's resolved spec (`spec.toml`, which the
/// sweep checked): the defaults when there is no such file or table; every
/// problem, with the file's lines, when it cannot be read.
pub fn options_from_spec(path: &Path) -> Result<ReportOptions, ReportError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(ReportOptions::default());
    };
    let fail = |problems: Vec<crate::config::Problem>| ConfigError {
        origin: path.display().to_string(),
        problems,
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        fail(vec![crate::config::Problem::new(
            "",
            format!("{} (the sweep writes this file: run `ddpm-lab sweep` on its spec again to rewrite it)", e.message()),
        )])
    })?;
    match table.get("report") {
        None => Ok(ReportOptions::default()),
        Some(toml::Value::Table(r)) => ReportSettings::from_table(r).map_err(|ps| {
            let line = |key: &str| {
                let dotted = key.replace('[', ".").replace(']', "");
                crate::config::locate::line_of(&text, &dotted)
                    .map(|l| format!("{}:{l}", path.display()))
            };
            fail(
                ps.into_iter()
                    .map(|p| {
                        let at = line(&p.key);
                        p.at(at)
                    })
                    .collect(),
            )
            .into()
        }),
        Some(_) => Err(fail(vec![crate::config::Problem::new(
            "report",
            "must be a table",
        )])
        .into()),
    }
}

/// The short name of the i-th variant in charts: V1, V2, …
pub fn variant_key(i: usize) -> String {
    format!("V{}", i + 1)
}

/// The commit the binary was built from (set by build.rs when built in a git checkout).
pub fn tool_commit() -> &'static str {
    option_env!("DDPMLAB_BUILD_COMMIT").unwrap_or("unknown")
}

/// Aggregate `root` (a sweep folder) into tables, charts and the report.
pub fn report(root: &Path, opts: &ReportOptions) -> Result<ReportOutcome, ReportError> {
    let mut s = collect::collect(root)?;
    derived::convergence(&mut s.runs);
    let variants = tables::by_variant(&s);
    let rows = tables::summary_rows(&s);
    let table_paths = write_tables(&s, &rows, &root.join("tables"), opts.smoothing)?;

    let metrics = metric_names(&rows);
    let mut headline = findings::headline(&metrics);
    if findings::losses_in_different_units(&s) {
        headline.retain(|m| m != "final_loss");
    }
    let cdir = root.join("charts");
    let drawn = figures::build(&s, &variants, &headline, &rows, opts.smoothing);
    let (charts, mut chart_paths) = figures::draw(drawn, &cdir)?;
    let (mut samples, sample_paths) = figures::sample_grids(root, &variants, &cdir)?;
    chart_paths.extend(sample_paths);
    let (guided, guided_paths) = guidance_samples::figures(root, &s, &cdir)?;
    samples.extend(guided);
    chart_paths.extend(guided_paths);
    figures::remove_stale(&cdir, &chart_paths);

    // Every comparison of the report in one family: the verdict's first.
    let mut family = family::Family::default();
    let claimed = verdict::register(opts, &variants, &metrics, &mut family);
    let compared = findings::register(&variants, &headline, &mut family);
    family.adjust();
    let blocks = sections::document(sections::Parts {
        s: &s,
        variants: &variants,
        rows: &rows,
        headline: &headline,
        verdict: verdict::blocks(opts, &claimed, &family),
        findings: findings::all(&s, &variants, &headline, &compared, &family, opts.exercise),
        correction: family.correction_text(),
        charts,
        samples,
    });
    let (report_md, report_html) = write_documents(root, &s.name, &blocks)?;
    Ok(ReportOutcome {
        report_md,
        report_html,
        tables: table_paths,
        charts: chart_paths,
        runs: s.runs.len(),
        completed: s.runs.iter().filter(|r| r.completed()).count(),
        not_completed: sections::not_completed(&s),
        not_evaluated: sections::not_evaluated(&s)
            .iter()
            .map(|r| r.id.clone())
            .collect(),
        stale: sections::stale(&s)
            .iter()
            .map(|r| {
                let changes = r.stale.as_deref().unwrap_or_default();
                format!("{} ({})", r.id, changes.join(", "))
            })
            .collect(),
        unreadable: s.unreadable.clone(),
    })
}

/// Build and write the five tables under `dir`; returns their Parquet paths.
fn write_tables(
    s: &SweepData,
    rows: &[tables::SummaryRow],
    dir: &Path,
    window: usize,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = vec![];
    for (name, df) in [
        ("runs", tables::runs_table(s)),
        ("curves", tables::curves_table(s, window)),
        ("timestep_profile", tables::timestep_table(s)),
        ("eval", tables::eval_table(s)),
        ("summary", tables::summary_table(rows)),
    ] {
        let mut df = df.map_err(|error| ReportError::Table { name, error })?;
        tables::write_table(dir, name, &mut df)?;
        written.push(dir.join(format!("{name}.parquet")));
    }
    Ok(written)
}

/// The metrics of the summary, each once, sorted.
fn metric_names(rows: &[tables::SummaryRow]) -> Vec<String> {
    let mut m: Vec<String> = rows.iter().map(|r| r.metric.clone()).collect();
    m.sort();
    m.dedup();
    m
}

/// Write `report.md` and `report.html` under `root`, each atomically;
/// returns their paths.
fn write_documents(
    root: &Path,
    name: &str,
    blocks: &[Block],
) -> Result<(PathBuf, PathBuf), ReportError> {
    let md = root.join("report.md");
    let html = root.join("report.html");
    let write = |p: &Path, text: String| -> Result<(), ReportError> {
        let err = |error| ReportError::Write {
            path: p.to_path_buf(),
            error,
        };
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, p).map_err(err)
    };
    write(&md, document::markdown(blocks))?;
    write(
        &html,
        document::html(&format!("ddpm-lab report: {name}"), blocks, root),
    )?;
    Ok((md, html))
}

#[cfg(test)]
mod tests {
    use super::collect::CollectError;
    use super::*;
    use crate::config::RunConfig;
    use crate::run::records::{PlanFile, PlanRun};
    use crate::run::Weights;

    fn plan(root: &Path, runs: usize) {
        let plan = PlanFile {
            name: "t".into(),
            description: String::new(),
            spec: "t.toml".into(),
            results: root.display().to_string(),
            sets: vec![],
            devices: vec![],
            estimated_wall_s: 0.0,
            runs: (0..runs)
                .map(|i| PlanRun {
                    id: format!("run-{i}"),
                    job: format!("job-{i}"),
                    weights: Weights::Raw,
                    swept: serde_json::Map::new(),
                    config: RunConfig::default(),
                })
                .collect(),
            jobs: vec![],
        };
        std::fs::write(
            root.join("plan.json"),
            serde_json::to_string(&plan).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn input_problems_are_bad_input_and_write_failures_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let opts = ReportOptions::default();
        let plan_json = root.join("plan.json").display().to_string();

        let e = report(root, &opts).unwrap_err();
        assert!(
            matches!(&e, ReportError::Collect(CollectError::NoPlan { path, .. }) if path.ends_with("plan.json"))
        );
        assert!(e.is_bad_input());
        assert!(
            e.to_string()
                .starts_with(&format!("{plan_json}: cannot read it (")),
            "{e}"
        );

        std::fs::write(root.join("plan.json"), "{").unwrap();
        let e = report(root, &opts).unwrap_err();
        assert!(matches!(
            &e,
            ReportError::Collect(CollectError::BadPlan { .. })
        ));
        assert!(e.is_bad_input());
        assert!(e
            .to_string()
            .contains("not a sweep plan this version can read"));

        plan(root, 0);
        let e = report(root, &opts).unwrap_err();
        assert!(matches!(
            &e,
            ReportError::Collect(CollectError::NoRuns { .. })
        ));
        assert!(e.is_bad_input());

        // A file where the tables folder goes: the write fails, with its path.
        plan(root, 1);
        std::fs::write(root.join("tables"), "in the way").unwrap();
        let e = report(root, &opts).unwrap_err();
        let ReportError::Write { path, error } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(path, &root.join("tables"));
        assert!(!e.is_bad_input());
        assert_eq!(e.to_string(), format!("{}: {error}", path.display()));
        // The cause is in the message only, so `{:#}` does not repeat it.
        assert!(std::error::Error::source(&e).is_none());
    }
}
