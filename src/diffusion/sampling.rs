//! The reverse process: drawing samples from a trained denoiser.
//!
//! * DDPM ancestral sampling (Ho et al. 2020) over all T steps:
//!   x_{t−1} = μ̃(x_t, x̂_0) + σ_t z, with σ²_t the posterior variance
//!   (`fixed-small`) or β_t (`fixed-large`, with β_0 replaced by σ̃²_1 as in
//!   improved-diffusion), and no noise at t = 0.
//! * DDIM (Song et al. 2021) on a respaced, evenly spread subset of the steps:
//!   x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z with
//!   σ = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'}); η = 0 is deterministic.
//!
//! Both take any prediction type (x̂_0 and ε̂ are derived from the model's
//! output) and can clip x̂_0 to [−1, 1] (DDIM then re-derives ε̂ from the
//! clipped x̂_0, so the two stay consistent).
//!
//! Classifier-free guidance is [`guide`]: out_u + s (out_c − out_u). It is
//! applied to the raw model output of either parameterization: x̂_0, ε̂ and v̂
//! are affine in one another for a fixed x_t with coefficients that do not
//! depend on the output, so guiding any of them is guiding ε.
//!
//! Noise is drawn on the CPU from a generator seeded by (seed, step), so a
//! seed gives the same samples on every device.

use super::objective::Prediction;
use super::schedule::{NoiseSchedule, ScheduleTensors};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Device, Kind, Tensor};

/// The reverse process used to draw samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Ancestral sampling, p(x_{t-1} | x_t) (Ho et al. 2020).
    Ddpm,
    /// Deterministic DDIM (Song et al. 2021) on a subsequence of timesteps.
    Ddim,
}

/// The variance of DDPM's reverse steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variance {
    /// σ̃²_t, the variance of q(x_{t−1} | x_t, x_0).
    FixedSmall,
    /// β_t (β_0 replaced by σ̃²_1).
    FixedLarge,
}

