//! Noise schedules β_t and every quantity the forward and reverse processes
//! derive from them (chapter §1–2, Ho et al. 2020; Nichol & Dhariwal 2021).
//!
//! Everything is computed once, in f64, from the betas. The trainer and the
//! samplers read f32 copies of the same tables on their device
//! ([`ScheduleTensors`]), gathered per sample with [`extract`].
//!
//! Timesteps are 0-based: `t = 0` is the chapter's `t = 1` (the least noise) and
//! `t = T − 1` the most, as in improved-diffusion and diffusers.
//!
//! The values agree with diffusers' `DDPMScheduler` (`linear`, `squaredcos_cap_v2`,
//! `scaled_linear`, `rescale_betas_zero_snr`); `tests/schedule_reference.rs`
//! checks this against a fixture written by diffusers itself.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// How β_t is laid out over the T steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// β_t = linspace(beta_start, beta_end, T) (Ho et al. 2020).
    Linear,
    /// ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008, β clipped at 0.999
    /// (Nichol & Dhariwal 2021; diffusers' `squaredcos_cap_v2`).
    Cosine,
    /// β_t = linspace(√beta_start, √beta_end, T)² (diffusers' `scaled_linear`).
    ScaledLinear,
}

impl ScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Linear => "linear",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::ScaledLinear => "scaled-linear",
        }
    }
}

/// The offset `s` of the cosine schedule.
pub const COSINE_S: f64 = 0.008;
/// The largest β the cosine schedule allows (Nichol & Dhariwal's clip).
pub const COSINE_MAX_BETA: f64 = 0.999;

/// Everything that defines a schedule. Defaults: linear, T = 1000, β from 1e-4 to 0.02.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub schedule: ScheduleKind,
    pub timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    /// Shift and rescale √ᾱ so that ᾱ_{T−1} = 0 (Lin et al. 2024).
    pub zero_terminal_snr: bool,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            schedule: ScheduleKind::Linear,
            timesteps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
            zero_terminal_snr: false,
        }
    }
}

/// A schedule that cannot be built. Each message names the setting and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("timesteps must be at least 1, got 0: set it to the number of diffusion steps T (1000 is standard)")]
    ZeroTimesteps,
    #[error("beta_start ({start}) must be smaller than beta_end ({end}): the noise must grow with t; swap them or pick another beta_end")]
    BetaOrder { start: f64, end: f64 },
    #[error("beta_start and beta_end must lie in (0, 1), got {start} and {end}: typical values are 1e-4 and 0.02")]
    BetaRange { start: f64, end: f64 },
    #[error("zero_terminal_snr needs at least 2 timesteps (it pins the first ᾱ and zeroes the last), got {0}")]
    ZeroSnrTooShort(usize),
}

impl ScheduleError {
    /// The configuration keys the problem is about, for messages that name them.
    pub fn keys(&self) -> &'static [&'static str] {
        match self {
            ScheduleError::ZeroTimesteps => &["timesteps"],
            ScheduleError::BetaOrder { .. } | ScheduleError::BetaRange { .. } => {
                &["beta_start", "beta_end"]
            }
            ScheduleError::ZeroSnrTooShort(_) => &["zero_terminal_snr", "timesteps"],
        }
    }
}

