//! Checks of a parsed run config, before anything is built: each problem names
//! the key, the value, and what is allowed. All problems are reported at once.
//!
//! [`validate`] reads the machine only through the [`Hardware`] it is given
//! (how many CUDA devices, whether CUDA graphs are built in), so the same
//! config and hardware always give the same problems, and tests can describe a
//! machine they are not on. (One check still looks outside the config: that
//! `eval.inception`, when set, names an existing file.) The checks run one
//! section at a time, in a fixed order that messages and tests rely on.

use super::hardware::Hardware;
use super::run::{DataSource, EmaMode, Precision, RunConfig};
pub use crate::data::spec::DataShape;
use crate::diffusion::{Prediction, ScheduleConfig};
use crate::model::Family;
use std::fmt;

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The dotted key, e.g. `train.lr` (empty for file-level problems).
    pub key: String,
    pub message: String,
    /// Where the value came from: `file:line`, an environment variable, a `--set` flag.
    pub origin: Option<String>,
}

impl Problem {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Problem {
            key: key.to_string(),
            message: message.into(),
            origin: None,
        }
    }
    pub fn at(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

pub use super::device::DeviceChoice;

/// What a config's data source yields, without loading it.
pub fn data_shape(cfg: &RunConfig) -> DataShape {
    crate::data::spec::data_shape(&cfg.data)
}

fn finite_pos(p: &mut Vec<Problem>, key: &str, v: f64, hint: &str) {
    if !(v.is_finite() && v > 0.0) {
        p.push(Problem::new(
            key,
            format!("= {v}: must be a number > 0 ({hint})"),
        ));
    }
}

fn in_unit(p: &mut Vec<Problem>, key: &str, v: f64, hint: &str) {
    if !(0.0..1.0).contains(&v) {
        p.push(Problem::new(
            key,
            format!("= {v}: must be in [0, 1) ({hint})"),
        ));
    }
}

fn at_least(p: &mut Vec<Problem>, key: &str, v: i64, min: i64, hint: &str) {
    if v < min {
        p.push(Problem::new(
            key,
            format!("= {v}: must be at least {min} ({hint})"),
        ));
    }
}

/// The largest `train.batch_size` accepted: past it the process only dies for
/// want of memory, without a word.
pub const MAX_BATCH: i64 = 1 << 20;

/// The most CPU threads libtorch is asked for (100,000 hung the process).
pub const MAX_THREADS: i64 = 1024;

/// The largest image side (`data.resolution`, or a synthetic `data.shape`).
pub const MAX_SIDE: i64 = 1024;

/// The most values a generated (toy or synthetic) dataset may hold: 2^31
/// f32s, 8 GiB. Past what the machine has, the allocation aborts the process.
const MAX_GENERATED_VALUES: f64 = (1u64 << 31) as f64;

/// Every problem with `cfg` on a machine with `hw`; empty when it can run.
pub fn validate(cfg: &RunConfig, hw: &Hardware) -> Vec<Problem> {
    let mut p = vec![];
    validate_optimizer(cfg, &mut p);
    validate_cadence(cfg, &mut p);
    validate_device(cfg, hw, &mut p);
    validate_diffusion(cfg, &mut p);
    validate_ema(cfg, &mut p);
    let shape = data_shape(cfg);
    validate_data(cfg, &shape, &mut p);
    validate_data_source(cfg, &mut p);
    validate_conditioning(cfg, &shape, &mut p);
    validate_eval_sampling(cfg, &mut p);
    validate_eval(cfg, &mut p);
    validate_model(cfg, &shape, &mut p);
    p
}

/// The optimizer and the batch: `train.lr` to `train.p_uncond`.
fn validate_optimizer(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let t = &cfg.train;
    finite_pos(p, "train.lr", t.lr, "2e-4 is typical");
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        p.push(Problem::new(
            "train.weight_decay",
            format!("= {}: must be ≥ 0 (0 or 0.01 are typical)", t.weight_decay),
        ));
    }
    in_unit(p, "train.adam_beta1", t.adam_beta1, "0.9 is standard");
    in_unit(p, "train.adam_beta2", t.adam_beta2, "0.999 is standard");
    finite_pos(p, "train.adam_eps", t.adam_eps, "1e-8 is standard");
    at_least(
        p,
        "train.steps",
        t.steps as i64,
        1,
        "the number of optimizer steps",
    );
    at_least(p, "train.batch_size", t.batch_size, 1, "64–256 is typical");
    if t.batch_size > MAX_BATCH {
        p.push(Problem::new(
            "train.batch_size",
            format!(
                "= {}: at most {MAX_BATCH} (2^20); a batch that large does not fit in memory for any model here (64–256 is typical)",
                t.batch_size
            ),
        ));
    }
    if !(t.grad_clip.is_finite() && t.grad_clip >= 0.0) {
        p.push(Problem::new(
            "train.grad_clip",
            format!(
                "= {}: must be ≥ 0 (1.0 is standard; 0 turns clipping off)",
                t.grad_clip
            ),
        ));
    }
    in_unit(
        p,
        "train.p_uncond",
        t.p_uncond,
        "the CFG dropout probability; 0.1–0.2 is typical",
    );
}

