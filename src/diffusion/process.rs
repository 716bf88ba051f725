//! The forward process q and the conversions between what a model can predict.
//!
//! * `q_sample`: x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, the closed-form marginal q(x_t | x_0).
//! * `q_posterior_mean_variance`: the Gaussian q(x_{t−1} | x_t, x_0).
//! * `predict_*`: x̂_0 and ε̂ from an ε, x_0 or v prediction (Salimans & Ho 2022:
//!   v = √ᾱ ε − √(1−ᾱ) x_0).
//!
//! All take the schedule's f32 tables ([`ScheduleTensors`]) and a batch of
//! int64 timesteps `t` of shape [B]; data tensors are [B, …].
//!
//! One case has no finite answer: x̂_0 from ε̂ where ᾱ_t = 0 (the last step of a
//! zero-terminal-SNR schedule), since x_t = ε there carries no trace of x_0. Its
//! coefficients are stored as 0, so x̂_0 = 0 (the centre of data scaled to
//! [−1, 1]) instead of NaN. Use `v` or `x0` prediction with zero terminal SNR.

use super::objective::Prediction;
use super::schedule::{extract, ScheduleTensors};
use tch::Tensor;

impl ScheduleTensors {
    /// x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε.
    ///
    /// # Shapes
    /// `x0`, `noise`: [B, …]; `t`: [B]; result: [B, …].
    pub fn q_sample(&self, x0: &Tensor, t: &Tensor, noise: &Tensor) -> Tensor {
        let d = x0.dim();
        extract(&self.sqrt_alpha_bar, t, d) * x0
            + extract(&self.sqrt_one_minus_alpha_bar, t, d) * noise
    }

    /// Mean, variance and clipped log-variance of q(x_{t−1} | x_t, x_0).
    ///
    /// # Shapes
    /// `x0`, `xt`: [B, …]; `t`: [B]; mean: [B, …]; variance and log-variance: [B, 1, …, 1].
    pub fn q_posterior_mean_variance(
        &self,
        x0: &Tensor,
        xt: &Tensor,
        t: &Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let d = x0.dim();
        let mean = extract(&self.posterior_mean_coef1, t, d) * x0
            + extract(&self.posterior_mean_coef2, t, d) * xt;
        (
            mean,
            extract(&self.posterior_variance, t, d),
            extract(&self.posterior_log_variance_clipped, t, d),
        )
    }

    /// x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε̂ (0 where ᾱ_t = 0; see the module notes).
    pub fn predict_x0_from_eps(&self, xt: &Tensor, t: &Tensor, eps: &Tensor) -> Tensor {
        let d = xt.dim();
        extract(&self.sqrt_recip_alpha_bar, t, d) * xt
            - extract(&self.sqrt_recipm1_alpha_bar, t, d) * eps
    }

    /// ε̂ = (x_t − √ᾱ_t x̂_0) / √(1−ᾱ_t). ᾱ_t < 1 for every t, so this is always finite.
    pub fn predict_eps_from_x0(&self, xt: &Tensor, t: &Tensor, x0: &Tensor) -> Tensor {
        let d = xt.dim();
        (xt - extract(&self.sqrt_alpha_bar, t, d) * x0)
            / extract(&self.sqrt_one_minus_alpha_bar, t, d)
    }

    /// x̂_0 = √ᾱ_t x_t − √(1−ᾱ_t) v̂.
    pub fn predict_x0_from_v(&self, xt: &Tensor, t: &Tensor, v: &Tensor) -> Tensor {
        let d = xt.dim();
        extract(&self.sqrt_alpha_bar, t, d) * xt - extract(&self.sqrt_one_minus_alpha_bar, t, d) * v
    }

    /// ε̂ = √(1−ᾱ_t) x_t + √ᾱ_t v̂.
    pub fn predict_eps_from_v(&self, xt: &Tensor, t: &Tensor, v: &Tensor) -> Tensor {
        let d = xt.dim();
        extract(&self.sqrt_one_minus_alpha_bar, t, d) * xt + extract(&self.sqrt_alpha_bar, t, d) * v
    }

