//! End-to-end tests of the TensorBoard event files, read back by
//! TensorBoard's own `EventAccumulator` (`tests/python/tb_read.py`, in the
//! project venv at the justfile's `tensorboard_version`): every training tag
//! with metrics.jsonl's steps and values, every evaluation metric with
//! eval_metrics.parquet's, the sample grids as images, a resumed run with
//! each step once, a sweep's runs each under its id, and the switch off.

mod common;
use common::{bin, text, venv_python_with, write};

use ddpm_lab::run::metrics_table;
use ddpm_lab::run::records::LogRecord;
use ddpm_lab::tensorboard::tags;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn python() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| venv_python_with("tensorboard", "tensorboard_version"))
}

/// What TensorBoard reads from `dir`: scalars as tag → [(step, value)], and
/// images as tag → [(step, width, height)].
struct Board {
    scalars: BTreeMap<String, Vec<(u64, f32)>>,
    images: BTreeMap<String, Vec<(u64, u64, u64)>>,
}

fn board(dir: &Path) -> Board {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tb_read.py");
    let o = Command::new(python())
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let scalars = v["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, pts)| {
            let pts = pts.as_array().unwrap().iter();
            let pts = pts.map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32));
            (t.clone(), pts.collect())
        })
        .collect();
    let images = v["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, pts)| {
            let pts = pts.as_array().unwrap().iter();
            let pts = pts.map(|p| {
                (
                    p[0].as_u64().unwrap(),
                    p[1].as_u64().unwrap(),
                    p[2].as_u64().unwrap(),
                )
            });
            (t.clone(), pts.collect())
        })
        .collect();
    Board { scalars, images }
}

fn records(run: &Path) -> Vec<LogRecord> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every training tag holds exactly metrics.jsonl's steps and values (as f32).
fn assert_training_matches(b: &Board, recs: &[LogRecord]) {
    let mut want: BTreeMap<String, Vec<(u64, f32)>> = BTreeMap::new();
    for r in recs {
        for (tag, v) in tags::training(r) {
            want.entry(tag).or_default().push((r.step, v as f32));
        }
    }
    assert!(want.contains_key("train/loss") && want.contains_key("train/lr"));
    let got: BTreeMap<String, Vec<(u64, f32)>> = b
        .scalars
        .iter()
        .filter(|(t, _)| t.starts_with("train/"))
        .map(|(t, v)| (t.clone(), v.clone()))
        .collect();
    assert_eq!(got, want);
}

fn train(cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    common::train_output(cfg, out, extra)
}

/// 16×16 labelled blobs, the tiny UNet, two guidance scales.
const IMAGES: &str = r#"
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
log_every = 5
checkpoint_every = 10
threads = 2
[ema]
decays = [0.9]
[eval]
sampler = "ddim"
sampling_steps = 10
num_samples = 40
guidance_scales = [1.0, 2.0]
bpd_timesteps = 5
bpd_images = 20
grid_images = 16
timestep_bins = 5
probe_size = 32
"#;