/// A noise schedule and its derived tables, in f64, indexed by t ∈ [0, T).
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub config: ScheduleConfig,
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alpha_bar: Vec<f64>,
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1.
    pub alpha_bar_prev: Vec<f64>,
    pub sqrt_alpha_bar: Vec<f64>,
    pub sqrt_one_minus_alpha_bar: Vec<f64>,
    /// SNR(t) = ᾱ_t / (1 − ᾱ_t); 0 at a zero terminal SNR.
    pub snr: Vec<f64>,
    /// ln SNR(t); −∞ where SNR is exactly 0 (the last step of a zero-terminal-SNR schedule).
    pub log_snr: Vec<f64>,
    /// σ̃²_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), the variance of q(x_{t−1} | x_t, x_0). 0 at t = 0.
    pub posterior_variance: Vec<f64>,
    /// ln σ̃²_t with the t = 0 entry replaced by t = 1's (improved-diffusion), so it is finite.
    /// With T = 1 there is no t = 1 and ln β_0 is used.
    pub posterior_log_variance_clipped: Vec<f64>,
    /// Coefficient of x_0 in the posterior mean: β_t √ᾱ_{t−1} / (1 − ᾱ_t).
    pub posterior_mean_coef1: Vec<f64>,
    /// Coefficient of x_t in the posterior mean: (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t).
    pub posterior_mean_coef2: Vec<f64>,
    /// 1/√ᾱ_t, used by x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε̂. Set to 0 where ᾱ_t = 0 (see [`crate::diffusion::process`]).
    pub sqrt_recip_alpha_bar: Vec<f64>,
    /// √(1/ᾱ_t − 1); 0 where ᾱ_t = 0.
    pub sqrt_recipm1_alpha_bar: Vec<f64>,
}

fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            // Like torch.linspace: fill from both ends so the last value is exactly `end`.
            if i < n / 2 {
                start + step * i as f64
            } else {
                end - step * (n - 1 - i) as f64
            }
        })
        .collect()
}

fn cumprod(xs: &[f64]) -> Vec<f64> {
    xs.iter()
        .scan(1.0, |acc, &x| {
            *acc *= x;
            Some(*acc)
        })
        .collect()
}

/// The cosine schedule's ᾱ(u) for u = t/T ∈ [0, 1], before normalisation.
fn cosine_alpha_bar(u: f64) -> f64 {
    ((u + COSINE_S) / (1.0 + COSINE_S) * std::f64::consts::FRAC_PI_2)
        .cos()
        .powi(2)
}

/// Lin et al. (2024), algorithm 1: shift √ᾱ so its last value is 0, then scale it
/// so its first value is unchanged, and turn it back into betas.
fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let alpha_bar = cumprod(&betas.iter().map(|b| 1.0 - b).collect::<Vec<_>>());
    let s: Vec<f64> = alpha_bar.iter().map(|a| a.sqrt()).collect();
    let (s0, s_last) = (s[0], s[s.len() - 1]);
    let scale = s0 / (s0 - s_last);
    let ab: Vec<f64> = s.iter().map(|x| ((x - s_last) * scale).powi(2)).collect();
    let mut betas = Vec::with_capacity(ab.len());
    betas.push(1.0 - ab[0]);
    for w in ab.windows(2) {
        betas.push(1.0 - w[1] / w[0]);
    }
    betas
}

impl ScheduleConfig {
    /// Check the settings; [`NoiseSchedule::new`] calls this.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.timesteps == 0 {
            return Err(ScheduleError::ZeroTimesteps);
        }
        if self.schedule != ScheduleKind::Cosine {
            let (start, end) = (self.beta_start, self.beta_end);
            let in_range = |b: f64| b > 0.0 && b < 1.0;
            if !(in_range(start) && in_range(end)) {
                return Err(ScheduleError::BetaRange { start, end });
            }
            if start >= end {
                return Err(ScheduleError::BetaOrder { start, end });
            }
        }
        if self.zero_terminal_snr && self.timesteps < 2 {
            return Err(ScheduleError::ZeroSnrTooShort(self.timesteps));
        }
        Ok(())
    }

    /// The raw betas, before any derived table.
    fn betas(&self) -> Vec<f64> {
        let t = self.timesteps;
        let betas = match self.schedule {
            ScheduleKind::Linear => linspace(self.beta_start, self.beta_end, t),
            ScheduleKind::ScaledLinear => linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), t)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            ScheduleKind::Cosine => (0..t)
                .map(|i| {
                    let a0 = cosine_alpha_bar(i as f64 / t as f64);
                    let a1 = cosine_alpha_bar((i + 1) as f64 / t as f64);
                    (1.0 - a1 / a0).min(COSINE_MAX_BETA)
                })
                .collect(),
        };
        if self.zero_terminal_snr {
            rescale_zero_terminal_snr(&betas)
        } else {
            betas
        }
    }
}