/// How often the loop logs and checkpoints, and how many threads it asks for.
fn validate_cadence(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let t = &cfg.train;
    at_least(
        p,
        "train.log_every",
        t.log_every as i64,
        1,
        "steps between log records",
    );
    at_least(
        p,
        "train.checkpoint_every",
        t.checkpoint_every as i64,
        1,
        "steps between checkpoints",
    );
    at_least(
        p,
        "train.keep_checkpoints",
        t.keep_checkpoints as i64,
        1,
        "how many recent checkpoints to keep",
    );
    at_least(
        p,
        "train.threads",
        t.threads,
        0,
        "0 keeps libtorch's default",
    );
    if t.threads > MAX_THREADS {
        p.push(Problem::new(
            "train.threads",
            format!("= {}: at most {MAX_THREADS}; one per physical core is best, 0 keeps libtorch's default", t.threads),
        ));
    }
}

/// `train.device`, and the settings that need a CUDA device, against `hw`.
fn validate_device(cfg: &RunConfig, hw: &Hardware, p: &mut Vec<Problem>) {
    let t = &cfg.train;
    // As the user wrote it in the messages: `train.device = "cpu"`.
    let named = t.device.to_string();
    let dev = t.device.resolve_on(hw);
    if t.precision == Precision::Fp16 && !dev.is_cuda() {
        p.push(Problem::new(
            "train.precision",
            format!("= \"fp16\" on the CPU (train.device = {named:?}): fp16 autocast needs a CUDA device; use \"bf16\" or \"fp32\" on a CPU"),
        ));
    }
    if t.cuda_graph && !dev.is_cuda() {
        p.push(Problem::new(
            "train.cuda_graph",
            format!("= true on the CPU (train.device = {named:?}): CUDA graphs need a CUDA device; set train.cuda_graph = false"),
        ));
    } else if t.cuda_graph && !hw.cuda_graphs {
        p.push(Problem::new(
            "train.cuda_graph",
            "= true, but this build of ddpm-lab has no CUDA graph support (PyTorch's CUDA headers were not found when it was built); set train.cuda_graph = false".to_string(),
        ));
    }
    if let tch::Device::Cuda(i) = dev {
        let n = hw.cuda_devices;
        if i as i64 >= n {
            p.push(Problem::new(
                "train.device",
                format!(
                    "= {named:?}: this machine has {n} CUDA device(s); use cpu, auto, or cuda:0…"
                ),
            ));
        }
    }
}

fn validate_diffusion(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let d = &cfg.diffusion;
    let sc: ScheduleConfig = d.schedule_config();
    if let Err(e) = sc.validate() {
        let key = format!("diffusion.{}", e.keys()[0]);
        p.push(Problem::new(&key, e.to_string()));
    }
    if let Err(e) = d.loss_weighting(cfg.eval.bpd_variance) {
        let crate::diffusion::objective::WeightingError::NotPositive { name, .. } = &e;
        p.push(Problem::new(&format!("diffusion.{name}"), e.to_string()));
    }
    finite_pos(
        p,
        "diffusion.p2_gamma",
        d.p2_gamma,
        "P2's exponent; 1 is the paper's value",
    );
    at_least(
        p,
        "diffusion.loss_aware_bins",
        d.loss_aware_bins as i64,
        1,
        "20 is the default",
    );
    if d.zero_terminal_snr && d.prediction == Prediction::Epsilon {
        p.push(Problem::new(
            "diffusion.zero_terminal_snr",
            "= true with diffusion.prediction = \"epsilon\": at zero SNR x_t is pure noise, so an ε-prediction cannot give x̂_0; use prediction \"v\" or \"x0\" (Lin et al. 2024)",
        ));
    }
}

