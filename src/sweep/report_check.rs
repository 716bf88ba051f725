//! A spec's `[report]` claims against its `[sweep]`: each selector names
//! swept keys (an axis, or a key of the `[[sweep.include]]` runs) with values
//! the spec sweeps, and selects exactly one variant (the swept values without
//! the seed); a `better` claim's two selectors differ, and a `best` claim has
//! something to beat. The table's own keys and types are checked where it is
//! typed ([`crate::run::report_settings`]).

use super::expand::{self, same, Assignment, Axes};
use crate::config::Problem;
use crate::run::report_settings::{is_seed, Claim, ReportSettings, Selector};

/// Every problem of the claims' selectors against `axes`, each under its key
/// (`report.claims[0].better`).
pub fn selector_problems(settings: &ReportSettings, axes: &Axes) -> Vec<Problem> {
    let variants = variants(axes);
    let mut problems = vec![];
    for (i, claim) in settings.claims.iter().enumerate() {
        let mut chosen: Vec<(&str, usize)> = vec![];
        for (name, sel) in claim.selectors() {
            let key = format!("report.claims[{i}].{name}");
            match select(sel, axes, &variants) {
                Ok(v) => chosen.push((name, v)),
                Err(m) => problems.push(Problem::new(&key, m)),
            }
        }
        match (claim, chosen.as_slice()) {
            (Claim::Better { .. }, [(_, a), (than, b)]) if a == b => problems.push(Problem::new(
                &format!("report.claims[{i}].{than}"),
                "selects the same variant as `better`; a claim compares two variants",
            )),
            (Claim::Best { .. }, [(best, _)]) if variants.len() < 2 => problems.push(Problem::new(
                &format!("report.claims[{i}].{best}"),
                "the sweep has one variant, so there is nothing for it to beat; sweep the key the claim is about",
            )),
            _ => {}
        }
    }
    problems
}

/// The distinct variants of the sweep's runs, in run order.
fn variants(axes: &Axes) -> Vec<Assignment> {
    let mut out: Vec<Assignment> = vec![];
    for run in expand::expand(axes) {
        let v: Assignment = run.into_iter().filter(|(k, _)| !is_seed(k)).collect();
        if !out.iter().any(|o| same_variant(o, &v)) {
            out.push(v);
        }
    }
    out
}

fn same_variant(a: &Assignment, b: &Assignment) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.iter().any(|(bk, bv)| bk == k && same(bv, v)))
}

/// Each swept key (seeds left out) with the values the spec gives it.
fn swept_values(axes: &Axes) -> Vec<(String, Vec<toml::Value>)> {
    let mut out: Vec<(String, Vec<toml::Value>)> = vec![];
    let mut add = |k: &str, v: &toml::Value| {
        if is_seed(k) {
            return;
        }
        let i = match out.iter().position(|(o, _)| o == k) {
            Some(i) => i,
            None => {
                out.push((k.to_string(), vec![]));
                out.len() - 1
            }
        };
        if !out[i].1.iter().any(|x| same(x, v)) {
            out[i].1.push(v.clone());
        }
    };
    for a in &axes.axes {
        for p in &a.points {
            for (k, v) in a.keys.iter().zip(p) {
                add(k, v);
            }
        }
    }
    for run in &axes.include {
        for (k, v) in run {
            add(k, v);
        }
    }
    out
}

