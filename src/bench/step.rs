//! The bare training step: forward, MSE on ε, backward and AdamW on the same
//! model the trainer builds, with nothing else (a fixed batch, no EMA, no
//! clipping, no logging, no metrics). `just bench` sets the trainer's full
//! step against it to price the trainer's overhead.

use super::{peak_rss_mib, time_blocks, Timing};
use crate::config::{self, DeviceChoice, RunConfig};
use crate::data;
use crate::diffusion::NoiseSchedule;
use crate::model::{parameter_count, Conditioning, Denoiser};
use crate::train::flat::FlatParams;
use crate::train::optim::AdamW;
use crate::train::precision::autocast;
use tch::{nn, Kind, Tensor};

/// Time the bare step of `cfg`'s model at `cfg.train.batch_size`.
pub fn bare_step(cfg: &RunConfig, warmup: u64, steps: u64, repeats: u64) -> Result<Timing, String> {
    let device = DeviceChoice::parse(&cfg.train.device)
        .unwrap_or(DeviceChoice::Auto)
        .resolve();
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let dataset = data::load(cfg, data::Split::Train).map_err(|e| e.to_string())?;
    let schedule =
        NoiseSchedule::new(cfg.diffusion.schedule_config()).map_err(|e| e.to_string())?;
    let st = schedule.tensors(device);
    let spec = config::model_spec(cfg, dataset.num_classes);
    tch::manual_seed(cfg.train.seed as i64);
    let vs = nn::VarStore::new(device);
    let model = Denoiser::new(vs.root(), &spec);
    let params = parameter_count(&vs);
    let fp = FlatParams::new(&vs, device);
    let mut opt = AdamW::new(&cfg.train, &fp.flat);
    let b = cfg.train.batch_size;
    let n = dataset.x.size()[0];
    let x0 = dataset
        .x
        .narrow(0, 0, b.min(n))
        .to_device(device)
        .repeat_interleave_self_int(((b + n - 1) / n).max(1), Some(0), None)
        .narrow(0, 0, b);
    let keep = Tensor::ones([], (Kind::Float, device));
    let big_t = cfg.diffusion.timesteps as i64;
    let mut grad = fp.grad.shallow_clone();
    let secs = time_blocks(
        warmup,
        repeats,
        steps,
        || {
            let t = Tensor::randint(big_t, [b], (Kind::Int64, device));
            let noise = x0.randn_like();
            let xt = st.q_sample(&x0, &t, &noise);
            let out = autocast(cfg.train.precision, device, || {
                model.forward(&xt, &t, &Conditioning::none(), true)
            })
            .to_kind(Kind::Float);
            let loss = (out - &noise).square().mean(Kind::Float);
            let _ = grad.zero_();
            loss.backward();
            opt.update(&fp.flat, &fp.grad, cfg.train.lr, &keep);
            loss.detach()
        },
        |last| {
            let _ = last.double_value(&[]);
        },
    );
    Ok(Timing {
        what: "bare-step".into(),
        params,
        threads: tch::get_num_threads(),
        device: format!("{device:?}"),
        batch: b,
        per_repeat: steps,
        secs,
        peak_rss_mib: peak_rss_mib(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SetArg, Sources};

    #[test]
    fn bare_step_trains_the_presets_model_and_times_every_block() {
        let sets = [
            "data.source=\"synthetic\"",
            "data.shape=[1, 8, 8]",
            "data.n_samples=16",
            "model.preset=\"unet-tiny\"",
            "train.batch_size=4",
            "train.device=\"cpu\"",
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
        let t = bare_step(&cfg, 1, 2, 3).unwrap();
        assert_eq!(t.secs.len(), 3);
        assert_eq!(t.batch, 4);
        assert_eq!(t.per_repeat, 2);
        // unet-tiny on 1 channel: the count `inspect model` reports.
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _m = Denoiser::new(vs.root(), &config::model_spec(&cfg, None));
        assert_eq!(t.params, parameter_count(&vs));
        assert!(t.median_secs_per_iter() > 0.0);
    }
}
