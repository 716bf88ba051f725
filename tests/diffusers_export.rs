//! End-to-end tests of `ddpm-lab export --format diffusers` and of
//! `model.init_from`, against diffusers itself: a `unet-tiny` run (with
//! labels and without) trained for a few steps is exported and loaded by
//! diffusers in the project's venv (`tests/python/diffusers_check.py`),
//! which must compute the same UNet output (1e-5) and the same samples from
//! the same noise (1e-4); the export starts a new run bit for bit; and what
//! diffusers cannot load is refused, exit 2.
//!
//! diffusers is pinned once, as `diffusers_version` in the justfile; `just
//! setup` installs it, and these tests install it into `.venv` when it is
//! missing (a plain `cargo test`).

mod common;
use common::{bin, text, train_cpu_with, venv_python_with, weights, write};

use ddpm_lab::eval::trained::{self, WeightsSource};
use ddpm_lab::model::Conditioning;
use ddpm_lab::run::Weights;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// 8×8 labelled blobs, the tiny UNet, 50 steps of noise (the chapter's
/// betas scaled by 1000/T, so x_T is noise).
const RUN: &str = r#"
[data]
source = "synthetic"
n_samples = 256
shape = [1, 8, 8]

[model]
preset = "unet-tiny"

[diffusion]
timesteps = 50
beta_start = 0.002
beta_end = 0.4

[train]
steps = 40
batch_size = 16
lr = 2e-3
log_every = 20
checkpoint_every = 40

[ema]
decays = [0.9]
"#;

/// The venv's python with diffusers at the justfile's pin.
fn python() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| venv_python_with("diffusers", "diffusers_version"))
}

/// `diffusers_check.py ARGS`; its JSON line.
fn check(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/diffusers_check.py");
    let o = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    let out = text(&o.stdout);
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn export(run: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("export")
        .arg(run)
        .args(["--format", "diffusers", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn export_ok(run: &Path, out: &Path, extra: &[&str]) -> String {
    let o = export(run, out, extra);
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stderr)
}

/// Train RUN (with `data.labels`, and CFG dropout, when `labels`) into `dir/name`.
fn trained(dir: &Path, name: &str, labels: bool) -> PathBuf {
    let cfg = write(dir, &format!("{name}.toml"), RUN);
    let run = dir.join(name);
    let mut set = vec![];
    if labels {
        set = vec!["--set", "data.labels=true", "--set", "train.p_uncond=0.2"];
    }
    train_cpu_with(&cfg, &run, &set);
    run
}

/// ddpm-lab's UNet output on fixed inputs (every class and the null token
/// when labelled), written beside them for diffusers_check.py's `unet`.
fn unet_io(run: &Path, io: &Path) {
    let tm = trained::load(run, None, Weights::Raw, WeightsSource::Flag, Device::Cpu).unwrap();
    tch::manual_seed(3);
    let x = Tensor::randn([5, 1, 8, 8], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[0i64, 1, 17, 33, 49]);
    let mut named = vec![
        ("x".to_string(), x.shallow_clone()),
        ("t".to_string(), t.shallow_clone()),
    ];
    let cond = if tm.num_classes > 0 {
        // Classes 0…K−1, then K: the null token.
        let k = tm.num_classes;
        let labels = Tensor::from_slice(&[0i64, 1, 2 % k, 3 % k, k]);
        named.push(("labels".to_string(), labels.shallow_clone()));
        Conditioning::labels(labels)
    } else {
        Conditioning::none()
    };
    let out = tch::no_grad(|| tm.model.forward(&x, &t, &cond, false));
    named.push(("out".to_string(), out));
    Tensor::write_safetensors(&named, io).unwrap();
}

fn sample(run: &Path, out: &Path, extra: &[&str]) {
    let o = bin()
        .arg("sample")
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu", "--weights", "raw", "-q"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
}

fn max_abs(v: &serde_json::Value) -> f64 {
    v["max_abs"].as_f64().unwrap()
}

#[test]
fn diffusers_computes_what_ddpm_lab_computes_with_and_without_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for labels in [false, true] {
        let name = if labels { "labelled" } else { "plain" };
        let run = trained(d, name, labels);
        let out = d.join(format!("{name}-export"));
        let said = export_ok(&run, &out, &["--weights", "raw"]);
        assert!(said.contains("diffusers DDPMPipeline"), "{said}");
        assert_eq!(said.contains("the null token"), labels, "{said}");
        let config = std::fs::read_to_string(out.join("unet/config.json")).unwrap();
        assert_eq!(
            config.contains("\"num_class_embeds\": 5"),
            labels,
            "{config}"
        );

        // Samples from the same noise: DDPM (x_T and every step's noise), and
        // DDIM with η = 0 over every step (x_T only).
        let path = |f: &str| d.join(format!("{name}-{f}.safetensors"));
        let n = if labels { "3" } else { "4" };
        let (noise_ddpm, noise_ddim) = (path("noise-ddpm"), path("noise-ddim"));
        check(&["noise", s(&out), n, "7", s(&noise_ddpm), s(&noise_ddim)]);
        let label = ["--label", "2"];
        let label: &[&str] = if labels { &label } else { &[] };
        let ddpm = path("ddpm");
        sample(
            &run,
            &ddpm,
            &[&["--noise", s(&noise_ddpm), "--sampler", "ddpm"], label].concat(),
        );
        let ddim = path("ddim");
        let args = [
            "--noise",
            s(&noise_ddim),
            "--sampler",
            "ddim",
            "--steps",
            "0",
            "--eta",
            "0",
        ];
        sample(&run, &ddim, &[&args[..], label].concat());

        // The UNet on the same x, t and class (the null token included), and
        // the samples.
        let io = path("io");
        unet_io(&run, &io);
        let mut call = vec!["compare", s(&out), s(&io), "7", s(&ddpm), s(&ddim)];
        if labels {
            call.push("2");
        }
        let r = check(&call);
        eprintln!("{name}: {r}");
        assert!(
            r["unet"]["scale"].as_f64().unwrap() > 1e-3,
            "a trained output: {r}"
        );
        assert!(
            max_abs(&r["unet"]) <= 1e-5,
            "{name}: UNet output differs by {r}"
        );
        for sampler in ["ddpm", "ddim"] {
            assert!(
                max_abs(&r[sampler]) <= 1e-4,
                "{name} {sampler}: samples differ by {r}"
            );
        }
    }
}

/// A path as the str a command line takes.
fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_export_starts_a_run_bit_for_bit_and_another_preset_is_refused_naming_the_parameter() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = trained(d, "source", true);
    let first = d.join("first");
    export_ok(&run, &first, &["--weights", "raw"]);

    // One step from the export: its step-0 snapshot is the export's weights.
    let cfg = write(d, "from.toml", RUN);
    let from = d.join("from");
    let init = format!("model.init_from={}", first.display());
    let set = [
        "--set",
        "data.labels=true",
        "--set",
        "train.p_uncond=0.2",
        "--set",
        "train.steps=1",
        "--set",
        &init,
    ];
    train_cpu_with(&cfg, &from, &set);
    let log = std::fs::read_to_string(from.join("train.log")).unwrap();
    assert!(log.contains("initial weights from"), "{log}");
    let again = d.join("again");
    export_ok(&from, &again, &["--weights", "raw", "--step", "0"]);
    let file = "unet/diffusion_pytorch_model.safetensors";
    let (a, b) = (weights(&first.join(file)), weights(&again.join(file)));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after the import");
    }

    // Another preset: the first parameter that differs is named, with shapes.
    let o = bin()
        .arg("train")
        .arg(&cfg)
        .arg("--out")
        .arg(d.join("small"))
        .args(["--quiet", "--device", "cpu"])
        .args(set)
        .args([
            "--set",
            "model.preset=unet-mnist-small",
            "--set",
            "model.attn_resolutions=[]",
        ])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("conv_in.weight has shape [16, 1, 3, 3], the run's model needs [32, 1, 3, 3]"),
        "{err}"
    );
    assert!(err.contains("block_out_channels is [16,32]"), "{err}");
}

