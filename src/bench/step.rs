//! Training steps timed in one process: the trainer's full step
//! ([`crate::train::StepLoop`]: data, timesteps, CFG dropout, loss weighting,
//! backward, unscaling, clipping, AdamW, every EMA, device-side metrics and
//! the periodic log record) against the *bare* step of the same model
//! (forward, MSE on ε, backward and AdamW on a fixed batch: nothing else).
//! Blocks of the two alternate, so a machine whose speed drifts (a shared
//! VM, a GPU changing clocks) slows both alike and the ratio holds.

use super::{median, peak_rss_mib, Timing, Untrained};
use crate::config::RunConfig;
use crate::diffusion::ScheduleTensors;
use crate::model::{Conditioning, Denoiser};
use crate::train::flat::FlatParams;
use crate::train::optim::AdamW;
use crate::train::precision::autocast;
use crate::train::StepLoop;
use serde::Serialize;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// The bare step's model and state.
pub struct BareStep {
    cfg: RunConfig,
    device: Device,
    st: ScheduleTensors,
    model: Denoiser,
    _vs: nn::VarStore,
    fp: FlatParams,
    opt: AdamW,
    x0: Tensor,
    keep: Tensor,
    pub params: i64,
}

impl BareStep {
    pub fn new(cfg: &RunConfig) -> Result<Self, String> {
        let Untrained {
            device,
            dataset,
            schedule,
            vs,
            model,
            params,
        } = Untrained::new(cfg)?;
        let fp = FlatParams::new(&vs, device, cfg.train.precision.compute_kind());
        let opt = AdamW::new(&cfg.train, &fp.flat);
        let b = cfg.train.batch_size;
        let n = dataset.x.size()[0];
        let x0 = dataset
            .x
            .narrow(0, 0, b.min(n))
            .to_device(device)
            .repeat_interleave_self_int(((b + n - 1) / n).max(1), Some(0), None)
            .narrow(0, 0, b);
        Ok(BareStep {
            cfg: cfg.clone(),
            device,
            st: schedule.tensors(device),
            model,
            _vs: vs,
            fp,
            opt,
            x0,
            keep: Tensor::ones([], (Kind::Float, device)),
            params,
        })
    }

    /// One step; returns the (detached) loss.
    pub fn step(&mut self) -> Tensor {
        let b = self.cfg.train.batch_size;
        let big_t = self.cfg.diffusion.timesteps as i64;
        let t = Tensor::randint(big_t, [b], (Kind::Int64, self.device));
        let noise = self.x0.randn_like();
        let xt = self.st.q_sample(&self.x0, &t, &noise);
        let out = autocast(self.cfg.train.precision, self.device, || {
            self.model.forward(&xt, &t, &Conditioning::none(), true)
        });
        let loss = (out - &noise).square().mean(Kind::Float);
        self.fp.zero_grad();
        loss.backward();
        self.fp.gather_grad();
        self.opt
            .update(&self.fp.flat, &self.fp.grad, self.cfg.train.lr, &self.keep);
        self.fp.publish();
        loss.detach()
    }
}

/// The full and bare steps, timed in alternating blocks.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    pub full: Timing,
    pub bare: Timing,
    /// median(full) / median(bare) − 1.
    pub overhead: f64,
}

/// Time `repeats` blocks of `steps` full steps and as many bare blocks,
/// alternating (full, bare, bare, full, …), after `warmup` steps of each.
pub fn overhead(
    cfg: &RunConfig,
    warmup: u64,
    steps: u64,
    repeats: u64,
) -> Result<Overhead, String> {
    let mut full = StepLoop::new(cfg).map_err(|e| e.to_string())?;
    let mut bare = BareStep::new(cfg)?;
    let device = bare.device;
    let mut full_block = |n: u64| -> Result<f64, String> {
        let start = Instant::now();
        for _ in 0..n {
            full.step().map_err(|e| e.to_string())?;
        }
        full.sync();
        Ok(start.elapsed().as_secs_f64())
    };
    let mut bare_block = |n: u64| -> f64 {
        let start = Instant::now();
        let mut last = None;
        for _ in 0..n {
            last = Some(bare.step());
        }
        if let Some(l) = last {
            let _ = l.double_value(&[]);
        }
        start.elapsed().as_secs_f64()
    };
    full_block(warmup)?;
    bare_block(warmup);
    let (mut f, mut b) = (vec![], vec![]);
    for r in 0..repeats {
        if r % 2 == 0 {
            f.push(full_block(steps)?);
            b.push(bare_block(steps));
        } else {
            b.push(bare_block(steps));
            f.push(full_block(steps)?);
        }
    }
    let timing = |what: &str, secs: Vec<f64>| Timing {
        what: what.into(),
        params: bare.params,
        threads: tch::get_num_threads(),
        device: format!("{device:?}"),
        batch: cfg.train.batch_size,
        per_repeat: steps,
        secs,
        peak_rss_mib: peak_rss_mib(),
    };
    let overhead = median(&f) / median(&b) - 1.0;
    Ok(Overhead {
        full: timing("full-step", f),
        bare: timing("bare-step", b),
        overhead,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, SetArg, Sources};
    use crate::model::parameter_count;

    #[test]
    fn full_and_bare_steps_train_the_same_model_in_alternating_blocks() {
        let sets = [
            "data.source=\"synthetic\"",
            "data.shape=[1, 8, 8]",
            "data.n_samples=16",
            "model.preset=\"unet-tiny\"",
            "train.batch_size=4",
            "train.log_every=2",
            "train.device=\"cpu\"",
            "ema.decays=[0.9999, 0.999]",
        ]
        .iter()
        .map(|s| SetArg::parse(s).unwrap())
        .collect();
        let cfg = config::load(&Sources {
            file: None,
            sets,
            env: false,
        })
        .unwrap();
        let o = overhead(&cfg, 1, 2, 3).unwrap();
        assert_eq!(o.full.secs.len(), 3);
        assert_eq!(o.bare.secs.len(), 3);
        assert_eq!((o.full.batch, o.full.per_repeat), (4, 2));
        // Both are the preset's model: the count `inspect model` reports.
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = Denoiser::new(vs.root(), &config::model_spec(&cfg, None));
        assert_eq!(o.bare.params, parameter_count(&vs));
        assert_eq!(StepLoop::new(&cfg).unwrap().params(), o.bare.params);
        let expect = median(&o.full.secs) / median(&o.bare.secs) - 1.0;
        assert!((o.overhead - expect).abs() < 1e-12);
        // The bare step learns: the loss on its fixed batch falls.
        let mut bare = BareStep::new(&cfg).unwrap();
        let first: f64 = (0..5).map(|_| bare.step().double_value(&[])).sum();
        for _ in 0..60 {
            let _ = bare.step();
        }
        let last: f64 = (0..5).map(|_| bare.step().double_value(&[])).sum();
        assert!(last < first, "bare-step loss {first} -> {last}");
    }
}
