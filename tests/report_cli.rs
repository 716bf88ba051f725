//! `ddpm-lab report` on a fixture sweep folder with known numbers: the
//! summary's means and Student-t intervals against a hand computation, a
//! partial sweep's missing run listed (never dropped), the findings computed
//! from the data, and every table, chart and report file written; and on
//! damaged copies of it, completed runs without evaluation numbers and files
//! that cannot be read each named with their own fix.

mod common;
use common::{bin, text};

use ddpm_lab::config::RunConfig;
use ddpm_lab::run::eval_key::metric_part;
use ddpm_lab::run::metrics_table::{self, MetricRow};
use ddpm_lab::run::records::EvalDone;
use ddpm_lab::run::records::{LogRecord, PlanFile, PlanRun};
use ddpm_lab::run::timestep_table::{write_timestep_rows, TimestepRow};
use ddpm_lab::run::{EvalKeys, JobState, RunStatus, Weights};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// What to break in the fixture, by job id (`job-<prediction>-<seed>`).
#[derive(Default)]
struct Damage<'a> {
    /// Jobs that completed without evaluation tables (as with `--no-eval`).
    no_eval: &'a [&'a str],
    /// Jobs whose status.json is cut short (not JSON).
    bad_status: &'a [&'a str],
    /// Jobs whose evaluation tables are both not Parquet.
    bad_tables: &'a [&'a str],
    /// Jobs evaluated with other `eval.*` settings (eval.num_samples 37)
    /// than their runs ask for.
    stale: &'a [&'a str],
}

