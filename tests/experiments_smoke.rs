//! The smoke versions of the chapter's exercises and of the finance example
//! (experiments/smoke/ex*.toml, finance.toml) run end to end, each with its
//! report: CI runs the same specs as `just smoke`, at seconds each.

mod common;
use common::{bin, text};

use ddpm_lab::run::metrics_table;
use std::path::{Path, PathBuf};

fn spec(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("experiments/smoke")
        .join(name)
}

/// Run a smoke spec into `results`; return its sweep folder.
fn sweep(name: &str, results: &Path, sets: &[String]) -> PathBuf {
    let mut c = bin();
    c.arg("sweep")
        .arg(spec(name))
        .arg("--results")
        .arg(results)
        .args(["--quiet", "--cpu-jobs", "2"]);
    for s in sets {
        c.arg("--set").arg(s);
    }
    let o = c.output().unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{name}: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("report: "))
        .unwrap_or_else(|| panic!("{name}: no report line in {err}"));
    assert!(line.contains("runs completed"), "{line}");
    let md = line
        .trim_start_matches("report: ")
        .split(" (")
        .next()
        .unwrap()
        .to_string();
    Path::new(&md).parent().unwrap().to_path_buf()
}

fn all_metrics(root: &Path) -> Vec<metrics_table::MetricRow> {
    std::fs::read_dir(root.join("jobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|e| {
            metrics_table::read(&e.path().join("eval").join(metrics_table::FILE)).unwrap()
        })
        .collect()
}

#[test]
fn every_exercise_smoke_spec_runs_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    for (name, runs) in [
        ("ex1_prediction.toml", 6),
        ("ex2_ema.toml", 6),
        ("ex3_weighting.toml", 5),
        ("ex4_timestep.toml", 2),
        ("ex5_cfg.toml", 2),
        ("ex5_toy_cfg.toml", 4),
    ] {
        let root = sweep(name, &results, &[]);
        let md = std::fs::read_to_string(root.join("report.md")).unwrap();
        assert!(
            md.contains(&format!("{runs} runs in")) && md.contains(&format!("; {runs} completed.")),
            "{name}: {md}"
        );
        let m = all_metrics(&root);
        if name == "ex5_toy_cfg.toml" {
            exact_guidance_report(&root, &m, &md);
            continue;
        }
        assert!(m.iter().any(|r| r.metric == "bpd"), "{name}: bits/dim");
        assert!(m.iter().any(|r| r.metric == "fd_synthetic-cnn"), "{name}");
        match name {
            "ex2_ema.toml" => {
                assert!(md.contains("changes fd_synthetic-cnn by"), "{md}");
                // The spec's [report] names exercise 2: the report opens with
                // its question, the prediction, the measurement and a verdict.
                let opening: Vec<&str> = md
                    .lines()
                    .filter(|l| !l.is_empty())
                    .skip(1)
                    .take(4)
                    .collect();
                assert!(
                    opening[0].starts_with("**Question:** Exercise 2 (EMA ablation): "),
                    "{md}"
                );
                assert!(
                    opening[1].starts_with("**Prediction:** Sampling from EMA weights"),
                    "{md}"
                );
                assert_eq!(opening[2], "**Measured:**", "{md}");
                assert!(
                    opening[3].starts_with("- fd_synthetic-cnn, `decay=0.9` against `decay=0.0`: "),
                    "{md}"
                );
                assert!(md.contains("**Verdict: "), "{md}");
                assert!(md.contains("Holm–Bonferroni over "), "{md}");
            }
            "ex4_timestep.toml" => {
                assert!(root.join("charts/timestep_profile_0.png").exists());
            }
            "ex5_cfg.toml" => {
                for g in [1.0, 3.0, 5.0] {
                    assert!(m.iter().any(|r| r.guidance == Some(g)), "guidance {g}");
                }
                assert!(m.iter().any(|r| r.metric.starts_with("class_accuracy_")));
                assert!(root.join("charts/guidance_heatmap_0.png").exists());
                assert!(root.join("charts/precision_recall.png").exists());
                assert!(
                    md.contains("p_uncond = 0.1: fd_synthetic-cnn is best at guidance"),
                    "{md}"
                );
                // The guidance section, the rule, and each p_uncond's grids
                // at its three scales joined left to right.
                assert!(md.contains("## Guidance\n"), "{md}");
                assert!(
                    md.contains("| p_uncond | s | fd_synthetic-cnn (95% CI) |"),
                    "{md}"
                );
                assert!(
                    md.contains("Best p_uncond by the stated rule (the lowest fd_synthetic-cnn"),
                    "{md}"
                );
                for i in 0..2 {
                    let strip = root.join(format!("charts/guidance_samples_{i}.png"));
                    let img = image::open(&strip).unwrap();
                    assert!(
                        img.width() > 3 * img.height() - 100,
                        "{strip:?}: three grids side by side"
                    );
                    assert!(
                        md.contains(&format!("](charts/guidance_samples_{i}.png)")),
                        "{md}"
                    );
                }
                assert!(
                    md.contains("sample grids, left to right at s = 1, 3, 5."),
                    "{md}"
                );
            }
            _ => {}
        }
    }
    // One evaluator for all of them, cached under the results root.
    let cached: Vec<_> = std::fs::read_dir(results.join(".evaluators"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cached.len(), 1);
}

