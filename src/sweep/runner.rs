//! A whole sweep, end to end: read and plan the spec (nothing touched on disk
//! until it is valid), find the devices, look at what earlier invocations
//! left, then train what is missing and summarise.

use super::child::{Ended, JobOutcome, JobTicket, ProcessExecutor, STOP};
use super::devices::{self, DeviceRequest, Slot, SlotDevice};
use super::lock;
use super::plan::{plan, Plan};
use super::progress::SweepProgress;
use super::results::{
    decide, retire_changed_plan, swept_json, write_if_changed, write_json, write_plan_files,
    Action, JobState, Policy, SweepDir,
};
use super::schedule::{queue_order, run_all, Task};
use super::spec::{read, SweepSpec};
use crate::config::load::{ConfigError, SetArg};
use crate::config::run::Precision;
use crate::config::Problem;
use crate::model::cost::{model_cost, ModelCost};
use crate::train::trainer::config_hash;
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// Training MACs per second per CPU thread, calibrated on a 2-core x86 machine
/// (BENCHMARKS.md: unet-mnist-small, 277 MMAC per 28×28 image, at batch 64
/// takes 1.36 s a step: 3×277e6×64/1.36/2 threads).
pub const CPU_MACS_PER_S_PER_THREAD: f64 = 2.0e10;
/// Training MACs per second on one GPU (fp32; the ddpm-cifar10 model, 6.1 GMAC
/// per image, trains at 15.7 steps/s of batch 128 on an H200).
pub const GPU_MACS_PER_S: f64 = 3.7e13;
/// Fixed cost per step (optimizer, EMA, logging) that MACs do not see.
pub const STEP_OVERHEAD_S: f64 = 2e-3;
/// Starting a job: loading libtorch, building the data and the model.
pub const JOB_STARTUP_S: f64 = 2.0;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The spec or a flag is wrong: exit 2, nothing written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Devices(String),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SweepError {
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, SweepError::Io { .. })
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SweepError {
    let context = context.into();
    move |source| SweepError::Io { context, source }
}

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub spec: PathBuf,
    pub sets: Vec<SetArg>,
    /// The results root; the sweep's folder is `<results>/<name>`.
    pub results: PathBuf,
    pub devices: DeviceRequest,
    pub jobs_per_device: usize,
    pub cpu_jobs: usize,
    pub policy: Policy,
    pub quiet: bool,
    /// Skip evaluation after training.
    pub no_eval: bool,
    /// This binary, run for the device probe and the jobs.
    pub exe: PathBuf,
}

/// One training job with what the planner knows about it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub hash: String,
    pub runs: Vec<String>,
    pub steps: u64,
    pub batch_size: i64,
    pub parameters: i64,
    pub macs_per_sample: f64,
    /// Training MACs still to do (all of them for a new job).
    pub macs: f64,
    /// Estimated seconds on its kind of slot.
    pub est_s: f64,
    pub state: String,
    /// The weight sets its runs are evaluated with.
    pub eval_weights: Vec<String>,
    #[serde(skip)]
    pub job_state: JobState,
    #[serde(skip)]
    pub action: Action,
    pub will: &'static str,
}

/// A validated plan on concrete devices.
pub struct Planned {
    pub spec: SweepSpec,
    pub plan: Plan,
    pub run_sets: Vec<SetArg>,
    pub dir: SweepDir,
    pub slots: Vec<Slot>,
    pub jobs: Vec<JobView>,
}

fn will(action: Action) -> &'static str {
    match action {
        Action::Train => "train",
        Action::Resume => "resume",
        Action::Restart => "restart",
        Action::SkipCompleted => "skip (completed)",
        Action::SkipFailed => "skip (failed; --rerun-failed retries)",
        Action::Evaluate => "evaluate",
        Action::SkipBusy => "skip (another process is training it)",
    }
}