fn validate_ema(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let e = &cfg.ema;
    for (i, &decay) in e.decays.iter().enumerate() {
        if !(decay > 0.0 && decay < 1.0) {
            p.push(Problem::new(
                &format!("ema.decays[{i}]"),
                format!("= {decay}: must be in (0, 1) (0.999 or 0.9999 are typical)"),
            ));
        }
        if e.decays[..i].contains(&decay) {
            p.push(Problem::new(
                &format!("ema.decays[{i}]"),
                format!("= {decay} is listed twice"),
            ));
        }
    }
    finite_pos(p, "ema.inv_gamma", e.inv_gamma, "1.0 as in diffusers");
    finite_pos(
        p,
        "ema.power",
        e.power,
        "2/3, or 3/4 for short runs, as in diffusers",
    );
    if e.mode == EmaMode::Power {
        validate_power_ema(cfg, p);
    }
}

/// The largest σ_rel of a power-function EMA (`run::phema::MAX_STD_REL`;
/// config cannot import run): 1/√12 ≈ 0.289 is the uniform average.
const MAX_STD_REL: f64 = 0.28;

/// `ema.mode = "power"`: its lengths, and enough snapshots to solve with.
fn validate_power_ema(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let e = &cfg.ema;
    if !e.decays.is_empty() {
        p.push(Problem::new(
            "ema.decays",
            format!("= {:?} with ema.mode = \"power\": a power-EMA run tracks ema.std_rel and reconstructs any decay after training (--weights phema-<σ>, inspect ema --decay); set ema.decays = []", e.decays),
        ));
    }
    if e.std_rel.is_empty() {
        p.push(Problem::new(
            "ema.std_rel",
            "= []: ema.mode = \"power\" tracks at least one length; the paper tracks [0.05, 0.10]",
        ));
    }
    for (i, &s) in e.std_rel.iter().enumerate() {
        if !(s > 0.0 && s <= MAX_STD_REL) {
            p.push(Problem::new(
                &format!("ema.std_rel[{i}]"),
                format!("= {s}: must be in (0, {MAX_STD_REL}] (the paper tracks 0.05 and 0.10)"),
            ));
        }
        if e.std_rel[..i].contains(&s) {
            p.push(Problem::new(
                &format!("ema.std_rel[{i}]"),
                format!("= {s} is listed twice"),
            ));
        }
    }
    let steps = cfg.train.steps;
    let count = e.snapshot_count(steps);
    if count < 2 {
        p.push(Problem::new(
            "ema.snapshot_every",
            format!(
                "= {} with train.steps = {steps} gives {count} snapshot(s) of each tracked EMA; the post-hoc reconstruction needs at least 2: lower it (0 = a twentieth of the run) or train longer",
                e.snapshot_every
            ),
        ));
    }
}

/// The generated sources' sample count and shape, and the data's size.
fn validate_data(cfg: &RunConfig, shape: &DataShape, p: &mut Vec<Problem>) {
    if cfg.data.n_samples == 0 {
        p.push(Problem::new(
            "data.n_samples",
            "= 0: a generated source needs at least 1 sample",
        ));
    }
    if cfg.data.source == DataSource::Synthetic
        && (cfg.data.shape.len() != 3 || cfg.data.shape.iter().any(|&x| x < 1))
    {
        p.push(Problem::new(
            "data.shape",
            format!(
                "= {:?}: expected [channels, height, width], e.g. [3, 32, 32]",
                cfg.data.shape
            ),
        ));
    }
    if cfg.data.source == DataSource::Synthetic
        && cfg.data.shape.len() == 3
        && ![1, 3].contains(&cfg.data.shape[0])
    {
        p.push(Problem::new(
            "data.shape",
            format!(
                "= {:?}: images have 1 channel (grayscale) or 3 (RGB); samples are written as PNG grids and scored by image evaluators",
                cfg.data.shape
            ),
        ));
    }
    if cfg.data.resolution > MAX_SIDE
        || shape.is_image() && shape.sample[1..].iter().any(|&s| s > MAX_SIDE)
    {
        p.push(Problem::new(
            if cfg.data.resolution > MAX_SIDE { "data.resolution" } else { "data.shape" },
            format!("makes images of {:?}: at most {MAX_SIDE} pixels a side (64 or 32 is typical for DDPM experiments)", shape.sample),
        ));
    } else if matches!(cfg.data.source, DataSource::Toy | DataSource::Synthetic) {
        // A generated dataset is held in memory as f32.
        let values = cfg.data.n_samples as f64
            * shape
                .sample
                .iter()
                .map(|&s| s.max(1) as f64)
                .product::<f64>();
        if values > MAX_GENERATED_VALUES {
            p.push(Problem::new(
                "data.n_samples",
                format!(
                    "= {}: {} samples of {:?} are {:.1} GiB in memory, more than {} GiB; lower data.n_samples",
                    cfg.data.n_samples,
                    cfg.data.n_samples,
                    shape.sample,
                    values * 4.0 / (1u64 << 30) as f64,
                    (MAX_GENERATED_VALUES as u64 * 4) >> 30
                ),
            ));
        }
    }
}