/// Exercise 5 on the eight Gaussians: the exact class metrics at every
/// scale, shares in [0, 1], the verdict block, the guidance table and the
/// scatter of samples per p_uncond.
fn exact_guidance_report(root: &Path, m: &[metrics_table::MetricRow], md: &str) {
    for metric in ["class_accuracy_exact", "precision_exact", "recall_exact"] {
        for g in [1.0, 3.0] {
            let v: Vec<f64> = m
                .iter()
                .filter(|r| r.metric == metric && r.guidance == Some(g))
                .map(|r| r.value)
                .collect();
            assert_eq!(v.len(), 4, "{metric} at {g}: one per run");
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)), "{metric}: {v:?}");
        }
    }
    assert!(md.contains("**Question:** Exercise 5"), "{md}");
    assert!(
        md.contains("- best_sliced_wasserstein, `p_uncond=0.1` against `p_uncond=0.5`: "),
        "{md}"
    );
    assert!(md.contains("| p_uncond | s | precision_exact (95% CI) | recall_exact (95% CI) | class_accuracy_exact (95% CI) | sliced_wasserstein (95% CI) |"), "{md}");
    assert!(
        md.contains("(real data: 0.9999)"),
        "the exact metrics are explained: {md}"
    );
    assert!(
        md.contains("samples, a colour per scale at s = 1, 3."),
        "{md}"
    );
    assert!(root.join("charts/guidance_samples_1.png").exists());
    assert!(root.join("charts/precision_recall.png").exists());
}

#[test]
fn the_finance_smoke_spec_models_returns_with_their_tail_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("returns.csv");
    let o = bin()
        .args(["data", "returns", "--days", "600", "--out"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("600 days × 3 assets"));
    // Refuses to overwrite.
    let o = bin()
        .args(["data", "returns", "--out"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // Only a .csv file: not a .parquet name (it got CSV text), not a folder.
    for (out, why) in [
        (tmp.path().join("r.parquet"), "returns are written as CSV"),
        (tmp.path().to_path_buf(), "is a folder"),
    ] {
        let o = bin()
            .args(["data", "returns", "--force", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(why) && err.contains("name a .csv file"),
            "{err}"
        );
    }
    assert!(!tmp.path().join("r.parquet").exists());
    let root = sweep(
        "finance.toml",
        &tmp.path().join("results"),
        &[format!("data.path={:?}", csv.to_str().unwrap())],
    );
    let m = all_metrics(&root);
    for metric in [
        "q01_error",
        "q05_error",
        "acf_sq_error",
        "ks_r0",
        "corr_error",
        "mmd2_rbf",
    ] {
        assert!(m.iter().any(|r| r.metric == metric), "{metric}");
    }
    assert!(
        !m.iter().any(|r| r.metric == "bpd"),
        "no bits/dim for returns"
    );
}
