//! The verdict on an exercise, which the report opens with: the question,
//! the chapter's prediction, what was measured (each claimed comparison's
//! difference with its 95% interval, paired or not, n and its Holm-adjusted
//! p) and the verdict:
//!
//! * confirmed: every claimed comparison is significant (Holm-adjusted
//!   p < 0.05) in the predicted direction;
//! * contradicted: some claimed comparison is significant in the opposite
//!   direction;
//! * inconclusive otherwise, with the n and the effect the test could have
//!   detected; and always when a comparison has fewer than 2 seeds on a side
//!   (seeds are required for a verdict: one run per variant never confirms).
//!
//! The claims come from the spec's `[report]` ([`ReportSettings`]); their
//! comparisons join the report's [`Family`] before it is adjusted.

use super::collect::RunData;
use super::compare::{Comparison, Design, TooFew};
use super::document::Block;
use super::family::{pair_samples, samples, Family, Outcome, TestRef};
use super::format::{half, num, pct, pct_half};
use crate::run::report_settings::{lower_is_better, names_metric, Claim, ReportSettings, Selector};

/// One claimed comparison: `better` predicted to beat `worse` on `metric`,
/// that is to be lower (`lower`) or higher. A claim kind that is not about a
/// pair of variants' final metrics (a bin of the per-timestep profile
/// against another, say) gives its own labels, samples and direction.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub metric: String,
    pub better: String,
    pub worse: String,
    /// Whether better means lower.
    pub lower: bool,
    /// `better` against `worse` (b − a = better − worse).
    pub test: TestRef,
}

/// Each claim's comparisons, or why it cannot be measured.
pub type Measured = Vec<Result<Vec<Claimed>, String>>;

/// What one claimed comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    Supports,
    Opposes,
    NotSignificant,
    /// Fewer than 2 seeds on a side: no test.
    TooFew,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Confirmed,
    Contradicted,
    Inconclusive,
    /// The spec states no claim.
    Untested,
}

/// Add every claim's comparisons to `family`: for each claim, the variants
/// its selectors name and the metric it names among `metrics` (the
/// summary's).
pub fn register(
    settings: &ReportSettings,
    variants: &[(String, Vec<&RunData>)],
    metrics: &[String],
    family: &mut Family,
) -> Measured {
    if settings.exercise.is_none() {
        return vec![];
    }
    let mut out = vec![];
    for claim in &settings.claims {
        if let Claim::Exceeds { metric, than } = claim {
            out.push(exceeds(metric, than, variants, metrics, family));
            continue;
        }
        let pairs = resolve_metric(claim.metric(), metrics).and_then(|metric| {
            let pairs: Vec<(usize, usize)> = match claim {
                Claim::Better { better, than, .. } => {
                    vec![(select(better, variants)?, select(than, variants)?)]
                }
                Claim::Best { best, .. } => {
                    let b = select(best, variants)?;
                    (0..variants.len())
                        .filter(|&o| o != b)
                        .map(|o| (b, o))
                        .collect()
                }
                Claim::Exceeds { .. } => vec![],
            };
            Ok((metric, pairs))
        });
        out.push(pairs.map(|(metric, pairs)| {
            pairs
                .into_iter()
                .map(|(b, w)| {
                    let (bl, br) = (&variants[b].0, &variants[b].1);
                    let (wl, wr) = (&variants[w].0, &variants[w].1);
                    let (ws, bs) = pair_samples(wr, br, &metric);
                    let test = family.add(&metric, (wl, &ws), (bl, &bs));
                    Claimed {
                        metric: metric.clone(),
                        better: bl.clone(),
                        worse: wl.clone(),
                        lower: lower_is_better(&metric).unwrap_or(true),
                        test,
                    }
                })
                .collect()
        }));
    }
    out
}

/// An `exceeds` claim: in each variant, `metric` above `than` over the same
/// runs (paired by seed); the variant's label heads its line.
fn exceeds(
    metric: &str,
    than: &str,
    variants: &[(String, Vec<&RunData>)],
    metrics: &[String],
    family: &mut Family,
) -> Result<Vec<Claimed>, String> {
    let (metric, than) = (
        resolve_metric(metric, metrics)?,
        resolve_metric(than, metrics)?,
    );
    Ok(variants
        .iter()
        .map(|(label, runs)| {
            let test = family.add(
                label,
                (&than, &samples(runs, &than)),
                (&metric, &samples(runs, &metric)),
            );
            Claimed {
                metric: label.clone(),
                better: metric.clone(),
                worse: than.clone(),
                lower: false,
                test,
            }
        })
        .collect())
}