/// Read, validate and plan; find the devices; read the jobs' states. Writes
/// nothing.
pub fn prepare(opts: &SweepOptions) -> Result<Planned, SweepError> {
    let mut spec = read(&opts.spec)?;
    let run_sets = spec.apply_axis_sets(&opts.sets)?;
    let plan = plan(&spec, &run_sets, true)?;
    let cuda = match opts.devices {
        DeviceRequest::Cpu => 0,
        _ => devices::count_cuda(&opts.exe),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let slots = devices::slots(
        &opts.devices,
        cuda,
        visible.as_deref(),
        opts.jobs_per_device,
        opts.cpu_jobs,
        cores,
    )
    .map_err(SweepError::Devices)?;
    let cpu_only = slots.iter().all(|s| s.device == SlotDevice::Cpu);
    if cpu_only {
        let fp16 = plan
            .jobs
            .iter()
            .any(|j| j.config.train.precision == Precision::Fp16);
        if fp16 {
            return Err(ConfigError {
                origin: spec.path.display().to_string(),
                problems: vec![Problem::new(
                    "train.precision",
                    "= \"fp16\", but this sweep runs on the CPU only (no CUDA device, or --devices cpu): fp16 autocast needs CUDA; use \"bf16\" or \"fp32\"",
                )
                .at(Some(spec_origin(&spec, "train.precision")))],
            }
            .into());
        }
    }
    let dir = SweepDir::new(&opts.results, &spec.name);
    // The model cost of each distinct architecture, built in parallel.
    let specs: Vec<crate::model::ModelSpec> = plan
        .jobs
        .iter()
        .map(|j| crate::config::model_spec(&j.config, None))
        .collect();
    let mut distinct: Vec<crate::model::ModelSpec> = vec![];
    for s in &specs {
        if !distinct.contains(s) {
            distinct.push(s.clone());
        }
    }
    let costs: Vec<ModelCost> = distinct.par_iter().map(model_cost).collect();
    let threads = slots.first().map_or(1, |s| s.threads);
    let per_device = opts.jobs_per_device.max(1) as f64;
    let jobs: Vec<JobView> = plan
        .jobs
        .par_iter()
        .zip(specs.par_iter())
        .map(|(job, ms)| {
            let cost = costs[distinct.iter().position(|d| d == ms).unwrap_or(0)];
            let hash = config_hash(&job.config, false);
            let state = JobState::read(&dir.job_dir(&job.id), &hash);
            let eval_weights = eval_weights(&plan, job);
            let action = with_eval(
                decide(&state, opts.policy),
                &dir,
                &job.id,
                &eval_weights,
                opts.no_eval,
            );
            let steps = job.config.train.steps;
            let done = match (&state, action) {
                (
                    JobState::Interrupted { step, .. } | JobState::Failed { step, .. },
                    Action::Resume,
                ) => *step,
                _ => 0,
            };
            let left = steps.saturating_sub(done) as f64;
            let macs = cost.train_step_macs(job.config.train.batch_size) * left;
            let rate = if cpu_only {
                CPU_MACS_PER_S_PER_THREAD * threads as f64
            } else {
                GPU_MACS_PER_S / per_device
            };
            JobView {
                id: job.id.clone(),
                hash,
                runs: job.runs.iter().map(|&r| plan.runs[r].id.clone()).collect(),
                steps,
                batch_size: job.config.train.batch_size,
                parameters: cost.parameters,
                macs_per_sample: cost.macs_per_sample,
                macs,
                est_s: JOB_STARTUP_S + macs / rate + left * STEP_OVERHEAD_S,
                state: state.name().to_string(),
                eval_weights,
                job_state: state,
                action,
                will: will(action),
            }
        })
        .collect();
    Ok(Planned {
        spec,
        plan,
        run_sets,
        dir,
        slots,
        jobs,
    })
}

/// `spec:line` of a run-config key as the spec writes it (under `[base]`, else
/// as a `[sweep]` axis), or the spec alone when neither is there.
fn spec_origin(spec: &SweepSpec, key: &str) -> String {
    let text = &spec.bases.last().expect("a spec has its own base").text; // ok: read() pushes it
    let line = crate::config::locate::line_of(text, &format!("base.{key}"))
        .or_else(|| crate::config::locate::line_of(text, &format!("sweep.{key}")));
    match line {
        Some(l) => format!("{}:{l}", spec.path.display()),
        None => spec.path.display().to_string(),
    }
}

/// Data files that the jobs still to train or evaluate need and that are not
/// there. `sweep` makes this an input error before anything starts or is
/// written (rather than every job failing in turn); `--dry-run` a warning
/// under the plan.
pub fn missing_data(planned: &Planned) -> Result<(), ConfigError> {
    use crate::config::run::DataSource;
    let (spec, plan, jobs) = (&planned.spec, &planned.plan, &planned.jobs);
    let mut problems: Vec<Problem> = vec![];
    for (job, view) in plan.jobs.iter().zip(jobs) {
        if matches!(
            view.action,
            Action::SkipCompleted | Action::SkipFailed | Action::SkipBusy
        ) {
            continue;
        }
        let d = &job.config.data;
        let what = match d.source {
            DataSource::Mnist => "run `ddpm-lab data mnist` (or `just data`) to build it, or point data.path at MNIST's IDX files",
            DataSource::Cifar10 => "point data.path at the CIFAR-10 folder or archive",
            DataSource::Folder => "point data.path at the image folder",
            DataSource::Tabular => "point data.path at the CSV or Parquet file",
            DataSource::Toy | DataSource::Synthetic => continue,
        };
        let path = d.resolved_path();
        let shown = path.display().to_string();
        let message = match d.source {
            // The kind of path matters for these two: a folder of images, one table file.
            DataSource::Folder if path.is_file() => {
                format!("= {shown:?}: is a file; {what}")
            }
            DataSource::Tabular if path.is_dir() => {
                format!("= {shown:?}: is a folder; {what}")
            }
            _ if path.exists() => continue,
            _ => {
                let cwd = std::env::current_dir()
                    .map_or_else(|_| ".".into(), |c| c.display().to_string());
                format!(
                    "= {shown:?}: not found (a relative data.path is resolved from the folder ddpm-lab runs in, {cwd}, not from the spec's); {what}"
                )
            }
        };
        if problems.iter().any(|p| p.message == message) {
            continue;
        }
        problems.push(Problem::new("data.path", message).at(Some(spec_origin(spec, "data.path"))));
    }
    ConfigError::unless_empty(&spec.path, problems)
}

/// The weight sets a job's runs are evaluated with, in plan order, and the
/// raw weights always (the reference every EMA is compared against).
fn eval_weights(plan: &Plan, job: &super::plan::Job) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for &r in &job.runs {
        let w = &plan.runs[r].weights;
        if !out.contains(w) {
            out.push(w.clone());
        }
    }
    if !out.iter().any(|w| w == "raw") {
        out.push("raw".into());
    }
    out
}

