//! End-to-end tests of `ddpm-lab sweep`: real child processes training tiny
//! toy models on the CPU.

mod common;

use common::{bin, text, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn smoke(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("experiments/smoke")
        .join(name)
}

fn sweep(spec: &Path, results: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("sweep")
        .arg(spec)
        .arg("--results")
        .arg(results)
        .args(["--devices", "cpu", "--quiet"])
        .args(extra)
        .output()
        .unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn dry_json(spec: &Path, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let mut c = bin();
    c.arg("sweep")
        .arg(spec)
        .args(["--dry-run", "--json", "--devices", "cpu"]);
    c.args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A base every test spec extends: eight Gaussians, a small MLP, 60 steps.
fn base(dir: &Path) {
    write(
        dir,
        "base.toml",
        "[base]\ndata.source = \"toy\"\ndata.n_samples = 1000\nmodel.preset = \"mlp-small\"\ndiffusion.timesteps = 50\ntrain.steps = 60\ntrain.batch_size = 32\ntrain.log_every = 20\ntrain.checkpoint_every = 30\nema.decays = []\n",
    );
}

#[test]
fn a_smoke_spec_runs_end_to_end_and_a_second_invocation_trains_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let out = sweep(&smoke("ema_cfg.toml"), &results, &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("training 4 job(s)"), "{err}");
    let root = results.join("smoke-ema-cfg");
    let plan = json(&root.join("plan.json"));
    let runs = plan["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 16);
    assert_eq!(
        plan["jobs"].as_array().unwrap().len(),
        4,
        "eval-only axes share jobs"
    );
    // Every run points at a completed training job that holds its weights.
    for r in runs {
        let id = r["id"].as_str().unwrap();
        let record = json(&root.join("runs").join(id).join("run.json"));
        let job_dir = root
            .join("runs")
            .join(id)
            .join(record["job_dir"].as_str().unwrap());
        let status = json(&job_dir.join("status.json"));
        assert_eq!(status["state"], "completed", "{id}");
        assert_eq!(status["step"], 60);
        let weights = record["weights"].as_str().unwrap();
        assert!(weights == "ema-0.9" || weights == "ema-0.99", "{weights}");
        assert!(
            job_dir
                .join("checkpoints/step-000000060")
                .join(format!("{weights}.safetensors"))
                .exists(),
            "{id}: {weights}"
        );
        let cfg = std::fs::read_to_string(root.join("runs").join(id).join("config.toml")).unwrap();
        let g = r["swept"]["eval.guidance_scale"].as_f64().unwrap();
        assert!(cfg.contains(&format!("guidance_scale = {g:?}")), "{cfg}");
    }
    let summary = json(&root.join("summary.json"));
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["trained"], 4);
    // A run id the plan and report print is a handle: `sample` reads its
    // job's weights with the run's own weight set and guidance scale.
    let run = &runs[runs.len() - 1];
    let handle = root.join("runs").join(run["id"].as_str().unwrap());
    let o = bin()
        .arg("sample")
        .arg(&handle)
        .arg("--out")
        .arg(tmp.path().join("handle.csv"))
        .args(["-n", "8", "--device", "cpu"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let own = format!(
        "weights: {} (the run's own)",
        run["weights"].as_str().unwrap()
    );
    assert!(err.contains(&own), "{err}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("handle.csv"))
            .unwrap()
            .lines()
            .count(),
        9
    );
    // `inspect run` says what the run and the sweep folder are.
    let inspect = |p: &Path| {
        text(
            &bin()
                .args(["inspect", "run"])
                .arg(p)
                .output()
                .unwrap()
                .stdout,
        )
    };
    let out = inspect(&handle);
    let own_weights = run["weights"].as_str().unwrap();
    assert!(
        out.contains(&format!(
            "run {} of a sweep; its weights are in job {}",
            run["id"].as_str().unwrap(),
            record_job(&handle)
        )) && out.contains("← this run's")
            && out.contains(&format!(
                "evaluation of {own_weights} with its eval.* settings: done"
            )),
        "{out}"
    );
    let out = inspect(&root);
    assert!(
        out.contains("sweep smoke-ema-cfg (spec ") && out.contains("16 runs in 4 jobs"),
        "{out}"
    );
    assert_eq!(out.matches("completed 60/60").count(), 16, "{out}");
    // Each job was evaluated at its points (0 and 60) for its runs' weights.
    for j in plan["jobs"].as_array().unwrap() {
        let done = json(
            &root
                .join("jobs")
                .join(j["id"].as_str().unwrap())
                .join("eval/done.json"),
        );
        let mut pairs: Vec<(u64, String)> = done["done"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["step"].as_u64().unwrap(),
                    d["weights"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        pairs.sort();
        let want: Vec<(u64, String)> = [0, 60]
            .iter()
            .flat_map(|&s| ["ema-0.9", "ema-0.99", "raw"].map(|w| (s, w.to_string())))
            .collect();
        assert_eq!(pairs, want);
    }
    // Every job also evaluated its guidance scales (the union of its runs').
    let m = ddpm_lab::run::metrics_table::read(
        &root
            .join("jobs")
            .join(plan["jobs"][0]["id"].as_str().unwrap())
            .join("eval/eval_metrics.parquet"),
    )
    .unwrap();
    for g in [1.0, 3.0] {
        assert!(m
            .iter()
            .any(|r| r.guidance == Some(g) && r.metric == "sliced_wasserstein"));
    }
    // The sweep ends with its report: 16 runs, all completed.
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(md.contains("16 runs in 8 variants; 16 completed."), "{md}");
    for f in [
        "report.html",
        "tables/summary.csv",
        "tables/runs.parquet",
        "charts/loss_curves.png",
    ] {
        assert!(root.join(f).exists(), "{f}");
    }
    let resolved = std::fs::read_to_string(root.join("spec.toml")).unwrap();
    assert!(resolved.contains("labels = true") && resolved.contains("n_samples = 2000"));
    // The resolved spec plans the same runs.
    let again = dry_json(&root.join("spec.toml"), &[], &[]);
    let ids = |v: &Value| -> Vec<String> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&again), ids(&plan));

    // A second invocation trains nothing, and says so.
    let logs: Vec<u64> = plan["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let p = root
                .join("jobs")
                .join(j["id"].as_str().unwrap())
                .join("train.log");
            std::fs::metadata(p).unwrap().len()
        })
        .collect();
    let out = sweep(&smoke("ema_cfg.toml"), &results, &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("nothing to train; 4 of 4 job(s) already completed"),
        "{err}"
    );
    for (j, len) in plan["jobs"].as_array().unwrap().iter().zip(logs) {
        let p = root
            .join("jobs")
            .join(j["id"].as_str().unwrap())
            .join("train.log");
        assert_eq!(
            std::fs::metadata(p).unwrap().len(),
            len,
            "no training happened"
        );
    }
    assert!(
        !root.join("attic").exists(),
        "the same spec moves nothing aside"
    );

    // The same folder with a changed spec (fewer seeds, fewer samples): the
    // previous plan and its 16-run report move to the attic instead of being
    // overwritten; the jobs the new plan shares are reused, not retrained,
    // and re-evaluated, since the evaluation settings changed.
    let fewer = ["--set", "sweep.seeds=[0]", "--set", "eval.num_samples=37"];
    let dry = bin()
        .arg("sweep")
        .arg(smoke("ema_cfg.toml"))
        .arg("--results")
        .arg(&results)
        .args(["--devices", "cpu", "--dry-run"])
        .args(fewer)
        .output()
        .unwrap();
    let plan_text = text(&dry.stdout);
    assert_eq!(
        plan_text
            .matches("re-evaluate (eval settings changed: eval.num_samples 500 → 37)")
            .count(),
        2,
        "{plan_text}"
    );
    let before = ddpm_lab::run::metrics_table::read(&job_metrics(&root, &plan, 0)).unwrap();
    let log_before = train_log(&root, &plan, 0);
    let out = sweep(&smoke("ema_cfg.toml"), &results, &fewer);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the spec differs from the last invocation's"),
        "{err}"
    );
    assert!(err.contains("nothing to train"), "{err}");
    assert_eq!(
        train_log(&root, &plan, 0),
        log_before,
        "no training happened"
    );
    let old: Vec<_> = std::fs::read_dir(root.join("attic"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(old.len(), 1, "{old:?}");
    let old_md = std::fs::read_to_string(old[0].join("report.md")).unwrap();
    assert!(
        old_md.contains("16 runs in 8 variants; 16 completed."),
        "{old_md}"
    );
    assert!(old[0].join("tables/summary.csv").exists() && old[0].join("plan.json").exists());
    // The new sample metrics sit beside the old, under their own key, and differ.
    let after = ddpm_lab::run::metrics_table::read(&job_metrics(&root, &plan, 0)).unwrap();
    let sw = |rows: &[ddpm_lab::run::metrics_table::MetricRow], key: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.metric == "sliced_wasserstein" && r.eval_key == key)
            .map(|r| r.value)
            .collect()
    };
    let mut settings = ddpm_lab::config::run::EvalConfig {
        num_samples: 500,
        ..Default::default()
    };
    let old_key = ddpm_lab::run::EvalKeys::of(&settings).samples;
    settings.num_samples = 37;
    let new_key = ddpm_lab::run::EvalKeys::of(&settings).samples;
    assert_eq!(sw(&after, &old_key), sw(&before, &old_key), "old rows kept");
    assert_eq!(sw(&after, &new_key).len(), sw(&before, &old_key).len());
    assert_ne!(sw(&after, &new_key), sw(&before, &old_key));
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    assert!(md.contains("8 runs in 8 variants; 8 completed."), "{md}");
    assert!(!md.contains("evaluated with other settings"), "{md}");
}

/// The job a sweep's run folder names in its run.json.
fn record_job(run: &Path) -> String {
    json(&run.join("run.json"))["job"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The training log of the plan's `i`-th job.
fn train_log(root: &Path, plan: &Value, i: usize) -> String {
    let job = root
        .join("jobs")
        .join(plan["jobs"][i]["id"].as_str().unwrap());
    std::fs::read_to_string(job.join("train.log")).unwrap()
}

/// The evaluation table of the plan's `i`-th job.
fn job_metrics(root: &Path, plan: &Value, i: usize) -> PathBuf {
    root.join("jobs")
        .join(plan["jobs"][i]["id"].as_str().unwrap())
        .join("eval/eval_metrics.parquet")
}

#[test]
fn dry_run_prints_the_plan_in_a_stable_order_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let out = bin()
        .arg("sweep")
        .arg(smoke("objectives.toml"))
        .args(["--dry-run", "--devices", "cpu", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        s.contains("sweep smoke-objectives: 4 runs in 4 training jobs"),
        "{s}"
    );
    assert!(s.contains("devices: cpu: 1 job(s) at a time"), "{s}");
    assert!(s.contains("estimated cost: 4 job(s) to train"), "{s}");
    assert!(!results.exists(), "a dry run writes nothing");

    // The expansion order, as a snapshot: the product in written order (the
    // first axis slowest), the exclude applied, then the include.
    let plan = dry_json(&smoke("objectives.toml"), &[], &[]);
    let slugs: Vec<String> = plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            let job = r["job"].as_str().unwrap();
            assert!(
                id.ends_with(&format!("-{}", &job[..6])),
                "{id} carries its job's hash"
            );
            id[..id.len() - 7].to_string()
        })
        .collect();
    assert_eq!(
        slugs,
        [
            "prediction-epsilon_weighting-simple",
            "prediction-epsilon_weighting-min-snr",
            "prediction-v_weighting-min-snr",
            "prediction-x0_weighting-snr",
        ]
    );
    let zip = dry_json(&smoke("zip.toml"), &[], &[]);
    let lrs: Vec<(String, f64, i64)> = zip["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let c = &r["config"];
            (
                c["diffusion"]["schedule"].as_str().unwrap().to_string(),
                c["train"]["lr"].as_f64().unwrap(),
                c["train"]["warmup_steps"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lrs,
        [
            ("linear".to_string(), 1e-3, 0),
            ("linear".to_string(), 3e-4, 10),
            ("cosine".to_string(), 1e-3, 0),
            ("cosine".to_string(), 3e-4, 10),
        ]
    );
}

#[test]
fn layers_apply_in_order_defaults_extends_spec_environment_set() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "shared.toml", "[base]\ndata.source = \"toy\"\nmodel.preset = \"mlp-small\"\ntrain.steps = 11\ntrain.lr = 0.5\n");
    let spec = write(
        d,
        "spec.toml",
        "name = \"layers\"\nextends = \"shared.toml\"\n[base]\ntrain.steps = 22\n[sweep]\nseeds = [0]\n",
    );
    let first = |v: &Value, section: &str, key: &str| v["runs"][0]["config"][section][key].clone();
    let p = dry_json(&spec, &[], &[]);
    assert_eq!(first(&p, "train", "batch_size"), 128, "a built-in default");
    assert_eq!(first(&p, "train", "lr"), 0.5, "from the extended spec");
    assert_eq!(
        first(&p, "train", "steps"),
        22,
        "the spec beats what it extends"
    );
    let p = dry_json(&spec, &[], &[("DDPM_LAB_TRAIN__STEPS", "33")]);
    assert_eq!(
        first(&p, "train", "steps"),
        33,
        "the environment beats the spec"
    );
    let p = dry_json(
        &spec,
        &["--set", "train.steps=44"],
        &[("DDPM_LAB_TRAIN__STEPS", "33")],
    );
    assert_eq!(
        first(&p, "train", "steps"),
        44,
        "--set beats the environment"
    );
    // --set reaches the axes too.
    let p = dry_json(&spec, &["--set", "sweep.seeds=[5, 6]"], &[]);
    let seeds: Vec<i64> = p["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["config"]["train"]["seed"].as_i64().unwrap())
        .collect();
    assert_eq!(seeds, [5, 6]);
    let p = dry_json(
        &spec,
        &["--set", "sweep.diffusion.prediction=[\"v\", \"x0\"]"],
        &[],
    );
    assert_eq!(p["runs"].as_array().unwrap().len(), 2);
    assert_eq!(p["runs"][1]["config"]["diffusion"]["prediction"], "x0");
}

fn expect_bad(spec: &Path, results: &Path, extra: &[&str], wanted: &[&str]) {
    let out = sweep(spec, results, extra);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for w in wanted {
        assert!(err.contains(w), "missing {w:?} in:\n{err}");
    }
    assert!(!results.exists(), "nothing under results/ changes");
}

/// `--set` and the environment get the checks a spec file gets: a value for a
/// swept key (which would give every run one value under different ids), an
/// axis with a value twice, an axis over a launch-only key, and a sweep too
/// big to plan.
#[test]
fn set_and_environment_values_cannot_bypass_the_axis_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let spec = smoke("ema_cfg.toml");
    let swept = "swept, so this would give every run one value while their ids and the report still tell them apart by it";
    expect_bad(
        &spec,
        &results,
        &["--set", "train.p_uncond=0.3"],
        &[
            "--set train.p_uncond=0.3: train.p_uncond: ",
            swept,
            "--set 'sweep.train.p_uncond=[…]'",
        ],
    );
    expect_bad(
        &spec,
        &results,
        &["--set", "train={p_uncond=0.3, lr=1e-3}"],
        &["train.p_uncond: swept"],
    );
    let out = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--results")
        .arg(&results)
        .args(["--devices", "cpu"])
        .env("DDPM_LAB_TRAIN__SEED", "3")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("$DDPM_LAB_TRAIN__SEED: train.seed: swept")
            && err.contains("--set 'sweep.seeds=[…]'"),
        "{err}"
    );
    // A key that is not swept may still be set.
    let plan = dry_json(&spec, &["--set", "train={lr=1e-3}"], &[]);
    assert_eq!(plan["runs"].as_array().unwrap().len(), 16);
    expect_bad(
        &spec,
        &results,
        &["--set", "sweep.train.lr=[1e-3, 0.001]"],
        &["--set sweep.train.lr=[1e-3, 0.001]: sweep.train.lr: 0.001 is listed twice"],
    );
    expect_bad(
        &spec,
        &results,
        &["--set", "sweep.seeds=[0, 0]"],
        &["sweep.seeds: 0 is listed twice"],
    );
    expect_bad(
        &spec,
        &results,
        &["--set", "sweep.train.threads=[1, 2]"],
        &["sweep.train.threads: changes how runs are launched or logged"],
    );
    // A bad value in a --set axis names the flag, not the spec's [sweep] line;
    // TOML's quoting of the dotted key is understood.
    expect_bad(
        &spec,
        &results,
        &["--set", "sweep.seeds=[-1]"],
        &["--set sweep.seeds=[-1]: train.seed: expected a whole number ≥ 0"],
    );
    expect_bad(
        &spec,
        &results,
        &["--set", "sweep.\"train.p_uncond\"=[2.0]"],
        &["train.p_uncond: = 2: must be in [0, 1)"],
    );
    let many: Vec<String> = (0..700).map(|i| format!("{}e-5", i + 1)).collect();
    let set = format!("sweep.train.lr=[{}]", many.join(", "));
    expect_bad(
        &spec,
        &results,
        &["--set", &set],
        &["the axes make 11200 runs, more than 10000: train.p_uncond (2) × ema.decay (2) × eval.guidance_scale (2) × train.lr (700) × train.seed (2)"],
    );
}

#[test]
fn every_validation_problem_is_reported_at_once_with_its_line_and_nothing_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let results = d.join("results");
    let spec = write(
        d,
        "bad.toml",
        "name = \"bad\"\n[base]\ndata.source = \"toy\"\ndata.toy = \"swiss-roll\"\ndata.labels = true\ntrain.lr = -1\ntrain.stpes = 10\ntrain.batch_size = \"big\"\ndiffusion.prediction = \"eps\"\n[sweep]\n\"eval.guidance_scale\" = [1.0, 3.0]\n",
    );
    expect_bad(
        &spec,
        &results,
        &[],
        &[
            "bad.toml:5: data.labels: = true, but the toy source \"swiss-roll\" has no class labels",
            "bad.toml:6: train.lr: = -1: must be a number > 0",
            "bad.toml:7: train.stpes: unknown key; did you mean `train.steps`?",
            "bad.toml:8: train.batch_size: expected a whole number, found string \"big\"",
            "bad.toml:9: diffusion.prediction: unknown value \"eps\"; allowed: epsilon, x0, v",
            "bad.toml:11: eval.guidance_scale: = 3: guidance mixes",
            "has 6 problems",
        ],
    );
    // Impossible combinations, found with the values that make them.
    let spec = write(
        d,
        "combo.toml",
        "[base]\ndata.source = \"toy\"\ndata.toy = \"swiss-roll\"\n[sweep]\n\"train.p_uncond\" = [0.0, 0.1]\n\"eval.guidance_scale\" = [1.0, 3.0]\n",
    );
    expect_bad(
        &spec,
        &results,
        &[],
        &[
            "combo.toml:5: train.p_uncond: = 0.1: classifier-free guidance dropout needs a condition",
            "combo.toml:6: eval.guidance_scale: = 3: guidance mixes conditional and unconditional predictions, but train.p_uncond = 0",
        ],
    );
    let spec = write(
        d,
        "fp16.toml",
        "[base]\ndata.source = \"toy\"\ntrain.precision = \"fp16\"\n",
    );
    expect_bad(
        &spec,
        &results,
        &[],
        &["fp16.toml:3: train.precision", "fp16"],
    );
    // Axes that collide, and zip groups of unequal length.
    let spec = write(
        d,
        "collide.toml",
        "[sweep]\nseeds = [0, 1]\n\"train.lr\" = [1e-3]\n\"train.seed\" = [3]\n",
    );
    expect_bad(
        &spec,
        &results,
        &[],
        &["collide.toml:4: sweep: sweep.train.seed: swept twice (seeds and sweep.train.seed)"],
    );
    let spec = write(
        d,
        "zip.toml",
        "[sweep]\n\"train.lr\" = [1e-3]\n\n[[sweep.zip]]\n\"train.seed\" = [0, 1]\n\"train.warmup_steps\" = [0]\n",
    );
    expect_bad(
        &spec,
        &results,
        &[],
        &["zip.toml:4: sweep: sweep.zip[0]: lists of unequal length (train.seed: 2, train.warmup_steps: 1)"],
    );
    // Data that is not there: refused before any job starts (a dry run warns).
    let spec = write(
        d,
        "nodata.toml",
        "[base]\ndata.source = \"tabular\"\ndata.path = \"no/such.csv\"\ndata.columns = [\"a\"]\nmodel.preset = \"mlp-small\"\n",
    );
    expect_bad(
        &spec,
        &results,
        &[],
        &["nodata.toml:3: data.path: = \"no/such.csv\": not found in ", "(ddpm-lab resolves a relative data.path from the folder it runs in, not from the spec's); point data.path at the CSV or Parquet file"],
    );
    let out = sweep(&spec, &results, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning: ") && text(&out.stderr).contains("no/such.csv"));
    // A folder where a table file belongs.
    let folder = d.join("tables");
    std::fs::create_dir_all(&folder).unwrap();
    expect_bad(
        &spec,
        &results,
        &[
            "--set",
            &format!("data.path={:?}", folder.display().to_string()),
        ],
        &[
            "data.path: = ",
            "tables\": is a folder; point data.path at the CSV or Parquet file",
        ],
    );
    // A bad --set on an axis, and a bad device list.
    let spec = write(d, "ok.toml", "[base]\ndata.source = \"toy\"\n");
    expect_bad(
        &spec,
        &results,
        &["--set", "sweep.seeds=3"],
        &["--set sweep.seeds=3: sweep.seeds: = 3: an axis is a non-empty list"],
    );
    let out = bin()
        .arg("sweep")
        .arg(&spec)
        .args(["--devices", "gpu0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("use auto, cpu, cuda"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_failing_job_does_not_stop_the_others_and_rerun_failed_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    base(d);
    let spec = write(
        d,
        "fail.toml",
        "name = \"fail\"\nextends = \"base.toml\"\n[sweep]\n[[sweep.zip]]\n\"train.seed\" = [0, 1, 2]\n\"train.fail_at_step\" = [0, 30, 0]\n",
    );
    let results = d.join("results");
    let out = sweep(&spec, &results, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("1 of 3 job(s) failed"), "{err}");
    assert!(
        err.contains("exit 1: failed on purpose at step 30 (train.fail_at_step)"),
        "{err}"
    );
    assert!(err.contains("last lines of its stderr"), "{err}");
    let summary = json(&results.join("fail/summary.json"));
    let states: Vec<&str> = summary["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "completed").count(),
        2,
        "{states:?}"
    );
    let failed = summary["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["state"] == "failed")
        .unwrap();
    assert_eq!(failed["exit_code"], 1);
    assert_eq!(failed["step"], 30);
    assert!(failed["stderr_tail"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains("failed on purpose")));
    let job = failed["job"].as_str().unwrap().to_string();
    assert!(
        std::fs::read_to_string(results.join(format!("fail/logs/{job}.log")))
            .unwrap()
            .contains("failed on purpose")
    );

    // Without --rerun-failed, the failure stands and nothing trains.
    let out = sweep(&spec, &results, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nothing to train; 2 of 3 job(s) already completed"),
        "{err}"
    );
    assert!(err.contains("--rerun-failed retries"), "{err}");

    // With it (and the hook off: not part of the config hash), the job
    // resumes from its checkpoint at step 30 and completes.
    let out = sweep(
        &spec,
        &results,
        &["--rerun-failed", "--set", "train.fail_at_step=0"],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("training 1 job(s) (1 resumed), 2 already completed"),
        "{err}"
    );
    let log = std::fs::read_to_string(results.join(format!("fail/jobs/{job}/train.log"))).unwrap();
    assert!(
        log.contains("resumed from") && log.contains("step-000000030"),
        "{log}"
    );
    assert_eq!(
        json(&results.join(format!("fail/jobs/{job}/status.json")))["state"],
        "completed"
    );
}

#[test]
fn sigterm_checkpoints_the_running_job_and_the_next_invocation_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    base(d);
    let spec = write(
        d,
        "long.toml",
        "name = \"long\"\nextends = \"base.toml\"\n[base]\ntrain.steps = 2000\ntrain.batch_size = 8\ntrain.checkpoint_every = 50\ntrain.log_every = 50\n[sweep]\nseeds = [0, 1]\n",
    );
    let results = d.join("results");
    let child = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--results")
        .arg(&results)
        .args(["--devices", "cpu", "--quiet"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first job's first checkpoint.
    let jobs = results.join("long/jobs");
    let start = Instant::now();
    loop {
        let ready = std::fs::read_dir(&jobs).ok().is_some_and(|entries| {
            entries.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("status.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .is_some_and(|s| !s["last_checkpoint"].is_null())
            })
        });
        if ready {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("stopped by a signal; run the same command again"),
        "{err}"
    );
    let summary = json(&results.join("long/summary.json"));
    assert_eq!(summary["interrupted"], true);
    let first = &summary["jobs"][0];
    assert_eq!(first["state"], "interrupted", "{summary}");
    assert_eq!(summary["jobs"][1]["state"], "not-started", "{summary}");
    let job = first["job"].as_str().unwrap();
    let status = json(&jobs.join(job).join("status.json"));
    assert_eq!(status["state"], "interrupted");
    let stopped_at = status["step"].as_u64().unwrap();
    assert!(stopped_at > 0 && stopped_at < 2000, "{stopped_at}");
    assert!(
        !results.join("long/sweep.lock").exists(),
        "the lock is released"
    );

    let out = sweep(&spec, &results, &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("training 2 job(s) (1 resumed)"), "{err}");
    let log = std::fs::read_to_string(jobs.join(job).join("train.log")).unwrap();
    assert!(
        log.contains(&format!(
            "resumed from {}",
            jobs.join(job)
                .join(format!("checkpoints/step-{stopped_at:09}"))
                .display()
        )),
        "{log}"
    );
    assert_eq!(json(&jobs.join(job).join("status.json"))["step"], 2000);
}

#[test]
fn a_held_lock_refuses_a_stale_one_is_taken_over_and_a_busy_job_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    base(d);
    let spec = write(
        d,
        "locked.toml",
        "name = \"locked\"\nextends = \"base.toml\"\n",
    );
    let results = d.join("results");
    let root = results.join("locked");
    std::fs::create_dir_all(&root).unwrap();
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let lock = format!(
        "{{\"pid\": {}, \"since\": 0, \"command\": \"ddpm-lab sweep locked.toml\"}}",
        holder.id()
    );
    std::fs::write(root.join("sweep.lock"), &lock).unwrap();
    let out = sweep(&spec, &results, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("is locked by another sweep (pid {}", holder.id())),
        "{err}"
    );
    assert!(
        !root.join("plan.json").exists(),
        "nothing written under a held lock"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = sweep(&spec, &results, &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "took over a stale lock on {} (its process {} is gone)",
            root.display(),
            holder.id()
        )),
        "{err}"
    );
    // (--force moving a finished job to the attic, and a busy job's resume
    // once its process is gone, are the runner's unit tests.)
    // A job that another live process is training (say, `ddpm-lab train
    // --resume` by hand) is shown as busy and left alone, even by --force.
    let job = std::fs::read_dir(root.join("jobs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap();
    let mut trainer = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let mut status = json(&job.join("status.json"));
    status["state"] = "running".into();
    status["pid"] = trainer.id().into();
    let busy_status = serde_json::to_string_pretty(&status).unwrap();
    std::fs::write(job.join("status.json"), &busy_status).unwrap();
    let out = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--results")
        .arg(&results)
        .args(["--devices", "cpu", "--dry-run", "--force"])
        .output()
        .unwrap();
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        plan.contains("busy") && plan.contains("skip (another process is training it)"),
        "{plan}"
    );
    assert!(
        plan.contains("estimated cost: 0 job(s) to train (0.000e0 training MACs), 0 to evaluate"),
        "{plan}"
    );
    let out = sweep(&spec, &results, &["--force"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "another process (pid {}) is training it",
            trainer.id()
        )) && err
            .contains("1 of 1 job(s) were being trained by other processes and were left alone"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(job.join("status.json")).unwrap(),
        busy_status
    );
    assert!(!root.join("attic").exists(), "not moved aside");
    trainer.kill().unwrap();
    trainer.wait().unwrap();
}

/// Every shipped spec plans: the CPU-scale exercises, the finance example
/// and (with the device and precision a CPU machine allows) the paper-scale
/// CIFAR-10 versions, with the run and job counts their descriptions promise.
#[test]
fn every_shipped_experiment_spec_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    for (spec, runs, jobs) in [
        ("prediction_parameterization.toml", 9, 9),
        ("ema_ablation.toml", 15, 3),
        ("ema_posthoc.toml", 18, 3),
        ("loss_weighting.toml", 12, 12),
        ("per_timestep_loss.toml", 3, 3),
        ("cfg_training.toml", 12, 12),
        ("cfg_training_mnist.toml", 4, 4),
        ("finance_returns.toml", 4, 4),
        ("cifar10/prediction_parameterization.toml", 9, 9),
        ("cifar10/ema_ablation.toml", 9, 3),
        ("cifar10/loss_weighting.toml", 5, 5),
        ("cifar10/per_timestep_loss.toml", 1, 1),
        ("cifar10/cfg_training.toml", 4, 4),
    ] {
        let extra: &[&str] = if spec.starts_with("cifar10/") {
            &[
                "--set",
                "train.device=\"auto\"",
                "--set",
                "train.precision=\"fp32\"",
            ]
        } else {
            &[]
        };
        let plan = dry_json(&root.join(spec), extra, &[]);
        assert_eq!(plan["runs"].as_array().unwrap().len(), runs, "{spec}");
        assert_eq!(plan["jobs"].as_array().unwrap().len(), jobs, "{spec}");
    }
}

/// A `train.threads` the user set in `[base]` reaches the job's children
/// (training and evaluation) instead of the slot's share of the cores; the
/// dry run notes threads that would oversubscribe the cores.
#[test]
fn a_users_train_threads_reaches_the_children_and_oversubscription_is_noted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    base(d);
    let spec = write(
        d,
        "threads.toml",
        "name = \"threads\"\nextends = \"base.toml\"\n[base]\ntrain.steps = 20\ntrain.threads = 1\neval.num_samples = 50\n",
    );
    let results = d.join("results");
    let out = sweep(&spec, &results, &["--no-report"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let plan = json(&results.join("threads/plan.json"));
    let job = plan["jobs"][0]["id"].as_str().unwrap();
    let log = std::fs::read_to_string(results.join(format!("threads/logs/{job}.log"))).unwrap();
    let launches: Vec<&str> = log.lines().filter(|l| l.starts_with("=== ")).collect();
    let train = launches.iter().find(|l| l.contains(" train on ")).unwrap();
    assert!(train.contains("\"train.threads=1\""), "{train}");
    let eval = launches.iter().find(|l| l.contains(" eval on ")).unwrap();
    assert!(eval.contains("\"--threads\" \"1\""), "{eval}");

    // 64 threads × 2 jobs at a time is more than this machine's cores.
    let two = write(
        d,
        "two.toml",
        "name = \"two\"\nextends = \"base.toml\"\n[base]\ntrain.threads = 64\n[sweep]\nseeds = [0, 1]\n",
    );
    let out = bin()
        .arg("sweep")
        .arg(&two)
        .args([
            "--dry-run",
            "--devices",
            "cpu",
            "--cpu-jobs",
            "2",
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        plan.contains("note: train.threads = 64 × 2 CPU jobs at a time = 128 threads on ")
            && plan
                .contains("cores: the jobs will oversubscribe; lower train.threads or --cpu-jobs"),
        "{plan}"
    );
}

/// Without a terminal and without --quiet, a sweep prints plain lines: each
/// job's progress from its log records (every line with its loss), and its
/// evaluation phase. The job's train.log reads as text.
#[test]
fn a_plain_sweep_shows_losses_and_the_evaluation_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    base(d);
    let spec = write(
        d,
        "plain.toml",
        "name = \"plain\"\nextends = \"base.toml\"\n[base]\neval.num_samples = 50\n",
    );
    let results = d.join("results");
    let out = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--results")
        .arg(&results)
        .args(["--devices", "cpu", "--no-report"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let plan = json(&results.join("plain/plan.json"));
    let job = plan["jobs"][0]["id"].as_str().unwrap();
    let run = plan["runs"][0]["id"].as_str().unwrap();
    // Records every 20 of 60 steps: quarters are reported at 20 and 40.
    for step in [20, 40] {
        assert!(
            err.contains(&format!("[sweep] {job}: step {step}/60, loss ")),
            "{err}"
        );
    }
    let progress: Vec<&str> = err.lines().filter(|l| l.contains(": step ")).collect();
    assert!(
        progress.iter().all(|l| l.contains(", loss ")),
        "{progress:?}"
    );
    assert!(
        err.contains(&format!(
            "[sweep] {job}: evaluating: with the settings of run {run}"
        )),
        "{err}"
    );
    let log = std::fs::read_to_string(results.join(format!("plain/jobs/{job}/train.log"))).unwrap();
    assert!(log.contains("step 20/60 loss "), "{log}");
    assert!(
        !log.contains("{\"step\""),
        "records are metrics.jsonl's: {log}"
    );
}
