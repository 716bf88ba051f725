//! Training objectives: what the model predicts, and how the per-timestep loss
//! is weighted (chapter §1.2 and §1.4).
//!
//! # One weighting means one objective, whatever the parameterization
//!
//! The chapter's table defines `snr`, `min-snr`, `vlb` and `p2` as weights w_ε(t)
//! on the ε-MSE. A model that predicts x_0 or v is trained on the MSE of *its*
//! target, and for the same prediction error
//!
//! ```text
//! ‖x_0 − x̂_0‖² = ‖ε − ε̂‖² / snr          ‖v − v̂‖² = ‖ε − ε̂‖² · (1 + snr) / snr
//! ```
//!
//! so the weight on the target's MSE must be converted:
//!
//! ```text
//! w_x0(t) = w_ε(t) · snr          w_v(t) = w_ε(t) · snr / (1 + snr) = w_ε(t) · ᾱ_t
//! ```
//!
//! Min-SNR-γ, for example, is min(snr, γ)/snr for ε, min(snr, γ) for x_0 and
//! min(snr, γ)/(snr + 1) for v. The chapter's code (like several codebases)
//! applies the ε form to every parameterization, which silently changes the
//! objective when the prediction changes; we do not. `simple` is the exception by
//! definition: plain unweighted MSE of whatever the model predicts, as every
//! codebase does.
//!
//! # Limits
//!
//! Every weight is finite for every schedule, zero terminal SNR included:
//! * min-SNR's ε weight at snr → 0 is its limit, 1;
//! * VLB's σ_t² is the reverse variance the bound is scored with
//!   (`eval.bpd_variance`: σ̃²_t or β_t, [`Variance::bound_log_variance`]), so
//!   w_ε(t)·‖ε − ε̂‖² is exactly the mean term of the bound's KL at t; at t = 0
//!   both use σ̃²_1 (improved-diffusion), so β_0²/(2σ²α_0(1−ᾱ_0)) is finite;
//!   its x_0 and v forms are written with ᾱ_{t−1} so they never divide by α_t;
//! * VLB's ε weight where α_t = 0 (only the last step of a zero-terminal-SNR
//!   schedule) diverges: there x_t = ε, so an ε-model cannot express the x_0
//!   estimate this KL term measures. That term is given weight 0; use `v` or `x0`
//!   prediction with zero terminal SNR.

use super::sampling::Variance;
use super::schedule::NoiseSchedule;
use serde::{Deserialize, Serialize};

/// What the network outputs (chapter §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Prediction {
    /// The noise ε (Ho et al. 2020).
    Epsilon,
    /// The clean sample x_0.
    X0,
    /// The velocity v = √ᾱ ε − √(1−ᾱ) x_0 (Salimans & Ho 2022).
    V,
}

impl Prediction {
    pub fn name(self) -> &'static str {
        match self {
            Prediction::Epsilon => "epsilon",
            Prediction::X0 => "x0",
            Prediction::V => "v",
        }
    }
}

/// The loss weighting's family (chapter §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WeightingKind {
    /// Unweighted MSE of the prediction target.
    Simple,
    /// w_ε = snr.
    Snr,
    /// w_ε = min(snr, γ)/snr (Hang et al. 2023).
    MinSnr,
    /// w_ε = β_t² / (2σ_t² α_t (1 − ᾱ_t)): the variational bound's own weights.
    Vlb,
    /// w_ε = 1/(k + snr)^γ (Choi et al. 2022).
    P2,
}

impl WeightingKind {
    pub fn name(self) -> &'static str {
        match self {
            WeightingKind::Simple => "simple",
            WeightingKind::Snr => "snr",
            WeightingKind::MinSnr => "min-snr",
            WeightingKind::Vlb => "vlb",
            WeightingKind::P2 => "p2",
        }
    }
}

/// Default γ of min-SNR-γ (Hang et al. 2023).
pub const DEFAULT_MIN_SNR_GAMMA: f64 = 5.0;
/// Default k of P2 (Choi et al. 2022).
pub const DEFAULT_P2_K: f64 = 1.0;
/// Default γ of P2 (Choi et al. 2022).
pub const DEFAULT_P2_GAMMA: f64 = 1.0;

/// A weighting with its parameters (VLB's: the σ_t² of the bound it weights
/// by, `eval.bpd_variance`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossWeighting {
    Simple,
    Snr,
    MinSnr { gamma: f64 },
    Vlb { variance: Variance },
    P2 { k: f64, gamma: f64 },
}

/// A weighting parameter out of range. `name` is the configuration key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightingError {
    /// `name` is one of `min_snr_gamma`, `p2_gamma`, `p2_k`.
    #[error("{name} must be a finite number > 0, got {value}: {hint}")]
    NotPositive {
        name: &'static str,
        value: f64,
        hint: &'static str,
    },
}

