//! End-to-end tests of `ddpm-lab eval`: evaluation points written while
//! training, the per-timestep loss table, and incremental re-evaluation.

mod common;
use common::{bin, text, write};

use ddpm_lab::eval::evaluate::read_timestep_rows;

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
"#;

#[test]
fn the_per_timestep_loss_covers_every_point_and_weight_set_and_falls_with_training() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = write(d, "toy.toml", TOY);
    let run = d.join("run");
    let out = bin()
        .arg("train")
        .arg(&cfg)
        .arg("--out")
        .arg(&run)
        .args(["--quiet", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
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
    let o = eval(&[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("evaluated 6 (step, weights) pair(s), 0 already there"));
    let rows = read_timestep_rows(&run.join("eval/timestep_loss.parquet")).unwrap();
    assert_eq!(rows.len(), 3 * 2 * 5, "points × weight sets × bins");
    let at = |step: u64, w: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.step == step && r.weights == w)
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

    // Again: nothing to do, nothing changed.
    let o = eval(&[]);
    assert!(text(&o.stderr).contains("evaluated 0 (step, weights) pair(s), 6 already there"));
    assert_eq!(
        read_timestep_rows(&run.join("eval/timestep_loss.parquet")).unwrap(),
        rows
    );
    let o = eval(&["--weights", "ema-0.5"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--weights ema-0.5: the run has raw, ema-0.9"),
        "{}",
        text(&o.stderr)
    );
}
