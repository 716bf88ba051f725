//! Weight sets: which parameters of a trained run a number was computed with.
//!
//! A checkpoint holds the raw weights θ and one exponential moving average per
//! `ema.decays` entry (chapter §4.1). Each set has one spelling, used for its
//! file stem in checkpoints and snapshots (`raw.safetensors`,
//! `ema-0.999.safetensors`), in the evaluation tables' `weights` column, in
//! `--weights` and in the records a sweep writes. This file is the only place
//! that knows that spelling: everything else holds a [`Weights`].
//!
//! A decay is written as Rust prints the `f64` (`0.999`, `0.9999`), so
//! `ema-0.990` and `EMA-0.99` name the same weights as `ema-0.99`.
//!
//! A run with `ema.mode = "power"` tracks power-function EMAs instead
//! (Karras et al. 2024): `phema-<σ_rel>` names the EMA of relative length
//! σ_rel, written with three decimals (`phema-0.050`) unless the value needs
//! more (`phema-0.0125`). The tracked ones are stored like `ema-<decay>`;
//! any other σ_rel in (0, 0.28] is reconstructed from the run's snapshots
//! ([`super::phema_store`]).

use crate::config::run::{EmaConfig, EmaMode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An EMA decay μ: a finite number (in [0, 1) once validated). Compared by
/// value, so it can be a map key.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Decay(f64);

impl Decay {
    /// A decay, or None for a value that is not a finite number.
    pub fn new(mu: f64) -> Option<Decay> {
        mu.is_finite().then_some(Decay(mu))
    }
    pub fn value(self) -> f64 {
        self.0
    }
}

// NaN never gets in (see `Decay::new`), so equality is an equivalence.
impl Eq for Decay {}

impl std::hash::Hash for Decay {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // +0.0 and −0.0 are equal, so they must hash alike.
        (self.0 + 0.0).to_bits().hash(state);
    }
}

/// One weight set of a trained run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weights {
    /// The optimizer's weights θ.
    Raw,
    /// The exponential moving average of θ with this decay.
    Ema(Decay),
    /// The power-function EMA of this relative standard deviation σ_rel,
    /// tracked or reconstructed post hoc.
    Phema(Decay),
}

impl Weights {
    /// The EMA weights of decay `mu`. Decays come from a validated config or
    /// a parsed name, so they are finite; a NaN would print as `ema-NaN`.
    pub fn ema(mu: f64) -> Weights {
        Weights::Ema(Decay(mu))
    }

    /// The power-function EMA of relative length `std_rel` (finite, from a
    /// validated config or a parsed name).
    pub fn phema(std_rel: f64) -> Weights {
        Weights::Phema(Decay(std_rel))
    }

    /// The decay of a classic EMA set; None for raw and power EMAs.
    pub fn decay(self) -> Option<f64> {
        match self {
            Weights::Ema(d) => Some(d.0),
            Weights::Raw | Weights::Phema(_) => None,
        }
    }

    /// The σ_rel of a power-function EMA set; None for the others.
    pub fn std_rel(self) -> Option<f64> {
        match self {
            Weights::Phema(s) => Some(s.0),
            Weights::Raw | Weights::Ema(_) => None,
        }
    }

    /// The weight sets a run's checkpoints hold: raw, then each tracked EMA
    /// (`ema.decays`, or `ema.std_rel` under `ema.mode = "power"`).
    pub fn of_run(ema: &EmaConfig) -> Vec<Weights> {
        let tracked: Vec<Weights> = match ema.mode {
            EmaMode::Power => ema.std_rel.iter().map(|&s| Weights::phema(s)).collect(),
            _ => ema.decays.iter().map(|&d| Weights::ema(d)).collect(),
        };
        std::iter::once(Weights::Raw).chain(tracked).collect()
    }

    /// Whether a run with this EMA config can give these weights: raw, a
    /// tracked set, or (under `ema.mode = "power"`) any σ_rel in
    /// (0, [`super::phema::MAX_STD_REL`]], reconstructed.
    pub fn held_by(self, ema: &EmaConfig) -> bool {
        match self {
            Weights::Phema(s) => {
                ema.mode == EmaMode::Power && s.0 > 0.0 && s.0 <= super::phema::MAX_STD_REL
            }
            other => Weights::of_run(ema).contains(&other),
        }
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weights::Raw => f.write_str("raw"),
            Weights::Ema(d) => write!(f, "ema-{}", d.0),
            Weights::Phema(s) => {
                let short = format!("{:.3}", s.0);
                if short.parse::<f64>().ok() == Some(s.0) {
                    write!(f, "phema-{short}")
                } else {
                    write!(f, "phema-{}", s.0)
                }
            }
        }
    }
}

/// A name that is neither `raw`, `ema-<decay>` nor `phema-<σ_rel>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0:?} is not a weight set: write raw, ema-<decay> or phema-<std_rel>, e.g. ema-0.999 or phema-0.080")]
pub struct WeightsParseError(pub String);

impl FromStr for Weights {
    type Err = WeightsParseError;