/// Two variants (prediction epsilon / v) × 3 seeds; v's seed 2 never ran.
/// fd at the final step: epsilon 10, 12, 14; v 8, 9. Then `damage` done to it.
fn fixture(root: &Path, damage: Damage) {
    let fd: BTreeMap<(&str, i64), f64> = [
        (("epsilon", 0), 10.0),
        (("epsilon", 1), 12.0),
        (("epsilon", 2), 14.0),
        (("v", 0), 8.0),
        (("v", 1), 9.0),
    ]
    .into_iter()
    .collect();
    let mut runs = vec![];
    for pred in ["epsilon", "v"] {
        for seed in 0..3i64 {
            let id = format!("prediction-{pred}_seed-{seed}");
            let job = format!("job-{pred}-{seed}");
            let mut cfg = RunConfig::default();
            cfg.train.seed = seed as u64;
            cfg.train.steps = 100;
            let mut swept = serde_json::Map::new();
            swept.insert("diffusion.prediction".into(), pred.into());
            swept.insert("seed".into(), seed.into());
            runs.push(PlanRun {
                id: id.clone(),
                job: job.clone(),
                weights: Weights::Raw,
                swept,
                config: cfg.clone(),
            });
            let Some(&value) = fd.get(&(pred, seed)) else {
                continue; // never started: no job folder at all
            };
            let jd = root.join("jobs").join(&job);
            std::fs::create_dir_all(jd.join("eval")).unwrap();
            RunStatus {
                state: JobState::Completed,
                reason: String::new(),
                step: 100,
                total_steps: 100,
                wall_time_s: 2.0,
                device: "cpu".into(),
                pid: 1,
                config_hash: "h".into(),
                last_checkpoint: None,
            }
            .write(&jd)
            .unwrap();
            if damage.bad_status.contains(&job.as_str()) {
                std::fs::write(jd.join("status.json"), "{\"state\": \"compl").unwrap();
            }
            let log: Vec<String> = (1..=10)
                .map(|k| {
                    serde_json::to_string(&LogRecord {
                        step: k * 10,
                        loss: 1.0 / k as f64,
                        loss_unweighted: 1.0 / k as f64,
                        loss_q: [None; 4],
                        grad_norm: 1.0,
                        lr: 1e-3,
                        ema_decay: BTreeMap::new(),
                        loss_scale: 1.0,
                        skipped_steps: 0,
                        images_per_s: 100.0,
                        data_wait_frac: 0.0,
                        wall_time_s: k as f64,
                    })
                    .unwrap()
                })
                .collect();
            std::fs::write(jd.join("metrics.jsonl"), log.join("\n") + "\n").unwrap();
            if damage.no_eval.contains(&job.as_str()) {
                continue;
            }
            // The settings its rows were computed with, and done.json saying so.
            let mut evaluated = cfg.eval.clone();
            if damage.stale.contains(&job.as_str()) {
                evaluated.num_samples = 37;
            }
            let keys = EvalKeys::of(&evaluated);
            let mut done = EvalDone {
                wall_s: 4.0,
                ..EvalDone::default()
            };
            for step in [0, 100] {
                done.add(step, Weights::Raw, &keys.combined(), &evaluated);
            }
            std::fs::write(
                jd.join("eval/done.json"),
                serde_json::to_string(&done).unwrap(),
            )
            .unwrap();
            let row = |step: u64, metric: &str, value: f64, g: Option<f64>| MetricRow {
                run: job.clone(),
                step,
                weights: Weights::Raw,
                guidance: g,
                sampler: "ddpm-1000".into(),
                metric: metric.into(),
                value,
                stderr: None,
                checkpoint: format!("snapshots/step-{step}"),
                eval_key: keys.get(metric_part(g)).to_string(),
            };
            // Per-timestep loss: two bins; from step 50 to 100 training lowers the
            // first by 60% (0.5 → 0.2), the second by 5.26% (0.95 → 0.9).
            let tl = |step: u64, bin: usize, loss: f64| TimestepRow {
                step,
                weights: Weights::Raw,
                bin,
                t_lo: bin as i64 * 500,
                t_hi: (bin as i64 + 1) * 500,
                loss_unweighted: loss,
                loss_weighted: loss,
                loss_eps: loss,
                checkpoint: format!("snapshots/step-{step}"),
                eval_key: keys.timestep_loss.clone(),
            };
            write_timestep_rows(
                &jd.join("eval/timestep_loss.parquet"),
                &[
                    tl(0, 0, 1.0),
                    tl(0, 1, 1.0),
                    tl(50, 0, 0.5),
                    tl(50, 1, 0.95),
                    tl(100, 0, 0.2),
                    tl(100, 1, 0.9),
                ],
            )
            .unwrap();
            metrics_table::write(
                &jd.join("eval").join(metrics_table::FILE),
                &[
                    row(0, "fd_mnist-cnn", 100.0, Some(1.0)),
                    row(100, "fd_mnist-cnn", value, Some(1.0)),
                    // Another guidance scale: not this run's, never in its final numbers.
                    row(100, "fd_mnist-cnn", 1000.0, Some(3.0)),
                    // A stratified bound: its standard error is value / 1000.
                    MetricRow {
                        stderr: Some(value / 1000.0),
                        ..row(100, "bpd", 3.0 + value / 100.0, None)
                    },
                ],
            )
            .unwrap();
            if damage.bad_tables.contains(&job.as_str()) {
                std::fs::write(jd.join("eval/timestep_loss.parquet"), "not parquet").unwrap();
                std::fs::write(jd.join("eval").join(metrics_table::FILE), "not parquet").unwrap();
            }
        }
    }
    write_plan(root, runs);
    std::fs::write(
        root.join("spec.toml"),
        "name = \"fixture\"\n[report]\nsmoothing = 3\n",
    )
    .unwrap();
}

/// A plan.json with these runs (and no job views: the report reads runs).
fn write_plan(root: &Path, runs: Vec<PlanRun>) {
    let plan = PlanFile {
        name: "fixture".into(),
        description: "A hand-made sweep".into(),
        spec: "fixture.toml".into(),
        results: root.display().to_string(),
        sets: vec![],
        devices: vec!["cpu".into()],
        estimated_wall_s: 0.0,
        runs,
        jobs: vec![],
    };
    std::fs::write(
        root.join("plan.json"),
        serde_json::to_string_pretty(&plan).unwrap(),
    )
    .unwrap();
}

/// The fixture sweep under `dir`/fixture, and `ddpm-lab report`'s output on it.
fn reported_fixture(dir: &Path) -> (PathBuf, Output) {
    reported_fixture_with(dir, Damage::default())
}

/// The same, with `damage` done to it.
fn reported_fixture_with(dir: &Path, damage: Damage) -> (PathBuf, Output) {
    let root = dir.join("fixture");
    std::fs::create_dir_all(&root).unwrap();
    fixture(&root, damage);
    let o = bin().arg("report").arg(&root).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    (root, o)
}

fn read_csv(p: &Path) -> DataFrame {
    CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(p.to_path_buf()))
        .unwrap()
        .finish()
        .unwrap()
}

