//! Expanding a sweep's axes into runs, in a documented, stable order.
//!
//! A spec's `[sweep]` table holds:
//! * axes: `"dotted.key" = [v1, v2, …]`, combined as a cartesian product;
//! * `seeds = [0, 1, 2]`: an axis over `train.seed`, always the innermost;
//! * `[[sweep.zip]]` groups: keys whose lists have equal length and vary
//!   together (one axis whose values are tuples);
//! * `[[sweep.exclude]]`: partial assignments; a run matching every key of one
//!   is dropped;
//! * `[[sweep.include]]`: partial assignments added as extra runs (after the
//!   product), as written.
//!
//! Order: axes (and zip groups) in the order they are written, the first
//! varying slowest and the last fastest, seeds innermost; then the includes.

use std::collections::BTreeSet;
use toml_edit::{Document, Item, TableLike, Value};

/// One run's swept values: (dotted key, value) in axis order.
pub type Assignment = Vec<(String, toml::Value)>;

/// One axis: the keys it sets (one, or several for a zip group) and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub keys: Vec<String>,
    /// Each point gives one value per key.
    pub points: Vec<Vec<toml::Value>>,
}

/// The parsed `[sweep]` table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Axes {
    pub axes: Vec<Axis>,
    pub exclude: Vec<Assignment>,
    pub include: Vec<Assignment>,
}

/// A `[sweep]` table that cannot be expanded; each names the key and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpandError {
    #[error("sweep.{key}: expected a list of values, e.g. \"{key}\" = [1, 2]")]
    NotAList { key: String },
    #[error("sweep.{key}: the list is empty; give at least one value or remove the axis")]
    Empty { key: String },
    #[error("sweep.{key}: swept twice ({first} and {second}); keep one")]
    Collision {
        key: String,
        first: String,
        second: String,
    },
    #[error("sweep.zip[{group}]: lists of unequal length ({lengths}); a zip group's lists pair up element by element")]
    ZipLengths { group: usize, lengths: String },
    #[error("sweep.{what}[{index}]: expected a table of \"dotted.key\" = value")]
    NotATable { what: &'static str, index: usize },
    #[error("sweep.exclude[{index}]: {key} is not a swept key, so the entry can never match; sweep it or remove it")]
    ExcludeUnknown { index: usize, key: String },
    #[error("{place}: {value} is listed twice; the runs would repeat (and read as agreeing seeds in the report); remove one")]
    Duplicate { place: String, value: String },
    #[error(
        "sweep.include[{index}]: repeats a run the sweep already has ({run}); remove the entry"
    )]
    IncludeRepeats { index: usize, run: String },
    #[error("sweep: the exclusions remove every run, so there is nothing to run; loosen [[sweep.exclude]] or add values")]
    NoRuns,
    #[error("sweep.{key}: changes how runs are launched or logged, not what they train, so runs that differ only in it would share one training job; set it in [base] or with --set")]
    NotTraining { key: String },
    #[error("sweep: the axes make {count} runs, more than {MAX_RUNS}: {sizes}; sweep fewer values, vary keys together in a [[sweep.zip]] group, or split the study into several specs")]
    TooMany { count: String, sizes: String },
    /// The text is not TOML (callers that read it with `read_toml` first
    /// never see this).
    #[error(transparent)]
    Syntax(#[from] toml_edit::TomlError),
    /// A value toml_edit read that toml cannot read back.
    #[error(transparent)]
    Value(#[from] toml::de::Error),
}

/// The first point of an axis that repeats an earlier one (1 and 1.0 match).
pub fn check_distinct(
    place: &str,
    keys: &[String],
    points: &[Vec<toml::Value>],
) -> Result<(), ExpandError> {
    for (j, pj) in points.iter().enumerate() {
        if points[..j]
            .iter()
            .any(|pi| pi.iter().zip(pj).all(|(a, b)| same(a, b)))
        {
            let value = if keys.len() == 1 {
                pj[0].to_string()
            } else {
                let parts: Vec<String> = keys
                    .iter()
                    .zip(pj)
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                format!("({})", parts.join(", "))
            };
            return Err(ExpandError::Duplicate {
                place: place.to_string(),
                value,
            });
        }
    }
    Ok(())
}

/// Two assignments as the same run: the same keys with the same values.
fn same_run(a: &Assignment, b: &Assignment) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.iter().any(|(bk, bv)| bk == k && same(bv, v)))
}

