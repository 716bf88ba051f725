//! Layered loading of a run config with figment:
//! built-in defaults ← the TOML file ← `DDPM_LAB_`-prefixed environment
//! (`DDPM_LAB_TRAIN__LR=1e-4` sets `train.lr`) ← `--set key=value`.
//!
//! Every problem is collected, not just the first: unknown keys (with a "did you
//! mean"), wrong types, then the value checks of [`super::validate`]. Each
//! names where the value came from: `file:line`, the environment variable, or
//! the `--set` flag.

use super::hardware::Hardware;
use super::kind::{FileKind, WrongKind};
use super::locate::line_of;
use super::run::RunConfig;
use super::validate::{validate, Problem};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Prefix of environment variables that set config keys; `__` separates levels.
pub const ENV_PREFIX: &str = "DDPM_LAB_";

/// Everything wrong with a config, each problem on its own line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", render(.origin, .problems))]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// Ok when there is no problem; else every problem, from `origin`.
    pub fn unless_empty(origin: &Path, problems: Vec<Problem>) -> Result<(), ConfigError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                origin: origin.display().to_string(),
                problems,
            })
        }
    }
}

/// Why a config file could not be read: it is the other kind of file, or
/// it has problems.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    WrongKind(#[from] WrongKind),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn render(origin: &str, problems: &[Problem]) -> String {
    let n = problems.len();
    let mut s = format!("{origin} has {n} problem{}:", if n == 1 { "" } else { "s" });
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}

/// One `--set key=value`. The value is read as TOML (`0.1`, `true`, `[1, 2]`,
/// `"text"`), and as a plain string when it is not valid TOML (`--set diffusion.prediction=v`).
#[derive(Debug, Clone)]
pub struct SetArg {
    pub key: String,
    pub value: toml::Value,
    pub raw: String,
}

impl SetArg {
    pub fn parse(raw: &str) -> Result<SetArg, String> {
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| format!("--set {raw}: expected key=value, e.g. --set train.lr=1e-4"))?;
        // `sweep."train.lr"` (TOML's quoting of a dotted key) means sweep.train.lr.
        let unquoted = key.trim().replace(['"', '\''], "");
        let key = unquoted.as_str();
        if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
            return Err(format!(
                "--set {raw}: the key must be a dotted path like train.lr"
            ));
        }
        let value = value.trim();
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        Ok(SetArg {
            key: key.to_string(),
            value: parsed,
            raw: raw.to_string(),
        })
    }
}

impl Provider for SetArg {
    fn metadata(&self) -> Metadata {
        Metadata::named("command line").source(Source::Custom(format!("--set {}", self.raw)))
    }
    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let value = Value::serialize(&self.value)?;
        let dict = figment::util::nest(&self.key, value)
            .into_dict()
            .expect("nest always returns a dict"); // ok: nest wraps in a dict
        Ok(Profile::Default.collect(dict))
    }
}

/// Where a run config comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub sets: Vec<SetArg>,
    /// Read `DDPM_LAB_*` variables (off in tests that must not see the environment).
    pub env: bool,
}

/// A TOML text that a layer came from, so problems can name `file:line`:
/// keys of the layer whose metadata is `name` are looked up in `text` under
/// `prefix` (e.g. `base.` for a sweep spec's `[base]` table).
#[derive(Debug, Clone)]
pub struct LayerText {
    pub name: String,
    pub path: PathBuf,
    pub text: String,
    pub prefix: String,
}

/// A figment holding the built-in defaults, to merge layers onto.
pub fn defaults() -> Figment {
    Figment::from(Serialized::defaults(RunConfig::default()))
}

/// The `DDPM_LAB_*` environment layer.
pub fn env_layer() -> Env {
    Env::prefixed(ENV_PREFIX).split("__")
}

/// Read a TOML file, or say why not.
pub fn read_toml(path: &Path) -> Result<String, Problem> {
    let t = std::fs::read_to_string(path).map_err(|e| {
        Problem::new(
            "",
            format!("cannot read {}: {e}; check the path", path.display()),
        )
    })?;
    if let Err(e) = t.parse::<toml::Table>() {
        return Err(Problem::new("", format!("not valid TOML: {e}")));
    }
    Ok(t)
}

/// Load, layer and validate a run config. A sweep spec is named as one
/// before any key is checked.
pub fn load(sources: &Sources) -> Result<RunConfig, LoadError> {
    let origin = sources
        .file
        .as_ref()
        .map_or("the run config".to_string(), |p| p.display().to_string());
    let fail = |problems| ConfigError {
        origin: origin.clone(),
        problems,
    };
    let mut texts = vec![];
    let mut fig = defaults();
    if let Some(path) = &sources.file {
        let t = read_toml(path).map_err(|p| fail(vec![p]))?;
        super::kind::expect(path, &t, FileKind::RunConfig)?;
        fig = fig.merge(Toml::file(path));
        texts.push(LayerText {
            name: "TOML file".into(),
            path: path.clone(),
            text: t,
            prefix: String::new(),
        });
    }
    if sources.env {
        fig = fig.merge(env_layer());
    }
    for s in &sources.sets {
        fig = fig.merge(s.clone());
    }
    Ok(extract(&fig, &texts).map_err(fail)?)
}

