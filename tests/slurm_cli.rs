//! Sweeps on a real Slurm: `tests/slurm/start.sh` starts a single-node
//! cluster on this machine (installing Debian's slurm-wlm and munge when
//! missing), and these tests submit to it. They are ignored by `cargo
//! test`; `just test-slurm` (and `.ci/run`) runs them. When Slurm cannot
//! be started they fail with the reason.

mod common;
use common::{bin, text, weights, write};

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The cluster's SLURM_CONF, starting it on first use.
fn slurm_conf() -> &'static str {
    static CONF: OnceLock<String> = OnceLock::new();
    CONF.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/start.sh");
        let o = Command::new("bash").arg(script).output().unwrap();
        assert!(
            o.status.success(),
            "Slurm could not be started: {}\n{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("SLURM_CONF="))
            .expect("start.sh prints SLURM_CONF=…")
            .to_string()
    })
}

fn ddpm(args: &[&str], extra: &[&Path]) -> Output {
    bin()
        .env("SLURM_CONF", slurm_conf())
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

fn slurm(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .env("SLURM_CONF", slurm_conf())
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{cmd} {args:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Wait until none of `ids` is in the queue (at most 10 minutes).
fn wait_gone(ids: &[String]) {
    let start = Instant::now();
    loop {
        let q = slurm("squeue", &["-h", "-o", "%i", "-j", &ids.join(",")]);
        if q.trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "still queued after 10 min: {q}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The ids of the last submission: (array, report).
fn last_submission(root: &Path) -> (String, String) {
    let subs = json(&root.join("slurm/submissions.json"));
    let s = subs.as_array().unwrap().last().unwrap();
    (
        s["array_id"].as_str().unwrap().to_string(),
        s["report_id"].as_str().unwrap().to_string(),
    )
}

const BASE: &str = "[base]\ndata.source = \"toy\"\ndata.n_samples = 1000\nmodel.preset = \"mlp-small\"\ndiffusion.timesteps = 50\ntrain.steps = 60\ntrain.batch_size = 32\ntrain.log_every = 20\ntrain.checkpoint_every = 30\ntrain.threads = 1\nema.decays = []\neval.initial = false\neval.num_samples = 200\n[launcher]\nkind = \"slurm\"\ngpus_per_job = 0\ncpus_per_job = 1\nmax_parallel = 2\nsignal_grace_s = 10\n";

fn spec(dir: &Path, name: &str, body: &str) -> PathBuf {
    spec_with(dir, name, BASE, body)
}

fn spec_with(dir: &Path, name: &str, base: &str, body: &str) -> PathBuf {
    write(
        dir,
        &format!("{name}.toml"),
        &format!("name = \"{name}\"\n{base}{body}"),
    )
}

#[test]
#[ignore = "needs Slurm: just test-slurm"]
fn a_sweep_runs_as_one_array_and_a_report_job_and_submitting_again_queues_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let s = spec(tmp.path(), "two", "[sweep]\nseeds = [0, 1]\n");
    let o = ddpm(&["sweep"], &[&s, Path::new("--results"), &results]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("submitted array") && err.contains("(2 task(s), at most 2 at once)"),
        "{err}"
    );
    let root = results.join("two");
    let (array, report) = last_submission(&root);
    // At once, while they are queued or running: nothing new.
    let o = ddpm(&["sweep"], &[&s, Path::new("--results"), &results]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let subs = json(&root.join("slurm/submissions.json"));
    let n = subs.as_array().unwrap().len();
    assert!(n <= 2, "{subs}");
    wait_gone(&[array, report]);
    if n == 2 {
        let (a2, r2) = last_submission(&root);
        wait_gone(&[a2, r2]);
    }
    let o = ddpm(&["sweep", "status"], &[&root]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert_eq!(out.matches("completed").count(), 2, "{out}");
    assert!(root.join("report.md").exists(), "the report job wrote it");
    // Everything done: nothing to submit.
    let o = ddpm(&["sweep"], &[&s, Path::new("--results"), &results]);
    let err = text(&o.stderr);
    assert!(
        err.contains("nothing to submit: 2 job(s) completed"),
        "{err}"
    );
    assert_eq!(
        json(&root.join("slurm/submissions.json"))
            .as_array()
            .unwrap()
            .len(),
        n
    );
    // --force: both again from scratch, the earlier folders in the attic.
    let o = ddpm(
        &["sweep"],
        &[&s, Path::new("--results"), &results, Path::new("--force")],
    );
    let err = text(&o.stderr);
    assert!(err.contains("(2 task(s), at most 2 at once)"), "{err}");
    let attic: Vec<String> = std::fs::read_dir(root.join("attic"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let plan = json(&root.join("plan.json"));
    for job in plan["jobs"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        assert!(
            attic.iter().any(|a| a.starts_with(id)),
            "{id} not in {attic:?}"
        );
    }
    let (array, report) = last_submission(&root);
    wait_gone(&[array, report]);
    let o = ddpm(&["sweep", "status"], &[&root]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

#[test]
#[ignore = "needs Slurm: just test-slurm"]
fn a_failed_job_makes_status_exit_1_while_the_others_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let s = spec(
        tmp.path(),
        "fail",
        "[sweep]\n[[sweep.zip]]\n\"train.seed\" = [0, 1]\n\"train.fail_at_step\" = [0, 30]\n",
    );
    let o = ddpm(&["sweep"], &[&s, Path::new("--results"), &results]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let root = results.join("fail");
    let (array, report) = last_submission(&root);
    let o = ddpm(&["sweep", "status"], &[&root]);
    assert!(
        matches!(o.status.code(), Some(3) | Some(1)),
        "{}",
        text(&o.stdout)
    );
    wait_gone(&[array, report]);
    let o = ddpm(&["sweep", "status"], &[&root]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(out.matches("completed").count(), 1, "{out}");
    assert!(out.contains("failed"), "{out}");
}

#[test]
#[ignore = "needs Slurm: just test-slurm"]
fn usr1_checkpoints_requeues_and_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let base = BASE
        .replace("train.steps = 60", "train.steps = 10000")
        .replace(
            "train.checkpoint_every = 30",
            "train.checkpoint_every = 100",
        );
    let s = spec_with(tmp.path(), "long", &base, "[sweep]\nseeds = [0]\n");
    let o = ddpm(&["sweep"], &[&s, Path::new("--results"), &results]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let root = results.join("long");
    let (array, report) = last_submission(&root);
    let plan = json(&root.join("plan.json"));
    let job = plan["jobs"][0]["id"].as_str().unwrap().to_string();
    let status = root.join("jobs").join(&job).join("status.json");
    // Wait until it has trained past a checkpoint, then signal the batch shell.
    let start = Instant::now();
    loop {
        let step = std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["step"].as_u64())
            .unwrap_or(0);
        if step >= 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no progress: {step}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    slurm(
        "scancel",
        &["--signal=USR1", "--batch", &format!("{array}_0")],
    );
    wait_gone(&[array.clone(), report]);
    let log = std::fs::read_to_string(root.join("jobs").join(&job).join("train.log")).unwrap();
    // Interrupted at step N, then resumed from its checkpoint at N.
    let n: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("interrupted at step "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no interruption in {log}"));
    assert!(n < 10000, "{log}");
    assert!(log.contains(&format!("checkpoints/step-{n:09}")), "{log}");
    assert!(log.contains(&format!("steps {n}..10000")), "{log}");
    let o = ddpm(&["sweep", "status"], &[&root]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    // The same job trained here in one go: bit-identical weights.
    let here = tmp.path().join("here");
    let o = bin()
        .arg("train")
        .arg(root.join("jobs").join(format!("{job}.toml")))
        .arg("--out")
        .arg(&here)
        .args(["--quiet", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ck = "checkpoints/step-000010000/raw.safetensors";
    let (a, b) = (
        weights(&root.join("jobs").join(&job).join(ck)),
        weights(&here.join(ck)),
    );
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after the requeue");
    }
}
