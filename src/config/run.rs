//! One run's configuration: a serde tree (`data`, `model`, `diffusion`, `train`,
//! `ema`, `eval`, `output`) where every field has a default and unknown keys are
//! rejected. Every key is addressable by a dotted path (`train.lr`,
//! `diffusion.prediction`), which is how `--set`, the environment and sweep
//! axes name them.
//!
//! This is the "raw" stage: values are parsed but not yet checked against each
//! other; [`super::validate`] does that before anything is built.

use crate::diffusion::timesteps::DEFAULT_LOSS_AWARE_BINS;
use crate::diffusion::{Prediction, ScheduleConfig, ScheduleKind, TimestepSampling, WeightingKind};
use crate::model::ModelPreset;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub diffusion: DiffusionConfig,
    pub train: TrainConfig,
    pub ema: EmaConfig,
    pub eval: EvalConfig,
    pub output: OutputConfig,
}

pub use crate::data::spec::{DataConfig, DataSource, ToyKind};

/// `model.preset`, and overrides of any of its values (unset = the preset's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub preset: ModelPreset,
    pub ch: Option<i64>,
    pub ch_mult: Option<Vec<i64>>,
    pub num_res_blocks: Option<i64>,
    pub attn_resolutions: Option<Vec<i64>>,
    pub dropout: Option<f64>,
    pub norm_groups: Option<i64>,
    pub attn_heads: Option<i64>,
    pub hidden: Option<i64>,
    pub depth: Option<i64>,
    /// A diffusers UNet2DModel folder (`ddpm-lab export --format diffusers`,
    /// or its `unet/`) whose weights training starts from; empty = random
    /// initial weights.
    pub init_from: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            preset: ModelPreset::MlpSmall,
            ch: None,
            ch_mult: None,
            num_res_blocks: None,
            attn_resolutions: None,
            dropout: None,
            norm_groups: None,
            attn_heads: None,
            hidden: None,
            depth: None,
            init_from: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionConfig {
    pub schedule: ScheduleKind,
    pub timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub zero_terminal_snr: bool,
    pub prediction: Prediction,
    pub weighting: WeightingKind,
    pub min_snr_gamma: f64,
    pub p2_k: f64,
    pub p2_gamma: f64,
    pub timestep_sampling: TimestepSampling,
    pub loss_aware_bins: usize,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        let s = ScheduleConfig::default();
        DiffusionConfig {
            schedule: s.schedule,
            timesteps: s.timesteps,
            beta_start: s.beta_start,
            beta_end: s.beta_end,
            zero_terminal_snr: s.zero_terminal_snr,
            prediction: Prediction::Epsilon,
            weighting: WeightingKind::Simple,
            min_snr_gamma: crate::diffusion::objective::DEFAULT_MIN_SNR_GAMMA,
            p2_k: crate::diffusion::objective::DEFAULT_P2_K,
            p2_gamma: crate::diffusion::objective::DEFAULT_P2_GAMMA,
            timestep_sampling: TimestepSampling::Uniform,
            loss_aware_bins: DEFAULT_LOSS_AWARE_BINS,
        }
    }
}

impl DiffusionConfig {
    /// The configured loss weighting with its parameters (γ is `min_snr_gamma` or `p2_gamma`;
    /// VLB's σ_t² is `vlb_variance`, the run's `eval.bpd_variance`).
    pub fn loss_weighting(
        &self,
        vlb_variance: crate::diffusion::sampling::Variance,
    ) -> Result<crate::diffusion::LossWeighting, crate::diffusion::objective::WeightingError> {
        let gamma = match self.weighting {
            WeightingKind::P2 => self.p2_gamma,
            _ => self.min_snr_gamma,
        };
        crate::diffusion::LossWeighting::new(
            self.weighting,
            Some(gamma),
            Some(self.p2_k),
            vlb_variance,
        )
    }

    pub fn schedule_config(&self) -> ScheduleConfig {
        ScheduleConfig {
            schedule: self.schedule,
            timesteps: self.timesteps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            zero_terminal_snr: self.zero_terminal_snr,
        }
    }
}

/// Learning-rate schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    Constant,
    /// Linear from 0 to `lr` over `warmup_steps`, then constant.
    Warmup,
    /// Linear warm-up, then cosine decay to 0 at `steps`.
    Cosine,
}