/// A completed job whose evaluation is not finished is evaluated.
fn with_eval(
    action: Action,
    dir: &SweepDir,
    id: &str,
    weights: &[String],
    no_eval: bool,
) -> Action {
    let job_dir = dir.job_dir(id);
    if action == Action::SkipCompleted
        && !no_eval
        && !crate::eval::evaluate::is_done(&job_dir, &job_dir.join("eval"), weights)
    {
        Action::Evaluate
    } else {
        action
    }
}

/// The sweep's estimated wall time: longest-first over the slots.
pub fn makespan(jobs: &[JobView], slots: usize) -> f64 {
    let tasks: Vec<Task> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.action.runs())
        .map(|(i, j)| Task {
            job: i,
            cost: j.est_s,
        })
        .collect();
    let mut free = vec![0.0f64; slots.max(1)];
    for t in queue_order(tasks) {
        let (i, _) = free
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least one slot"); // ok: max(1)
        free[i] += t.cost;
    }
    free.into_iter().fold(0.0, f64::max)
}

/// A duration for people: `45s`, `12min`, `3.5h`.
pub fn human_secs(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0}s")
    } else if s < 5400.0 {
        format!("{:.0}min", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

/// The plan as JSON (`--dry-run --json`, and `plan.json`).
pub fn plan_json(p: &Planned) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = p
        .plan
        .runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "job": p.plan.jobs[r.job].id,
                "weights": r.weights,
                "swept": swept_json(r),
                "config": r.config,
            })
        })
        .collect();
    let jobs: Vec<serde_json::Value> = p
        .jobs
        .iter()
        .zip(&p.plan.jobs)
        .map(|(v, j)| {
            let mut o = serde_json::to_value(v).unwrap_or_default();
            o["config"] = serde_json::to_value(&j.config).unwrap_or_default();
            o
        })
        .collect();
    serde_json::json!({
        "name": p.spec.name,
        "description": p.spec.description,
        "spec": p.spec.path.display().to_string(),
        "results": p.dir.root.display().to_string(),
        "sets": p.run_sets.iter().map(|s| s.raw.clone()).collect::<Vec<_>>(),
        "devices": p.slots.iter().map(|s| s.label()).collect::<Vec<_>>(),
        "estimated_wall_s": makespan(&p.jobs, p.slots.len()),
        "runs": runs,
        "jobs": jobs,
    })
}

