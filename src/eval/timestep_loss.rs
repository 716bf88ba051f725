//! The per-timestep loss (chapter §7.2, exercise 4): the denoising loss in
//! `eval.timestep_bins` equal bins of [0, T), on a fixed probe.
//!
//! The probe is built once per run: the first `eval.probe_size` samples of the
//! held-out split, and for each bin one timestep per sample (uniform within
//! the bin) and one noise draw per sample, all from fixed seeds. Every
//! evaluation point and weight set sees exactly the same (x_0, t, ε), so the
//! curves at different steps differ only because the model did.
//!
//! Each bin reports the unweighted MSE on the run's prediction target, the
//! loss with the run's weighting (the weight of each sample's t), and the
//! ε-equivalent MSE (the output turned into ε̂, so that ε, x_0 and v models
//! are in one unit: exercise 1), all averaged over the probe.

use super::held_out::HeldOut;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::diffusion::sampling::noise;
use crate::diffusion::{evaluation_losses, EvalLosses, Losses, NoiseSchedule};
use crate::model::Denoiser;
use crate::rng::mix_seed;
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

const PROBE_TAG: u64 = 0x7E57_0001;

/// One bin of the curve.
#[derive(Debug, Clone, PartialEq)]
pub struct BinLoss {
    pub bin: usize,
    /// The bin is [t_lo, t_hi).
    pub t_lo: i64,
    pub t_hi: i64,
    pub unweighted: f64,
    pub weighted: f64,
    /// ‖ε − ε̂‖², whatever the model predicts.
    pub eps_equivalent: f64,
}

/// The fixed probe of a run.
pub struct Probe {
    held: HeldOut,
    /// [bins, B] timesteps.
    t: Tensor,
    /// One [B, …] noise per bin.
    noise: Vec<Tensor>,
    bounds: Vec<(i64, i64)>,
    weights: Tensor,
    schedule: crate::diffusion::ScheduleTensors,
    prediction: crate::diffusion::Prediction,
}

/// Bin edges of [0, T) in `bins` nearly equal parts.
pub fn bin_bounds(timesteps: usize, bins: usize) -> Vec<(i64, i64)> {
    crate::diffusion::timesteps::equal_bins(timesteps, bins)
}