/// Labels, condition vectors, and the classifier-free guidance dropout that
/// needs one of them.
fn validate_conditioning(cfg: &RunConfig, shape: &DataShape, p: &mut Vec<Problem>) {
    let t = &cfg.train;
    if cfg.data.labels && shape.num_classes.is_none() && cfg.data.source != DataSource::Folder {
        p.push(Problem::new(
            "data.labels",
            format!(
                "= true, but {} has no class labels; set data.labels = false",
                source_name(cfg)
            ),
        ));
    }
    if cfg.data.vector_condition
        && shape.cond_dim.is_none()
        && cfg.data.source != DataSource::Tabular
    {
        p.push(Problem::new(
            "data.vector_condition",
            format!("= true, but {} has no condition vector (eight-gaussians and swiss-roll have one); set it to false", source_name(cfg)),
        ));
    }
    if cfg.data.vector_condition
        && cfg.data.source == DataSource::Tabular
        && cfg.data.condition_columns.is_empty()
    {
        p.push(Problem::new(
            "data.vector_condition",
            "= true, but data.condition_columns is empty: list the conditioning columns",
        ));
    }
    let conditioned = cfg.data.labels || cfg.data.uses_vector_condition();
    if t.p_uncond > 0.0 && !conditioned {
        p.push(Problem::new("train.p_uncond", format!("= {}: classifier-free guidance dropout needs a condition; set data.labels = true, or p_uncond = 0", t.p_uncond)));
    }
}

/// The sampler's step count and guidance scales.
fn validate_eval_sampling(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let t = &cfg.train;
    let ev = &cfg.eval;
    if ev.sampling_steps > cfg.diffusion.timesteps as u64 {
        p.push(Problem::new(
            "eval.sampling_steps",
            format!(
                "= {}: more than diffusion.timesteps = {}; use at most that, or 0 for all",
                ev.sampling_steps, cfg.diffusion.timesteps
            ),
        ));
    }
    let (key, says) = if ev.guidance_scales.is_empty() {
        ("eval.guidance_scale", "=")
    } else {
        ("eval.guidance_scales", "has")
    };
    if let Some(bad) = ev
        .scales()
        .into_iter()
        .find(|g| !(g.is_finite() && *g >= 0.0))
    {
        p.push(Problem::new(
            key,
            format!("{says} {bad}: a guidance scale must be ≥ 0 (1 = plain conditional, 3 to 7 is typical for CFG)"),
        ));
    } else if let Some(g) = ev
        .scales()
        .into_iter()
        .find(|g| *g != 1.0)
        .filter(|_| t.p_uncond == 0.0)
    {
        p.push(Problem::new(
            key,
            format!("{says} {g}: guidance mixes conditional and unconditional predictions, but train.p_uncond = 0 never trains the unconditional one; set train.p_uncond (0.1 is typical) or use scale 1"),
        ));
    }
}

/// The evaluation's counts, files and schedule.
fn validate_eval(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let t = &cfg.train;
    let ev = &cfg.eval;
    if ev.bpd_images == 0 {
        p.push(Problem::new(
            "eval.bpd_images",
            "= 0: bits/dim needs at least 1 held-out image (1000 is typical)",
        ));
    }
    if !ev.inception.is_empty() && !std::path::Path::new(&ev.inception).is_file() {
        p.push(Problem::new(
            "eval.inception",
            format!("= {:?}: no such file; point it at your copy of the TorchScript inception-2015-12-05.pt, or remove the key", ev.inception),
        ));
    }
    if ev.grid_images == 0 {
        p.push(Problem::new(
            "eval.grid_images",
            "= 0: a sample grid needs at least 1 image (64 is typical)",
        ));
    }
    if !(ev.eta.is_finite() && (0.0..=1.0).contains(&ev.eta)) {
        p.push(Problem::new(
            "eval.eta",
            format!(
                "= {}: DDIM's η must be in [0, 1] (0 deterministic, 1 DDPM-like)",
                ev.eta
            ),
        ));
    }
    if ev.timestep_bins == 0 || ev.timestep_bins > cfg.diffusion.timesteps {
        p.push(Problem::new(
            "eval.timestep_bins",
            format!(
                "= {}: must be between 1 and diffusion.timesteps = {} (20 is typical)",
                ev.timestep_bins, cfg.diffusion.timesteps
            ),
        ));
    }
    if ev.probe_size == 0 {
        p.push(Problem::new(
            "eval.probe_size",
            "= 0: the per-timestep loss needs at least 1 held-out sample (256 is typical)",
        ));
    }
    if let Some(s) = ev.at_steps.iter().find(|&&s| s > t.steps) {
        p.push(Problem::new(
            "eval.at_steps",
            format!(
                "contains {s}, after the last step (train.steps = {}); remove it or train longer",
                t.steps
            ),
        ));
    }
    if ev.num_samples == 0 {
        p.push(Problem::new(
            "eval.num_samples",
            "= 0: draw at least 1 sample (1000 or more for FID-like metrics)",
        ));
    }
}