/// The plan for people.
pub fn plan_text(p: &Planned) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sweep {}: {} run{} in {} training job{}{}",
        p.spec.name,
        p.plan.runs.len(),
        if p.plan.runs.len() == 1 { "" } else { "s" },
        p.plan.jobs.len(),
        if p.plan.jobs.len() == 1 { "" } else { "s" },
        if p.plan.jobs.len() < p.plan.runs.len() {
            " (runs that differ only in ema.decay or eval.* share a job)"
        } else {
            ""
        }
    );
    if !p.spec.description.is_empty() {
        let _ = writeln!(s, "  {}", p.spec.description);
    }
    let _ = writeln!(s, "results: {}", p.dir.root.display());
    let _ = writeln!(s, "\nruns (in expansion order):");
    let w = p
        .plan
        .runs
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let _ = writeln!(s, "  {:<w$}  {:<8}  weights", "id", "job");
    for r in &p.plan.runs {
        let _ = writeln!(
            s,
            "  {:<w$}  {:<8}  {}",
            r.id, p.plan.jobs[r.job].id, r.weights
        );
    }
    let _ = writeln!(s, "\ntraining jobs (longest first):");
    let _ = writeln!(
        s,
        "  {:<8}  {:>4}  {:>7}  {:>5}  {:>10}  {:>9}  {:>8}  {:<11}  will",
        "job", "runs", "steps", "batch", "params", "MMAC/img", "est.", "state"
    );
    let order = queue_order(
        p.jobs
            .iter()
            .enumerate()
            .map(|(i, j)| Task {
                job: i,
                cost: j.est_s,
            })
            .collect(),
    );
    for t in order {
        let j = &p.jobs[t.job];
        let _ = writeln!(
            s,
            "  {:<8}  {:>4}  {:>7}  {:>5}  {:>10}  {:>9.2}  {:>8}  {:<11}  {}",
            j.id,
            j.runs.len(),
            j.steps,
            j.batch_size,
            j.parameters,
            j.macs_per_sample / 1e6,
            human_secs(j.est_s),
            j.state,
            j.will
        );
    }
    let _ = writeln!(s, "\ndevices: {}", devices::describe(&p.slots));
    let train: Vec<&JobView> = p.jobs.iter().filter(|j| j.action.trains()).collect();
    let macs: f64 = train.iter().fold(0.0, |sum, j| sum + j.macs); // (an empty `sum()` is -0.0)
    let _ = writeln!(
        s,
        "estimated cost: {} job(s) to train, {:.3e} training MACs, about {} of wall time (rough: a calibrated MAC rate, see BENCHMARKS.md)",
        train.len(),
        macs,
        human_secs(makespan(&p.jobs, p.slots.len()))
    );
    s
}

/// How one job ended in this invocation (or why it did not run).
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub runs: Vec<String>,
    /// completed, failed, interrupted, skipped, or not-started.
    pub state: String,
    pub step: u64,
    pub steps: u64,
    pub device: String,
    pub wall_s: f64,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub stderr_tail: Vec<String>,
    /// Whether it trained in this invocation.
    pub trained: bool,
}

/// The end of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub results: String,
    pub jobs: Vec<JobReport>,
    pub failed: usize,
    /// Jobs that other processes were training, left alone.
    pub busy: usize,
    pub interrupted: bool,
    pub trained: usize,
}

