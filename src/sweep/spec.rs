//! A sweep spec: `name`, `description`, `extends`, `[base]` (any run-config
//! keys) and `[sweep]` (the axes, see [`super::expand`]), resolved into one
//! validated [`RunConfig`] per run.
//!
//! Layers, later wins: built-in defaults ← the `[base]` of the spec named by
//! `extends` (a path relative to the spec; chains allowed) ← this spec's
//! `[base]` and the run's axis values ← `DDPM_LAB_*` environment ← `--set`.
//! Every problem of every run is reported at once with the spec's file and
//! line; a problem that only some runs have names the first such run.

use super::expand::{self, Assignment, Axes};
use crate::config::kind::FileKind;
use crate::config::load::{
    defaults, env_layer, extract_on, key_problems, read_toml, ConfigError, LayerText, LoadError,
    SetArg,
};
use crate::config::{Problem, RunConfig};
use crate::run::report_settings::ReportSettings;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};
use std::path::{Path, PathBuf};

/// Keys a spec may have at its top level.
const TOP_LEVEL: [&str; 7] = [
    "name",
    "description",
    "extends",
    "base",
    "sweep",
    "report",
    "launcher",
];
/// How deep `extends` chains may go.
const MAX_EXTENDS: usize = 8;

/// A parsed spec.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    /// Base layers, the outermost `extends` first, this spec's last.
    pub bases: Vec<BaseLayer>,
    pub axes: Axes,
    /// `[report]`: how `ddpm-lab report` aggregates and what it tests (the
    /// nearest spec's in the `extends` chain), checked against the axes.
    pub report: Option<ReportSettings>,
    /// `[launcher]`: where the jobs run (the nearest spec's in the chain).
    /// Not part of the resolved spec: it changes no result.
    pub launcher: Option<super::launcher::Launcher>,
    /// The machine the runs' device settings are checked against; None:
    /// this one. A cluster launcher describes its compute nodes here.
    pub hardware: Option<crate::config::Hardware>,
    /// Axes given or replaced by `--set sweep.<key>=[…]`: (run-config key, the
    /// flag as written), so their problems name the flag, not the file.
    pub set_axes: Vec<(String, String)>,
}

/// The `[base]` of one spec file.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    /// The figment layer's name (unique per file).
    pub name: String,
    pub path: PathBuf,
    pub text: String,
    /// Its keys, dotted, with their values.
    pub pairs: Assignment,
}

/// One run of a sweep.
#[derive(Debug, Clone)]
pub struct Run {
    pub assignment: Assignment,
    pub config: RunConfig,
}

/// Whether a sweep name is one plain path component: the sweep's folder is
/// `<results>/<name>`, which must stay inside `<results>`.
fn plain_name(name: &str) -> bool {
    !name.starts_with('.') && !name.contains(['/', '\\']) && !name.contains('\0')
}

/// (key, value) pairs as a figment layer with a name of its own.
struct Pairs {
    name: String,
    source: Source,
    pairs: Vec<(String, toml::Value)>,
}

