//! Exponential moving averages of the weights (chapter §4.1), several decays in
//! one run, each one flat buffer updated with a single `lerp_`.
//!
//! With c the number of optimizer steps taken so far (1 after the first) and
//! `update_after_step` = u:
//! * `constant`: for c ≤ u the shadow copies θ; then θ_ema ← μ θ_ema + (1 − μ) θ.
//!   Starting from θ (the chapter's algorithm 2.1, line 1).
//! * `warmup` (diffusers' `EMAModel(use_ema_warmup=True)`, ema-pytorch): with
//!   e = c − u − 1, the decay is 0 (a copy) while e ≤ 0, then
//!   μ_c = min(μ, 1 − (1 + e/inv_gamma)^(−power)).
//! * `bias-corrected` (the chapter's bias correction): the shadow starts at 0 and
//!   is updated with μ from step u + 1 on; with n = c − u updates it is read as
//!   θ̂ = θ_ema / (1 − μ^n). Before any update it reads as θ.
//! * `power` (Karras et al. 2024, [`super::power_ema`]): one shadow per
//!   `ema.std_rel` instead of per decay, updated with β_c = (1 − 1/c)^(γ+1);
//!   `update_after_step` does not apply.

use super::power_ema;
use crate::config::run::{EmaConfig, EmaMode};
use crate::run::phema::{std_rel_to_exp, PhemaError};
use crate::run::Weights;
use tch::Tensor;

pub struct Ema {
    pub decays: Vec<f64>,
    /// Under `power`: the tracked σ_rel and their exponents γ (one shadow
    /// each, in place of `decays`).
    pub std_rel: Vec<f64>,
    pub gammas: Vec<f64>,
    pub mode: EmaMode,
    pub inv_gamma: f64,
    pub power: f64,
    pub update_after_step: u64,
    /// One flat buffer per decay.
    pub shadows: Vec<Tensor>,
    /// Each shadow's interpolation weight 1 − μ_c for the next [`Ema::apply`]
    /// (0-dim, on the device; 0 when the shadow is not updated this step).
    pub lerp_weights: Vec<Tensor>,
    /// Optimizer steps seen (c).
    pub steps: u64,
}

impl Ema {
    /// The EMAs of `cfg` over the flat parameters `flat`; an error for a
    /// σ_rel outside (0, 0.28] (a config that skipped validation).
    pub fn new(cfg: &EmaConfig, flat: &Tensor) -> Result<Self, PhemaError> {
        let power = cfg.mode == EmaMode::Power;
        let (decays, std_rel) = match power {
            true => (vec![], cfg.std_rel.clone()),
            false => (cfg.decays.clone(), vec![]),
        };
        let gammas = std_rel
            .iter()
            .map(|&s| std_rel_to_exp(s))
            .collect::<Result<Vec<f64>, _>>()?;
        let n = decays.len() + std_rel.len();
        let shadows = (0..n)
            .map(|_| match cfg.mode {
                EmaMode::BiasCorrected => flat.zeros_like(),
                _ => flat.detach().copy(),
            })
            .collect();
        let lerp_weights = (0..n)
            .map(|_| Tensor::zeros([], (flat.kind(), flat.device())))
            .collect();
        Ok(Ema {
            decays,
            std_rel,
            gammas,
            mode: cfg.mode,
            inv_gamma: cfg.inv_gamma,
            power: cfg.power,
            update_after_step: cfg.update_after_step,
            shadows,
            lerp_weights,
            steps: 0,
        })
    }

    /// The weight set of each shadow, in order (`ema-<decay>` or
    /// `phema-<σ_rel>`).
    pub fn names(&self) -> Vec<Weights> {
        self.decays
            .iter()
            .map(|&d| Weights::ema(d))
            .chain(self.std_rel.iter().map(|&s| Weights::phema(s)))
            .collect()
    }

    /// The decay applied at optimizer step c (1-based) for nominal decay μ
    /// ([`EmaConfig::decay_at`]).
    pub fn decay_at(&self, decay: f64, c: u64) -> f64 {
        EmaConfig {
            decays: vec![],
            mode: self.mode,
            inv_gamma: self.inv_gamma,
            power: self.power,
            update_after_step: self.update_after_step,
            ..EmaConfig::default()
        }
        .decay_at(decay, c)
    }

    /// Call once after every optimizer step: [`Ema::advance`], then [`Ema::apply`].
    pub fn update(&mut self, flat: &Tensor) {
        self.advance();
        self.apply(flat);
    }

    /// Count one more optimizer step and set the weights [`Ema::apply`] uses
    /// (scalar fills on the device: no synchronisation).
    pub fn advance(&mut self) {
        self.steps += 1;
        let c = self.steps;
        if self.mode == EmaMode::Power {
            for (i, &g) in self.gammas.iter().enumerate() {
                let w = 1.0 - power_ema::beta(g, c);
                let _ = tch::no_grad(|| self.lerp_weights[i].fill_(w));
            }
            return;
        }
        for (i, &decay) in self.decays.iter().enumerate() {
            let w = if self.mode == EmaMode::BiasCorrected && c <= self.update_after_step {
                0.0 // no update counted yet; reads as θ
            } else {
                1.0 - self.decay_at(decay, c)
            };
            let _ = tch::no_grad(|| self.lerp_weights[i].fill_(w));
        }
    }

