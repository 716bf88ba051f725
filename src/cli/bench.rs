//! `ddpm-lab bench`: the timed loops `just bench` needs beyond `ddpm-lab
//! train` (see [`crate::bench`]). Each prints one JSON object on stdout.

use crate::bench;
use crate::config::{self, SetArg, Sources};
use crate::exit::bad_input;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Time the trainer's full step against the bare step (forward + backward + AdamW of the same model), in alternating blocks.
    Step(StepArgs),
    /// Time DDIM sampling of the run's (untrained) model.
    Ddim(DdimArgs),
}

/// The run config the timed model comes from.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The run config (TOML): data shape, model, batch, device, threads, precision.
    pub config: PathBuf,
    /// Override a config key, e.g. --set train.batch_size=8 (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = SetArg::parse)]
    pub sets: Vec<SetArg>,
}

#[derive(Debug, Args)]
pub struct StepArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Untimed steps of each first.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Steps per timed block.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub steps: u64,
    /// Timed blocks (the median is what counts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeats: u64,
}

#[derive(Debug, Args)]
pub struct DdimArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// DDIM steps per sampling (1 to the run's diffusion.timesteps).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub sampling_steps: u64,
    /// Samples per sampling.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(i64).range(1..))]
    pub batch: i64,
    /// Untimed samplings first.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Timed samplings (the median is what counts).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeats: u64,
}

fn load(c: &ConfigArgs) -> anyhow::Result<config::RunConfig> {
    config::load(&Sources {
        file: Some(c.config.clone()),
        sets: c.sets.clone(),
        env: true,
    })
    .map_err(bad_input)
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let json = match cmd {
        BenchCmd::Step(a) => {
            let cfg = load(&a.config)?;
            let o = bench::step::overhead(&cfg, a.warmup, a.steps, a.repeats).map_err(bad_input)?;
            serde_json::to_string(&o)?
        }
        BenchCmd::Ddim(a) => {
            let cfg = load(&a.config)?;
            // DDIM visits a subset of the T training timesteps; more steps
            // than T would quietly be timed as T.
            let big_t = cfg.diffusion.timesteps;
            if a.sampling_steps > big_t as u64 {
                return Err(bad_input(format!(
                    "--sampling-steps {}: the model has T = {big_t} timesteps (diffusion.timesteps); use at most {big_t}",
                    a.sampling_steps
                )));
            }
            let t = bench::ddim::ddim(
                &cfg,
                a.sampling_steps as usize,
                a.batch,
                a.warmup,
                a.repeats,
            )
            .map_err(bad_input)?;
            serde_json::to_string(&t)?
        }
    };
    println!("{json}");
    Ok(())
}
