//! What makes two evaluations the same: the evaluation key.
//!
//! Each evaluation number depends on some `eval.*` keys and not on others:
//! the per-timestep loss on its bins and probe, bits/dim on its timesteps,
//! images and the bound's variance (`bpd_variance`), the sample metrics on
//! the sampler (and its `variance`) and the sample count. Every row of the evaluation tables carries the key of its
//! [`EvalPart`] (a hash of just those settings), and `done.json` lists
//! (step, weight set, key) triples. A row whose key differs from what the
//! run's config asks for now is stale: the evaluator recomputes it, and the
//! report leaves it out and names the run. The guidance scale is a column of
//! the metric rows, and the evaluation points (`every`, `at_steps`) decide
//! which steps exist, so neither is part of any key.
//!
//! [`PART_OF`] gives every `eval.*` key its part, once; a test checks that
//! it lists every key the config has. A part's key also covers the format
//! of its numbers ([`format`]): rows written before a part gained a number
//! are stale, so the evaluator computes them again.

use crate::config::run::EvalConfig;
use serde::{Deserialize, Serialize};

/// The kinds of evaluation number, each with its own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalPart {
    /// `timestep_loss.parquet`.
    TimestepLoss,
    /// The bits/dim rows of `eval_metrics.parquet` (no guidance scale).
    BitsPerDim,
    /// The sample-quality rows of `eval_metrics.parquet` (one per guidance scale).
    Samples,
}

/// Which part each `eval.*` key changes; `None`: no number (which steps are
/// evaluated, which scales, how many images a PNG grid shows).
pub const PART_OF: [(&str, Option<EvalPart>); 18] = [
    ("timestep_bins", Some(EvalPart::TimestepLoss)),
    ("probe_size", Some(EvalPart::TimestepLoss)),
    ("bpd_timesteps", Some(EvalPart::BitsPerDim)),
    ("bpd_images", Some(EvalPart::BitsPerDim)),
    ("bpd_variance", Some(EvalPart::BitsPerDim)),
    ("clip_x0", Some(EvalPart::BitsPerDim)),
    ("variance", Some(EvalPart::Samples)),
    ("sampler", Some(EvalPart::Samples)),
    ("sampling_steps", Some(EvalPart::Samples)),
    ("num_samples", Some(EvalPart::Samples)),
    ("eta", Some(EvalPart::Samples)),
    ("inception", Some(EvalPart::Samples)),
    ("guidance_scale", None),
    ("guidance_scales", None),
    ("every", None),
    ("initial", None),
    ("at_steps", None),
    ("grid_images", None),
];

/// The parts a key changes: `clip_x0` changes the sampler as well as the
/// bits/dim bound.
fn parts_of(key: &str) -> Vec<EvalPart> {
    match key {
        "clip_x0" => vec![EvalPart::BitsPerDim, EvalPart::Samples],
        _ => PART_OF
            .iter()
            .filter(|(k, _)| *k == key)
            .filter_map(|(_, p)| *p)
            .collect(),
    }
}

/// The key of each part for one `[eval]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalKeys {
    pub timestep_loss: String,
    pub bits_per_dim: String,
    pub samples: String,
}

impl EvalKeys {
    pub fn of(eval: &EvalConfig) -> EvalKeys {
        let doc = document(eval);
        EvalKeys {
            timestep_loss: part_hash(&doc, EvalPart::TimestepLoss),
            bits_per_dim: part_hash(&doc, EvalPart::BitsPerDim),
            samples: part_hash(&doc, EvalPart::Samples),
        }
    }

    pub fn get(&self, part: EvalPart) -> &str {
        match part {
            EvalPart::TimestepLoss => &self.timestep_loss,
            EvalPart::BitsPerDim => &self.bits_per_dim,
            EvalPart::Samples => &self.samples,
        }
    }

    /// The key of the whole evaluation (what `done.json` records).
    pub fn combined(&self) -> String {
        super::identity::digest(&format!(
            "{}/{}/{}",
            self.timestep_loss, self.bits_per_dim, self.samples
        ))
    }
}

/// The part a metric row belongs to: rows with a guidance scale come from
/// samples, rows without one are the bits/dim terms.
pub fn metric_part(guidance: Option<f64>) -> EvalPart {
    match guidance {
        Some(_) => EvalPart::Samples,
        None => EvalPart::BitsPerDim,
    }
}

fn document(eval: &EvalConfig) -> toml::Table {
    toml::Table::try_from(eval).expect("an EvalConfig is a TOML table") // ok: plain data
}

/// The version of what a part computes, raised when its numbers change
/// meaning or it gains one that older rows lack. The per-timestep loss is
/// at 2: it gained the ε-equivalent MSE. Bits/dim is at 2: it became a
/// valid likelihood (images on the 8-bit grid, the decoder floored at
/// 1e-12, scored with `eval.bpd_variance`).
pub fn format(part: EvalPart) -> i64 {
    match part {
        EvalPart::TimestepLoss | EvalPart::BitsPerDim => 2,
        EvalPart::Samples => 1,
    }
}

