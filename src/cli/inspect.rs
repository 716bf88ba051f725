//! `ddpm-lab inspect`: print the numbers a run would use, so users (and tests)
//! can see them: a schedule's tables, a loss weighting per timestep, the
//! devices, (`inspect run`, [`super::inspect_run`]) a run folder, and
//! (`inspect ema`, [`super::inspect_ema`]) a post-hoc EMA's profile.

use super::output::{print_table, Column, Format};
use crate::config::run::{DataSource, RunConfig};
use crate::config::{self, SetArg, Sources};
use crate::diffusion::objective::WeightingError;
use crate::diffusion::sampling::Variance;
use crate::diffusion::{
    LossWeighting, NoiseSchedule, Prediction, ScheduleConfig, ScheduleKind, WeightingKind,
};
use crate::exit::bad_input;
use crate::model::{parameter_count, parameter_table, Denoiser, Family, ModelPreset, ModelSpec};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum Inspect {
    /// A noise schedule: t, beta, alpha_bar, snr, log_snr, posterior_variance.
    Schedule(ScheduleCmd),
    /// A loss weighting: t, snr, and the weight on the prediction target's MSE.
    Weights(WeightsCmd),
    /// A model: parameters per block and in total.
    Model(ModelCmd),
    /// A run config, resolved: defaults, the file, DDPM_LAB_* variables and --set, as TOML.
    Config(ConfigCmd),
    /// The devices libtorch sees (CUDA, cuDNN, CPU threads).
    Devices(DevicesCmd),
    /// A run, job or sweep folder: what it is, its state, and each weight
    /// set's warm-up (effective decay, initial weights left μ^N).
    Run(super::inspect_run::RunCmd),
    /// A post-hoc EMA of a run trained with ema.mode = "power": the weight
    /// each training step carries (CSV step,weight), and the solve's residual.
    Ema(super::inspect_ema::EmaCmd),
}

#[derive(Debug, Args)]
pub struct DevicesCmd {
    /// Print only the number of CUDA devices, without touching them (the
    /// sweep runner asks this of a child process, so it never holds a CUDA
    /// context itself).
    #[arg(long)]
    pub count: bool,
}

/// The schedule flags, shared by `inspect schedule` and `inspect weights`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The noise schedule.
    #[arg(long, value_enum, default_value = "linear")]
    pub schedule: ScheduleKind,
    /// The number of diffusion steps T (at least 1).
    #[arg(long, default_value_t = 1000, value_parser = parse_timesteps)]
    pub timesteps: u64,
    /// First beta of the linear and scaled-linear schedules (ignored by cosine).
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
    pub beta_start: f64,
    /// Last beta of the linear and scaled-linear schedules (ignored by cosine).
    #[arg(long, default_value_t = 0.02, allow_negative_numbers = true)]
    pub beta_end: f64,
    /// Rescale so the last step has zero SNR (Lin et al. 2024).
    #[arg(long)]
    pub zero_terminal_snr: bool,
    /// Output format: aligned table, or CSV with full f64 precision.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

impl ScheduleArgs {
    fn build(&self) -> anyhow::Result<NoiseSchedule> {
        NoiseSchedule::new(ScheduleConfig {
            schedule: self.schedule,
            timesteps: self.timesteps as usize,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            zero_terminal_snr: self.zero_terminal_snr,
        })
        .map_err(|e| {
            let flags: Vec<String> = e
                .keys()
                .iter()
                .map(|k| format!("--{}", k.replace('_', "-")))
                .collect();
            bad_input(format!("invalid {}: {e}", flags.join(" / ")))
        })
    }
}

#[derive(Debug, Args)]
pub struct ScheduleCmd {
    #[command(flatten)]
    pub schedule: ScheduleArgs,
}

#[derive(Debug, Args)]
pub struct ModelCmd {
    /// A model preset, built for its usual data (ddpm-cifar10: 3×32×32; unet-*: 1×28×28; mlp-*: 2-D).
    #[arg(
        long,
        value_enum,
        conflicts_with = "config",
        required_unless_present = "config"
    )]
    pub preset: Option<ModelPreset>,
    /// A run config: the model it would train.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config key of the preset's or the file's config, e.g. --set model.ch=64.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = SetArg::parse)]
    pub sets: Vec<SetArg>,
}

