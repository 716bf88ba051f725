//! How the sample metrics were measured, stated once in the report: the
//! sampler and sample count, the evaluator network and its held-out
//! accuracy, and the floor of the Fréchet distance at that sample count (as
//! many real training images against the same held-out reference), below
//! which no model can be expected to score; on the eight Gaussians, what
//! the exact class metrics mean. All of it is read from the
//! runs' evaluation rows (`floor_fd_*`, `evaluator_accuracy_*`) and configs.

use super::collect::{completed, RunData, SweepData};
use super::document::Block;
use super::format::{num, share};
use super::stats::summarize;
use std::collections::BTreeSet;

/// The paragraph, when some completed run has sample metrics.
pub fn blocks(s: &SweepData) -> Vec<Block> {
    let runs: Vec<&RunData> = completed(&s.runs.iter().collect::<Vec<_>>());
    let sampled: Vec<&RunData> = runs
        .iter()
        .copied()
        .filter(|r| r.eval.iter().any(|m| m.guidance.is_some()))
        .collect();
    if sampled.is_empty() {
        return vec![];
    }
    let samplers: BTreeSet<String> = sampled
        .iter()
        .flat_map(|r| r.eval.iter().filter(|m| m.guidance.is_some()))
        .map(|m| m.sampler.clone())
        .collect();
    let counts: BTreeSet<u64> = sampled.iter().map(|r| r.config.eval.num_samples).collect();
    let join = |v: Vec<String>| v.join(", ");
    let mut text = format!(
        "Sample metrics: {} samples per evaluation point, weight set and guidance scale, drawn with {}.",
        join(counts.iter().map(|c| c.to_string()).collect()),
        join(samplers.into_iter().map(|s| format!("`{s}`")).collect())
    );
    for (name, values) in per_evaluator(&sampled, "evaluator_accuracy_") {
        text.push_str(&format!(
            " Features of the evaluator network `{name}`, held-out accuracy {}.",
            share(summarize(&values).mean)
        ));
    }
    for (name, values) in per_evaluator(&sampled, "floor_fd_") {
        text.push_str(&format!(
            " The floor of fd_{name} at this sample count, as many real training images against the same held-out reference, is {}: no model can be expected to score below it.",
            num(summarize(&values).mean)
        ));
    }
    if sampled
        .iter()
        .any(|r| r.eval.iter().any(|m| m.metric == "class_accuracy_exact"))
    {
        text.push_str(EXACT);
    }
    vec![Block::Para(text)]
}

/// What the eight Gaussians' exact metrics are ([`crate::eval::eight_gaussians`]).
const EXACT: &str = " On the eight Gaussians the class metrics are exact, from the known density (class k is N(c_k, σ²I), σ = 0.2): `class_accuracy_exact` is the share of samples whose nearest centre (the Bayes classifier) is the class they were drawn for (real data: 0.9999); `precision_exact` the share within r₉₅ = σ√(2 ln 20) of their class's centre, where 95% of the class's mass lies (real data: 0.95); `recall_exact` the per-class coverage, the class's mass within the radius holding 95% of its samples, averaged over classes (real data: 0.95; samples drawn tighter than the class score less).";

/// The values of the metrics named `<prefix><evaluator>`, by evaluator
/// (one per run: its last evaluation point's).
fn per_evaluator(runs: &[&RunData], prefix: &str) -> Vec<(String, Vec<f64>)> {
    let mut out: Vec<(String, Vec<f64>)> = vec![];
    for r in runs {
        let Some(last) = r
            .eval
            .iter()
            .filter(|m| m.metric.starts_with(prefix))
            .max_by_key(|m| m.step)
        else {
            continue;
        };
        let name = last.metric[prefix.len()..].to_string();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(last.value),
            None => out.push((name, vec![last.value])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::document::markdown;
    use crate::report::testing::fake_run;

    #[test]
    fn the_paragraph_names_the_sampler_the_evaluator_and_the_floor() {
        let mut runs: Vec<RunData> = [3.0, 4.0]
            .iter()
            .enumerate()
            .map(|(seed, floor)| {
                fake_run(
                    &[("ema.decay", 0.0.into())],
                    seed as i64,
                    &[
                        ("fd_x", 20.0),
                        ("floor_fd_x", *floor),
                        ("evaluator_accuracy_x", 0.98),
                    ],
                )
            })
            .collect();
        for r in &mut runs {
            r.config.eval.num_samples = 300;
            for m in &mut r.eval {
                m.guidance = Some(1.0);
                m.sampler = "ddim-25".into();
            }
        }
        let s = SweepData {
            runs,
            ..SweepData::default()
        };
        let md = markdown(&blocks(&s));
        assert!(
            md.contains("300 samples per evaluation point, weight set and guidance scale, drawn with `ddim-25`."),
            "{md}"
        );
        assert!(md.contains("`x`, held-out accuracy 98.0%."), "{md}");
        assert!(md.contains("The floor of fd_x at this sample count, as many real training images against the same held-out reference, is 3.50"), "{md}");
        // Without sample metrics there is nothing to say.
        let none = SweepData::default();
        assert!(blocks(&none).is_empty());
    }
}
