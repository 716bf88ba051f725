//! `ddpm-lab eval RUN_DIR`: evaluate a trained run at every evaluation point,
//! weight set and guidance scale — per-timestep loss, bits/dim, sample
//! quality and sample grids — into the trained folder's `eval/`. RUN_DIR
//! may be a sweep's `runs/<run>/`: its job is evaluated with the run's
//! weight set and `eval.*` settings.

use super::handle::WeightsArg;
use crate::eval::evaluate::{evaluate, EvalOptions};
use crate::eval::trained::WeightsSource;
use crate::exit::Classified;
use crate::run::handle::FolderKind;
use crate::run::Weights;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalCmd {
    /// A run folder: `ddpm-lab train --out`, or a sweep's
    /// results/<sweep>/runs/<run>/ (the ids the plan and report print) or jobs/<job>/.
    pub run_dir: PathBuf,
    /// Weight sets to evaluate, e.g. --weights raw,ema-0.9999, or `all`.
    /// Default: a sweep run's own set; otherwise the warm EMA of longest
    /// memory (≤ 1% of the initial weights left), else raw.
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<WeightsArg>,
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
    /// Where a weight set's TensorBoard events go, as WEIGHTS=DIR
    /// (repeatable; default: RUN_DIR/tb/<weights>/, or a sweep run's own
    /// runs/<run>/tb/). A sweep names its runs' folders.
    #[arg(long, value_name = "WEIGHTS=DIR", value_parser = tb_target, hide = true)]
    pub tensorboard: Vec<(Weights, PathBuf)>,
}

/// `WEIGHTS=DIR`, e.g. `ema-0.999=results/s/runs/r/tb`.
fn tb_target(s: &str) -> Result<(Weights, PathBuf), String> {
    let (w, dir) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: give WEIGHTS=DIR, e.g. raw=results/s/runs/r/tb"))?;
    let w: Weights = w.parse().map_err(|e| format!("{w:?}: {e}"))?;
    Ok((w, PathBuf::from(dir)))
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
    let h = super::handle::open(&cmd.run_dir)?;
    let last = h.trained.eval_points().last().map_or(0, |(s, _)| *s);
    let say = |line: &str| {
        if cmd.progress_jsonl {
            let line = crate::run::records::ProgressLine::Eval {
                message: line.to_string(),
            };
            println!("{}", line.to_line());
        } else if !cmd.quiet || line.starts_with("warning: ") {
            // -q silences progress, not warnings.
            eprintln!("[eval] {line}");
        }
    };
    let weights: Vec<Weights> = if cmd.weights.contains(&WeightsArg::All) {
        vec![] // every set the run has
    } else if cmd.weights.is_empty() {
        let (w, why) = super::handle::default_weights(&h, last);
        say(&why);
        vec![w]
    } else {
        cmd.weights
            .iter()
            .filter_map(|w| match w {
                WeightsArg::One(w) => Some(*w),
                WeightsArg::All => None,
            })
            .collect()
    };
    let shown = match weights.is_empty() {
        true => crate::run::Weights::of_run(&h.config.ema),
        false => weights.clone(),
    };
    for w in super::handle::cold_warnings(&h, &shown, last) {
        eprintln!("warning: {w}");
    }
    let out = cmd.out.clone().unwrap_or_else(|| h.trained.eval());
    let opts = EvalOptions {
        run_dir: h.trained.root.clone(),
        weights,
        named_by: match cmd.weights.is_empty() {
            true => WeightsSource::RunConfig,
            false => WeightsSource::Flag,
        },
        out: out.clone(),
        device,
        evaluators: cmd.evaluators.clone(),
        loss_only: cmd.loss_only,
        settings: matches!(h.kind, FolderKind::SweepRun { .. }).then(|| h.config.eval.clone()),
        tensorboard: match (&h.kind, h.weights) {
            _ if !cmd.tensorboard.is_empty() => cmd.tensorboard.clone(),
            // A sweep run's own weight set goes with its training curves.
            (FolderKind::SweepRun { .. }, Some(w)) => vec![(w, cmd.run_dir.join("tb"))],
            _ => vec![],
        },
    };
    let report = evaluate(&opts, say).map_err(Classified::into_cli)?;
    eprintln!(
        "{}: evaluated {} (step, weights) pair(s), {} already there",
        out.display(),
        report.evaluated.len(),
        report.kept
    );
    Ok(())
}