fn source_name(cfg: &RunConfig) -> String {
    match cfg.data.source {
        DataSource::Toy => format!(
            "the toy source {}",
            toml::Value::try_from(cfg.data.toy).map_or(String::new(), |v| v.to_string())
        ),
        DataSource::Synthetic => "the synthetic source".into(),
        DataSource::Mnist => "mnist".into(),
        DataSource::Cifar10 => "cifar10".into(),
        DataSource::Folder => "an image folder".into(),
        DataSource::Tabular => "a tabular file".into(),
    }
}

/// Settings that only some sources take.
fn validate_data_source(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let d = &cfg.data;
    let needs_path = matches!(
        d.source,
        DataSource::Cifar10 | DataSource::Folder | DataSource::Tabular
    );
    if needs_path && d.path.is_empty() {
        p.push(Problem::new(
            "data.path",
            format!(
                "is empty: {} needs data.path (the {})",
                source_name(cfg),
                if d.source == DataSource::Tabular {
                    "CSV or Parquet file"
                } else {
                    "folder"
                }
            ),
        ));
    }
    if d.resolution < 0 {
        p.push(Problem::new(
            "data.resolution",
            format!("= {}: must be ≥ 0 (0 keeps the native size)", d.resolution),
        ));
    }
    let native = match d.source {
        DataSource::Mnist => Some(28),
        DataSource::Cifar10 => Some(32),
        DataSource::Synthetic => d.shape.get(1).copied(),
        _ => None,
    };
    if let Some(n) = native {
        if d.resolution > n {
            p.push(Problem::new(
                "data.resolution",
                format!(
                    "= {}: area averaging can only shrink {} (native {n}×{n}); pick ≤ {n}",
                    d.resolution,
                    source_name(cfg)
                ),
            ));
        }
    }
    if d.source == DataSource::Folder && d.resolution < 1 {
        p.push(Problem::new(
            "data.resolution",
            "= 0: an image folder needs a size to resize and crop to, e.g. 32",
        ));
    }
    let images = matches!(
        d.source,
        DataSource::Synthetic | DataSource::Mnist | DataSource::Cifar10 | DataSource::Folder
    );
    if d.flip && !images {
        p.push(Problem::new(
            "data.flip",
            format!("= true, but {} is not images", source_name(cfg)),
        ));
    }
    if matches!(d.source, DataSource::Folder | DataSource::Tabular)
        && !(d.test_fraction > 0.0 && d.test_fraction < 1.0)
    {
        p.push(Problem::new(
            "data.test_fraction",
            format!(
                "= {}: must be in (0, 1) (0.2 is the default)",
                d.test_fraction
            ),
        ));
    }
    validate_columns(cfg, p);
}

/// A tabular source's columns: some to model, each named once.
fn validate_columns(cfg: &RunConfig, p: &mut Vec<Problem>) {
    let d = &cfg.data;
    if d.source == DataSource::Tabular && d.columns.is_empty() {
        p.push(Problem::new(
            "data.columns",
            "is empty: name the modelled columns of the file, e.g. [\"spx\", \"ndx\"]",
        ));
    }
    // Each column once: the model's columns, then its condition columns.
    let all: Vec<(&str, &String)> = d
        .columns
        .iter()
        .map(|c| ("data.columns", c))
        .chain(
            d.condition_columns
                .iter()
                .map(|c| ("data.condition_columns", c)),
        )
        .collect();
    for (i, (key, c)) in all.iter().enumerate() {
        if let Some((first, _)) = all[..i].iter().find(|(_, o)| o == c) {
            let message = if first == key {
                format!("lists {c:?} twice; name each column once")
            } else {
                format!("lists {c:?}, which data.columns models too; a column is either modelled or a condition, not both")
            };
            p.push(Problem::new(key, message));
            break;
        }
    }
    if d.source != DataSource::Tabular && !(d.columns.is_empty() && d.condition_columns.is_empty())
    {
        p.push(Problem::new(
            "data.columns",
            format!(
                "only apply to data.source = \"tabular\", not {}",
                source_name(cfg)
            ),
        ));
    }
}