#[test]
fn training_records_metrics_and_sample_grids_read_back_through_tensorboard() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = d.join("run");
    let o = train(&write(d, "img.toml", IMAGES), &run, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let recs = records(&run);
    assert_eq!(recs.len(), 4);
    assert_training_matches(&board(&run.join("tb")), &recs);

    let o = bin()
        .arg("eval")
        .arg(&run)
        .args([
            "--weights",
            "raw,ema-0.9",
            "--device",
            "cpu",
            "--threads",
            "2",
            "--evaluators",
        ])
        .arg(d.join("evaluators"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = metrics_table::read(&run.join("eval/eval_metrics.parquet")).unwrap();
    for w in ["raw", "ema-0.9"] {
        let b = board(&run.join("tb").join(w));
        let mut want: BTreeMap<String, Vec<(u64, f32)>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.weights.to_string() == w) {
            want.entry(tags::evaluation(r))
                .or_default()
                .push((r.step, r.value as f32));
        }
        assert!(want.contains_key("eval/bpd"), "{want:?}");
        assert!(
            want.contains_key("eval/fd_synthetic-cnn/guidance-2"),
            "{want:?}"
        );
        for v in want.values_mut() {
            v.sort_by_key(|p| p.0);
        }
        assert_eq!(b.scalars, want, "{w}");
        // The grids: 16 images of 16×16 in a 4×4 grid with 2-pixel borders.
        for tag in ["samples", "samples/guidance-2"] {
            let steps: Vec<u64> = b.images[tag].iter().map(|p| p.0).collect();
            assert_eq!(steps, vec![0, 20], "{tag}");
            let png = image::open(run.join(format!(
                "eval/samples/{}",
                std::fs::read_dir(run.join("eval/samples"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .find(|n| n.ends_with(".png"))
                    .unwrap()
            )))
            .unwrap();
            assert_eq!(
                (b.images[tag][0].1, b.images[tag][0].2),
                (png.width() as u64, png.height() as u64)
            );
        }
    }
    // Evaluating again computes nothing, and so writes nothing twice.
    let o = bin()
        .arg("eval")
        .arg(&run)
        .args(["--weights", "raw", "--device", "cpu", "--evaluators"])
        .arg(d.join("evaluators"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(board(&run.join("tb/raw")).scalars["eval/bpd"].len(), 2);
}

/// Eight Gaussians and a small MLP: seconds.
const TOY: &str = r#"
[data]
source = "toy"
n_samples = 1000
[model]
preset = "mlp-small"
[diffusion]
timesteps = 50
[train]
steps = 60
batch_size = 32
log_every = 10
checkpoint_every = 30
threads = 1
[ema]
decays = []
"#;

#[test]
fn a_run_resumed_after_a_failure_shows_each_step_once_with_the_resumed_value() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = write(d, "toy.toml", TOY);
    let run = d.join("run");
    let o = train(&cfg, &run, &["--set", "train.fail_at_step=45"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    // The failed process logged step 40 past its checkpoint at 30.
    let before = board(&run.join("tb"));
    assert_eq!(before.scalars["train/loss"].last().unwrap().0, 40);
    let o = train(&cfg, &run, &["--resume"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let events = std::fs::read_dir(run.join("tb")).unwrap().count();
    assert_eq!(events, 2, "one event file per process");
    let recs = records(&run);
    let steps: Vec<u64> = recs.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![10, 20, 30, 40, 50, 60]);
    assert_training_matches(&board(&run.join("tb")), &recs);
}

#[test]
fn a_sweeps_runs_each_show_the_shared_training_and_their_own_metrics_under_their_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        d,
        "base.toml",
        "[base]\ndata.source = \"toy\"\ndata.n_samples = 1000\nmodel.preset = \"mlp-small\"\ndiffusion.timesteps = 50\ntrain.steps = 60\ntrain.batch_size = 32\ntrain.log_every = 20\ntrain.checkpoint_every = 30\n",
    );
    let spec = write(
        d,
        "s.toml",
        "name = \"tb\"\nextends = \"base.toml\"\n[sweep]\n\"ema.decay\" = [0.9, 0.99]\n",
    );
    let results = d.join("results");
    let o = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--results")
        .arg(&results)
        .args(["--devices", "cpu", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let root = results.join("tb");
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("plan.json")).unwrap()).unwrap();
    let jobs = plan["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "an eval-only axis shares the training");
    let job = jobs[0]["id"].as_str().unwrap();
    assert!(
        !root.join("jobs").join(job).join("tb").exists(),
        "no tb/ beside the runs'"
    );
    let recs = records(&root.join("jobs").join(job));
    let rows = metrics_table::read(
        &root
            .join("jobs")
            .join(job)
            .join("eval/eval_metrics.parquet"),
    )
    .unwrap();
    for r in plan["runs"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        let weights = r["weights"].as_str().unwrap();
        let b = board(&root.join("runs").join(id).join("tb"));
        assert_training_matches(&b, &recs);
        let mut want: BTreeMap<String, Vec<(u64, f32)>> = BTreeMap::new();
        for row in rows.iter().filter(|row| row.weights.to_string() == weights) {
            want.entry(tags::evaluation(row))
                .or_default()
                .push((row.step, row.value as f32));
        }
        assert!(!want.is_empty(), "{weights}: {rows:?}");
        let got: BTreeMap<String, Vec<(u64, f32)>> = b
            .scalars
            .iter()
            .filter(|(t, _)| t.starts_with("eval/"))
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect();
        assert_eq!(got, want, "{id}");
    }
}

#[test]
fn output_tensorboard_false_writes_no_event_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = d.join("run");
    let o = train(
        &write(d, "toy.toml", TOY),
        &run,
        &["--set", "output.tensorboard=false"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = bin()
        .arg("eval")
        .arg(&run)
        .args(["--device", "cpu", "--loss-only"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!run.join("tb").exists());
}