/// Lock the folder, write the plan files, run what needs running.
pub fn execute(p: &Planned, opts: &SweepOptions) -> Result<Summary, SweepError> {
    let _lock = lock::acquire(&p.dir.root)?;
    if let Some(pid) = _lock.took_over {
        eprintln!(
            "[sweep] took over a stale lock on {} (its process {pid} is gone)",
            p.dir.root.display()
        );
    }
    // Read the states again under the lock: another sweep may have just ended.
    let mut jobs = p.jobs.clone();
    for j in &mut jobs {
        j.job_state = JobState::read(&p.dir.job_dir(&j.id), &j.hash);
        j.action = with_eval(
            decide(&j.job_state, opts.policy),
            &p.dir,
            &j.id,
            &j.eval_weights,
            opts.no_eval,
        );
    }
    let root = &p.dir.root;
    let spec_text = p.spec.resolved_toml(&p.run_sets);
    if let Some(to) =
        retire_changed_plan(&p.dir, &spec_text).map_err(io("moving the previous plan aside"))?
    {
        eprintln!(
            "[sweep] the spec differs from the last invocation's: its plan and report moved to {} (finished jobs the new plan shares are reused)",
            to.display()
        );
    }
    write_plan_files(&p.dir, &p.plan).map_err(io(format!("writing under {}", root.display())))?;
    write_if_changed(&root.join("spec.toml"), &spec_text).map_err(io("writing spec.toml"))?;
    write_json(&root.join("plan.json"), &plan_json(p)).map_err(io("writing plan.json"))?;

    let to_run: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].action.runs()).collect();
    let to_train = to_run.iter().filter(|&&i| jobs[i].action.trains()).count();
    let skipped_done = jobs
        .iter()
        .filter(|j| matches!(j.action, Action::SkipCompleted | Action::Evaluate))
        .count();
    let evaluate_only = to_run.len() - to_train;
    if to_train == 0 && evaluate_only > 0 {
        eprintln!(
            "[sweep] {}: nothing to train ({skipped_done} of {} job(s) already completed); evaluating {evaluate_only} job(s) whose evaluation is missing",
            p.spec.name,
            jobs.len()
        );
    } else if to_run.is_empty() {
        eprintln!(
            "[sweep] {}: nothing to train; {skipped_done} of {} job(s) already completed with the same config{}",
            p.spec.name,
            jobs.len(),
            others_note(&jobs)
        );
    } else {
        eprintln!(
            "[sweep] {}: training {} job(s) ({} resumed), {skipped_done} already completed; {}",
            p.spec.name,
            to_train,
            to_run
                .iter()
                .filter(|&&i| jobs[i].action == Action::Resume)
                .count(),
            devices::describe(&p.slots)
        );
    }
    let progress = SweepProgress::new(to_run.len(), opts.quiet);
    let exec = ProcessExecutor {
        exe: opts.exe.clone(),
        dir: p.dir.clone(),
        jobs: jobs
            .iter()
            .map(|j| JobTicket {
                id: j.id.clone(),
                action: j.action,
                evaluate: !opts.no_eval,
                eval_weights: j.eval_weights.clone(),
                total_steps: j.steps,
                label: match j.runs.len() {
                    1 => format!("run {}", j.runs[0]),
                    n => format!("{n} runs ({} …)", j.runs[0]),
                },
            })
            .collect(),
        progress: &progress,
    };
    let tasks: Vec<Task> = to_run
        .iter()
        .map(|&i| Task {
            job: i,
            cost: jobs[i].est_s,
        })
        .collect();
    let done = run_all(tasks, &p.slots, &exec, &STOP);
    progress.close();
    let mut outcomes: Vec<Option<JobOutcome>> = vec![None; jobs.len()];
    for d in done {
        outcomes[d.task.job] = Some(d.output);
    }
    let interrupted = STOP.load(Ordering::SeqCst);
    let reports: Vec<JobReport> = jobs
        .iter()
        .zip(outcomes)
        .map(|(j, o)| report(j, o))
        .collect();
    let summary = Summary {
        name: p.spec.name.clone(),
        results: root.display().to_string(),
        failed: reports.iter().filter(|r| r.state == "failed").count(),
        busy: reports.iter().filter(|r| r.state == "busy").count(),
        interrupted,
        trained: reports.iter().filter(|r| r.trained).count(),
        jobs: reports,
    };
    write_json(&root.join("summary.json"), &summary).map_err(io("writing summary.json"))?;
    Ok(summary)
}