impl Provider for Pairs {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone()).source(self.source.clone())
    }
    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        // Built here rather than through an inner figment, so the values carry
        // this provider's tag and problems can name where they came from.
        let mut dict = Dict::new();
        for (k, v) in &self.pairs {
            let nested = figment::util::nest(k, Value::serialize(v)?);
            if let Some(d) = nested.into_dict() {
                merge(&mut dict, d);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Deep-merge `b` into `a` (b wins).
fn merge(a: &mut Dict, b: Dict) {
    for (k, v) in b {
        match (a.get_mut(&k), v) {
            (Some(Value::Dict(_, inner)), Value::Dict(_, new)) => merge(inner, new),
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
}

fn leaves(prefix: &str, t: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => leaves(&path, inner, out),
            other => out.push((path, other.clone())),
        }
    }
}

/// Read a spec and the chain of specs it extends. A run config (in the chain
/// too) is named as one before any key is checked.
pub fn read(path: &Path) -> Result<SweepSpec, LoadError> {
    let fail = |problems| ConfigError {
        origin: path.display().to_string(),
        problems,
    };
    let mut bases = vec![];
    let mut chain: Vec<PathBuf> = vec![];
    let mut head: Option<Head> = None;
    let mut report: Option<ReportSettings> = None;
    let mut launcher: Option<super::launcher::Launcher> = None;
    let mut next = Some(path.to_path_buf());
    while let Some(current) = next {
        let file = SpecFile::read(&current).map_err(|p| fail(vec![p]))?;
        crate::config::kind::expect(&current, &file.text, FileKind::SweepSpec)?;
        chain.push(current);
        let layer = file
            .check(head.as_ref(), report.is_some(), &chain)
            .map_err(fail)?;
        bases.push(layer.base);
        // The nearest `[report]` in the chain wins, like the first name.
        report = report.or(layer.report);
        launcher = launcher.or(layer.launcher);
        head = head.or(layer.head);
        next = layer.extends;
    }
    bases.reverse(); // the outermost base first
    let head = head.expect("the first spec was read"); // ok: the loop reads it first
    Ok(SweepSpec {
        name: head.name,
        description: head.description,
        path: path.to_path_buf(),
        bases,
        axes: head.axes,
        report,
        launcher,
        hardware: None,
        set_axes: vec![],
    })
}

/// One file of an `extends` chain, parsed as TOML but not yet checked.
struct SpecFile {
    path: PathBuf,
    text: String,
    table: toml::Table,
}

/// What only the first spec of a chain gives (the files it extends lend
/// their `[base]` and `[report]`, not these).
struct Head {
    name: String,
    description: String,
    axes: Axes,
}

/// What one spec file gives once it has no problems.
struct Layer {
    base: BaseLayer,
    report: Option<ReportSettings>,
    launcher: Option<super::launcher::Launcher>,
    /// For the first file of the chain only.
    head: Option<Head>,
    /// The spec it extends, checked to exist and not to close a cycle.
    extends: Option<PathBuf>,
}

impl SpecFile {
    fn read(path: &Path) -> Result<Self, Problem> {
        let text = read_toml(path).map_err(|p| p.at(Some(path.display().to_string())))?;
        let table: toml::Table = text.parse().expect("read_toml checked it parses"); // ok: checked
        Ok(SpecFile {
            path: path.to_path_buf(),
            text,
            table,
        })
    }

    /// `file:line` of a dotted key, or the file alone when it is not written.
    /// A list's element is located as written in messages (`claims[0].kind`).
    fn origin(&self, key: &str) -> String {
        let dotted = key.replace('[', ".").replace(']', "");
        match crate::config::locate::line_of(&self.text, &dotted) {
            Some(l) => format!("{}:{l}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    fn problem(&self, key: &str, msg: String) -> Problem {
        Problem::new(key, msg).at(Some(self.origin(key)))
    }

    /// Every problem of the file, in this order: unknown top-level keys,
    /// `[report]`, `[base]`, then (the spec named on the command line, which
    /// has no `head` yet) `[sweep]` and `name`, then the `[report]` claims
    /// against the axes (unless a nearer spec's `[report]` is `shadowing`
    /// this one's), then `extends`. `chain` holds the files read so far,
    /// this one last.
    fn check(
        self,
        head: Option<&Head>,
        shadowing: bool,
        chain: &[PathBuf],
    ) -> Result<Layer, Vec<Problem>> {
        let mut problems = vec![];
        self.unknown_keys(&mut problems);
        let report = self.report(&mut problems);
        let launcher = self.launcher(&mut problems);
        let pairs = self.base(&mut problems);
        let after_base = problems.len();
        let own_head = match head {
            None => self.head(&mut problems),
            Some(_) => None,
        };
        // The claims name the first spec's axes, wherever the [report] is.
        let axes = head.or(own_head.as_ref()).map(|h| &h.axes);
        if let (Some(r), Some(axes), false) = (&report, axes, shadowing) {
            for p in super::report_check::selector_problems(r, axes) {
                problems.push(self.problem(&p.key, p.message));
            }
        }
        let head = own_head;
        let extends = self.extends(chain, &mut problems);
        if !problems.is_empty() {
            // `[base]` keys are checked when the runs resolve, which a file
            // with problems never reaches: check its keys and types now, so
            // that the file's other problems do not hide them.
            let base = self.base_keys(&pairs);
            problems.splice(after_base..after_base, base);
            return Err(problems);
        }
        Ok(Layer {
            base: BaseLayer {
                name: format!("sweep spec {}", self.path.display()),
                path: self.path,
                text: self.text,
                pairs,
            },
            report,
            launcher,
            head,
            extends,
        })
    }

    fn unknown_keys(&self, problems: &mut Vec<Problem>) {
        for k in self.table.keys() {
            if !TOP_LEVEL.contains(&k.as_str()) {
                problems.push(self.problem(
                    k,
                    format!("unknown key; a spec has {}", TOP_LEVEL.join(", ")),
                ));
            }
        }
    }

    /// `[report]`, each key checked (the claims' selectors are checked
    /// against the axes in [`Self::check`]).
    fn report(&self, problems: &mut Vec<Problem>) -> Option<ReportSettings> {
        match self.table.get("report") {
            None => None,
            Some(toml::Value::Table(r)) => match ReportSettings::from_table(r) {
                Ok(s) => Some(s),
                Err(ps) => {
                    for p in ps {
                        problems.push(self.problem(&p.key, p.message));
                    }
                    None
                }
            },
            Some(_) => {
                problems.push(
                    self.problem("report", "must be a table ([report] smoothing = 5)".into()),
                );
                None
            }
        }
    }

    /// `[launcher]`, each key checked.
    fn launcher(&self, problems: &mut Vec<Problem>) -> Option<super::launcher::Launcher> {
        match self.table.get("launcher") {
            None => None,
            Some(toml::Value::Table(t)) => match super::launcher::Launcher::from_table(t) {
                Ok(l) => Some(l),
                Err(ps) => {
                    for p in ps {
                        problems.push(self.problem(&p.key, p.message));
                    }
                    None
                }
            },
            Some(_) => {
                problems.push(self.problem(
                    "launcher",
                    "must be a table ([launcher] kind = \"slurm\")".into(),
                ));
                None
            }
        }
    }

    /// `[base]` as dotted keys with their values (checked when runs resolve).
    fn base(&self, problems: &mut Vec<Problem>) -> Assignment {
        let mut base = vec![];
        match self.table.get("base") {
            Some(toml::Value::Table(t)) => leaves("", t, &mut base),
            Some(_) => problems
                .push(self.problem("base", "must be a table of run-config keys ([base])".into())),
            None => {}
        }
        base
    }

    /// The unknown keys and wrongly typed values of `[base]` (`pairs`), each
    /// at its line; its values are checked with the runs'.
    fn base_keys(&self, pairs: &Assignment) -> Vec<Problem> {
        let name = format!("sweep spec {}", self.path.display());
        let fig = defaults().merge(Pairs {
            name: name.clone(),
            source: Source::File(self.path.clone()),
            pairs: pairs.clone(),
        });
        let text = LayerText {
            name,
            path: self.path.clone(),
            text: self.text.clone(),
            prefix: "base.".into(),
        };
        key_problems(&fig, &[text]).problems
    }

    /// The axes, name and description; `None` when the axes cannot be read.
    fn head(&self, problems: &mut Vec<Problem>) -> Option<Head> {
        let axes = self.axes(problems);
        let name = self.name(problems);
        let description = self
            .table
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("")
            .to_string();
        Some(Head {
            name,
            description,
            axes: axes?,
        })
    }

    /// `[sweep]` parsed into axes. A problem is located by the key it names
    /// and reported under the key `sweep`.
    fn axes(&self, problems: &mut Vec<Problem>) -> Option<Axes> {
        match expand::parse_all(&self.text) {
            Ok(axes) => Some(axes),
            Err(errors) => {
                for e in errors {
                    problems.push(
                        Problem::new("sweep", e.to_string()).at(Some(self.origin(&e.location()))),
                    );
                }
                None
            }
        }
    }

    /// `name`, or the file's stem when it has none.
    fn name(&self, problems: &mut Vec<Problem>) -> String {
        match self.table.get("name") {
            Some(toml::Value::String(s)) if !s.trim().is_empty() && !plain_name(s) => {
                problems.push(self.problem(
                    "name",
                    format!("= {s:?}: the name becomes the folder <results>/<name>, so it must be one plain folder name (no /, \\, .., or a leading .), e.g. \"ema_ablation\""),
                ));
                String::new()
            }
            Some(toml::Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(_) => {
                problems.push(self.problem("name", "must be a non-empty string".into()));
                String::new()
            }
            None => self
                .path
                .file_stem()
                .map_or("sweep".into(), |s| s.to_string_lossy().into_owned()),
        }
    }

    /// The spec named by `extends` (relative to this one), if it exists and
    /// is not already in `chain` (nor the chain too deep).
    fn extends(&self, chain: &[PathBuf], problems: &mut Vec<Problem>) -> Option<PathBuf> {
        let rel = match self.table.get("extends") {
            None => return None,
            Some(toml::Value::String(rel)) => rel,
            Some(_) => {
                problems.push(self.problem("extends", "must be a path string".into()));
                return None;
            }
        };
        let next = self.path.parent().unwrap_or(Path::new(".")).join(rel);
        if chain.iter().any(|c| c == &next) || chain.len() >= MAX_EXTENDS {
            problems.push(self.problem("extends", format!("= {rel:?} makes a cycle or a chain over {MAX_EXTENDS} deep; extend a spec that does not extend this one")));
            return None;
        }
        if !next.exists() {
            problems.push(self.problem(
                "extends",
                format!(
                    "= {rel:?}: {} does not exist (the path is relative to the spec)",
                    next.display()
                ),
            ));
            return None;
        }
        Some(next)
    }
}

/// A slug of a run's swept values, e.g. `prediction-v_decay-0.999_seed-1`.
pub fn slug(assignment: &Assignment) -> String {
    let part = |k: &str, v: &toml::Value| {
        let leaf = k.rsplit('.').next().unwrap_or(k);
        let value = match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let clean = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        };
        format!("{}-{}", clean(leaf), clean(&value))
    };
    let s: Vec<String> = assignment.iter().map(|(k, v)| part(k, v)).collect();
    if s.is_empty() {
        "base".into()
    } else {
        s.join("_")
    }
}

impl SweepSpec {
    /// Apply the `--set sweep.<key>=[…]` among `sets` to the axes (replacing an
    /// axis, or adding one before `seeds`); return the other sets, which apply
    /// to every run's config.
    pub fn apply_axis_sets(&mut self, sets: &[SetArg]) -> Result<Vec<SetArg>, ConfigError> {
        let mut rest = vec![];
        let mut problems = vec![];
        for s in sets {
            let Some(key) = s.key.strip_prefix("sweep.") else {
                rest.push(s.clone());
                continue;
            };
            let bad = |msg: String| Problem::new(&s.key, msg).at(Some(format!("--set {}", s.raw)));
            if matches!(key.split('.').next(), Some("zip" | "exclude" | "include")) {
                problems.push(bad(
                    "zip groups, excludes and includes can only be changed in the spec file".into(),
                ));
                continue;
            }
            let values = match &s.value {
                toml::Value::Array(a) if !a.is_empty() => a.clone(),
                _ => {
                    problems.push(bad(format!(
                        "= {}: an axis is a non-empty list, e.g. --set '{}=[1, 2]'",
                        s.value, s.key
                    )));
                    continue;
                }
            };
            let key = if key == "seeds" { "train.seed" } else { key };
            self.set_axes.push((key.to_string(), s.raw.clone()));
            let points: Vec<Vec<toml::Value>> = values.into_iter().map(|v| vec![v]).collect();
            // The checks a spec file's axis gets: no value twice.
            let place = axis_name(key);
            if let Err(e) = expand::check_distinct(&place, &[key.to_string()], &points) {
                problems.push(bad(unplaced(&e.to_string(), &place)));
                continue;
            }
            if let Some(axis) = self.axes.axes.iter_mut().find(|a| a.keys == [key]) {
                axis.points = points;
            } else if self
                .axes
                .axes
                .iter()
                .any(|a| a.keys.iter().any(|k| k == key))
            {
                problems.push(bad(format!(
                    "{key} is swept inside a zip group; change it in the spec file"
                )));
            } else {
                let at = match self.axes.axes.last() {
                    Some(a) if a.keys == ["train.seed"] => self.axes.axes.len() - 1,
                    _ => self.axes.axes.len(),
                };
                self.axes.axes.insert(
                    at,
                    expand::Axis {
                        keys: vec![key.to_string()],
                        points,
                    },
                );
            }
        }
        // And the checks over the runs they make (too many, launch-only keys,
        // includes repeated), now that the axes changed.
        let axis_sets: Vec<&str> = sets
            .iter()
            .filter(|s| s.key.starts_with("sweep."))
            .map(|s| s.raw.as_str())
            .collect();
        if problems.is_empty() && !axis_sets.is_empty() {
            if let Err(e) = expand::check_runs(&self.axes) {
                let at = e.location();
                problems.push(
                    Problem::new(&at, unplaced(&e.to_string(), &at))
                        .at(Some(format!("--set {}", axis_sets.join(" --set ")))),
                );
            }
        }
        ConfigError::unless_empty(&self.path, problems).map(|()| rest)
    }

    /// The spec with `extends` flattened and the axes as they are now, as TOML
    /// that `ddpm-lab sweep` reads back to the same runs (when no `--set`
    /// overrode a swept key).
    pub fn resolved_toml(&self, sets: &[SetArg]) -> String {
        let mut base = toml::Table::new();
        let put = |t: &mut toml::Table, key: &str, v: toml::Value| {
            let parts: Vec<&str> = key.split('.').collect();
            let mut cur = t;
            for p in &parts[..parts.len() - 1] {
                cur = cur
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .expect("a key is either a table or a value"); // ok: run-config keys nest consistently
            }
            cur.insert(parts[parts.len() - 1].to_string(), v);
        };
        for b in &self.bases {
            for (k, v) in &b.pairs {
                put(&mut base, k, v.clone());
            }
        }
        for s in sets {
            put(&mut base, &s.key, s.value.clone());
        }
        let mut sweep = toml::Table::new();
        let mut zips = vec![];
        for a in &self.axes.axes {
            let column =
                |i: usize| toml::Value::Array(a.points.iter().map(|p| p[i].clone()).collect());
            if a.keys.len() == 1 {
                let name = if a.keys[0] == "train.seed" {
                    "seeds"
                } else {
                    &a.keys[0]
                };
                sweep.insert(name.to_string(), column(0));
            } else {
                let mut z = toml::Table::new();
                for (i, k) in a.keys.iter().enumerate() {
                    z.insert(k.clone(), column(i));
                }
                zips.push(toml::Value::Table(z));
            }
        }
        let tables = |list: &[expand::Assignment]| {
            toml::Value::Array(
                list.iter()
                    .map(|a| toml::Value::Table(a.iter().cloned().collect()))
                    .collect(),
            )
        };
        if !zips.is_empty() {
            sweep.insert("zip".into(), toml::Value::Array(zips));
        }
        if !self.axes.exclude.is_empty() {
            sweep.insert("exclude".into(), tables(&self.axes.exclude));
        }
        if !self.axes.include.is_empty() {
            sweep.insert("include".into(), tables(&self.axes.include));
        }
        let mut top = toml::Table::new();
        top.insert("name".into(), toml::Value::String(self.name.clone()));
        top.insert(
            "description".into(),
            toml::Value::String(self.description.clone()),
        );
        top.insert("base".into(), toml::Value::Table(base));
        top.insert("sweep".into(), toml::Value::Table(sweep));
        if let Some(r) = self
            .report
            .as_ref()
            .and_then(|r| toml::Value::try_from(r).ok())
        {
            top.insert("report".into(), r);
        }
        format!(
            "# Resolved from {} (extends flattened, --set folded into [base]).\n{}",
            self.path.display(),
            toml::to_string(&top).unwrap_or_default()
        )
    }

    /// Every run, each a validated config; or every problem of every run.
    pub fn resolve(&self, sets: &[SetArg], env: bool) -> Result<Vec<Run>, ConfigError> {
        self.resolve_with(sets, env, |a| a.clone())
    }

    /// A `--set` or `DDPM_LAB_*` value for a swept training key would give
    /// every run the same value while ids and the report still tell the runs
    /// apart by it: refused, pointing at the axis form.
    fn check_overrides(&self, sets: &[SetArg], env: bool) -> Result<(), ConfigError> {
        // A table value merges into the config key by key: its leaves count.
        fn leaves_of(key: &str, v: &toml::Value, origin: &str, out: &mut Vec<(String, String)>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        leaves_of(&format!("{key}.{k}"), v, origin, out);
                    }
                }
                _ => out.push((key.to_string(), origin.to_string())),
            }
        }
        let mut given: Vec<(String, String)> = vec![];
        for s in sets {
            leaves_of(&s.key, &s.value, &format!("--set {}", s.raw), &mut given);
        }
        if env {
            for (k, _) in std::env::vars() {
                if let Some(rest) = k.strip_prefix(crate::config::load::ENV_PREFIX) {
                    given.push((rest.to_lowercase().replace("__", "."), format!("${k}")));
                }
            }
        }
        let mut problems = vec![];
        for (key, origin) in given {
            let swept = self.axes.axes.iter().flat_map(|a| &a.keys).find(|k| {
                **k == key
                    || k.strip_prefix(key.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            });
            // A key that does not change training (the test hook, logging
            // cadence) may be overridden: the runs' jobs stay apart.
            if let Some(axis) = swept.filter(|a| !crate::run::identity::is_launch_only(a)) {
                let form = axis_name(axis);
                let what = if *axis == key {
                    "swept".to_string()
                } else {
                    format!("holds the swept key {axis}")
                };
                problems.push(
                    Problem::new(
                        &key,
                        format!(
                            "{what}, so this would give every run one value while their ids and the report still tell them apart by it; change the axis instead, e.g. --set '{form}=[…]', or remove it from [sweep]"
                        ),
                    )
                    .at(Some(origin)),
                );
            }
        }
        ConfigError::unless_empty(&self.path, problems)
    }

    /// Like [`Self::resolve`], with `layer` choosing which of a run's swept
    /// values go into its config (the planner keeps eval-only keys out).
    pub fn resolve_with(
        &self,
        sets: &[SetArg],
        env: bool,
        layer: impl Fn(&Assignment) -> Assignment,
    ) -> Result<Vec<Run>, ConfigError> {
        self.check_overrides(sets, env)?;
        // Each distinct problem, the first run that has it, and how many runs do.
        let mut problems: Vec<(Problem, String, usize)> = vec![];
        let mut runs = vec![];
        let assignments = expand::expand(&self.axes);
        let hw = self.hardware.unwrap_or_else(crate::config::Hardware::probe);
        let spec_text = &self
            .bases
            .last()
            .expect("a spec has its own base layer")
            .text; // ok: read() pushes it
        for assignment in assignments {
            let mut fig = defaults();
            let mut texts = vec![];
            for b in &self.bases {
                fig = fig.merge(Pairs {
                    name: b.name.clone(),
                    source: Source::File(b.path.clone()),
                    pairs: b.pairs.clone(),
                });
                texts.push(LayerText {
                    name: b.name.clone(),
                    path: b.path.clone(),
                    text: b.text.clone(),
                    prefix: "base.".into(),
                });
            }
            let axis_name = "sweep axis".to_string();
            fig = fig.merge(Pairs {
                name: axis_name.clone(),
                source: Source::File(self.path.clone()),
                pairs: layer(&assignment),
            });
            texts.push(LayerText {
                name: axis_name,
                path: self.path.clone(),
                text: spec_text.clone(),
                prefix: "sweep.".into(),
            });
            if env {
                fig = fig.merge(env_layer());
            }
            for s in sets {
                fig = fig.merge(s.clone());
            }
            match extract_on(&fig, &texts, &hw) {
                Ok(config) => runs.push(Run { assignment, config }),
                Err(ps) => {
                    for mut p in ps {
                        if let Some((_, raw)) = self.set_axes.iter().find(|(k, _)| *k == p.key) {
                            p.origin = Some(format!("--set {raw}"));
                        }
                        match problems.iter_mut().find(|(q, _, _)| q == &p) {
                            Some(entry) => entry.2 += 1,
                            None => problems.push((p, slug(&assignment), 1)),
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            return Ok(runs);
        }
        let total = expand::expand(&self.axes).len();
        let problems = problems
            .into_iter()
            .map(|(mut p, run, count)| {
                if count < total {
                    let more = if count > 1 {
                        format!(" and {} more", count - 1)
                    } else {
                        String::new()
                    };
                    p.message = format!("{} (in run {run}{more})", p.message);
                }
                p
            })
            .collect();
        Err(ConfigError {
            origin: self.path.display().to_string(),
            problems,
        })
    }
}

/// How a spec names the axis over run-config key `key`: `sweep.seeds` for
/// `train.seed`, else `sweep.<key>`.
fn axis_name(key: &str) -> String {
    if key == "train.seed" {
        "sweep.seeds".to_string()
    } else {
        format!("sweep.{key}")
    }
}

/// An expansion error's message without its leading `place: ` (the problem
/// line names the key already).
fn unplaced(message: &str, place: &str) -> String {
    message
        .strip_prefix(place)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of resolving the spec at `p`, as printed.
    fn resolve_err(p: &Path) -> String {
        read(p)
            .unwrap()
            .resolve(&[], false)
            .unwrap_err()
            .to_string()
    }

    fn spec(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn runs_get_base_and_axis_values_with_extends_underneath() {
        let dir = tempfile::tempdir().unwrap();
        spec(
            dir.path(),
            "shared.toml",
            "[base]\ntrain.lr = 0.5\ntrain.steps = 11\n",
        );
        let p = spec(
            dir.path(),
            "s.toml",
            "name = \"demo\"\nextends = \"shared.toml\"\n[base]\ntrain.steps = 22\n[sweep]\n\"diffusion.prediction\" = [\"epsilon\", \"v\"]\nseeds = [3, 4]\n",
        );
        let s = read(&p).unwrap();
        assert_eq!(s.name, "demo");
        let runs = s.resolve(&[], false).unwrap();
        assert_eq!(runs.len(), 4);
        assert!(runs
            .iter()
            .all(|r| r.config.train.lr == 0.5 && r.config.train.steps == 22));
        assert_eq!(runs[1].config.train.seed, 4);
        assert_eq!(
            runs[2].config.diffusion.prediction,
            crate::diffusion::Prediction::V
        );
        assert_eq!(slug(&runs[3].assignment), "prediction-v_seed-4");
        // --set beats everything.
        let set = SetArg::parse("train.steps=5").unwrap();
        assert!(s
            .resolve(&[set], false)
            .unwrap()
            .iter()
            .all(|r| r.config.train.steps == 5));
    }

    #[test]
    fn problems_name_the_spec_line_for_base_and_axis_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = spec(
            dir.path(),
            "bad.toml",
            "name = \"bad\"\n[base]\ntrain.lr = -1\ntrain.stepz = 3\n",
        );
        let e = resolve_err(&p);
        assert!(
            e.contains("bad.toml:4: train.stepz: unknown key; did you mean `train.steps`?"),
            "{e}"
        );
        // The axis `ema.decay` in [base]: axis and run key explained.
        let p = spec(dir.path(), "decay.toml", "[base]\nema.decay = 0.999\n");
        let e = resolve_err(&p);
        assert!(
            e.contains(
                "decay.toml:2: ema.decay: unknown key; `ema.decay` is a sweep axis, not a run key"
            ) && e.contains("ema.decays = [0.999]"),
            "{e}"
        );
        let p = spec(
            dir.path(),
            "bad2.toml",
            "[base]\ntrain.lr = -1\n[sweep]\n\"train.batch_size\" = [8, 0]\n",
        );
        let e = resolve_err(&p);
        assert!(
            e.contains("bad2.toml:2: train.lr: = -1: must be a number > 0"),
            "{e}"
        );
        assert!(
            e.contains("bad2.toml:4: train.batch_size: = 0: must be at least 1"),
            "{e}"
        );
        assert!(e.contains("(in run batch-size-0)"), "{e}");
        assert!(
            !e.contains("lr: = -1: must be a number > 0 (2e-4 is typical) (in run"),
            "a problem of every run names no run"
        );
        let p = spec(dir.path(), "bad3.toml", "nmae = \"x\"\n");
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("bad3.toml:1: nmae: unknown key; a spec has name, description, extends, base, sweep"), "{e}");
        // A name must be one folder name inside the results folder.
        for bad in ["../../escaped", "/abs", ".", "..", "a/b", ".hidden"] {
            let p = spec(dir.path(), "bad4.toml", &format!("name = {bad:?}\n"));
            let e = read(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "bad4.toml:1: name: = {bad:?}: the name becomes the folder"
                )),
                "{bad}: {e}"
            );
        }
        let p = spec(dir.path(), "ok.toml", "name = \"ema_ablation-v2\"\n");
        assert_eq!(read(&p).unwrap().name, "ema_ablation-v2");
        let p = spec(dir.path(), "bad4.toml", "extends = \"bad4.toml\"\n");
        assert!(read(&p).unwrap_err().to_string().contains("makes a cycle"));
        let p = spec(dir.path(), "bad5.toml", "extends = \"nope.toml\"\n");
        assert!(read(&p).unwrap_err().to_string().contains("does not exist"));
        let p = spec(
            dir.path(),
            "bad6.toml",
            "[sweep]\n[[sweep.zip]]\na = [1]\nb = [1, 2]\n",
        );
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("bad6.toml:2: sweep: sweep.zip[0]: lists of unequal length (a: 1, b: 2)"),
            "{e}"
        );
    }

    /// Two distinct mistakes in one file, one in `[sweep]` (`seeds = 3`,
    /// not a list) and one in `[base]` (an unknown key), plus a second bad
    /// axis and a badly typed base value: every one is named, at its line.
    #[test]
    fn one_type_error_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = spec(
            dir.path(),
            "two.toml",
            "[base]\ntrain.stepz = 3\ntrain.lr = \"fast\"\n[sweep]\nseeds = 3\n\"train.batch_size\" = 8\n",
        );
        let e = read(&p).unwrap_err().to_string();
        let at = |line: usize, what: &str| format!("{}:{line}: {what}", p.display());
        for needle in [
            at(2, "train.stepz: unknown key; did you mean `train.steps`?"),
            at(3, "train.lr: expected a number, found string \"fast\""),
            at(5, "sweep: sweep.seeds: expected a list of values"),
            at(
                6,
                "sweep: sweep.train.batch_size: expected a list of values",
            ),
        ] {
            assert!(e.contains(&needle), "{needle:?} missing from:\n{e}");
        }
        assert!(e.contains("has 4 problems"), "{e}");
    }

    /// A `[sweep]` that cannot be read (`seeds = 3`) used to be the only
    /// problem reported; the file's other problems come with it, each at its
    /// line, and a bad `extends` too.
    #[test]
    fn a_bad_sweep_does_not_hide_the_files_other_problems() {
        let dir = tempfile::tempdir().unwrap();
        let p = spec(
            dir.path(),
            "many.toml",
            "nmae = \"x\"\nname = \"a/b\"\nextends = \"nope.toml\"\nbase = 1\n[report]\nsmoothing = 0\n[sweep]\nseeds = 3\n",
        );
        let Err(LoadError::Config(e)) = read(&p) else {
            panic!("problems expected")
        };
        let shown: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        // In the order the file is checked: unknown keys, [report], [base],
        // [sweep], name, extends.
        let expected = [
            (1, "nmae: unknown key"),
            (6, "report.smoothing: = 0: the smoothing window"),
            (4, "base: must be a table"),
            (8, "sweep: sweep.seeds: expected a list of values"),
            (2, "name: = \"a/b\": the name becomes the folder"),
            (3, "extends: = \"nope.toml\": "),
        ];
        assert_eq!(shown.len(), expected.len(), "{shown:#?}");
        for (s, (line, start)) in shown.iter().zip(expected) {
            let start = format!("{}:{line}: {start}", p.display());
            assert!(s.starts_with(&start), "{s:?} should start with {start:?}");
        }
    }

    /// `[report]`: the typed table's problems and the claims' selectors
    /// against the axes, all at once, each at its line; an inherited
    /// `[report]` is checked against this spec's axes, in its own file.
    #[test]
    fn report_problems_are_named_at_their_lines_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = spec(
            dir.path(),
            "ex2.toml",
            "name = \"ex2\"\n[sweep]\n\"ema.decay\" = [0.0, 0.999]\nseeds = [0, 1]\n[report]\nexercise = 9\nprediction = \"EMA wins\"\n[[report.claims]]\nkind = \"better\"\nmetric = \"fd\"\nbetter = { \"ema.decay\" = 0.99 }\nthan = { \"ema.decay\" = 0.0 }\nbest = 1\n",
        );
        let Err(LoadError::Config(e)) = read(&p) else {
            panic!("problems expected")
        };
        let shown: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        let expected = [
            (6, "report.exercise: = 9: the chapter's exercises are numbered 1 to 5"),
            (13, "report.claims[0].best: unknown key; a `better` claim has kind, metric, better, than"),
        ];
        assert_eq!(shown.len(), expected.len(), "{shown:#?}");
        for (s, (line, start)) in shown.iter().zip(expected) {
            let start = format!("{}:{line}: {start}", p.display());
            assert!(s.starts_with(&start), "{s:?} should start with {start:?}");
        }
        // The table reads: now its selectors are checked against the axes.
        let p = spec(
            dir.path(),
            "ex2.toml",
            "name = \"ex2\"\n[sweep]\n\"ema.decay\" = [0.0, 0.999]\nseeds = [0, 1]\n[report]\nexercise = 2\nprediction = \"EMA wins\"\n[[report.claims]]\nkind = \"better\"\nmetric = \"fd\"\nbetter = { \"ema.decay\" = 0.99 }\nthan = { \"ema.decay\" = 0.0 }\n",
        );
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{}:11: report.claims[0].better: ema.decay = 0.99 is not one of the values the spec sweeps (0.0, 0.999)", p.display())),
            "{e}"
        );
        // Inherited: the [report] of the spec extended, checked against the
        // axes of the spec named, and located in the file it is written in.
        let shared = spec(
            dir.path(),
            "shared.toml",
            "[report]\nexercise = 2\nprediction = \"EMA wins\"\n[[report.claims]]\nkind = \"best\"\nmetric = \"fd\"\nbest = { \"ema.decay\" = 0.999 }\n",
        );
        let p = spec(
            dir.path(),
            "lr.toml",
            "extends = \"shared.toml\"\n[sweep]\n\"train.lr\" = [1e-3, 2e-3]\n",
        );
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{}:7: report.claims[0].best: \"ema.decay\" is not swept, so it cannot select a variant; the swept keys are train.lr", shared.display())),
            "{e}"
        );
        // A nearer [report] shadows it: not checked, and not used.
        let p = spec(
            dir.path(),
            "lr2.toml",
            "extends = \"shared.toml\"\n[sweep]\n\"train.lr\" = [1e-3, 2e-3]\n[report]\nsmoothing = 2\n",
        );
        let s = read(&p).unwrap();
        let r = s.report.as_ref().unwrap();
        assert_eq!((r.smoothing, r.exercise), (2, None));
        // Written into spec.toml and read back: the same record.
        let p = spec(
            dir.path(),
            "ok.toml",
            "[sweep]\n\"ema.decay\" = [0.0, 0.999]\nseeds = [0, 1]\n",
        );
        std::fs::write(
            &p,
            format!(
                "{}{}",
                std::fs::read_to_string(&p).unwrap(),
                std::fs::read_to_string(&shared).unwrap()
            ),
        )
        .unwrap();
        let s = read(&p).unwrap();
        let resolved = spec(dir.path(), "resolved.toml", &s.resolved_toml(&[]));
        assert_eq!(read(&resolved).unwrap().report, s.report);
        assert!(s.report.unwrap().claims.len() == 1);
    }
}