#[test]
fn what_diffusers_cannot_load_and_an_existing_out_are_refused_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let toy = write(
        d,
        "toy.toml",
        "[data]\nsource = \"toy\"\nn_samples = 256\n[diffusion]\ntimesteps = 20\n[train]\nsteps = 5\nbatch_size = 32\n",
    );
    let mlp = d.join("mlp");
    train_cpu_with(&toy, &mlp, &[]);
    let o = export(&mlp, &d.join("mlp-export"), &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.preset: the model is a residual MLP"),
        "{err}"
    );
    assert!(!d.join("mlp-export").exists());

    let run = trained(d, "plain", false);
    let full = d.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let o = export(&run, &full, &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("exists and is not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
}

/// Issue 18: a sweep's run folder, the id the plan and report print, is a
/// handle for `export` too, with the run's own weight set.
#[test]
fn a_sweeps_run_folder_exports_with_its_own_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // RUN's tables under [base], its EMA as the sweep's axis.
    let base = RUN.replace("[ema]\ndecays = [0.9]\n", "");
    let base: String = ["data", "model", "diffusion", "train"]
        .iter()
        .fold(base, |b, t| {
            b.replace(&format!("[{t}]"), &format!("[base.{t}]"))
        });
    let spec = write(
        d,
        "spec.toml",
        &format!("name = \"tiny\"\n{base}\n[sweep]\n\"ema.decay\" = [0.9]\n"),
    );
    let results = d.join("results");
    let o = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--results")
        .arg(&results)
        .args(["--devices", "cpu", "--quiet", "--no-eval", "--no-report"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let runs: Vec<PathBuf> = std::fs::read_dir(results.join("tiny/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let out = d.join("export");
    let said = export_ok(&runs[0], &out, &[]);
    assert!(said.contains("weights: ema-0.9 (the run's own)"), "{said}");
    assert!(said.contains("(ema-0.9)"), "{said}");
    assert!(out
        .join("unet/diffusion_pytorch_model.safetensors")
        .is_file());
    assert!(out.join("scheduler/scheduler_config.json").is_file());
}
