//! End-to-end tests of `ddpm-lab sample`: a class-conditional toy model
//! trained for a few seconds, sampled per class, guided, reproducibly; an
//! image run sampled into a PNG grid; and the input errors.

mod common;
use common::{bin, text, train_cpu, write};

use std::path::Path;
use std::process::Output;

const TOY: &str = r#"
[data]
source = "toy"
toy = "eight-gaussians"
n_samples = 4000
labels = true

[model]
preset = "mlp-small"

[diffusion]
timesteps = 100

[train]
steps = 800
batch_size = 256
lr = 2e-3
p_uncond = 0.2
log_every = 200
checkpoint_every = 400

[ema]
decays = [0.99]
"#;

fn sample(run: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("sample")
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu"])
        .args(extra)
        .output()
        .unwrap()
}

fn rows(path: &Path) -> Vec<(f64, f64, Option<i64>)> {
    let t = std::fs::read_to_string(path).unwrap();
    let mut lines = t.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("x0,x1"), "{header}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f.get(2).map(|s| s.parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_conditional_toy_model_samples_each_class_near_its_gaussian_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = write(d, "toy.toml", TOY);
    let run = d.join("run");
    train_cpu(&cfg, &run);

    // Class k of eight-gaussians is centred at 2(cos 2πk/8, sin 2πk/8).
    for (k, sampler, steps) in [(3i64, "ddpm", None), (6, "ddim", Some("50"))] {
        let p = d.join(format!("k{k}.csv"));
        let k_text = k.to_string();
        let mut args = vec!["--label", &k_text, "-n", "200", "--sampler", sampler];
        if let Some(s) = steps {
            args.extend(["--steps", s]);
        }
        let o = sample(&run, &p, &args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let r = rows(&p);
        assert_eq!(r.len(), 200);
        let a = 2.0 * std::f64::consts::PI * k as f64 / 8.0;
        let (cx, cy) = (2.0 * a.cos(), 2.0 * a.sin());
        let near = r
            .iter()
            .filter(|(x, y, l)| *l == Some(k) && ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() < 0.8)
            .count();
        assert!(
            near >= 170,
            "{sampler}: {near}/200 samples of class {k} near its centre"
        );
    }

    // Default: the classes in turn; the same seed gives the same file.
    let (a, b, c) = (d.join("a.csv"), d.join("b.csv"), d.join("c.csv"));
    for (p, seed) in [(&a, "5"), (&b, "5"), (&c, "6")] {
        let o = sample(&run, p, &["-n", "16", "--seed", seed, "--guidance", "2"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let (ta, tb, tc) = (
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap(),
        std::fs::read_to_string(&c).unwrap(),
    );
    assert_eq!(ta, tb);
    assert_ne!(ta, tc);
    // Progress: on a pipe, a plain line every tenth of the reverse steps
    // (DDPM: all 100); none with -q, which keeps the closing summary.
    let o = sample(&run, &d.join("progress.csv"), &["-n", "300"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    for line in ["reverse step 10/100 (10%)", "reverse step 100/100 (100%)"] {
        assert!(err.contains(&format!("[sample] {line}")), "{err}");
    }
    assert_eq!(err.matches("[sample] reverse step").count(), 10, "{err}");
    let o = sample(&run, &d.join("quiet.csv"), &["-n", "300", "-q"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains("reverse step") && err.contains("300 samples"),
        "{err}"
    );
    // The weights are named by their decay as a number: EMA-0.990 is ema-0.99,
    // the default here (the run's first EMA).
    let a2 = d.join("a2.csv");
    let o = sample(
        &run,
        &a2,
        &[
            "-n",
            "16",
            "--seed",
            "5",
            "--guidance",
            "2",
            "--weights",
            "EMA-0.990",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(&a2).unwrap(), ta);
    let labels: Vec<i64> = rows(&a).iter().map(|r| r.2.unwrap()).collect();
    assert_eq!(labels[..9], [0, 1, 2, 3, 4, 5, 6, 7, 0]);

    // Input errors: exit 2, a message that says the fix, nothing written.
    let cases: [(&[&str], &str); 10] = [
        (
            &["--weights", "ema-0.5"],
            "holds raw, ema-0.99; pick one of those",
        ),
        (&["--label", "8"], "--label 8: the run has classes 0…7"),
        (
            &["--step", "7"],
            "has no checkpoint at step 7; it has 0, 400, 800",
        ),
        (
            &["--unconditional", "--guidance", "3"],
            "guidance needs a condition",
        ),
        (
            &["--sampler", "ddim", "--steps", "500"],
            "--steps 500: the run has 100 timesteps",
        ),
        (
            &["--sampler", "ddim", "--eta", "-1"],
            "--eta -1: must be in [0, 1]",
        ),
        (
            &["--guidance", "inf"],
            "--guidance inf: must be a finite number ≥ 0",
        ),
        (
            &["--sampler", "ddpm", "--steps", "10"],
            "--steps applies to the DDIM sampler, and this draw uses DDPM (all 100 steps); add --sampler ddim",
        ),
        (
            &["--sampler", "ddpm", "--eta", "0.5"],
            "--eta applies to the DDIM sampler",
        ),
        (
            &["--guidance", "1e30", "--weights", "raw"],
            "samples came out NaN or infinite, so nothing was written: guidance 1000000000000000000000000000000",
        ),
    ];
    for (args, msg) in cases {
        let p = d.join("bad.csv");
        let o = sample(&run, &p, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(msg),
            "{args:?}: {}",
            text(&o.stderr)
        );
        assert!(!p.exists());
    }
    // A training key edited after training: refused for sample and eval alike.
    let config = run.join("config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    assert!(original.contains("timesteps = 100"));
    std::fs::write(
        &config,
        original.replace("timesteps = 100", "timesteps = 50"),
    )
    .unwrap();
    // `sample` and `eval` both refuse with exit 2, messages holding `needles`,
    // and write nothing.
    let both_refuse = |extra: &[&str], needles: &[&str]| {
        for cmd in ["sample", "eval"] {
            let p = d.join("refused.csv");
            let mut c = bin();
            c.arg(cmd).arg(&run).args(extra);
            if cmd == "sample" {
                c.arg("--out").arg(&p);
            }
            let o = c.output().unwrap();
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
            for n in needles {
                assert!(err.contains(n), "{cmd}: {err}");
            }
            assert!(!p.exists() && !run.join("eval").exists(), "{cmd}");
        }
    };
    both_refuse(
        &[],
        &[
            "differs from the config the run was trained with",
            "a training key was edited after training",
        ],
    );
    // An evaluation setting may change.
    let eval_edit: Vec<String> = original
        .lines()
        .map(|l| match l.starts_with("num_samples = ") {
            true => "num_samples = 17".to_string(),
            false => l.to_string(),
        })
        .collect();
    assert_ne!(eval_edit.join("\n"), original.trim_end());
    std::fs::write(&config, eval_edit.join("\n")).unwrap();
    let p = d.join("eval-edit.csv");
    let o = sample(&run, &p, &["-n", "4"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::write(&config, &original).unwrap();
    // A CUDA device the machine lacks: exit 2 naming the count, not a libtorch panic.
    both_refuse(
        &["--device", "cuda:63"],
        &["--device cuda:63: this machine has"],
    );
    let o = sample(&run, &a, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read_to_string(&a).unwrap(), ta);

    // ema.decays edited in a run whose status.json records no training hash
    // (copied without it): with no --weights, the message names the run's
    // config, not a flag the user never passed.
    let status = run.join("status.json");
    std::fs::rename(&status, d.join("status.json")).unwrap();
    assert!(original.contains("decays = [0.99]"), "{original}");
    std::fs::write(
        &config,
        original.replace("decays = [0.99]", "decays = [0.5]"),
    )
    .unwrap();
    for cmd in ["sample", "eval"] {
        let p = d.join("decays.csv");
        let mut c = bin();
        c.arg(cmd).arg(&run).args(["--device", "cpu"]);
        match cmd {
            "sample" => c.arg("--out").arg(&p),
            _ => c
                .args(["--loss-only", "--quiet", "--out"])
                .arg(d.join("eval-decays")),
        };
        let o = c.output().unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(!err.contains("--weights ema-0.5"), "{cmd}: {err}");
        for needle in [
            "config.toml: ema.decays names the weight set ema-0.5, which checkpoint",
            "(it holds raw, ema-0.99)",
            "Pass --weights with one of raw, ema-0.99, or restore ema.decays",
        ] {
            assert!(err.contains(needle), "{cmd}: {err}");
        }
        assert!(!p.exists(), "{cmd}");
    }
    // Given, it is the flag that is named.
    let o = sample(&run, &d.join("decays.csv"), &["--weights", "ema-0.5"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--weights ema-0.5: checkpoint") && err.contains("pick one of those"),
        "{err}"
    );
    std::fs::write(&config, &original).unwrap();
    std::fs::rename(d.join("status.json"), &status).unwrap();
}

#[test]
fn an_image_run_samples_into_a_png_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = write(
        d,
        "img.toml",
        "[data]\nsource = \"synthetic\"\nshape = [1, 8, 8]\nn_samples = 64\n[model]\npreset = \"unet-tiny\"\n[diffusion]\ntimesteps = 20\n[train]\nsteps = 4\nbatch_size = 8\nlog_every = 2\ncheckpoint_every = 4\n",
    );
    let run = d.join("run");
    train_cpu(&cfg, &run);
    let p = d.join("grid.png");
    let o = sample(&run, &p, &["-n", "6", "--weights", "raw"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("6 samples from step 4 (raw)"),
        "{}",
        text(&o.stderr)
    );
    let img = image::open(&p).unwrap().to_rgb8();
    // ⌈√6⌉ = 3 columns, 2 rows of 8×8 with a 2-pixel border.
    assert_eq!((img.width(), img.height()), (3 * 10 + 2, 2 * 10 + 2));
    let o = sample(&run, &d.join("grid.csv"), &["-n", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("an image run writes a .png grid"));
    // An upper-case extension is a PNG too, as .CSV is a CSV.
    let upper = d.join("GRID.PNG");
    let o = sample(&run, &upper, &["-n", "2", "--weights", "raw"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(image::open(&upper).is_ok());
}

/// Without --weights, `sample` uses the EMA of longest memory that has
/// warmed up (≤ 1% of the initial weights left), else raw, and says which;
/// a cold EMA named by --weights is used with a warning.
#[test]
fn the_default_weights_are_a_warm_ema_and_a_cold_one_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let body = |decays: &str| {
        format!(
            "[data]\nsource = \"toy\"\nn_samples = 500\n[model]\npreset = \"mlp-small\"\n[diffusion]\ntimesteps = 20\n[train]\nsteps = 30\nbatch_size = 32\nlog_every = 10\ncheckpoint_every = 30\n[ema]\ndecays = {decays}\n"
        )
    };
    let run = d.join("both");
    train_cpu(&write(d, "both.toml", &body("[0.99, 0.5]")), &run);
    // 0.99^30 = 0.74 of the start is left: cold; 0.5^30: warm.
    let o = sample(&run, &d.join("a.csv"), &["-n", "4"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("[sample] weights: ema-0.5 (the EMA of longest memory whose share of the initial weights after 30 steps is ≤ 1%"),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
    let o = sample(
        &run,
        &d.join("b.csv"),
        &["-n", "4", "--weights", "ema-0.99"],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: ema-0.99 after 30 steps still holds 74% of the initial random weights (μ^N = 0.740)"),
        "{err}"
    );
    // `inspect run` shows each set's warm-up: 0.99^30 = 0.7397, 0.5^30 = 9.3e-10.
    let o = bin().args(["inspect", "run"]).arg(&run).output().unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for needle in [
        ": a trained run, completed at step 30 of 30",
        "ema-0.99     effective decay 0.990000, initial weights left μ^N = 7.397e-1 (cold: above 1%)",
        "ema-0.5      effective decay 0.500000, initial weights left μ^N = 9.313e-10 (warm)",
        "sample and eval use: ema-0.5",
        "evaluation of ema-0.5 with its eval.* settings: not done yet",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    let cold = d.join("cold");
    train_cpu(&write(d, "cold.toml", &body("[0.99]")), &cold);
    let o = sample(&cold, &d.join("c.csv"), &["-n", "4"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "[sample] weights: raw (no EMA has warmed up after 30 steps: ema-0.99 still holds 74%"
        ),
        "{err}"
    );
}