#[test]
fn the_report_aggregates_known_numbers_lists_missing_runs_and_writes_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, o) = reported_fixture(tmp.path());
    let out = text(&o.stdout);
    assert!(out.contains("5 of 6 runs completed"), "{out}");
    // Training (status.json, 2 s a job) and evaluation (done.json, 4 s) apart.
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(
        md.contains("Wall time over all jobs: training 10 s, evaluation 20 s."),
        "{md}"
    );
    assert!(
        out.contains("not in the numbers: prediction-v_seed-2 (missing)"),
        "{out}"
    );

    // summary: hand computation. epsilon: 10, 12, 14 → mean 12, sd 2,
    // CI t(0.975, 2) · 2/√3 = 4.302653 · 1.154701 = 4.968275.
    // v: 8, 9 → mean 8.5, sd 0.707107, CI t(0.975, 1) · 0.707107/√2 = 12.706205 · 0.5 = 6.353102.
    let s = read_csv(&root.join("tables/summary.csv"));
    let get = |variant: &str, metric: &str, col: &str| -> f64 {
        let mask = s.column("variant").unwrap().str().unwrap().equal(variant)
            & s.column("metric").unwrap().str().unwrap().equal(metric);
        let f = s.filter(&mask).unwrap();
        assert_eq!(f.height(), 1, "{variant} {metric}");
        f.column(col)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap()
    };
    let (a, b) = ("prediction=epsilon", "prediction=v");
    assert_eq!(get(a, "fd_mnist-cnn", "n"), 3.0);
    assert!((get(a, "fd_mnist-cnn", "mean") - 12.0).abs() < 1e-9);
    assert!((get(a, "fd_mnist-cnn", "std") - 2.0).abs() < 1e-9);
    assert!((get(a, "fd_mnist-cnn", "ci95") - 4.968275).abs() < 1e-5);
    assert_eq!(get(b, "fd_mnist-cnn", "n"), 2.0);
    assert_eq!(
        get(b, "fd_mnist-cnn", "runs"),
        3.0,
        "the missing run is counted"
    );
    assert!((get(b, "fd_mnist-cnn", "mean") - 8.5).abs() < 1e-9);
    assert!((get(b, "fd_mnist-cnn", "ci95") - 6.353102).abs() < 1e-5);
    assert!((get(a, "bpd", "mean") - 3.12).abs() < 1e-9);
    assert!((get(a, "final_loss", "mean") - 0.1).abs() < 1e-12);

    // runs: every planned run, the missing one included.
    let runs = read_csv(&root.join("tables/runs.csv"));
    assert_eq!(runs.height(), 6);
    let states: Vec<String> = runs
        .column("state")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.unwrap().to_string())
        .collect();
    assert_eq!(states.iter().filter(|s| *s == "missing").count(), 1);
    // curves: smoothed with the spec's window of 3: the first point averages 1 and 1/2.
    let curves = read_csv(&root.join("tables/curves.csv"));
    let first = curves
        .column("loss_smoothed")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((first - 0.75).abs() < 1e-12, "{first}");
    for t in ["runs", "curves", "timestep_profile", "eval", "summary"] {
        assert!(root.join(format!("tables/{t}.parquet")).exists(), "{t}");
    }

    // Charts and the report.
    let charts: Vec<String> = std::fs::read_dir(root.join("charts"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for c in [
        "loss_curves.png",
        "loss_curves.svg",
        "metric_vs_step_0.png",
        "bars_0.png",
        "quality_vs_bpd.png",
    ] {
        assert!(charts.contains(&c.to_string()), "{c} in {charts:?}");
    }
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(
        md.contains("prediction-v_seed-2"),
        "the missing run is named"
    );
    // v against epsilon, paired on the seeds both have (0 and 1): the
    // differences −2 and −3 over epsilon's 11 there, −22.7%.
    assert!(
        md.contains("`prediction=v` changes fd_mnist-cnn by **-22.7% ± 58%** against `prediction=epsilon` (paired by seed, n = 2; p = 0.126, Holm-adjusted p = 0.377): within the noise"),
        "{md}"
    );
    assert!(
        md.contains("Holm–Bonferroni over 3 comparisons"),
        "fd, bpd and the ε-equivalent loss (not final_loss: ε and v losses are in other units): {md}"
    );
    // No [report] exercise: no question and no verdict.
    assert!(
        !md.contains("**Question:**") && !md.contains("Exercise 1"),
        "{md}"
    );
    assert!(
        md.contains("from step 50 to 100 the per-timestep loss fell most at t ∈ [0, 500) (60.0%) and least at t ∈ [500, 1000) (5.26%)"),
        "{md}"
    );
    // 3 significant figures, intervals 2; the CSV keeps every digit (above).
    assert!(md.contains("12.0 ± 5.0 (n = 3)"), "{md}");
    assert!(
        md.contains("| prediction=v | fd_mnist-cnn | 2 | 8.50 | 0.707 | 6.4 |"),
        "{md}"
    );
    let html = std::fs::read_to_string(root.join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"), "charts inline");
    assert!(!html.contains("src=\"charts/"), "self-contained");

    // An evaluation table that exists but cannot be read: named on stderr and
    // in the report, and its rows left out (not a silent blank).
    let mut tables: Vec<_> = std::fs::read_dir(root.join("jobs"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("eval").join(metrics_table::FILE))
        .filter(|p| p.exists())
        .collect();
    tables.sort();
    std::fs::write(&tables[0], b"not parquet").unwrap();
    let o = bin().arg("report").arg(&root).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    let shown = tables[0].display().to_string();
    assert!(
        err.contains(&format!("warning: {shown}")) && err.contains("left out of the report"),
        "{err}"
    );
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(
        md.contains("Evaluation tables that could not be read") && md.contains(&shown),
        "{md}"
    );
    let s = read_csv(&root.join("tables/summary.csv"));
    let n: f64 = s
        .filter(
            &s.column("metric")
                .unwrap()
                .str()
                .unwrap()
                .equal("fd_mnist-cnn"),
        )
        .unwrap()
        .column("n")
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .sum();
    assert_eq!(
        n, 4.0,
        "5 runs with numbers before, one job's table unreadable now"
    );

    // Not a sweep folder: exit 2 with the fix.
    let o = bin().arg("report").arg(tmp.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("plan.json: cannot read it"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bits_per_dim_is_reported_with_its_standard_error_estimator_and_variance() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = reported_fixture(tmp.path());
    // runs: bpd beside bpd_se, and how it was estimated (the default config:
    // T = 1000, eval.bpd_timesteps = 100, eval.bpd_variance = fixed-small).
    let runs = read_csv(&root.join("tables/runs.csv"));
    let id = runs.column("run").unwrap().str().unwrap();
    let row = (0..runs.height())
        .find(|&i| id.get(i) == Some("prediction-epsilon_seed-1"))
        .unwrap();
    let f = |c: &str| runs.column(c).unwrap().f64().unwrap().get(row).unwrap();
    assert!((f("bpd") - 3.12).abs() < 1e-12 && (f("bpd_se") - 0.012).abs() < 1e-12);
    let s = |c: &str| {
        let v = runs.column(c).unwrap().str().unwrap().get(row);
        v.unwrap().to_string()
    };
    assert_eq!(s("bpd_estimator"), "stratified (decoder + 100 strata)");
    assert_eq!(s("bpd_variance"), "fixed-small");
    // The report: value ± SE per run, with the estimator and the variance.
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(md.contains("### Bits/dim"), "{md}");
    assert!(
        md.contains(
            "| V1 | prediction-epsilon_seed-1 | 3.12 ± 0.012 | — | — | stratified (decoder + 100 strata) | 1000 | fixed-small |"
        ),
        "{md}"
    );
    // The missing run has no row.
    assert!(!md.contains("| prediction-v_seed-2 | 3."), "{md}");
}

#[test]
fn a_smoothing_window_below_one_is_refused_and_the_report_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = reported_fixture(tmp.path());
    let before = std::fs::read(root.join("report.md")).unwrap();
    for bad in ["0", "-2", "1.5"] {
        let o = bin()
            .arg("report")
            .arg(&root)
            .arg(format!("--smoothing={bad}"))
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains(&format!(
                "invalid value '{bad}' for '--smoothing <SMOOTHING>'"
            )) && err.contains("whole number of log points ≥ 1"),
            "{bad}: {err}"
        );
        assert_eq!(std::fs::read(root.join("report.md")).unwrap(), before);
    }
    // 1 is allowed: no smoothing.
    let o = bin()
        .arg("report")
        .arg(&root)
        .args(["--smoothing", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// A spec that names its exercise: the report opens with the question, the
/// prediction, the measured difference (paired on the seeds both variants
/// have) and the verdict, with numbers computed by hand; a `[report]` that
/// cannot be read is refused with its line.
#[test]
fn the_report_opens_with_the_exercise_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = reported_fixture(tmp.path());
    std::fs::write(
        root.join("spec.toml"),
        "name = \"fixture\"\n[report]\nexercise = 1\nprediction = \"v-prediction gives a lower FD than ε-prediction\"\n[[report.claims]]\nkind = \"better\"\nmetric = \"fd\"\nbetter = { \"diffusion.prediction\" = \"v\" }\nthan = { \"diffusion.prediction\" = \"epsilon\" }\n",
    )
    .unwrap();
    let o = bin().arg("report").arg(&root).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    let opening: Vec<&str> = md.lines().filter(|l| !l.is_empty()).take(6).collect();
    assert_eq!(opening[0], "# Report: fixture");
    assert!(
        opening[1].starts_with(
            "**Question:** Exercise 1 (prediction parameterization): Train three models"
        ) && opening[1].ends_with("Which converges fastest?"),
        "{md}"
    );
    assert_eq!(
        opening[2],
        "**Prediction:** v-prediction gives a lower FD than ε-prediction"
    );
    assert_eq!(opening[3], "**Measured:**");
    // Paired on seeds 0 and 1: differences −2 and −3, mean −2.5, SE 0.5,
    // 1 df: t = −5, p = 1 − 2·atan(5)/π = 0.1257; interval 12.706·0.5 = 6.35;
    // over epsilon's 11 there: −22.7% ± 57.8%. Holm over fd, bpd (the
    // same t) and final_loss (p = 1): 3 · 0.1257 = 0.377.
    assert_eq!(
        opening[4],
        "- fd_mnist-cnn, `prediction=v` against `prediction=epsilon`: **-2.50 ± 6.4** (-22.7% ± 58%), 8.50 against 11.0; paired by seed, n = 2; p = 0.126, Holm-adjusted p = 0.377: not significant; a difference of ±19.8 (180% of the reference) could have been detected with 80% power."
    );
    // The detectable effect at 0.05/3, 80% power, 1 df:
    // (tan(π(0.5 − 0.05/6)) + tan(0.3π)) · 0.5 = (38.19 + 1.376) · 0.5 = 19.8.
    assert_eq!(
        opening[5],
        "**Verdict: inconclusive** at 95% confidence (Holm–Bonferroni over 3 comparisons): `prediction=v` against `prediction=epsilon` on fd_mnist-cnn is not significant (paired by seed, n = 2); it could have detected ±19.8 (180% of the reference) with 80% power."
    );
    let html = std::fs::read_to_string(root.join("report.html")).unwrap();
    assert!(
        html.contains("<strong>Verdict: inconclusive</strong>"),
        "{html}"
    );

    // A [report] this version cannot read: exit 2, the file's line, the fix.
    std::fs::write(
        root.join("spec.toml"),
        "name = \"fixture\"\n[report]\nexercise = 6\n",
    )
    .unwrap();
    let o = bin().arg("report").arg(&root).output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let spec = root.join("spec.toml").display().to_string();
    assert!(
        err.contains(&format!(
            "{spec}:3: report.exercise: = 6: the chapter's exercises are numbered 1 to 5"
        )),
        "{err}"
    );
}

/// A chart left by an earlier report that this one does not draw is removed;
/// a plan without runs is an input error, not an empty report.
#[test]
fn stale_charts_go_and_an_empty_plan_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = reported_fixture(tmp.path());
    let charts = root.join("charts");
    let drawn = std::fs::read_dir(&charts).unwrap().count();
    for stale in ["old_variant_curve.png", "old_variant_curve.svg"] {
        std::fs::write(charts.join(stale), "from an earlier report").unwrap();
    }
    std::fs::write(charts.join("notes.txt"), "the user's").unwrap();
    let o = bin().arg("report").arg(&root).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!charts.join("old_variant_curve.png").exists());
    assert!(!charts.join("old_variant_curve.svg").exists());
    assert!(charts.join("notes.txt").exists(), "only charts are removed");
    assert_eq!(std::fs::read_dir(&charts).unwrap().count(), drawn + 1);

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("plan.json"), "{}").unwrap();
    let o = bin().arg("report").arg(&empty).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("not a sweep plan this version can read (missing field `name`"),
        "{}",
        text(&o.stderr)
    );
    write_plan(&empty, vec![]);
    let o = bin().arg("report").arg(&empty).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("lists no runs, so there is nothing to report"),
        "{}",
        text(&o.stderr)
    );
    assert!(!empty.join("report.md").exists());
}

