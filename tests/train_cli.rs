//! End-to-end tests of `ddpm-lab train`: a tiny run whose loss goes down, exact
//! resume, kill -9, corrupt checkpoints, signals, and every config error.

mod common;
use common::{bin, text, write};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run ddpm-lab")
}

/// A fast toy run: an MLP on eight Gaussians.
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
decays = [0.99, 0.999]
"#;

fn train(cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn status(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("status.json")).unwrap()).unwrap()
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every tensor of every weights file of the newest checkpoint, as raw bytes.
fn final_weights(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("step-")
        })
        .collect();
    dirs.sort();
    let last = dirs.last().expect("a checkpoint");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(last)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_tiny_run_trains_and_writes_its_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "toy.toml", TOY);
    let out = dir.path().join("run");
    let o = train(&cfg, &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for f in [
        "config.toml",
        "status.json",
        "metrics.jsonl",
        "metrics.parquet",
        "train.log",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let s = status(&out);
    assert_eq!(s["state"], "completed");
    assert_eq!(s["step"], 300);
    assert_eq!(s["device"], "cpu");
    let m = metrics(&out);
    assert_eq!(
        m.iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![50, 100, 150, 200, 250, 300]
    );
    // conv_out/output start at zero, so the untrained model predicts ε̂ = 0 and its
    // loss is E[ε²] = 1. Training must get well below that, and keep going down.
    let first = m[0]["loss"].as_f64().unwrap();
    let last = m[5]["loss"].as_f64().unwrap();
    assert!(
        first < 1.0 && last < first && last < 0.8,
        "loss did not go down: 1 → {first} → {last}"
    );
    // The record carries what the issue lists.
    for key in [
        "loss_unweighted",
        "loss_q",
        "grad_norm",
        "lr",
        "ema_decay",
        "loss_scale",
        "images_per_s",
        "data_wait_frac",
    ] {
        assert!(!m[5][key].is_null(), "{key}");
    }
    assert_eq!(m[5]["ema_decay"]["ema-0.99"], 0.99);
    // keep_checkpoints = 2 by default.
    let cks: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cks.len(), 2, "{cks:?}");
    let weights = final_weights(&out);
    let names: Vec<&str> = weights.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "ema-0.99.safetensors",
            "ema-0.999.safetensors",
            "optimizer.safetensors",
            "raw.safetensors"
        ]
    );
    // config.toml is the resolved config and parses back.
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        resolved.contains("steps = 300") && resolved.contains("preset = \"mlp-small\""),
        "{resolved}"
    );
    // The finished run is never overwritten.
    let again = train(&cfg, &out, &[]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("already holds a run"),
        "{}",
        text(&again.stderr)
    );
    // Resuming a completed run does nothing, and says so.
    let again = train(&cfg, &out, &["--resume"]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("already completed"),
        "{}",
        text(&again.stderr)
    );
}