impl Variance {
    /// The config value: `fixed-small` or `fixed-large`.
    pub fn name(self) -> &'static str {
        match self {
            Variance::FixedSmall => "fixed-small",
            Variance::FixedLarge => "fixed-large",
        }
    }

    /// ln σ²_t of p_θ(x_{t−1} | x_t) in the variational bound, and so in the
    /// VLB weighting that trains it: ln σ̃²_t (`fixed-small`) or ln β_t
    /// (`fixed-large`), with t = 0's variance σ̃²_1 in both (improved-diffusion's
    /// convention: σ̃²_0 is 0, and the decoder at t = 0 needs a width).
    pub fn bound_log_variance(self, s: &NoiseSchedule, t: usize) -> f64 {
        match self {
            Variance::FixedLarge if t > 0 => s.betas[t].ln(),
            _ => s.posterior_log_variance_clipped[t],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    pub sampler: SamplerKind,
    /// DDIM's number of steps; 0 = all T. DDPM always takes all T.
    pub steps: usize,
    /// DDIM's η (0 = deterministic, 1 = DDPM-like noise).
    pub eta: f64,
    pub variance: Variance,
    pub clip_x0: bool,
}

const NOISE_TAG: u64 = 0x5A3F_0001;

/// Values per independently seeded chunk of [`noise`].
const NOISE_CHUNK: usize = 1 << 14;

/// Standard normal noise of `shape`, a pure function of (seed, step).
///
/// Drawn in chunks of [`NOISE_CHUNK`] values, each from its own generator
/// seeded by (seed, step, chunk), on rayon's threads: a CIFAR batch of 128 is
/// 393,216 values per sampling step, which one thread takes milliseconds to
/// draw (comparable to a GPU forward pass). The values do not depend on the
/// number of threads.
pub fn noise(shape: &[i64], seed: u64, step: u64, device: Device) -> Tensor {
    use rayon::prelude::*;
    let base = crate::rng::mix_seed(seed, step, NOISE_TAG);
    let n: i64 = shape.iter().product();
    let mut v = vec![0f32; n.max(0) as usize];
    v.par_chunks_mut(NOISE_CHUNK)
        .enumerate()
        .for_each(|(chunk, out)| {
            let mut rng =
                rand_pcg::Pcg64::seed_from_u64(crate::rng::mix_seed(base, chunk as u64, NOISE_TAG));
            for x in out.iter_mut() {
                *x = StandardNormal.sample(&mut rng);
            }
        });
    Tensor::from_slice(&v).reshape(shape).to_device(device)
}

/// The timesteps a sampler visits, in descending order: all of [0, T), or
/// `steps` of them spread evenly from T−1 down to 0.
pub fn respace(timesteps: usize, steps: usize) -> Vec<i64> {
    let t = timesteps as i64;
    if steps == 0 || steps >= timesteps {
        return (0..t).rev().collect();
    }
    if steps == 1 {
        return vec![t - 1];
    }
    let mut out: Vec<i64> = (0..steps)
        .map(|i| ((i as f64) * (t - 1) as f64 / (steps - 1) as f64).round() as i64)
        .collect();
    out.dedup();
    out.reverse();
    out
}

/// Classifier-free guidance: out_u + s (out_c − out_u).
pub fn guide(uncond: &Tensor, cond: &Tensor, scale: f64) -> Tensor {
    uncond + (cond - uncond) * scale
}

/// Where a draw's noise comes from.
#[derive(Debug, Clone, Copy)]
pub enum NoiseSource<'a> {
    /// Drawn by [`noise`] from this seed.
    Seed(u64),
    /// Given (a user's file, another library's generator): [1 + S, B, …],
    /// x_T and then the noise of each of the S reverse steps, in the order
    /// they run (the entry of a step that adds none, such as DDPM's at
    /// t = 0, is not read); or [1, B, …], x_T alone, when no step adds noise
    /// (see [`adds_noise`]).
    Given(&'a Tensor),
}

impl NoiseSource<'_> {
    /// x_T (`step` None) or the noise of reverse step `step`, of `shape`.
    fn draw(self, shape: &[i64], step: Option<u64>, device: Device) -> Tensor {
        match self {
            NoiseSource::Seed(seed) => noise(shape, seed, step.unwrap_or(u64::MAX), device),
            NoiseSource::Given(t) => t
                .get(step.map_or(0, |i| i as i64 + 1))
                .to_kind(Kind::Float)
                .to_device(device),
        }
    }
}

/// The timesteps a draw with `opts` visits (see [`respace`]).
pub fn visited(timesteps: usize, opts: &SamplingOptions) -> Vec<i64> {
    match opts.sampler {
        SamplerKind::Ddpm => respace(timesteps, 0),
        SamplerKind::Ddim => respace(timesteps, opts.steps),
    }
}

/// Whether any reverse step of a draw with `opts` adds noise: DDPM's at
/// t > 0, DDIM's but the last with η > 0.
pub fn adds_noise(timesteps: usize, opts: &SamplingOptions) -> bool {
    let steps = visited(timesteps, opts).len();
    match opts.sampler {
        SamplerKind::Ddpm => steps > 1,
        SamplerKind::Ddim => opts.eta > 0.0 && steps > 1,
    }
}

/// Draw samples of `shape` ([B, …]) from `model(x_t, t) → output`, where `t`
/// is an int64 tensor of shape [B], with noise drawn from `seed`.
pub fn sample(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    opts: &SamplingOptions,
    shape: &[i64],
    seed: u64,
    device: Device,
    model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
) -> Tensor {
    sample_with(
        schedule,
        prediction,
        opts,
        shape,
        NoiseSource::Seed(seed),
        device,
        model,
    )
}