/// The index (in `variants`) of the one variant `sel` selects, or why not.
fn select(sel: &Selector, axes: &Axes, variants: &[Assignment]) -> Result<usize, String> {
    let swept = swept_values(axes);
    let names: Vec<&str> = swept.iter().map(|(k, _)| k.as_str()).collect();
    for (k, v) in &sel.0 {
        let Some((_, values)) = swept.iter().find(|(s, _)| s == k) else {
            return Err(if names.is_empty() {
                format!("\"{k}\" is not swept, and nothing is besides the seeds, so there is one variant and nothing to compare; sweep the key the claim is about")
            } else {
                format!(
                    "\"{k}\" is not swept, so it cannot select a variant; the swept keys are {}",
                    names.join(", ")
                )
            });
        };
        if !values.iter().any(|x| same(x, v)) {
            let list: Vec<String> = values.iter().map(|x| x.to_string()).collect();
            return Err(format!(
                "{k} = {v} is not one of the values the spec sweeps ({})",
                list.join(", ")
            ));
        }
    }
    let matching: Vec<usize> = (0..variants.len())
        .filter(|&i| {
            sel.0
                .iter()
                .all(|(k, v)| variants[i].iter().any(|(vk, vv)| vk == k && same(vv, v)))
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "{sel} selects no run: [[sweep.exclude]] removes every run with these values"
        )),
        many => {
            let others: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !sel.0.iter().any(|(k, _)| k == n))
                .collect();
            Err(format!(
                "{sel} selects {} variants; add a value for {} so that it selects one",
                many.len(),
                others.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(sweep: &str, report: &str) -> Vec<String> {
        let axes = expand::parse_all(sweep).unwrap();
        let t: toml::Table = report.parse().unwrap();
        let s = ReportSettings::from_table(t["report"].as_table().unwrap()).unwrap();
        selector_problems(&s, &axes)
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    const REPORT: &str = "[report]\nexercise = 2\nprediction = \"p\"\n";

    #[test]
    fn selectors_name_swept_keys_and_values_and_one_variant_each() {
        let sweep = "[sweep]\n\"ema.decay\" = [0.0, 0.9]\n\"train.lr\" = [1e-3, 2e-3]\nseeds = [0, 1]\n[[sweep.include]]\n\"ema.decay\" = 0.99\n";
        let claims = "[[report.claims]]\nkind = \"better\"\nmetric = \"fd\"\nbetter = { \"ema.decay\" = 0.9, \"train.lr\" = 1e-3 }\nthan = { \"ema.decay\" = 0, \"train.lr\" = 1e-3 }\n[[report.claims]]\nkind = \"better\"\nmetric = \"fd\"\nbetter = { \"ema.decays\" = 0.9 }\nthan = { \"ema.decay\" = 0.95 }\n[[report.claims]]\nkind = \"best\"\nmetric = \"fd\"\nbest = { \"ema.decay\" = 0.9 }\n[[report.claims]]\nkind = \"best\"\nmetric = \"fd\"\nbest = { \"ema.decay\" = 0.99 }\n[[report.claims]]\nkind = \"better\"\nmetric = \"fd\"\nbetter = { \"ema.decay\" = 0.99 }\nthan = { \"ema.decay\" = 0.99 }\n";
        let p = problems(sweep, &format!("{REPORT}{claims}"));
        let expected = [
            "report.claims[1].better: \"ema.decays\" is not swept, so it cannot select a variant; the swept keys are ema.decay, train.lr",
            "report.claims[1].than: ema.decay = 0.95 is not one of the values the spec sweeps (0.0, 0.9, 0.99)",
            "report.claims[2].best: { ema.decay = 0.9 } selects 2 variants; add a value for train.lr so that it selects one",
            "report.claims[4].than: selects the same variant as `better`",
        ];
        assert_eq!(p.len(), expected.len(), "{p:#?}");
        for (got, want) in p.iter().zip(expected) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
        // The include run (decay 0.99 alone) is a variant of its own: claim 3 is fine.
        let p = problems("[sweep]\nseeds = [0, 1]\n", &format!("{REPORT}[[report.claims]]\nkind = \"best\"\nmetric = \"fd\"\nbest = {{ \"ema.decay\" = 0.9 }}\n"));
        assert!(p[0].contains("nothing is besides the seeds"), "{p:?}");
        let p = problems(
            "[sweep]\n\"ema.decay\" = [0.0, 0.9]\n[[sweep.exclude]]\n\"ema.decay\" = 0.9\n",
            &format!("{REPORT}[[report.claims]]\nkind = \"best\"\nmetric = \"fd\"\nbest = {{ \"ema.decay\" = 0.9 }}\n"),
        );
        assert!(p[0].contains("selects no run"), "{p:?}");
    }
}
