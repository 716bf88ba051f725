//! `ddpm-lab evaluator train|show`: the evaluator networks behind
//! `fd_<evaluator>` and friends. `ddpm-lab eval` trains one on first use;
//! this trains it ahead of time (e.g. before a sweep fans out) or shows what
//! is cached.

use crate::config::{self, SetArg, Sources};
use crate::eval::evaluator::{self, Evaluator, TrainOptions};
use crate::exit::{bad_input, Classified};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum EvaluatorCmd {
    /// Train (or load) the evaluator of a dataset and print its held-out accuracy.
    Train(TrainArgs),
    /// List the cached evaluators and their held-out accuracy.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The dataset: mnist, cifar10, folder or synthetic (its keys as in a run config's [data]).
    #[arg(long, conflicts_with = "config")]
    pub data: Option<String>,
    /// The dataset's path (data.path); mnist defaults to data/mnist.
    #[arg(long)]
    pub path: Option<String>,
    /// Image side (data.resolution; 0 = native).
    #[arg(long)]
    pub resolution: Option<i64>,
    /// Take the dataset from a run config's [data] instead.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. --set data.labels=true (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = SetArg::parse)]
    pub sets: Vec<SetArg>,
    /// The cache folder.
    #[arg(long, default_value = "results/.evaluators")]
    pub evaluators: PathBuf,
    /// Training epochs, at least: a small dataset gets as many more as it
    /// takes to reach 400 optimizer steps.
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    pub epochs: usize,
    /// Retrain even if one is cached (the old one is replaced only when the new one is written).
    #[arg(long)]
    pub force: bool,
    /// The device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// No progress bars or lines; warnings, errors and the final result lines still print.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The cache folder.
    #[arg(long, default_value = "results/.evaluators")]
    pub evaluators: PathBuf,
}

pub fn run(cmd: EvaluatorCmd) -> anyhow::Result<()> {
    match cmd {
        EvaluatorCmd::Train(a) => train(a),
        EvaluatorCmd::Show(a) => show(a),
    }
}

fn train(a: TrainArgs) -> anyhow::Result<()> {
    let device = super::device_arg(&a.device)?;
    if a.data.is_none() && a.config.is_none() {
        return Err(bad_input(
            "say which data: --data mnist (or cifar10, folder, synthetic) or --config RUN.toml",
        ));
    }
    let mut sets = a.sets.clone();
    if let Some(d) = &a.data {
        check_data(d, &a)?;
        sets.push(SetArg::parse(&format!("data.source={d:?}")).map_err(bad_input)?);
        // A classifier needs the labels. The run-config checks want a model
        // that fits images; the evaluator never builds it.
        sets.push(SetArg::parse("data.labels=true").map_err(bad_input)?);
        if !a.sets.iter().any(|s| s.key.starts_with("model.")) {
            sets.push(SetArg::parse("model.preset=\"unet-tiny\"").map_err(bad_input)?);
        }
    }
    if let Some(p) = &a.path {
        sets.push(SetArg::parse(&format!("data.path={p:?}")).map_err(bad_input)?);
    }
    if let Some(r) = a.resolution {
        sets.push(SetArg::parse(&format!("data.resolution={r}")).map_err(bad_input)?);
    }
    let cfg = config::load(&Sources {
        file: a.config.clone(),
        sets,
        env: true,
    })
    .map_err(bad_input)?;
    let dir = evaluator::dir_of(&a.evaluators, &cfg).map_err(Classified::into_cli)?;
    if a.force && dir.exists() {
        // Train beside it, then swap.
        let _ = std::fs::remove_dir_all(a.evaluators.join(".retrain"));
        let ev = evaluator::load_or_train(
            &cfg,
            &a.evaluators.join(".retrain"),
            opts(&a),
            device,
            |l| {
                if !a.quiet {
                    eprintln!("[evaluator] {l}");
                }
            },
        )
        .map_err(Classified::into_cli)?;
        let fresh = a.evaluators.join(".retrain").join(&ev.info.key);
        std::fs::remove_dir_all(&dir)?;
        std::fs::rename(&fresh, &dir)?;
        print_info(&ev.info, &dir);
        return Ok(());
    }
    let quiet = a.quiet;
    let ev = evaluator::load_or_train(&cfg, &a.evaluators, opts(&a), device, |l| {
        if !quiet {
            eprintln!("[evaluator] {l}");
        }
    })
    .map_err(Classified::into_cli)?;
    print_info(&ev.info, &dir);
    Ok(())
}

/// The image sources `--data` takes.
const IMAGE_SOURCES: [&str; 4] = ["mnist", "cifar10", "folder", "synthetic"];

/// Refuse a `--data` that is not an image source, or a folder without its
/// place or size, here, in the user's own terms: `--data` is passed on as
/// `--set data.source=…` with `data.labels=true`, and the config checks'
/// messages would name those (and the keys behind --path, --resolution)
/// instead of the flags the user gave.
fn check_data(d: &str, a: &TrainArgs) -> anyhow::Result<()> {
    if d == "folder" {
        // An image folder has no default place or size; ask for the flags
        // of this command rather than the config keys they set.
        let given = |flag: bool, key: &str| flag || a.sets.iter().any(|s| s.key == key);
        let missing: Vec<&str> = [
            (
                given(a.path.is_some(), "data.path"),
                "--path DIR (the folder of images)",
            ),
            (
                given(a.resolution.is_some(), "data.resolution"),
                "--resolution N (the side to resize and crop to, e.g. 32)",
            ),
        ]
        .into_iter()
        .filter_map(|(ok, flag)| (!ok).then_some(flag))
        .collect();
        if !missing.is_empty() {
            return Err(bad_input(format!(
                "--data folder needs {}",
                missing.join(" and ")
            )));
        }
    }
    if IMAGE_SOURCES.contains(&d) {
        return Ok(());
    }
    let why = match d {
        "toy" => "toy data are 2-D points".to_string(),
        "tabular" => "tabular data are rows of numbers, without class labels".to_string(),
        _ => format!("{d:?} is not a data source"),
    };
    Err(bad_input(format!(
        "--data {d}: the evaluator network needs image data with class labels, and {why}; use --data mnist, cifar10, folder or synthetic (toy and tabular runs need no evaluator: `ddpm-lab eval` scores them with low-dimensional metrics)"
    )))
}

fn opts(a: &TrainArgs) -> TrainOptions {
    TrainOptions {
        epochs: a.epochs,
        ..Default::default()
    }
}

fn print_info(i: &evaluator::EvaluatorInfo, dir: &std::path::Path) {
    println!(
        "{}: {} ({}×{}×{}, {} classes), held-out accuracy {:.2}% on {} images; trained on {} images, {} epochs, {:.0} s",
        dir.display(),
        i.name,
        i.channels,
        i.resolution,
        i.resolution,
        i.num_classes,
        i.test_accuracy * 100.0,
        i.test_images,
        i.train_images,
        i.epochs,
        i.seconds
    );
    if let Some(w) = i.near_chance() {
        eprintln!("warning: {w}");
    }
}

fn show(a: ShowArgs) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(&a.evaluators) else {
        println!(
            "{}: no evaluators yet (`ddpm-lab evaluator train --data mnist`)",
            a.evaluators.display()
        );
        return Ok(());
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        if let Ok(Some(ev)) = Evaluator::load(&d, tch::Device::Cpu) {
            print_info(&ev.info, &d);
        }
    }
    Ok(())
}
