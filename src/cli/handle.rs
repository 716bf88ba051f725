//! What `sample` and `eval` share about the folder they are given: opening
//! it as a [`RunHandle`], and which weight set to use when the user names
//! none — the run's own (a sweep run's), else the warm EMA of longest
//! memory, else raw — with a warning whenever a cold EMA is used.

use crate::eval::trained::WeightsSource;
use crate::exit::Classified;
use crate::run::handle::{self, RunHandle};
use crate::run::weights::{safe_default, Warmth};
use crate::run::Weights;
use std::path::Path;

/// Open the folder the user named (exit 2 when it is not one run).
pub fn open(path: &Path) -> anyhow::Result<RunHandle> {
    handle::open(path).map_err(Classified::into_cli)
}

/// `--weights` as the user may write it: a weight set, or `all`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightsArg {
    All,
    One(Weights),
}

impl std::str::FromStr for WeightsArg {
    type Err = crate::run::weights::WeightsParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(WeightsArg::All);
        }
        s.parse().map(WeightsArg::One)
    }
}

/// The weight set used when none is named, and the line that says why.
pub fn default_weights(h: &RunHandle, step: u64) -> (Weights, String) {
    if let Some(w) = h.weights {
        return (w, format!("weights: {w} (the run's own)"));
    }
    let ema = &h.config.ema;
    let w = safe_default(ema, step);
    let why = match w {
        Weights::Ema(_) => format!(
            "weights: {w} (the EMA of longest memory whose share of the initial weights after {step} steps is ≤ 1%; --weights picks another)"
        ),
        Weights::Phema(_) => format!(
            "weights: {w} (the longest tracked power-function EMA; --weights phema-<σ_rel> reconstructs any other length)"
        ),
        Weights::Raw if ema.decays.is_empty() => "weights: raw (the run keeps no EMA)".to_string(),
        Weights::Raw => {
            let cold: Vec<String> = ema
                .decays
                .iter()
                .map(|&mu| {
                    let f = Warmth::of(ema, Weights::ema(mu), step).initial_fraction;
                    format!("{} still holds {:.0}%", Weights::ema(mu), f * 100.0)
                })
                .collect();
            format!(
                "weights: raw (no EMA has warmed up after {step} steps: {}; --weights picks one anyway)",
                cold.join(", ")
            )
        }
    };
    (w, why)
}

/// The one weight set a command (`sample`, `export`) reads at `step` (the
/// latest checkpoint when None): `--weights` when given, else
/// [`default_weights`], whose reason is printed as `[<command>] weights: …`
/// unless `quiet`; with who named it, for the message when the checkpoint
/// lacks it.
pub fn pick_weights(
    h: &RunHandle,
    flag: Option<Weights>,
    step: Option<u64>,
    quiet: bool,
    command: &str,
) -> (Weights, WeightsSource) {
    if let Some(w) = flag {
        return (w, WeightsSource::Flag);
    }
    let step = step
        .or_else(|| h.trained.saved_steps().last().map(|(s, _)| *s))
        .unwrap_or(0);
    let (w, why) = default_weights(h, step);
    if !quiet {
        eprintln!("[{command}] {why}");
    }
    (w, WeightsSource::RunConfig)
}

/// The warnings for the cold EMAs among `weights` at `step`.
pub fn cold_warnings(h: &RunHandle, weights: &[Weights], step: u64) -> Vec<String> {
    weights
        .iter()
        .filter_map(|&w| Warmth::of(&h.config.ema, w, step).warning(step))
        .collect()
}