/// A toml_edit value as a `toml::Value` (they are the same TOML).
fn to_value(v: &Value) -> Result<toml::Value, ExpandError> {
    let text = format!("v = {}", v.to_string().trim());
    let mut table = toml::from_str::<toml::Table>(&text)?;
    Ok(table
        .remove("v")
        .expect("a document `v = …` that parses sets v")) // ok: its only line assigns v
}

fn list(key: &str, item: &Item) -> Result<Vec<toml::Value>, ExpandError> {
    let arr = item.as_array().ok_or_else(|| ExpandError::NotAList {
        key: key.to_string(),
    })?;
    if arr.is_empty() {
        return Err(ExpandError::Empty {
            key: key.to_string(),
        });
    }
    arr.iter().map(to_value).collect()
}

/// Leaf keys of a (possibly nested) table, with their dotted paths, in order.
fn leaves<'a>(prefix: &str, t: &'a dyn TableLike, out: &mut Vec<(String, &'a Item)>) {
    for (k, item) in t.iter() {
        let path = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        match item.as_table_like() {
            Some(inner) => leaves(&path, inner, out),
            None => out.push((path, item)),
        }
    }
}

fn assignments(what: &'static str, item: Option<&Item>) -> Result<Vec<Assignment>, ExpandError> {
    let Some(item) = item else { return Ok(vec![]) };
    let tables = item
        .as_array_of_tables()
        .ok_or(ExpandError::NotATable { what, index: 0 })?;
    tables
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let mut out = vec![];
            leaves("", t, &mut out);
            out.into_iter()
                .map(|(k, item)| {
                    let v = item
                        .as_value()
                        .ok_or(ExpandError::NotATable { what, index })?;
                    Ok((k, to_value(v)?))
                })
                .collect()
        })
        .collect()
}

/// Parse the `[sweep]` table of a spec's text (missing: no axes, one run);
/// its first problem when it has any ([`parse_all`] gives them all).
pub fn parse(text: &str) -> Result<Axes, ExpandError> {
    parse_all(text).map_err(|mut errors| errors.remove(0))
}

/// The keys swept so far and where, so that a key swept twice is caught.
#[derive(Default)]
struct Claims(Vec<(String, String)>);

impl Claims {
    fn claim(&mut self, key: &str, place: String) -> Result<(), ExpandError> {
        if let Some((_, first)) = self.0.iter().find(|(k, _)| k == key) {
            return Err(ExpandError::Collision {
                key: key.to_string(),
                first: first.clone(),
                second: place,
            });
        }
        self.0.push((key.to_string(), place));
        Ok(())
    }
}

/// The `seeds` list.
fn seeds_axis(item: &Item, claims: &mut Claims) -> Result<Vec<toml::Value>, ExpandError> {
    claims.claim("train.seed", "seeds".into())?;
    let s = list("seeds", item)?;
    let points: Vec<Vec<toml::Value>> = s.iter().map(|v| vec![v.clone()]).collect();
    check_distinct("sweep.seeds", &["train.seed".into()], &points)?;
    Ok(s)
}

/// One `"dotted.key" = [values]` axis.
fn plain_axis(key: &str, item: &Item, claims: &mut Claims) -> Result<Axis, ExpandError> {
    claims.claim(key, format!("sweep.{key}"))?;
    let points: Vec<Vec<toml::Value>> = list(key, item)?.into_iter().map(|v| vec![v]).collect();
    check_distinct(&format!("sweep.{key}"), &[key.to_string()], &points)?;
    Ok(Axis {
        keys: vec![key.to_string()],
        points,
    })
}

