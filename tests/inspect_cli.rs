//! End-to-end tests of `ddpm-lab inspect`: output format, numbers against closed
//! forms, and every bad-argument error with its exit code.

use std::process::{Command, Output};

fn ddpm_lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-lab"))
        .args(args)
        .output()
        .expect("run ddpm-lab")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn csv(args: &[&str]) -> (String, Vec<Vec<f64>>) {
    let o = ddpm_lab(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let text = stdout(&o);
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split(',').map(|c| c.parse::<f64>().unwrap()).collect())
        .collect();
    (header, rows)
}

#[test]
fn schedule_csv_has_the_exact_header_and_closed_form_values() {
    let (header, rows) = csv(&[
        "inspect",
        "schedule",
        "--schedule",
        "linear",
        "--timesteps",
        "1000",
        "--format",
        "csv",
    ]);
    assert_eq!(header, "t,beta,alpha_bar,snr,log_snr,posterior_variance");
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[0][0], 0.0);
    assert_eq!(rows[999][0], 999.0);
    // Independent closed form: β_t = 1e-4 + t·(0.02 − 1e-4)/999, ᾱ = Π(1 − β).
    let mut ab = 1.0f64;
    let mut ab_prev = 1.0f64;
    for (t, r) in rows.iter().enumerate() {
        let beta = 1e-4 + t as f64 * (0.02 - 1e-4) / 999.0;
        ab_prev = if t == 0 { 1.0 } else { ab_prev };
        let prev = ab;
        ab *= 1.0 - beta;
        assert!((r[1] - beta).abs() <= 1e-15, "t={t}");
        assert!((r[2] - ab).abs() <= 1e-13 * ab, "t={t}");
        assert!((r[3] - ab / (1.0 - ab)).abs() <= 1e-12 * r[3], "t={t}");
        assert!((r[4] - (ab / (1.0 - ab)).ln()).abs() <= 1e-10, "t={t}");
        let pv = beta * (1.0 - prev) / (1.0 - ab);
        assert!((r[5] - pv).abs() <= 1e-12 * pv.max(1e-300), "t={t}");
    }
}

#[test]
fn zero_terminal_snr_schedule_ends_at_zero_snr() {
    let o = ddpm_lab(&[
        "inspect",
        "schedule",
        "--schedule",
        "cosine",
        "--timesteps",
        "50",
        "--zero-terminal-snr",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let last = stdout(&o).lines().last().unwrap().to_string();
    let cells: Vec<&str> = last.split(',').collect();
    assert_eq!(cells[0], "49");
    assert_eq!(cells[2], "0.0", "alpha_bar");
    assert_eq!(cells[3], "0.0", "snr");
    assert_eq!(cells[4], "-inf", "log_snr");
}

#[test]
fn weights_csv_is_min_snr_in_the_v_form() {
    let (header, rows) = csv(&[
        "inspect",
        "weights",
        "--weighting",
        "min-snr",
        "--gamma",
        "5",
        "--prediction",
        "v",
        "--schedule",
        "linear",
        "--timesteps",
        "1000",
        "--format",
        "csv",
    ]);
    assert_eq!(header, "t,snr,weight");
    assert_eq!(rows.len(), 1000);
    for r in &rows {
        let snr = r[1];
        let expect = snr.min(5.0) / (snr + 1.0);
        assert!(
            (r[2] - expect).abs() <= 1e-12 * expect,
            "t={}: {} vs {expect}",
            r[0],
            r[2]
        );
    }
}

/// VLB's σ² is the bound's: σ̃²_t by default, β_t with --variance fixed-large
/// (σ̃²_1 at t = 0 either way), against the closed forms from β_t alone.
#[test]
fn vlb_weights_use_the_variance_the_bound_is_scored_with() {
    let weights = |extra: &[&str]| {
        let mut args = vec![
            "inspect",
            "weights",
            "--weighting",
            "vlb",
            "--timesteps",
            "100",
            "--format",
            "csv",
        ];
        args.extend_from_slice(extra);
        csv(&args).1
    };
    let (small, large) = (weights(&[]), weights(&["--variance", "fixed-large"]));
    assert_eq!(small, weights(&["--variance", "fixed-small"]));
    let beta = |t: usize| 1e-4 + t as f64 * (0.02 - 1e-4) / 99.0;
    let abar = |t: i64| (0..=t).map(|s| 1.0 - beta(s as usize)).product::<f64>();
    let post = |t: usize| beta(t) * (1.0 - abar(t as i64 - 1)) / (1.0 - abar(t as i64));
    for t in 0..100usize {
        let w = |sigma2: f64| {
            beta(t).powi(2) / (2.0 * sigma2 * (1.0 - beta(t)) * (1.0 - abar(t as i64)))
        };
        let (ws, wl) = match t {
            0 => (w(post(1)), w(post(1))),
            _ => (w(post(t)), w(beta(t))),
        };
        assert!(
            (small[t][2] - ws).abs() <= 1e-9 * ws,
            "t={t}: {} vs {ws}",
            small[t][2]
        );
        assert!(
            (large[t][2] - wl).abs() <= 1e-9 * wl,
            "t={t}: {} vs {wl}",
            large[t][2]
        );
    }
}

#[test]
fn weights_for_every_prediction_and_weighting_are_finite() {
    for w in ["simple", "snr", "min-snr", "vlb", "p2"] {
        for p in ["epsilon", "x0", "v"] {
            let (_, rows) = csv(&[
                "inspect",
                "weights",
                "--weighting",
                w,
                "--prediction",
                p,
                "--schedule",
                "cosine",
                "--zero-terminal-snr",
                "--timesteps",
                "100",
                "--format",
                "csv",
            ]);
            assert!(
                rows.iter().all(|r| r[2].is_finite() && r[2] >= 0.0),
                "{w} {p}"
            );
        }
    }
}

#[test]
fn table_format_is_aligned_with_a_header() {
    let o = ddpm_lab(&["inspect", "schedule", "--timesteps", "3"]);
    assert!(o.status.success());
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].split_whitespace().eq([
        "t",
        "beta",
        "alpha_bar",
        "snr",
        "log_snr",
        "posterior_variance"
    ]));
    assert!(lines.iter().all(|l| l.len() == lines[0].len()));
}

