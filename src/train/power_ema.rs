//! The power-function EMA of Karras et al. 2024 (EDM2, section 3): the
//! trainer's side of post-hoc EMA. Each tracked profile of relative length
//! σ_rel (exponent γ, [`crate::run::phema::std_rel_to_exp`]) is one shadow of
//! [`super::ema::Ema`], updated after optimizer step c with
//!
//! ```text
//! θ̂_c = β_c θ̂_(c−1) + (1 − β_c) θ_c,   β_c = (1 − 1/c)^(γ+1)
//! ```
//!
//! so β_1 = 0 (the first step copies θ_1) and θ̂_t weighs θ_τ by
//! (τ^(γ+1) − (τ−1)^(γ+1)) / t^(γ+1). Every `ema.snapshot_every` steps the
//! shadows are saved under `snapshots/phema/step-N/` (the checkpoint format,
//! written atomically), from which [`crate::run::phema_store`] reconstructs
//! any other length after training.

use super::error::TrainError;
use super::state::{checkpoint_state, Run};
use crate::run::checkpoint::{self, CheckpointData};
use crate::run::{RunDir, Weights};
use std::path::Path;

/// β_c = (1 − 1/c)^(γ+1), the decay applied after optimizer step c ≥ 1.
pub fn beta(gamma: f64, c: u64) -> f64 {
    if c == 0 {
        return 0.0;
    }
    (1.0 - 1.0 / c as f64).powf(gamma + 1.0)
}

/// Save the power EMAs after `step` steps into `snapshots/phema/step-N/`,
/// unless a run that passed this step before (and was resumed) left it.
pub(super) fn write_snapshot(
    run: &Run,
    dir: &Path,
    step: u64,
    hash: &str,
    wall: f64,
) -> Result<(), TrainError> {
    let root = RunDir::new(dir).phema_snapshots();
    if checkpoint::is_written(&root, step) {
        return Ok(());
    }
    let files = run
        .ema
        .names()
        .into_iter()
        .enumerate()
        .filter(|(_, w)| matches!(w, Weights::Phema(_)))
        .map(|(i, w)| {
            let shadow = run.ema.weights(i, &run.fp.flat);
            (w.to_string(), run.fp.named_views(&shadow))
        })
        .collect();
    let data = CheckpointData { files };
    checkpoint::write(&root, &data, checkpoint_state(run, step, hash, wall))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::run::{EmaConfig, EmaMode};
    use crate::run::phema::{self, Profile};
    use crate::train::ema::Ema;
    use tch::{Kind, Tensor};

    /// θ_τ of a scalar "training": a known sequence (θ_0 is the start).
    fn theta(tau: u64) -> f64 {
        (0.37 * tau as f64).sin() + 0.01 * tau as f64
    }

    /// The power EMAs of `std_rel` over θ_1..θ_steps, in f64, read after
    /// every step in `at`.
    fn track(std_rel: &[f64], steps: u64, at: &[u64]) -> Vec<(u64, Vec<f64>)> {
        let cfg = EmaConfig {
            mode: EmaMode::Power,
            decays: vec![],
            std_rel: std_rel.to_vec(),
            ..EmaConfig::default()
        };
        let mut p = Tensor::from_slice(&[5.0f64]).to_kind(Kind::Double);
        let mut ema = Ema::new(&cfg, &p).unwrap();
        let mut out = vec![];
        for c in 1..=steps {
            let _ = p.fill_(theta(c));
            ema.update(&p);
            if at.contains(&c) {
                let vals = (0..std_rel.len())
                    .map(|i| ema.weights(i, &p).double_value(&[0]))
                    .collect();
                out.push((c, vals));
            }
        }
        out
    }

    /// Σ_τ θ_τ w_t(τ): the power EMA of exponent γ at step t, in closed form.
    fn analytic(t: u64, std_rel: f64) -> f64 {
        let g = phema::std_rel_to_exp(std_rel).unwrap();
        (1..=t)
            .map(|tau| theta(tau) * phema::step_weight(t, g, tau))
            .sum()
    }

    #[test]
    fn a_tracked_power_ema_matches_its_closed_form() {
        assert_eq!(beta(6.94, 1), 0.0, "the first step copies θ");
        let got = track(&[0.05, 0.10], 400, &[1, 37, 400]);
        for (t, vals) in got {
            for (v, s) in vals.iter().zip([0.05, 0.10]) {
                let want = analytic(t, s);
                assert!(
                    (v - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "step {t} σ {s}: {v} vs {want}"
                );
            }
        }
    }

    #[test]
    fn snapshots_reconstruct_the_tracked_ema_and_the_analytic_average() {
        let steps: Vec<u64> = (1..=10).map(|k| k * 40).collect();
        let snaps = track(&[0.05, 0.10], 400, &steps);
        let inputs: Vec<Profile> = snaps
            .iter()
            .flat_map(|(step, _)| {
                [0.05, 0.10].map(|std_rel| Profile {
                    step: *step,
                    std_rel,
                })
            })
            .collect();
        let values: Vec<f64> = snaps.iter().flat_map(|(_, v)| v.clone()).collect();
        let combine = |x: &[f64]| -> f64 { x.iter().zip(&values).map(|(a, b)| a * b).sum() };
        // At a tracked length: the tracked EMA itself.
        let sol = phema::solve(
            &inputs,
            Profile {
                step: 400,
                std_rel: 0.10,
            },
        )
        .unwrap();
        let tracked = snaps[9].1[1];
        let rel = (combine(&sol.coefficients) - tracked).abs() / tracked.abs();
        assert!(rel < 1e-5, "{rel}");
        // At another: within the bound the reported residual gives,
        // |Σ θ_τ (ŵ_τ − w_τ)| ≤ ‖θ‖₂ ‖w‖₂ · residual.
        let sol = phema::solve(
            &inputs,
            Profile {
                step: 400,
                std_rel: 0.07,
            },
        )
        .unwrap();
        let err = (combine(&sol.coefficients) - analytic(400, 0.07)).abs();
        let theta_norm = (1..=400).map(|t| theta(t).powi(2)).sum::<f64>().sqrt();
        let bound = theta_norm * sol.target_norm * sol.residual;
        assert!(
            sol.residual > 0.0 && err <= bound + 1e-12,
            "{err} > {bound}"
        );
        assert!(err > 0.0 && sol.residual < 0.05, "{err} {}", sol.residual);
    }
}
