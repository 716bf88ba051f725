//! `ddpm-lab export RUN --format diffusers --out DIR`: one weight set of one
//! checkpoint of a trained run, written as a folder another tool loads
//! ([`crate::export`]). The run folder and the weight set are chosen as for
//! `sample`.

use crate::diffusion::diffusers_scheduler::DdpmSchedulerConfig;
use crate::eval::trained;
use crate::exit::Classified;
use crate::export::diffusers::{self, DiffusersExport, ExportError};
use crate::model::diffusers_config::UNet2DModelConfig;
use crate::run::Weights;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// The formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A diffusers DDPMPipeline folder: model_index.json, unet/ (UNet2DModel
    /// config and safetensors weights) and scheduler/ (DDPMScheduler).
    Diffusers,
}

#[derive(Debug, Args)]
pub struct ExportCmd {
    /// A run folder: `ddpm-lab train --out`, or a sweep's
    /// results/<sweep>/runs/<run>/ (the ids the plan and report print) or jobs/<job>/.
    pub run_dir: PathBuf,
    /// The format to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The folder to write; it must not exist, or be empty.
    #[arg(long)]
    pub out: PathBuf,
    /// The weights: raw or ema-<decay>. Default: as for `sample` (a sweep
    /// run's own set; otherwise the warm EMA of longest memory, else raw).
    #[arg(long)]
    pub weights: Option<Weights>,
    /// The checkpoint's step (default: the latest).
    #[arg(long)]
    pub step: Option<u64>,
    /// Only warnings, errors and the line naming what was written.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(cmd: ExportCmd) -> anyhow::Result<()> {
    match cmd.format {
        ExportFormat::Diffusers => export_diffusers(&cmd),
    }
}

fn export_diffusers(cmd: &ExportCmd) -> anyhow::Result<()> {
    // Refused before anything is loaded.
    diffusers::check_out(&cmd.out).map_err(Classified::into_cli)?;
    let h = super::handle::open(&cmd.run_dir)?;
    let (weights, named_by) =
        super::handle::pick_weights(&h, cmd.weights, cmd.step, cmd.quiet, "export");
    let tm = trained::load(
        &h.trained.root,
        cmd.step,
        weights,
        named_by,
        tch::Device::Cpu,
    )
    .map_err(Classified::into_cli)?;
    for w in super::handle::cold_warnings(&h, &[weights], tm.step) {
        eprintln!("warning: {w}");
    }
    let unet =
        UNet2DModelConfig::from_spec(&tm.spec).map_err(|e| ExportError::from(e).into_cli())?;
    // The scheduler samples as `sample`'s DDPM does with the run's eval settings.
    let cfg = &h.config;
    let opts = cfg
        .eval
        .sampling_options(crate::config::data_shape(cfg).is_image());
    let scheduler = DdpmSchedulerConfig::new(
        &cfg.diffusion.schedule_config(),
        cfg.diffusion.prediction,
        opts.variance,
        opts.clip_x0,
    );
    let summary = summary(cmd, &unet, &scheduler, &tm);
    let export = DiffusersExport {
        unet,
        scheduler,
        weights: tm.vs.variables().into_iter().collect(),
    };
    diffusers::write(&cmd.out, &export).map_err(Classified::into_cli)?;
    eprintln!("{summary}");
    Ok(())
}

/// The line that says what was written, from what.
fn summary(
    cmd: &ExportCmd,
    unet: &UNet2DModelConfig,
    scheduler: &DdpmSchedulerConfig,
    tm: &trained::TrainedModel,
) -> String {
    let labels = match unet.num_class_embeds {
        Some(n) => format!(
            "; class_labels 0…{} are the classes, {} the null token (unconditional)",
            n - 2,
            n - 1
        ),
        None => String::new(),
    };
    format!(
        "{}: diffusers DDPMPipeline (UNet2DModel of {} parameters, DDPMScheduler {} T = {} {}) from step {} ({}) of {}{labels}",
        cmd.out.display(),
        tm.vs.variables().values().map(|t| t.numel() as i64).sum::<i64>(),
        scheduler.beta_schedule,
        scheduler.num_train_timesteps,
        scheduler.prediction_type,
        tm.step,
        tm.weights,
        cmd.run_dir.display(),
    )
}