/// Why the jobs neither completed nor run are skipped, for "nothing to train".
fn others_note(jobs: &[JobView]) -> String {
    let count = |a: Action| jobs.iter().filter(|j| j.action == a).count();
    let mut why = vec![];
    match count(Action::SkipFailed) {
        0 => {}
        n => why.push(format!("{n} failed earlier: --rerun-failed retries them")),
    }
    match count(Action::SkipBusy) {
        0 => {}
        n => why.push(format!("{n} being trained by another process")),
    }
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join("; "))
    }
}

fn report(j: &JobView, o: Option<JobOutcome>) -> JobReport {
    let base = JobReport {
        job: j.id.clone(),
        runs: j.runs.clone(),
        state: String::new(),
        step: 0,
        steps: j.steps,
        device: String::new(),
        wall_s: 0.0,
        exit_code: None,
        reason: String::new(),
        stderr_tail: vec![],
        trained: false,
    };
    match (o, &j.job_state) {
        (Some(o), _) => JobReport {
            state: match o.ended {
                Ended::Completed => "completed",
                Ended::Failed => "failed",
                Ended::Interrupted => "interrupted",
            }
            .into(),
            step: o.step,
            device: o.device,
            wall_s: o.wall_s,
            exit_code: o.exit_code,
            reason: o.reason,
            stderr_tail: o.stderr_tail,
            trained: true,
            ..base
        },
        (None, JobState::Completed { step }) => JobReport {
            state: "completed".into(),
            step: *step,
            reason: "already completed; skipped".into(),
            ..base
        },
        (None, JobState::Failed { step, reason, .. }) if j.action == Action::SkipFailed => {
            JobReport {
                state: "failed".into(),
                step: *step,
                reason: format!("{reason} (from an earlier invocation; --rerun-failed retries it)"),
                ..base
            }
        }
        (None, JobState::Busy { step, pid }) => JobReport {
            state: "busy".into(),
            step: *step,
            reason: format!(
                "another process (pid {pid}) is training it; left alone — run the sweep again when it ends"
            ),
            ..base
        },
        (None, _) => JobReport {
            state: "not-started".into(),
            reason: "the sweep stopped before it started".into(),
            ..base
        },
    }
}

/// The summary table, then each failure's details.
pub fn summary_text(s: &Summary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "\nsummary of {} ({}):", s.name, s.results);
    let _ = writeln!(
        out,
        "  {:<8}  {:>4}  {:<11}  {:>15}  {:<7}  {:>8}  note",
        "job", "runs", "state", "steps", "device", "wall"
    );
    for r in &s.jobs {
        let note = match r.state.as_str() {
            "failed" => match r.exit_code {
                Some(c) => format!("exit {c}: {}", first_line(&r.reason)),
                None => first_line(&r.reason),
            },
            _ => first_line(&r.reason),
        };
        let _ = writeln!(
            out,
            "  {:<8}  {:>4}  {:<11}  {:>15}  {:<7}  {:>8}  {}",
            r.job,
            r.runs.len(),
            r.state,
            format!("{}/{}", r.step, r.steps),
            if r.device.is_empty() { "-" } else { &r.device },
            if r.trained {
                human_secs(r.wall_s)
            } else {
                "-".into()
            },
            note
        );
    }
    for r in s.jobs.iter().filter(|r| r.state == "failed" && r.trained) {
        let _ = writeln!(
            out,
            "\njob {} failed (exit code {}): {}\n  runs: {}\n  last lines of its stderr (all of it: logs/{}.log):",
            r.job,
            r.exit_code.map_or("none: killed by a signal".to_string(), |c| c.to_string()),
            r.reason,
            r.runs.join(", "),
            r.job
        );
        for l in &r.stderr_tail {
            let _ = writeln!(out, "    {l}");
        }
    }
    out
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > 100 {
        format!("{}…", l.chars().take(99).collect::<String>())
    } else {
        l.to_string()
    }
}