    /// v = √ᾱ_t ε − √(1−ᾱ_t) x_0 (Salimans & Ho 2022).
    pub fn v_target(&self, x0: &Tensor, t: &Tensor, noise: &Tensor) -> Tensor {
        let d = x0.dim();
        extract(&self.sqrt_alpha_bar, t, d) * noise
            - extract(&self.sqrt_one_minus_alpha_bar, t, d) * x0
    }

    /// What a model of the given parameterization should output for (x_0, ε, t).
    pub fn target(
        &self,
        prediction: Prediction,
        x0: &Tensor,
        t: &Tensor,
        noise: &Tensor,
    ) -> Tensor {
        match prediction {
            Prediction::Epsilon => noise.shallow_clone(),
            Prediction::X0 => x0.shallow_clone(),
            Prediction::V => self.v_target(x0, t, noise),
        }
    }

    /// x̂_0 from a model output of the given parameterization.
    pub fn to_x0(&self, prediction: Prediction, xt: &Tensor, t: &Tensor, out: &Tensor) -> Tensor {
        match prediction {
            Prediction::Epsilon => self.predict_x0_from_eps(xt, t, out),
            Prediction::X0 => out.shallow_clone(),
            Prediction::V => self.predict_x0_from_v(xt, t, out),
        }
    }