/// Check a layered figment and extract the run config: unknown keys first, then
/// types, then values. Each problem names where its value came from.
pub fn extract(fig: &Figment, texts: &[LayerText]) -> Result<RunConfig, Vec<Problem>> {
    extract_on(fig, texts, &Hardware::probe())
}

/// [`extract`], with the machine-dependent checks made against `hw` (the
/// compute nodes a cluster job will run on, rather than this machine).
pub fn extract_on(
    fig: &Figment,
    texts: &[LayerText],
    hw: &Hardware,
) -> Result<RunConfig, Vec<Problem>> {
    let locate = |key: &str| where_from(fig, key, texts);
    let Keyed {
        config,
        mut problems,
        reported,
    } = key_problems(fig, texts);
    if let Some(config) = &config {
        for p in validate(config, hw) {
            // A stand-in default of a reported key is not a second problem,
            // nor is a check that reads it (its message names it).
            if reported.iter().any(|k| stands_in(&p, k)) {
                continue;
            }
            let at = locate(&p.key);
            problems.push(p.at(at));
        }
    }
    match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(problems),
    }
}

/// A layered config read for its keys and types, before its values are
/// checked.
pub struct Keyed {
    /// The config, with defaults standing in for the reported keys (None
    /// when it still cannot be read).
    pub config: Option<RunConfig>,
    /// Unknown keys (with a "did you mean") and wrongly typed values, located.
    pub problems: Vec<Problem>,
    /// The keys those problems are about.
    pub reported: Vec<String>,
}

/// Every unknown key and every wrongly typed value of a layered figment:
/// extraction is retried without each badly typed key in turn, so that one
/// does not hide the next.
pub fn key_problems(fig: &Figment, texts: &[LayerText]) -> Keyed {
    let locate = |key: &str| where_from(fig, key, texts);
    let unknown = unknown_keys(fig);
    let mut problems = unknown
        .iter()
        .map(|(key, hint)| Problem::new(key, format!("unknown key{hint}")).at(locate(key)))
        .collect::<Vec<_>>();
    let mut reported: Vec<String> = unknown.into_iter().map(|(k, _)| k).collect();
    let mut data = fig
        .data()
        .ok()
        .and_then(|mut m| m.remove(&Profile::Default))
        .unwrap_or_default();
    for key in &reported {
        remove_path(&mut data, key);
    }
    let mut config = None;
    for _ in 0..64 {
        match Figment::from(Serialized::defaults(&data)).extract::<RunConfig>() {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => {
                let mut progressed = false;
                for err in e {
                    let key = err.path.join(".");
                    problems.push(Problem::new(&key, kind_message(&err.kind)).at(locate(&key)));
                    progressed |= remove_path(&mut data, &key);
                    reported.push(key);
                }
                if !progressed {
                    break;
                }
            }
        }
    }
    Keyed {
        config,
        problems,
        reported,
    }
}

/// Whether value problem `p` may come from the default that stands in for the
/// reported key `k`: it is about `k` or a key inside it, or its message names
/// `k` as a word (`set data.labels = true` names `data` and `data.labels`).
fn stands_in(p: &Problem, k: &str) -> bool {
    let inside = |s: &str| {
        s == k
            || s.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    inside(&p.key)
        || p.message.match_indices(k).any(|(i, _)| {
            !word(p.message[..i].chars().next_back())
                && !word(p.message[i + k.len()..].chars().next())
        })
}

/// Remove a dotted key from nested dicts; whether it was there.
fn remove_path(dict: &mut Dict, key: &str) -> bool {
    match key.split_once('.') {
        None => dict.remove(key).is_some(),
        Some((head, rest)) => match dict.get_mut(head) {
            Some(Value::Dict(_, inner)) => remove_path(inner, rest),
            _ => false,
        },
    }
}

/// `file:line`, `$DDPM_LAB_…` or `--set …` for a key, where it was set explicitly.
fn where_from(fig: &Figment, key: &str, texts: &[LayerText]) -> Option<String> {
    // An element (`ema.std_rel[1]`) is located at its list's line.
    let key = key.split_once('[').map_or(key, |(list, _)| list);
    let meta = fig.find_metadata(key)?;
    if let Some(t) = texts.iter().find(|t| t.name == meta.name) {
        let line = line_of(&t.text, &format!("{}{key}", t.prefix));
        return Some(match line {
            Some(l) => format!("{}:{l}", t.path.display()),
            None => t.path.display().to_string(),
        });
    }
    match &meta.source {
        Some(Source::File(path)) => Some(path.display().to_string()),
        Some(Source::Custom(s)) => Some(s.clone()),
        _ if meta.name.contains("environment") => Some(format!(
            "${ENV_PREFIX}{}",
            key.to_uppercase().replace('.', "__")
        )),
        _ => None,
    }
}

/// serde's name for an expected type in words a config author uses.
fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number ≥ 0".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        s if s.starts_with("struct ") => "a table of keys (a section such as [train])".into(),
        s => s.to_string(),
    }
}

