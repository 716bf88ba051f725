//! What makes two runs the same training job.
//!
//! Every run-config key has one [`KeyRole`], from the single table
//! [`KEY_ROLES`]:
//! * **training** keys change what training computes (the default);
//! * **evaluation-only** keys (`eval.*`, and the sweep axis `ema.decay`) change
//!   only how the trained weights are evaluated, so runs differing in them
//!   share one job;
//! * **launch-only** keys change how a job is launched, logged or
//!   checkpointed (device, threads, cadences, `output.*`), not its numbers.
//!
//! One evaluation key feeds training: `eval.bpd_variance` is also the σ_t² of
//! the VLB loss weighting (the bound is trained and scored with one
//! variance), so with `diffusion.weighting = "vlb"` it is part of the hashes
//! ([`vlb_variance`]).
//!
//! The training hash names a job's folder; the resume hash (which also
//! leaves out `train.steps`, since a resume may extend a run) decides whether
//! a folder may be resumed with a config. Both are computed from the table,
//! so a key's role is written once.

use crate::config::RunConfig;
use sha2::{Digest, Sha256};

/// What changing a key changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    Training,
    EvalOnly,
    LaunchOnly,
}

/// Every key that is not a training key, with its role. `section.*` covers a
/// whole section.
pub const KEY_ROLES: [(&str, KeyRole); 10] = [
    ("train.device", KeyRole::LaunchOnly),
    ("train.threads", KeyRole::LaunchOnly),
    ("train.log_every", KeyRole::LaunchOnly),
    ("train.checkpoint_every", KeyRole::LaunchOnly),
    ("train.keep_checkpoints", KeyRole::LaunchOnly),
    ("train.fail_at_step", KeyRole::LaunchOnly),
    ("train.cuda_graph", KeyRole::LaunchOnly),
    ("output.*", KeyRole::LaunchOnly),
    ("eval.*", KeyRole::EvalOnly),
    // A sweep axis, not a run key: it picks the EMA a run is evaluated with.
    ("ema.decay", KeyRole::EvalOnly),
];

/// Evaluation- and launch-only keys added after version 0.1 fixed the
/// hashes. A neutralized section is hashed as its defaults, so each new key
/// would rename every job folder: they are left out of the hashed document
/// instead.
const ADDED_SINCE_HASH: [(&str, &str); 2] = [("eval", "bpd_variance"), ("output", "tensorboard")];

/// Training keys that only `ema.mode = "power"` reads. Under any other mode
/// they change nothing, so they are left out of the hashed document (which
/// also keeps the names of jobs trained before they existed).
const POWER_EMA_ONLY: [&str; 2] = ["std_rel", "snapshot_every"];

/// Training keys added after version 0.1 fixed the hashes, with the value
/// that means what training did before them: left out of the hashed
/// document while they hold it, so earlier jobs keep their folders' names,
/// and hashed (a new job) once set.
const TRAINING_ADDED_SINCE_HASH: [(&str, &str, &str); 1] = [("model", "init_from", "")];

fn covers(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(section) => key
            .strip_prefix(section)
            .is_some_and(|rest| rest.starts_with('.')),
        None => key == pattern,
    }
}

/// The role of a dotted key (`train.lr`, `eval.num_samples`).
pub fn role(key: &str) -> KeyRole {
    KEY_ROLES
        .iter()
        .find(|(pattern, _)| covers(pattern, key))
        .map_or(KeyRole::Training, |&(_, role)| role)
}

pub fn is_launch_only(key: &str) -> bool {
    role(key) == KeyRole::LaunchOnly
}

pub fn is_eval_only(key: &str) -> bool {
    role(key) == KeyRole::EvalOnly
}

/// The hash of everything that changes what training computes: a job's name.
pub fn training_hash(cfg: &RunConfig) -> String {
    hash_of(document(cfg), false)
}

/// [`training_hash`] without `train.steps`: a run folder may be resumed (and
/// extended) with any config of the same resume hash.
pub fn resume_hash(cfg: &RunConfig) -> String {
    hash_of(document(cfg), true)
}

fn document(cfg: &RunConfig) -> toml::Table {
    toml::Table::try_from(cfg).expect("a RunConfig is a TOML table") // ok: plain data, string keys
}