/// Zip group `g`: keys whose equal-length lists vary together.
fn zip_axis(g: usize, table: &toml_edit::Table, claims: &mut Claims) -> Result<Axis, ExpandError> {
    let mut cols = vec![];
    leaves("", table, &mut cols);
    let mut keys = vec![];
    let mut lists = vec![];
    for (key, item) in cols {
        claims.claim(&key, format!("sweep.zip[{g}]"))?;
        lists.push(list(&format!("zip[{g}].{key}"), item)?);
        keys.push(key);
    }
    let lens: BTreeSet<usize> = lists.iter().map(|l| l.len()).collect();
    if lens.len() > 1 {
        let lengths = keys
            .iter()
            .zip(&lists)
            .map(|(k, l)| format!("{k}: {}", l.len()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ExpandError::ZipLengths { group: g, lengths });
    }
    let n = lists.first().map_or(0, |l| l.len());
    let points: Vec<Vec<toml::Value>> = (0..n)
        .map(|i| lists.iter().map(|l| l[i].clone()).collect())
        .collect();
    check_distinct(&format!("sweep.zip[{g}]"), &keys, &points)?;
    Ok(Axis { keys, points })
}

/// Parse the `[sweep]` table of a spec's text (missing: no axes, one run),
/// or every problem of it: each axis, zip group, exclude and include list
/// is checked on its own, so one mistake does not hide the next. The
/// checks over the runs they make come once the parts are sound.
pub fn parse_all(text: &str) -> Result<Axes, Vec<ExpandError>> {
    let doc = Document::parse(text.to_string()).map_err(|e| vec![e.into()])?;
    let Some(sweep) = doc.get("sweep").and_then(|s| s.as_table_like()) else {
        return Ok(Axes::default());
    };
    let mut axes = vec![];
    let mut seeds = None;
    let mut claims = Claims::default();
    let mut errors = vec![];
    let mut flat = vec![];
    leaves("", sweep, &mut flat);
    for (key, item) in flat {
        let parsed = match key.as_str() {
            "zip" | "exclude" | "include" => continue,
            "seeds" => seeds_axis(item, &mut claims).map(|s| seeds = Some(s)),
            _ => plain_axis(&key, item, &mut claims).map(|a| axes.push(a)),
        };
        errors.extend(parsed.err());
    }
    if let Some(zip) = sweep.get("zip") {
        match zip.as_array_of_tables() {
            Some(groups) => {
                for (g, table) in groups.iter().enumerate() {
                    errors.extend(zip_axis(g, table, &mut claims).map(|a| axes.push(a)).err());
                }
            }
            None => errors.push(ExpandError::NotATable {
                what: "zip",
                index: 0,
            }),
        }
    }
    if let Some(s) = seeds {
        axes.push(Axis {
            keys: vec!["train.seed".into()],
            points: s.into_iter().map(|v| vec![v]).collect(),
        });
    }
    let mut part = |what: &'static str| {
        assignments(what, sweep.get(what)).unwrap_or_else(|e| {
            errors.push(e);
            vec![]
        })
    };
    let exclude = part("exclude");
    let include = part("include");
    if !errors.is_empty() {
        return Err(errors);
    }
    let swept: BTreeSet<&String> = axes.iter().flat_map(|a| &a.keys).collect();
    for (i, ex) in exclude.iter().enumerate() {
        if let Some((k, _)) = ex.iter().find(|(k, _)| !swept.contains(k)) {
            return Err(vec![ExpandError::ExcludeUnknown {
                index: i,
                key: k.clone(),
            }]);
        }
    }
    let axes = Axes {
        axes,
        exclude,
        include,
    };
    check_runs(&axes).map_err(|e| vec![e])?;
    Ok(axes)
}

/// The most runs a sweep may have. Past it, planning alone would take
/// gigabytes (each run carries its full config), and no machine trains that
/// many DDPMs.
pub const MAX_RUNS: usize = 10_000;