    /// `raw`, `ema-<decay>` or `phema-<std_rel>`, in any case, with
    /// surrounding blanks ignored.
    fn from_str(s: &str) -> Result<Weights, WeightsParseError> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "raw" {
            return Ok(Weights::Raw);
        }
        let number = |rest: &str| rest.parse::<f64>().ok().and_then(Decay::new);
        let parsed = match lower.strip_prefix("phema-") {
            Some(rest) => number(rest).map(Weights::Phema),
            None => lower
                .strip_prefix("ema-")
                .and_then(number)
                .map(Weights::Ema),
        };
        parsed.ok_or_else(|| WeightsParseError(s.to_string()))
    }
}

impl Serialize for Weights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Weights, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An EMA that still puts more than this weight on the initial (random)
/// weights is not yet a usable model.
pub const SAFE_INITIAL_FRACTION: f64 = 0.01;

/// How far one weight set of a run has warmed up after `steps` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmth {
    pub weights: Weights,
    /// The decay applied at the last step (0 for raw).
    pub effective_decay: f64,
    /// The weight still on the initial weights, μ^N for a constant decay
    /// (0 for raw).
    pub initial_fraction: f64,
}

impl Warmth {
    /// A power-function EMA copies θ at its first step (β_1 = 0), so like
    /// raw it holds none of the initial weights.
    pub fn of(ema: &EmaConfig, weights: Weights, steps: u64) -> Warmth {
        match weights.decay() {
            None => Warmth {
                weights,
                effective_decay: 0.0,
                initial_fraction: 0.0,
            },
            Some(mu) => Warmth {
                weights,
                effective_decay: if steps == 0 {
                    mu
                } else {
                    ema.decay_at(mu, steps)
                },
                initial_fraction: ema.initial_fraction(mu, steps),
            },
        }
    }

    /// Whether it still leans on the initial weights (above
    /// [`SAFE_INITIAL_FRACTION`]).
    pub fn is_cold(&self) -> bool {
        self.initial_fraction > SAFE_INITIAL_FRACTION
    }

    /// The warning to print when it is used while cold.
    pub fn warning(&self, steps: u64) -> Option<String> {
        self.is_cold().then(|| {
            format!(
                "{} after {steps} steps still holds {:.0}% of the initial random weights (μ^N = {:.3}); its samples and metrics are mostly the untrained model's. Use --weights raw, an EMA of lower decay, or train longer",
                self.weights,
                self.initial_fraction * 100.0,
                self.initial_fraction
            )
        })
    }
}

/// The weight set to use when none is named: the EMA of the longest
/// memory (highest decay, or largest tracked σ_rel) that is warm after
/// `steps` steps, else raw.
pub fn safe_default(ema: &EmaConfig, steps: u64) -> Weights {
    if ema.mode == EmaMode::Power {
        let longest = ema.std_rel.iter().copied().max_by(f64::total_cmp);
        return longest.map_or(Weights::Raw, Weights::phema);
    }
    let mut warm: Vec<f64> = ema
        .decays
        .iter()
        .copied()
        .filter(|&mu| !Warmth::of(ema, Weights::ema(mu), steps).is_cold())
        .collect();
    warm.sort_by(|a, b| a.total_cmp(b));
    warm.last().map_or(Weights::Raw, |&mu| Weights::ema(mu))
}