/// [`sample`] with the noise from `source`; a given one holds what
/// [`NoiseSource::Given`] says (the caller checks its shape).
pub fn sample_with(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    opts: &SamplingOptions,
    shape: &[i64],
    source: NoiseSource,
    device: Device,
    model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
) -> Tensor {
    let tables = schedule.tensors(device);
    let b = shape[0];
    let mut x = source.draw(shape, None, device);
    let steps = visited(schedule.timesteps(), opts);
    tch::no_grad(|| {
        for (i, &t) in steps.iter().enumerate() {
            let tt = Tensor::full([b], t, (Kind::Int64, device));
            let out = model(&x, &tt);
            let mut x0 = tables.to_x0(prediction, &x, &tt, &out);
            if opts.clip_x0 {
                x0 = x0.clamp(-1.0, 1.0);
            }
            let z = || source.draw(shape, Some(i as u64), device);
            x = match opts.sampler {
                SamplerKind::Ddpm => {
                    ddpm_step(schedule, &tables, opts.variance, &x, &x0, &tt, t, z)
                }
                SamplerKind::Ddim => {
                    let eps = if opts.clip_x0 {
                        tables.predict_eps_from_x0(&x, &tt, &x0)
                    } else {
                        tables.to_eps(prediction, &x, &tt, &out)
                    };
                    let prev = steps.get(i + 1).copied();
                    ddim_step(schedule, &x0, &eps, t, prev, opts.eta, z)
                }
            };
        }
    });
    x
}

#[allow(clippy::too_many_arguments)]
fn ddpm_step(
    schedule: &NoiseSchedule,
    tables: &ScheduleTensors,
    variance: Variance,
    x: &Tensor,
    x0: &Tensor,
    tt: &Tensor,
    t: i64,
    z: impl Fn() -> Tensor,
) -> Tensor {
    let (mean, _, _) = tables.q_posterior_mean_variance(x0, x, tt);
    if t == 0 {
        return mean;
    }
    let ti = t as usize;
    let var = match variance {
        Variance::FixedSmall => schedule.posterior_variance[ti],
        Variance::FixedLarge => schedule.betas[ti],
    };
    mean + z() * var.sqrt()
}