/// 2N steps in one go, or N steps, stop, resume, N more: identical weights, every EMA included.
fn check_exact_resume(body: &str, n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "run.toml", body);
    let full = dir.path().join("full");
    let o = train(&cfg, &full, &["--set", &format!("train.steps={}", 2 * n)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let split = dir.path().join("split");
    let o = train(&cfg, &split, &["--set", &format!("train.steps={n}")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = train(
        &cfg,
        &split,
        &["--set", &format!("train.steps={}", 2 * n), "--resume"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The console says where it continues, even with --quiet.
    assert!(
        text(&o.stderr).contains(&format!("resumed from step {n} (")),
        "{}",
        text(&o.stderr)
    );
    let (a, b) = (final_weights(&full), final_weights(&split));
    assert_eq!(a.len(), b.len());
    for ((na, wa), (nb, wb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(wa == wb, "{na} differs after resume");
    }
    // The metrics of the resumed run continue without a gap or a repeat.
    let steps: Vec<u64> = metrics(&split)
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    let full_steps: Vec<u64> = metrics(&full)
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, full_steps);
}

#[test]
fn resume_is_exact_with_an_adaptive_sampler_cfg_dropout_and_bias_corrected_emas() {
    check_exact_resume(
        r#"
[data]
source = "toy"
toy = "eight-gaussians"
n_samples = 500
labels = true
vector_condition = true
[model]
preset = "mlp-small"
dropout = 0.1
[diffusion]
timesteps = 50
prediction = "v"
weighting = "min-snr"
timestep_sampling = "importance"
[train]
batch_size = 64
lr = 1e-3
p_uncond = 0.2
log_every = 10
checkpoint_every = 10
threads = 1
[ema]
decays = [0.9, 0.99]
mode = "bias-corrected"
"#,
        30,
    );
}

#[test]
fn resume_is_exact_for_a_unet_with_dropout_and_warmup_ema() {
    check_exact_resume(
        r#"
[data]
source = "synthetic"
shape = [1, 8, 8]
# Not a multiple of the split point's 64 samples: the resume lands mid-epoch.
n_samples = 100
labels = true
[model]
preset = "unet-tiny"
dropout = 0.1
[diffusion]
timesteps = 50
timestep_sampling = "stratified"
[train]
batch_size = 8
lr = 1e-3
p_uncond = 0.1
lr_schedule = "warmup"
warmup_steps = 5
log_every = 4
checkpoint_every = 4
threads = 1
[ema]
decays = [0.999]
mode = "warmup"
"#,
        8,
    );
}

fn wait_for(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has_checkpoint(out: &Path) -> bool {
    std::fs::read_dir(out.join("checkpoints"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
        })
        .unwrap_or(false)
}

const LONG: &str = r#"
[data]
source = "toy"
n_samples = 1000
[model]
preset = "mlp-small"
[diffusion]
timesteps = 100
[train]
steps = 100000
batch_size = 64
log_every = 20
checkpoint_every = 20
threads = 1
"#;

/// Start the LONG run in the background and wait for its first checkpoint.
fn start_long_run(dir: &Path, stderr: Stdio) -> (std::process::Child, PathBuf, PathBuf) {
    let cfg = write(dir, "long.toml", LONG);
    let out = dir.join("run");
    let child = bin()
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stderr(stderr)
        .spawn()
        .unwrap();
    wait_for("a checkpoint", Duration::from_secs(60), || {
        has_checkpoint(&out)
    });
    (child, cfg, out)
}

#[test]
fn a_run_killed_with_sigkill_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, cfg, out) = start_long_run(dir.path(), Stdio::null());
    // A second process cannot train the same folder while the first is alive.
    let o = train(&cfg, &out, &["--resume"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("is being trained right now by pid {}", child.id())),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        status(&out)["state"],
        "running",
        "killed runs cannot record anything"
    );
    let ck_step = status(&out)["step"].as_u64().unwrap();
    // Resume and finish a few steps past it; the run continues from the checkpoint.
    let target = ck_step + 40;
    let o = train(
        &cfg,
        &out,
        &["--resume", "--set", &format!("train.steps={target}")],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = status(&out);
    assert_eq!(s["state"], "completed");
    assert_eq!(s["step"].as_u64().unwrap(), target);
    // Same weights as a run that was never killed.
    let clean = dir.path().join("clean");
    let o = train(&cfg, &clean, &["--set", &format!("train.steps={target}")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        final_weights(&out) == final_weights(&clean),
        "resumed weights differ"
    );
}

#[test]
fn sigterm_checkpoints_marks_interrupted_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (child, cfg, out) = start_long_run(dir.path(), Stdio::piped());
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o.stderr));
    let s = status(&out);
    assert_eq!(s["state"], "interrupted");
    let step = s["step"].as_u64().unwrap();
    assert_eq!(
        s["last_checkpoint"],
        format!("step-{step:09}"),
        "a checkpoint at the stopping step"
    );
    let o = train(
        &cfg,
        &out,
        &["--resume", "--set", &format!("train.steps={}", step + 10)],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(status(&out)["state"], "completed");
}

#[test]
fn a_corrupt_checkpoint_is_named_and_the_previous_one_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "toy.toml", TOY);
    let out = dir.path().join("run");
    let o = train(
        &cfg,
        &out,
        &[
            "--set",
            "train.steps=200",
            "--set",
            "train.keep_checkpoints=3",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let newest = out.join("checkpoints/step-000000200/raw.safetensors");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let o = train(
        &cfg,
        &out,
        &[
            "--resume",
            "--set",
            "train.steps=250",
            "--set",
            "train.keep_checkpoints=3",
        ],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("step-000000200")
            && err.contains("raw.safetensors")
            && err.contains("truncated"),
        "{err}"
    );
    assert!(std::fs::read_to_string(out.join("train.log"))
        .unwrap()
        .contains("resumed from"));
    assert_eq!(status(&out)["step"], 250);
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_the_step_and_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "toy.toml", TOY);
    let out = dir.path().join("run");
    let o = train(
        &cfg,
        &out,
        &[
            "--set",
            "train.lr=1e30",
            "--set",
            "train.grad_clip=0",
            "--set",
            "train.checkpoint_every=1",
            "--set",
            "train.log_every=1",
        ],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the loss became NaN or infinite at step"),
        "{err}"
    );
    assert!(
        err.contains("last good checkpoint") && err.contains("step-0000000"),
        "{err}"
    );
    let s = status(&out);
    assert_eq!(s["state"], "failed");
    assert!(s["reason"].as_str().unwrap().contains("NaN"));
}

/// A checkpoint that cannot be written (here a file in its way; a full disk
/// alike) fails the run with how to go on, leaves no half-written folder, and
/// the run resumes once the cause is gone.
#[test]
fn a_checkpoint_that_cannot_be_written_fails_the_run_and_it_resumes_later() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "toy.toml", TOY);
    let out = dir.path().join("run");
    let o = train(&cfg, &out, &["--set", "train.steps=100"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ck = out.join("checkpoints");
    let blocker = ck.join("step-000000200");
    std::fs::write(&blocker, "in the way").unwrap();
    let o = train(&cfg, &out, &["--resume", "--set", "train.steps=200"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let hint = format!(
        "Training stopped; fix the cause, then continue with `ddpm-lab train <config> --out <this run> --resume` from {}",
        ck.join("step-000000100").display()
    );
    assert!(
        err.contains("writing checkpoint") && err.contains(&hint),
        "{err}"
    );
    let s = status(&out);
    assert_eq!(s["state"], "failed");
    assert!(s["reason"].as_str().unwrap().contains(&hint), "{s}");
    assert_eq!(s["last_checkpoint"], "step-000000100");
    let mut left: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["step-000000100", "step-000000200"], "no .tmp-* left");
    std::fs::remove_file(&blocker).unwrap();
    let o = train(&cfg, &out, &["--resume", "--set", "train.steps=200"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(status(&out)["state"], "completed");
    assert_eq!(status(&out)["step"], 200);
}

#[test]
fn an_injected_failure_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "toy.toml", TOY);
    let out = dir.path().join("run");
    let o = train(&cfg, &out, &["--set", "train.fail_at_step=7"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("failed on purpose at step 7"));
    assert_eq!(status(&out)["state"], "failed");
}

/// Each config error: exit 2, the key, the value and what is allowed; nothing written.
#[test]
fn config_errors_name_the_key_value_and_fix_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("[train]\nlr = -0.1\n", &["bad.toml:2: train.lr: = -0.1: must be a number > 0"]),
        ("[train]\np_uncond = 1.0\n[data]\nlabels = true\n", &["train.p_uncond: = 1: must be in [0, 1)"]),
        ("[train]\nprecision = \"fp16\"\ndevice = \"cpu\"\n", &["train.precision", "fp16 autocast needs a CUDA device"]),
        ("[train]\nprecision = \"bf16pure\"\n", &["bad.toml:2: train.precision: unknown value \"bf16pure\"; allowed: fp32, bf16, fp16, bf16-pure"]),
        ("[train]\ncuda_graph = true\ndevice = \"cpu\"\n", &["bad.toml:2: train.cuda_graph", "CUDA graphs need a CUDA device", "set train.cuda_graph = false"]),
        ("[data]\ntoy = \"swiss-roll\"\nlabels = true\n", &["bad.toml:3: data.labels", "has no class labels"]),
        ("[data]\ntoy = \"two-moons\"\nvector_condition = true\n", &["data.vector_condition", "no condition vector"]),
        ("[train]\np_uncond = 0.1\n", &["train.p_uncond", "needs a condition"]),
        ("[train]\nlearning_rate = 1e-4\n", &["bad.toml:2: train.learning_rate: unknown key", "did you mean `train.lr`?"]),
        ("[trian]\nlr = 1e-4\n", &["bad.toml:1: trian: unknown key", "did you mean `train`?"]),
        ("[train]\nsteps = \"many\"\n", &["train.steps: expected a whole number ≥ 0, found string"]),
        ("[train]\nsteps = -5\n", &["bad.toml:2: train.steps: expected a whole number ≥ 0, found signed int `-5`"]),
        ("[train]\nlr = [1e-3, 1e-4]\n", &["bad.toml:2: train.lr: expected a number, found sequence", "make the key an axis under [sweep]"]),
        ("train = 5\n", &["train: expected a table of keys (a section such as [train])"]),
        // A badly typed key is one problem: the default standing in for it
        // raises no second one in the checks that read it.
        ("[train]\np_uncond = 0.1\n[data]\nlabels = \"yes\"\n", &["has 1 problem:", "data.labels: expected"]),
        ("model = 5\n[data]\nsource = \"synthetic\"\nshape = [3, 32, 32]\n", &["has 1 problem:", "model: expected a table of keys"]),
        ("[train]\nlr = 0\n[data]\nlabels = \"yes\"\n", &["has 2 problems:", "train.lr", "data.labels"]),
        ("[diffusion]\nprediction = \"score\"\n", &["diffusion.prediction", "score", "epsilon, x0, v"]),
        ("[eval]\nbpd_variance = \"learned\"\n", &["bad.toml:2: eval.bpd_variance: unknown value \"learned\"; allowed: fixed-small, fixed-large"]),
        ("[eval]\nbpd_varience = \"fixed-large\"\n", &["bad.toml:2: eval.bpd_varience: unknown key", "did you mean `eval.bpd_variance`?"]),
        ("[diffusion]\nzero_terminal_snr = true\n", &["diffusion.zero_terminal_snr", "use prediction \"v\""]),
        ("[model]\npreset = \"ddpm-cifar10\"\n", &["model.preset", "is a UNet for images"]),
        ("[ema]\ndecays = [0.999, 1.5]\n", &["ema.decays[1]: = 1.5: must be in (0, 1)"]),
        ("[data]\nsource = \"synthetic\"\nshape = [1, 28, 28]\n[model]\npreset = \"ddpm-cifar10\"\n", &["has 4 levels", "divisible by 8"]),
        ("[train]\nlr = 0\nbatch_size = 0\n", &["has 2 problems", "train.lr", "train.batch_size"]),
        // Sizes that would end in libtorch's allocation panic or an abort.
        ("[model]\nhidden = 1000000\n", &["model.hidden: makes a model of about 9.0e12 parameters, more than 2e9"]),
        ("[data]\nsource = \"synthetic\"\nshape = [3, 32, 32]\n[model]\npreset = \"ddpm-cifar10\"\nch = 4096\n", &["model.ch: makes a model of about"]),
        ("[data]\nsource = \"synthetic\"\nshape = [1, 100000, 100000]\n[model]\npreset = \"unet-tiny\"\n", &["data.shape: makes images of [1, 100000, 100000]: at most 1024 pixels a side"]),
        ("[data]\nn_samples = 2000000000\n", &["data.n_samples: = 2000000000: 2000000000 samples of [2] are 14.9 GiB in memory, more than 8 GiB"]),
        ("[data]\nsource = \"synthetic\"\nshape = [5, 8, 8]\n[model]\npreset = \"unet-tiny\"\n", &["data.shape: = [5, 8, 8]: images have 1 channel (grayscale) or 3 (RGB)"]),
        ("[data]\nsource = \"tabular\"\npath = \"x.csv\"\ncolumns = [\"a\", \"a\"]\n", &["data.columns: lists \"a\" twice"]),
        ("[data]\nsource = \"tabular\"\npath = \"x.csv\"\ncolumns = [\"a\", \"b\"]\ncondition_columns = [\"b\"]\nvector_condition = true\n", &["data.condition_columns: lists \"b\", which data.columns models too"]),
        ("[train]\nthreads = 100000\n", &["train.threads: = 100000: at most 1024"]),
        ("[train]\nbatch_size = 100000000000\n", &["bad.toml:2: train.batch_size: = 100000000000: at most 1048576 (2^20)"]),
        ("[train\nlr = 1\n", &["not valid TOML"]),
    ];
    for (body, needles) in cases {
        let cfg = write(dir.path(), "bad.toml", body);
        let out = dir.path().join("never");
        let o = train(&cfg, &out, &[]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{body}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{body}: expected {n:?} in:\n{err}");
        }
        assert!(!out.exists(), "{body}: wrote a run directory");
    }
    // --set and the environment are named as the origin.
    let cfg = write(dir.path(), "ok.toml", TOY);
    let o = train(&cfg, &dir.path().join("never"), &["--set", "train.lr=-1"]);
    assert!(
        text(&o.stderr).contains("--set train.lr=-1: train.lr"),
        "{}",
        text(&o.stderr)
    );
    let o = bin()
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--out",
            dir.path().join("never").to_str().unwrap(),
        ])
        .env("DDPM_LAB_TRAIN__BATCH_SIZE", "0")
        .output()
        .unwrap();
    assert!(
        text(&o.stderr).contains("$DDPM_LAB_TRAIN__BATCH_SIZE: train.batch_size"),
        "{}",
        text(&o.stderr)
    );
    // eval's own --threads has the same bound (100,000 hung the process).
    let o = run(&["eval", "nowhere", "--threads", "100000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("100000 is not in 0..=1024"),
        "{}",
        text(&o.stderr)
    );
    // A missing file.
    let o = train(
        &dir.path().join("missing.toml"),
        &dir.path().join("never"),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("cannot read"),
        "{}",
        text(&o.stderr)
    );
}

/// `--threads N` is `--set train.threads=N`; `--quiet` prints no progress
/// lines, only the closing one.
#[test]
fn train_threads_sets_train_threads_and_quiet_prints_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "run.toml", TOY); // train.threads = 1
    let out = dir.path().join("run");
    let o = train(&cfg, &out, &["--threads", "2", "--set", "train.steps=60"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(resolved.contains("threads = 2\n"), "{resolved}");
    assert!(
        !err.contains("step 50/60"),
        "no progress lines with --quiet: {err}"
    );
    assert!(err.contains("completed 60 steps"), "{err}");
    // Without --quiet (and without a terminal): plain progress lines.
    let o = run(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("loud").to_str().unwrap(),
        "--set",
        "train.steps=60",
    ]);
    assert!(
        text(&o.stderr).contains("step 50/60 loss"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&["train", cfg.to_str().unwrap(), "--threads", "2000"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn inspect_model_counts_the_papers_parameters() {
    let o = run(&["inspect", "model", "--preset", "ddpm-cifar10"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.lines().last().unwrap() == "parameters: 35746307",
        "{out}"
    );
    assert!(
        out.contains("down.1") && out.contains("mid") && out.contains("up.3"),
        "{out}"
    );
    // Block rows add up to the total.
    let sum: i64 = out
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with("parameters:"))
        .map(|l| l.split_whitespace().last().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(sum, 35_746_307);
}

#[test]
fn bf16_autocast_trains_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "toy.toml", TOY);
    let out = dir.path().join("run");
    let o = train(
        &cfg,
        &out,
        &[
            "--set",
            "train.precision=\"bf16\"",
            "--set",
            "train.steps=100",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let m = metrics(&out);
    let last = m.last().unwrap()["loss"].as_f64().unwrap();
    assert!(last.is_finite() && last < 1.0, "{last}");
    assert_eq!(status(&out)["state"], "completed");
}

/// A small UNet run for the bf16-pure tests: labels, CFG dropout, an EMA.
const UNET_BF16_PURE: &str = r#"
[data]
source = "synthetic"
shape = [3, 8, 8]
n_samples = 128
labels = true
[model]
preset = "unet-tiny"
[diffusion]
timesteps = 100
[train]
steps = 60
batch_size = 16
lr = 2e-3
p_uncond = 0.1
log_every = 10
checkpoint_every = 60
threads = 1
[ema]
decays = [0.9]
"#;

/// `precision = "bf16-pure"` runs the network in bf16 but keeps fp32 master
/// weights: the checkpoint holds f32 values bf16 cannot represent, and the run
/// follows the fp32 run of the same seed (same batches, timesteps and noise;
/// only the network's rounding differs).
#[test]
fn bf16_pure_keeps_f32_master_weights_and_follows_the_fp32_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "u.toml", UNET_BF16_PURE);
    let runs: Vec<PathBuf> = ["fp32", "bf16-pure"]
        .iter()
        .map(|p| {
            let out = dir.path().join(p);
            let o = train(&cfg, &out, &["--set", &format!("train.precision=\"{p}\"")]);
            assert!(o.status.success(), "{p}: {}", text(&o.stderr));
            out
        })
        .collect();
    let raw = |r: &Path| r.join("checkpoints/step-000000060/raw.safetensors");
    let init = runs[0].join("snapshots/step-000000000/raw.safetensors");
    // Both start from the same f32 initialisation.
    assert_eq!(
        common::distance(
            &init,
            &runs[1].join("snapshots/step-000000000/raw.safetensors")
        ),
        0.0
    );
    // The master weights are f32 with bits below bf16's 8-bit mantissa.
    let mut below_bf16 = 0i64;
    for (name, t) in common::weights(&raw(&runs[1])) {
        assert_eq!(t.kind(), tch::Kind::Float, "{name}");
        below_bf16 += t
            .ne_tensor(&t.to_kind(tch::Kind::BFloat16).to_kind(tch::Kind::Float))
            .sum(tch::Kind::Int64)
            .int64_value(&[]);
    }
    assert!(
        below_bf16 > 1000,
        "only {below_bf16} master weights are not bf16 values"
    );
    // bf16 rounding moves the run a little; a broken copy (stale weights, lost
    // gradients) leaves it at its start or far off the fp32 run.
    let moved = common::distance(&raw(&runs[0]), &init);
    let apart = common::distance(&raw(&runs[0]), &raw(&runs[1]));
    eprintln!("fp32 moved {moved:.4e}; bf16-pure vs fp32 {apart:.4e}");
    assert!(moved > 0.0 && apart > 0.0);
    assert!(
        apart < 0.1 * moved,
        "bf16-pure is {apart:.3e} from fp32, which moved {moved:.3e}"
    );
    let (a, b) = (metrics(&runs[0]), metrics(&runs[1]));
    assert_eq!(a.len(), b.len());
    for (ra, rb) in a.iter().zip(&b) {
        let (la, lb) = (ra["loss"].as_f64().unwrap(), rb["loss"].as_f64().unwrap());
        assert!(
            (la - lb).abs() <= 0.05 * la,
            "step {}: fp32 loss {la}, bf16-pure {lb}",
            ra["step"]
        );
    }
    assert!(a.last().unwrap()["loss"].as_f64().unwrap() < 0.8 * a[0]["loss"].as_f64().unwrap());
}

/// bf16-pure resumes bit for bit: the restored master weights reach the
/// network's bf16 copy before the first resumed step.
#[test]
fn resume_is_exact_in_bf16_pure() {
    let body = UNET_BF16_PURE
        .replace("[train]\n", "[train]\nprecision = \"bf16-pure\"\n")
        .replace("checkpoint_every = 60", "checkpoint_every = 10");
    check_exact_resume(&body, 30);
}

#[test]
fn resume_is_exact_with_the_prefetch_loader_and_flips() {
    check_exact_resume(
        r#"
[data]
source = "synthetic"
shape = [1, 8, 8]
n_samples = 100
loader = "prefetch"
flip = true
[model]
preset = "unet-tiny"
[diffusion]
timesteps = 50
[train]
batch_size = 8
lr = 1e-3
log_every = 4
checkpoint_every = 4
threads = 1
[ema]
decays = [0.99]
"#,
        8,
    );
}

/// The adaptive samplers learn from the loss training minimises, w(t)·MSE, not
/// the plain MSE (improved-diffusion feeds its resampler the weighted loss). An
/// x₀-model under `snr` weighting separates the two: its plain MSE is smallest
/// at small t (x_t ≈ x₀ there), while w = snr² makes the weighted loss
/// snr·(ε-MSE), largest at small t. So the loss-aware sampler's first bin must
/// hold far more loss than its last, the opposite of what plain MSE gives.
#[test]
fn the_loss_aware_sampler_learns_from_the_weighted_loss() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "run.toml",
        r#"
[data]
source = "toy"
toy = "eight-gaussians"
n_samples = 500
[model]
preset = "mlp-small"
[diffusion]
timesteps = 100
prediction = "x0"
weighting = "snr"
timestep_sampling = "loss-aware"
loss_aware_bins = 4
[train]
steps = 20
batch_size = 64
lr = 1e-3
log_every = 10
checkpoint_every = 20
threads = 1
[ema]
decays = [0.9]
"#,
    );
    let out = dir.path().join("run");
    let o = train(&cfg, &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoints/step-000000020/state.json")).unwrap(),
    )
    .unwrap();
    let sampler = &state["sampler"];
    assert_eq!(sampler["sampler"], "loss-aware", "{sampler}");
    let mean: Vec<f64> = sampler["mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(mean.len(), 4);
    assert!(
        mean[0] > 10.0 * mean[3],
        "bin means {mean:?}: the first bin (small t, weight snr² ≫ 1) should hold \
         far more weighted loss than the last"
    );
}

/// A schedule that ends with signal in x_T is valid, so it trains, but `train`
/// says so first and names the fix.
#[test]
fn a_short_linear_schedule_trains_with_a_warning_that_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let body = TOY
        .replace("timesteps = 100", "timesteps = 50")
        .replace("steps = 300", "steps = 10");
    let cfg = write(dir.path(), "run.toml", &body);
    let o = train(&cfg, &dir.path().join("run"), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    // Π(1 − β_i) for β = linspace(1e-4, 0.02, 50).
    let a: f64 = (0..50)
        .map(|i| 1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / 49.0))
        .product();
    let line = err
        .lines()
        .find(|l| l.starts_with("warning: diffusion:"))
        .unwrap_or_else(|| panic!("no schedule warning in: {err}"));
    assert!(line.contains(&format!("ᾱ_T = {a:.3}")), "{line}");
    assert!(
        line.contains("diffusion.beta_start = 0.002, diffusion.beta_end = 0.4"),
        "{line}"
    );
    // The chapter's T = 1000 gets no warning.
    let o = train(
        &write(
            dir.path(),
            "ok.toml",
            &TOY.replace("timesteps = 100", "timesteps = 1000")
                .replace("steps = 300", "steps = 10"),
        ),
        &dir.path().join("ok"),
        &[],
    );
    assert!(o.status.success());
    assert!(!text(&o.stderr).contains("warning"), "{}", text(&o.stderr));
}

/// An --out that cannot be the run's folder is an input error (exit 2) that
/// says so once, and the file in the way is left as it was.
#[test]
fn an_out_path_that_is_a_file_or_under_one_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "run.toml",
        &TOY.replace("steps = 300", "steps = 2"),
    );
    let file = write(dir.path(), "afile", "keep me");
    for (out, want) in [
        (
            file.clone(),
            "afile is a file, not a folder; --out (or output.dir) names the run's folder",
        ),
        (file.join("run"), "cannot create the run folder"),
    ] {
        let o = train(&cfg, &out, &[]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
        // The cause is printed once, not twice.
        assert!(err.matches("os error").count() <= 1, "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

/// Under a sweep (`--progress-jsonl`) a child reports why it failed as a
/// typed line on stdout, which the sweep shows as the job's reason (it no
/// longer reads stderr for it); progress comes as typed lines too.
#[test]
fn a_child_reports_progress_and_its_failure_as_typed_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = write(
        d,
        "ok.toml",
        "[data]\nn_samples = 64\n[model]\npreset = \"mlp-small\"\n[diffusion]\ntimesteps = 20\n[train]\nsteps = 4\nbatch_size = 16\nlog_every = 2\ncheckpoint_every = 4\n",
    );
    let o = run(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        d.join("run").to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
        "--progress-jsonl",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<ddpm_lab::run::records::ProgressLine> = text(&o.stdout)
        .lines()
        .map(|l| ddpm_lab::run::records::ProgressLine::parse(l).expect(l))
        .collect();
    assert!(lines.contains(&ddpm_lab::run::records::ProgressLine::Step { step: 0, total: 4 }));
    assert!(lines.iter().any(|l| matches!(
        l,
        ddpm_lab::run::records::ProgressLine::Record {
            step: 4,
            total: 4,
            loss: Some(_),
            ..
        }
    )));
    // The same run again: the folder holds a run, an input error.
    let o = run(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        d.join("run").to_str().unwrap(),
        "--progress-jsonl",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let last = text(&o.stdout).lines().last().unwrap_or("").to_string();
    match ddpm_lab::run::records::ProgressLine::parse(&last) {
        Some(ddpm_lab::run::records::ProgressLine::Failed { reason }) => {
            assert!(
                reason.contains("already holds a run (completed at step 4)"),
                "{reason}"
            );
            assert!(text(&o.stderr).contains(&reason), "stderr says the same");
        }
        other => panic!("expected a failed line, got {other:?} from {last:?}"),
    }
}

/// `eval.initial = false`: no evaluation point (and no snapshot) at step 0;
/// the listed steps and the last still are.
#[test]
fn without_the_initial_point_the_snapshots_are_the_listed_steps_and_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "toy.toml", TOY);
    let out = dir.path().join("run");
    let o = train(
        &cfg,
        &out,
        &[
            "--set",
            "eval.initial=false",
            "--set",
            "eval.at_steps=[100]",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut snaps: Vec<String> = std::fs::read_dir(out.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    assert_eq!(snaps, ["step-000000100", "step-000000300"]);
}
