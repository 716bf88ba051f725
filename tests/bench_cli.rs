//! `ddpm-lab bench`: the timed loops `just bench` reads print one JSON object
//! with what the harness needs; a bad config is an input error (exit 2) that
//! names the file, the line and the key.

mod common;
use common::{bin, text, write};

const TINY: &str = r#"[data]
source = "synthetic"
shape = [1, 8, 8]
n_samples = 32
[model]
preset = "unet-tiny"
[train]
batch_size = 4
log_every = 2
device = "cpu"
[ema]
decays = [0.9999, 0.999]
"#;

#[test]
fn step_and_ddim_print_their_timings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", TINY);
    let out = bin()
        .args(["bench", "step"])
        .arg(&cfg)
        .args(["--warmup", "1", "--steps", "2", "--repeats", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    for part in ["full", "bare"] {
        assert_eq!(v[part]["secs"].as_array().unwrap().len(), 3, "{part}");
        assert_eq!(v[part]["per_repeat"], 2);
        assert_eq!(v[part]["batch"], 4);
    }
    assert_eq!(v["full"]["params"], v["bare"]["params"]);
    let median = |xs: &serde_json::Value| {
        let mut s: Vec<f64> = xs
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        s.sort_by(f64::total_cmp);
        s[1]
    };
    let expect = median(&v["full"]["secs"]) / median(&v["bare"]["secs"]) - 1.0;
    assert!((v["overhead"].as_f64().unwrap() - expect).abs() < 1e-9);

    let out = bin()
        .args(["bench", "ddim"])
        .arg(&cfg)
        .args(["--batch", "3", "--sampling-steps", "5", "--repeats", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(v["what"], "ddim");
    assert_eq!(v["batch"], 3);
    assert_eq!(v["secs"].as_array().unwrap().len(), 2);
}

#[test]
fn a_bad_config_is_an_input_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "bad.toml",
        "[model]\npreset = \"unet-tiny\"\n[train]\nbatch_size = \"x\"\n",
    );
    let out = bin().args(["bench", "step"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml:4: train.batch_size"), "{err}");
}

#[test]
fn more_ddim_steps_than_timesteps_are_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", TINY);
    let out = bin()
        .args(["bench", "ddim"])
        .arg(&cfg)
        .args(["--set", "diffusion.timesteps=100"])
        .args(["--sampling-steps", "5000", "--repeats", "1"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--sampling-steps 5000: the model has T = 100 timesteps")
            && err.contains("use at most 100"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}