fn kind_message(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let hint = if matches!(actual, figment::error::Actual::Seq) {
                " (to try several values, make the key an axis under [sweep])"
            } else {
                ""
            };
            format!(
                "expected {}, found {actual}{hint}",
                plain_expected(expected)
            )
        }
        Kind::UnknownVariant(v, allowed) => {
            format!("unknown value {v:?}; allowed: {}", allowed.join(", "))
        }
        other => other.to_string(),
    }
}

/// Every key path the config accepts.
fn known_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let value = Value::serialize(RunConfig::schema_sample()).expect("config serializes"); // ok: plain data
    fn walk(prefix: &str, v: &Value, keys: &mut BTreeSet<String>) {
        if let Some(d) = v.as_dict() {
            for (k, v) in d {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                keys.insert(path.clone());
                walk(&path, v, keys);
            }
        }
    }
    walk("", &value, &mut keys);
    keys
}

/// Keys in the merged config that the schema does not have, each with a
/// "did you mean" hint when a known key is close.
fn unknown_keys(fig: &Figment) -> Vec<(String, String)> {
    let known = known_keys();
    let Ok(data) = fig.data() else {
        return vec![];
    };
    let mut out = vec![];
    fn walk(prefix: &str, d: &Dict, known: &BTreeSet<String>, out: &mut Vec<(String, String)>) {
        for (k, v) in d {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if !known.contains(&path) {
                out.push((path.clone(), did_you_mean(&path, known)));
                continue;
            }
            if let Some(inner) = v.as_dict() {
                // Tables whose schema entry is a leaf (none today) would be skipped here.
                walk(&path, inner, known, out);
            }
        }
    }
    for dict in data.values() {
        walk("", dict, &known, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn did_you_mean(path: &str, known: &BTreeSet<String>) -> String {
    if path == "ema.decay" {
        // One word apart, two meanings: say which is which.
        return "; `ema.decay` is a sweep axis, not a run key: under [sweep], \"ema.decay\" = [0.999, 0.9999] picks the EMA each run is evaluated with (its runs share one training); in a run config or a spec's [base], list the decays a run tracks: ema.decays = [0.999]".into();
    }
    let depth = path.matches('.').count();
    let best = known
        .iter()
        .filter(|k| k.matches('.').count() == depth)
        .map(|k| (strsim::jaro_winkler(path, k), k))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, k)) if score > 0.85 => format!("; did you mean `{k}`?"),
        _ => {
            let parent = path.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
            let siblings: Vec<&str> = known
                .iter()
                .filter_map(|k| {
                    let (p, leaf) = k.rsplit_once('.').unwrap_or(("", k));
                    (p == parent).then_some(leaf)
                })
                .collect();
            if siblings.is_empty() {
                String::new()
            } else {
                format!("; known keys here: {}", siblings.join(", "))
            }
        }
    }
}

/// The default run directory for a config file: `results/runs/<file stem>`.
pub fn default_run_dir(file: Option<&Path>) -> PathBuf {
    let stem = file
        .and_then(|f| f.file_stem())
        .map_or("run".to_string(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("results").join("runs").join(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every problem of a run config at once, each at its line: two wrongly
    /// typed values and an unknown key.
    #[test]
    fn one_type_error_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(
            &path,
            "[train]\nsteps = \"many\"\nbatch_size = true\n[model]\npresett = \"x\"\n",
        )
        .unwrap();
        let e = load(&Sources {
            file: Some(path.clone()),
            sets: vec![],
            env: false,
        })
        .unwrap_err()
        .to_string();
        let at = |line: usize, what: &str| format!("{}:{line}: {what}", path.display());
        for needle in [
            at(
                2,
                "train.steps: expected a whole number ≥ 0, found string \"many\"",
            ),
            at(
                3,
                "train.batch_size: expected a whole number, found bool true",
            ),
            at(
                5,
                "model.presett: unknown key; did you mean `model.preset`?",
            ),
        ] {
            assert!(e.contains(&needle), "{needle:?} missing from:\n{e}");
        }
    }

    #[test]
    fn a_sweep_spec_is_named_before_its_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.toml");
        std::fs::write(&path, "name = \"s\"\n[sweep]\nseeds = [0]\n").unwrap();
        let e = load(&Sources {
            file: Some(path.clone()),
            sets: vec![],
            env: false,
        })
        .unwrap_err();
        assert!(matches!(e, LoadError::WrongKind(_)), "{e}");
        assert!(
            e.to_string().ends_with(&format!(
                "is a sweep spec (it has [sweep]), not a run config: run it with `ddpm-lab sweep {}`",
                path.display()
            )),
            "{e}"
        );
    }
}
