//! The Slurm launcher without a cluster: `--dry-run` prints the array
//! script and submits nothing, device checks are about the compute nodes
//! (a CUDA spec plans on this GPU-less machine), a local dry run shows this
//! machine's device problem as a warning, and bad `[launcher]` values or
//! `--slurm` flags are refused (exit 2) naming where. The submissions
//! themselves run against a real Slurm in tests/slurm_cli.rs.

mod common;
use common::{bin, text, write};

use std::path::Path;
use std::process::Output;

fn sweep(spec: &Path, results: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("sweep")
        .arg(spec)
        .arg("--results")
        .arg(results)
        .args(extra)
        .output()
        .unwrap()
}

const CUDA_SPEC: &str = "name = \"c\"\n[base]\ndata.source = \"toy\"\nmodel.preset = \"mlp-small\"\ntrain.steps = 60\ntrain.device = \"cuda\"\nema.decays = []\n[sweep]\nseeds = [0, 1]\n[launcher]\nkind = \"slurm\"\npartition = \"gpu\"\ngpus_per_job = 1\ntime = \"1:00:00\"\nmax_parallel = 4\n";

#[test]
fn a_dry_run_prints_the_array_script_for_a_cuda_spec_on_a_machine_without_gpus() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write(tmp.path(), "c.toml", CUDA_SPEC);
    let results = tmp.path().join("results");
    let o = sweep(&spec, &results, &["--dry-run"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    for want in [
        "#SBATCH --array=0-1%4",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --time=1:00:00",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --requeue",
        " sweep-task ",
        "export LD_LIBRARY_PATH=",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
    assert!(err.contains("would submit an array of 2 task(s)"), "{err}");
    assert!(!results.join("c").exists(), "a dry run writes nothing");

    // Without GPUs asked for, the CUDA spec is refused, naming the key.
    let o = sweep(&spec, &results, &["--dry-run", "--slurm", "gpus_per_job=0"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("train.device") && err.contains("0 CUDA device(s)"),
        "{err}"
    );
}

#[test]
fn a_local_dry_run_shows_this_machines_device_problem_as_a_warning() {
    if tch::Cuda::device_count() > 0 {
        return; // the warning is about a machine without GPUs
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = write(tmp.path(), "c.toml", CUDA_SPEC);
    let results = tmp.path().join("results");
    let o = sweep(&spec, &results, &["--dry-run", "--launcher", "local"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(out.contains("2 runs") || out.contains("2 run"), "{out}");
    assert!(
        err.contains("warning: on this machine:") && err.contains("train.device"),
        "{err}"
    );
    // Without --dry-run it is an error.
    let o = sweep(&spec, &results, &["--launcher", "local"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn bad_launcher_values_are_refused_where_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let spec = write(
        tmp.path(),
        "bad.toml",
        "name = \"b\"\n[base]\ndata.source = \"toy\"\n[launcher]\nkind = \"slurm\"\nmem = \"lots\"\n",
    );
    let o = sweep(&spec, &results, &["--dry-run"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.toml:6: launcher.mem: = \"lots\""),
        "{err}"
    );

    let spec = write(
        tmp.path(),
        "ok.toml",
        "name = \"b\"\n[base]\ndata.source = \"toy\"\n",
    );
    let o = sweep(
        &spec,
        &results,
        &[
            "--dry-run",
            "--launcher",
            "slurm",
            "--slurm",
            "time=forever",
        ],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--slurm time=forever: time: = \"forever\""),
        "{err}"
    );
    let o = sweep(
        &spec,
        &results,
        &[
            "--dry-run",
            "--launcher",
            "slurm",
            "--slurm",
            "partitio=gpu",
        ],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown key; [launcher] has kind, partition"),
        "{err}"
    );
}

#[test]
fn sweep_status_needs_a_sweep_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["sweep", "status"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not a sweep folder (no spec.toml)"), "{err}");
}
