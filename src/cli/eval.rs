//! `ddpm-lab eval RUN_DIR`: evaluate a trained run at every evaluation point,
//! weight set and guidance scale — per-timestep loss, bits/dim, sample
//! quality and sample grids — into `RUN_DIR/eval/`.

use crate::eval::evaluate::{evaluate, EvalOptions};
use crate::exit::bad_input;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalCmd {
    /// A run directory (from `ddpm-lab train`, or a sweep's results/<sweep>/jobs/<id>/).
    pub run_dir: PathBuf,
    /// Weight sets to evaluate, e.g. --weights raw,ema-0.9999 (default: all).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<String>,
    /// Where the tables go (default: RUN_DIR/eval).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// The cache of evaluator networks and reference statistics (trained or
    /// computed on first use, then reused).
    #[arg(long, default_value = "results/.evaluators")]
    pub evaluators: PathBuf,
    /// Only the per-timestep loss (no sampling, no bits/dim).
    #[arg(long)]
    pub loss_only: bool,
    /// CPU threads for libtorch (0 = its default; at most 1024).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=1024))]
    pub threads: i32,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(cmd: EvalCmd) -> anyhow::Result<()> {
    let device = super::device_arg(&cmd.device)?;
    if cmd.threads > 0 {
        tch::set_num_threads(cmd.threads);
    }
    let out = cmd.out.clone().unwrap_or_else(|| cmd.run_dir.join("eval"));
    let opts = EvalOptions {
        run_dir: cmd.run_dir.clone(),
        weights: cmd.weights.clone(),
        out: out.clone(),
        device,
        evaluators: cmd.evaluators.clone(),
        loss_only: cmd.loss_only,
    };
    let quiet = cmd.quiet;
    let report = evaluate(&opts, |line| {
        if !quiet {
            eprintln!("[eval] {line}");
        }
    })
    .map_err(|e| {
        if e.is_bad_input() {
            bad_input(e)
        } else {
            anyhow::Error::new(e)
        }
    })?;
    eprintln!(
        "{}: evaluated {} (step, weights) pair(s), {} already there",
        out.display(),
        report.evaluated.len(),
        report.kept
    );
    Ok(())
}