/// Each bad argument: exit code 2, no panic, and a message naming the flag and what is accepted.
/// `--set` applies to a preset's config too (it used to be ignored).
#[test]
fn a_preset_takes_set_values() {
    let o = ddpm_lab(&["inspect", "model", "--preset", "unet-tiny"]);
    assert_eq!(stdout(&o).lines().last(), Some("parameters: 163985"));
    let o = ddpm_lab(&[
        "inspect",
        "model",
        "--preset",
        "unet-tiny",
        "--set",
        "model.ch=32",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Every convolution and linear is 2× wider on both sides: about 4× the parameters.
    let n: f64 = stdout(&o)
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("parameters: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((3.5..4.1).contains(&(n / 163985.0)), "{n}");
}

#[test]
fn bad_arguments_exit_2_with_the_flag_and_accepted_values() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["inspect", "model", "--preset", "mlp-small", "--set", "model.hidden=1000000"],
            &["--preset mlp-small has 1 problem", "--set model.hidden=1000000: model.hidden: makes a model of about 9.0e12 parameters"],
        ),
        (
            &["inspect", "schedule", "--schedule", "quadratic"],
            &["--schedule", "linear, cosine, scaled-linear"],
        ),
        (
            &[
                "inspect",
                "schedule",
                "--beta-start",
                "0.02",
                "--beta-end",
                "0.001",
            ],
            &[
                "--beta-start",
                "--beta-end",
                "must be smaller than beta_end",
            ],
        ),
        (
            &[
                "inspect",
                "schedule",
                "--beta-start",
                "0.01",
                "--beta-end",
                "0.01",
            ],
            &["--beta-start", "must be smaller"],
        ),
        (
            &["inspect", "schedule", "--beta-start", "-0.1"],
            &["--beta-start", "(0, 1)"],
        ),
        (
            &["inspect", "schedule", "--timesteps", "0"],
            &["--timesteps", "at least 1"],
        ),
        (
            &["inspect", "schedule", "--timesteps", "ten"],
            &["--timesteps", "whole number"],
        ),
        (
            &[
                "inspect",
                "schedule",
                "--timesteps",
                "1",
                "--zero-terminal-snr",
            ],
            &["--zero-terminal-snr", "at least 2 timesteps"],
        ),
        (
            &[
                "inspect",
                "weights",
                "--weighting",
                "min-snr",
                "--gamma",
                "0",
            ],
            &["--gamma", "> 0"],
        ),
        (
            &["inspect", "weights", "--weighting", "p2", "--gamma", "-1"],
            &["--gamma", "> 0"],
        ),
        (
            &["inspect", "weights", "--weighting", "p2", "--p2-k", "0"],
            &["--p2-k", "> 0"],
        ),
        (
            &["inspect", "weights", "--weighting", "snr", "--gamma", "2"],
            &["--gamma does not apply", "min-snr and p2"],
        ),
        (
            &[
                "inspect",
                "weights",
                "--weighting",
                "snr",
                "--variance",
                "fixed-large",
            ],
            &["--variance does not apply", "--variance for vlb"],
        ),
        (
            &["inspect", "weights", "--prediction", "score"],
            &["--prediction", "epsilon, x0, v"],
        ),
        (
            &["inspect", "weights", "--weighting", "lvlb"],
            &["--weighting", "simple, snr, min-snr, vlb, p2"],
        ),
        (
            &["inspect", "schedule", "--format", "json"],
            &["--format", "csv, table"],
        ),
    ];
    for (args, needles) in cases {
        let o = ddpm_lab(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?} printed to stdout");
        for n in *needles {
            assert!(err.contains(n), "{args:?}: expected {n:?} in:\n{err}");
        }
    }
}