/// Why a probe cannot be built: the run's schedule or weighting (a config
/// that no longer validates).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the run's schedule: {0}")]
    Schedule(#[from] crate::diffusion::schedule::ScheduleError),
    #[error("the run's weighting: {0}")]
    Weighting(#[from] crate::diffusion::objective::WeightingError),
}

impl Probe {
    /// Build the probe from `test`, the held-out split of the run's data.
    pub fn new(cfg: &RunConfig, test: &Dataset, device: Device) -> Result<Probe, ProbeError> {
        let held = HeldOut::first(cfg, test, cfg.eval.probe_size as i64, device);
        let n = held.len();
        let d = &cfg.diffusion;
        let schedule = NoiseSchedule::new(d.schedule_config())?;
        let weighting = d.loss_weighting(cfg.eval.bpd_variance)?;
        let weights = Tensor::from_slice(&weighting.target_weights(d.prediction, &schedule))
            .to_kind(Kind::Float)
            .to_device(device);
        let bounds = bin_bounds(d.timesteps, cfg.eval.timestep_bins);
        let seed = cfg.train.seed;
        let mut ts = Vec::with_capacity(bounds.len() * n as usize);
        let mut noises = Vec::with_capacity(bounds.len());
        let shape = held.x.size();
        for (b, &(lo, hi)) in bounds.iter().enumerate() {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(mix_seed(seed, b as u64, PROBE_TAG));
            ts.extend((0..n).map(|_| rng.random_range(lo..hi.max(lo + 1))));
            noises.push(noise(
                &shape,
                mix_seed(seed, b as u64, PROBE_TAG + 1),
                0,
                device,
            ));
        }
        let t = Tensor::from_slice(&ts)
            .reshape([bounds.len() as i64, n])
            .to_device(device);
        Ok(Probe {
            held,
            t,
            noise: noises,
            bounds,
            weights,
            schedule: schedule.tensors(device),
            prediction: d.prediction,
        })
    }

    pub fn len(&self) -> i64 {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The curve for one model (evaluation mode: no dropout, no CFG dropout).
    pub fn evaluate(&self, model: &Denoiser) -> Vec<BinLoss> {
        let cond = self.held.conditioning(0, self.len());
        let x0 = &self.held.x;
        tch::no_grad(|| {
            self.bounds
                .iter()
                .enumerate()
                .map(|(b, &(lo, hi))| {
                    let t = self.t.get(b as i64);
                    let EvalLosses {
                        losses: Losses { mse, weighted },
                        eps_mse,
                    } = evaluation_losses(
                        &self.schedule,
                        self.prediction,
                        &self.weights,
                        x0,
                        &t,
                        &self.noise[b],
                        |xt| model.forward(xt, &t, &cond, false),
                    );
                    BinLoss {
                        bin: b,
                        t_lo: lo,
                        t_hi: hi,
                        unweighted: mse.mean(Kind::Double).double_value(&[]),
                        weighted: weighted.mean(Kind::Double).double_value(&[]),
                        eps_equivalent: eps_mse.mean(Kind::Double).double_value(&[]),
                    }
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::run::{DataSource, ModelConfig};
    use crate::data::{self, Split};
    use crate::model::ModelPreset;
    use tch::nn;

    fn cfg() -> RunConfig {
        let mut c = RunConfig::default();
        c.data.source = DataSource::Toy;
        c.data.n_samples = 500;
        c.model = ModelConfig {
            preset: ModelPreset::MlpSmall,
            ..Default::default()
        };
        c.diffusion.timesteps = 100;
        c.eval.timestep_bins = 10;
        c.eval.probe_size = 64;
        c
    }

    #[test]
    fn bins_cover_every_timestep_once() {
        let b = bin_bounds(1000, 20);
        assert_eq!(b.len(), 20);
        assert_eq!(b[0], (0, 50));
        assert_eq!(b[19], (950, 1000));
        assert!(b.windows(2).all(|w| w[0].1 == w[1].0));
        let b = bin_bounds(10, 3);
        assert_eq!(b, vec![(0, 3), (3, 6), (6, 10)]);
    }

    #[test]
    fn the_curve_is_stable_for_a_fixed_probe_and_matches_a_zero_model() {
        let c = cfg();
        let probe =
            Probe::new(&c, &data::load(&c.data, Split::Test).unwrap(), Device::Cpu).unwrap();
        assert_eq!(probe.len(), 64);
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = crate::config::model_spec(&c, None);
        let model = Denoiser::new(vs.root(), &spec);
        // With the output layer zeroed the model predicts ε̂ = 0, so the
        // unweighted loss is the mean of ε² over the probe's noise.
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                if name.starts_with("output.") {
                    let _ = v.zero_();
                }
            }
        });
        let a = probe.evaluate(&model);
        let again = Probe::new(&c, &data::load(&c.data, Split::Test).unwrap(), Device::Cpu)
            .unwrap()
            .evaluate(&model);
        assert_eq!(a, again, "same probe, same numbers");
        for (b, bin) in a.iter().enumerate() {
            let e2 = probe.noise[b].square().mean(Kind::Double).double_value(&[]);
            assert!(
                (bin.unweighted - e2).abs() < 1e-6,
                "{b}: {} vs {e2}",
                bin.unweighted
            );
            // Simple weighting on ε: weight 1 everywhere; an ε model's
            // ε-equivalent MSE is its own.
            assert!((bin.weighted - bin.unweighted).abs() < 1e-9);
            assert!((bin.eps_equivalent - bin.unweighted).abs() < 1e-9);
            assert!(probe.t.get(b as i64).ge(bin.t_lo).all().int64_value(&[]) == 1);
            assert!(probe.t.get(b as i64).lt(bin.t_hi).all().int64_value(&[]) == 1);
        }
    }
}
