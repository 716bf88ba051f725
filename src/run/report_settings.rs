//! A sweep spec's `[report]` table, typed: how the report aggregates
//! (`smoothing`) and, for one of the chapter's exercises, its question, the
//! chapter's prediction, and the prediction's testable form (`claims`), which
//! the report measures and turns into a verdict.
//!
//! One home for the sweep, which checks the table when it reads a spec (the
//! selectors against the spec's axes, in `sweep::report_check`), and the
//! report, which reads it back from the sweep folder's `spec.toml`.
//!
//! ```toml
//! [report]
//! exercise = 2
//! prediction = "EMA weights sample better than the raw weights (§4.1, §10)"
//! [[report.claims]]
//! kind = "better"
//! metric = "fd"
//! better = { "ema.decay" = 0.999 }
//! than = { "ema.decay" = 0.0 }
//! ```

use crate::config::Problem;
use serde::{Deserialize, Serialize};

/// The moving-average window of the training curves when none is given.
pub const DEFAULT_SMOOTHING: usize = 5;

/// The `[report]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Moving-average window of the training curves (log points, ≥ 1).
    #[serde(default = "default_smoothing")]
    pub smoothing: usize,
    /// The chapter's exercise this sweep answers (1–5). Without it the
    /// report has no question and no verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exercise: Option<u8>,
    /// The question, when not the exercise's own ([`exercise_question`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// What the chapter predicts, with the section cited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    /// The prediction in testable form; the verdict tests every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
}

fn default_smoothing() -> usize {
    DEFAULT_SMOOTHING
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            smoothing: DEFAULT_SMOOTHING,
            exercise: None,
            question: None,
            prediction: None,
            claims: vec![],
        }
    }
}

/// One testable claim: a closed set of kinds, written as a table with a
/// `kind` key (`[[report.claims]] kind = "better"`). A new kind is a new
/// variant here, its keys in [`Claim::KINDS`], and its measurement in the
/// report's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Claim {
    /// The variant `better` selects beats the one `than` selects on the
    /// final value of `metric` (lower or higher, as the metric goes).
    Better {
        metric: String,
        better: Selector,
        than: Selector,
    },
    /// The variant `best` selects beats every other variant on the final
    /// value of `metric`: one comparison per other variant.
    Best { metric: String, best: Selector },
    /// In every variant, the final value of `metric` is higher than that of
    /// `than`, run by run (paired by seed): two numbers of the same runs,
    /// e.g. the per-timestep loss in the middle of [0, T) against its ends
    /// (`profile_mid` against `profile_low`, exercise 4).
    Exceeds { metric: String, than: String },
}

/// What a claim's key holds, for checking a table before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A metric or a family of metrics with a direction ([`lower_is_better`]).
    Metric,
    /// A [`Selector`].
    Selector,
    /// A finite number.
    Number,
    /// A non-empty string.
    Text,
}

