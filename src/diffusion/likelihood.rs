//! The variational bound in bits per dimension (Ho et al. 2020 §3.3,
//! improved-diffusion's `calc_bpd_loop`; exercise 3).
//!
//! For one image x_0 of D values on the 8-bit grid, scaled to [−1, 1]:
//!
//! ```text
//! L = KL(q(x_T | x_0) ‖ N(0, I))                                  (prior)
//!   + Σ_{t=1}^{T−1} KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))  (the t-terms)
//!   − log p_θ(x_0 | x_1)                                           (decoder)
//! ```
//!
//! in nats, divided by D ln 2. Indices are the code's: timestep t = 0 is the
//! paper's first step, so "x_1" is `q_sample` at t = 0 and the decoder is the
//! term at t = 0.
//!
//! * p_θ(x_{t−1} | x_t) = N(μ̃(x_t, x̂_0), σ²_t): the posterior mean with the
//!   model's x̂_0 (clipped to [−1, 1] if asked), and a fixed variance
//!   ([`Variance::bound_log_variance`]): σ̃²_t (`fixed-small`) or β_t
//!   (`fixed-large`), with t = 0's variance σ̃²_1 in both (improved-diffusion's
//!   convention). The VLB loss weighting uses the same σ²_t, so a model
//!   trained on the bound is scored on the bound it was trained on.
//! * The decoder is the discretized Gaussian of Ho et al.: the mass of
//!   N(μ, σ²_0) over the pixel's bin of width 2/255, with the outermost bins
//!   open to ±∞. The 256 bins tile the line only when x_0 is on the 8-bit grid
//!   (the data sources re-quantize resized images to it), so only then is the
//!   bound a bound on a normalized likelihood. Each bin's mass is floored at
//!   1e-12 (improved-diffusion's floor), so one hopeless pixel costs at most
//!   −log₂ 1e-12 ≈ 39.9 bits.
//! * The mean difference inside each KL is computed as c₁ (x_0 − x̂_0)
//!   (μ̃ is c₁ x_0 + c₂ x_t, and the c₂ x_t parts cancel exactly), in f64.
//!
//! Two estimates of the sum over t, per image:
//! * exact: every t once (T forward passes per image);
//! * stratified: the decoder term exactly, and [1, T) cut into K equal
//!   strata with one uniform t in each, weighted by the stratum's size (K + 1
//!   passes). It is unbiased; its spread is part of the per-image values, so
//!   the standard error of their mean covers both the images and the
//!   timesteps drawn. (The decoder is kept out of the strata: it is most of
//!   the bound, and drawing it with probability 1/stratum would make the
//!   estimate far noisier.)

use super::objective::Prediction;
use super::sampling::{noise, Variance};
use super::schedule::{extract, NoiseSchedule, ScheduleTensors};
use super::timesteps::equal_bins;
use crate::rng::mix_seed;
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

const LIKELIHOOD_TAG: u64 = 0xB9D0_0001;

/// The least probability the decoder gives a pixel's bin (improved-diffusion's).
pub const DECODER_FLOOR: f64 = 1e-12;

/// KL(N(m1, e^{lv1}) ‖ N(m2, e^{lv2})) elementwise, in nats.
pub fn normal_kl(mean1: &Tensor, logvar1: &Tensor, mean2: &Tensor, logvar2: &Tensor) -> Tensor {
    normal_kl_diff(&(mean1 - mean2), logvar1, logvar2)
}

/// [`normal_kl`] given the mean difference m1 − m2.
fn normal_kl_diff(diff: &Tensor, logvar1: &Tensor, logvar2: &Tensor) -> Tensor {
    ((logvar2 - logvar1) + (logvar1 - logvar2).exp() + diff.square() * (-logvar2).exp() - 1.0) * 0.5
}

/// Φ(z) and 1 − Φ(z), accurate in both tails.
fn normal_cdf_and_sf(z: &Tensor) -> (Tensor, Tensor) {
    let s = std::f64::consts::FRAC_1_SQRT_2;
    ((-z * s).erfc() * 0.5, (z * s).erfc() * 0.5)
}

/// log p(x) of 8-bit data x ∈ [−1, 1] under N(means, e^{2 log_scales})
/// discretized to bins of width 2/255 (the outer bins open), elementwise, in nats.
pub fn discretized_gaussian_log_likelihood(
    x: &Tensor,
    means: &Tensor,
    log_scales: &Tensor,
) -> Tensor {
    let x = x.to_kind(Kind::Double);
    let centered = &x - means.to_kind(Kind::Double);
    let inv = (-log_scales.to_kind(Kind::Double)).exp();
    let (cdf_plus, _) = normal_cdf_and_sf(&((&centered + 1.0 / 255.0) * &inv));
    let (cdf_min, sf_min) = normal_cdf_and_sf(&((&centered - 1.0 / 255.0) * &inv));
    let floor = |t: Tensor| t.clamp_min(DECODER_FLOOR).log();
    let log_cdf_plus = floor(cdf_plus.shallow_clone());
    let log_sf_min = floor(sf_min);
    let log_delta = floor(cdf_plus - cdf_min);
    log_cdf_plus.where_self(
        &x.lt(-0.999),
        &log_sf_min.where_self(&x.gt(0.999), &log_delta),
    )
}