/// Hash a config document with every non-training key set to a neutral
/// value: a section to its defaults, a key to its type's zero.
fn hash_of(mut doc: toml::Table, for_resume: bool) -> String {
    let vlb = vlb_variance(&doc);
    let defaults = document(&RunConfig::default());
    let neutral = KEY_ROLES
        .iter()
        .filter(|(_, role)| *role != KeyRole::Training)
        .map(|&(pattern, _)| pattern)
        .chain(for_resume.then_some("train.steps"));
    for pattern in neutral {
        if let Some(section) = pattern.strip_suffix(".*") {
            if let Some(d) = defaults.get(section) {
                doc.insert(section.to_string(), d.clone());
            }
            continue;
        }
        let Some((section, field)) = pattern.split_once('.') else {
            continue;
        };
        let value = doc
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .and_then(|t| t.get_mut(field));
        if let Some(v) = value {
            *v = zero_of(v);
        }
    }
    for (section, key) in ADDED_SINCE_HASH {
        if let Some(t) = doc.get_mut(section).and_then(toml::Value::as_table_mut) {
            t.remove(key);
        }
    }
    if let Some(ema) = doc.get_mut("ema").and_then(toml::Value::as_table_mut) {
        if ema.get("mode").and_then(toml::Value::as_str) != Some("power") {
            for key in POWER_EMA_ONLY {
                ema.remove(key);
            }
        }
    }
    for (section, key, unset) in TRAINING_ADDED_SINCE_HASH {
        if let Some(t) = doc.get_mut(section).and_then(toml::Value::as_table_mut) {
            if t.get(key).and_then(toml::Value::as_str) == Some(unset) {
                t.remove(key);
            }
        }
    }
    if let (Some(v), Some(d)) = (vlb, doc.get_mut("diffusion").and_then(|d| d.as_table_mut())) {
        d.insert("vlb_variance".into(), v);
    }
    let text = toml::to_string(&doc).expect("a TOML table serializes"); // ok: plain data
    digest(&text)
}

/// `eval.bpd_variance` of a `vlb`-weighted config, which sets the σ_t² its
/// loss is weighted with; None for other weightings, and for `fixed-small`,
/// the variance every vlb job was trained with before the key existed (so
/// those jobs keep their folders' names).
fn vlb_variance(doc: &toml::Table) -> Option<toml::Value> {
    let get = |section: &str, key: &str| doc.get(section)?.get(key)?.as_str();
    if get("diffusion", "weighting")? != "vlb" {
        return None;
    }
    let v = get("eval", "bpd_variance")?;
    (v != "fixed-small").then(|| toml::Value::String(v.to_string()))
}

