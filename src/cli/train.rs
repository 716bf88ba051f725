//! `ddpm-lab train RUN.toml`: train one run into a run directory.

use crate::config::{self, SetArg, Sources};
use crate::exit::{bad_input, Classified, Interrupted};
use crate::train::{self, Outcome, TrainOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct TrainCmd {
    /// The run config (TOML). Every key has a default; see README.md.
    pub config: PathBuf,
    /// Override a config key, e.g. --set train.lr=1e-4 (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = SetArg::parse)]
    pub sets: Vec<SetArg>,
    /// The device: cpu, cuda or cuda:N (overrides train.device).
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads for libtorch (0 = its default; at most 1024); the same as
    /// --set train.threads=N.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..=1024))]
    pub threads: Option<i64>,
    /// The run directory (default: output.dir, else results/runs/<config stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (train.steps may grow).
    #[arg(long)]
    pub resume: bool,
    /// No progress bars or lines; warnings, errors and the final result lines still print.
    #[arg(long, short)]
    pub quiet: bool,
    /// Progress as JSON lines on stdout (for the sweep runner).
    #[arg(long, hide = true)]
    pub progress_jsonl: bool,
    /// Where the TensorBoard event files go (repeatable; default: RUN_DIR/tb;
    /// none when output.tensorboard = false). A sweep names its runs' folders.
    #[arg(long, value_name = "DIR", hide = true)]
    pub tensorboard: Vec<PathBuf>,
}

pub fn run(cmd: TrainCmd) -> anyhow::Result<()> {
    let jsonl = cmd.progress_jsonl;
    super::report_failure(jsonl, train(cmd))
}

fn train(cmd: TrainCmd) -> anyhow::Result<()> {
    let mut sets = cmd.sets.clone();
    if let Some(d) = &cmd.device {
        sets.push(SetArg::parse(&format!("train.device={d:?}")).map_err(bad_input)?);
    }
    if let Some(n) = cmd.threads {
        sets.push(SetArg::parse(&format!("train.threads={n}")).map_err(bad_input)?);
    }
    let cfg = config::load(&Sources {
        file: Some(cmd.config.clone()),
        sets,
        env: true,
    })
    .map_err(bad_input)?;
    // Under a sweep (`--progress-jsonl`) the sweep has printed these already.
    if !cmd.progress_jsonl {
        for w in config::advice::advise(&cfg) {
            eprintln!("warning: {w}");
        }
    }
    let run_dir = match (&cmd.out, cfg.output.dir.as_str()) {
        (Some(out), _) => out.clone(),
        (None, "") => config::load::default_run_dir(Some(&cmd.config)),
        (None, dir) => PathBuf::from(dir),
    };
    // Ctrl-C and SIGTERM ask the trainer to checkpoint and stop.
    let stop = crate::run::StopToken::process();
    let _ = ctrlc::set_handler(|| crate::run::StopToken::process().stop());
    let outcome = train::train(
        &cfg,
        &TrainOptions {
            run_dir: run_dir.clone(),
            resume: cmd.resume,
            quiet: cmd.quiet,
            progress_jsonl: cmd.progress_jsonl,
            stop,
            tensorboard: cmd.tensorboard.clone(),
        },
    )
    .map_err(Classified::into_cli)?;
    match outcome {
        Outcome::Completed {
            step,
            already: true,
        } => {
            eprintln!(
                "{}: already completed at step {step}; nothing to do",
                run_dir.display()
            );
        }
        Outcome::Completed { step, .. } => {
            eprintln!("{}: completed {step} steps", run_dir.display());
        }
        Outcome::Interrupted { step } => return Err(Interrupted(step).into()),
    }
    Ok(())
}