/// How the sum over timesteps is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// Every timestep.
    Exact,
    /// One timestep in each of K equal strata.
    Stratified(usize),
}

impl Estimate {
    /// `eval.bpd_timesteps`: 0 = exact.
    pub fn from_timesteps(k: usize, timesteps: usize) -> Estimate {
        if k == 0 || k >= timesteps {
            Estimate::Exact
        } else {
            Estimate::Stratified(k)
        }
    }

    /// How a report names it, for a process of `timesteps` steps:
    /// `exact (1000 terms)` or `stratified (decoder + 100 strata)`.
    pub fn describe(self, timesteps: usize) -> String {
        match self {
            Estimate::Exact => format!("exact ({timesteps} terms)"),
            Estimate::Stratified(k) => format!("stratified (decoder + {k} strata)"),
        }
    }
}

/// One image's bound, in bits/dim.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageBound {
    pub total: f64,
    pub prior: f64,
    /// The decoder term −log p(x_0 | x_1).
    pub decoder: f64,
}

/// The bound of a model on a set of images.
pub struct Likelihood {
    tables: ScheduleTensors,
    prediction: Prediction,
    clip_x0: bool,
    /// [T] f64: ln σ̃²_t (t = 0: ln σ̃²_1), c₁, ln σ²_t of p_θ.
    q_logvar: Tensor,
    coef1: Tensor,
    p_logvar: Tensor,
    prior_mean_scale: f64,
    prior_logvar: f64,
    strata: Vec<(i64, i64)>,
    seed: u64,
}

impl Likelihood {
    pub fn new(
        schedule: &NoiseSchedule,
        prediction: Prediction,
        variance: Variance,
        clip_x0: bool,
        estimate: Estimate,
        seed: u64,
        device: Device,
    ) -> Likelihood {
        let t_max = schedule.timesteps();
        let d = |v: &[f64]| Tensor::from_slice(v).to_device(device);
        let p_logvar: Vec<f64> = (0..t_max)
            .map(|t| variance.bound_log_variance(schedule, t))
            .collect();
        let last = t_max - 1;
        // t = 0 alone, then [1, T) in strata.
        let rest = t_max.saturating_sub(1);
        let k = match estimate {
            Estimate::Exact => rest,
            Estimate::Stratified(k) => k.clamp(1, rest.max(1)),
        };
        let mut strata = vec![(0i64, 1i64)];
        if rest > 0 {
            strata.extend(
                equal_bins(rest, k)
                    .into_iter()
                    .map(|(lo, hi)| (lo + 1, hi + 1)),
            );
        }
        Likelihood {
            tables: schedule.tensors(device),
            prediction,
            clip_x0,
            q_logvar: d(&schedule.posterior_log_variance_clipped),
            coef1: d(&schedule.posterior_mean_coef1),
            p_logvar: d(&p_logvar),
            prior_mean_scale: schedule.sqrt_alpha_bar[last],
            prior_logvar: (1.0 - schedule.alpha_bar[last]).ln(),
            strata,
            seed,
        }
    }

    /// Forward passes per image.
    pub fn passes_per_image(&self) -> usize {
        self.strata.len()
    }

    /// KL(q(x_T | x_0) ‖ N(0, I)) per image, in bits/dim. `x0`: [B, …].
    pub fn prior_bpd(&self, x0: &Tensor) -> Tensor {
        let x0 = x0.to_kind(Kind::Double);
        let mean = &x0 * self.prior_mean_scale;
        let lv = Tensor::full_like(&x0, self.prior_logvar);
        per_image_bits(&normal_kl(
            &mean,
            &lv,
            &Tensor::zeros_like(&x0),
            &Tensor::zeros_like(&x0),
        ))
    }

    /// The term at timestep t of each image (decoder NLL at t = 0, the KL
    /// otherwise), in bits/dim, for x_t made from `x0` with `eps`.
    pub fn term_bpd(
        &self,
        x0: &Tensor,
        t: &Tensor,
        eps: &Tensor,
        model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
    ) -> Tensor {
        let nd = x0.dim();
        let xt = self.tables.q_sample(x0, t, eps);
        let out = model(&xt, t);
        let mut x0_hat = self.tables.to_x0(self.prediction, &xt, t, &out);
        if self.clip_x0 {
            x0_hat = x0_hat.clamp(-1.0, 1.0);
        }
        let x0d = x0.to_kind(Kind::Double);
        let x0_hat = x0_hat.to_kind(Kind::Double);
        let p_lv = extract(&self.p_logvar, t, nd);
        let kl = normal_kl_diff(
            &((&x0d - &x0_hat) * extract(&self.coef1, t, nd)),
            &extract(&self.q_logvar, t, nd),
            &p_lv,
        );
        // p_θ's mean at t = 0 is c₁ x̂_0 + c₂ x_t with c₁ = 1, c₂ = 0: x̂_0.
        let nll = -discretized_gaussian_log_likelihood(x0, &x0_hat, &(&p_lv * 0.5));
        let mut shape = vec![1i64; nd];
        shape[0] = t.size()[0];
        let is0 = t.eq(0).reshape(shape.as_slice());
        per_image_bits(&nll.where_self(&is0, &kl))
    }

