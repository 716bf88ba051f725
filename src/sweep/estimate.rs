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
/// Starting a job: loading libtorch, building the data and the model.
pub const JOB_STARTUP_S: f64 = 2.0;

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