impl NoiseSchedule {
    pub fn new(config: ScheduleConfig) -> Result<Self, ScheduleError> {
        config.validate()?;
        let betas = config.betas();
        let n = betas.len();
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let alpha_bar = cumprod(&alphas);
        let alpha_bar_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alpha_bar[..n - 1].iter().copied())
            .collect();
        let map = |f: &dyn Fn(usize) -> f64| (0..n).map(f).collect::<Vec<f64>>();
        let sqrt_alpha_bar = map(&|t| alpha_bar[t].sqrt());
        let sqrt_one_minus_alpha_bar = map(&|t| (1.0 - alpha_bar[t]).sqrt());
        let snr = map(&|t| alpha_bar[t] / (1.0 - alpha_bar[t]));
        let log_snr = map(&|t| alpha_bar[t].ln() - (1.0 - alpha_bar[t]).ln());
        let posterior_variance =
            map(&|t| betas[t] * (1.0 - alpha_bar_prev[t]) / (1.0 - alpha_bar[t]));
        let posterior_log_variance_clipped = map(&|t| {
            let v = if t == 0 {
                if n > 1 {
                    posterior_variance[1]
                } else {
                    betas[0]
                }
            } else {
                posterior_variance[t]
            };
            v.ln()
        });
        let posterior_mean_coef1 =
            map(&|t| betas[t] * alpha_bar_prev[t].sqrt() / (1.0 - alpha_bar[t]));
        let posterior_mean_coef2 =
            map(&|t| (1.0 - alpha_bar_prev[t]) * alphas[t].sqrt() / (1.0 - alpha_bar[t]));
        let sqrt_recip_alpha_bar = map(&|t| {
            if alpha_bar[t] > 0.0 {
                1.0 / alpha_bar[t].sqrt()
            } else {
                0.0
            }
        });
        let sqrt_recipm1_alpha_bar = map(&|t| {
            if alpha_bar[t] > 0.0 {
                (1.0 / alpha_bar[t] - 1.0).sqrt()
            } else {
                0.0
            }
        });
        Ok(NoiseSchedule {
            config,
            betas,
            alphas,
            alpha_bar,
            alpha_bar_prev,
            sqrt_alpha_bar,
            sqrt_one_minus_alpha_bar,
            snr,
            log_snr,
            posterior_variance,
            posterior_log_variance_clipped,
            posterior_mean_coef1,
            posterior_mean_coef2,
            sqrt_recip_alpha_bar,
            sqrt_recipm1_alpha_bar,
        })
    }

    /// T, the number of diffusion steps.
    pub fn timesteps(&self) -> usize {
        self.betas.len()
    }

    /// The f32 tables on `device`.
    pub fn tensors(&self, device: Device) -> ScheduleTensors {
        let t = |v: &[f64]| Tensor::from_slice(v).to_kind(Kind::Float).to_device(device);
        ScheduleTensors {
            betas: t(&self.betas),
            alphas: t(&self.alphas),
            alpha_bar: t(&self.alpha_bar),
            alpha_bar_prev: t(&self.alpha_bar_prev),
            sqrt_alpha_bar: t(&self.sqrt_alpha_bar),
            sqrt_one_minus_alpha_bar: t(&self.sqrt_one_minus_alpha_bar),
            snr: t(&self.snr),
            log_snr: t(&self.log_snr),
            posterior_variance: t(&self.posterior_variance),
            posterior_log_variance_clipped: t(&self.posterior_log_variance_clipped),
            posterior_mean_coef1: t(&self.posterior_mean_coef1),
            posterior_mean_coef2: t(&self.posterior_mean_coef2),
            sqrt_recip_alpha_bar: t(&self.sqrt_recip_alpha_bar),
            sqrt_recipm1_alpha_bar: t(&self.sqrt_recipm1_alpha_bar),
        }
    }
}