/// What is said of rows whose settings are the same but whose format is older.
pub const OLDER_FORMAT: &str = "evaluated by an earlier ddpm-lab whose numbers meant less (no ε-equivalent loss; bits/dim not yet on the 8-bit grid)";

fn part_hash(doc: &toml::Table, part: EvalPart) -> String {
    let mut picked = toml::Table::new();
    // Format 1 adds nothing, so keys of the first format stay as they were.
    if format(part) > 1 {
        picked.insert("format".into(), format(part).into());
    }
    for (k, v) in doc {
        if parts_of(k).contains(&part) {
            picked.insert(k.clone(), v.clone());
        }
    }
    let text = toml::to_string(&picked).expect("a TOML table serializes"); // ok: plain data
    super::identity::digest(&text)
}

/// The keys that differ between two `[eval]` sections and change a number,
/// as `eval.num_samples 1000 → 37`.
pub fn changes(old: &EvalConfig, new: &EvalConfig) -> Vec<String> {
    let (a, b) = (document(old), document(new));
    let shown = |v: Option<&toml::Value>| v.map_or("unset".to_string(), |v| v.to_string());
    PART_OF
        .iter()
        .filter(|(k, _)| !parts_of(k).is_empty())
        .filter(|(k, _)| a.get(*k) != b.get(*k))
        .map(|(k, _)| format!("eval.{k} {} → {}", shown(a.get(*k)), shown(b.get(*k))))
        .collect()
}

/// Why rows under the settings `old` are stale for `new`: the keys that
/// changed, or else the older format.
pub fn why_stale(old: &EvalConfig, new: &EvalConfig) -> Vec<String> {
    let c = changes(old, new);
    if c.is_empty() {
        vec![OLDER_FORMAT.to_string()]
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_eval_key_has_a_part() {
        let every = EvalConfig {
            clip_x0: Some(true),
            ..Default::default()
        };
        for k in document(&every).keys() {
            assert!(
                PART_OF.iter().any(|(p, _)| p == k),
                "eval.{k} is missing from PART_OF"
            );
        }
        assert_eq!(document(&every).len(), PART_OF.len());
    }

    #[test]
    fn a_key_changes_exactly_the_parts_it_feeds() {
        let base = EvalConfig::default();
        let k0 = EvalKeys::of(&base);
        let mut e = base.clone();
        e.num_samples = 37;
        let k = EvalKeys::of(&e);
        assert_ne!(k.samples, k0.samples);
        assert_eq!(k.timestep_loss, k0.timestep_loss);
        assert_eq!(k.bits_per_dim, k0.bits_per_dim);
        assert_ne!(k.combined(), k0.combined());
        // The sampler's variance is not the bound's.
        let mut e = base.clone();
        e.variance = crate::diffusion::sampling::Variance::FixedSmall;
        let k = EvalKeys::of(&e);
        assert_ne!(k.samples, k0.samples);
        assert_eq!(k.bits_per_dim, k0.bits_per_dim);
        assert_eq!(k.timestep_loss, k0.timestep_loss);
        let mut e = base.clone();
        e.bpd_variance = crate::diffusion::sampling::Variance::FixedLarge;
        let k = EvalKeys::of(&e);
        assert_ne!(k.bits_per_dim, k0.bits_per_dim);
        assert_eq!(k.samples, k0.samples);
        assert_eq!(k.timestep_loss, k0.timestep_loss);
        let mut e = base.clone();
        e.timestep_bins = 7;
        assert_ne!(EvalKeys::of(&e).timestep_loss, k0.timestep_loss);
        // No number depends on these.
        let mut e = base.clone();
        e.guidance_scale = 3.0;
        e.guidance_scales = vec![1.0, 3.0];
        e.every = 50;
        e.at_steps = vec![7];
        e.grid_images = 16;
        assert_eq!(EvalKeys::of(&e), k0);
    }

    #[test]
    fn changes_name_the_keys_with_both_values() {
        let old = EvalConfig::default();
        let mut new = old.clone();
        new.num_samples = 37;
        new.every = 5;
        new.clip_x0 = Some(false);
        assert_eq!(
            changes(&old, &new),
            vec![
                "eval.clip_x0 unset → false".to_string(),
                "eval.num_samples 1000 → 37".to_string()
            ]
        );
        assert!(changes(&old, &old).is_empty());
        assert_eq!(why_stale(&old, &old), vec![OLDER_FORMAT.to_string()]);
        assert_eq!(why_stale(&old, &new), changes(&old, &new));
    }

    #[test]
    fn a_part_of_a_later_format_has_another_key() {
        // The key of the first format: the settings alone.
        let doc = document(&EvalConfig::default());
        let mut picked = toml::Table::new();
        for (k, v) in &doc {
            if parts_of(k).contains(&EvalPart::TimestepLoss) {
                picked.insert(k.clone(), v.clone());
            }
        }
        let first = super::super::identity::digest(&toml::to_string(&picked).unwrap());
        let now = EvalKeys::of(&EvalConfig::default());
        assert_ne!(now.timestep_loss, first, "format 2 rows are told apart");
    }
}