fn validate_model(cfg: &RunConfig, shape: &DataShape, p: &mut Vec<Problem>) {
    let m = &cfg.model;
    let v = m.preset.values();
    let preset = m.preset.name();
    match (v.family, shape.is_image()) {
        (Family::UNet, false) => {
            p.push(Problem::new("model.preset", format!("= {preset:?} is a UNet for images, but the data are vectors of {:?}; use \"mlp-small\" or \"mlp-medium\"", shape.sample)));
            return;
        }
        (Family::Mlp, true) => {
            p.push(Problem::new("model.preset", format!("= {preset:?} is an MLP for vectors, but the data are images {:?}; use a UNet preset such as \"unet-mnist-small\" or \"ddpm-cifar10\"", shape.sample)));
            return;
        }
        _ => {}
    }
    validate_init_from(cfg, v.family, p);
    let dropout = m.dropout.unwrap_or(v.dropout);
    in_unit(p, "model.dropout", dropout, "0.1 as in DDPM");
    if v.family == Family::Mlp {
        at_least(
            p,
            "model.hidden",
            m.hidden.unwrap_or(v.hidden),
            1,
            "width of the MLP",
        );
        at_least(
            p,
            "model.depth",
            m.depth.unwrap_or(v.depth),
            1,
            "number of residual blocks",
        );
        // Each residual block holds three hidden × hidden linears.
        let (hidden, depth) = (m.hidden.unwrap_or(v.hidden), m.depth.unwrap_or(v.depth));
        too_big(
            p,
            "model.hidden",
            3.0 * depth as f64 * (hidden as f64).powi(2),
        );
        return;
    }
    validate_unet(cfg, shape, p);
}

/// `model.init_from`: a folder with a diffusers UNet2DModel config, for a
/// UNet. Whether its network is the run's is checked when training builds
/// the model (the classes of an image folder are known only then).
fn validate_init_from(cfg: &RunConfig, family: Family, p: &mut Vec<Problem>) {
    let dir = &cfg.model.init_from;
    if dir.is_empty() {
        return;
    }
    let key = "model.init_from";
    if family == Family::Mlp {
        p.push(Problem::new(key, format!("= {dir:?}: a diffusers UNet2DModel can only start a UNet, and model.preset = {:?} is an MLP; use a UNet preset, or remove the key", cfg.model.preset.name())));
        return;
    }
    let path = std::path::Path::new(dir);
    if !path.is_dir() {
        p.push(Problem::new(key, format!("= {dir:?}: no such folder in {} (a relative path resolves from the folder ddpm-lab runs in); give a folder written by `ddpm-lab export --format diffusers`, or a diffusers UNet2DModel folder", crate::data::error::working_folder().display())));
    } else if !path.join("unet/config.json").is_file() && !path.join("config.json").is_file() {
        p.push(Problem::new(key, format!("= {dir:?}: has neither unet/config.json nor config.json; give a diffusers pipeline folder (ddpm-lab export --format diffusers) or its unet/ folder")));
    }
}

