//! End-to-end tests of `ddpm-lab eval`: evaluation points written while
//! training, the per-timestep loss table, bits/dim and sample-quality
//! metrics in eval_metrics.parquet, sample grids, guidance sweeps, true FID
//! through a TorchScript network, and incremental re-evaluation.

mod common;
use common::{bin, text, train_cpu, write};

use ddpm_lab::run::metrics_table::{self, MetricRow};
use ddpm_lab::run::timestep_table::read_timestep_rows;

const TOY: &str = r#"
[data]
source = "toy"
toy = "two-moons"
n_samples = 2000

[model]
preset = "mlp-small"

[diffusion]
timesteps = 100

[train]
steps = 400
batch_size = 128
lr = 2e-3
log_every = 100
checkpoint_every = 400

[ema]
decays = [0.9]

[eval]
every = 200
timestep_bins = 5
probe_size = 128
num_samples = 500
"#;

#[test]
fn the_per_timestep_loss_covers_every_point_and_weight_set_and_falls_with_training() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = write(d, "toy.toml", TOY);
    let run = d.join("run");
    train_cpu(&cfg, &run);
    // Evaluation points: 0, every 200, and the last step.
    let snaps: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(run.join("snapshots"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        snaps,
        ["step-000000000", "step-000000200", "step-000000400"]
    );

    let eval = |extra: &[&str]| {
        bin()
            .arg("eval")
            .arg(&run)
            .args(["--device", "cpu", "--quiet"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = eval(&["--weights", "all"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("evaluated 6 (step, weights) pair(s), 0 already there"));
    let rows = read_timestep_rows(&run.join("eval/timestep_loss.parquet")).unwrap();
    assert_eq!(rows.len(), 3 * 2 * 5, "points × weight sets × bins");
    let at = |step: u64, w: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.step == step && r.weights.to_string() == w)
            .map(|r| r.loss_unweighted)
            .collect()
    };
    // At step 0 the EMA is the initial weights.
    assert_eq!(at(0, "raw"), at(0, "ema-0.9"));
    // Training lowers the loss in every bin.
    for (b, (first, last)) in at(0, "raw").iter().zip(at(400, "raw")).enumerate() {
        assert!(last < *first, "bin {b}: {first} → {last}");
    }
    // Bins tile [0, 100); each row names its snapshot.
    let bins: Vec<(i64, i64)> = rows.iter().take(5).map(|r| (r.t_lo, r.t_hi)).collect();
    assert_eq!(bins, [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100)]);
    assert_eq!(rows[0].checkpoint, "snapshots/step-000000000");
    // Simple weighting on ε: weighted = unweighted.
    assert!(rows
        .iter()
        .all(|r| (r.loss_weighted - r.loss_unweighted).abs() < 1e-9));

    // Sample quality on 2-D data: the low-dimensional statistics for every
    // point and weight set, at guidance 1 with the DDPM sampler over all 100 steps.
    let m = metrics_table::read(&run.join("eval/eval_metrics.parquet")).unwrap();
    let get = |step: u64, w: &str, metric: &str| -> &MetricRow {
        m.iter()
            .find(|r| r.step == step && r.weights.to_string() == w && r.metric == metric)
            .unwrap_or_else(|| panic!("no {metric} at {step} {w}: {m:?}"))
    };
    for step in [0, 200, 400] {
        for w in ["raw", "ema-0.9"] {
            for metric in [
                "sliced_wasserstein",
                "mmd2_rbf",
                "ks_x",
                "ks_y",
                "ks_max",
                "corr_error",
                "q01_error",
                "q05_error",
            ] {
                let r = get(step, w, metric);
                assert_eq!(r.guidance, Some(1.0));
                assert_eq!(r.sampler, "ddpm-100");
                assert!(r.value.is_finite(), "{r:?}");
                assert_eq!(r.run, "run");
            }
            assert!(common::sample_file(&run.join("eval"), step, w, 1.0, "parquet").is_some());
        }
    }
    assert!(
        !m.iter()
            .any(|r| r.metric == "acf_sq_error" || r.metric == "bpd"),
        "no ACF for untimed data, no bits/dim for vectors"
    );
    // Trained samples are far closer to the moons than the untrained ones.
    for metric in ["sliced_wasserstein", "ks_max"] {
        let (first, last) = (get(0, "raw", metric).value, get(400, "raw", metric).value);
        assert!(last < 0.5 * first, "{metric}: {first} → {last}");
    }
    assert_eq!(
        get(400, "raw", "ks_max").checkpoint,
        "snapshots/step-000000400"
    );

    // Again: nothing to do, nothing changed.
    let o = eval(&["--weights", "all"]);
    assert!(text(&o.stderr).contains("evaluated 0 (step, weights) pair(s), 6 already there"));
    // Without --weights: the warm EMA (0.9^400 of the start is left), said so.
    let o = bin()
        .arg("eval")
        .arg(&run)
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(
        err.contains("[eval] weights: ema-0.9 (the EMA of longest memory whose share of the initial weights after 400 steps is ≤ 1%")
            && err.contains("evaluated 0 (step, weights) pair(s), 3 already there"),
        "{err}"
    );
    assert_eq!(
        read_timestep_rows(&run.join("eval/timestep_loss.parquet")).unwrap(),
        rows
    );
    assert_eq!(
        metrics_table::read(&run.join("eval/eval_metrics.parquet")).unwrap(),
        m
    );
    // ema-0.90 and EMA-0.9 name the same weights as ema-0.9, once.
    let o = eval(&["--weights", "ema-0.90,EMA-0.9"]);
    assert!(
        text(&o.stderr).contains("evaluated 0 (step, weights) pair(s), 3 already there"),
        "{}",
        text(&o.stderr)
    );
    // Another run (another learning rate) may not write into this run's
    // evaluation folder, nor take its rows for its own.
    let other = d.join("other");
    let o = bin()
        .arg("train")
        .arg(&cfg)
        .arg("--out")
        .arg(&other)
        .args([
            "--quiet",
            "--device",
            "cpu",
            "--set",
            "train.lr=1e-3",
            "--set",
            "train.steps=200",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let before = std::fs::read(run.join("eval/timestep_loss.parquet")).unwrap();
    let o = bin()
        .arg("eval")
        .arg(&other)
        .arg("--out")
        .arg(run.join("eval"))
        .args(["--device", "cpu", "--quiet"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("holds the evaluation of another run")
            && err.contains(&run.display().to_string())
            && err.contains("give each run its own folder"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(run.join("eval/timestep_loss.parquet")).unwrap(),
        before
    );
    // --out naming a file.
    let o = bin()
        .arg("eval")
        .arg(&other)
        .arg("--out")
        .arg(&cfg)
        .args(["--device", "cpu", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("is a file; name a folder"),
        "{}",
        text(&o.stderr)
    );

    let o = eval(&["--weights", "ema-0.5"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--weights ema-0.5: the run has raw, ema-0.9"),
        "{}",
        text(&o.stderr)
    );
}

/// A class-conditional image run on the synthetic source: bits/dim (with its
/// standard error) per point and weight set, the evaluator-network metrics
/// at two guidance scales, class accuracy, the PNG grids, and the cached
/// evaluator and reference statistics.
#[test]
fn images_get_bits_per_dim_evaluator_metrics_per_guidance_scale_and_grids() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = write(
        d,
        "img.toml",
        r#"
[data]
source = "synthetic"
n_samples = 256
shape = [1, 16, 16]
labels = true

[model]
preset = "unet-tiny"

[diffusion]
timesteps = 50

[train]
steps = 20
batch_size = 16
p_uncond = 0.2
log_every = 10
checkpoint_every = 20
threads = 2

[eval]
sampler = "ddim"
sampling_steps = 10
num_samples = 60
guidance_scales = [1.0, 2.0]
bpd_timesteps = 5
bpd_images = 40
grid_images = 16
timestep_bins = 5
probe_size = 32
"#,
    );
    let run = d.join("run");
    train_cpu(&cfg, &run);
    let evaluators = d.join("evaluators");
    let o = bin()
        .arg("eval")
        .arg(&run)
        .args(["--device", "cpu", "--threads", "2", "--evaluators"])
        .arg(&evaluators)
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("training the evaluator network"), "{err}");
    let m = metrics_table::read(&run.join("eval/eval_metrics.parquet")).unwrap();
    for step in [0u64, 20] {
        let bpd = m
            .iter()
            .find(|r| r.step == step && r.weights.to_string() == "raw" && r.metric == "bpd")
            .unwrap_or_else(|| panic!("{m:?}"));
        assert_eq!((bpd.guidance, bpd.sampler.as_str()), (None, ""));
        let se = bpd.stderr.unwrap();
        // Bits/dim of 8-bit data: positive, and an untrained model is far from 0.
        assert!(bpd.value > 0.5 && se > 0.0 && se < bpd.value, "{bpd:?}");
        assert!(m.iter().any(|r| r.step == step && r.metric == "bpd_prior"));
        let dec = m
            .iter()
            .find(|r| r.step == step && r.weights.to_string() == "raw" && r.metric == "bpd_decoder")
            .unwrap();
        assert!(
            dec.value > 0.0 && dec.value < bpd.value,
            "{dec:?} within {bpd:?}"
        );
        for g in [1.0, 2.0] {
            for metric in [
                "fd_synthetic-cnn",
                "is_synthetic-cnn",
                "precision_synthetic-cnn",
                "recall_synthetic-cnn",
                "class_accuracy_synthetic-cnn",
            ] {
                let r = m
                    .iter()
                    .find(|r| {
                        r.step == step
                            && r.weights.to_string() == "raw"
                            && r.guidance == Some(g)
                            && r.metric == metric
                    })
                    .unwrap_or_else(|| panic!("no {metric} at {step} g={g}"));
                assert_eq!(r.sampler, "ddim-10");
                assert!(r.value.is_finite() && r.value >= 0.0, "{r:?}");
            }
            let png = common::sample_file(&run.join("eval"), step, "raw", g, "png").unwrap();
            let img = image::open(&png).unwrap();
            // 16 images of 16×16 in a 4×4 grid with 2-pixel borders.
            assert_eq!((img.width(), img.height()), (4 * 18 + 2, 4 * 18 + 2));
        }
    }
    // The floor: as many real training images as samples, against the same
    // held-out reference; far below an untrained model's distance, and the
    // evaluator's own accuracy beside it.
    for g in [1.0, 2.0] {
        let at = |metric: &str| {
            m.iter()
                .find(|r| r.step == 0 && r.guidance == Some(g) && r.metric == metric)
                .unwrap_or_else(|| panic!("no {metric} at g={g}"))
                .value
        };
        let floor = at("floor_fd_synthetic-cnn");
        assert!(
            floor >= 0.0 && floor < at("fd_synthetic-cnn") / 2.0,
            "floor {floor} against {}",
            at("fd_synthetic-cnn")
        );
    }
    let is = m.iter().find(|r| r.metric == "is_synthetic-cnn").unwrap();
    assert!(
        is.value >= 1.0 && is.value <= 4.0 + 1e-9 && is.stderr.is_some(),
        "{is:?}"
    );
    // The evaluator and the reference statistics are cached, and reused.
    let cached: Vec<String> = std::fs::read_dir(&evaluators)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let ev_dir = evaluators.join(&cached[0]);
    assert!(cached[0].starts_with("synthetic-1x16-"), "{cached:?}");
    for f in [
        "evaluator.json",
        "weights.safetensors",
        "reference-test.safetensors",
    ] {
        assert!(ev_dir.join(f).exists(), "{f}");
    }
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ev_dir.join("evaluator.json")).unwrap())
            .unwrap();
    // Well above chance (1/4) on these noisy blobs (MNIST's bar is tests/evaluator_mnist.rs).
    assert!(info["test_accuracy"].as_f64().unwrap() > 0.6, "{info}");
    let acc = m
        .iter()
        .find(|r| r.metric == "evaluator_accuracy_synthetic-cnn")
        .unwrap();
    assert_eq!(Some(acc.value), info["test_accuracy"].as_f64());
    std::fs::remove_dir_all(run.join("eval")).unwrap();
    let o = bin()
        .arg("eval")
        .arg(&run)
        .args(["--device", "cpu", "--threads", "2", "--evaluators"])
        .arg(&evaluators)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        !text(&o.stderr).contains("training the evaluator network"),
        "reused"
    );
    let again = metrics_table::read(&run.join("eval/eval_metrics.parquet")).unwrap();
    assert_eq!(again, m, "the same seeds give the same numbers");
}

/// `-q` means what it means everywhere: no progress lines, the final result
/// line still printed; without it, the progress lines.
#[test]
fn eval_quiet_prints_no_progress_but_its_result() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = write(d, "toy.toml", TOY);
    let run = d.join("run");
    common::train_cpu_with(
        &cfg,
        &run,
        &[
            "--set",
            "train.steps=40",
            "--set",
            "train.log_every=20",
            "--set",
            "train.checkpoint_every=40",
            "--set",
            "eval.every=0",
        ],
    );
    let eval = |out: &str, extra: &[&str]| {
        bin()
            .arg("eval")
            .arg(&run)
            .args([
                "--device",
                "cpu",
                "--loss-only",
                "--weights",
                "all",
                "--out",
            ])
            .arg(d.join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = eval("quiet", &["-q"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("[eval]"), "{err}");
    assert!(err.contains("evaluated 4 (step, weights) pair(s)"), "{err}");
    let o = eval("loud", &[]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("[eval] step 0 raw: per-timestep loss"),
        "{err}"
    );
    assert!(err.contains("evaluated 4 (step, weights) pair(s)"), "{err}");
}
