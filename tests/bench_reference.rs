//! The PyTorch reference that `just bench` times against
//! (benches/reference/ddpm_reference.py) must be the same model as ours, or
//! the comparison means nothing: its parameter count equals ours for every
//! UNet preset, and with our weights loaded (by name, strictly) it computes
//! the same output for the same input, labels included.

use ddpm_lab::model::{parameter_count, Conditioning, ModelPreset, UNet, UNetConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{nn, Device, Kind, Tensor};

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run `just setup`", p.display());
    p
}

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/ddpm_reference.py")
}

fn config(preset: ModelPreset, ch: i64, res: i64, classes: i64) -> UNetConfig {
    UNetConfig::from_preset(preset, ch, res, classes)
}

fn reference_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(reference())
        .args(args)
        .output()
        .expect("running the reference");
    assert!(
        out.status.success(),
        "reference {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).expect("one JSON line")
}

#[test]
fn parameter_counts_equal_ours_for_every_unet_preset() {
    for (preset, name, ch, res) in [
        (ModelPreset::UnetTiny, "unet-tiny", 1, 28),
        (ModelPreset::UnetMnistSmall, "unet-mnist-small", 1, 28),
        (ModelPreset::DdpmCifar10, "ddpm-cifar10", 3, 32),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = UNet::new(vs.root(), &config(preset, ch, res, 0));
        let ours = parameter_count(&vs);
        let r = reference_json(&[
            "params",
            "--preset",
            name,
            "--channels",
            &ch.to_string(),
            "--resolution",
            &res.to_string(),
        ]);
        assert_eq!(r["params"].as_i64(), Some(ours), "{name}");
    }
}

#[test]
fn our_weights_give_the_same_output_in_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    for (preset, name, ch, res, classes) in [
        // Attention at 7×7, class labels with the null token.
        (ModelPreset::UnetMnistSmall, "unet-mnist-small", 1, 28, 10),
        (ModelPreset::UnetTiny, "unet-tiny", 3, 16, 0),
    ] {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = UNet::new(vs.root(), &config(preset, ch, res, classes));
        // Move every weight off its initialisation (the zero-initialised
        // output layers included) so each one shapes the output.
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                let _ = v.normal_(0.0, 0.08);
            }
        });
        let x = Tensor::randn([3, ch, res, res], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 417, 999]);
        let labels = Tensor::from_slice(&[1i64, 7, classes.max(0)]);
        let cond = if classes > 0 {
            Conditioning::labels(labels.shallow_clone())
        } else {
            Conditioning::none()
        };
        let y = m.forward(&x, &t, &cond, false);
        let w = dir.path().join(format!("{name}.safetensors"));
        vs.save(&w).unwrap();
        let io = dir.path().join(format!("{name}-io.safetensors"));
        let mut named = vec![("x", &x), ("t", &t), ("y", &y)];
        if classes > 0 {
            named.push(("labels", &labels));
        }
        Tensor::write_safetensors(&named, &io).unwrap();
        let r = reference_json(&[
            "forward",
            "--preset",
            name,
            "--channels",
            &ch.to_string(),
            "--resolution",
            &res.to_string(),
            "--classes",
            &classes.to_string(),
            "--weights",
            w.to_str().unwrap(),
            "--io",
            io.to_str().unwrap(),
        ]);
        let diff = r["max_abs_diff"].as_f64().unwrap();
        let scale = r["max_abs_y"].as_f64().unwrap();
        assert!(scale > 0.1, "{name}: output too small to compare ({scale})");
        assert!(
            diff < 1e-4 * scale.max(1.0),
            "{name}: max |ours − reference| = {diff}"
        );
    }
}