#[derive(Debug, Args)]
pub struct ConfigCmd {
    /// The run config; without it, the built-in defaults.
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. --set train.lr=1e-4.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = SetArg::parse)]
    pub sets: Vec<SetArg>,
}

#[derive(Debug, Args)]
pub struct WeightsCmd {
    /// The loss weighting (chapter §1.4).
    #[arg(long, value_enum, default_value = "simple")]
    pub weighting: WeightingKind,
    /// γ of min-snr (default 5) or of p2 (default 1); must be > 0.
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f64>,
    /// k of p2 (default 1); must be > 0.
    #[arg(long, allow_negative_numbers = true)]
    pub p2_k: Option<f64>,
    /// σ_t² of vlb: the reverse variance its bound is scored with, as a run's
    /// eval.bpd_variance (default fixed-small).
    #[arg(long, value_enum)]
    pub variance: Option<super::sample::VarianceArg>,
    /// What the model predicts; the weight is on this target's MSE.
    #[arg(long, value_enum, default_value = "epsilon")]
    pub prediction: Prediction,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
}

fn parse_timesteps(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("T must be at least 1 (1000 is standard)".into()),
        Ok(t) => Ok(t),
        Err(_) => Err("expected a whole number of diffusion steps, e.g. 1000".into()),
    }
}

pub fn run(cmd: Inspect) -> anyhow::Result<()> {
    match cmd {
        Inspect::Schedule(c) => schedule(c),
        Inspect::Weights(c) => weights(c),
        Inspect::Model(c) => model(c),
        Inspect::Config(c) => {
            let cfg = config::load(&Sources {
                file: c.config,
                sets: c.sets,
                env: true,
            })
            .map_err(bad_input)?;
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Inspect::Devices(c) => devices(c),
        Inspect::Run(c) => super::inspect_run::run(c),
        Inspect::Ema(c) => super::inspect_ema::run(c),
    }
}

fn schedule(c: ScheduleCmd) -> anyhow::Result<()> {
    let s = c.schedule.build()?;
    let t: Vec<i64> = (0..s.timesteps() as i64).collect();
    print_table(
        &[
            Column::Int("t", t),
            Column::Float("beta", &s.betas),
            Column::Float("alpha_bar", &s.alpha_bar),
            Column::Float("snr", &s.snr),
            Column::Float("log_snr", &s.log_snr),
            Column::Float("posterior_variance", &s.posterior_variance),
        ],
        c.schedule.format,
    )
}

fn weights(c: WeightsCmd) -> anyhow::Result<()> {
    let applies = |flag: &str, ok: bool| -> anyhow::Result<()> {
        if ok {
            Ok(())
        } else {
            Err(bad_input(format!(
                "{flag} does not apply to --weighting {}: --gamma is for min-snr and p2, --p2-k for p2, --variance for vlb",
                c.weighting.name()
            )))
        }
    };
    applies(
        "--gamma",
        c.gamma.is_none() || matches!(c.weighting, WeightingKind::MinSnr | WeightingKind::P2),
    )?;
    applies(
        "--p2-k",
        c.p2_k.is_none() || c.weighting == WeightingKind::P2,
    )?;
    applies(
        "--variance",
        c.variance.is_none() || c.weighting == WeightingKind::Vlb,
    )?;
    let variance = match c.variance {
        Some(super::sample::VarianceArg::FixedLarge) => Variance::FixedLarge,
        Some(super::sample::VarianceArg::FixedSmall) | None => Variance::FixedSmall,
    };
    let w = LossWeighting::new(c.weighting, c.gamma, c.p2_k, variance).map_err(|e| {
        let WeightingError::NotPositive { name, value, hint } = e;
        let flag = if name == "p2_k" { "--p2-k" } else { "--gamma" };
        bad_input(format!(
            "invalid value {value} for {flag}: it must be a finite number > 0 ({hint})"
        ))
    })?;
    let s = c.schedule.build()?;
    let weight = w.target_weights(c.prediction, &s);
    print_table(
        &[
            Column::Int("t", (0..s.timesteps() as i64).collect()),
            Column::Float("snr", &s.snr),
            Column::Float("weight", &weight),
        ],
        c.schedule.format,
    )
}

/// The config `inspect model --preset` builds: the preset on its usual data.
pub fn preset_config(preset: ModelPreset) -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.model.preset = preset;
    match preset.values().family {
        Family::Mlp => cfg.data.source = DataSource::Toy,
        Family::UNet => {
            cfg.data.source = DataSource::Synthetic;
            cfg.data.shape = if preset == ModelPreset::DdpmCifar10 {
                vec![3, 32, 32]
            } else {
                vec![1, 28, 28]
            };
        }
    }
    cfg
}

