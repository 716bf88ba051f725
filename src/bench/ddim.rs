//! DDIM sampling timed on its own: `sampling_steps` deterministic steps
//! (η = 0, x̂₀ clipped) of `cfg`'s model on a batch, as `ddpm-lab sample
//! --sampler ddim` runs them, in fp32 without guidance.

use super::{peak_rss_mib, time_blocks, Timing, Untrained};
use crate::config::run::SamplerKind;
use crate::config::RunConfig;
use crate::diffusion::sampling::{sample, SamplingOptions, Variance};
use crate::diffusion::Prediction;
use crate::model::Conditioning;

/// Time DDIM sampling of `batch` samples with `sampling_steps` steps (at
/// most `diffusion.timesteps`, which the command line checks; more are taken
/// as all of them).
pub fn ddim(
    cfg: &RunConfig,
    sampling_steps: usize,
    batch: i64,
    warmup: u64,
    repeats: u64,
) -> Result<Timing, String> {
    let Untrained {
        device,
        dataset,
        schedule,
        model,
        params,
        ..
    } = Untrained::new(cfg)?;
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
