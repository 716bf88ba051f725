//! End-to-end tests of post-hoc EMA (`ema.mode = "power"`): a real model's
//! reconstruction against the EMA it tracked, the solve against an
//! independent Python reference, exact resume after a kill, the weight set
//! in `sample`, a sweep whose EMA lengths share one training, `inspect ema`,
//! and the input errors.

mod common;
use common::{bin, text, weights, write};

use ddpm_lab::run::phema::{self, Profile};
use ddpm_lab::run::phema_store;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// An MLP on eight Gaussians tracking the paper's two power EMAs,
/// snapshotted every 30 of 300 steps.
const TOY: &str = r#"
[data]
source = "toy"
toy = "eight-gaussians"
n_samples = 2000
[model]
preset = "mlp-small"
[diffusion]
timesteps = 100
[train]
steps = 300
batch_size = 128
lr = 1e-3
log_every = 50
checkpoint_every = 100
threads = 1
[ema]
mode = "power"
decays = []
std_rel = [0.05, 0.10]
snapshot_every = 30
[eval]
initial = false
"#;

fn train(cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    common::train_output(cfg, out, extra)
}

/// The reconstructed tensors of `std_rel` at `step`, sorted by name.
fn reconstruct(run: &Path, step: u64, std_rel: f64) -> Vec<(String, tch::Tensor)> {
    let r = phema_store::plan(run, Profile { step, std_rel }).unwrap();
    let mut w = phema_store::combine(&r).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn max_abs(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((na, ta), (nb, tb))| {
            assert_eq!(na, nb);
            (ta - tb).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

fn l2(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> f64 {
    a.iter()
        .zip(b)
        .map(|((_, ta), (_, tb))| {
            let d = (ta - tb).to_kind(tch::Kind::Double);
            (&d * &d).sum(tch::Kind::Double).double_value(&[])
        })
        .sum::<f64>()
        .sqrt()
}

fn trained_toy(dir: &Path) -> PathBuf {
    let cfg = write(dir, "run.toml", TOY);
    let out = dir.join("run");
    let o = train(&cfg, &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    out
}

#[test]
fn a_real_models_reconstruction_matches_its_tracked_ema_and_a_length_between_lies_between() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_toy(dir.path());
    let snaps = phema_store::snapshot_steps(&run);
    let steps: Vec<u64> = snaps.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, (1..=10).map(|k| k * 30).collect::<Vec<_>>());
    let last = run.join("checkpoints/step-000000300");
    let t05 = weights(&last.join("phema-0.050.safetensors"));
    let t10 = weights(&last.join("phema-0.100.safetensors"));
    // The last snapshot holds exactly what the checkpoint holds.
    assert_eq!(
        std::fs::read(snaps[9].1.join("phema-0.100.safetensors")).unwrap(),
        std::fs::read(last.join("phema-0.100.safetensors")).unwrap()
    );
    let r10 = reconstruct(&run, 300, 0.10);
    let err = max_abs(&r10, &t10);
    assert!(err <= 1e-4, "0.10 reconstructed vs tracked: max abs {err}");
    // 0.07 is between the tracked lengths: nearer each than they are to
    // each other.
    let r07 = reconstruct(&run, 300, 0.07);
    let (d05, d10, apart) = (l2(&r07, &t05), l2(&r07, &t10), l2(&t05, &t10));
    assert!(
        apart > 0.0 && d05 < apart && d10 < apart,
        "{d05} {d10} {apart}"
    );
    // At a step between snapshots, and at a snapshot before the last.
    let mid = reconstruct(&run, 150, 0.10);
    let tracked_150 = weights(&snaps[4].1.join("phema-0.100.safetensors"));
    assert!(max_abs(&mid, &tracked_150) <= 1e-4);
}

/// Solve coefficients against tests/fixtures/phema/coefficients.json, which
/// tests/fixtures/phema/make_fixture.py computes with numpy from the
/// paper's formulas (its docstring restates them).
#[test]
fn solve_coefficients_match_the_python_reference() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/phema/coefficients.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (s, g) in fixture["exponents"].as_object().unwrap() {
        let s: f64 = s.parse().unwrap();
        let want = g.as_f64().unwrap();
        let got = phema::std_rel_to_exp(s).unwrap();
        assert!(
            (got - want).abs() <= 1e-8 * want.max(1.0),
            "γ({s}): {got} vs {want}"
        );
    }
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let inputs: Vec<Profile> = case["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Profile {
                step: p[0].as_u64().unwrap(),
                std_rel: p[1].as_f64().unwrap(),
            })
            .collect();
        let target = Profile {
            step: case["target_step"].as_u64().unwrap(),
            std_rel: case["target_std_rel"].as_f64().unwrap(),
        };
        let got = phema::solve(&inputs, target).unwrap().coefficients;
        let want: Vec<f64> = case["coefficients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-8 * w.abs().max(1.0),
                "{target:?} coefficient {i}: {g} vs {w}"
            );
        }
    }
}

