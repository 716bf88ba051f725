//! A whole sweep, end to end: read and plan the spec (nothing touched on disk
//! until it is valid), find the devices, look at what earlier invocations
//! left, then train what is missing and summarise.

use super::devices::{self, DeviceRequest, Slot, SlotDevice};
use super::estimate;
use super::evals::{job_evals, with_evals, JobEval};
use super::executor::{Executor, JobOutcome, JobTicket, TicketRun};
use super::lock;
use super::plan::{plan, Plan};
use super::progress::SweepProgress;
use super::results::{
    decide, retire, retire_changed_plan, retire_tensorboard, swept_json, write_plan_files, Action,
    Policy,
};
use super::schedule::{queue_order, run_all, SlotWorker, Task};
use super::spec::{read, SweepSpec};
use crate::config::load::{ConfigError, LoadError, SetArg};
use crate::config::run::Precision;
use crate::config::{Problem, RunConfig};
use crate::model::cost::ModelCost;
use crate::run::atomic::{write_if_changed, write_json};
use crate::run::records::{JobCost, JobReport, PlanFile, PlanJob, PlanRun, Summary};
use crate::run::{identity, JobState, Observed, StopToken, SweepDir};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The spec or a flag is wrong: exit 2, nothing written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The devices asked for are not on this machine.
    #[error(transparent)]
    Devices(#[from] devices::DevicesError),
    /// The spec is a run config.
    #[error(transparent)]
    WrongKind(#[from] crate::config::kind::WrongKind),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<LoadError> for SweepError {
    fn from(e: LoadError) -> SweepError {
        match e {
            LoadError::WrongKind(k) => SweepError::WrongKind(k),
            LoadError::Config(c) => SweepError::Config(c),
        }
    }
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
    /// The machine the runs' device settings are checked against; None:
    /// this one (a Slurm sweep checks against its compute nodes).
    pub hardware: Option<crate::config::Hardware>,
    /// Run only this job, as one task of a cluster array: no sweep lock (the
    /// other tasks run at the same time), and plan.json and summary.json
    /// are left to the submitting process.
    pub only_job: Option<String>,
}

/// One training job with what the planner knows about it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub id: String,
    pub hash: String,
    pub runs: Vec<String>,
    pub cost: JobCost,
    /// Its evaluations (one per distinct `eval.*` settings among its runs).
    pub evals: Vec<JobEval>,
    /// For [`Action::Reevaluate`]: the settings that changed.
    pub eval_changes: Vec<String>,
    /// Its `train.threads` (0 = the slot's share of the cores).
    pub threads: usize,
    /// Its folder as found.
    pub seen: Observed,
    pub action: Action,
}

impl JobView {
    /// Its entry in `plan.json`.
    fn record(&self, config: &RunConfig) -> PlanJob {
        PlanJob {
            id: self.id.clone(),
            hash: self.hash.clone(),
            runs: self.runs.clone(),
            cost: self.cost,
            state: self.seen.state,
            evals: self.evals.iter().map(|e| e.task.clone()).collect(),
            will: self.will(),
            config: config.clone(),
        }
    }
}

/// A validated plan on concrete devices.
pub struct Planned {
    pub spec: SweepSpec,
    pub plan: Plan,
    pub run_sets: Vec<SetArg>,
    pub dir: SweepDir,
    pub slots: Vec<Slot>,
    pub jobs: Vec<JobView>,
    /// This machine's cores, which the slots share.
    pub cores: usize,
}

impl JobView {
    /// What the sweep does with it, as the plan says it.
    fn will(&self) -> String {
        match self.action {
            Action::Reevaluate => format!(
                "re-evaluate (eval settings changed: {})",
                self.eval_changes.join(", ")
            ),
            a => will(a).to_string(),
        }
    }
}

fn will(action: Action) -> &'static str {
    match action {
        Action::Train => "train",
        Action::Resume => "resume",
        Action::Restart => "restart",
        Action::SkipCompleted => "skip (completed)",
        Action::SkipFailed => "skip (failed; --rerun-failed retries)",
        Action::Evaluate => "evaluate",
        Action::Reevaluate => "re-evaluate",
        Action::SkipBusy => "skip (another process is training it)",
    }
}