    /// ε̂ from a model output of the given parameterization.
    pub fn to_eps(&self, prediction: Prediction, xt: &Tensor, t: &Tensor, out: &Tensor) -> Tensor {
        match prediction {
            Prediction::Epsilon => out.shallow_clone(),
            Prediction::X0 => self.predict_eps_from_x0(xt, t, out),
            Prediction::V => self.predict_eps_from_v(xt, t, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::diffusion::objective::Prediction;
    use crate::diffusion::schedule::{NoiseSchedule, ScheduleConfig, ScheduleKind};
    use tch::{Device, Kind, Tensor};

    fn tables(
        kind: ScheduleKind,
        zero: bool,
    ) -> (NoiseSchedule, crate::diffusion::ScheduleTensors) {
        let s = NoiseSchedule::new(ScheduleConfig {
            schedule: kind,
            timesteps: 1000,
            zero_terminal_snr: zero,
            ..Default::default()
        })
        .unwrap();
        let st = s.tensors(Device::Cpu);
        (s, st)
    }

    fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn q_sample_has_the_closed_form_mean_and_variance() {
        tch::manual_seed(0);
        let (s, st) = tables(ScheduleKind::Linear, false);
        let n = 200_000i64;
        for &ti in &[0i64, 250, 999] {
            let x0 = Tensor::full([n, 1], 0.7, (Kind::Float, Device::Cpu));
            let t = Tensor::full([n], ti, (Kind::Int64, Device::Cpu));
            let xt = st.q_sample(&x0, &t, &x0.randn_like());
            let mean = xt.mean(Kind::Double).double_value(&[]);
            let var = xt.var(true).double_value(&[]);
            let (m, v) = (
                s.sqrt_alpha_bar[ti as usize] * 0.7,
                1.0 - s.alpha_bar[ti as usize],
            );
            let se_mean = (v / n as f64).sqrt();
            let se_var = v * (2.0 / (n - 1) as f64).sqrt();
            assert!(
                (mean - m).abs() < 5.0 * se_mean,
                "t={ti}: mean {mean} vs {m}"
            );
            assert!((var - v).abs() < 5.0 * se_var, "t={ti}: var {var} vs {v}");
        }
    }

    #[test]
    fn conversions_round_trip_for_every_parameterization() {
        tch::manual_seed(1);
        for (kind, zero) in [
            (ScheduleKind::Linear, false),
            (ScheduleKind::Cosine, false),
            (ScheduleKind::Cosine, true),
            (ScheduleKind::ScaledLinear, true),
        ] {
            let (_, st) = tables(kind, zero);
            // Avoid the last step of a zero-SNR schedule, where ε carries no x_0.
            let t = Tensor::from_slice(&[0i64, 1, 10, 400, 900, 998]);
            let x0 = Tensor::rand([6, 3, 4, 4], (Kind::Float, Device::Cpu)) * 2 - 1;
            let eps = Tensor::randn([6, 3, 4, 4], (Kind::Float, Device::Cpu));
            let xt = st.q_sample(&x0, &t, &eps);
            for p in [Prediction::Epsilon, Prediction::X0, Prediction::V] {
                let out = st.target(p, &x0, &t, &eps);
                let x0_hat = st.to_x0(p, &xt, &t, &out);
                let eps_hat = st.to_eps(p, &xt, &t, &out);
                // x̂_0 from ε̂ divides by √ᾱ_t (≈ 0.02 near T for cosine): allow the
                // f32 rounding of x_t amplified by 1/√ᾱ_t.
                let tol_x0 = if p == Prediction::Epsilon { 2e-3 } else { 1e-5 };
                assert!(max_abs(&x0_hat, &x0) < tol_x0, "{kind:?} {zero} {p:?} x0");
                assert!(max_abs(&eps_hat, &eps) < 2e-4, "{kind:?} {zero} {p:?} eps");
            }
        }
    }

    #[test]
    fn zero_terminal_snr_conversions_stay_finite() {
        let (_, st) = tables(ScheduleKind::Linear, true);
        let t = Tensor::from_slice(&[999i64, 999]);
        let x0 = Tensor::from_slice(&[0.5f32, -0.5]).reshape([2, 1]);
        let eps = Tensor::from_slice(&[1.0f32, -2.0]).reshape([2, 1]);
        let xt = st.q_sample(&x0, &t, &eps);
        // At ᾱ = 0, x_t is pure noise.
        assert!(max_abs(&xt, &eps) < 1e-7);
        for p in [Prediction::Epsilon, Prediction::X0, Prediction::V] {
            let out = st.target(p, &x0, &t, &eps);
            for y in [st.to_x0(p, &xt, &t, &out), st.to_eps(p, &xt, &t, &out), out] {
                assert!(y.isfinite().all().int64_value(&[]) == 1, "{p:?}");
            }
        }
        // v and x0 still recover x_0 exactly; v = −x_0 there.
        let v = st.v_target(&x0, &t, &eps);
        assert!(max_abs(&v, &(-&x0)) < 1e-7);
        assert!(max_abs(&st.predict_x0_from_v(&xt, &t, &v), &x0) < 1e-7);
    }

    #[test]
    fn posterior_mean_of_the_true_x0_is_consistent() {
        // With x_t = √ᾱ_t x_0 (no noise), the posterior mean is √ᾱ_{t−1} x_0.
        let (s, st) = tables(ScheduleKind::Cosine, false);
        let t = Tensor::from_slice(&[5i64, 500]);
        let x0 = Tensor::from_slice(&[0.3f32, -0.8]).reshape([2, 1]);
        let xt = st.q_sample(&x0, &t, &x0.zeros_like());
        let (mean, var, logvar) = st.q_posterior_mean_variance(&x0, &xt, &t);
        let expect = Tensor::from_slice(&[
            (0.3 * s.alpha_bar_prev[5].sqrt()) as f32,
            (-0.8 * s.alpha_bar_prev[500].sqrt()) as f32,
        ])
        .reshape([2, 1]);
        assert!(max_abs(&mean, &expect) < 1e-6);
        assert!((var.double_value(&[1, 0]) - s.posterior_variance[500]).abs() < 1e-9);
        assert!((logvar.double_value(&[0, 0]) - s.posterior_variance[5].ln()).abs() < 1e-5);
    }
}
