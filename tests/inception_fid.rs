//! True FID through a TorchScript feature network (`eval.inception`). The
//! real Inception-v3 file cannot be downloaded here, so the tests script a
//! small network with the same calling convention — forward(img in [0, 255],
//! return_features: bool), resizing internally — using the venv's PyTorch,
//! and check our features against PyTorch's own output, then the `fid`
//! metric end to end.

mod common;
use common::{bin, text, train_cpu, write};

use ddpm_lab::eval::inception::Inception;
use ddpm_lab::run::metrics_table;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Script the stand-in network to `dir/net.pt`; PyTorch's features of a fixed
/// input go to `dir/expect.json`.
fn make_net(dir: &Path) -> PathBuf {
    let script = write(
        dir,
        "make_net.py",
        r#"
import json, sys, torch
torch.manual_seed(0)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 8 * 8, 24)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(img / 255.0, size=(8, 8), mode="bilinear", align_corners=False)
        f = torch.tanh(self.proj(x.flatten(1)))
        if return_features:
            return f
        return f.sum(1)

net = torch.jit.script(Net())
net.save(sys.argv[1] + "/net.pt")
# The input the Rust side builds: grayscale 16x16 ramps in [-1, 1], image i offset by i/10.
x = torch.linspace(-1, 1, 256).reshape(1, 1, 16, 16).repeat(3, 1, 1, 1)
x = (x + torch.arange(3).reshape(3, 1, 1, 1) / 10).clamp(-1, 1)
img = ((x.repeat(1, 3, 1, 1) + 1) * 127.5).clamp(0, 255)
with torch.no_grad():
    f = net(img, True)
json.dump(f.tolist(), open(sys.argv[1] + "/expect.json", "w"))
"#,
    );
    let o = Command::new(python())
        .arg(&script)
        .arg(dir)
        .output()
        .expect("python from the venv (`just setup`)");
    assert!(o.status.success(), "{}", text(&o.stderr));
    dir.join("net.pt")
}

#[test]
fn features_match_pytorch_and_grayscale_is_repeated_to_rgb() {
    let tmp = tempfile::tempdir().unwrap();
    let net = make_net(tmp.path());
    let inc = Inception::load(&net, Device::Cpu).unwrap();
    assert_eq!(inc.digest.len(), 16);
    let x = Tensor::linspace(-1.0, 1.0, 256, (Kind::Float, Device::Cpu))
        .reshape([1, 1, 16, 16])
        .repeat([3, 1, 1, 1]);
    let x = (x + Tensor::arange(3, (Kind::Float, Device::Cpu)).reshape([3, 1, 1, 1]) / 10.0)
        .clamp(-1.0, 1.0);
    let f = inc.features(&x).unwrap();
    let expect: Vec<Vec<f64>> =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("expect.json")).unwrap())
            .unwrap();
    assert_eq!(f.size(), vec![3, 24]);
    let flat: Vec<f64> = expect.into_iter().flatten().collect();
    let e = Tensor::from_slice(&flat)
        .reshape([3, 24])
        .to_kind(Kind::Float);
    assert!(f.allclose(&e, 1e-5, 1e-5, false), "{f} vs {e}");

    // Not a TorchScript file: a clear error naming the key.
    let bad = write(tmp.path(), "bad.pt", "not a model");
    let e = Inception::load(&bad, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("eval.inception") && e.contains("not a TorchScript module"),
        "{e}"
    );
}

#[test]
fn fid_is_reported_per_point_and_a_missing_network_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let net = make_net(d);
    let body = |inception: &str| {
        format!(
            r#"
[data]
source = "synthetic"
n_samples = 128
shape = [1, 16, 16]

[model]
preset = "unet-tiny"

[diffusion]
timesteps = 20

[train]
steps = 10
batch_size = 16
log_every = 5
checkpoint_every = 10
threads = 2

[eval]
sampler = "ddim"
sampling_steps = 5
num_samples = 40
bpd_timesteps = 4
bpd_images = 16
timestep_bins = 4
probe_size = 16
inception = {inception:?}
"#
        )
    };
    let missing = write(d, "missing.toml", &body("/nowhere/inception-2015-12-05.pt"));
    let o = bin()
        .arg("train")
        .arg(&missing)
        .arg("--out")
        .arg(d.join("never"))
        .args(["--quiet", "--device", "cpu"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("missing.toml:28: eval.inception") && err.contains("no such file"),
        "{err}"
    );
    assert!(!d.join("never").exists());

    let cfg = write(d, "fid.toml", &body(net.to_str().unwrap()));
    let run = d.join("run");
    train_cpu(&cfg, &run);
    let o = bin()
        .arg("eval")
        .arg(&run)
        .args(["--device", "cpu", "--quiet", "--evaluators"])
        .arg(d.join("ev"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let m = metrics_table::read(&run.join("eval/eval_metrics.parquet")).unwrap();
    for step in [0u64, 10] {
        let fid = m
            .iter()
            .find(|r| r.step == step && r.metric == "fid")
            .unwrap_or_else(|| panic!("{m:?}"));
        assert!(fid.value.is_finite() && fid.value >= 0.0, "{fid:?}");
    }
    // The reference statistics are cached per network file.
    let key_dir = std::fs::read_dir(d.join("ev"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let cached: Vec<String> = std::fs::read_dir(&key_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached
            .iter()
            .any(|f| f.starts_with("inception-") && f.ends_with("-test.safetensors")),
        "{cached:?}"
    );
}