/// Completed runs whose job was never evaluated (`--no-eval`, or evaluation
/// cut short) still count as completed, but the report names them and says
/// how to get their numbers.
#[test]
fn completed_runs_without_evaluation_numbers_are_named_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let damage = Damage {
        no_eval: &["job-v-0", "job-v-1"],
        // Evaluated, but nothing of it can be read: named among the
        // unreadable tables with that fix, not here.
        bad_tables: &["job-epsilon-0"],
        ..Damage::default()
    };
    let (root, o) = reported_fixture_with(tmp.path(), damage);
    let out = text(&o.stdout);
    assert!(out.contains("5 of 6 runs completed"), "{out}");
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(
        md.contains("### Completed runs without evaluation numbers")
            && md.contains("2 completed run(s) have no evaluation numbers (evaluation skipped or not finished): prediction-v_seed-0, prediction-v_seed-1;"),
        "{md}"
    );
    let jobs = format!(
        "`{}`, `{}`",
        root.join("jobs/job-v-0").display(),
        root.join("jobs/job-v-1").display()
    );
    assert!(
        md.contains("run `ddpm-lab sweep fixture.toml` again (with the same options, without `--no-eval`) or `ddpm-lab eval` on their job (")
            && md.contains(&jobs),
        "{md}"
    );
    assert!(
        md.contains("Evaluation tables that could not be read")
            && md.contains(
                &root
                    .join("jobs/job-epsilon-0/eval/timestep_loss.parquet")
                    .display()
                    .to_string()
            ),
        "{md}"
    );
    let html = std::fs::read_to_string(root.join("report.html")).unwrap();
    assert!(html.contains("prediction-v_seed-1"), "the HTML says it too");

    // Evaluated everywhere: no such section.
    let (root, _) = reported_fixture(&tmp.path().join("whole"));
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(!md.contains("without evaluation numbers"), "{md}");
}

