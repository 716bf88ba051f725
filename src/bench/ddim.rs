//! DDIM sampling timed on its own: `sampling_steps` deterministic steps
//! (η = 0, x̂₀ clipped) of `cfg`'s model on a batch, as `ddpm-lab sample
//! --sampler ddim` runs them, in fp32 without guidance.

use super::{peak_rss_mib, resolve_device, time_blocks, Timing};
use crate::config::run::SamplerKind;
use crate::config::{self, RunConfig};
use crate::data;
use crate::diffusion::sampling::{sample, SamplingOptions, Variance};
use crate::diffusion::{NoiseSchedule, Prediction};
use crate::model::{parameter_count, Conditioning, Denoiser};
use tch::nn;

/// Time DDIM sampling of `batch` samples with `sampling_steps` steps.
pub fn ddim(
    cfg: &RunConfig,
    sampling_steps: usize,
    batch: i64,
    warmup: u64,
    repeats: u64,
) -> Result<Timing, String> {
    let device = resolve_device(cfg);
    let dataset = data::load(cfg, data::Split::Train).map_err(|e| e.to_string())?;
    let schedule =
        NoiseSchedule::new(cfg.diffusion.schedule_config()).map_err(|e| e.to_string())?;
    let spec = config::model_spec(cfg, dataset.num_classes);
    tch::manual_seed(cfg.train.seed as i64);
    let vs = nn::VarStore::new(device);
    let model = Denoiser::new(vs.root(), &spec);
    let params = parameter_count(&vs);
    let mut shape = dataset.x.size();
    shape[0] = batch;
    let opts = SamplingOptions {
        sampler: SamplerKind::Ddim,
        steps: sampling_steps,
        eta: 0.0,
        variance: Variance::FixedSmall,
        clip_x0: true,
    };
    let mut seed = 0u64;
    let secs = time_blocks(
        warmup,
        repeats,
        1,
        || {
            seed += 1;
            sample(
                &schedule,
                Prediction::Epsilon,
                &opts,
                &shape,
                seed,
                device,
                &mut |x, t| model.forward(x, t, &Conditioning::none(), false),
            )
        },
        |last| {
            let _ = last.sum(tch::Kind::Float).double_value(&[]);
        },
    );
    Ok(Timing {
        what: "ddim".into(),
        params,
        threads: tch::get_num_threads(),
        device: format!("{device:?}"),
        batch,
        per_repeat: 1,
        secs,
        peak_rss_mib: peak_rss_mib(),
    })
}