/// 16 hex digits of the SHA-256 of `text`: the hashes that name jobs and
/// evaluations.
pub(crate) fn digest(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn zero_of(v: &toml::Value) -> toml::Value {
    use toml::Value;
    match v {
        Value::String(_) => Value::String(String::new()),
        Value::Integer(_) => Value::Integer(0),
        Value::Float(_) => Value::Float(0.0),
        Value::Boolean(_) => Value::Boolean(false),
        Value::Array(_) => Value::Array(vec![]),
        Value::Table(_) => Value::Table(toml::Table::new()),
        Value::Datetime(_) => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash as version 0.1 computed it, field by field: job folders
    /// named by it must keep their names. (`train.device` was a string then,
    /// emptied for the hash.)
    fn legacy_hash(cfg: &RunConfig, for_resume: bool) -> String {
        let mut c = cfg.clone();
        c.output = Default::default();
        c.eval = Default::default();
        c.train.threads = 0;
        c.train.log_every = 0;
        c.train.checkpoint_every = 0;
        c.train.keep_checkpoints = 0;
        c.train.fail_at_step = 0;
        c.train.cuda_graph = false;
        if for_resume {
            c.train.steps = 0;
        }
        let mut doc = toml::Table::try_from(&c).unwrap();
        // Version 0.1 had no eval.bpd_variance, ema.std_rel, ema.snapshot_every,
        // model.init_from and output.tensorboard.
        doc["eval"].as_table_mut().unwrap().remove("bpd_variance");
        doc["output"].as_table_mut().unwrap().remove("tensorboard");
        doc["ema"].as_table_mut().unwrap().remove("std_rel");
        doc["ema"].as_table_mut().unwrap().remove("snapshot_every");
        doc["model"].as_table_mut().unwrap().remove("init_from");
        doc["train"]
            .as_table_mut()
            .unwrap()
            .insert("device".into(), toml::Value::String(String::new()));
        let digest = Sha256::digest(toml::to_string(&doc).unwrap().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hashes_are_the_ones_earlier_versions_named_folders_by() {
        let mut cfgs = vec![RunConfig::default(), RunConfig::schema_sample()];
        let mut c = RunConfig::default();
        c.train.lr = 3e-4;
        c.train.steps = 1234;
        c.ema.decays = vec![0.9, 0.999];
        c.eval.num_samples = 37;
        c.train.threads = 3;
        c.output.tensorboard = false;
        cfgs.push(c);
        for cfg in &cfgs {
            assert_eq!(training_hash(cfg), legacy_hash(cfg, false));
            assert_eq!(resume_hash(cfg), legacy_hash(cfg, true));
        }
    }

    /// Every scalar key of the default config, changed.
    fn each_key_changed() -> Vec<(String, toml::Table)> {
        let base = document(&RunConfig::default());
        let mut out = vec![];
        for (section, table) in &base {
            let Some(table) = table.as_table() else {
                continue;
            };
            for (field, value) in table {
                let new = match value {
                    toml::Value::Integer(i) => toml::Value::Integer(i + 7),
                    toml::Value::Float(f) => toml::Value::Float(f * 0.5 + 0.25),
                    toml::Value::Boolean(b) => toml::Value::Boolean(!b),
                    toml::Value::String(s) => toml::Value::String(format!("{s}x")),
                    toml::Value::Array(a) => {
                        let mut a = a.clone();
                        a.push(toml::Value::Integer(3));
                        toml::Value::Array(a)
                    }
                    _ => continue,
                };
                let mut doc = base.clone();
                doc[section.as_str()]
                    .as_table_mut()
                    .unwrap()
                    .insert(field.clone(), new);
                out.push((format!("{section}.{field}"), doc));
            }
        }
        out
    }

    #[test]
    fn a_key_changes_the_hash_exactly_when_it_is_a_training_key() {
        let base = training_hash(&RunConfig::default());
        let changed = each_key_changed();
        assert!(changed.len() > 40, "{}", changed.len());
        for (key, doc) in changed {
            if POWER_EMA_ONLY.iter().any(|k| key == format!("ema.{k}")) {
                // Inert outside ema.mode = "power" (see the next test).
                assert_eq!(hash_of(doc, false), base, "{key}");
                continue;
            }
            let same = hash_of(doc.clone(), false) == base;
            assert_eq!(same, role(&key) != KeyRole::Training, "{key}");
            let resume_same = hash_of(doc, true) == resume_hash(&RunConfig::default());
            assert_eq!(
                resume_same,
                role(&key) != KeyRole::Training || key == "train.steps",
                "{key}"
            );
        }
    }

    #[test]
    fn power_ema_keys_are_training_keys_of_power_runs_only() {
        use crate::config::run::EmaMode;
        let mut power = RunConfig::default();
        power.ema.mode = EmaMode::Power;
        power.ema.decays = vec![];
        let base = training_hash(&power);
        let mut longer = power.clone();
        longer.ema.std_rel = vec![0.05, 0.2];
        assert_ne!(training_hash(&longer), base);
        let mut sparser = power.clone();
        sparser.ema.snapshot_every = 7;
        assert_ne!(training_hash(&sparser), base);
        let mut constant = RunConfig::default();
        let before = training_hash(&constant);
        constant.ema.std_rel = vec![0.2];
        constant.ema.snapshot_every = 7;
        assert_eq!(training_hash(&constant), before);
    }

    #[test]
    fn bpd_variance_is_a_training_key_of_vlb_runs_only() {
        use crate::diffusion::sampling::Variance;
        use crate::diffusion::WeightingKind;
        let with = |w: WeightingKind, v: Variance| {
            let mut c = RunConfig::default();
            c.diffusion.weighting = w;
            c.eval.bpd_variance = v;
            c
        };
        let (small, large) = (Variance::FixedSmall, Variance::FixedLarge);
        // Other weightings: evaluation-only, as every eval.* key.
        let snr = |v| training_hash(&with(WeightingKind::Snr, v));
        assert_eq!(snr(small), snr(large));
        // vlb: the variance weights the loss, so the jobs differ; fixed-small
        // (what vlb always trained with) keeps the earlier name.
        let vlb = |v| with(WeightingKind::Vlb, v);
        assert_ne!(training_hash(&vlb(small)), training_hash(&vlb(large)));
        assert_ne!(resume_hash(&vlb(small)), resume_hash(&vlb(large)));
        assert_eq!(training_hash(&vlb(small)), legacy_hash(&vlb(small), false));
    }

    #[test]
    fn init_from_names_a_new_job_only_when_set() {
        let mut c = RunConfig::default();
        let before = training_hash(&c);
        assert_eq!(before, legacy_hash(&c, false));
        c.model.init_from = "exports/tiny".into();
        assert_ne!(training_hash(&c), before);
        assert_ne!(resume_hash(&c), resume_hash(&RunConfig::default()));
    }

    #[test]
    fn roles_cover_sections_and_exact_keys() {
        assert_eq!(role("eval.num_samples"), KeyRole::EvalOnly);
        assert_eq!(role("ema.decay"), KeyRole::EvalOnly);
        assert_eq!(role("ema.decays"), KeyRole::Training);
        assert_eq!(role("output.dir"), KeyRole::LaunchOnly);
        assert_eq!(role("outputs.dir"), KeyRole::Training);
        assert_eq!(role("train.threads"), KeyRole::LaunchOnly);
        assert_eq!(role("train.lr"), KeyRole::Training);
        assert!(is_launch_only("train.fail_at_step") && is_eval_only("eval.sampler"));
    }
}