    /// The bound of each image of `x0` ([B, …] on the 8-bit grid in [−1, 1]).
    /// `first` is the index of the batch's first image in the whole set: the
    /// timesteps and noise are drawn from (seed, first, stratum), so a set
    /// gives the same numbers whatever else runs.
    pub fn bound(
        &self,
        x0: &Tensor,
        first: u64,
        model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
    ) -> Vec<ImageBound> {
        let b = x0.size()[0];
        let device = x0.device();
        let shape = x0.size();
        tch::no_grad(|| {
            let prior = self.prior_bpd(x0);
            let mut total = prior.copy();
            let mut decoder = Tensor::zeros_like(&prior);
            let mut rng =
                rand_pcg::Pcg64::seed_from_u64(mix_seed(self.seed, first, LIKELIHOOD_TAG));
            for (k, &(lo, hi)) in self.strata.iter().enumerate() {
                let ts: Vec<i64> = (0..b)
                    .map(|_| rng.random_range(lo..hi.max(lo + 1)))
                    .collect();
                let t = Tensor::from_slice(&ts).to_device(device);
                let eps = noise(
                    &shape,
                    mix_seed(self.seed, first, LIKELIHOOD_TAG + 1),
                    k as u64,
                    device,
                );
                let term = self.term_bpd(x0, &t, &eps, model);
                if lo == 0 {
                    decoder = term.shallow_clone();
                }
                total += term * (hi - lo) as f64;
            }
            let v = |t: &Tensor| Vec::<f64>::try_from(t.to_device(Device::Cpu)).unwrap_or_default();
            let (total, prior, decoder) = (v(&total), v(&prior), v(&decoder));
            (0..b as usize)
                .map(|i| ImageBound {
                    total: total[i],
                    prior: prior[i],
                    decoder: decoder[i],
                })
                .collect()
        })
    }
}

/// Sum of nats over each image's values → bits/dim, as [B] f64.
fn per_image_bits(nats: &Tensor) -> Tensor {
    let dims: Vec<i64> = (1..nats.dim() as i64).collect();
    nats.mean_dim(dims.as_slice(), false, Kind::Double) / std::f64::consts::LN_2
}