/// The schedule's tables as f32 tensors of shape [T] on one device.
#[derive(Debug)]
pub struct ScheduleTensors {
    pub betas: Tensor,
    pub alphas: Tensor,
    pub alpha_bar: Tensor,
    pub alpha_bar_prev: Tensor,
    pub sqrt_alpha_bar: Tensor,
    pub sqrt_one_minus_alpha_bar: Tensor,
    pub snr: Tensor,
    pub log_snr: Tensor,
    pub posterior_variance: Tensor,
    pub posterior_log_variance_clipped: Tensor,
    pub posterior_mean_coef1: Tensor,
    pub posterior_mean_coef2: Tensor,
    pub sqrt_recip_alpha_bar: Tensor,
    pub sqrt_recipm1_alpha_bar: Tensor,
}

/// Gather `table[t]` for a batch and shape it to broadcast against a tensor of
/// `ndim` dimensions.
///
/// # Shapes
/// `table`: [T]; `t`: [B] (int64); result: [B, 1, …, 1] with `ndim` dimensions.
pub fn extract(table: &Tensor, t: &Tensor, ndim: usize) -> Tensor {
    let b = t.size()[0];
    let mut shape = vec![1i64; ndim.max(1)];
    shape[0] = b;
    table.index_select(0, t).reshape(shape.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind, t: usize, zero: bool) -> NoiseSchedule {
        NoiseSchedule::new(ScheduleConfig {
            schedule: kind,
            timesteps: t,
            zero_terminal_snr: zero,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn linear_endpoints_are_exact() {
        let s = sched(ScheduleKind::Linear, 1000, false);
        assert_eq!(s.betas[0], 1e-4);
        assert_eq!(s.betas[999], 0.02);
        // ᾱ_T of the DDPM linear schedule is about 4.04e-5 (Ho et al.: L_T ≈ 1e-5 bits/dim).
        assert!(
            (s.alpha_bar[999] - 4.0358e-5).abs() < 1e-8,
            "{}",
            s.alpha_bar[999]
        );
    }

    #[test]
    fn alpha_bar_is_product_of_alphas_and_snr_matches_definition() {
        for kind in [
            ScheduleKind::Linear,
            ScheduleKind::Cosine,
            ScheduleKind::ScaledLinear,
        ] {
            let s = sched(kind, 50, false);
            let mut prod = 1.0;
            for t in 0..50 {
                prod *= 1.0 - s.betas[t];
                assert!((s.alpha_bar[t] - prod).abs() < 1e-15);
                assert!((s.snr[t] - prod / (1.0 - prod)).abs() <= 1e-12 * s.snr[t]);
                assert!((s.log_snr[t] - s.snr[t].ln()).abs() < 1e-9);
            }
            // Strictly decreasing ᾱ, so strictly decreasing SNR.
            assert!(s.alpha_bar.windows(2).all(|w| w[1] < w[0]));
        }
    }

    #[test]
    fn cosine_alpha_bar_follows_closed_form() {
        let s = sched(ScheduleKind::Cosine, 1000, false);
        let f0 = cosine_alpha_bar(0.0);
        for t in [0usize, 10, 500, 900] {
            let expect = cosine_alpha_bar((t + 1) as f64 / 1000.0) / f0;
            assert!((s.alpha_bar[t] - expect).abs() < 1e-12, "t={t}");
        }
        // The last betas hit the 0.999 clip.
        assert_eq!(s.betas[999], COSINE_MAX_BETA);
    }

    #[test]
    fn posterior_quantities_match_definitions() {
        let s = sched(ScheduleKind::Linear, 100, false);
        assert_eq!(s.posterior_variance[0], 0.0);
        assert_eq!(
            s.posterior_log_variance_clipped[0],
            s.posterior_variance[1].ln()
        );
        for t in 1..100 {
            // σ̃² = β(1−ᾱ_{t−1})/(1−ᾱ_t) lies between 0 and β.
            assert!(s.posterior_variance[t] > 0.0 && s.posterior_variance[t] < s.betas[t]);
            // coef1 + coef2·√α_t... the posterior mean is unbiased for x_0 when x_t = √ᾱ x_0:
            // coef1 + coef2·√ᾱ_t = √ᾱ_{t−1}.
            let lhs = s.posterior_mean_coef1[t] + s.posterior_mean_coef2[t] * s.sqrt_alpha_bar[t];
            assert!((lhs - s.alpha_bar_prev[t].sqrt()).abs() < 1e-12, "t={t}");
        }
    }

    #[test]
    fn zero_terminal_snr_pins_both_ends() {
        for kind in [
            ScheduleKind::Linear,
            ScheduleKind::Cosine,
            ScheduleKind::ScaledLinear,
        ] {
            let plain = sched(kind, 1000, false);
            let s = sched(kind, 1000, true);
            assert_eq!(s.alpha_bar[999], 0.0);
            assert_eq!(s.snr[999], 0.0);
            assert_eq!(s.log_snr[999], f64::NEG_INFINITY);
            assert!((s.alpha_bar[0] - plain.alpha_bar[0]).abs() < 1e-15);
            assert!((s.betas[999] - 1.0).abs() < 1e-15);
            // Everything the reverse process uses stays finite.
            for v in [
                &s.posterior_variance,
                &s.posterior_log_variance_clipped,
                &s.posterior_mean_coef1,
                &s.posterior_mean_coef2,
                &s.sqrt_recip_alpha_bar,
                &s.sqrt_recipm1_alpha_bar,
                &s.snr,
            ] {
                assert!(v.iter().all(|x| x.is_finite()));
            }
        }
    }

    #[test]
    fn single_step_schedules_are_defined() {
        for kind in [
            ScheduleKind::Linear,
            ScheduleKind::Cosine,
            ScheduleKind::ScaledLinear,
        ] {
            let s = sched(kind, 1, false);
            assert_eq!(s.timesteps(), 1);
            assert!(s.posterior_log_variance_clipped[0].is_finite());
        }
    }

    #[test]
    fn bad_configs_are_rejected_with_the_fix() {
        let bad = |c: ScheduleConfig| NoiseSchedule::new(c).unwrap_err();
        let e = bad(ScheduleConfig {
            timesteps: 0,
            ..Default::default()
        });
        assert_eq!(e, ScheduleError::ZeroTimesteps);
        let e = bad(ScheduleConfig {
            beta_start: 0.02,
            beta_end: 1e-4,
            ..Default::default()
        });
        assert!(
            e.to_string().contains("must be smaller than beta_end"),
            "{e}"
        );
        let e = bad(ScheduleConfig {
            beta_end: 1.5,
            ..Default::default()
        });
        assert!(matches!(e, ScheduleError::BetaRange { .. }));
        let e = bad(ScheduleConfig {
            timesteps: 1,
            zero_terminal_snr: true,
            ..Default::default()
        });
        assert_eq!(e, ScheduleError::ZeroSnrTooShort(1));
        // The cosine schedule ignores the betas.
        assert!(NoiseSchedule::new(ScheduleConfig {
            schedule: ScheduleKind::Cosine,
            beta_start: 0.5,
            beta_end: 0.1,
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn tensors_are_f32_copies_and_extract_broadcasts() {
        let s = sched(ScheduleKind::Linear, 10, false);
        let st = s.tensors(Device::Cpu);
        assert_eq!(st.betas.kind(), Kind::Float);
        let t = Tensor::from_slice(&[0i64, 9, 3]);
        let e = extract(&st.alpha_bar, &t, 4);
        assert_eq!(e.size(), vec![3, 1, 1, 1]);
        let got: Vec<f32> = Vec::<f32>::try_from(e.flatten(0, -1)).unwrap();
        assert_eq!(
            got,
            vec![
                s.alpha_bar[0] as f32,
                s.alpha_bar[9] as f32,
                s.alpha_bar[3] as f32
            ]
        );
    }
}