impl Claim {
    /// Each kind with its keys (besides `kind`), every one required.
    pub const KINDS: [(&'static str, &'static [(&'static str, Field)]); 3] = [
        (
            "better",
            &[
                ("metric", Field::Metric),
                ("better", Field::Selector),
                ("than", Field::Selector),
            ],
        ),
        (
            "best",
            &[("metric", Field::Metric), ("best", Field::Selector)],
        ),
        ("exceeds", &[("metric", Field::Text), ("than", Field::Text)]),
    ];

    /// The metric (or family) the claim is about.
    pub fn metric(&self) -> &str {
        match self {
            Claim::Better { metric, .. }
            | Claim::Best { metric, .. }
            | Claim::Exceeds { metric, .. } => metric,
        }
    }

    /// Its selectors, each with its key: what the sweep checks against the
    /// spec's axes.
    pub fn selectors(&self) -> Vec<(&'static str, &Selector)> {
        match self {
            Claim::Better { better, than, .. } => vec![("better", better), ("than", than)],
            Claim::Best { best, .. } => vec![("best", best)],
            Claim::Exceeds { .. } => vec![],
        }
    }

    /// The kinds as the messages list them: `better (metric, better, than)`.
    pub fn kinds_text() -> String {
        Self::KINDS
            .iter()
            .map(|(k, fields)| {
                let f: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                format!("{k} ({})", f.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A variant named by some of its swept values: `{ "ema.decay" = 0.999 }`.
/// Written as a TOML table; nested tables (`{ ema.decay = 0.999 }`) read as
/// dotted keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "toml::Table", into = "toml::Table")]
pub struct Selector(pub Vec<(String, toml::Value)>);

impl From<toml::Table> for Selector {
    fn from(t: toml::Table) -> Self {
        let mut out = vec![];
        flatten("", &t, &mut out);
        Selector(out)
    }
}

impl From<Selector> for toml::Table {
    fn from(s: Selector) -> Self {
        s.0.into_iter().collect()
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        write!(f, "{{ {} }}", parts.join(", "))
    }
}

/// A table's leaves as (dotted key, value).
fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// The chapter's five exercises, each as its question (quoted from the
/// chapter's "Exercises"), by number.
pub const EXERCISES: [(&str, &str); 5] = [
    (
        "prediction parameterization",
        "Train three models using ε-prediction, x₀-prediction and v-prediction with the same architecture and hyperparameters. Compare loss curves, final FID, and generated sample quality. Which converges fastest?",
    ),
    (
        "EMA ablation",
        "Generate samples using (a) EMA weights (μ = 0.9999), (b) EMA weights (μ = 0.999), (c) raw training weights. Compute FID for each. How large is the EMA benefit?",
    ),
    (
        "loss weighting",
        "Implement simple, SNR, and min-SNR-γ loss weighting. Compare FID (sample quality) and bits-per-dimension (log-likelihood). Does the theoretical prediction hold?",
    ),
    (
        "per-timestep loss analysis",
        "Plot the per-timestep loss profile at initialization and at later training steps. How does the loss profile evolve? Which timestep range improves most over training?",
    ),
    (
        "classifier-free guidance training",
        "Train a class-conditional DDPM with conditioning dropout p_uncond ∈ {0.0, 0.1, 0.2, 0.5}. At sampling time, sweep guidance scale s ∈ [1, 10]. What dropout rate gives the best quality-diversity tradeoff?",
    ),
];

/// `Exercise 2 (EMA ablation): …`, the chapter's question of exercise `n`.
pub fn exercise_question(n: u8) -> Option<String> {
    let (name, q) = EXERCISES.get(usize::from(n).checked_sub(1)?)?;
    Some(format!("Exercise {n} ({name}): {q}"))
}

impl ReportSettings {
    /// The question the report opens with: the spec's, else the exercise's.
    pub fn question(&self) -> Option<String> {
        let n = self.exercise?;
        self.question.clone().or_else(|| exercise_question(n))
    }

    /// The settings of a `[report]` table, or every problem with it, each
    /// under its key (`report.claims[0].metric`).
    pub fn from_table(t: &toml::Table) -> Result<Self, Vec<Problem>> {
        let mut problems = vec![];
        for (k, v) in t {
            let key = format!("report.{k}");
            let problem = match k.as_str() {
                "smoothing" => v.as_integer().is_none_or(|w| w < 1).then(|| {
                    format!("= {v}: the smoothing window is a whole number of log points ≥ 1 (5 is typical)")
                }),
                "exercise" => (!v.as_integer().is_some_and(|n| (1..=5).contains(&n))).then(|| {
                    let list: Vec<String> = EXERCISES
                        .iter()
                        .enumerate()
                        .map(|(i, (name, _))| format!("{} {name}", i + 1))
                        .collect();
                    format!("= {v}: the chapter's exercises are numbered 1 to 5 ({})", list.join(", "))
                }),
                "question" | "prediction" => v.as_str().is_none_or(|s| s.trim().is_empty())
                    .then(|| "must be a non-empty string".to_string()),
                "claims" => {
                    claims_problems(v, &mut problems);
                    None
                }
                _ => Some(format!("unknown key; [report] has {}", KEYS.join(", "))),
            };
            if let Some(m) = problem {
                problems.push(Problem::new(&key, m));
            }
        }
        exercise_problems(t, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        toml::Value::Table(t.clone())
            .try_into()
            .map_err(|e: toml::de::Error| vec![Problem::new("report", e.message().to_string())])
    }
}

/// The keys of `[report]`.
pub const KEYS: [&str; 5] = ["smoothing", "exercise", "question", "prediction", "claims"];

/// An exercise states its prediction; a question, prediction or claims
/// belong to an exercise.
fn exercise_problems(t: &toml::Table, problems: &mut Vec<Problem>) {
    let has = |k: &str| t.contains_key(k);
    if has("exercise") && !has("prediction") {
        problems.push(Problem::new(
            "report.prediction",
            "missing: a report on an exercise states what the chapter predicts, with the section, e.g. prediction = \"EMA weights sample better than the raw weights (§4.1)\"",
        ));
    }
    if !has("exercise") {
        if let Some(k) = ["question", "prediction", "claims"]
            .into_iter()
            .find(|k| has(k))
        {
            problems.push(Problem::new(
                "report.exercise",
                format!("missing: `{k}` belongs to one of the chapter's exercises; add exercise = 1 to 5"),
            ));
        }
    }
}

/// Every problem of `claims`: a list of tables, each of a known kind with
/// its keys, each key's value of its type.
fn claims_problems(v: &toml::Value, problems: &mut Vec<Problem>) {
    let Some(list) = v.as_array() else {
        problems.push(Problem::new(
            "report.claims",
            "must be a list of tables: [[report.claims]] kind = \"better\", metric = \"fd\", …",
        ));
        return;
    };
    for (i, c) in list.iter().enumerate() {
        let at = format!("report.claims[{i}]");
        let Some(c) = c.as_table() else {
            problems.push(Problem::new(&at, "must be a table ([[report.claims]])"));
            continue;
        };
        let kind = c.get("kind").and_then(|k| k.as_str());
        let Some((kind, fields)) = Claim::KINDS.iter().find(|(k, _)| Some(*k) == kind) else {
            let given = c
                .get("kind")
                .map_or("missing".to_string(), |k| format!("= {k}: unknown kind"));
            problems.push(Problem::new(
                &format!("{at}.kind"),
                format!("{given}; a claim is one of {}", Claim::kinds_text()),
            ));
            continue;
        };
        let keys: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        let has = format!("a `{kind}` claim has kind, {}", keys.join(", "));
        for k in c
            .keys()
            .filter(|k| *k != "kind" && !keys.contains(&k.as_str()))
        {
            problems.push(Problem::new(
                &format!("{at}.{k}"),
                format!("unknown key; {has}"),
            ));
        }
        for (name, field) in fields.iter() {
            let key = format!("{at}.{name}");
            match c.get(*name) {
                None => problems.push(Problem::new(&key, format!("missing; {has}"))),
                Some(v) => {
                    if let Some(m) = field_problem(*field, v) {
                        problems.push(Problem::new(&key, m));
                    }
                }
            }
        }
    }
}

/// What is wrong with `v` as a value of `field`, if anything.
fn field_problem(field: Field, v: &toml::Value) -> Option<String> {
    match field {
        Field::Metric => match v.as_str() {
            Some(m) if lower_is_better(m).is_some() => None,
            _ => Some(format!(
                "= {v}: not a metric with a direction; name a family ({}) or an exact metric such as fd_mnist-cnn",
                FAMILIES.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
            )),
        },
        Field::Selector => {
            let example = "a table of swept key = value, e.g. { \"ema.decay\" = 0.999 }";
            let Some(t) = v.as_table() else {
                return Some(format!("= {v}: must be {example}"));
            };
            let Selector(pairs) = Selector::from(t.clone());
            if pairs.is_empty() {
                return Some(format!("is empty; it must be {example}"));
            }
            if let Some((k, _)) = pairs.iter().find(|(k, _)| is_seed(k)) {
                return Some(format!("{k}: the seeds pair the variants' runs, so they cannot select a variant; name the other swept keys"));
            }
            pairs
                .iter()
                .find(|(_, v)| v.is_array())
                .map(|(k, v)| format!("{k} = {v}: one value, not a list, selects a variant"))
        }
        Field::Number => (!v
            .as_float()
            .or(v.as_integer().map(|i| i as f64))
            .is_some_and(f64::is_finite))
        .then(|| format!("= {v}: must be a number")),
        Field::Text => v.as_str().is_none_or(|s| s.trim().is_empty())
            .then(|| format!("= {v}: must be a non-empty string")),
    }
}

/// The keys that are seeds rather than variants.
pub fn is_seed(k: &str) -> bool {
    k == "seed" || k == "seeds" || k == "train.seed"
}

/// The metric families with their direction (true: lower is better); a
/// family `f` names `f` and every `f_<something>` (`fd` names `fd_mnist-cnn`).
pub const FAMILIES: [(&str, bool); 19] = [
    ("fd", true),
    ("eps_mse", true),
    ("steps_to", true),
    ("best_fd", true),
    ("best_sliced_wasserstein", true),
    ("best_mmd2_rbf", true),
    ("fid", true),
    ("bpd", true),
    ("final_loss", true),
    ("sliced_wasserstein", true),
    ("mmd2_rbf", true),
    ("ks", true),
    ("corr_error", true),
    ("q01_error", true),
    ("q05_error", true),
    ("acf_sq_error", true),
    ("is", false),
    ("precision", false),
    ("recall", false),
];

/// Whether `name` names `metric`: the same, or `metric` is `name_<…>`.
pub fn names_metric(name: &str, metric: &str) -> bool {
    metric == name
        || metric
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('_'))
}

/// Whether lower is better for a metric or a family of metrics (None: no
/// direction, e.g. the learning rate).
pub fn lower_is_better(metric: &str) -> Option<bool> {
    if names_metric("class_accuracy", metric) {
        return Some(false);
    }
    if metric.ends_with("_error") {
        return Some(true);
    }
    FAMILIES
        .iter()
        .find(|(f, _)| names_metric(f, metric))
        .map(|(_, lower)| *lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        let t: toml::Table = text.parse().unwrap();
        t["report"].as_table().unwrap().clone()
    }

    fn problems(text: &str) -> Vec<String> {
        ReportSettings::from_table(&table(text))
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_report_table_reads_into_its_record_and_writes_back_the_same() {
        let text = "[report]\nsmoothing = 3\nexercise = 2\nprediction = \"EMA wins (§4.1)\"\n\n[[report.claims]]\nkind = \"better\"\nmetric = \"fd\"\nbetter = { \"ema.decay\" = 0.999 }\nthan = { ema.decay = 0.0 }\n\n[[report.claims]]\nkind = \"best\"\nmetric = \"bpd\"\nbest = { \"diffusion.weighting\" = \"vlb\" }\n";
        let s = ReportSettings::from_table(&table(text)).unwrap();
        assert_eq!(s.smoothing, 3);
        assert_eq!(s.exercise, Some(2));
        let sel = |k: &str, v: toml::Value| Selector(vec![(k.to_string(), v)]);
        assert_eq!(
            s.claims,
            vec![
                Claim::Better {
                    metric: "fd".into(),
                    better: sel("ema.decay", toml::Value::Float(0.999)),
                    than: sel("ema.decay", toml::Value::Float(0.0)),
                },
                Claim::Best {
                    metric: "bpd".into(),
                    best: sel("diffusion.weighting", "vlb".into()),
                },
            ]
        );
        assert!(s
            .question()
            .unwrap()
            .starts_with("Exercise 2 (EMA ablation): "));
        // Written back (spec.toml) and read again: the same record.
        let written = toml::Value::try_from(&s).unwrap();
        let again = ReportSettings::from_table(written.as_table().unwrap()).unwrap();
        assert_eq!(again, s);
        assert_eq!(ReportSettings::default().smoothing, 5);
        assert!(ReportSettings::default().question().is_none());
    }

    #[test]
    fn every_problem_of_a_report_table_is_named_with_its_fix() {
        let p = problems(
            "[report]\nsmoothing = 0\nexercise = 7\nverdict = 1\n[[report.claims]]\nkind = \"better\"\nmetric = \"lr\"\nbetter = 0.9\nextra = 1\n[[report.claims]]\nkind = \"peak\"\n[[report.claims]]\nkind = \"best\"\nmetric = \"fd\"\nbest = { seed = 1 }\n",
        );
        let expected = [
            "report.smoothing: = 0: the smoothing window",
            "report.exercise: = 7: the chapter's exercises are numbered 1 to 5 (1 prediction parameterization, 2 EMA ablation",
            "report.verdict: unknown key; [report] has smoothing, exercise, question, prediction, claims",
            "report.claims[0].extra: unknown key; a `better` claim has kind, metric, better, than",
            "report.claims[0].metric: = \"lr\": not a metric with a direction; name a family (fd, eps_mse, steps_to, best_fd, best_sliced_wasserstein, best_mmd2_rbf, fid, bpd",
            "report.claims[0].better: = 0.9: must be a table of swept key = value",
            "report.claims[0].than: missing; a `better` claim has kind, metric, better, than",
            "report.claims[1].kind: = \"peak\": unknown kind; a claim is one of better (metric, better, than), best (metric, best)",
            "report.claims[2].best: seed: the seeds pair the variants' runs",
            "report.prediction: missing: a report on an exercise states what the chapter predicts",
        ];
        assert_eq!(p.len(), expected.len(), "{p:#?}");
        for (got, want) in p.iter().zip(expected) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
        let p = problems("[report]\nprediction = \"x\"\n");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with(
                "report.exercise: missing: `prediction` belongs to one of the chapter's exercises"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn metric_families_name_their_metrics_and_carry_a_direction() {
        assert!(names_metric("fd", "fd_mnist-cnn"));
        assert!(names_metric("bpd", "bpd"));
        assert!(!names_metric("fd", "fdx"));
        assert_eq!(lower_is_better("fd"), Some(true));
        assert_eq!(lower_is_better("fd_x"), Some(true));
        assert_eq!(lower_is_better("bpd_prior"), Some(true));
        assert_eq!(lower_is_better("q01_error"), Some(true));
        assert_eq!(lower_is_better("precision_x"), Some(false));
        assert_eq!(lower_is_better("class_accuracy_x"), Some(false));
        assert_eq!(lower_is_better("is_x"), Some(false));
        assert_eq!(lower_is_better("lr"), None);
        assert_eq!(lower_is_better("isotropy"), None);
    }
}