/// A UNet preset and its overrides, against the images' size.
fn validate_unet(cfg: &RunConfig, shape: &DataShape, p: &mut Vec<Problem>) {
    let m = &cfg.model;
    let v = m.preset.values();
    let ch = m.ch.unwrap_or(v.ch);
    let ch_mult = m.ch_mult.clone().unwrap_or(v.ch_mult);
    let groups = m.norm_groups.unwrap_or(v.norm_groups);
    let heads = m.attn_heads.unwrap_or(v.attn_heads);
    let attn = m.attn_resolutions.clone().unwrap_or(v.attn_resolutions);
    at_least(p, "model.ch", ch, 1, "base channels; 128 in DDPM");
    at_least(
        p,
        "model.num_res_blocks",
        m.num_res_blocks.unwrap_or(v.num_res_blocks),
        1,
        "2 in DDPM",
    );
    at_least(
        p,
        "model.norm_groups",
        groups,
        1,
        "GroupNorm groups; 32 in DDPM",
    );
    at_least(p, "model.attn_heads", heads, 1, "1 in DDPM");
    if ch_mult.is_empty() || ch_mult.iter().any(|&x| x < 1) {
        p.push(Problem::new(
            "model.ch_mult",
            format!(
                "= {ch_mult:?}: needs one multiplier ≥ 1 per resolution level, e.g. [1, 2, 2, 2]"
            ),
        ));
        return;
    }
    if ch < 1 || groups < 1 || heads < 1 {
        return;
    }
    let (h, w) = (shape.sample[1], shape.sample[2]);
    let levels = ch_mult.len() as u32;
    let factor = 1i64 << (levels - 1);
    if h != w || h % factor != 0 {
        p.push(Problem::new("model.ch_mult", format!("has {levels} levels, so images must be square with a side divisible by {factor}; the data are {h}×{w}. Use fewer levels or another data.resolution")));
        return;
    }
    let resolutions: Vec<i64> = (0..levels).map(|l| h >> l).collect();
    for r in &attn {
        if !resolutions.contains(r) {
            p.push(Problem::new(
                "model.attn_resolutions",
                format!(
                    "contains {r}, but the UNet's resolutions are {resolutions:?}; pick from those"
                ),
            ));
        }
    }
    for mult in std::iter::once(&1).chain(&ch_mult) {
        let c = ch * mult;
        if c % groups != 0 {
            p.push(Problem::new("model.norm_groups", format!("= {groups} does not divide {c} channels (ch {ch} × ch_mult {mult}); pick a divisor of every level's channels")));
            break;
        }
        if c % heads != 0 {
            p.push(Problem::new(
                "model.attn_heads",
                format!("= {heads} does not divide {c} channels; pick a divisor"),
            ));
            break;
        }
    }
    // 3×3 convolutions per level: down blocks (2 convs of c²), up blocks (of
    // up to 2c inputs, and one more), the resampling conv; then the middle.
    let blocks = m.num_res_blocks.unwrap_or(v.num_res_blocks) as f64;
    let per_level = 9.0 * (2.0 * blocks + 3.0 * (blocks + 1.0) + 2.0);
    let widest = (ch * ch_mult.iter().max().copied().unwrap_or(1)) as f64;
    let estimate = ch_mult
        .iter()
        .map(|&mult| per_level * ((ch * mult) as f64).powi(2))
        .sum::<f64>()
        + 40.0 * widest * widest;
    too_big(p, "model.ch", estimate);
}

/// The most parameters a model may have: 2·10⁹ is 8 GB of fp32 weights, and
/// training holds four to six times that (gradients, AdamW moments, EMAs).
/// Past it libtorch cannot allocate the model and panics.
const MAX_PARAMETERS: f64 = 2e9;

