//! The training loss of one batch, per sample (improved-diffusion's
//! `training_losses`): noise x_0 to x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (chapter
//! §1.1), run the model, and compare its output with the prediction target
//! (ε, x_0 or v, §1.2) by the mean squared error over each sample's values;
//! the weighted loss is w(t)·MSE (§1.4). The trainer minimises the weighted
//! loss; the per-timestep profile of an evaluation reports both, so the two
//! always compute the same numbers.

use super::objective::Prediction;
use super::schedule::ScheduleTensors;
use tch::{Kind, Tensor};

/// Per-sample losses of a batch.
pub struct Losses {
    /// ‖target − output‖² averaged over each sample's values: [B] f32.
    pub mse: Tensor,
    /// w(t)·MSE: [B] f32.
    pub weighted: Tensor,
}

/// The losses of `model` on `x0` noised with `noise` at timesteps `t`.
///
/// # Shapes
/// `x0`, `noise`: [B, …]; `t`: [B] int64; `weights`: [T], the weight of the
/// target's MSE at each timestep; `model` maps x_t [B, …] to an output of
/// the same shape.
pub fn training_losses(
    st: &ScheduleTensors,
    prediction: Prediction,
    weights: &Tensor,
    x0: &Tensor,
    t: &Tensor,
    noise: &Tensor,
    model: impl FnOnce(&Tensor) -> Tensor,
) -> Losses {
    let xt = st.q_sample(x0, t, noise);
    let out = model(&xt);
    losses_of(st, prediction, weights, x0, t, noise, &out)
}

/// An evaluation's losses: the training losses, and the ε-equivalent MSE.
pub struct EvalLosses {
    pub losses: Losses,
    /// ‖ε − ε̂‖² averaged over each sample's values, with the output turned
    /// into ε̂ whatever the model predicts: [B] f32. ε, x_0 and v models are
    /// compared in this one unit (exercise 1); an x_0 model's error counts
    /// SNR(t) times, a v model's ᾱ_t times.
    pub eps_mse: Tensor,
}

/// [`training_losses`], and the ε-equivalent MSE of the same output.
pub fn evaluation_losses(
    st: &ScheduleTensors,
    prediction: Prediction,
    weights: &Tensor,
    x0: &Tensor,
    t: &Tensor,
    noise: &Tensor,
    model: impl FnOnce(&Tensor) -> Tensor,
) -> EvalLosses {
    let xt = st.q_sample(x0, t, noise);
    let out = model(&xt);
    let eps_mse = per_sample_mse(&st.to_eps(prediction, &xt, t, &out), noise);
    EvalLosses {
        losses: losses_of(st, prediction, weights, x0, t, noise, &out),
        eps_mse,
    }
}

fn losses_of(
    st: &ScheduleTensors,
    prediction: Prediction,
    weights: &Tensor,
    x0: &Tensor,
    t: &Tensor,
    noise: &Tensor,
    out: &Tensor,
) -> Losses {
    let mse = per_sample_mse(out, &st.target(prediction, x0, t, noise));
    let weighted = &mse * weights.index_select(0, t);
    Losses { mse, weighted }
}