fn wait_for(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file of every power-EMA snapshot, as bytes.
fn snapshot_bytes(run: &Path) -> Vec<(u64, String, Vec<u8>)> {
    let mut out = vec![];
    for (step, dir) in phema_store::snapshot_steps(run) {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
            .map(|e| {
                (
                    step,
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

#[test]
fn a_killed_and_resumed_power_ema_run_reconstructs_bit_identical_weights() {
    let dir = tempfile::tempdir().unwrap();
    let long = TOY
        .replace("steps = 300", "steps = 100000")
        .replace("checkpoint_every = 100", "checkpoint_every = 20")
        .replace("snapshot_every = 30", "snapshot_every = 10");
    let cfg = write(dir.path(), "long.toml", &long);
    let out = dir.path().join("run");
    let mut child = bin()
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let has_checkpoint = || {
        std::fs::read_dir(out.join("checkpoints")).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
        })
    };
    wait_for("a checkpoint", Duration::from_secs(60), has_checkpoint);
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("status.json")).unwrap()).unwrap();
    let target = status["step"].as_u64().unwrap() + 40;
    let steps = format!("train.steps={target}");
    let o = train(&cfg, &out, &["--resume", "--set", &steps]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let clean = dir.path().join("clean");
    let o = train(&cfg, &clean, &["--set", &steps]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (a, b) = (snapshot_bytes(&out), snapshot_bytes(&clean));
    assert_eq!(a.len(), b.len());
    assert!(a.len() >= 2 * (target / 10) as usize);
    for (x, y) in a.iter().zip(&b) {
        assert!(x == y, "snapshot {} {} differs after resume", x.0, x.1);
    }
    let (ra, rb) = (
        reconstruct(&out, target, 0.07),
        reconstruct(&clean, target, 0.07),
    );
    for ((na, ta), (_, tb)) in ra.iter().zip(&rb) {
        assert!(ta.equal(tb), "{na} of phema-0.070 differs after resume");
    }
}

#[test]
fn a_reconstructed_weight_set_samples_and_inspect_ema_prints_its_profile() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_toy(dir.path());
    let csv = dir.path().join("rows.csv");
    let o = bin()
        .args([
            "sample",
            run.to_str().unwrap(),
            "--out",
            csv.to_str().unwrap(),
        ])
        .args(["-n", "16", "--weights", "phema-0.070", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 17);

    let png = dir.path().join("profile.png");
    let o = bin()
        .args(["inspect", "ema", run.to_str().unwrap(), "--decay", "0.95"])
        .args(["--plot", png.to_str().unwrap()])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let out = text(&o.stdout);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("step,weight,classic"));
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 301, "steps 0..=300");
    // The classic curve sums to 1 with θ_0's share; the reconstruction to ~1.
    let sum = |c: usize| rows.iter().map(|r| r[c]).sum::<f64>();
    assert!((sum(2) - 1.0).abs() < 1e-9, "{}", sum(2));
    assert!((sum(1) - 1.0).abs() < 1e-2, "{}", sum(1));
    let s = phema::decay_to_std_rel(0.95, 300).unwrap();
    assert!(
        err.contains(&format!("{} at step 300", ddpm_lab::run::Weights::phema(s))),
        "{err}"
    );
    assert!(
        err.contains("relative L2 residual of the per-step weights"),
        "{err}"
    );
    assert!(png.exists());
}

#[test]
fn bad_lengths_steps_and_snapshot_counts_are_input_errors_that_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // In a run config: the key, its line, exit 2, no folder.
    for (body, key) in [
        (
            TOY.replace("std_rel = [0.05, 0.10]", "std_rel = [0.05, 0.3]"),
            "ema.std_rel[1]: = 0.3: must be in (0, 0.28]",
        ),
        (
            TOY.replace("snapshot_every = 30", "snapshot_every = 300"),
            "ema.snapshot_every: = 300 with train.steps = 300 gives 1 snapshot(s)",
        ),
    ] {
        let cfg = write(dir.path(), "bad.toml", &body);
        let out = dir.path().join("never");
        let o = train(&cfg, &out, &[]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(key), "{err}");
        assert!(err.contains("bad.toml:"), "{err}");
        assert!(!out.exists());
    }
    let run = trained_toy(dir.path());
    let png = dir.path().join("never.png");
    for (args, says) in [
        (
            vec!["--std-rel", "0.3"],
            "--std-rel: σ_rel = 0.3: must be in (0, 0.28]",
        ),
        (
            vec!["--std-rel", "0.1", "--step", "310"],
            "step 310 is past the last post-hoc EMA snapshot (step 300)",
        ),
        (
            vec!["--std-rel", "0.1", "--step", "50"],
            "ema.snapshot_every: ",
        ),
        (
            vec!["--decay", "0.9999"],
            "--decay: ema.decay = 0.9999 at step 300",
        ),
    ] {
        let o = bin()
            .args([
                "inspect",
                "ema",
                run.to_str().unwrap(),
                "--plot",
                png.to_str().unwrap(),
            ])
            .args(&args)
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(o.stdout.is_empty() && !png.exists(), "{args:?}");
    }
    // A weight set outside the range is refused by name.
    let o = bin()
        .args([
            "sample",
            run.to_str().unwrap(),
            "--out",
            dir.path().join("x.csv").to_str().unwrap(),
        ])
        .args(["-n", "4", "--weights", "phema-0.300", "--device", "cpu"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn a_sweep_of_ema_lengths_trains_one_job_per_seed_and_charts_fd_against_std_rel() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "lengths.toml",
        "name = \"lengths\"\n[base]\ndata.source = \"toy\"\ndata.n_samples = 1000\nmodel.preset = \"mlp-small\"\ndiffusion.timesteps = 50\ntrain.steps = 60\ntrain.batch_size = 32\ntrain.log_every = 20\ntrain.checkpoint_every = 30\nema.mode = \"power\"\nema.decays = []\neval.every = 0\neval.initial = false\neval.num_samples = 100\n[sweep]\n\"ema.std_rel\" = [0.05, 0.1, 0.2]\nseeds = [0, 1]\n",
    );
    let results = dir.path().join("results");
    let o = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--results")
        .arg(&results)
        .args(["--devices", "cpu", "--quiet"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("training 2 job(s)"), "{err}");
    let root = results.join("lengths");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["runs"].as_array().unwrap().len(), 6);
    assert_eq!(plan["jobs"].as_array().unwrap().len(), 2);
    let report = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(
        report.contains("reconstructed at each length σ_rel"),
        "{report}"
    );
    let charts: Vec<String> = std::fs::read_dir(root.join("charts"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        charts
            .iter()
            .any(|c| c.starts_with("std_rel_") && c.ends_with(".png")),
        "{charts:?}"
    );
}