/// The checks over the expanded runs (also after `--set sweep.<key>=[…]`
/// changes an axis): not too many, not none, none that would share a job by
/// differing only in launch-only keys, no include repeating a run.
pub fn check_runs(axes: &Axes) -> Result<(), ExpandError> {
    let count = axes
        .axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.points.len()))
        .and_then(|n| n.checked_add(axes.include.len()));
    if count.is_none_or(|n| n > MAX_RUNS) {
        let sizes: Vec<String> = axes
            .axes
            .iter()
            .map(|a| format!("{} ({})", a.keys.join(" + "), a.points.len()))
            .collect();
        return Err(ExpandError::TooMany {
            count: count.map_or_else(|| "more than 2^64".into(), |n| n.to_string()),
            sizes: sizes.join(" × "),
        });
    }
    let runs = expand(axes);
    if runs.is_empty() {
        return Err(ExpandError::NoRuns);
    }
    // Runs that differ only in launch-only keys would share one training job
    // (its hash leaves those keys out), so the difference would be lost.
    // Varying such a key together with a training key (a zip with the seed,
    // say) is fine: each run keeps its own job.
    let launch_only = crate::run::identity::is_launch_only;
    let rest = |r: &Assignment| -> Assignment {
        r.iter().filter(|(k, _)| !launch_only(k)).cloned().collect()
    };
    let rests: Vec<Assignment> = runs.iter().map(rest).collect();
    for (j, rj) in runs.iter().enumerate() {
        // (Identical runs are the include check's below.)
        let collides = |&i: &usize| same_run(&rests[i], &rests[j]) && !same_run(&runs[i], rj);
        if let Some(ri) = (0..j).find(collides).map(|i| &runs[i]) {
            let key = rj
                .iter()
                .find(|(k, v)| launch_only(k) && !ri.iter().any(|(ik, iv)| ik == k && same(iv, v)))
                .map_or_else(String::new, |(k, _)| k.clone());
            return Err(ExpandError::NotTraining { key });
        }
    }
    let product = runs.len() - axes.include.len();
    for (i, run) in runs[product..].iter().enumerate() {
        if runs[..product + i].iter().any(|r| same_run(r, run)) {
            let shown: Vec<String> = run.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            return Err(ExpandError::IncludeRepeats {
                index: i,
                run: shown.join(", "),
            });
        }
    }
    Ok(())
}

impl ExpandError {
    /// The dotted key (for [`crate::config::locate::line_of`]) where the
    /// problem is written; `[[sweep.zip]]` groups and lists are numbered.
    pub fn location(&self) -> String {
        let zip_form = |k: &str| {
            // `zip[2].key` → `zip.2.key`
            k.replacen('[', ".", 1).replacen(']', "", 1)
        };
        match self {
            ExpandError::NotAList { key } | ExpandError::Empty { key } => {
                format!("sweep.{}", zip_form(key))
            }
            ExpandError::Collision { key, second, .. } => {
                if second.starts_with("sweep.zip[") {
                    format!("{}.{key}", zip_form(second))
                } else if second == "seeds" {
                    "sweep.seeds".into()
                } else {
                    second.clone()
                }
            }
            ExpandError::ZipLengths { group, .. } => format!("sweep.zip.{group}"),
            ExpandError::NotATable { what, index } => format!("sweep.{what}.{index}"),
            ExpandError::ExcludeUnknown { index, key } => format!("sweep.exclude.{index}.{key}"),
            ExpandError::Duplicate { place, .. } => {
                if place.starts_with("sweep.zip[") {
                    zip_form(place)
                } else {
                    place.clone()
                }
            }
            ExpandError::IncludeRepeats { index, .. } => format!("sweep.include.{index}"),
            ExpandError::NotTraining { key } => format!("sweep.{key}"),
            ExpandError::NoRuns => "sweep.exclude".into(),
            ExpandError::TooMany { .. } => "sweep".into(),
            ExpandError::Syntax(_) | ExpandError::Value(_) => "sweep".into(),
        }
    }
}

/// Two TOML values as the same setting (1 and 1.0 match).
pub fn same(a: &toml::Value, b: &toml::Value) -> bool {
    match (a, b) {
        (toml::Value::Integer(x), toml::Value::Float(y))
        | (toml::Value::Float(y), toml::Value::Integer(x)) => *x as f64 == *y,
        _ => a == b,
    }
}