/// The metric of the summary a claim's metric names: the same name, else
/// the one metric of its family.
fn resolve_metric(name: &str, metrics: &[String]) -> Result<String, String> {
    if metrics.iter().any(|m| m == name) {
        return Ok(name.to_string());
    }
    let family: Vec<&String> = metrics.iter().filter(|m| names_metric(name, m)).collect();
    match family.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "no completed run has a {name} metric, so the claim on it cannot be measured"
        )),
        many => Err(format!(
            "`{name}` names {} metrics ({}); name one in the claim",
            many.len(),
            many.iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The one variant whose swept values include every value of `sel`.
fn select(sel: &Selector, variants: &[(String, Vec<&RunData>)]) -> Result<usize, String> {
    let matches = |runs: &Vec<&RunData>| {
        runs.first().is_some_and(|r| {
            let v = r.variant();
            sel.0
                .iter()
                .all(|(k, want)| v.iter().any(|(vk, got)| vk == k && same(got, want)))
        })
    };
    let found: Vec<usize> = (0..variants.len())
        .filter(|&i| matches(&variants[i].1))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no variant of this sweep has {sel}")),
        many => Err(format!(
            "{sel} matches {} variants ({}); name one",
            many.len(),
            many.iter()
                .map(|&i| format!("`{}`", variants[i].0))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A swept value as the plan records it against one a spec writes (1 and
/// 1.0 match).
fn same(got: &serde_json::Value, want: &toml::Value) -> bool {
    let number = want.as_float().or(want.as_integer().map(|i| i as f64));
    match (got.as_f64(), number) {
        (Some(x), Some(y)) => x == y,
        _ => serde_json::to_value(want).is_ok_and(|w| w == *got),
    }
}

/// What one claimed comparison found: significant after Holm in the
/// predicted direction, the other way, neither, or not testable.
pub fn assess(c: &Claimed, o: &Outcome) -> Finding {
    let Ok(cmp) = &o.result else {
        return Finding::TooFew;
    };
    if !o.significant() {
        return Finding::NotSignificant;
    }
    if (cmp.diff < 0.0) == c.lower && cmp.diff != 0.0 {
        Finding::Supports
    } else {
        Finding::Opposes
    }
}

/// The verdict from every claimed comparison's finding; a claim that
/// cannot be measured at all (`unmeasured`) leaves it inconclusive.
pub fn decide(findings: &[Finding], unmeasured: bool) -> Verdict {
    if findings.is_empty() && !unmeasured {
        Verdict::Untested
    } else if findings.contains(&Finding::Opposes) {
        Verdict::Contradicted
    } else if !unmeasured && findings.iter().all(|f| *f == Finding::Supports) {
        Verdict::Confirmed
    } else {
        Verdict::Inconclusive
    }
}

/// The blocks the report opens with; none without `[report] exercise`.
pub fn blocks(settings: &ReportSettings, measured: &Measured, family: &Family) -> Vec<Block> {
    let Some(question) = settings.question() else {
        return vec![];
    };
    let mut b = vec![Block::Para(format!("**Question:** {question}"))];
    b.push(Block::Para(format!(
        "**Prediction:** {}",
        settings.prediction.as_deref().unwrap_or("(none stated)")
    )));
    let mut lines = vec![];
    let mut findings = vec![];
    let mut reasons = vec![];
    for m in measured {
        match m {
            Ok(claimed) => {
                for c in claimed {
                    let o = family.get(c.test);
                    let f = assess(c, &o);
                    lines.push(measured_line(c, &o, f, family));
                    findings.push((c, o, f));
                }
            }
            Err(why) => {
                lines.push(format!("{why}."));
                reasons.push(why.clone());
            }
        }
    }
    if lines.is_empty() {
        lines.push(
            "Nothing: the spec's [report] states no claim to test ([[report.claims]]).".into(),
        );
    }
    b.push(Block::Para("**Measured:**".into()));
    b.push(Block::List(lines));
    let fs: Vec<Finding> = findings.iter().map(|x| x.2).collect();
    let verdict = decide(&fs, !reasons.is_empty());
    b.push(Block::Para(verdict_text(
        verdict, &findings, &reasons, family,
    )));
    b
}

/// One claimed comparison as the Measured list states it.
fn measured_line(c: &Claimed, o: &Outcome, f: Finding, family: &Family) -> String {
    let head = format!("{}, `{}` against `{}`", c.metric, c.better, c.worse);
    let cmp = match &o.result {
        Ok(cmp) => cmp,
        Err(few) => return format!("{head}: {}; no test.", too_few_text(few)),
    };
    let rel = cmp.relative();
    let relative = if rel.is_finite() {
        format!(
            " ({} ± {})",
            pct(rel),
            pct_half(cmp.ci95() / cmp.mean_a.abs())
        )
    } else {
        String::new()
    };
    let what = match f {
        Finding::Supports => "significant, as predicted".to_string(),
        Finding::Opposes => "significant, the opposite of the prediction".to_string(),
        _ => format!(
            "not significant; a difference of {} could have been detected with 80% power",
            detectable_text(cmp, family)
        ),
    };
    format!(
        "{head}: **{} ± {}**{relative}, {} against {}; {}; p = {}, Holm-adjusted p = {}: {what}.",
        num(cmp.diff),
        half(cmp.ci95()),
        num(cmp.mean_b),
        num(cmp.mean_a),
        design_text(cmp),
        num(cmp.p),
        num(o.p_adj.unwrap_or(f64::NAN)),
    )
}

/// `paired by seed, n = 3` or `Welch, n = 3 and 2`.
pub fn design_text(c: &Comparison) -> String {
    match c.design {
        Design::Paired => format!("paired by seed, n = {}", c.n()),
        Design::Welch => format!("Welch, n = {} and {}", c.n_b, c.n_a),
    }
}

/// Why there is no test: the seeds each side has.
pub fn too_few_text(few: &TooFew) -> String {
    let means = format!("{} against {}", num(few.mean_b), num(few.mean_a));
    match few.design {
        Design::Paired => format!("{means} over {} seed(s) in common, fewer than 2", few.n_a),
        Design::Welch => format!(
            "{means} with {} and {} seed(s), fewer than 2 on a side",
            few.n_b, few.n_a
        ),
    }
}

/// The effect the test could have detected, absolute and relative.
fn detectable_text(cmp: &Comparison, family: &Family) -> String {
    let d = cmp.detectable(family.alpha_each());
    let rel = d / cmp.mean_a.abs();
    if rel.is_finite() {
        format!(
            "±{} ({})",
            num(d),
            pct_half(rel).replace('%', "% of the reference")
        )
    } else {
        format!("±{}", num(d))
    }
}

/// The verdict paragraph.
fn verdict_text(
    v: Verdict,
    findings: &[(&Claimed, Outcome, Finding)],
    reasons: &[String],
    family: &Family,
) -> String {
    let at = format!("at 95% confidence ({})", family.correction_text());
    let pair = |c: &Claimed| format!("`{}` against `{}` on {}", c.better, c.worse, c.metric);
    match v {
        Verdict::Untested => "**Verdict:** none; the spec states no claim to test (add [[report.claims]] to its [report]).".into(),
        Verdict::Confirmed => format!(
            "**Verdict: confirmed** {at}: every claimed comparison ({}) is significant in the predicted direction.",
            findings.len()
        ),
        Verdict::Contradicted => {
            let against: Vec<String> = findings
                .iter()
                .filter(|x| x.2 == Finding::Opposes)
                .map(|x| pair(x.0))
                .collect();
            format!(
                "**Verdict: contradicted** {at}: {} significant in the opposite direction to the prediction.",
                against.join("; ")
            )
        }
        Verdict::Inconclusive => {
            let mut why: Vec<String> = reasons.to_vec();
            // A side without a single value is a missing run, not too few seeds.
            let (none, few): (Vec<_>, Vec<_>) = findings
                .iter()
                .filter(|x| x.2 == Finding::TooFew)
                .partition(|x| x.1.result.is_err_and(|e| e.n_a == 0 || e.n_b == 0));
            for (c, _, _) in none {
                why.push(format!(
                    "{} has no completed run with a value on one side (finish the sweep: run it again)",
                    pair(c)
                ));
            }
            let few = few.len();
            if few > 0 {
                why.push(format!(
                    "seeds are required for a verdict: {few} claimed comparison(s) have fewer than 2 seeds on a side (sweep `seeds = [0, 1, 2]` or more and run the sweep again)"
                ));
            }
            for (c, o, _) in findings.iter().filter(|x| x.2 == Finding::NotSignificant) {
                if let Ok(cmp) = &o.result {
                    why.push(format!(
                        "{} is not significant ({}); it could have detected {} with 80% power",
                        pair(c),
                        design_text(cmp),
                        detectable_text(cmp, family)
                    ));
                }
            }
            format!("**Verdict: inconclusive** {at}: {}.", why.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::document::markdown;
    use crate::report::testing::fake_run;

    /// Two variants of `ema.decay` (0 and 0.9) over `seeds`, fd given per seed.
    fn sweep(raw: &[f64], ema: &[f64]) -> Vec<RunData> {
        let mut runs = vec![];
        for (decay, values) in [(0.0, raw), (0.9, ema)] {
            for (seed, v) in values.iter().enumerate() {
                runs.push(fake_run(
                    &[("ema.decay", decay.into())],
                    seed as i64,
                    &[("fd_x", *v)],
                ));
            }
        }
        runs
    }

    fn settings() -> ReportSettings {
        let t: toml::Table = "exercise = 2\nprediction = \"EMA helps (§4.1)\"\n[[claims]]\nkind = \"better\"\nmetric = \"fd\"\nbetter = { \"ema.decay\" = 0.9 }\nthan = { \"ema.decay\" = 0.0 }\n".parse().unwrap();
        ReportSettings::from_table(&t).unwrap()
    }

    /// The verdict block of `runs` as Markdown.
    fn verdict_of(runs: &[RunData], s: &ReportSettings) -> String {
        let refs: Vec<&RunData> = runs.iter().collect();
        let variants = crate::report::testing::variants(&refs);
        let mut family = Family::default();
        let measured = register(s, &variants, &["fd_x".to_string()], &mut family);
        family.adjust();
        markdown(&blocks(s, &measured, &family))
    }

    #[test]
    fn an_exceeds_claim_compares_two_numbers_of_the_same_runs_by_seed() {
        // profile_mid − profile_low per seed: 1, 1.2, 0.8: mean 1, sd 0.2.
        let runs: Vec<RunData> = [(3.0, 2.0), (3.5, 2.3), (2.8, 2.0)]
            .iter()
            .enumerate()
            .map(|(seed, (mid, low))| {
                fake_run(
                    &[("ema.decay", 0.0.into())],
                    seed as i64,
                    &[("profile_mid", *mid), ("profile_low", *low)],
                )
            })
            .collect();
        let t: toml::Table = "exercise = 4\nprediction = \"a hump (§7.2)\"\n[[claims]]\nkind = \"exceeds\"\nmetric = \"profile_mid\"\nthan = \"profile_low\"\n".parse().unwrap();
        let s = ReportSettings::from_table(&t).unwrap();
        let refs: Vec<&RunData> = runs.iter().collect();
        let variants = crate::report::testing::variants(&refs);
        let mut family = Family::default();
        let metrics = ["profile_low".to_string(), "profile_mid".to_string()];
        let measured = register(&s, &variants, &metrics, &mut family);
        family.adjust();
        let md = markdown(&blocks(&s, &measured, &family));
        // t = 1 / (0.2/√3) = 8.66 with 2 df; the interval t_{.975,2}·0.2/√3 = 0.50.
        assert!(
            md.contains("decay=0.0, `profile_mid` against `profile_low`: **1.00 ± 0.50**"),
            "{md}"
        );
        assert!(md.contains("**Verdict: confirmed**"), "{md}");
        // The other way round is a contradiction.
        let t: toml::Table = "exercise = 4\nprediction = \"x\"\n[[claims]]\nkind = \"exceeds\"\nmetric = \"profile_low\"\nthan = \"profile_mid\"\n".parse().unwrap();
        let s = ReportSettings::from_table(&t).unwrap();
        let mut family = Family::default();
        let measured = register(&s, &variants, &metrics, &mut family);
        family.adjust();
        let md = markdown(&blocks(&s, &measured, &family));
        assert!(md.contains("**Verdict: contradicted**"), "{md}");
    }

    #[test]
    fn a_consistent_improvement_over_seeds_is_confirmed() {
        let md = verdict_of(&sweep(&[10.0, 12.0, 14.0], &[8.0, 9.9, 12.1]), &settings());
        assert!(
            md.starts_with("**Question:** Exercise 2 (EMA ablation): "),
            "{md}"
        );
        assert!(md.contains("**Prediction:** EMA helps (§4.1)"), "{md}");
        // Differences −2, −2.1, −1.9: mean −2, sd 0.1, t = −34.6 with 2 df.
        assert!(md.contains("fd_x, `decay=0.9` against `decay=0.0`: **-2.00 ± 0.25** (-16.7% ± 2.1%), 10.0 against 12.0; paired by seed, n = 3"), "{md}");
        assert!(
            md.contains(
                "**Verdict: confirmed** at 95% confidence (Holm–Bonferroni over 1 comparison)"
            ),
            "{md}"
        );
    }

    #[test]
    fn a_consistent_loss_is_a_contradiction() {
        let md = verdict_of(
            &sweep(&[10.0, 12.0, 14.0], &[12.0, 14.1, 15.9]),
            &settings(),
        );
        assert!(
            md.contains("significant, the opposite of the prediction"),
            "{md}"
        );
        assert!(md.contains("**Verdict: contradicted**"), "{md}");
    }

    #[test]
    fn noise_is_inconclusive_with_the_detectable_effect() {
        let md = verdict_of(
            &sweep(&[10.0, 12.0, 14.0], &[11.0, 10.0, 15.0]),
            &settings(),
        );
        assert!(md.contains("**Verdict: inconclusive**"), "{md}");
        assert!(
            md.contains("is not significant (paired by seed, n = 3); it could have detected ±"),
            "{md}"
        );
    }

    #[test]
    fn one_seed_never_gives_a_verdict() {
        let md = verdict_of(&sweep(&[10.0], &[1.0]), &settings());
        assert!(
            md.contains("over 1 seed(s) in common, fewer than 2; no test."),
            "{md}"
        );
        assert!(md.contains("**Verdict: inconclusive** at 95% confidence (Holm–Bonferroni over 0 comparisons): seeds are required for a verdict"), "{md}");
    }

    #[test]
    fn no_exercise_no_verdict_and_an_unmeasurable_claim_is_inconclusive() {
        let runs = sweep(&[10.0, 12.0], &[8.0, 9.0]);
        assert_eq!(verdict_of(&runs, &ReportSettings::default()), "");
        let mut s = settings();
        s.claims.push(Claim::Best {
            metric: "bpd".into(),
            best: Selector(vec![("ema.decay".into(), toml::Value::Float(0.9))]),
        });
        let md = verdict_of(&runs, &s);
        assert!(md.contains("- no completed run has a bpd metric"), "{md}");
        assert!(md.contains("**Verdict: inconclusive**"), "{md}");
        s.claims.clear();
        assert!(verdict_of(&runs, &s).contains("**Verdict:** none"));
        // The raw runs never measured fd: a missing side, not too few seeds.
        let mut runs = sweep(&[], &[8.0, 9.0]);
        runs.push(fake_run(&[("ema.decay", 0.0.into())], 0, &[("bpd", 1.0)]));
        let md = verdict_of(&runs, &settings());
        assert!(
            md.contains("has no completed run with a value on one side"),
            "{md}"
        );
        assert!(!md.contains("seeds are required"), "{md}");
        assert_eq!(
            decide(&[Finding::Supports, Finding::TooFew], false),
            Verdict::Inconclusive
        );
        assert_eq!(
            decide(&[Finding::Opposes, Finding::TooFew], false),
            Verdict::Contradicted
        );
        assert_eq!(decide(&[Finding::Supports], true), Verdict::Inconclusive);
    }
}