fn positive(name: &'static str, value: f64, hint: &'static str) -> Result<f64, WeightingError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(WeightingError::NotPositive { name, value, hint })
    }
}

impl LossWeighting {
    /// Build a weighting from its family and parameters, checking them.
    /// `gamma` is min-SNR's γ or P2's γ (each defaults to the paper's value); `k` is P2's k;
    /// `vlb_variance` is VLB's σ_t², the variance its bound is scored with.
    pub fn new(
        kind: WeightingKind,
        gamma: Option<f64>,
        k: Option<f64>,
        vlb_variance: Variance,
    ) -> Result<Self, WeightingError> {
        Ok(match kind {
            WeightingKind::Simple => LossWeighting::Simple,
            WeightingKind::Snr => LossWeighting::Snr,
            WeightingKind::Vlb => LossWeighting::Vlb {
                variance: vlb_variance,
            },
            WeightingKind::MinSnr => LossWeighting::MinSnr {
                gamma: positive(
                    "min_snr_gamma",
                    gamma.unwrap_or(DEFAULT_MIN_SNR_GAMMA),
                    "min-SNR-γ clips the SNR at γ; 5 is the paper's value",
                )?,
            },
            WeightingKind::P2 => LossWeighting::P2 {
                gamma: positive(
                    "p2_gamma",
                    gamma.unwrap_or(DEFAULT_P2_GAMMA),
                    "P2's exponent γ; 1 is the paper's value",
                )?,
                k: positive(
                    "p2_k",
                    k.unwrap_or(DEFAULT_P2_K),
                    "P2's offset k; 1 is the paper's value",
                )?,
            },
        })
    }

    pub fn kind(&self) -> WeightingKind {
        match self {
            LossWeighting::Simple => WeightingKind::Simple,
            LossWeighting::Snr => WeightingKind::Snr,
            LossWeighting::MinSnr { .. } => WeightingKind::MinSnr,
            LossWeighting::Vlb { .. } => WeightingKind::Vlb,
            LossWeighting::P2 { .. } => WeightingKind::P2,
        }
    }

    /// w_ε(t): the weight on ‖ε − ε̂‖², as the chapter's table defines it.
    /// For `simple` this is 1 (and [`Self::target_weight`] is 1 for every prediction).
    pub fn eps_weight(&self, s: &NoiseSchedule, t: usize) -> f64 {
        let snr = s.snr[t];
        match *self {
            LossWeighting::Simple => 1.0,
            LossWeighting::Snr => snr,
            LossWeighting::MinSnr { gamma } => {
                if snr <= gamma {
                    1.0 // the limit of min(snr, γ)/snr as snr → 0 included
                } else {
                    gamma / snr
                }
            }
            LossWeighting::P2 { k, gamma } => (k + snr).powf(-gamma),
            LossWeighting::Vlb { variance } => {
                if s.alphas[t] == 0.0 {
                    0.0 // see the module notes: diverges, dropped
                } else {
                    s.betas[t].powi(2)
                        / (2.0 * vlb_sigma2(s, variance, t) * s.alphas[t] * (1.0 - s.alpha_bar[t]))
                }
            }
        }
    }

    /// The weight on the prediction target's MSE, so that
    /// `target_weight(p, t) · ‖target_p − pred_p‖²` is the same objective for every p.
    pub fn target_weight(&self, prediction: Prediction, s: &NoiseSchedule, t: usize) -> f64 {
        let snr = s.snr[t];
        let ab = s.alpha_bar[t];
        match (*self, prediction) {
            (LossWeighting::Simple, _) | (_, Prediction::Epsilon) => self.eps_weight(s, t),
            (LossWeighting::Snr, Prediction::X0) => snr * snr,
            (LossWeighting::Snr, Prediction::V) => snr * ab,
            (LossWeighting::MinSnr { gamma }, Prediction::X0) => snr.min(gamma),
            (LossWeighting::MinSnr { gamma }, Prediction::V) => snr.min(gamma) / (snr + 1.0),
            (LossWeighting::P2 { k, gamma }, Prediction::X0) => snr * (k + snr).powf(-gamma),
            (LossWeighting::P2 { k, gamma }, Prediction::V) => ab * (k + snr).powf(-gamma),
            // w_ε · snr and w_ε · ᾱ, rewritten with ᾱ_t/α_t = ᾱ_{t−1} so α_t = 0 is fine.
            (LossWeighting::Vlb { variance }, Prediction::X0) => {
                s.betas[t].powi(2) * s.alpha_bar_prev[t]
                    / (2.0 * vlb_sigma2(s, variance, t) * (1.0 - ab).powi(2))
            }
            (LossWeighting::Vlb { variance }, Prediction::V) => {
                s.betas[t].powi(2) * s.alpha_bar_prev[t]
                    / (2.0 * vlb_sigma2(s, variance, t) * (1.0 - ab))
            }
        }
    }