/// The mean of per-image values and its standard error (sd / √n).
pub fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (m, f64::NAN);
    }
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::sampling::tests::oracle;
    use crate::diffusion::{ScheduleConfig, ScheduleKind};

    const W: f64 = 2.0 / 255.0;

    /// erf by Abramowitz–Stegun 7.1.26 is too coarse here; this is the
    /// complementary error function from Numerical Recipes (erfc Chebyshev fit,
    /// relative error < 1.2e-7), written independently of libtorch.
    fn erfc(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let r = t
            * (-z * z - 1.26551223
                + t * (1.00002368
                    + t * (0.37409196
                        + t * (0.09678418
                            + t * (-0.18628806
                                + t * (0.27886807
                                    + t * (-1.13520398
                                        + t * (1.48851587
                                            + t * (-0.82215223 + t * 0.17087277)))))))))
                .exp();
        if x >= 0.0 {
            r
        } else {
            2.0 - r
        }
    }

    fn phi(z: f64) -> f64 {
        0.5 * erfc(-z / std::f64::consts::SQRT_2)
    }

    #[test]
    fn normal_kl_matches_its_closed_form_and_is_zero_for_equal_gaussians() {
        let m1 = Tensor::from_slice(&[0.3f64, -1.0]);
        let m2 = Tensor::from_slice(&[0.3f64, 0.5]);
        let l1 = Tensor::from_slice(&[0.2f64, (0.5f64).ln()]);
        let l2 = Tensor::from_slice(&[0.2f64, (2.0f64).ln()]);
        let kl: Vec<f64> = Vec::try_from(normal_kl(&m1, &l1, &m2, &l2)).unwrap();
        assert!(kl[0].abs() < 1e-15);
        // ln(σ2/σ1) + (σ1² + (m1 − m2)²)/(2σ2²) − 1/2
        let expect = (2.0f64 / 0.5).sqrt().ln() + (0.5 + 1.5f64 * 1.5) / 4.0 - 0.5;
        assert!((kl[1] - expect).abs() < 1e-12, "{} vs {expect}", kl[1]);
    }

    #[test]
    fn the_discretized_decoder_is_a_distribution_over_the_256_levels() {
        let levels: Vec<f64> = (0..256).map(|i| i as f64 / 127.5 - 1.0).collect();
        let x = Tensor::from_slice(&levels);
        for (mean, scale) in [(0.1f64, 0.01f64), (-0.93, 0.2), (0.999, 0.003)] {
            let lp = discretized_gaussian_log_likelihood(
                &x,
                &Tensor::full([256], mean, (Kind::Double, Device::Cpu)),
                &Tensor::full([256], scale.ln(), (Kind::Double, Device::Cpu)),
            );
            let p: Vec<f64> = Vec::try_from(lp.exp()).unwrap();
            let sum: f64 = p.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "mass {sum}");
            // A middle level: Φ((x + w/2 − μ)/s) − Φ((x − w/2 − μ)/s).
            let i = 128;
            let expect = phi((levels[i] + W / 2.0 - mean) / scale)
                - phi((levels[i] - W / 2.0 - mean) / scale);
            assert!((p[i] - expect).abs() < 1e-6, "{} vs {expect}", p[i]);
        }
    }

    #[test]
    fn strata_put_t0_alone_and_tile_the_rest() {
        let s = NoiseSchedule::new(ScheduleConfig {
            timesteps: 101,
            ..Default::default()
        })
        .unwrap();
        let lik = Likelihood::new(
            &s,
            Prediction::Epsilon,
            Variance::FixedSmall,
            false,
            Estimate::Stratified(4),
            0,
            Device::Cpu,
        );
        assert_eq!(
            lik.strata,
            vec![(0, 1), (1, 26), (26, 51), (51, 76), (76, 101)]
        );
        let exact = Likelihood::new(
            &s,
            Prediction::Epsilon,
            Variance::FixedSmall,
            false,
            Estimate::Exact,
            0,
            Device::Cpu,
        );
        assert_eq!(exact.strata.len(), 101);
        assert!(exact
            .strata
            .iter()
            .enumerate()
            .all(|(i, &(lo, hi))| lo == i as i64 && hi == lo + 1));
    }

    #[test]
    fn strata_estimates_match_their_choice() {
        assert_eq!(Estimate::from_timesteps(0, 100), Estimate::Exact);
        assert_eq!(Estimate::from_timesteps(100, 100), Estimate::Exact);
        assert_eq!(Estimate::from_timesteps(10, 100), Estimate::Stratified(10));
        assert_eq!(Estimate::Exact.describe(100), "exact (100 terms)");
        assert_eq!(
            Estimate::Stratified(10).describe(100),
            "stratified (decoder + 10 strata)"
        );
        let (m, se) = mean_and_stderr(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((se - ((2.25f64 + 0.25 + 0.25 + 2.25) / 3.0 / 4.0).sqrt()).abs() < 1e-12);
    }

    /// Data: each of D values is x_0 = q(μ + σ z), z ~ N(0, 1), q rounding to
    /// the 8-bit grid. The model is the Gaussian oracle x̂_0 = μ + k_t (x_t − √ᾱ_t μ),
    /// k_t = √ᾱ_t σ²/(ᾱ_t σ² + 1 − ᾱ_t). Everything but the decoder then has a
    /// closed form in the moments of the grid data m₂ = E[(x_0 − μ)²] and
    /// E[x_0²]:
    /// * prior: ½(−ln(1 − ᾱ_T) + (1 − ᾱ_T) + ᾱ_T E[x_0²] − 1);
    /// * t-term: ½(ln(σ²_p/σ̃²) + σ̃²/σ²_p − 1) + c₁² E[(x_0 − x̂_0)²]/(2σ²_p),
    ///   with x_0 − x̂_0 = (1 − k√ᾱ)(x_0 − μ) − k√(1 − ᾱ) ε, so
    ///   E[(x_0 − x̂_0)²] = (1 − k√ᾱ)² m₂ + k² (1 − ᾱ);
    /// * decoder: E[−ln P(bin(x_0) | x̂_0(x_1), σ_0)], by quadrature over the
    ///   256 levels and ε.
    fn closed_form_bits(s: &NoiseSchedule, variance: Variance, mu: f64, sigma: f64) -> (f64, f64) {
        let levels: Vec<f64> = (0..256).map(|i| i as f64 / 127.5 - 1.0).collect();
        // P(level) for q(μ + σz): the mass of the level's rounding interval.
        let probs: Vec<f64> = levels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let hi = if i == 255 { f64::INFINITY } else { l + W / 2.0 };
                let lo = if i == 0 {
                    f64::NEG_INFINITY
                } else {
                    l - W / 2.0
                };
                phi((hi - mu) / sigma) - phi((lo - mu) / sigma)
            })
            .collect();
        let e = |f: &dyn Fn(f64) -> f64| {
            levels
                .iter()
                .zip(&probs)
                .map(|(&l, &p)| p * f(l))
                .sum::<f64>()
        };
        let m2 = e(&|x| (x - mu).powi(2));
        let ex2 = e(&|x| x * x);
        let t_max = s.timesteps();
        let a_t = s.alpha_bar[t_max - 1];
        let prior = 0.5 * (-(1.0 - a_t).ln() + (1.0 - a_t) + a_t * ex2 - 1.0);
        let k = |t: usize| {
            let a = s.alpha_bar[t];
            a.sqrt() * sigma * sigma / (a * sigma * sigma + 1.0 - a)
        };
        let p_var = |t: usize| match variance {
            Variance::FixedSmall => s.posterior_log_variance_clipped[t].exp(),
            Variance::FixedLarge if t == 0 => s.posterior_log_variance_clipped[0].exp(),
            Variance::FixedLarge => s.betas[t],
        };
        let mut terms = 0.0;
        for t in 1..t_max {
            let a = s.alpha_bar[t];
            let (q, p) = (s.posterior_variance[t], p_var(t));
            let c1 = s.posterior_mean_coef1[t];
            let kt = k(t);
            let err2 = (1.0 - kt * a.sqrt()).powi(2) * m2 + kt * kt * (1.0 - a);
            terms += 0.5 * ((p / q).ln() + q / p - 1.0) + c1 * c1 * err2 / (2.0 * p);
        }
        // Decoder: x̂_0 = μ + k₀(√ᾱ₀ (x_0 − μ) + √(1 − ᾱ₀) ε); trapezoid over ε ∈ [−9, 9].
        let (a0, k0, s0) = (s.alpha_bar[0], k(0), p_var(0).sqrt());
        let n_eps = 4001;
        let h = 18.0 / (n_eps - 1) as f64;
        let mut decoder = 0.0;
        for (i, (&x, &p)) in levels.iter().zip(&probs).enumerate() {
            if p < 1e-300 {
                continue;
            }
            let mut acc = 0.0;
            for j in 0..n_eps {
                let eps = -9.0 + h * j as f64;
                let wgt = if j == 0 || j == n_eps - 1 { 0.5 } else { 1.0 };
                let dens = (-0.5 * eps * eps).exp() / (2.0 * std::f64::consts::PI).sqrt();
                let m = mu + k0 * (a0.sqrt() * (x - mu) + (1.0 - a0).sqrt() * eps);
                let up = if i == 255 {
                    1.0
                } else {
                    phi((x + W / 2.0 - m) / s0)
                };
                let down = if i == 0 {
                    0.0
                } else {
                    phi((x - W / 2.0 - m) / s0)
                };
                acc += wgt * h * dens * -(up - down).max(1e-12).ln();
            }
            decoder += p * acc;
        }
        let bits = |nats: f64| nats / std::f64::consts::LN_2;
        (bits(prior + terms + decoder), bits(decoder))
    }

    fn grid_data(n: i64, d: i64, mu: f64, sigma: f64, seed: u64) -> Tensor {
        let z = noise(&[n, d], seed, 0, Device::Cpu);
        ((z * sigma + mu + 1.0) * 127.5).round().clamp(0.0, 255.0) / 127.5 - 1.0
    }

    #[test]
    fn the_gaussian_oracle_bound_matches_the_closed_form_exactly_and_stratified() {
        let s = NoiseSchedule::new(ScheduleConfig {
            schedule: ScheduleKind::Linear,
            timesteps: 200,
            ..Default::default()
        })
        .unwrap();
        let (mu, sigma) = (0.1, 0.3);
        let x0 = grid_data(1500, 4, mu, sigma, 11);
        for (variance, prediction) in [
            (Variance::FixedSmall, Prediction::Epsilon),
            (Variance::FixedLarge, Prediction::V),
        ] {
            let (expect, expect_dec) = closed_form_bits(&s, variance, mu, sigma);
            for estimate in [Estimate::Exact, Estimate::Stratified(10)] {
                let lik =
                    Likelihood::new(&s, prediction, variance, false, estimate, 5, Device::Cpu);
                let mut model = oracle(&s, prediction, mu, sigma);
                let mut all = vec![];
                for (i, chunk) in x0.split(500, 0).iter().enumerate() {
                    all.extend(lik.bound(chunk, i as u64 * 500, &mut model));
                }
                let totals: Vec<f64> = all.iter().map(|b| b.total).collect();
                let (m, se) = mean_and_stderr(&totals);
                assert!(
                    (m - expect).abs() < 4.0 * se,
                    "{variance:?} {estimate:?}: {m} ± {se} vs closed form {expect}"
                );
                assert!(se > 0.0 && se < 0.05 * expect, "{se}");
                let dec: Vec<f64> = all.iter().map(|b| b.decoder).collect();
                let (md, sed) = mean_and_stderr(&dec);
                assert!(
                    (md - expect_dec).abs() < 4.0 * sed,
                    "decoder {md} ± {sed} vs {expect_dec}"
                );
                assert_eq!(
                    lik.passes_per_image(),
                    if estimate == Estimate::Exact { 200 } else { 11 }
                );
            }
        }
    }

    /// A tiny real denoiser: the residual MLP with every parameter (its
    /// zero-initialised output layer included) drawn from N(0, scale²) by a
    /// fixed seed, in name order, so its outputs are far from zero.
    fn tiny_mlp(dim: i64, scale: f64) -> (tch::nn::VarStore, crate::model::Mlp) {
        use crate::model::{Mlp, MlpConfig};
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let cfg = MlpConfig {
            dim,
            hidden: 16,
            depth: 1,
            dropout: 0.0,
            num_classes: 0,
            cond_dim: 0,
        };
        let net = Mlp::new(vs.root(), &cfg);
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            for (i, (_, v)) in vars.iter_mut().enumerate() {
                v.copy_(&(noise(&v.size(), 77, i as u64, Device::Cpu) * scale));
            }
        });
        (vs, net)
    }

    /// The bound written out in plain f64 from β_t alone, for one image
    /// (per-dimension means, in bits): what [`Likelihood`] must compute.
    struct Written {
        betas: Vec<f64>,
        prediction: Prediction,
        variance: Variance,
        clip: bool,
    }

    impl Written {
        /// ᾱ_t = Π_{s ≤ t} (1 − β_s); ᾱ_{−1} = 1.
        fn abar(&self, t: i64) -> f64 {
            (0..=t).map(|s| 1.0 - self.betas[s as usize]).product()
        }

        /// σ̃²_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t).
        fn post_var(&self, t: i64) -> f64 {
            self.betas[t as usize] * (1.0 - self.abar(t - 1)) / (1.0 - self.abar(t))
        }

        /// σ²_t of p_θ: σ̃²_t or β_t, σ̃²_1 at t = 0 either way.
        fn p_var(&self, t: i64) -> f64 {
            match (t, self.variance) {
                (0, _) => self.post_var(1),
                (_, Variance::FixedSmall) => self.post_var(t),
                (_, Variance::FixedLarge) => self.betas[t as usize],
            }
        }

        /// KL(N(√ᾱ_T x_0, 1 − ᾱ_T) ‖ N(0, 1)).
        fn prior(&self, x0: &[f64]) -> f64 {
            let a = self.abar(self.betas.len() as i64 - 1);
            let kl = |x: f64| 0.5 * (-(1.0 - a).ln() + (1.0 - a) + a * x * x - 1.0);
            x0.iter().map(|&x| kl(x)).sum::<f64>() / x0.len() as f64 / LN_2
        }

        /// The t-term for x_t and the model's output `out` there; with the
        /// count of decoder pixels that hit the floor.
        fn term(&self, x0: &[f64], xt: &[f64], out: &[f64], t: i64) -> (f64, usize) {
            let a = self.abar(t);
            let x0_hat = |i: usize| {
                let v = match self.prediction {
                    Prediction::Epsilon => (xt[i] - (1.0 - a).sqrt() * out[i]) / a.sqrt(),
                    Prediction::X0 => out[i],
                    Prediction::V => a.sqrt() * xt[i] - (1.0 - a).sqrt() * out[i],
                };
                if self.clip {
                    v.clamp(-1.0, 1.0)
                } else {
                    v
                }
            };
            // μ̃(x_t, x) = c₁ x + c₂ x_t.
            let beta = self.betas[t as usize];
            let c1 = self.abar(t - 1).sqrt() * beta / (1.0 - a);
            let c2 = (1.0 - beta).sqrt() * (1.0 - self.abar(t - 1)) / (1.0 - a);
            let mean = |x: f64, i: usize| c1 * x + c2 * xt[i];
            let pv = self.p_var(t);
            let mut floored = 0;
            let nats: f64 = (0..x0.len())
                .map(|i| {
                    let mu_p = mean(x0_hat(i), i);
                    if t > 0 {
                        let q = self.post_var(t);
                        let d = mean(x0[i], i) - mu_p;
                        return 0.5 * ((pv / q).ln() + q / pv + d * d / pv - 1.0);
                    }
                    // The decoder: N(μ_p, σ²_0)'s mass over x_0's bin
                    // [x − 1/255, x + 1/255], the end bins open.
                    let s = pv.sqrt();
                    let lo = (x0[i] - 1.0 / 255.0 - mu_p) / s;
                    let hi = (x0[i] + 1.0 / 255.0 - mu_p) / s;
                    let p = match (x0[i] <= -1.0, x0[i] >= 1.0) {
                        (true, _) => phi(hi),
                        (_, true) => phi(-lo),
                        // Upper tail as 1 − Φ, so nothing cancels.
                        _ if lo > 0.0 => phi(-lo) - phi(-hi),
                        _ => phi(hi) - phi(lo),
                    };
                    if p < 1e-12 {
                        floored += 1;
                    }
                    -p.max(1e-12).ln()
                })
                .sum();
            (nats / x0.len() as f64 / LN_2, floored)
        }
    }

    const LN_2: f64 = std::f64::consts::LN_2;

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        let t = t.to_kind(Kind::Double);
        (0..t.size()[0])
            .map(|i| Vec::<f64>::try_from(t.get(i)).unwrap())
            .collect()
    }

    /// Four 6-pixel images on the 8-bit grid, both end levels included.
    fn tiny_images() -> Tensor {
        let bytes: [u8; 24] = [
            0, 255, 128, 37, 200, 90, 255, 255, 0, 0, 127, 128, 10, 20, 30, 40, 50, 60, 3, 250,
            100, 180, 66, 0,
        ];
        Tensor::from_slice(&bytes)
            .reshape([4, 6])
            .to_kind(Kind::Float)
            / 127.5
            - 1.0
    }

    fn close(got: f64, want: f64, what: &str) {
        assert!(
            (got - want).abs() <= 2e-5 * want.abs().max(1.0),
            "{what}: {got} vs written-out {want}"
        );
    }

    /// One call of the network inside [`Likelihood::bound`], per image.
    struct Call {
        xt: Vec<Vec<f64>>,
        t: Vec<i64>,
        out: Vec<Vec<f64>>,
    }

    /// The whole bound, exactly and stratified, against prior + Σ_t terms
    /// written out from the x_t the bound itself fed the network (recorded).
    fn check_whole_bound(
        s: &NoiseSchedule,
        w: &Written,
        net: &dyn Fn(&Tensor, &Tensor) -> Tensor,
        x0: &Tensor,
        what: &str,
    ) {
        let x0_rows = rows(x0);
        for (estimate, k) in [(Estimate::Exact, 0), (Estimate::Stratified(3), 3)] {
            let lik = Likelihood::new(
                s,
                w.prediction,
                w.variance,
                w.clip,
                estimate,
                3,
                Device::Cpu,
            );
            let mut calls: Vec<Call> = vec![];
            let mut model = |x: &Tensor, t: &Tensor| {
                let out = net(x, t);
                calls.push(Call {
                    xt: rows(x),
                    t: Vec::try_from(t).unwrap(),
                    out: rows(&out),
                });
                out
            };
            let bound = lik.bound(x0, 0, &mut model);
            // T passes (exact), or t = 0 and one t in each of [1, 4), [4, 7), [7, 10).
            assert_eq!(calls.len(), if k == 0 { 10 } else { 4 }, "{what}");
            for (i, b) in bound.iter().enumerate() {
                let mut total = w.prior(&x0_rows[i]);
                for (c, call) in calls.iter().enumerate() {
                    let t = call.t[i];
                    let (lo, size) = match (k, c) {
                        (0, _) => (c as i64, 1),
                        (_, 0) => (0, 1),
                        _ => (1 + 3 * (c as i64 - 1), 3),
                    };
                    assert!((lo..lo + size).contains(&t), "{what}: call {c} drew t={t}");
                    let (term, _) = w.term(&x0_rows[i], &call.xt[i], &call.out[i], t);
                    if t == 0 {
                        close(b.decoder, term, &format!("{what} decoder, image {i}"));
                    }
                    total += size as f64 * term;
                }
                close(b.prior, w.prior(&x0_rows[i]), &format!("{what} prior"));
                let which = format!("{what} {estimate:?} total, image {i}");
                close(b.total, total, &which);
            }
        }
    }

    #[test]
    fn a_tiny_model_scores_what_the_written_out_bound_says_term_by_term() {
        let s = NoiseSchedule::new(ScheduleConfig {
            schedule: ScheduleKind::Linear,
            timesteps: 10,
            beta_start: 0.01,
            beta_end: 0.3,
            ..Default::default()
        })
        .unwrap();
        let x0 = tiny_images();
        let x0_rows = rows(&x0);
        let (mut floored, mut unfloored) = (0, 0);
        for (prediction, variance, clip, scale) in [
            (Prediction::Epsilon, Variance::FixedSmall, true, 0.5),
            (Prediction::Epsilon, Variance::FixedLarge, false, 0.02),
            (Prediction::V, Variance::FixedLarge, true, 0.3),
            (Prediction::X0, Variance::FixedSmall, false, 0.3),
        ] {
            let (_vs, net) = tiny_mlp(6, scale);
            let net_out = |xt: &Tensor, t: &Tensor| {
                net.forward(xt, t, &crate::model::Conditioning::none(), false)
            };
            let w = Written {
                betas: s.betas.clone(),
                prediction,
                variance,
                clip,
            };
            let what = format!("{prediction:?} {variance:?} clip={clip}");
            let exact = Likelihood::new(
                &s,
                prediction,
                variance,
                clip,
                Estimate::Exact,
                3,
                Device::Cpu,
            );
            // The prior.
            let prior: Vec<f64> = Vec::try_from(exact.prior_bpd(&x0)).unwrap();
            for (i, x) in x0_rows.iter().enumerate() {
                close(prior[i], w.prior(x), &format!("{what} prior, image {i}"));
            }
            // Each t-term (the decoder at t = 0), from x_t = √ᾱ x_0 + √(1 − ᾱ) ε
            // with the test's ε, and the network run here on that x_t.
            for t in 0..10i64 {
                let eps = noise(&[4, 6], 9, t as u64, Device::Cpu);
                let tt = Tensor::full([4], t, (Kind::Int64, Device::Cpu));
                let mut model = |x: &Tensor, t: &Tensor| net_out(x, t);
                let got: Vec<f64> =
                    Vec::try_from(exact.term_bpd(&x0, &tt, &eps, &mut model)).unwrap();
                let a = w.abar(t);
                for (i, e) in rows(&eps).iter().enumerate() {
                    let xt: Vec<f64> = (0..6)
                        .map(|j| a.sqrt() * x0_rows[i][j] + (1.0 - a).sqrt() * e[j])
                        .collect();
                    let xt_tensor = Tensor::from_slice(&xt).to_kind(Kind::Float).reshape([1, 6]);
                    let out = &rows(&net_out(&xt_tensor, &tt.narrow(0, 0, 1)))[0];
                    let (want, fl) = w.term(&x0_rows[i], &xt, out, t);
                    close(got[i], want, &format!("{what} t={t}, image {i}"));
                    if t == 0 {
                        floored += fl;
                        unfloored += 6 - fl;
                    }
                }
            }
            check_whole_bound(&s, &w, &net_out, &x0, &what);
        }
        // Both regimes of the decoder were checked: bins with mass, and the floor.
        assert!(
            floored > 0 && unfloored > 0,
            "{floored} floored, {unfloored} not"
        );
    }

    /// w_ε(t)·‖ε − ε̂‖² of the VLB weighting is the mean part of the bound's
    /// KL at t, for the variance the bound is scored with (so training on
    /// `vlb` minimises the bound that is reported).
    #[test]
    fn the_vlb_weight_is_the_bound_s_own_kl_with_either_variance() {
        use crate::diffusion::LossWeighting;
        let s = NoiseSchedule::new(ScheduleConfig {
            timesteps: 10,
            beta_start: 0.01,
            beta_end: 0.3,
            ..Default::default()
        })
        .unwrap();
        let x0 = tiny_images();
        let (_vs, net) = tiny_mlp(6, 0.3);
        let mut model =
            |x: &Tensor, t: &Tensor| net.forward(x, t, &crate::model::Conditioning::none(), false);
        for variance in [Variance::FixedSmall, Variance::FixedLarge] {
            let lik = Likelihood::new(
                &s,
                Prediction::Epsilon,
                variance,
                false,
                Estimate::Exact,
                0,
                Device::Cpu,
            );
            let weighting = LossWeighting::Vlb { variance };
            for t in 1..10usize {
                let eps = noise(&[4, 6], 5, t as u64, Device::Cpu);
                let tt = Tensor::full([4], t as i64, (Kind::Int64, Device::Cpu));
                let kl: Vec<f64> =
                    Vec::try_from(lik.term_bpd(&x0, &tt, &eps, &mut model) * LN_2).unwrap();
                let xt = s.tensors(Device::Cpu).q_sample(&x0, &tt, &eps);
                let mse: Vec<f64> = Vec::try_from((model(&xt, &tt) - &eps).square().mean_dim(
                    1,
                    false,
                    Kind::Double,
                ))
                .unwrap();
                let (q, p) = (
                    s.posterior_variance[t],
                    variance.bound_log_variance(&s, t).exp(),
                );
                let var_part = 0.5 * ((p / q).ln() + q / p - 1.0);
                for i in 0..4 {
                    let want = var_part + weighting.eps_weight(&s, t) * mse[i];
                    assert!(
                        (kl[i] - want).abs() <= 1e-4 * want,
                        "{variance:?} t={t}: KL {} vs {want}",
                        kl[i]
                    );
                }
            }
        }
    }

    #[test]
    fn the_decoder_floor_is_1e_12() {
        // A pixel 40σ from the mean has mass e^{−800}: the floor is what is left.
        let x = Tensor::from_slice(&[0.0f64, -1.0, 1.0]);
        let lp = discretized_gaussian_log_likelihood(
            &x,
            &Tensor::from_slice(&[0.4f64, 0.5, -0.5]),
            &Tensor::full([3], (0.01f64).ln(), (Kind::Double, Device::Cpu)),
        );
        let lp: Vec<f64> = Vec::try_from(lp).unwrap();
        for l in lp {
            assert!((l - (1e-12f64).ln()).abs() < 1e-12, "{l}");
        }
        assert_eq!(DECODER_FLOOR, 1e-12);
    }

    #[test]
    fn a_worse_model_has_a_higher_bound() {
        let s = NoiseSchedule::new(ScheduleConfig {
            schedule: ScheduleKind::Cosine,
            timesteps: 100,
            ..Default::default()
        })
        .unwrap();
        let x0 = grid_data(400, 3, 0.0, 0.4, 2);
        let lik = Likelihood::new(
            &s,
            Prediction::X0,
            Variance::FixedSmall,
            true,
            Estimate::Exact,
            1,
            Device::Cpu,
        );
        let mean = |m: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor| {
            mean_and_stderr(
                &lik.bound(&x0, 0, m)
                    .iter()
                    .map(|b| b.total)
                    .collect::<Vec<_>>(),
            )
            .0
        };
        let good = mean(&mut oracle(&s, Prediction::X0, 0.0, 0.4));
        let bad = mean(&mut oracle(&s, Prediction::X0, 0.3, 0.4));
        assert!(bad > good + 0.1, "{bad} vs {good}");
    }
}