#[test]
fn devices_reports_what_libtorch_sees() {
    let o = ddpm_lab(&["inspect", "devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("cuda available: "));
    assert!(text.contains("cpu threads: "));
    // With `just setup`'s CUDA build of PyTorch, build.rs finds the CUDA
    // runtime headers of its wheel and compiles the CUDA graph shim.
    let graphs = text
        .lines()
        .find_map(|l| l.strip_prefix("cuda graphs (train.cuda_graph): "))
        .expect("a cuda graphs line");
    let venv_lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let cuda_torch = std::fs::read_dir(&venv_lib)
        .into_iter()
        .flatten()
        .flatten()
        .any(|py| {
            py.path()
                .join("site-packages/torch/lib/libtorch_cuda.so")
                .exists()
        });
    if cuda_torch {
        assert_eq!(graphs, "built in");
    } else {
        assert!(
            ["built in", "not in this build"].contains(&graphs),
            "{graphs}"
        );
    }
}

/// `ddpm-lab inspect devices | head -1`: a reader that goes away ends the process
/// quietly (SIGPIPE), without a panic message.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ddpm-lab"))
        .args(["inspect", "devices"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader leaves before anything is read
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        o.status.success() || o.status.signal() == Some(libc::SIGPIPE),
        "{:?}: {err}",
        o.status
    );
}

#[test]
fn devices_probe_computes_on_the_cpu() {
    let o = ddpm_lab(&["inspect", "devices"]);
    let text = stdout(&o);
    let cpu = text
        .lines()
        .find(|l| l.starts_with("cpu: "))
        .expect("a cpu line");
    assert!(cpu.starts_with("cpu: ok"), "{cpu}");
}

/// Layering: built-in defaults ← the file ← DDPM_LAB_* ← --set.
#[test]
fn config_layers_in_order_defaults_file_env_set() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("run.toml");
    std::fs::write(&f, "[train]\nlr = 0.1\nsteps = 7\n").unwrap();
    let lr = |env: Option<&str>, set: Option<&str>| -> String {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ddpm-lab"));
        c.args(["inspect", "config", f.to_str().unwrap()]);
        c.env_remove("DDPM_LAB_TRAIN__LR");
        if let Some(v) = env {
            c.env("DDPM_LAB_TRAIN__LR", v);
        }
        if let Some(v) = set {
            c.args(["--set", &format!("train.lr={v}")]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains("steps = 7"), "the file's other keys stay");
        text.lines()
            .find(|l| l.starts_with("lr = "))
            .unwrap()
            .to_string()
    };
    assert_eq!(lr(None, None), "lr = 0.1");
    assert_eq!(lr(Some("0.2"), None), "lr = 0.2");
    assert_eq!(lr(Some("0.2"), Some("0.3")), "lr = 0.3");
    assert_eq!(lr(None, Some("0.3")), "lr = 0.3");
    // Without a file: the defaults.
    let o = ddpm_lab(&["inspect", "config"]);
    assert!(stdout(&o).contains("lr = 0.0002"));
    // --set takes TOML values and bare strings.
    let o = ddpm_lab(&[
        "inspect",
        "config",
        "--set",
        "diffusion.prediction=v",
        "--set",
        "ema.decays=[0.9, 0.99]",
    ]);
    let text = stdout(&o);
    assert!(
        text.contains("prediction = \"v\"") && text.contains("decays = [0.9, 0.99]"),
        "{text}"
    );
    let o = ddpm_lab(&["inspect", "config", "--set", "train.lr"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected key=value"), "{}", stderr(&o));
}

/// Every shipped run config parses and validates.
#[test]
fn shipped_run_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/runs");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            // The GPU config names cuda; check it with the CPU so it validates here.
            let o = ddpm_lab(&[
                "inspect",
                "config",
                p.to_str().unwrap(),
                "--set",
                "train.device=\"cpu\"",
                "--set",
                "train.precision=\"fp32\"",
            ]);
            assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
            n += 1;
        }
    }
    assert!(n >= 2);
}