/// Every run of the sweep, in order (see the module notes).
pub fn expand(axes: &Axes) -> Vec<Assignment> {
    let mut runs: Vec<Assignment> = vec![vec![]];
    for axis in &axes.axes {
        let mut next = Vec::with_capacity(runs.len() * axis.points.len());
        for run in &runs {
            for point in &axis.points {
                let mut r = run.clone();
                r.extend(axis.keys.iter().cloned().zip(point.iter().cloned()));
                next.push(r);
            }
        }
        runs = next;
    }
    runs.retain(|r| {
        !axes.exclude.iter().any(|ex| {
            ex.iter()
                .all(|(k, v)| r.iter().any(|(rk, rv)| rk == k && same(rv, v)))
        })
    });
    runs.extend(axes.include.iter().cloned());
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(runs: &[Assignment]) -> Vec<String> {
        runs.iter()
            .map(|r| {
                r.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn expansion_order_is_written_order_with_seeds_innermost() {
        let axes = parse(
            r#"
[sweep]
seeds = [0, 1]
"diffusion.prediction" = ["epsilon", "v"]
"ema.decay" = [0.999, 0.9999]
"#,
        )
        .unwrap();
        // A snapshot of the order.
        assert_eq!(
            show(&expand(&axes)),
            vec![
                "diffusion.prediction=\"epsilon\" ema.decay=0.999 train.seed=0",
                "diffusion.prediction=\"epsilon\" ema.decay=0.999 train.seed=1",
                "diffusion.prediction=\"epsilon\" ema.decay=0.9999 train.seed=0",
                "diffusion.prediction=\"epsilon\" ema.decay=0.9999 train.seed=1",
                "diffusion.prediction=\"v\" ema.decay=0.999 train.seed=0",
                "diffusion.prediction=\"v\" ema.decay=0.999 train.seed=1",
                "diffusion.prediction=\"v\" ema.decay=0.9999 train.seed=0",
                "diffusion.prediction=\"v\" ema.decay=0.9999 train.seed=1",
            ]
        );
    }

    #[test]
    fn zip_groups_vary_together_and_exclude_include_edit_the_product() {
        let axes = parse(
            r#"
[sweep]
"train.lr" = [1e-4, 2e-4]

[[sweep.zip]]
"diffusion.weighting" = ["simple", "min-snr", "p2"]
"diffusion.prediction" = ["epsilon", "v", "x0"]

[[sweep.exclude]]
"train.lr" = 2e-4
"diffusion.weighting" = "p2"

[[sweep.include]]
"diffusion.weighting" = "vlb"
"train.lr" = 1e-3
"#,
        )
        .unwrap();
        let runs = show(&expand(&axes));
        assert_eq!(runs.len(), 2 * 3 - 1 + 1);
        assert_eq!(
            runs[0],
            "train.lr=0.0001 diffusion.weighting=\"simple\" diffusion.prediction=\"epsilon\""
        );
        assert_eq!(
            runs[2],
            "train.lr=0.0001 diffusion.weighting=\"p2\" diffusion.prediction=\"x0\""
        );
        assert!(!runs.contains(
            &"train.lr=0.0002 diffusion.weighting=\"p2\" diffusion.prediction=\"x0\"".to_string()
        ));
        assert_eq!(runs[5], "diffusion.weighting=\"vlb\" train.lr=0.001");
    }

    #[test]
    fn nested_tables_name_dotted_keys_too() {
        let axes = parse("[sweep.diffusion]\nprediction = [\"epsilon\", \"v\"]\n").unwrap();
        assert_eq!(
            show(&expand(&axes)),
            vec![
                "diffusion.prediction=\"epsilon\"",
                "diffusion.prediction=\"v\""
            ]
        );
        // No [sweep]: one run with nothing swept.
        assert_eq!(
            expand(&parse("[base]\n").unwrap()),
            vec![Vec::<(String, toml::Value)>::new()]
        );
    }

    #[test]
    fn bad_sweeps_name_the_key_and_the_fix() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            e("[sweep]\n\"train.seed\" = [1]\nseeds = [0, 1]\n"),
            "sweep.train.seed: swept twice (sweep.train.seed and seeds); keep one"
        );
        assert!(e("[sweep]\n\"train.lr\" = 0.1\n").contains("expected a list of values"));
        assert!(e("[sweep]\n\"train.lr\" = []\n").contains("the list is empty"));
        assert_eq!(
            e("[sweep]\n[[sweep.zip]]\na = [1, 2]\nb = [1]\n"),
            "sweep.zip[0]: lists of unequal length (a: 2, b: 1); a zip group's lists pair up element by element"
        );
        assert!(
            e("[sweep]\n\"train.lr\" = [1]\n[[sweep.zip]]\n\"train.lr\" = [2]\n")
                .contains("swept twice")
        );
        assert!(
            e("[sweep]\n\"train.lr\" = [1]\n[[sweep.exclude]]\n\"train.steps\" = 5\n")
                .contains("train.steps is not a swept key")
        );
    }

    /// A sweep too big to plan is refused from the axis sizes alone, before
    /// any run is built (10^8 runs used to eat all memory).
    #[test]
    fn too_many_runs_are_refused_before_expanding() {
        let list = |n: usize| {
            let v: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("[{}]", v.join(", "))
        };
        let text = format!(
            "[sweep]\na = {}\nb = {}\nc = {}\nd = {}\n",
            list(100),
            list(100),
            list(100),
            list(100)
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sweep: the axes make 100000000 runs, more than 10000: a (100) × b (100) × c (100) × d (100); sweep fewer values, vary keys together in a [[sweep.zip]] group, or split the study into several specs"
        );
        // Exactly the limit is fine.
        parse(&format!("[sweep]\na = {}\nb = {}\n", list(100), list(100))).unwrap();
        // An include past the limit counts too.
        let err = parse(&format!(
            "[sweep]\na = {}\nb = {}\n[[sweep.include]]\na = 1000\n",
            list(100),
            list(100)
        ))
        .unwrap_err();
        assert!(err.to_string().contains("make 10001 runs"), "{err}");
    }

    /// A repeated value makes identical runs that a report would count as
    /// independent seeds (n = 2, spread 0): refused, naming the value.
    #[test]
    fn repeated_values_and_runs_are_refused() {
        let e = |t: &str| parse(t).unwrap_err();
        let err = e("[sweep]\nseeds = [0, 1, 0]\n");
        assert_eq!(
            err.to_string(),
            "sweep.seeds: 0 is listed twice; the runs would repeat (and read as agreeing seeds in the report); remove one"
        );
        assert_eq!(err.location(), "sweep.seeds");
        // 0.9 and 0.90 are the same number; 1 and 1.0 the same setting.
        let err = e("[sweep]\n\"ema.decay\" = [0.9, 0.90]\n");
        assert!(
            err.to_string()
                .starts_with("sweep.ema.decay: 0.9 is listed twice"),
            "{err}"
        );
        assert!(e("[sweep]\n\"train.steps\" = [1, 1.0]\n")
            .to_string()
            .contains("listed twice"));
        // A zip group may repeat a value in one list, not a whole point.
        parse("[sweep]\n[[sweep.zip]]\na = [1, 1]\nb = [2, 3]\n").unwrap();
        let err = e("[sweep]\n[[sweep.zip]]\na = [1, 1]\nb = [2, 2]\n");
        assert_eq!(
            err.to_string(),
            "sweep.zip[0]: (a = 1, b = 2) is listed twice; the runs would repeat (and read as agreeing seeds in the report); remove one"
        );
        assert_eq!(err.location(), "sweep.zip.0");
        // An include that repeats a run of the product (keys in any order).
        let err = e("[sweep]\na = [1, 2]\nb = [3]\n[[sweep.include]]\nb = 3\na = 5\n[[sweep.include]]\nb = 3\na = 2\n");
        assert_eq!(
            err.to_string(),
            "sweep.include[1]: repeats a run the sweep already has (b = 3, a = 2); remove the entry"
        );
        assert_eq!(err.location(), "sweep.include.1");
        // Launch and logging keys are not axes.
        let err = e("[sweep]\n\"train.threads\" = [1, 2]\n");
        assert!(
            err.to_string()
                .starts_with("sweep.train.threads: changes how runs are launched"),
            "{err}"
        );
        assert_eq!(err.location(), "sweep.train.threads");
        assert!(
            e("[sweep]\n\"train.lr\" = [1, 2]\n\"output.dir\" = [\"a\", \"b\"]\n")
                .to_string()
                .contains("sweep.output.dir: changes how")
        );
        // Varied together with a training key, each run keeps its own job:
        // how the tests make one job of three fail.
        parse("[sweep]\n[[sweep.zip]]\n\"train.seed\" = [0, 1, 2]\n\"train.fail_at_step\" = [0, 30, 0]\n").unwrap();
        // Exclusions that leave nothing.
        let err = e("[sweep]\na = [1, 2]\n[[sweep.exclude]]\na = 1\n[[sweep.exclude]]\na = 2\n");
        assert!(err.to_string().contains("remove every run"), "{err}");
    }
}