/// Read, validate and plan; find the devices; read the jobs' states. Writes
/// nothing.
pub fn prepare(opts: &SweepOptions) -> Result<Planned, SweepError> {
    let mut spec = read(&opts.spec)?;
    spec.hardware = opts.hardware;
    let run_sets = spec.apply_axis_sets(&opts.sets)?;
    let plan = plan(&spec, &run_sets, true)?;
    let cores = cores();
    let slots = probe_slots(opts, cores)?;
    let cpu_only = slots.iter().all(|s| s.device == SlotDevice::Cpu);
    if cpu_only && opts.hardware.is_none() {
        refuse_fp16_on_cpu(&spec, &plan)?;
    }
    let dir = SweepDir::new(&opts.results, &spec.name);
    let threads = slots.first().map_or(1, |s| s.threads);
    let rate = estimate::macs_per_s(cpu_only, threads, opts.jobs_per_device);
    let jobs = job_views(opts, &plan, &dir, rate);
    Ok(Planned {
        spec,
        plan,
        run_sets,
        dir,
        slots,
        jobs,
        cores,
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The slots the jobs run in: the CUDA devices this binary sees (unless
/// `--devices cpu`), narrowed by the request and `CUDA_VISIBLE_DEVICES`.
fn probe_slots(opts: &SweepOptions, cores: usize) -> Result<Vec<Slot>, SweepError> {
    let cuda = match opts.devices {
        DeviceRequest::Cpu => 0,
        _ => devices::count_cuda(&opts.exe),
    };
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    devices::slots(
        &opts.devices,
        cuda,
        visible.as_deref(),
        opts.jobs_per_device,
        opts.cpu_jobs,
        cores,
    )
    .map_err(SweepError::Devices)
}

/// A restarted job's earlier attempt could not be moved to the attic.
#[derive(Debug, thiserror::Error)]
#[error("moving {} to the attic: {error}", .path.display())]
pub struct RetireError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// fp16 autocast needs CUDA: a sweep on the CPU only that asks for it is an
/// input error before anything starts, not a failure in every job.
fn refuse_fp16_on_cpu(spec: &SweepSpec, plan: &Plan) -> Result<(), ConfigError> {
    let fp16 = plan
        .jobs
        .iter()
        .any(|j| j.config.train.precision == Precision::Fp16);
    if !fp16 {
        return Ok(());
    }
    Err(ConfigError {
        origin: spec.path.display().to_string(),
        problems: vec![Problem::new(
            "train.precision",
            "= \"fp16\", but this sweep runs on the CPU only (no CUDA device, or --devices cpu): fp16 autocast needs CUDA; use \"bf16\" or \"fp32\"",
        )
        .at(Some(spec_origin(spec, "train.precision")))],
    })
}

/// Each job of the plan with its state on disk, what this invocation will do
/// with it and its cost at `rate` MACs per second.
fn job_views(opts: &SweepOptions, plan: &Plan, dir: &SweepDir, rate: f64) -> Vec<JobView> {
    let costs = estimate::job_costs(&plan.jobs);
    let mut views: Vec<JobView> = plan
        .jobs
        .par_iter()
        .zip(costs.par_iter())
        .map(|(job, cost)| job_view(opts, plan, dir, job, cost, rate))
        .collect();
    // An evaluator network missing from the cache is trained once, by the
    // first job that evaluates images of its data.
    let evaluators = opts.results.join(".evaluators");
    let mut keys: Vec<String> = vec![];
    for (v, job) in views.iter_mut().zip(&plan.jobs) {
        let key = crate::run::layout::evaluator_key(&job.config);
        let evaluates = !opts.no_eval && (v.action.trains() || v.action.evaluates_only());
        if let Some(key) = key.filter(|k| evaluates && !keys.contains(k)) {
            let s = estimate::evaluator_seconds(&job.config, &evaluators, rate);
            v.cost.eval_est_s += s;
            v.cost.est_s += s;
            keys.push(key);
        }
    }
    views
}

fn job_view(
    opts: &SweepOptions,
    plan: &Plan,
    dir: &SweepDir,
    job: &super::plan::Job,
    cost: &ModelCost,
    rate: f64,
) -> JobView {
    let hash = identity::training_hash(&job.config);
    let seen = Observed::read(&dir.job_dir(&job.id), &hash);
    let evals = job_evals(plan, job);
    let (action, eval_changes) = with_evals(
        decide(&seen, opts.policy),
        dir,
        &job.id,
        &evals,
        opts.no_eval,
    );
    let steps = job.config.train.steps;
    let done = if action == Action::Resume {
        seen.step
    } else {
        0
    };
    let est = estimate::estimate(
        cost,
        job.config.train.batch_size,
        steps.saturating_sub(done),
        rate,
    );
    let train_s = if action.trains() { est.seconds } else { 0.0 };
    let evaluates = !opts.no_eval && (action.trains() || action.evaluates_only());
    let eval_est_s: f64 = match evaluates {
        false => 0.0,
        true => evals
            .iter()
            .map(|e| {
                let mut c = job.config.clone();
                c.eval = e.eval.clone();
                estimate::eval_work(&c, e.task.weights.len()).seconds(cost, rate)
            })
            .sum(),
    };
    JobView {
        id: job.id.clone(),
        hash,
        runs: job.runs.iter().map(|&r| plan.runs[r].id.clone()).collect(),
        cost: JobCost {
            steps,
            batch_size: job.config.train.batch_size,
            parameters: cost.parameters,
            macs_per_sample: cost.macs_per_sample,
            macs: est.macs,
            est_s: train_s + eval_est_s,
            eval_est_s,
        },
        evals,
        eval_changes,
        threads: usize::try_from(job.config.train.threads).unwrap_or(0),
        seen,
        action,
    }
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
        let cwd = crate::data::error::working_folder();
        let what = match d.source {
            DataSource::Mnist => format!("run `ddpm-lab data mnist` (or `just data`) in {} to build data/mnist there, or point data.path at MNIST's IDX files", cwd.display()),
            DataSource::Cifar10 => "point data.path at the CIFAR-10 folder or archive".into(),
            DataSource::Folder => "point data.path at the image folder".into(),
            DataSource::Tabular => "point data.path at the CSV or Parquet file".into(),
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
            _ if path.is_relative() => format!(
                "= {shown:?}: not found in {} (ddpm-lab resolves a relative data.path from the folder it runs in, not from the spec's); {what}",
                cwd.display()
            ),
            _ => format!("= {shown:?}: not found; {what}"),
        };
        if problems.iter().any(|p| p.message == message) {
            continue;
        }
        problems.push(Problem::new("data.path", message).at(Some(spec_origin(spec, "data.path"))));
    }
    ConfigError::unless_empty(&spec.path, problems)
}

/// The sweep's estimated wall time: longest-first over the slots.
pub fn makespan(jobs: &[JobView], slots: usize) -> f64 {
    let tasks: Vec<Task> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.action.runs())
        .map(|(i, j)| Task {
            job: i,
            cost: j.cost.est_s,
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

/// The plan as `plan.json` holds it (and `--dry-run --json` prints it).
pub fn plan_file(p: &Planned) -> PlanFile {
    PlanFile {
        name: p.spec.name.clone(),
        description: p.spec.description.clone(),
        spec: p.spec.path.display().to_string(),
        results: p.dir.root.display().to_string(),
        sets: p.run_sets.iter().map(|s| s.raw.clone()).collect(),
        devices: p.slots.iter().map(|s| s.label()).collect(),
        estimated_wall_s: makespan(&p.jobs, p.slots.len()),
        runs: p
            .plan
            .runs
            .iter()
            .map(|r| PlanRun {
                id: r.id.clone(),
                job: p.plan.jobs[r.job].id.clone(),
                weights: r.weights,
                swept: swept_json(r),
                config: r.config.clone(),
            })
            .collect(),
        jobs: p
            .jobs
            .iter()
            .zip(&p.plan.jobs)
            .map(|(v, j)| v.record(&j.config))
            .collect(),
    }
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
            " (runs that differ only in ema.decay, ema.std_rel or eval.* share a job)"
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
                cost: j.cost.est_s,
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
            j.cost.steps,
            j.cost.batch_size,
            j.cost.parameters,
            j.cost.macs_per_sample / 1e6,
            human_secs(j.cost.est_s),
            j.seen.state,
            j.will()
        );
    }
    let _ = writeln!(s, "\ndevices: {}", devices::describe(&p.slots));
    if let Some(o) = oversubscribed(p) {
        let _ = writeln!(s, "note: {o}");
    }
    let train: Vec<&JobView> = p.jobs.iter().filter(|j| j.action.trains()).collect();
    let macs: f64 = train.iter().fold(0.0, |sum, j| sum + j.cost.macs); // (an empty `sum()` is -0.0)
    let evaluating = p.jobs.iter().filter(|j| j.cost.eval_est_s > 0.0).count();
    let eval_s: f64 = p.jobs.iter().fold(0.0, |sum, j| sum + j.cost.eval_est_s);
    let _ = writeln!(
        s,
        "estimated cost: {} job(s) to train ({:.3e} training MACs), {evaluating} to evaluate ({} of evaluation work); about {} of wall time (rough: calibrated rates, see BENCHMARKS.md)",
        train.len(),
        macs,
        human_secs(eval_s),
        human_secs(makespan(&p.jobs, p.slots.len()))
    );
    s
}

/// Whether the jobs this invocation runs ask for more CPU threads at once
/// than the machine has cores (`train.threads` × jobs at a time).
pub fn oversubscribed(p: &Planned) -> Option<devices::Oversubscribed> {
    let configured: Vec<usize> = p
        .jobs
        .iter()
        .filter(|j| j.action.runs())
        .map(|j| j.threads)
        .collect();
    devices::oversubscribed(&p.slots, &configured, p.cores)
}

/// Lock the folder, write the plan files, and run what needs running with
/// `exec`, until every job has run or `stop` is set.
pub fn execute(
    p: &Planned,
    opts: &SweepOptions,
    exec: &impl Executor,
    stop: &StopToken,
) -> Result<Summary, SweepError> {
    let task = opts.only_job.as_deref();
    if let Some(note) = new_results_note(&opts.results) {
        eprintln!("{note}");
    }
    let lock = match task {
        None => Some(lock::acquire(&p.dir.root)?),
        Some(_) => None,
    };
    if let Some(pid) = lock.as_ref().and_then(|l| l.took_over) {
        eprintln!(
            "[sweep] took over a stale lock on {} (its process {pid} is gone)",
            p.dir.root.display()
        );
    }
    // Read the states again under the lock: another sweep may have just ended.
    let mut jobs = p.jobs.clone();
    for j in &mut jobs {
        j.seen = Observed::read(&p.dir.job_dir(&j.id), &j.hash);
        (j.action, j.eval_changes) = with_evals(
            decide(&j.seen, opts.policy),
            &p.dir,
            &j.id,
            &j.evals,
            opts.no_eval,
        );
    }
    if task.is_none() {
        write_plan(p)?;
    }
    let to_run: Vec<usize> = (0..jobs.len())
        .filter(|&i| jobs[i].action.runs() && task.is_none_or(|t| jobs[i].id == t))
        .collect();
    announce(p, &jobs, &to_run);
    let progress = SweepProgress::new(to_run.len(), opts.quiet);
    let worker = Dispatch {
        exec,
        dir: &p.dir,
        tickets: jobs
            .iter()
            .enumerate()
            .map(|(i, j)| ticket(i, j, opts))
            .collect(),
        progress: &progress,
        stop,
    };
    let tasks: Vec<Task> = to_run
        .iter()
        .map(|&i| Task {
            job: i,
            cost: jobs[i].cost.est_s,
        })
        .collect();
    let done = run_all(tasks, &p.slots, &worker, stop);
    progress.close();
    let mut outcomes: Vec<Option<JobOutcome>> = vec![None; jobs.len()];
    for d in done {
        outcomes[d.task.job] = Some(d.output);
    }
    let reports: Vec<JobReport> = jobs
        .iter()
        .zip(outcomes)
        .filter(|(j, _)| task.is_none_or(|t| j.id == t))
        .map(|(j, o)| report(j, o))
        .collect();
    let count = |state: JobState| reports.iter().filter(|r| r.state == state).count();
    let summary = Summary {
        name: p.spec.name.clone(),
        results: p.dir.root.display().to_string(),
        failed: count(JobState::Failed),
        busy: count(JobState::Busy),
        interrupted: stop.is_stopped(),
        trained: reports.iter().filter(|r| r.trained).count(),
        jobs: reports,
    };
    if task.is_none() {
        write_json(&p.dir.summary(), &summary).map_err(io("writing summary.json"))?;
    }
    drop(lock);
    Ok(summary)
}

/// A results folder that does not exist yet is about to be made: say where
/// (a relative `--results` is taken from the working folder, so a sweep run
/// from elsewhere starts a new folder and a new evaluator cache).
fn new_results_note(results: &Path) -> Option<String> {
    if results.exists() {
        return None;
    }
    let cwd = std::env::current_dir().map_or_else(|_| ".".into(), |c| c.display().to_string());
    Some(format!(
        "[sweep] note: creating {} in {cwd}; it has no evaluator cache yet, so image runs train their evaluator network first (give --results the folder of your earlier sweeps to reuse theirs)",
        results.display()
    ))
}

/// Write the spec, plan, job configs and run records; an earlier plan of
/// another spec moves to the attic first.
pub fn write_plan(p: &Planned) -> Result<(), SweepError> {
    let spec_text = p.spec.resolved_toml(&p.run_sets);
    if let Some(to) =
        retire_changed_plan(&p.dir, &spec_text).map_err(io("moving the previous plan aside"))?
    {
        eprintln!(
            "[sweep] the spec differs from the last invocation's: its plan and report moved to {} (finished jobs the new plan shares are reused)",
            to.display()
        );
    }
    write_plan_files(&p.dir, &p.plan)
        .map_err(io(format!("writing under {}", p.dir.root.display())))?;
    write_if_changed(&p.dir.spec(), &spec_text).map_err(io("writing spec.toml"))?;
    write_json(&p.dir.plan(), &plan_file(p)).map_err(io("writing plan.json"))
}

/// The line that says what this invocation will do.
fn announce(p: &Planned, jobs: &[JobView], to_run: &[usize]) {
    let to_train = to_run.iter().filter(|&&i| jobs[i].action.trains()).count();
    let skipped_done = jobs
        .iter()
        .filter(|j| j.action == Action::SkipCompleted || j.action.evaluates_only())
        .count();
    let evaluate_only = to_run.len() - to_train;
    if to_train == 0 && evaluate_only > 0 {
        eprintln!(
            "[sweep] {}: nothing to train ({skipped_done} of {} job(s) already completed); evaluating {evaluate_only} job(s) whose evaluation is missing or used other eval.* settings",
            p.spec.name,
            jobs.len()
        );
    } else if to_run.is_empty() {
        eprintln!(
            "[sweep] {}: nothing to train; {skipped_done} of {} job(s) already completed with the same config{}",
            p.spec.name,
            jobs.len(),
            others_note(jobs)
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
}

fn ticket(key: usize, j: &JobView, opts: &SweepOptions) -> JobTicket {
    JobTicket {
        key,
        id: j.id.clone(),
        action: j.action,
        evaluate: !opts.no_eval,
        evals: j.evals.iter().map(|e| e.task.clone()).collect(),
        total_steps: j.cost.steps,
        threads: j.threads,
        label: match j.runs.len() {
            1 => format!("run {}", j.runs[0]),
            n => format!("{n} runs ({} …)", j.runs[0]),
        },
        runs: j
            .evals
            .iter()
            .enumerate()
            .flat_map(|(eval, e)| {
                e.members.iter().map(move |(id, weights)| TicketRun {
                    id: id.clone(),
                    weights: *weights,
                    eval,
                })
            })
            .collect(),
    }
}

/// Hands each scheduled task to the executor, with its progress bar around it.
struct Dispatch<'a, E> {
    exec: &'a E,
    dir: &'a SweepDir,
    tickets: Vec<JobTicket>,
    progress: &'a SweepProgress,
    stop: &'a StopToken,
}

impl<E> Dispatch<'_, E> {
    /// A restarted job's earlier attempt moves to the attic first, and so
    /// do its runs' TensorBoard folders when it trains from scratch.
    fn prepare(&self, job: &JobTicket) -> Result<(), RetireError> {
        let out = self.dir.job_dir(&job.id);
        if job.action == Action::Restart && out.exists() {
            let to = match retire(self.dir, &job.id) {
                Ok(to) => to,
                Err(error) => return Err(RetireError { path: out, error }),
            };
            self.progress.println(&format!(
                "job {}: moved the earlier attempt to {}",
                job.id,
                to.display()
            ));
        }
        if matches!(job.action, Action::Train | Action::Restart) {
            for r in &job.runs {
                retire_tensorboard(self.dir, &r.id).map_err(|error| RetireError {
                    path: self.dir.run_tensorboard(&r.id),
                    error,
                })?;
            }
        }
        Ok(())
    }
}

impl<E: Executor> SlotWorker for Dispatch<'_, E> {
    type Output = JobOutcome;

    fn run(&self, task: &Task, slot: &Slot) -> JobOutcome {
        let job = &self.tickets[task.job];
        self.progress.start(
            task.job,
            &job.id,
            &job.label,
            &slot.label(),
            job.total_steps,
        );
        let outcome = match self.prepare(job) {
            Ok(()) => self.exec.run(job, slot, self.progress, self.stop),
            Err(e) => JobOutcome::failed_to_start(slot, e.to_string()),
        };
        self.progress.finish(task.job, &job.id, &outcome);
        outcome
    }
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

/// How a job ended in this invocation, or why it did not run.
fn report(j: &JobView, o: Option<JobOutcome>) -> JobReport {
    let base = JobReport {
        job: j.id.clone(),
        runs: j.runs.clone(),
        state: JobState::NotStarted,
        step: j.seen.step,
        steps: j.cost.steps,
        device: String::new(),
        wall_s: 0.0,
        exit_code: None,
        reason: String::new(),
        stderr_tail: vec![],
        trained: false,
    };
    if let Some(o) = o {
        return JobReport {
            state: o.ended,
            step: o.step,
            device: o.device,
            wall_s: o.wall_s,
            exit_code: o.exit_code,
            reason: o.reason,
            stderr_tail: o.stderr_tail,
            trained: true,
            ..base
        };
    }
    match (j.seen.state, j.action) {
        // It was to run, but the sweep stopped first: whatever an earlier
        // invocation left is not this invocation's doing.
        (_, Action::Evaluate) => JobReport {
            state: JobState::Completed,
            reason: "trained earlier; the sweep stopped before evaluating it".into(),
            ..base
        },
        (_, Action::Restart) => JobReport {
            step: 0,
            reason: format!(
                "the sweep stopped before it started{}",
                if j.seen.state == JobState::New {
                    ""
                } else {
                    "; its earlier attempt is still in place"
                }
            ),
            ..base
        },
        (_, Action::Train | Action::Resume) => JobReport {
            reason: "the sweep stopped before it started".into(),
            ..base
        },
        (JobState::Completed, _) => JobReport {
            state: JobState::Completed,
            reason: "already completed; skipped".into(),
            ..base
        },
        (JobState::Failed, Action::SkipFailed) => JobReport {
            state: JobState::Failed,
            reason: format!(
                "{} (from an earlier invocation; --rerun-failed retries it)",
                j.seen.reason
            ),
            ..base
        },
        (JobState::Busy, _) => JobReport {
            state: JobState::Busy,
            reason: format!(
                "another process (pid {}) is training it; left alone — run the sweep again when it ends",
                j.seen.pid
            ),
            ..base
        },
        _ => JobReport {
            step: 0,
            reason: "not run".into(),
            ..base
        },
    }
}

/// What to say when a signal stopped the sweep: how to continue. The same
/// command again continues it, unless it has `--force`, which would start
/// every job over: then the command is given without it.
pub fn resume_advice(name: &str, argv: &[String]) -> String {
    let force = argv.iter().any(|a| a == "--force");
    if !force {
        return format!(
            "sweep {name} stopped by a signal; run the same command again to continue (interrupted jobs resume from their last checkpoint)"
        );
    }
    let command: Vec<String> = argv
        .iter()
        .filter(|a| *a != "--force")
        .map(|a| shell_word(a))
        .collect();
    format!(
        "sweep {name} stopped by a signal; to continue, run it without --force (which would start every job over again): `{}` (interrupted jobs resume from their last checkpoint; jobs --force had not reached yet keep their earlier results)",
        command.join(" ")
    )
}

/// `word` as a POSIX shell reads it back: quoted when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,@+%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
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
        let note = match r.state {
            JobState::Failed => match r.exit_code {
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
    for r in s
        .jobs
        .iter()
        .filter(|r| r.state == JobState::Failed && r.trained)
    {
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

#[cfg(test)]
mod tests {
    //! The real planner and runner, driven by an executor that only writes
    //! what a trainer would (status.json), so every path through skip,
    //! resume, failure, --rerun-failed, --force, the lock and a stop is
    //! tested without training.
    use super::*;
    use crate::run::RunStatus;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[test]
    fn devices_this_machine_lacks_are_bad_input_and_io_is_not() {
        let e = SweepError::from(devices::DevicesError::NoSuchCuda {
            ordinal: 3,
            count: 2,
        });
        assert!(e.is_bad_input(), "{e}");
        assert_eq!(
            e.to_string(),
            "--devices cuda:3: this machine has 2 CUDA device(s); use cuda:0…cuda:1 or cpu"
        );
        let io = SweepError::Io {
            context: "writing plan.json".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        assert!(!io.is_bad_input(), "{io}");
        let retire = RetireError {
            path: "sweeps/s/jobs/a".into(),
            error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(
            retire
                .to_string()
                .starts_with("moving sweeps/s/jobs/a to the attic: "),
            "{retire}"
        );
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Script {
        Complete,
        /// Fail at step 5, with a checkpoint there.
        Fail,
        /// Set the stop token, then end as a trainer stopped by a signal.
        Interrupt,
    }

    struct Mock {
        dir: SweepDir,
        script: HashMap<String, Script>,
        calls: Mutex<Vec<(String, Action)>>,
    }

    impl Executor for Mock {
        fn run(
            &self,
            job: &JobTicket,
            slot: &Slot,
            _progress: &SweepProgress,
            stop: &StopToken,
        ) -> JobOutcome {
            self.calls
                .lock()
                .unwrap()
                .push((job.id.clone(), job.action));
            let text = std::fs::read_to_string(self.dir.job_config(&job.id)).unwrap();
            let cfg: RunConfig = toml::from_str(&text).unwrap();
            let script = self
                .script
                .get(&job.id)
                .copied()
                .unwrap_or(Script::Complete);
            let (state, step) = match script {
                Script::Complete => (JobState::Completed, job.total_steps),
                Script::Fail => (JobState::Failed, 5),
                Script::Interrupt => {
                    stop.stop();
                    (JobState::Interrupted, 5)
                }
            };
            let out = self.dir.job_dir(&job.id);
            std::fs::create_dir_all(&out).unwrap();
            RunStatus {
                state,
                reason: if state == JobState::Failed {
                    "mock failure".into()
                } else {
                    String::new()
                },
                step,
                total_steps: job.total_steps,
                wall_time_s: 1.0,
                device: slot.label(),
                pid: 0,
                config_hash: identity::training_hash(&cfg),
                last_checkpoint: Some(crate::run::checkpoint::dir_name(step)),
            }
            .write(&out)
            .unwrap();
            JobOutcome {
                ended: state,
                exit_code: Some(if state == JobState::Completed { 0 } else { 1 }),
                reason: if state == JobState::Failed {
                    "mock failure".into()
                } else {
                    String::new()
                },
                stderr_tail: vec![],
                step,
                wall_s: 1.0,
                device: slot.label(),
            }
        }
    }

    struct Sweep {
        _tmp: tempfile::TempDir,
        opts: SweepOptions,
    }

    /// A three-job toy sweep (one per seed) on one CPU slot.
    fn sweep() -> Sweep {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().join("mock.toml");
        std::fs::write(
            &spec,
            "name = \"mock\"\n[base]\ntrain.steps = 10\nema.decays = []\n[sweep]\nseeds = [0, 1, 2]\n",
        )
        .unwrap();
        let opts = SweepOptions {
            spec,
            sets: vec![],
            results: tmp.path().join("results"),
            devices: DeviceRequest::Cpu,
            jobs_per_device: 1,
            cpu_jobs: 1,
            policy: Policy::default(),
            quiet: true,
            no_eval: true,
            exe: PathBuf::from("/nonexistent/ddpm-lab"),
            hardware: None,
            only_job: None,
        };
        Sweep { _tmp: tmp, opts }
    }

    /// Plan and execute once; the mock's calls and the summary.
    fn invoke(
        s: &Sweep,
        policy: Policy,
        script: &[(usize, Script)],
    ) -> (Vec<(String, Action)>, Summary, Planned) {
        let opts = SweepOptions {
            policy,
            ..s.opts.clone()
        };
        let p = prepare(&opts).unwrap();
        let mock = Mock {
            dir: p.dir.clone(),
            script: script
                .iter()
                .map(|&(i, sc)| (p.jobs[i].id.clone(), sc))
                .collect(),
            calls: Mutex::new(vec![]),
        };
        let summary = execute(&p, &opts, &mock, &StopToken::new()).unwrap();
        let calls = mock.calls.into_inner().unwrap();
        (calls, summary, p)
    }

    fn states(s: &Summary) -> Vec<JobState> {
        s.jobs.iter().map(|j| j.state).collect()
    }

    #[test]
    fn completed_jobs_are_skipped_and_force_restarts_them_into_the_attic() {
        let s = sweep();
        let (calls, summary, p) = invoke(&s, Policy::default(), &[]);
        assert_eq!(p.jobs.len(), 3);
        assert!(calls.iter().all(|(_, a)| *a == Action::Train), "{calls:?}");
        assert_eq!((summary.trained, summary.failed), (3, 0));
        assert_eq!(states(&summary), vec![JobState::Completed; 3]);
        let written: Summary = crate::run::atomic::read_json(&p.dir.summary())
            .unwrap()
            .unwrap();
        assert_eq!(written, summary);
        let plan: PlanFile = crate::run::atomic::read_json(&p.dir.plan())
            .unwrap()
            .unwrap();
        assert_eq!(plan.runs.len(), 3);

        let (calls, summary, _) = invoke(&s, Policy::default(), &[]);
        assert!(calls.is_empty(), "{calls:?}");
        assert_eq!(summary.trained, 0);
        assert!(summary
            .jobs
            .iter()
            .all(|j| j.state == JobState::Completed && j.reason == "already completed; skipped"));

        let force = Policy {
            force: true,
            ..Policy::default()
        };
        let (calls, summary, p) = invoke(&s, force, &[]);
        assert_eq!(calls.len(), 3);
        assert!(
            calls.iter().all(|(_, a)| *a == Action::Restart),
            "{calls:?}"
        );
        assert_eq!(summary.trained, 3);
        assert_eq!(std::fs::read_dir(p.dir.attic()).unwrap().count(), 3);
    }

    #[test]
    fn a_failed_job_is_kept_until_rerun_failed_resumes_it() {
        let s = sweep();
        let (_, summary, p) = invoke(&s, Policy::default(), &[(1, Script::Fail)]);
        let failed = &p.jobs[1].id;
        assert_eq!(summary.failed, 1);
        assert_eq!(summary.jobs[1].state, JobState::Failed);
        assert_eq!(summary.jobs[1].reason, "mock failure");

        let (calls, summary, _) = invoke(&s, Policy::default(), &[]);
        assert!(calls.is_empty(), "{calls:?}");
        assert_eq!(
            summary.failed, 1,
            "still failed, from the earlier invocation"
        );
        assert!(summary.jobs[1].reason.contains("--rerun-failed retries it"));

        let rerun = Policy {
            rerun_failed: true,
            ..Policy::default()
        };
        let (calls, summary, _) = invoke(&s, rerun, &[]);
        assert_eq!(calls, vec![(failed.clone(), Action::Resume)]);
        assert_eq!(summary.failed, 0);
        assert_eq!(states(&summary), vec![JobState::Completed; 3]);
    }

    #[test]
    fn a_new_results_folder_is_announced_with_the_working_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(new_results_note(dir.path()), None, "exists");
        let fresh = dir.path().join("results");
        let note = new_results_note(&fresh).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert!(
            note.contains(&format!(
                "creating {} in {}",
                fresh.display(),
                cwd.display()
            )) && note.contains("train their evaluator network first"),
            "{note}"
        );
    }

    #[test]
    fn a_stop_starts_nothing_new_and_the_next_invocation_resumes() {
        let s = sweep();
        // One slot, equal costs: jobs run in plan order; the first stops the sweep.
        let (calls, summary, p) = invoke(&s, Policy::default(), &[(0, Script::Interrupt)]);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(summary.interrupted);
        assert_eq!(
            states(&summary),
            vec![
                JobState::Interrupted,
                JobState::NotStarted,
                JobState::NotStarted
            ]
        );
        assert_eq!(
            summary.jobs[1].reason,
            "the sweep stopped before it started"
        );

        let (calls, summary, _) = invoke(&s, Policy::default(), &[]);
        let mut expect = vec![
            (p.jobs[0].id.clone(), Action::Resume),
            (p.jobs[1].id.clone(), Action::Train),
            (p.jobs[2].id.clone(), Action::Train),
        ];
        let mut calls = calls;
        calls.sort_by(|a, b| a.0.cmp(&b.0));
        expect.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(calls, expect);
        assert!(!summary.interrupted);
        assert_eq!(states(&summary), vec![JobState::Completed; 3]);
    }

    #[test]
    fn the_dry_run_notes_threads_that_oversubscribe_the_cores() {
        let s = sweep();
        std::fs::write(
            &s.opts.spec,
            "name = \"mock\"\n[base]\ntrain.steps = 10\ntrain.threads = 8\nema.decays = []\n[sweep]\nseeds = [0, 1, 2]\n",
        )
        .unwrap();
        let opts = SweepOptions {
            cpu_jobs: 2,
            ..s.opts.clone()
        };
        let mut p = prepare(&opts).unwrap();
        assert!(p.jobs.iter().all(|j| j.threads == 8), "the user's value");
        let ticket = ticket(0, &p.jobs[0], &opts);
        assert_eq!(ticket.threads, 8);
        assert_eq!(p.slots[0].threads_for(ticket.threads), 8, "not the share");
        p.cores = 4;
        let text = plan_text(&p);
        assert!(
            text.contains("note: train.threads = 8 × 2 CPU jobs at a time = 16 threads on 4 cores: the jobs will oversubscribe; lower train.threads or --cpu-jobs"),
            "{text}"
        );
        p.cores = 16;
        assert!(!plan_text(&p).contains("oversubscribe"));
    }

    /// A stop during `--force`: the jobs it never reached are "not
    /// started" (not "already completed"), the advice drops --force, and
    /// the command it gives resumes the interrupted job.
    #[test]
    fn a_stopped_force_run_is_reported_honestly_and_resumes_without_force() {
        let s = sweep();
        invoke(&s, Policy::default(), &[]);
        let force = Policy {
            force: true,
            ..Policy::default()
        };
        let (calls, summary, p) = invoke(&s, force, &[(0, Script::Interrupt)]);
        assert_eq!(calls, vec![(p.jobs[0].id.clone(), Action::Restart)]);
        assert_eq!(
            states(&summary),
            vec![
                JobState::Interrupted,
                JobState::NotStarted,
                JobState::NotStarted
            ]
        );
        for j in &summary.jobs[1..] {
            assert_eq!(
                j.reason,
                "the sweep stopped before it started; its earlier attempt is still in place"
            );
            assert_eq!(j.step, 0);
        }
        let text = summary_text(&summary);
        assert!(!text.contains("already completed"), "{text}");
        assert!(text.contains("not-started"), "{text}");
        let argv: Vec<String> = [
            "ddpm-lab",
            "sweep",
            "my spec.toml",
            "--force",
            "--set",
            "sweep.seeds=[0,1,2]",
        ]
        .map(String::from)
        .to_vec();
        let advice = resume_advice(&summary.name, &argv);
        assert!(
            advice.contains("run it without --force (which would start every job over again): `ddpm-lab sweep 'my spec.toml' --set 'sweep.seeds=[0,1,2]'`"),
            "{advice}"
        );
        let plain = resume_advice(&summary.name, &argv[..3]);
        assert!(
            plain.contains("run the same command again to continue"),
            "{plain}"
        );

        // The advised command (no --force) resumes the stopped job and keeps the others.
        let (calls, summary, _) = invoke(&s, Policy::default(), &[]);
        assert_eq!(calls, vec![(p.jobs[0].id.clone(), Action::Resume)]);
        assert_eq!(states(&summary), vec![JobState::Completed; 3]);
    }

    #[test]
    fn a_sweep_folder_locked_by_a_live_process_is_refused() {
        let s = sweep();
        let p = prepare(&s.opts).unwrap();
        std::fs::create_dir_all(&p.dir.root).unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let info = lock::LockInfo {
            pid: other.id(),
            since: 0,
            command: "ddpm-lab sweep mock.toml".into(),
        };
        std::fs::write(
            p.dir.root.join(lock::LOCK_FILE),
            serde_json::to_string(&info).unwrap(),
        )
        .unwrap();
        let mock = Mock {
            dir: p.dir.clone(),
            script: HashMap::new(),
            calls: Mutex::new(vec![]),
        };
        let r = execute(&p, &s.opts, &mock, &StopToken::new());
        let _ = other.kill();
        let _ = other.wait();
        let e = r.unwrap_err();
        assert!(matches!(e, SweepError::Lock(_)), "{e}");
        assert!(e.to_string().contains("is locked by another sweep"), "{e}");
        assert!(mock.calls.lock().unwrap().is_empty());
        assert!(
            !p.dir.plan().exists(),
            "nothing written under someone else's lock"
        );
    }

    #[test]
    fn a_busy_job_is_left_alone_even_by_force() {
        let s = sweep();
        let (_, _, p) = invoke(&s, Policy::default(), &[]);
        let mut trainer = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let job = p.dir.job_dir(&p.jobs[2].id);
        let mut st = RunStatus::read(&job).unwrap();
        st.state = JobState::Running;
        st.pid = trainer.id();
        st.write(&job).unwrap();
        let force = Policy {
            force: true,
            ..Policy::default()
        };
        let (calls, summary, _) = invoke(&s, force, &[]);
        let _ = trainer.kill();
        let _ = trainer.wait();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls.iter().all(|(id, _)| *id != p.jobs[2].id));
        assert_eq!(summary.busy, 1);
        assert_eq!(summary.jobs[2].state, JobState::Busy);
        assert_eq!(
            RunStatus::read(&job).unwrap().pid,
            trainer.id(),
            "untouched"
        );
    }
}
