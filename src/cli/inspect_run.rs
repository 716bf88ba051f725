//! `ddpm-lab inspect run PATH`: what a folder is (a trained run, a sweep's
//! run, a sweep), its state, and its weight sets with how far each EMA has
//! warmed up: its effective decay and the share μ^N of the initial weights
//! it still holds.

use crate::exit::Classified;
use crate::run::handle::{self, FolderKind, RunHandle};
use crate::run::records::PlanFile;
use crate::run::weights::{Warmth, SAFE_INITIAL_FRACTION};
use crate::run::{EvalDir, Freshness, JobState, RunStatus, SweepDir, Weights};
use clap::Args;
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct RunCmd {
    /// A run folder (ddpm-lab train --out), a sweep's results/<sweep>/runs/<run>/
    /// or jobs/<job>/, or a sweep folder (lists its runs).
    pub path: PathBuf,
}

pub fn run(c: RunCmd) -> anyhow::Result<()> {
    let kind = handle::kind(&c.path).map_err(Classified::into_cli)?;
    let text = match kind {
        FolderKind::Sweep => sweep_text(&c.path)?,
        _ => run_text(
            &c.path,
            &handle::open(&c.path).map_err(Classified::into_cli)?,
        ),
    };
    print!("{text}");
    Ok(())
}

/// The state of a trained folder, as one phrase.
fn state_of(trained: &Path) -> (String, u64) {
    match RunStatus::read(trained) {
        Some(s) => (
            format!("{} at step {} of {}", s.state, s.step, s.total_steps),
            s.step,
        ),
        None => ("not started".into(), 0),
    }
}

fn run_text(path: &Path, h: &RunHandle) -> String {
    let mut s = String::new();
    let (state, step) = state_of(&h.trained.root);
    let _ = match &h.kind {
        FolderKind::SweepRun { run, job } => writeln!(
            s,
            "{}: run {run} of a sweep; its weights are in job {job} ({}), {state}",
            path.display(),
            h.trained.root.display()
        ),
        _ => writeln!(s, "{}: a trained run, {state}", path.display()),
    };
    let own = h.weights;
    let _ = writeln!(s, "weight sets at step {step}:");
    for w in Weights::of_run(&h.config.ema) {
        let _ = writeln!(s, "  {}", weight_line(h, w, step, own == Some(w)));
    }
    let (default, why) = super::handle::default_weights(h, step);
    let _ = writeln!(s, "sample and eval use: {default} ({})", strip(&why));
    let eval = EvalDir::new(h.trained.eval());
    let asked = [own.unwrap_or(default)];
    let _ = writeln!(
        s,
        "evaluation of {} with its eval.* settings: {}",
        asked[0],
        match eval.freshness(&h.trained, &asked, &h.config.eval) {
            Freshness::Done => "done".to_string(),
            Freshness::Missing => "not done yet".to_string(),
            Freshness::Stale { changes } =>
                format!("stale, done with other settings ({})", changes.join(", ")),
        }
    );
    s
}

/// The reason part of [`super::handle::default_weights`]'s line.
fn strip(why: &str) -> &str {
    why.split_once(" (")
        .map_or(why, |(_, r)| r.strip_suffix(')').unwrap_or(r))
}

fn weight_line(h: &RunHandle, w: Weights, step: u64, own: bool) -> String {
    let mark = if own { "  ← this run's" } else { "" };
    match w {
        Weights::Raw => format!("{:<12} the optimizer's weights{mark}", w.to_string()),
        Weights::Phema(_) => format!(
            "{:<12} a tracked power-function EMA; any other phema-<σ_rel> in (0, 0.28] is reconstructed from snapshots/phema/ (inspect ema){mark}",
            w.to_string()
        ),
        Weights::Ema(_) => {
            let warmth = Warmth::of(&h.config.ema, w, step);
            format!(
                "{:<12} effective decay {:.6}, initial weights left μ^N = {:.3e} ({}){mark}",
                w.to_string(),
                warmth.effective_decay,
                warmth.initial_fraction,
                if warmth.is_cold() {
                    format!("cold: above {:.0}%", SAFE_INITIAL_FRACTION * 100.0)
                } else {
                    "warm".to_string()
                }
            )
        }
    }
}

fn sweep_text(path: &Path) -> anyhow::Result<String> {
    let sweep = SweepDir::at(path);
    let plan: PlanFile = std::fs::read_to_string(sweep.plan())
        .map_err(anyhow::Error::from)
        .and_then(|t| serde_json::from_str(&t).map_err(anyhow::Error::from))
        .map_err(|e| {
            crate::exit::bad_input(format!(
                "{}: cannot read it ({e}); run `ddpm-lab sweep` on its spec again",
                sweep.plan().display()
            ))
        })?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: sweep {} (spec {}), {} runs in {} jobs; give a run to sample or evaluate it, e.g. ddpm-lab sample {}/runs/<run> --out samples.png",
        path.display(),
        plan.name,
        plan.spec,
        plan.runs.len(),
        plan.jobs.len(),
        path.display()
    );
    let w = plan
        .runs
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let _ = writeln!(s, "  {:<w$}  {:<8}  {:<22}  weights", "run", "job", "state");
    for r in &plan.runs {
        let status = RunStatus::read(&sweep.job_dir(&r.job));
        let state = status.map_or(JobState::New.name().to_string(), |st| {
            format!("{} {}/{}", st.state, st.step, st.total_steps)
        });
        let _ = writeln!(
            s,
            "  {:<w$}  {:<8}  {:<22}  {}",
            r.id, r.job, state, r.weights
        );
    }
    Ok(s)
}
