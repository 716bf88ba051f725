//! `ddpm-lab sweep SPEC`: plan a sweep spec, then train every job it needs on
//! the local GPUs (or the CPU), skipping finished work; or, with the Slurm
//! launcher, submit them as a job array. `ddpm-lab sweep status DIR` reads
//! a sweep folder's jobs back, with Slurm's queue.

use crate::config::SetArg;
use crate::exit::{bad_input, Classified, Stopped};
use crate::sweep::child::stop_children;
use crate::sweep::devices::DeviceRequest;
use crate::sweep::launcher::{Launcher, LauncherKind};
use crate::sweep::plan::Plan;
use crate::sweep::results::Policy;
use crate::sweep::runner::{self, SweepError, SweepOptions};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepCmd {
    #[command(subcommand)]
    pub command: Option<SweepSub>,
    /// The sweep spec (TOML): name, description, extends, [base] and [sweep]. See README.md.
    #[arg(required = true)]
    pub spec: Option<PathBuf>,
    /// Override a key for every run, e.g. --set train.steps=200; or replace an
    /// axis, e.g. --set 'sweep.seeds=[0,1]' (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = SetArg::parse)]
    pub sets: Vec<SetArg>,
    /// Print the plan (runs, training jobs, devices, estimated cost) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print the plan as JSON, with every run's full config.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
    /// Where sweeps keep their results: <results>/<sweep name>/.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Devices to use: auto (every GPU, else the CPU), cpu, cuda, or a list like cuda:0,cuda:2.
    #[arg(long, default_value = "auto", value_parser = DeviceRequest::parse)]
    pub devices: DeviceRequest,
    /// Jobs run at once on each GPU.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs_per_device: u64,
    /// Jobs run at once on the CPU (when there is no GPU); they share the cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub cpu_jobs: u64,
    /// Train again the jobs that failed in an earlier invocation (from their last checkpoint if they have one).
    #[arg(long)]
    pub rerun_failed: bool,
    /// Train every job again from scratch; earlier attempts move to <results>/<sweep>/attic/.
    #[arg(long)]
    pub force: bool,
    /// Do not evaluate jobs after training (per-timestep loss, …); a later
    /// invocation without it evaluates what is missing.
    #[arg(long)]
    pub no_eval: bool,
    /// Do not write the report (tables, charts, report.md/html) at the end;
    /// `ddpm-lab report results/<sweep>` writes it any time.
    #[arg(long)]
    pub no_report: bool,
    /// No progress bars or lines; warnings, errors and the final result lines still print.
    #[arg(long, short)]
    pub quiet: bool,
    /// Where the jobs run: local (this machine's GPUs, or its CPU) or slurm
    /// (one job array; see README, "On a Slurm cluster"). Default: the
    /// spec's [launcher] kind, else local.
    #[arg(long, value_enum)]
    pub launcher: Option<LauncherKind>,
    /// Override a [launcher] key for this submission, e.g. --slurm partition=gpu
    /// --slurm time=2:00:00 --slurm gpus_per_job=0 (repeatable; TOML values).
    #[arg(long = "slurm", value_name = "KEY=VALUE")]
    pub slurm: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum SweepSub {
    /// Every job of a sweep folder with its state, merged with Slurm's queue.
    /// Exit 0 when all completed, 1 when any failed or stopped, 3 while any is queued.
    Status {
        /// The sweep folder, results/<sweep>.
        dir: PathBuf,
    },
}

fn wrap(e: SweepError) -> anyhow::Error {
    e.into_cli()
}

/// The config advice ([`crate::config::advice`]) of the sweep's training jobs:
/// each message once, prefixed with how many jobs it concerns when not all.
pub fn advice(plan: &Plan) -> Vec<String> {
    let mut seen: Vec<(String, usize)> = vec![];
    for job in &plan.jobs {
        for w in crate::config::advice::advise(&job.config) {
            match seen.iter_mut().find(|(m, _)| *m == w) {
                Some((_, n)) => *n += 1,
                None => seen.push((w, 1)),
            }
        }
    }
    let all = plan.jobs.len();
    seen.into_iter()
        .map(|(m, n)| {
            if n == all {
                m
            } else {
                format!("{n} of {all} training jobs: {m}")
            }
        })
        .collect()
}

/// The spec's `[launcher]` with `--launcher` and each `--slurm KEY=VALUE`
/// folded in; a bad flag is bad input naming it.
fn launcher(spec: &Path, cmd: &SweepCmd) -> anyhow::Result<Launcher> {
    let from_spec = crate::sweep::read(spec)
        .map_err(|e| Classified::into_cli(SweepError::from(e)))?
        .launcher
        .unwrap_or_default();
    let mut t = match toml::Value::try_from(&from_spec)? {
        toml::Value::Table(t) => t,
        _ => toml::Table::new(),
    };
    for flag in &cmd.slurm {
        let (k, v) = flag.split_once('=').ok_or_else(|| {
            bad_input(format!(
                "--slurm {flag}: give KEY=VALUE, e.g. --slurm partition=gpu"
            ))
        })?;
        let v: toml::Value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        if let Some(m) = crate::sweep::launcher::value_problem(k.trim(), &v) {
            return Err(bad_input(format!("--slurm {flag}: {}: {m}", k.trim())));
        }
        t.insert(k.trim().to_string(), v);
    }
    let mut l: Launcher = toml::Value::Table(t).try_into().map_err(bad_input)?;
    if let Some(kind) = cmd.launcher {
        l.kind = kind;
    }
    Ok(l)
}

/// The machine the runs' device settings are checked against: the compute
/// nodes under Slurm (the GPUs each task asks for); for a local dry run, a
/// machine with every device, so the plan shows and this machine's device
/// problems follow as warnings; else this machine (None).
fn checked_against(l: &Launcher, dry_run: bool) -> Option<crate::config::Hardware> {
    match (l.kind, dry_run) {
        (LauncherKind::Slurm, _) => Some(crate::config::Hardware {
            cuda_devices: i64::from(l.gpus_per_job),
            cuda_graphs: crate::config::hardware::cuda_graphs_built_in(),
        }),
        (LauncherKind::Local, true) => Some(crate::config::Hardware {
            cuda_devices: i64::from(u16::MAX),
            cuda_graphs: true,
        }),
        (LauncherKind::Local, false) => None,
    }
}

/// The report of whatever is in the sweep folder `root`, partial sweeps
/// included; a report that cannot be written is a warning, not a failed
/// sweep.
fn write_report(root: &Path) {
    let spec = crate::run::SweepDir::at(root).spec();
    let report =
        crate::report::options_from_spec(&spec).and_then(|opts| crate::report::report(root, &opts));
    match report {
        Ok(r) => {
            for why in &r.unreadable {
                eprintln!("warning: {}", why.warning("run the sweep again"));
            }
            eprintln!(
                "report: {} ({} of {} runs completed)",
                r.report_md.display(),
                r.completed,
                r.runs
            )
        }
        Err(e) => eprintln!("warning: the report was not written: {e}"),
    }
}

pub fn run(cmd: SweepCmd) -> anyhow::Result<()> {
    if let Some(SweepSub::Status { dir }) = &cmd.command {
        return super::sweep_status::status(dir);
    }
    let Some(spec) = cmd.spec.clone() else {
        return Err(bad_input("give a sweep spec: ddpm-lab sweep SPEC.toml"));
    };
    let launcher = launcher(&spec, &cmd)?;
    let slurm = launcher.kind == LauncherKind::Slurm;
    let opts = SweepOptions {
        spec,
        sets: cmd.sets.clone(),
        results: cmd.results.clone(),
        devices: cmd.devices.clone(),
        jobs_per_device: cmd.jobs_per_device as usize,
        cpu_jobs: cmd.cpu_jobs as usize,
        policy: Policy {
            rerun_failed: cmd.rerun_failed,
            force: cmd.force,
        },
        quiet: cmd.quiet,
        no_eval: cmd.no_eval,
        exe: std::env::current_exe()?,
        hardware: checked_against(&launcher, cmd.dry_run),
        only_job: None,
    };
    let planned = runner::prepare(&opts).map_err(wrap)?;
    // `--dry-run --json` prints the plan, whoever runs it.
    if slurm && !(cmd.dry_run && cmd.json) {
        return super::sweep_status::submit(&planned, &launcher, &cmd);
    }
    if cmd.dry_run && !slurm {
        let here = SweepOptions {
            hardware: None,
            ..opts.clone()
        };
        if let Err(e) = runner::prepare(&here) {
            eprintln!("warning: on this machine: {e}");
        }
    }
    for w in advice(&planned.plan) {
        eprintln!("warning: {w}");
    }
    // The plan text carries it as a note; elsewhere it is a warning.
    if let (Some(o), false) = (runner::oversubscribed(&planned), cmd.dry_run && !cmd.json) {
        eprintln!("warning: {o}");
    }
    let missing = runner::missing_data(&planned);
    if cmd.dry_run {
        if let Err(e) = &missing {
            eprintln!("warning: {e}");
        }
        if cmd.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&runner::plan_file(&planned))?
            );
        } else {
            print!("{}", runner::plan_text(&planned));
        }
        return Ok(());
    }
    missing.map_err(|e| wrap(e.into()))?;
    // Ctrl-C and SIGTERM: stop starting jobs, and ask the running ones to
    // checkpoint and stop.
    let _ = ctrlc::set_handler(stop_children);
    let exec = crate::sweep::child::ProcessExecutor {
        exe: opts.exe.clone(),
        dir: planned.dir.clone(),
    };
    let summary =
        runner::execute(&planned, &opts, &exec, &crate::run::StopToken::process()).map_err(wrap)?;
    eprint!("{}", runner::summary_text(&summary));
    if !cmd.no_report {
        write_report(Path::new(&summary.results));
    }
    if summary.interrupted {
        let argv: Vec<String> = std::env::args().collect();
        return Err(Stopped(runner::resume_advice(&summary.name, &argv)).into());
    }
    if summary.busy > 0 && summary.failed == 0 {
        anyhow::bail!(
            "{} of {} job(s) were being trained by other processes and were left alone; run the same command again when they end",
            summary.busy,
            summary.jobs.len()
        );
    }
    if summary.failed > 0 {
        anyhow::bail!(
            "{} of {} job(s) failed (details above and in {}/summary.json); fix the cause and re-run with --rerun-failed",
            summary.failed,
            summary.jobs.len(),
            summary.results
        );
    }
    Ok(())
}
