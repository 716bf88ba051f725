//! `ddpm-lab report results/<sweep>`: (re)build a sweep's tables, charts and
//! report from its run folders — partial sweeps included.

use crate::exit::Classified;
use crate::report::{options_from_spec, report};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ReportCmd {
    /// The sweep folder (results/<sweep>).
    pub sweep_dir: PathBuf,
    /// Moving-average window of the training curves, in log points (default:
    /// the spec's [report] smoothing, else 5).
    #[arg(long, value_parser = smoothing_window)]
    pub smoothing: Option<usize>,
}

/// `--smoothing`: a window of at least one log point, as a spec's
/// `[report] smoothing` must be.
fn smoothing_window(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(w) if w >= 1 => Ok(w),
        _ => Err("the smoothing window is a whole number of log points ≥ 1 (5 is typical; 1 is no smoothing)".into()),
    }
}

pub fn run(cmd: ReportCmd) -> anyhow::Result<()> {
    let spec = crate::run::SweepDir::at(&cmd.sweep_dir).spec();
    let mut opts = options_from_spec(&spec).map_err(Classified::into_cli)?;
    if let Some(w) = cmd.smoothing {
        opts.smoothing = w;
    }
    let out = report(&cmd.sweep_dir, &opts).map_err(Classified::into_cli)?;
    println!(
        "{}: {} of {} runs completed; {} tables, {} charts",
        out.report_md.display(),
        out.completed,
        out.runs,
        out.tables.len(),
        out.charts.len()
    );
    for (run, why) in &out.not_completed {
        println!("  not in the numbers: {run} ({why})");
    }
    for why in &out.unreadable {
        eprintln!("warning: {}", why.warning("evaluate again"));
    }
    if !out.not_evaluated.is_empty() {
        eprintln!(
            "note: completed but without evaluation numbers: {} (report.md says how to evaluate them)",
            out.not_evaluated.join(", ")
        );
    }
    if !out.stale.is_empty() {
        eprintln!(
            "warning: evaluated with other eval.* settings, so left out of the numbers: {}; run the sweep again to re-evaluate them (training is kept)",
            out.stale.join(", ")
        );
    }
    println!("{}", out.report_html.display());
    Ok(())
}
