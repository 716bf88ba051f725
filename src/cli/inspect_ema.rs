//! `ddpm-lab inspect ema RUN_DIR --std-rel σ | --decay μ [--step N]
//! [--plot FILE.png]`: the averaging profile of a post-hoc EMA of a run
//! trained with `ema.mode = "power"` — the weight each training step's
//! parameters carry in the reconstruction, as CSV `step,weight` (with
//! `--decay`, a third column `classic`: the weight the classic EMA of that
//! decay gives the same step) — and the solve's residual, so a user sees how
//! well the snapshots span the profile asked for.

use crate::exit::{bad_input, Classified};
use crate::report::charts::{self, Body, Chart, Line};
use crate::run::phema::{self, Profile};
use crate::run::phema_store;
use crate::run::Weights;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EmaCmd {
    /// A run folder (or a sweep's job or run folder) trained with ema.mode = "power".
    pub run_dir: PathBuf,
    /// The relative length σ_rel of the power EMA to reconstruct, in (0, 0.28].
    #[arg(long, required_unless_present = "decay", conflicts_with = "decay")]
    pub std_rel: Option<f64>,
    /// A classic EMA decay μ, reconstructed as the σ_rel of equal standard
    /// deviation at the target step: √μ / ((1 − μ) · step).
    #[arg(long)]
    pub decay: Option<f64>,
    /// The training step to reconstruct at (default: the last snapshot's).
    #[arg(long)]
    pub step: Option<u64>,
    /// Also draw the profile into this PNG (an SVG is written beside it).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

pub fn run(cmd: EmaCmd) -> anyhow::Result<()> {
    let h = super::handle::open(&cmd.run_dir)?;
    let root = h.trained.root.clone();
    let last = phema_store::snapshot_steps(&root).last().map(|(s, _)| *s);
    let step = match (cmd.step, last) {
        (Some(s), _) => s,
        (None, Some(s)) => s,
        (None, None) => return Err(phema_store::PhemaStoreError::NotPower { run: root }.into_cli()),
    };
    let std_rel = match (cmd.std_rel, cmd.decay) {
        (Some(s), _) => {
            phema::std_rel_to_exp(s).map_err(|e| bad_input(format!("--std-rel: {e}")))?;
            s
        }
        (None, Some(mu)) => {
            phema::decay_to_std_rel(mu, step).map_err(|e| bad_input(format!("--decay: {e}")))?
        }
        (None, None) => return Err(bad_input("give --std-rel or --decay")),
    };
    if let Some(p) = &cmd.plot {
        if p.extension().and_then(|e| e.to_str()) != Some("png") {
            return Err(bad_input(format!(
                "--plot {}: name a .png file",
                p.display()
            )));
        }
    }
    let r = phema_store::plan(&root, Profile { step, std_rel }).map_err(Classified::into_cli)?;
    let weights = phema::reconstructed_weights(&r.inputs, &r.solution.coefficients, step)?;
    let mut out = std::io::stdout().lock();
    let classic = |tau: u64| cmd.decay.map(|mu| phema::classic_weight(mu, step, tau));
    writeln!(
        out,
        "step,weight{}",
        if cmd.decay.is_some() { ",classic" } else { "" }
    )?;
    for tau in 0..=step {
        let w = if tau == 0 {
            0.0
        } else {
            weights[tau as usize - 1]
        };
        match classic(tau) {
            Some(c) => writeln!(out, "{tau},{w:e},{c:e}")?,
            None => writeln!(out, "{tau},{w:e}")?,
        }
    }
    let snapshots = {
        let mut d = r.dirs.clone();
        d.dedup();
        d.len()
    };
    eprintln!(
        "{} at step {step}: {} tracked profiles from {snapshots} snapshots; relative L2 residual of the per-step weights {:.3e}{}",
        Weights::phema(std_rel),
        r.inputs.len(),
        r.solution.residual,
        cmd.decay
            .map(|mu| format!(" (decay {mu} as σ_rel = {std_rel:.5})"))
            .unwrap_or_default()
    );
    if let Some(p) = &cmd.plot {
        let png = plot(p, std_rel, step, &weights, cmd.decay)?;
        eprintln!("wrote {}", png.display());
    }
    Ok(())
}

/// Draw the profile (and the classic one) into `path`.
fn plot(
    path: &std::path::Path,
    std_rel: f64,
    step: u64,
    weights: &[f64],
    decay: Option<f64>,
) -> anyhow::Result<PathBuf> {
    let mut lines = vec![Line {
        label: format!("{} (reconstructed)", Weights::phema(std_rel)),
        points: (1..=step)
            .map(|tau| (tau as f64, weights[tau as usize - 1], None))
            .collect(),
        dashed: false,
        markers_only: false,
    }];
    if let Some(mu) = decay {
        lines.push(Line {
            label: format!("ema-{mu} (classic)"),
            points: (1..=step)
                .map(|tau| (tau as f64, phema::classic_weight(mu, step, tau), None))
                .collect(),
            dashed: true,
            markers_only: false,
        });
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ema_profile".into());
    let chart = Chart {
        name,
        title: format!("EMA profile at step {step}"),
        x_label: "training step τ".into(),
        y_label: "weight of θ_τ".into(),
        log_y: false,
        body: Body::Lines(lines),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(charts::render(&chart, &dir)?)
}