/// The mean square error of each sample: [B, …] → [B] f32.
fn per_sample_mse(a: &Tensor, b: &Tensor) -> Tensor {
    (a - b)
        .square()
        .flatten(1, -1)
        .mean_dim(1, false, Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::{NoiseSchedule, ScheduleConfig};
    use tch::Device;

    fn host() -> NoiseSchedule {
        NoiseSchedule::new(ScheduleConfig {
            timesteps: 50,
            ..ScheduleConfig::default()
        })
        .unwrap()
    }

    fn schedule() -> ScheduleTensors {
        host().tensors(Device::Cpu)
    }

    #[test]
    fn the_mse_is_the_mean_square_error_against_each_target() {
        let st = schedule();
        tch::manual_seed(3);
        let x0 = Tensor::rand([4, 2, 3], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let noise = Tensor::randn([4, 2, 3], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 7, 30, 49]);
        let weights = Tensor::arange(50, (Kind::Float, Device::Cpu)) + 1.0;
        for prediction in [Prediction::Epsilon, Prediction::X0, Prediction::V] {
            // A model off by 0.5 everywhere: the MSE is 0.25 whatever the target.
            let target = st.target(prediction, &x0, &t, &noise);
            let l = training_losses(&st, prediction, &weights, &x0, &t, &noise, |xt| {
                assert_eq!(xt.size(), x0.size());
                &target + 0.5
            });
            let mse: Vec<f32> = Vec::try_from(&l.mse).unwrap();
            assert!(mse.iter().all(|m| (m - 0.25).abs() < 1e-6), "{mse:?}");
            // w(t) = t + 1 here.
            let w: Vec<f32> = Vec::try_from(&l.weighted).unwrap();
            for (i, t) in [0, 7, 30, 49].iter().enumerate() {
                assert!((w[i] - 0.25 * (*t as f32 + 1.0)).abs() < 1e-5, "{w:?}");
            }
        }
        // A model that predicts 0 for ε: the MSE of each sample is mean(ε²).
        let l = training_losses(&st, Prediction::Epsilon, &weights, &x0, &t, &noise, |xt| {
            xt.zeros_like()
        });
        let expect = noise
            .square()
            .flatten(1, -1)
            .mean_dim(1, false, Kind::Float);
        assert!(l.mse.allclose(&expect, 1e-6, 1e-6, false));
    }

    #[test]
    fn the_model_sees_the_forward_process_sample() {
        let st = schedule();
        let x0 = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        let noise = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[10i64, 40]);
        let weights = Tensor::ones([50], (Kind::Float, Device::Cpu));
        // ᾱ_t as the product of (1 − β_s) over s ≤ t, from the betas.
        let betas = host().betas;
        let sqrt_ab: Vec<f64> = [10usize, 40]
            .iter()
            .map(|&t| betas[..=t].iter().map(|b| 1.0 - b).product::<f64>().sqrt())
            .collect();
        let _ = training_losses(&st, Prediction::X0, &weights, &x0, &t, &noise, |xt| {
            // With ε = 0, x_t = √ᾱ_t · x_0.
            let got: Vec<f32> = Vec::try_from(xt.select(1, 0)).unwrap();
            for (g, s) in got.iter().zip(&sqrt_ab) {
                assert!((*g as f64 - s).abs() < 1e-6, "{got:?} vs {sqrt_ab:?}");
            }
            xt.shallow_clone()
        });
    }

    #[test]
    fn the_eps_equivalent_error_is_the_target_error_scaled_by_the_closed_form() {
        // An output off by δ on its own target: ε̂ − ε is δ for an ε model,
        // √ᾱ_t δ / √(1 − ᾱ_t) for an x_0 model (ε̂ = (x_t − √ᾱ x̂_0)/√(1 − ᾱ))
        // and √ᾱ_t δ for a v model (ε̂ = √(1 − ᾱ) x_t + √ᾱ v̂): the ε-equivalent
        // MSE is δ², SNR(t)·δ² and ᾱ_t·δ².
        let st = schedule();
        let betas = host().betas;
        let ab = |t: usize| betas[..=t].iter().map(|b| 1.0 - b).product::<f64>();
        tch::manual_seed(5);
        let x0 = Tensor::rand([3, 4], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let noise = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        let ts = [2usize, 20, 45];
        let t = Tensor::from_slice(&ts.map(|t| t as i64));
        let weights = Tensor::ones([50], (Kind::Float, Device::Cpu));
        let delta = 0.3f64;
        for prediction in [Prediction::Epsilon, Prediction::X0, Prediction::V] {
            let target = st.target(prediction, &x0, &t, &noise);
            let l = evaluation_losses(&st, prediction, &weights, &x0, &t, &noise, |_| {
                &target + delta
            });
            let got: Vec<f32> = Vec::try_from(&l.eps_mse).unwrap();
            for (i, &t) in ts.iter().enumerate() {
                let scale = match prediction {
                    Prediction::Epsilon => 1.0,
                    Prediction::X0 => ab(t) / (1.0 - ab(t)),
                    Prediction::V => ab(t),
                };
                let expect = scale * delta * delta;
                assert!(
                    (got[i] as f64 - expect).abs() < 1e-4 * expect.max(1.0),
                    "{prediction:?} t {t}: {} vs {expect}",
                    got[i]
                );
            }
            let mse: Vec<f32> = Vec::try_from(&l.losses.mse).unwrap();
            assert!(mse.iter().all(|m| (*m as f64 - delta * delta).abs() < 1e-6));
        }
    }
}