/// A comma-separated list of weight sets, as they print.
pub fn join(weights: &[Weights]) -> String {
    weights
        .iter()
        .map(Weights::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ema(mode: crate::config::run::EmaMode, decays: &[f64]) -> EmaConfig {
        EmaConfig {
            decays: decays.to_vec(),
            mode,
            ..EmaConfig::default()
        }
    }

    #[test]
    fn a_constant_ema_keeps_mu_to_the_n_of_its_start() {
        use crate::config::run::EmaMode;
        let c = ema(EmaMode::Constant, &[0.9999, 0.99]);
        let w = Warmth::of(&c, Weights::ema(0.9999), 300);
        // The issue's example: after 300 steps ema-0.9999 is 97% initialisation.
        assert!((w.initial_fraction - 0.9999f64.powi(300)).abs() < 1e-12);
        assert!((w.initial_fraction - 0.9704).abs() < 1e-4);
        assert!(w.is_cold() && w.warning(300).unwrap().contains("97%"));
        assert_eq!(w.effective_decay, 0.9999);
        // 0.99^300 = 0.049: still cold; 0.99^500 = 0.0066: warm.
        assert!(Warmth::of(&c, Weights::ema(0.99), 300).is_cold());
        assert!(!Warmth::of(&c, Weights::ema(0.99), 500).is_cold());
        assert_eq!(safe_default(&c, 300), Weights::Raw);
        assert_eq!(safe_default(&c, 500), Weights::ema(0.99));
        // 0.9999^N ≤ 0.01 from N = ln 0.01 / ln 0.9999 = 46,050.
        assert_eq!(safe_default(&c, 46_050), Weights::ema(0.9999));
        assert_eq!(safe_default(&c, 46_000), Weights::ema(0.99));
        assert!(!Warmth::of(&c, Weights::Raw, 0).is_cold());
    }

    #[test]
    fn the_default_emas_are_warm_by_the_end_of_a_default_run() {
        let cfg = crate::config::RunConfig::default();
        let steps = cfg.train.steps;
        for &mu in &cfg.ema.decays {
            let w = Warmth::of(&cfg.ema, Weights::ema(mu), steps);
            assert!(!w.is_cold(), "ema-{mu} after {steps} steps: {w:?}");
        }
        assert_eq!(
            safe_default(&cfg.ema, steps),
            Weights::ema(cfg.ema.decays[0])
        );
    }

    #[test]
    fn warmup_and_update_after_step_forget_the_start_at_once() {
        use crate::config::run::EmaMode;
        // Warm-up copies θ at its first step: nothing of θ_0 is left.
        let w = ema(EmaMode::Warmup, &[0.9999]);
        assert_eq!(
            Warmth::of(&w, Weights::ema(0.9999), 300).initial_fraction,
            0.0
        );
        // Its decay at step c = 300: e = 299, 1 − (1 + 299)^(−2/3).
        let d = Warmth::of(&w, Weights::ema(0.9999), 300).effective_decay;
        assert!((d - (1.0 - 300f64.powf(-2.0 / 3.0))).abs() < 1e-12, "{d}");
        let mut late = ema(EmaMode::Constant, &[0.5]);
        late.update_after_step = 10;
        assert_eq!(late.initial_fraction(0.5, 12), 0.0);
        let b = ema(EmaMode::BiasCorrected, &[0.9999]);
        assert_eq!(b.initial_fraction(0.9999, 3), 0.0);
    }

    #[test]
    fn names_round_trip_and_equal_decays_are_one_weight_set() {
        for w in [Weights::Raw, Weights::ema(0.999), Weights::ema(0.9999)] {
            assert_eq!(w.to_string().parse::<Weights>().unwrap(), w);
        }
        assert_eq!(Weights::ema(0.9999).to_string(), "ema-0.9999");
        assert_eq!(
            "EMA-0.990".parse::<Weights>().unwrap().to_string(),
            "ema-0.99"
        );
        assert_eq!(" RAW ".parse::<Weights>().unwrap(), Weights::Raw);
        assert_eq!(
            " ema-9.999e-1".parse::<Weights>().unwrap(),
            Weights::ema(0.9999)
        );
        assert_eq!(Weights::ema(0.5).decay(), Some(0.5));
        assert_eq!(Weights::Raw.decay(), None);
    }

    #[test]
    fn other_names_are_refused_with_the_spelling_to_use() {
        for bad in [
            "ema", "ema-", "ema-x", "ema-inf", "ema-NaN", "phema-", "phema-x", "",
        ] {
            let e = bad.parse::<Weights>().unwrap_err().to_string();
            assert!(
                e.contains("write raw, ema-<decay> or phema-<std_rel>"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn serde_uses_the_name() {
        let json = serde_json::to_string(&vec![Weights::Raw, Weights::ema(0.9)]).unwrap();
        assert_eq!(json, r#"["raw","ema-0.9"]"#);
        let back: Vec<Weights> = serde_json::from_str(r#"["ema-0.90","raw"]"#).unwrap();
        assert_eq!(back, vec![Weights::ema(0.9), Weights::Raw]);
        assert!(serde_json::from_str::<Weights>(r#""nope""#).is_err());
    }

    #[test]
    fn a_run_holds_raw_then_each_ema() {
        let mut c = ema(crate::config::run::EmaMode::Constant, &[0.999, 0.9999]);
        assert_eq!(join(&Weights::of_run(&c)), "raw, ema-0.999, ema-0.9999");
        assert!(!Weights::phema(0.05).held_by(&c));
        c.mode = EmaMode::Power;
        c.decays = vec![];
        assert_eq!(join(&Weights::of_run(&c)), "raw, phema-0.050, phema-0.100");
        assert!(Weights::phema(0.08).held_by(&c) && Weights::phema(0.28).held_by(&c));
        assert!(!Weights::phema(0.3).held_by(&c) && !Weights::ema(0.999).held_by(&c));
        assert_eq!(safe_default(&c, 10), Weights::phema(0.10));
    }

    #[test]
    fn phema_names_have_three_decimals_unless_the_value_needs_more() {
        assert_eq!(Weights::phema(0.08).to_string(), "phema-0.080");
        assert_eq!(Weights::phema(0.0125).to_string(), "phema-0.0125");
        for w in [
            Weights::phema(0.08),
            Weights::phema(0.0125),
            Weights::phema(0.1),
        ] {
            assert_eq!(w.to_string().parse::<Weights>().unwrap(), w);
        }
        assert_eq!(
            " PHEMA-0.08".parse::<Weights>().unwrap(),
            Weights::phema(0.08)
        );
        assert_eq!(Weights::phema(0.05).std_rel(), Some(0.05));
        assert_eq!(Weights::phema(0.05).decay(), None);
        let w = Warmth::of(&EmaConfig::default(), Weights::phema(0.05), 3);
        assert_eq!(w.initial_fraction, 0.0);
    }
}