/// A model whose estimated parameter count (`estimate`, within ~15% for the
/// presets) is past [`MAX_PARAMETERS`].
fn too_big(p: &mut Vec<Problem>, key: &str, estimate: f64) {
    if estimate > MAX_PARAMETERS {
        p.push(Problem::new(
            key,
            format!("makes a model of about {estimate:.1e} parameters, more than {MAX_PARAMETERS:.0e} (its weights, gradients and optimizer state would not fit in memory); make it smaller (the largest preset, ddpm-cifar10, has 3.6e7)"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(cuda_devices: i64, cuda_graphs: bool) -> Hardware {
        Hardware {
            cuda_devices,
            cuda_graphs,
        }
    }

    fn with_train(f: impl FnOnce(&mut super::super::run::TrainConfig)) -> RunConfig {
        let mut cfg = RunConfig::default();
        f(&mut cfg.train);
        cfg
    }

    /// The messages `validate` gives for `key`.
    fn about(cfg: &RunConfig, hw: &Hardware, key: &str) -> Vec<String> {
        validate(cfg, hw)
            .into_iter()
            .filter(|p| p.key == key)
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn the_default_config_is_valid_on_any_machine() {
        for hw in [machine(0, false), machine(0, true), machine(8, true)] {
            assert_eq!(validate(&RunConfig::default(), &hw), vec![], "{hw:?}");
        }
    }

    #[test]
    fn a_cuda_index_is_checked_against_the_hardware_given_not_this_machine() {
        let cfg = with_train(|t| t.device = DeviceChoice::Cuda(3));
        assert_eq!(
            about(&cfg, &machine(2, true), "train.device"),
            ["= \"cuda:3\": this machine has 2 CUDA device(s); use cpu, auto, or cuda:0…"]
        );
        assert_eq!(
            about(&cfg, &machine(4, true), "train.device"),
            Vec::<String>::new()
        );
        assert_eq!(validate(&cfg, &machine(4, true)), vec![]);
    }

    #[test]
    fn cuda_graphs_need_a_build_with_them() {
        let cfg = with_train(|t| {
            t.device = DeviceChoice::Cuda(0);
            t.cuda_graph = true;
        });
        assert_eq!(
            about(&cfg, &machine(1, false), "train.cuda_graph"),
            ["= true, but this build of ddpm-lab has no CUDA graph support (PyTorch's CUDA headers were not found when it was built); set train.cuda_graph = false"]
        );
        assert_eq!(validate(&cfg, &machine(1, true)), vec![]);
    }

    #[test]
    fn auto_is_the_cpu_on_a_machine_without_cuda_devices() {
        let cfg = with_train(|t| {
            t.device = DeviceChoice::Auto;
            t.cuda_graph = true;
        });
        assert_eq!(
            about(&cfg, &machine(0, true), "train.cuda_graph"),
            ["= true on the CPU (train.device = \"auto\"): CUDA graphs need a CUDA device; set train.cuda_graph = false"]
        );
        assert_eq!(validate(&cfg, &machine(1, true)), vec![]);
    }

    #[test]
    fn fp16_on_the_cpu_is_a_problem_whatever_the_machine_has() {
        let cfg = with_train(|t| {
            t.device = DeviceChoice::Cpu;
            t.precision = Precision::Fp16;
        });
        for hw in [machine(0, false), machine(4, true)] {
            assert_eq!(
                about(&cfg, &hw, "train.precision"),
                ["= \"fp16\" on the CPU (train.device = \"cpu\"): fp16 autocast needs a CUDA device; use \"bf16\" or \"fp32\" on a CPU"]
            );
        }
        let on_gpu = with_train(|t| {
            t.device = DeviceChoice::Cuda(0);
            t.precision = Precision::Fp16;
        });
        assert_eq!(validate(&on_gpu, &machine(1, false)), vec![]);
    }

    #[test]
    fn a_power_ema_needs_lengths_in_range_and_two_snapshots() {
        let hw = machine(0, false);
        let mut cfg = RunConfig::default();
        cfg.ema.mode = EmaMode::Power;
        cfg.ema.decays = vec![];
        assert_eq!(validate(&cfg, &hw), vec![]);
        cfg.ema.std_rel = vec![0.05, 0.29, 0.0];
        assert_eq!(
            about(&cfg, &hw, "ema.std_rel[1]"),
            ["= 0.29: must be in (0, 0.28] (the paper tracks 0.05 and 0.10)"]
        );
        assert_eq!(about(&cfg, &hw, "ema.std_rel[2]").len(), 1);
        cfg.ema.std_rel = vec![0.05];
        cfg.ema.snapshot_every = 600;
        cfg.train.steps = 1000;
        assert_eq!(validate(&cfg, &hw), vec![], "600 and the last step: 2");
        cfg.ema.snapshot_every = 1000;
        assert!(about(&cfg, &hw, "ema.snapshot_every")[0]
            .starts_with("= 1000 with train.steps = 1000 gives 1 snapshot(s)"));
        cfg.ema.snapshot_every = 0;
        cfg.ema.decays = vec![0.999];
        assert!(about(&cfg, &hw, "ema.decays")[0].contains("set ema.decays = []"));
    }

    #[test]
    fn init_from_needs_a_unet_and_a_folder_with_a_diffusers_config() {
        let hw = machine(0, false);
        let mut cfg = RunConfig::default();
        cfg.model.init_from = "no/such/export".into();
        let m = about(&cfg, &hw, "model.init_from");
        assert!(m.len() == 1 && m[0].contains("is an MLP"), "{m:?}");
        cfg.data.source = DataSource::Synthetic;
        cfg.model.preset = crate::model::ModelPreset::UnetTiny;
        let m = about(&cfg, &hw, "model.init_from");
        assert!(m.len() == 1 && m[0].contains("no such folder in "), "{m:?}");
        let dir = tempfile::tempdir().unwrap();
        cfg.model.init_from = dir.path().display().to_string();
        let m = about(&cfg, &hw, "model.init_from");
        assert!(
            m.len() == 1 && m[0].contains("has neither unet/config.json nor config.json"),
            "{m:?}"
        );
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert_eq!(about(&cfg, &hw, "model.init_from"), Vec::<String>::new());
    }
}