fn ddim_step(
    schedule: &NoiseSchedule,
    x0: &Tensor,
    eps: &Tensor,
    t: i64,
    prev: Option<i64>,
    eta: f64,
    z: impl Fn() -> Tensor,
) -> Tensor {
    let Some(prev) = prev else {
        return x0.shallow_clone();
    };
    let a = schedule.alpha_bar[t as usize];
    let a_prev = schedule.alpha_bar[prev as usize];
    let sigma = eta * ((1.0 - a_prev) / (1.0 - a)).sqrt() * (1.0 - a / a_prev).max(0.0).sqrt();
    let dir = (1.0 - a_prev - sigma * sigma).max(0.0).sqrt();
    let out = x0 * a_prev.sqrt() + eps * dir;
    if sigma > 0.0 {
        out + z() * sigma
    } else {
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diffusion::{ScheduleConfig, ScheduleKind};

    #[test]
    fn noise_is_standard_normal_reproducible_and_independent_of_the_thread_count() {
        // 3 chunks and a bit: the chunks must not repeat one another.
        let shape = [3 * NOISE_CHUNK as i64 + 100];
        let a = noise(&shape, 7, 3, Device::Cpu);
        let n = shape[0] as f64;
        let mean = a.mean(Kind::Double).double_value(&[]);
        let sd = a.std(true).double_value(&[]);
        assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
        assert!((sd - 1.0).abs() < 0.02, "sd {sd}");
        let c = NOISE_CHUNK as i64;
        let first = a.narrow(0, 0, c);
        let second = a.narrow(0, c, c);
        assert!((first - second).abs().max().double_value(&[]) > 0.1);
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| noise(&shape, 7, 3, Device::Cpu));
        assert!(a.equal(&single));
        assert!(!a.equal(&noise(&shape, 7, 4, Device::Cpu)));
    }

    /// For data x_0 ~ N(μ, σ²) per dimension, the optimal x_0-prediction is
    /// E[x_0 | x_t] = μ + √ᾱ σ² / (ᾱ σ² + 1 − ᾱ) · (x_t − √ᾱ μ); the
    /// oracle returns it in the given parameterization.
    pub(crate) fn oracle(
        schedule: &NoiseSchedule,
        prediction: Prediction,
        mu: f64,
        sigma: f64,
    ) -> impl FnMut(&Tensor, &Tensor) -> Tensor {
        let tables = schedule.tensors(Device::Cpu);
        let ab = Tensor::from_slice(&schedule.alpha_bar).to_kind(Kind::Float);
        move |x: &Tensor, t: &Tensor| {
            let a = ab.index_select(0, t).unsqueeze(1);
            let s2 = sigma * sigma;
            let gain = a.sqrt() * s2 / (&a * s2 - &a + 1.0);
            let x0 = (x - a.sqrt() * mu) * gain + mu;
            match prediction {
                Prediction::X0 => x0,
                Prediction::Epsilon => tables.predict_eps_from_x0(x, t, &x0),
                Prediction::V => {
                    let eps = tables.predict_eps_from_x0(x, t, &x0);
                    tables.v_target(&x0, t, &eps)
                }
            }
        }
    }

    #[test]
    fn given_noise_draws_what_the_same_noise_drawn_from_a_seed_draws() {
        let s = NoiseSchedule::new(ScheduleConfig {
            schedule: ScheduleKind::Linear,
            timesteps: 20,
            ..Default::default()
        })
        .unwrap();
        let shape = [3i64, 2];
        for (sampler, eta) in [(SamplerKind::Ddpm, 0.0), (SamplerKind::Ddim, 0.5)] {
            let opts = SamplingOptions {
                sampler,
                steps: 0,
                eta,
                variance: Variance::FixedLarge,
                clip_x0: true,
            };
            assert!(adds_noise(20, &opts));
            let mut all = vec![noise(&shape, 9, u64::MAX, Device::Cpu)];
            all.extend((0..20).map(|i| noise(&shape, 9, i, Device::Cpu)));
            let given = Tensor::stack(&all, 0);
            let mut model = oracle(&s, Prediction::Epsilon, 0.2, 0.5);
            let a = sample(
                &s,
                Prediction::Epsilon,
                &opts,
                &shape,
                9,
                Device::Cpu,
                &mut model,
            );
            let b = sample_with(
                &s,
                Prediction::Epsilon,
                &opts,
                &shape,
                NoiseSource::Given(&given),
                Device::Cpu,
                &mut model,
            );
            assert!(a.equal(&b), "{sampler:?}");
        }
        let ddim = SamplingOptions {
            sampler: SamplerKind::Ddim,
            steps: 5,
            eta: 0.0,
            variance: Variance::FixedLarge,
            clip_x0: true,
        };
        assert!(!adds_noise(20, &ddim));
        assert_eq!(visited(20, &ddim).len(), 5);
    }

    fn schedule() -> NoiseSchedule {
        NoiseSchedule::new(ScheduleConfig {
            schedule: ScheduleKind::Linear,
            timesteps: 1000,
            ..Default::default()
        })
        .unwrap()
    }

    fn moments(x: &Tensor) -> (f64, f64) {
        let v: Vec<f32> = Vec::try_from(x.flatten(0, -1)).unwrap();
        let n = v.len() as f64;
        let m = v.iter().map(|&a| a as f64).sum::<f64>() / n;
        let var = v.iter().map(|&a| (a as f64 - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, var.sqrt())
    }

    #[test]
    fn ddpm_and_ddim_from_the_gaussian_oracle_reproduce_its_mean_and_spread() {
        let s = schedule();
        let (mu, sigma) = (0.4, 0.3);
        let n = 2000i64;
        let cases = [
            (SamplerKind::Ddpm, 0, 0.0, Prediction::Epsilon),
            (SamplerKind::Ddpm, 0, 0.0, Prediction::V),
            (SamplerKind::Ddim, 250, 0.0, Prediction::X0),
            (SamplerKind::Ddim, 0, 1.0, Prediction::Epsilon), // η = 1 on all steps is DDPM
        ];
        for (sampler, steps, eta, prediction) in cases {
            let opts = SamplingOptions {
                sampler,
                steps,
                eta,
                variance: Variance::FixedSmall,
                clip_x0: false,
            };
            let mut model = oracle(&s, prediction, mu, sigma);
            let x = sample(&s, prediction, &opts, &[n, 2], 7, Device::Cpu, &mut model);
            let (m, sd) = moments(&x);
            // Mean within 5 standard errors; spread within 4% (sampling error
            // is ~1.1% at n = 4000 values; the rest is discretisation).
            let se = sigma / ((2 * n) as f64).sqrt();
            assert!(
                (m - mu).abs() < 5.0 * se,
                "{sampler:?} {prediction:?}: mean {m}"
            );
            assert!(
                (sd / sigma - 1.0).abs() < 0.04,
                "{sampler:?} {prediction:?}: sd {sd}"
            );
        }
    }

    /// DDIM with η = 0 is a chain of linear maps for Gaussian data: a step
    /// from t (variance v) to t' scales the centred x by c/v with
    /// c = √(ᾱ'ᾱ) σ² + √((1−ᾱ')(1−ᾱ)). With few steps it shrinks the spread
    /// (c² ≤ v v' by Cauchy–Schwarz); the samples must follow that closed form.
    #[test]
    fn coarse_ddim_follows_its_closed_form_spread() {
        let s = schedule();
        let sigma: f64 = 0.3;
        let steps = respace(1000, 20);
        let mut var = 1.0; // x_T ~ N(0, 1)
        for w in steps.windows(2) {
            let (a, ap) = (s.alpha_bar[w[0] as usize], s.alpha_bar[w[1] as usize]);
            let v = a * sigma * sigma + 1.0 - a;
            let c = (ap * a).sqrt() * sigma * sigma + ((1.0 - ap) * (1.0 - a)).sqrt();
            var *= (c / v).powi(2);
        }
        // The last step returns x̂_0 = μ + g (x − √ᾱ μ).
        let a = s.alpha_bar[0];
        let g = a.sqrt() * sigma * sigma / (a * sigma * sigma + 1.0 - a);
        let expect = (var * g * g).sqrt();
        assert!(
            expect < 0.97 * sigma,
            "20 steps shrink the spread: {expect}"
        );
        let opts = SamplingOptions {
            sampler: SamplerKind::Ddim,
            steps: 20,
            eta: 0.0,
            variance: Variance::FixedSmall,
            clip_x0: false,
        };
        let mut model = oracle(&s, Prediction::X0, 0.0, sigma);
        let x = sample(
            &s,
            Prediction::X0,
            &opts,
            &[8000, 1],
            3,
            Device::Cpu,
            &mut model,
        );
        let (_, sd) = moments(&x);
        assert!(
            (sd / expect - 1.0).abs() < 0.03,
            "sd {sd} vs closed form {expect}"
        );
    }

    #[test]
    fn a_seed_gives_the_same_samples_and_ddim_with_eta_0_is_deterministic_in_its_start() {
        let s = schedule();
        let opts = SamplingOptions {
            sampler: SamplerKind::Ddim,
            steps: 20,
            eta: 0.0,
            variance: Variance::FixedSmall,
            clip_x0: true,
        };
        let mut m = oracle(&s, Prediction::Epsilon, 0.0, 0.5);
        let a = sample(
            &s,
            Prediction::Epsilon,
            &opts,
            &[16, 3],
            1,
            Device::Cpu,
            &mut m,
        );
        let b = sample(
            &s,
            Prediction::Epsilon,
            &opts,
            &[16, 3],
            1,
            Device::Cpu,
            &mut m,
        );
        let c = sample(
            &s,
            Prediction::Epsilon,
            &opts,
            &[16, 3],
            2,
            Device::Cpu,
            &mut m,
        );
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
        assert!(
            a.abs().max().double_value(&[]) <= 1.0 + 1e-6,
            "clipped x̂_0 at the end"
        );
    }

    #[test]
    fn respacing_spreads_steps_evenly_from_the_last_to_the_first() {
        assert_eq!(respace(10, 0), (0..10).rev().collect::<Vec<_>>());
        assert_eq!(respace(1000, 5), vec![999, 749, 500, 250, 0]);
        assert_eq!(respace(10, 1), vec![9]);
    }

    #[test]
    fn guidance_at_0_and_1_gives_the_unconditional_and_conditional_outputs() {
        let u = Tensor::from_slice(&[1.0f32, -2.0]);
        let c = Tensor::from_slice(&[3.0f32, 0.5]);
        assert!(guide(&u, &c, 0.0).equal(&u));
        assert!(guide(&u, &c, 1.0).allclose(&c, 1e-6, 1e-6, false));
        let g: Vec<f32> = Vec::try_from(guide(&u, &c, 3.0)).unwrap();
        assert_eq!(g, vec![7.0, 5.5]);
    }
}