/// Numeric precision of the forward and backward passes (chapter §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    Fp32,
    /// bf16 autocast; no loss scaling needed.
    Bf16,
    /// fp16 autocast with dynamic loss scaling (CUDA only).
    Fp16,
    /// The whole network in bf16: weights, activations and gradients, with no
    /// autocast and so none of its per-op casts. The fp32 master weights, the
    /// AdamW moments and the EMAs stay fp32: each step casts the master
    /// buffer to bf16 once and the bf16 gradients to fp32 once.
    Bf16Pure,
}

impl Precision {
    /// The dtype the network's weights and activations are held in.
    pub fn compute_kind(self) -> tch::Kind {
        match self {
            Precision::Bf16Pure => tch::Kind::BFloat16,
            Precision::Fp32 | Precision::Bf16 | Precision::Fp16 => tch::Kind::Float,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: u64,
    pub batch_size: i64,
    pub lr: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    pub lr_schedule: LrSchedule,
    pub warmup_steps: u64,
    /// Clip the global gradient norm at this value; 0 turns clipping off.
    pub grad_clip: f64,
    pub precision: Precision,
    /// Classifier-free guidance: the probability a sample's condition is dropped.
    pub p_uncond: f64,
    pub seed: u64,
    /// `auto` (the first CUDA device, else the CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: super::device::DeviceChoice,
    /// CPU threads for libtorch; 0 keeps libtorch's default.
    pub threads: i64,
    /// Record the step's device work once as a CUDA graph and replay it
    /// (after a few eager warm-up steps). CUDA devices only.
    pub cuda_graph: bool,
    pub log_every: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    /// Test hook: fail with an error at this step (0 = never). For exercising failure handling.
    pub fail_at_step: u64,
}

impl TrainConfig {
    /// Learning rate at optimizer step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        let cfg = self;
        let warm = cfg.warmup_steps;
        let warmup = |s: u64| cfg.lr * ((s + 1) as f64 / warm as f64).min(1.0);
        match cfg.lr_schedule {
            LrSchedule::Constant => cfg.lr,
            LrSchedule::Warmup => {
                if warm == 0 {
                    cfg.lr
                } else {
                    warmup(step)
                }
            }
            LrSchedule::Cosine => {
                if step < warm {
                    warmup(step)
                } else {
                    let span = cfg.steps.saturating_sub(warm).max(1) as f64;
                    let progress = ((step - warm) as f64 / span).min(1.0);
                    cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1000,
            batch_size: 128,
            lr: 2e-4,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            lr_schedule: LrSchedule::Constant,
            warmup_steps: 0,
            grad_clip: 1.0,
            precision: Precision::Fp32,
            p_uncond: 0.0,
            seed: 0,
            device: super::device::DeviceChoice::Auto,
            threads: 0,
            cuda_graph: false,
            log_every: 50,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            fail_at_step: 0,
        }
    }
}

/// How the EMA's decay evolves (chapter §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmaMode {
    /// θ_ema ← μ θ_ema + (1 − μ) θ, starting from θ.
    Constant,
    /// μ_k = min(μ, 1 − (1 + k/inv_gamma)^(−power)) after `update_after_step` (diffusers, ema-pytorch).
    Warmup,
    /// Shadow starts at 0; evaluated as θ_ema / (1 − μ^k) (the chapter's bias correction).
    BiasCorrected,
    /// Power-function EMAs of relative lengths `std_rel` (Karras et al. 2024),
    /// β_c = (1 − 1/c)^(γ+1), snapshotted every `snapshot_every` steps so
    /// that any other length is reconstructed after training (`phema-<σ>`).
    /// `decays` must be empty: classic decays are reconstructed too.
    Power,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmaConfig {
    /// Every decay tracked in this run; raw weights are always kept too.
    pub decays: Vec<f64>,
    pub mode: EmaMode,
    pub inv_gamma: f64,
    pub power: f64,
    pub update_after_step: u64,
    /// Under `mode = "power"`: the relative standard deviations σ_rel of the
    /// power-function EMAs tracked (each in (0, 0.28]).
    pub std_rel: Vec<f64>,
    /// Under `mode = "power"`: steps between snapshots of the tracked EMAs
    /// (0 = a twentieth of `train.steps`); the last step is always one.
    pub snapshot_every: u64,
}

impl Default for EmaConfig {
    fn default() -> Self {
        EmaConfig {
            // Warm within the default 1,000 steps: 0.995^1000 = 0.7% of the
            // initial weights left (0.9999 would keep 90%).
            decays: vec![0.995],
            mode: EmaMode::Constant,
            inv_gamma: 1.0,
            power: 2.0 / 3.0,
            update_after_step: 0,
            // The paper's pair (γ = 16.97 and 6.94).
            std_rel: vec![0.05, 0.10],
            snapshot_every: 0,
        }
    }
}

impl EmaConfig {
    /// Steps between post-hoc EMA snapshots in a run of `total` steps.
    pub fn snapshot_interval(&self, total: u64) -> u64 {
        match self.snapshot_every {
            0 => (total / 20).max(1),
            n => n,
        }
    }

    /// Whether a power-EMA run of `total` steps snapshots its EMAs after
    /// `step` steps: every interval, and at the last step.
    pub fn is_snapshot_step(&self, step: u64, total: u64) -> bool {
        self.mode == EmaMode::Power
            && step > 0
            && (step % self.snapshot_interval(total) == 0 || step == total)
    }

    /// How many snapshots a power-EMA run of `total` steps writes.
    pub fn snapshot_count(&self, total: u64) -> u64 {
        let every = self.snapshot_interval(total);
        total / every + u64::from(total % every != 0)
    }

    /// The decay applied at optimizer step c (1-based) for nominal decay μ:
    /// 0 (a copy of θ) up to `update_after_step`; then μ, or under `warmup`
    /// min(μ, 1 − (1 + e/inv_gamma)^(−power)) with e = c − u − 1.
    pub fn decay_at(&self, decay: f64, c: u64) -> f64 {
        let u = self.update_after_step;
        match self.mode {
            EmaMode::Constant | EmaMode::BiasCorrected | EmaMode::Power => {
                if c <= u {
                    0.0
                } else {
                    decay
                }
            }
            EmaMode::Warmup => {
                let e = c as i64 - u as i64 - 1;
                if e <= 0 {
                    0.0
                } else {
                    decay.min(1.0 - (1.0 + e as f64 / self.inv_gamma).powf(-self.power))
                }
            }
        }
    }

    /// The weight the EMA of nominal decay μ still puts on the initial
    /// (random) weights after `steps` optimizer steps: Π_c μ_c, which is μ^N
    /// for a constant decay. A bias-corrected EMA starts from zero, so it
    /// puts none on them.
    pub fn initial_fraction(&self, decay: f64, steps: u64) -> f64 {
        if self.mode == EmaMode::BiasCorrected {
            return 0.0;
        }
        let mut f = 1.0;
        for c in 1..=steps {
            f *= self.decay_at(decay, c);
            if f < 1e-300 {
                return 0.0;
            }
        }
        f
    }
}

pub use crate::diffusion::sampling::SamplerKind;

/// How a trained run is evaluated. Every key here is evaluation-only: runs of a
/// sweep that differ only in `eval.*` (or `ema.decay`) share one training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub sampler: SamplerKind,
    /// Reverse steps; 0 = every training timestep.
    pub sampling_steps: u64,
    /// Classifier-free guidance scale s: ε_u + s(ε_c − ε_u); 1 = plain
    /// conditional, 0 = unconditional. Needs train.p_uncond > 0 when ≠ 1.
    pub guidance_scale: f64,
    /// Samples drawn for the sample-quality metrics.
    pub num_samples: u64,
    /// DDPM's reverse variance when sampling: `fixed-large` (β_t, DDPM's CIFAR-10
    /// choice) or `fixed-small` (σ̃²_t). Bits/dim's is `bpd_variance`.
    pub variance: crate::diffusion::sampling::Variance,
    /// DDIM's η: 0 deterministic, 1 as noisy as DDPM.
    pub eta: f64,
    /// Clip x̂_0 to [−1, 1] at every reverse step. Unset: yes for images
    /// (scaled to [−1, 1]), no for vectors (toy and standardized data are not).
    pub clip_x0: Option<bool>,
    /// Evaluation points every this many steps (0 = none between the first
    /// and the last). The final step is always an evaluation point, and step
    /// 0 (the initial weights) unless `initial = false`.
    pub every: u64,
    /// Whether step 0 is an evaluation point: the untrained model's numbers,
    /// the baseline of exercise 4. Off saves an evaluation per weight set
    /// where the question is about trained models only.
    pub initial: bool,
    /// Further evaluation points.
    pub at_steps: Vec<u64>,
    /// Bins of the per-timestep loss over [0, T).
    pub timestep_bins: usize,
    /// Held-out samples in the per-timestep loss probe (the same ones, with the
    /// same noise, at every evaluation point).
    pub probe_size: usize,
    /// Guidance scales to evaluate on every checkpoint (empty: just
    /// `guidance_scale`). Scales ≠ 1 need train.p_uncond > 0.
    pub guidance_scales: Vec<f64>,
    /// Bits/dim: the decoder term plus one timestep in each of this many equal
    /// strata of [1, T) per image (an unbiased estimate with a standard
    /// error); 0 = all T (exact).
    pub bpd_timesteps: usize,
    /// Bits/dim: held-out images (at most the test split).
    pub bpd_images: usize,
    /// Bits/dim: the fixed variance σ²_t of p_θ(x_{t−1} | x_t) in the bound,
    /// `fixed-small` (σ̃²_t) or `fixed-large` (β_t). It is also the σ_t² of the
    /// VLB loss weighting, so with `diffusion.weighting = "vlb"` it changes
    /// training too (see `run::identity`).
    pub bpd_variance: crate::diffusion::sampling::Variance,
    /// The TorchScript Inception-v3 (`inception-2015-12-05.pt`) for true FID;
    /// empty = no FID.
    pub inception: String,
    /// Images in each PNG sample grid.
    pub grid_images: usize,
}

impl EvalConfig {
    /// The sampler options this section asks for; `images`: whether the
    /// data are images in [−1, 1] (x̂_0 is clipped by default only then).
    pub fn sampling_options(&self, images: bool) -> crate::diffusion::sampling::SamplingOptions {
        crate::diffusion::sampling::SamplingOptions {
            sampler: self.sampler,
            steps: self.sampling_steps as usize,
            eta: self.eta,
            variance: self.variance,
            clip_x0: self.clip_x0.unwrap_or(images),
        }
    }

    /// The guidance scales to evaluate.
    pub fn scales(&self) -> Vec<f64> {
        if self.guidance_scales.is_empty() {
            vec![self.guidance_scale]
        } else {
            self.guidance_scales.clone()
        }
    }
}

impl EvalConfig {
    /// Whether `step` of a run of `total` steps is an evaluation point.
    pub fn is_point(&self, step: u64, total: u64) -> bool {
        (step == 0 && self.initial)
            || step == total
            || (self.every > 0 && step > 0 && step % self.every == 0)
            || (step > 0 && self.at_steps.contains(&step))
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            sampler: SamplerKind::Ddpm,
            sampling_steps: 0,
            guidance_scale: 1.0,
            num_samples: 1000,
            variance: crate::diffusion::sampling::Variance::FixedLarge,
            eta: 0.0,
            clip_x0: None,
            every: 0,
            initial: true,
            at_steps: vec![],
            timestep_bins: 20,
            probe_size: 256,
            guidance_scales: vec![],
            bpd_timesteps: 100,
            bpd_images: 1000,
            bpd_variance: crate::diffusion::sampling::Variance::FixedSmall,
            inception: String::new(),
            grid_images: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// The run directory. Empty: `results/runs/<config file stem>`; `--out` overrides.
    pub dir: String,
    /// Write TensorBoard event files (`tb/`): the training records, the
    /// evaluation metrics and the sample grids.
    pub tensorboard: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: String::new(),
            tensorboard: true,
        }
    }
}

impl RunConfig {
    /// A config with every optional field set, so its serialized form lists every key.
    pub fn schema_sample() -> RunConfig {
        let mut c = RunConfig::default();
        c.model.ch = Some(0);
        c.model.ch_mult = Some(vec![]);
        c.model.num_res_blocks = Some(0);
        c.model.attn_resolutions = Some(vec![]);
        c.model.dropout = Some(0.0);
        c.model.norm_groups = Some(0);
        c.model.attn_heads = Some(0);
        c.model.hidden = Some(0);
        c.model.depth = Some(0);
        c.eval.clip_x0 = Some(true);
        c
    }

    /// The resolved config as TOML (what `config.toml` in a run directory holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serializes") // ok: plain data, no maps with non-string keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_points_are_the_end_every_nth_step_the_listed_ones_and_step_0_unless_off() {
        let e = EvalConfig {
            every: 300,
            at_steps: vec![50],
            ..Default::default()
        };
        let points = |e: &EvalConfig| {
            (0..=1000)
                .filter(|&s| e.is_point(s, 1000))
                .collect::<Vec<u64>>()
        };
        assert_eq!(points(&e), vec![0, 50, 300, 600, 900, 1000]);
        let late = EvalConfig {
            initial: false,
            ..e
        };
        assert_eq!(points(&late), vec![50, 300, 600, 900, 1000]);
    }
}
