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
//! `ema-0.990` and `EMA-0.99` name the same weights as `ema-0.99`. Post-hoc
//! EMA weight sets will be further variants of the same enum.

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
}

impl Weights {
    /// The EMA weights of decay `mu`. Decays come from a validated config or
    /// a parsed name, so they are finite; a NaN would print as `ema-NaN`.
    pub fn ema(mu: f64) -> Weights {
        Weights::Ema(Decay(mu))
    }

    /// The decay of an EMA set; None for the raw weights.
    pub fn decay(self) -> Option<f64> {
        match self {
            Weights::Raw => None,
            Weights::Ema(d) => Some(d.0),
        }
    }

    /// The weight sets a run with these `ema.decays` holds: raw, then each EMA.
    pub fn of_run(decays: &[f64]) -> Vec<Weights> {
        std::iter::once(Weights::Raw)
            .chain(decays.iter().map(|&d| Weights::ema(d)))
            .collect()
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weights::Raw => f.write_str("raw"),
            Weights::Ema(d) => write!(f, "ema-{}", d.0),
        }
    }
}

/// A name that is neither `raw` nor `ema-<decay>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0:?} is not a weight set: write raw or ema-<decay>, e.g. ema-0.999")]
pub struct WeightsParseError(pub String);

impl FromStr for Weights {
    type Err = WeightsParseError;

    /// `raw` or `ema-<decay>`, in any case, with surrounding blanks ignored.
    fn from_str(s: &str) -> Result<Weights, WeightsParseError> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "raw" {
            return Ok(Weights::Raw);
        }
        lower
            .strip_prefix("ema-")
            .and_then(|d| d.parse::<f64>().ok())
            .and_then(Decay::new)
            .map(Weights::Ema)
            .ok_or_else(|| WeightsParseError(s.to_string()))
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
            "ema",
            "ema-",
            "ema-x",
            "ema-inf",
            "ema-NaN",
            "phema-0.1",
            "",
        ] {
            let e = bad.parse::<Weights>().unwrap_err().to_string();
            assert!(e.contains("write raw or ema-<decay>"), "{bad}: {e}");
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
        assert_eq!(
            join(&Weights::of_run(&[0.999, 0.9999])),
            "raw, ema-0.999, ema-0.9999"
        );
    }
}