/// A job evaluated with other `eval.*` settings than its runs ask for: its
/// numbers are never mixed with the others'; the report names the run and
/// what changed, and says that the sweep re-evaluates it.
#[test]
fn runs_evaluated_with_other_settings_are_named_and_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let damage = Damage {
        stale: &["job-epsilon-2"],
        ..Damage::default()
    };
    let (root, o) = reported_fixture_with(tmp.path(), damage);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "left out of the numbers: prediction-epsilon_seed-2 (eval.num_samples 37 → 1000)"
        ),
        "{err}"
    );
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(
        md.contains("### Runs evaluated with other settings")
            && md.contains("- prediction-epsilon_seed-2: eval.num_samples 37 → 1000")
            && md.contains("it re-evaluates them and does not retrain"),
        "{md}"
    );
    assert!(!md.contains("without evaluation numbers"), "{md}");
    // epsilon's fd is over seeds 0 and 1 only: n = 2, mean (10 + 12) / 2.
    let s = read_csv(&root.join("tables/summary.csv"));
    let mask = s
        .column("variant")
        .unwrap()
        .str()
        .unwrap()
        .equal("prediction=epsilon")
        & s.column("metric")
            .unwrap()
            .str()
            .unwrap()
            .equal("fd_mnist-cnn");
    let row = s.filter(&mask).unwrap();
    let col = |c: &str| {
        row.column(c)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap()
    };
    assert_eq!((col("n"), col("mean")), (2.0, 11.0));
}

/// A corrupt status.json is named with its own fix (rerun the sweep, which
/// restarts the job, or restore the file), not an evaluation table's.
#[test]
fn an_unreadable_status_is_named_with_its_own_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let damage = Damage {
        bad_status: &["job-epsilon-1"],
        ..Damage::default()
    };
    let (root, o) = reported_fixture_with(tmp.path(), damage);
    let out = text(&o.stdout);
    assert!(out.contains("4 of 6 runs completed"), "{out}");
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    let status = root.join("jobs/job-epsilon-1/status.json");
    assert!(
        md.contains("| prediction-epsilon_seed-1 | unknown: its status.json cannot be read |"),
        "{md}"
    );
    assert!(
        md.contains("### Job statuses that could not be read")
            && md.contains("Run `ddpm-lab sweep fixture.toml` again (with the same options), which restarts each such job from scratch, or restore its `status.json`")
            && md.contains(&format!("- {}: ", status.display())),
        "{md}"
    );
    assert!(
        !md.contains("Evaluation tables that could not be read")
            && !md.contains("Delete the job's `eval/` folder"),
        "a status file is not an evaluation table: {md}"
    );
}
