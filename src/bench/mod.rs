//! Timed loops behind `ddpm-lab bench` and `just bench` (benches/bench.py).
//!
//! Why: the side-by-side comparison with the chapter's PyTorch trainer needs
//! two measurements that no user command makes: the trainer's full step
//! against a *bare* step (the same model's forward + backward + AdamW, none of
//! the trainer's extras), timed in one process to price the trainer's
//! overhead, and the DDIM sampler timed on its own. The comparison with
//! PyTorch itself times `ddpm-lab train` (benches/bench.py reads its metrics
//! log), so what is compared there is what users run.
//!
//! Every loop runs `warmup` untimed iterations, then `repeats` timed blocks;
//! each block ends by reading a value back from the device, so its time
//! covers all the work queued in it.

pub mod ddim;
pub mod step;

use serde::Serialize;
use std::time::Instant;

/// What a timed loop measured.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// "full-step", "bare-step" or "ddim".
    pub what: String,
    pub params: i64,
    /// libtorch's intra-op threads.
    pub threads: i32,
    pub device: String,
    pub batch: i64,
    /// Iterations per timed block (training steps, or whole DDIM samplings).
    pub per_repeat: u64,
    /// Seconds of each timed block.
    pub secs: Vec<f64>,
    /// Peak resident memory of this process so far (VmHWM), MiB; 0 where unknown.
    pub peak_rss_mib: f64,
}

impl Timing {
    /// The median seconds per iteration.
    pub fn median_secs_per_iter(&self) -> f64 {
        median(&self.secs) / self.per_repeat.max(1) as f64
    }
}

/// The median of `xs` (the mean of the middle two for an even count); NaN if empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Run `body` `warmup` times, then `repeats` timed blocks of `per_repeat`
/// calls; `sync` gets the block's last result at the end of every block (it
/// must wait for the device). Returns each block's seconds.
pub fn time_blocks<T>(
    warmup: u64,
    repeats: u64,
    per_repeat: u64,
    mut body: impl FnMut() -> T,
    mut sync: impl FnMut(&T),
) -> Vec<f64> {
    let mut last = None;
    for _ in 0..warmup {
        last = Some(body());
    }
    if let Some(l) = &last {
        sync(l);
    }
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            let mut last = None;
            for _ in 0..per_repeat {
                last = Some(body());
            }
            if let Some(l) = &last {
                sync(l);
            }
            start.elapsed().as_secs_f64()
        })
        .collect()
}

/// `cfg`'s model as the trainer builds it (same seed), untrained, on the
/// device the trainer would use, with the data and schedule it trains on.
pub struct Untrained {
    pub device: tch::Device,
    pub dataset: crate::data::Dataset,
    pub schedule: crate::diffusion::NoiseSchedule,
    pub vs: tch::nn::VarStore,
    pub model: crate::model::Denoiser,
    pub params: i64,
}

impl Untrained {
    pub fn new(cfg: &crate::config::RunConfig) -> Result<Self, String> {
        let device = crate::train::prepare_device(cfg);
        let dataset =
            crate::data::load(&cfg.data, crate::data::Split::Train).map_err(|e| e.to_string())?;
        let schedule = crate::diffusion::NoiseSchedule::new(cfg.diffusion.schedule_config())
            .map_err(|e| e.to_string())?;
        let spec = crate::config::model_spec(cfg, dataset.num_classes);
        tch::manual_seed(cfg.train.seed as i64);
        let vs = tch::nn::VarStore::new(device);
        let model = crate::model::Denoiser::new(vs.root(), &spec);
        let params = crate::model::parameter_count(&vs);
        Ok(Untrained {
            device,
            dataset,
            schedule,
            vs,
            model,
            params,
        })
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB; 0 elsewhere.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn time_blocks_calls_the_body_warmup_plus_repeats_times_and_syncs_each_block() {
        let mut calls = 0;
        let mut syncs = 0;
        let secs = time_blocks(
            2,
            3,
            4,
            || {
                calls += 1;
                calls
            },
            |last| {
                // Each sync sees the last call of its block.
                assert_eq!(*last % 4, 2);
                syncs += 1;
            },
        );
        assert_eq!(secs.len(), 3);
        assert_eq!(calls, 2 + 3 * 4);
        assert_eq!(syncs, 1 + 3);
        assert!(secs.iter().all(|s| *s >= 0.0));
    }

    #[test]
    fn peak_rss_is_positive_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mib() > 1.0);
        }
    }
}
