//! Helpers shared by the end-to-end tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The ddpm-lab binary, without a developer's DDPM_LAB_* variables. OpenMP
/// threads wait passively: tests run several children at once on few cores,
/// where spinning threads only steal each other's time.
///
/// `DDPMLAB_TEST_BIN` points the tests at another copy of the binary (a test
/// binary carried to a GPU machine, where cargo's path does not exist).
pub fn bin() -> Command {
    let exe = std::env::var_os("DDPMLAB_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_ddpm-lab").into());
    let mut c = Command::new(exe);
    c.env("OMP_WAIT_POLICY", "passive");
    for (k, _) in std::env::vars() {
        if k.starts_with("DDPM_LAB_") {
            c.env_remove(k);
        }
    }
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Write `body` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Train `cfg` into `out` on the CPU, quietly; panics with stderr on failure.
pub fn train_cpu(cfg: &Path, out: &Path) {
    train_cpu_with(cfg, out, &[]);
}

/// [`train_cpu`] with more arguments (`--set …`).
pub fn train_cpu_with(cfg: &Path, out: &Path, extra: &[&str]) {
    let o = train_output(cfg, out, extra);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// `ddpm-lab train CFG --out OUT --quiet --device cpu EXTRA…`, whatever it
/// exits with.
pub fn train_output(cfg: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .arg("train")
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(["--quiet", "--device", "cpu"])
        .args(extra)
        .output()
        .unwrap()
}

/// Every tensor of a safetensors file, sorted by name.
pub fn weights(path: &Path) -> Vec<(String, tch::Tensor)> {
    let mut w = tch::Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

/// ‖a − b‖ over every tensor of two safetensors files with the same names.
pub fn distance(a: &Path, b: &Path) -> f64 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    let mut sq = 0.0;
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let d = ta.to_kind(tch::Kind::Double) - tb.to_kind(tch::Kind::Double);
        sq += (&d * &d).sum(tch::Kind::Double).double_value(&[]);
    }
    sq.sqrt()
}

/// The samples an evaluation in `eval_dir` drew at (step, weights, guidance):
/// `samples/step-<N>_<weights>_g<scale>_<key>.<ext>`, whatever the key of
/// its sample settings.
pub fn sample_file(
    eval_dir: &Path,
    step: u64,
    weights: &str,
    g: f64,
    ext: &str,
) -> Option<PathBuf> {
    let prefix = format!("step-{step}_{weights}_g{g}_");
    std::fs::read_dir(eval_dir.join("samples"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            name.starts_with(&prefix) && name.ends_with(&format!(".{ext}"))
        })
}

/// The project venv's python with `package` at the version the justfile
/// pins as `pin_var` (`just setup` installs it; a plain `cargo test`
/// installs it here when missing).
pub fn venv_python_with(package: &str, pin_var: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let justfile = std::fs::read_to_string(root.join("justfile")).unwrap();
    let prefix = format!("{pin_var} := ");
    let pin = justfile
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("the justfile pins {pin_var}"))
        .trim()
        .trim_matches('"')
        .to_string();
    let probe = format!("import {package}; print({package}.__version__)");
    let have = Command::new(&python)
        .args(["-c", &probe])
        .output()
        .expect("the venv's python (`just setup`)");
    if text(&have.stdout).trim() != pin {
        let o = Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .arg(format!("{package}=={pin}"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "installing {package}: {}",
            text(&o.stderr)
        );
    }
    python
}