    /// [`Self::target_weight`] for every t.
    pub fn target_weights(&self, prediction: Prediction, s: &NoiseSchedule) -> Vec<f64> {
        (0..s.timesteps())
            .map(|t| self.target_weight(prediction, s, t))
            .collect()
    }
}

/// σ_t² in the VLB weight: the bound's reverse variance (σ̃²_1 at t = 0, so it is positive).
fn vlb_sigma2(s: &NoiseSchedule, variance: Variance, t: usize) -> f64 {
    variance.bound_log_variance(s, t).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::schedule::{ScheduleConfig, ScheduleKind};
    use tch::{Device, Kind, Tensor};

    const PREDICTIONS: [Prediction; 3] = [Prediction::Epsilon, Prediction::X0, Prediction::V];

    fn all_weightings() -> Vec<LossWeighting> {
        vec![
            LossWeighting::Simple,
            LossWeighting::Snr,
            LossWeighting::MinSnr { gamma: 5.0 },
            LossWeighting::Vlb {
                variance: Variance::FixedSmall,
            },
            LossWeighting::Vlb {
                variance: Variance::FixedLarge,
            },
            LossWeighting::P2 { k: 1.0, gamma: 1.0 },
            LossWeighting::P2 { k: 0.5, gamma: 2.0 },
        ]
    }

    fn schedules() -> Vec<NoiseSchedule> {
        let mut out = vec![];
        for kind in [
            ScheduleKind::Linear,
            ScheduleKind::Cosine,
            ScheduleKind::ScaledLinear,
        ] {
            for zero in [false, true] {
                out.push(
                    NoiseSchedule::new(ScheduleConfig {
                        schedule: kind,
                        timesteps: 1000,
                        zero_terminal_snr: zero,
                        beta_start: if kind == ScheduleKind::ScaledLinear {
                            0.00085
                        } else {
                            1e-4
                        },
                        beta_end: if kind == ScheduleKind::ScaledLinear {
                            0.012
                        } else {
                            0.02
                        },
                    })
                    .unwrap(),
                );
            }
        }
        out
    }

    #[test]
    fn every_weight_is_finite_for_every_schedule() {
        for s in schedules() {
            for w in all_weightings() {
                for p in PREDICTIONS {
                    for (t, x) in w.target_weights(p, &s).iter().enumerate() {
                        assert!(x.is_finite() && *x >= 0.0, "{w:?} {p:?} t={t}: {x}");
                    }
                }
            }
        }
    }

    #[test]
    fn min_snr_weight_is_finite_at_zero_terminal_snr() {
        let s = &schedules()[1]; // linear, zero terminal SNR
        let w = LossWeighting::MinSnr { gamma: 5.0 };
        assert_eq!(w.target_weight(Prediction::Epsilon, s, 999), 1.0);
        assert_eq!(w.target_weight(Prediction::X0, s, 999), 0.0);
        assert_eq!(w.target_weight(Prediction::V, s, 999), 0.0);
    }

    #[test]
    fn min_snr_has_the_closed_forms_per_prediction() {
        let s = &schedules()[0];
        let w = LossWeighting::MinSnr { gamma: 5.0 };
        for t in [0, 10, 100, 500, 999] {
            let snr = s.snr[t];
            let m = snr.min(5.0);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
            assert!(close(w.target_weight(Prediction::Epsilon, s, t), m / snr));
            assert!(close(w.target_weight(Prediction::X0, s, t), m));
            assert!(close(w.target_weight(Prediction::V, s, t), m / (snr + 1.0)));
        }
    }

    #[test]
    fn vlb_weight_matches_the_chapter_formula_with_either_variance() {
        let s = &schedules()[0];
        let small = LossWeighting::Vlb {
            variance: Variance::FixedSmall,
        };
        let large = LossWeighting::Vlb {
            variance: Variance::FixedLarge,
        };
        for t in [1usize, 50, 999] {
            let w = |sigma2: f64| {
                s.betas[t].powi(2) / (2.0 * sigma2 * s.alphas[t] * (1.0 - s.alpha_bar[t]))
            };
            let (es, el) = (w(s.posterior_variance[t]), w(s.betas[t]));
            let (gs, gl) = (small.eps_weight(s, t), large.eps_weight(s, t));
            assert!((gs - es).abs() <= 1e-12 * es, "t={t}: {gs} vs {es}");
            assert!((gl - el).abs() <= 1e-12 * el, "t={t}: {gl} vs {el}");
            // σ̃²_t < β_t, so the fixed-small bound weighs every step more.
            assert!(gs > gl, "t={t}");
        }
        // At large t, β²/(2 σ̃² α (1−ᾱ)) = β/(2α(1−ᾱ_{t−1})) and β²/(2β α (1−ᾱ)) = β/(2α(1−ᾱ)).
        let t = 999;
        let hand = s.betas[t] / (2.0 * s.alphas[t] * (1.0 - s.alpha_bar_prev[t]));
        assert!((small.eps_weight(s, t) - hand).abs() < 1e-12);
        let hand = s.betas[t] / (2.0 * s.alphas[t] * (1.0 - s.alpha_bar[t]));
        assert!((large.eps_weight(s, t) - hand).abs() < 1e-12);
        // t = 0 is finite and uses σ̃²_1 with either variance.
        let hand0 = s.betas[0].powi(2)
            / (2.0 * s.posterior_variance[1] * s.alphas[0] * (1.0 - s.alpha_bar[0]));
        for w in [small, large] {
            assert!((w.eps_weight(s, 0) - hand0).abs() <= 1e-12 * hand0, "{w:?}");
        }
    }

    /// The same imperfect model, expressed as an ε, x_0 or v prediction, gets the
    /// same per-sample weighted loss under every non-simple weighting.
    #[test]
    fn one_weighting_is_one_objective_whatever_the_prediction() {
        tch::manual_seed(7);
        for s in schedules() {
            let zero = s.config.zero_terminal_snr;
            // The last step of a zero-SNR schedule cannot be written as ε (module notes).
            let ts: Vec<i64> = vec![0, 1, 5, 50, 300, 700, 990, if zero { 998 } else { 999 }];
            let n = ts.len() as i64;
            let opts = (Kind::Double, Device::Cpu);
            let x0 = Tensor::rand([n, 8], opts) * 2 - 1;
            let eps = Tensor::randn([n, 8], opts);
            let t64 = |v: &[f64]| Tensor::from_slice(v);
            let sa = t64(&ts
                .iter()
                .map(|&i| s.sqrt_alpha_bar[i as usize])
                .collect::<Vec<_>>())
            .reshape([n, 1]);
            let sb = t64(&ts
                .iter()
                .map(|&i| s.sqrt_one_minus_alpha_bar[i as usize])
                .collect::<Vec<_>>())
            .reshape([n, 1]);
            let xt = &sa * &x0 + &sb * &eps;
            // An imperfect ε̂, and the same model written as x̂_0 and v̂ (in f64).
            let eps_hat = &eps + Tensor::randn([n, 8], opts) * 0.3;
            let x0_hat = (&xt - &sb * &eps_hat) / &sa;
            let v_hat = &sa * &eps_hat - &sb * &x0_hat;
            let v = &sa * &eps - &sb * &x0;
            let mse = |a: &Tensor, b: &Tensor| (a - b).square().mean_dim(1, false, Kind::Double);
            let per_pred = [
                (Prediction::Epsilon, mse(&eps_hat, &eps)),
                (Prediction::X0, mse(&x0_hat, &x0)),
                (Prediction::V, mse(&v_hat, &v)),
            ];
            for w in all_weightings()
                .into_iter()
                .filter(|w| *w != LossWeighting::Simple)
            {
                let losses: Vec<Vec<f64>> = per_pred
                    .iter()
                    .map(|(p, m)| {
                        let wt = t64(&ts
                            .iter()
                            .map(|&i| w.target_weight(*p, &s, i as usize))
                            .collect::<Vec<_>>());
                        Vec::<f64>::try_from(wt * m).unwrap()
                    })
                    .collect();
                for i in 0..ts.len() {
                    let (a, b, c) = (losses[0][i], losses[1][i], losses[2][i]);
                    let tol = 1e-7 * a.abs().max(1e-300);
                    assert!(
                        (a - b).abs() <= tol && (a - c).abs() <= tol,
                        "{:?} {w:?} t={}: eps {a} x0 {b} v {c}",
                        s.config.schedule,
                        ts[i]
                    );
                }
            }
        }
    }

    #[test]
    fn bad_parameters_name_the_flag() {
        let v = Variance::FixedSmall;
        let e = LossWeighting::new(WeightingKind::MinSnr, Some(0.0), None, v).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("min_snr_gamma must be a finite number > 0, got 0"),
            "{e}"
        );
        let e = LossWeighting::new(WeightingKind::P2, None, Some(-1.0), v).unwrap_err();
        assert!(e.to_string().starts_with("p2_k must be"), "{e}");
        assert_eq!(
            LossWeighting::new(WeightingKind::MinSnr, None, None, v).unwrap(),
            LossWeighting::MinSnr { gamma: 5.0 }
        );
        assert_eq!(
            LossWeighting::new(WeightingKind::Vlb, None, None, Variance::FixedLarge).unwrap(),
            LossWeighting::Vlb {
                variance: Variance::FixedLarge
            }
        );
    }
}