fn model(c: ModelCmd) -> anyhow::Result<()> {
    let cfg = match (&c.preset, &c.config) {
        (Some(p), _) => {
            // The preset's config under the --set values, checked like any config.
            let mut fig =
                figment::Figment::from(figment::providers::Serialized::defaults(preset_config(*p)));
            for s in &c.sets {
                fig = fig.merge(s.clone());
            }
            config::load::extract(&fig, &[]).map_err(|problems| {
                bad_input(config::ConfigError {
                    origin: format!("--preset {}", p.name()),
                    problems,
                })
            })?
        }
        (None, Some(path)) => config::load(&Sources {
            file: Some(path.clone()),
            sets: c.sets.clone(),
            env: true,
        })
        .map_err(bad_input)?,
        (None, None) => unreachable!("clap requires --preset or --config"),
    };
    let classes = crate::data::num_classes(&cfg.data).map_err(bad_input)?;
    let spec = config::model_spec(&cfg, classes);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = Denoiser::new(vs.root(), &spec);
    let table = parameter_table(&vs);
    let width = table.iter().map(|(b, _)| b.len()).max().unwrap_or(5).max(5);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let desc = match &spec {
        ModelSpec::Unet(u) => format!(
            "UNet: {}×{}×{}, ch {}, ch_mult {:?}, {} res blocks, attention at {:?}, dropout {}, {} classes",
            u.in_channels, u.resolution, u.resolution, u.ch, u.ch_mult, u.num_res_blocks, u.attn_resolutions, u.dropout, u.num_classes
        ),
        ModelSpec::Mlp(m) => format!("MLP: dim {}, hidden {}, depth {}, {} classes", m.dim, m.hidden, m.depth, m.num_classes),
    };
    let _ = writeln!(out, "{desc}");
    let _ = writeln!(out, "{:<width$}  {:>12}", "block", "parameters");
    for (b, n) in &table {
        let _ = writeln!(out, "{b:<width$}  {n:>12}");
    }
    let _ = writeln!(out, "parameters: {}", parameter_count(&vs));
    Ok(())
}

fn devices(c: DevicesCmd) -> anyhow::Result<()> {
    let n = tch::Cuda::device_count();
    if c.count {
        println!("{n}");
        return Ok(());
    }
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cuda devices: {n}");
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    println!(
        "cuda graphs (train.cuda_graph): {}",
        if crate::train::cuda_graph::supported() {
            "built in"
        } else {
            "not in this build"
        }
    );
    println!("cpu threads: {}", tch::get_num_threads());
    for i in 0..n.max(0) as usize {
        println!("cuda:{i}: {}", probe(tch::Device::Cuda(i)));
    }
    println!("cpu: {}", probe(tch::Device::Cpu));
    Ok(())
}

/// Run a small matmul on `device` and compare it with the CPU, so "available"
/// means "computes correctly", not only "a driver answered".
fn probe(device: tch::Device) -> String {
    let run = || -> Result<String, tch::TchError> {
        tch::manual_seed(0);
        let a = tch::Tensor::f_randn([256, 256], (tch::Kind::Float, tch::Device::Cpu))?;
        let expect = a.f_matmul(&a)?;
        let start = std::time::Instant::now();
        let got = a
            .f_to_device(device)?
            .f_matmul(&a.f_to_device(device)?)?
            .f_to_device(tch::Device::Cpu)?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let err = (got - &expect).f_abs()?.f_max()?.f_double_value(&[])?;
        Ok(format!(
            "ok (256x256 matmul, max |diff| vs cpu {err:.1e}, {ms:.1} ms incl. copies)"
        ))
    };
    run().unwrap_or_else(|e| format!("FAILED: {e}"))
}
