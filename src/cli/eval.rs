//! `ddpm-lab eval RUN_DIR`: evaluate a trained run at every evaluation point,
//! weight set and guidance scale — per-timestep loss, bits/dim, sample
//! quality and sample grids — into `RUN_DIR/eval/`.

use crate::eval::evaluate::{evaluate, EvalOptions};
use crate::exit::Classified;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalCmd {
    /// A run directory (from `ddpm-lab train`, or a sweep's results/<sweep>/jobs/<id>/).
    pub run_dir: PathBuf,
    /// Weight sets to evaluate, e.g. --weights raw,ema-0.9999 (default: all).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<crate::run::Weights>,
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
    /// No progress bars or lines; warnings, errors and the final result lines still print.
    #[arg(long, short)]
    pub quiet: bool,
    /// Progress and failures as JSON lines on stdout (for the sweep runner).
    #[arg(long, hide = true)]
    pub progress_jsonl: bool,
}

pub fn run(cmd: EvalCmd) -> anyhow::Result<()> {
    let jsonl = cmd.progress_jsonl;
    super::report_failure(jsonl, eval(cmd))
}

fn eval(cmd: EvalCmd) -> anyhow::Result<()> {
    let device = super::device_arg(&cmd.device)?;
    if cmd.threads > 0 {
        tch::set_num_threads(cmd.threads);
    }
    let out = cmd
        .out
        .clone()
        .unwrap_or_else(|| crate::run::RunDir::new(&cmd.run_dir).eval());
    let opts = EvalOptions {
        run_dir: cmd.run_dir.clone(),
        weights: cmd.weights.clone(),
        out: out.clone(),
        device,
        evaluators: cmd.evaluators.clone(),
        loss_only: cmd.loss_only,
    };
    let (quiet, jsonl) = (cmd.quiet, cmd.progress_jsonl);
    let report = evaluate(&opts, |line| {
        if jsonl {
            let line = crate::run::records::ProgressLine::Eval {
                message: line.to_string(),
            };
            println!("{}", line.to_line());
        } else if !quiet || line.starts_with("warning: ") {
            // -q silences progress, not warnings.
            eprintln!("[eval] {line}");
        }
    })
    .map_err(Classified::into_cli)?;
    eprintln!(
        "{}: evaluated {} (step, weights) pair(s), {} already there",
        out.display(),
        report.evaluated.len(),
        report.kept
    );
    Ok(())
}