    /// θ_ema ← θ_ema + w (θ − θ_ema) for every shadow, with the weights set by
    /// [`Ema::advance`]. Only device work, so a CUDA graph can record it.
    pub fn apply(&self, flat: &Tensor) {
        tch::no_grad(|| {
            for (shadow, w) in self.shadows.iter().zip(&self.lerp_weights) {
                let _ = shadow.shallow_clone().lerp_tensor_(flat, w);
            }
        });
    }

    /// The usable weights of decay `i` (bias-corrected where that is the mode).
    pub fn weights(&self, i: usize, flat: &Tensor) -> Tensor {
        match self.mode {
            EmaMode::BiasCorrected => {
                let n = self.steps.saturating_sub(self.update_after_step);
                if n == 0 {
                    flat.detach().copy()
                } else {
                    &self.shadows[i] / (1.0 - self.decays[i].powi(n as i32))
                }
            }
            _ => self.shadows[i].shallow_clone(),
        }
    }

    /// The decay of each shadow in force at the last step (what the logs
    /// record), in the order of [`Ema::names`].
    pub fn current_decays(&self) -> Vec<f64> {
        let c = self.steps.max(1);
        self.decays
            .iter()
            .map(|&d| self.decay_at(d, c))
            .chain(self.gammas.iter().map(|&g| power_ema::beta(g, c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn cfg(mode: EmaMode, decays: &[f64], u: u64) -> EmaConfig {
        EmaConfig {
            decays: decays.to_vec(),
            mode,
            inv_gamma: 1.0,
            power: 2.0 / 3.0,
            update_after_step: u,
            ..EmaConfig::default()
        }
    }

    /// A scalar "model" whose parameter takes the values `thetas` after each step.
    fn run(c: &EmaConfig, theta0: f64, thetas: &[f64]) -> Vec<f64> {
        let mut p = Tensor::from_slice(&[theta0 as f32]);
        let mut ema = Ema::new(c, &p).unwrap();
        for &th in thetas {
            let _ = p.fill_(th);
            ema.update(&p);
        }
        (0..c.decays.len())
            .map(|i| ema.weights(i, &p).double_value(&[0]))
            .collect()
    }

    #[test]
    fn constant_ema_matches_a_hand_computation() {
        let thetas = [1.0, 2.0, 4.0];
        let got = run(&cfg(EmaMode::Constant, &[0.9, 0.5], 0), 0.0, &thetas);
        // μ = 0.9 from θ_0 = 0: 0.1, 0.29, 0.661.  μ = 0.5: 0.5, 1.25, 2.625.
        assert!((got[0] - 0.661).abs() < 1e-6, "{got:?}");
        assert!((got[1] - 2.625).abs() < 1e-6, "{got:?}");
        // update_after_step = 2: copies θ for two steps, then averages.
        let got = run(&cfg(EmaMode::Constant, &[0.9], 2), 0.0, &thetas);
        assert!((got[0] - (0.9 * 2.0 + 0.1 * 4.0)).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn warmup_ema_follows_the_diffusers_schedule() {
        let c = cfg(EmaMode::Warmup, &[0.999], 0);
        let p = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let ema = Ema::new(&c, &p).unwrap();
        assert_eq!(ema.decay_at(0.999, 1), 0.0);
        assert!((ema.decay_at(0.999, 2) - (1.0 - 2f64.powf(-2.0 / 3.0))).abs() < 1e-12);
        assert!((ema.decay_at(0.999, 11) - (1.0 - 11f64.powf(-2.0 / 3.0))).abs() < 1e-12);
        assert_eq!(ema.decay_at(0.999, 10_000_000), 0.999);
        // By hand: step 1 copies (1.0); step 2 μ₂ = 1 − 2^(−2/3) ≈ 0.370: 0.370·1 + 0.630·3.
        let got = run(&c, 0.0, &[1.0, 3.0]);
        let mu2 = 1.0 - 2f64.powf(-2.0 / 3.0);
        assert!(
            (got[0] - (mu2 * 1.0 + (1.0 - mu2) * 3.0)).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn bias_corrected_ema_is_unbiased_for_a_constant_parameter() {
        // θ constant at 5: the shadow is 5·(1 − μ^n) and the correction recovers 5 exactly.
        let got = run(
            &cfg(EmaMode::BiasCorrected, &[0.9999, 0.9], 0),
            0.0,
            &[5.0; 7],
        );
        assert!((got[0] - 5.0).abs() < 1e-3, "{got:?}");
        assert!((got[1] - 5.0).abs() < 1e-5, "{got:?}");
        // By hand with μ = 0.5 over θ = 2, 4: shadow 1, then 2.5; /(1 − 0.25) = 3.333….
        let got = run(&cfg(EmaMode::BiasCorrected, &[0.5], 0), 0.0, &[2.0, 4.0]);
        assert!((got[0] - 2.5 / 0.75).abs() < 1e-6, "{got:?}");
        // Before any update it reads as θ.
        let got = run(&cfg(EmaMode::BiasCorrected, &[0.5], 3), 7.0, &[7.0]);
        assert_eq!(got[0], 7.0);
    }
}
