//! Findings computed from the data, never written by hand: each variant's
//! headline metrics against the baseline variant (the first in plan order),
//! as a relative change with its 95% interval (paired by seed where the
//! variants share seeds, see [`super::compare`]) and whether it is
//! significant after the report's Holm–Bonferroni correction
//! ([`super::family`]); and what the data cannot support — a change within
//! the noise, a single seed, an EMA that has not warmed up within the
//! training run. [`register`] adds the comparisons to the report's family,
//! [`all`] gathers the report's list once it is adjusted (the guidance
//! findings come from [`super::guidance`]).

use super::collect::{RunData, SweepData};
use super::family::{samples, Family, TestRef};
use super::format::{num, pct, pct_half, share};
use super::guidance;
use super::stats::Summary;
use super::verdict::{design_text, too_few_text};

/// Whether lower is better for a metric or a family of metrics (None: no
/// direction, e.g. learning rate).
pub fn lower_is_better(metric: &str) -> Option<bool> {
    crate::run::report_settings::lower_is_better(metric)
}

/// The metrics a report leads with, in this order, among those present.
pub fn headline(metrics: &[String]) -> Vec<String> {
    let rank = |m: &str| -> Option<usize> {
        let order = [
            "fid",
            "fd_",
            "bpd",
            "is_",
            "precision_",
            "recall_",
            "class_accuracy_",
            "sliced_wasserstein",
            "mmd2_rbf",
            "ks_max",
            "corr_error",
            "q01_error",
            "q05_error",
            "acf_sq_error",
            super::derived::EPS_MSE,
            "final_loss",
        ];
        order.iter().position(|p| {
            if p.ends_with('_') {
                m.starts_with(p)
            } else {
                m == *p
            }
        })
    };
    let mut v: Vec<(usize, String)> = metrics
        .iter()
        .filter(|m| *m != "bpd_prior" && *m != "bpd_decoder")
        .filter_map(|m| rank(m).map(|r| (r, m.clone())))
        .collect();
    v.sort();
    v.dedup();
    v.into_iter().map(|(_, m)| m).collect()
}

/// `mean ± ci (n = k)`: 3 significant figures, the interval 2.
pub fn mean_ci(s: &Summary) -> String {
    if s.n == 0 {
        "—".into()
    } else if s.n < 2 {
        format!("{} (n = 1)", num(s.mean))
    } else {
        format!(
            "{} ± {} (n = {})",
            num(s.mean),
            super::format::half(s.ci95),
            s.n
        )
    }
}

/// The findings' comparisons: for each of the three leading headline
/// metrics, each variant against the first (its label and test).
pub type Compared = Vec<(String, Vec<(String, TestRef)>)>;

/// Add the findings' comparisons to `family` (none with one variant).
pub fn register(
    variants: &[(String, Vec<&RunData>)],
    headline: &[String],
    family: &mut Family,
) -> Compared {
    let Some((base, base_runs)) = variants.first() else {
        return vec![];
    };
    if variants.len() < 2 {
        return vec![];
    }
    // The leading metrics; every number is in the tables below.
    headline
        .iter()
        .take(3)
        .map(|m| {
            let a = samples(base_runs, m);
            let tests = variants[1..]
                .iter()
                .map(|(l, runs)| {
                    let t = family.add(m, (base, &a), (l, &samples(runs, m)));
                    (l.clone(), t)
                })
                .collect();
            (m.clone(), tests)
        })
        .collect()
}

/// Every finding of the report, in its order: the comparisons of
/// [`register`] (each variant against the first), the guidance,
/// per-timestep (its changes and shape without an exercise or for exercise
/// 4; an EMA's against the raw weights' always) and EMA notes; a
/// sentence saying there is nothing to compare when there is none.
pub fn all(
    s: &SweepData,
    variants: &[(String, Vec<&RunData>)],
    headline: &[String],
    compared: &Compared,
    family: &Family,
    exercise: Option<u8>,
) -> Vec<String> {
    let mut f = vec![];
    if let Some((base, _)) = variants.first() {
        for (metric, tests) in compared {
            f.extend(comparisons(base, metric, tests, family));
        }
    }
    f.extend(guidance::notes(s, headline));
    // How the profile changes and its shape answer exercise 4; elsewhere
    // only an EMA's profile against the raw weights' is kept.
    f.extend(super::profile::notes(
        variants,
        exercise.is_none_or(|e| e == 4),
    ));
    f.extend(ema_warmup_notes(s));
    if f.is_empty() {
        f.push("Nothing to compare yet: one variant, or no completed runs.".into());
    }
    f
}

/// One sentence per variant against the baseline `base` on `metric`.
pub fn comparisons(
    base: &str,
    metric: &str,
    tests: &[(String, TestRef)],
    family: &Family,
) -> Vec<String> {
    let mut out = vec![];
    for (v, t) in tests {
        let o = family.get(*t);
        let c = match &o.result {
            // A side without the metric: nothing to say.
            Err(few) if few.n_a == 0 || few.n_b == 0 => continue,
            Err(few) => {
                out.push(format!(
                    "`{v}` against `{base}` on {metric}: {}, so no test; run more seeds to tell a difference from noise.",
                    too_few_text(few)
                ));
                continue;
            }
            Ok(c) => c,
        };
        let verdict = if !o.significant() {
            "within the noise (not significant after Holm–Bonferroni)".to_string()
        } else {
            match lower_is_better(metric) {
                Some(true) if c.diff < 0.0 => "better (lower)".into(),
                Some(true) => "worse (higher)".into(),
                Some(false) if c.diff > 0.0 => "better (higher)".into(),
                Some(false) => "worse (lower)".into(),
                None => "a real difference".into(),
            }
        };
        let change = if c.relative().is_finite() {
            format!(
                "**{} ± {}**",
                pct(c.relative()),
                pct_half(c.ci95() / c.mean_a.abs())
            )
        } else {
            format!(
                "**{} ± {}** (its baseline mean is 0)",
                num(c.diff),
                super::format::half(c.ci95())
            )
        };
        out.push(format!(
            "`{v}` changes {metric} by {change} against `{base}` ({}; p = {}, Holm-adjusted p = {}): {verdict}.",
            design_text(c),
            num(c.p),
            num(o.p_adj.unwrap_or(f64::NAN))
        ));
    }
    out
}

/// EMA weight sets that still put more than 1% on the initial weights
/// (μ_eff^N, recorded per evaluation point) at the last step evaluated.
pub fn ema_warmup_notes(s: &SweepData) -> Vec<String> {
    use super::derived::EMA_INITIAL;
    use crate::run::weights::SAFE_INITIAL_FRACTION;
    let mut out: Vec<String> = vec![];
    for r in &s.runs {
        let Some(last) = r
            .eval
            .iter()
            .filter(|m| m.metric == EMA_INITIAL)
            .max_by_key(|m| m.step)
        else {
            continue;
        };
        if last.value > SAFE_INITIAL_FRACTION {
            let line = format!(
                "{} still puts {} of its weight on the random initial weights at step {} (μ^N = {}, above 1%): its numbers are mostly the untrained model's, not an EMA effect. Use a decay whose horizon the run supports (1/(1 − μ) well under the steps), `ema.mode = \"warmup\"` or `\"bias-corrected\"`, or train longer.",
                r.weights,
                share(last.value),
                last.step,
                num(last.value)
            );
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

/// Whether the runs' training losses are in different units: the
/// prediction target (an MSE on ε, x_0 or v) or the weighting differs
/// between them. Their `final_loss` is then not compared across variants
/// (the ε-equivalent loss is).
pub fn losses_in_different_units(s: &SweepData) -> bool {
    let unit = |r: &RunData| {
        let d = &r.config.diffusion;
        format!(
            "{:?} {:?} {} {} {}",
            d.prediction, d.weighting, d.min_snr_gamma, d.p2_k, d.p2_gamma
        )
    };
    let mut runs = s.runs.iter().map(unit);
    let Some(first) = runs.next() else {
        return false;
    };
    runs.any(|u| u != first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{fake_run, variants};

    #[test]
    fn findings_state_the_change_its_interval_and_its_verdict() {
        let mut runs = vec![];
        for (v, values) in [
            ("raw", &[10.0, 10.2, 9.8][..]),
            ("ema", &[7.6, 7.8, 7.7]),
            ("noisy", &[9.0, 11.0, 10.4]),
            ("one", &[5.0]),
        ] {
            for (seed, x) in values.iter().enumerate() {
                runs.push(fake_run(
                    &[("w", v.into())],
                    seed as i64,
                    &[("fd_mnist-cnn", *x)],
                ));
            }
        }
        let refs: Vec<&RunData> = runs.iter().collect();
        let vs = variants(&refs);
        let mut family = Family::default();
        let compared = register(&vs, &["fd_mnist-cnn".to_string()], &mut family);
        family.adjust();
        assert_eq!(family.size(), 2, "the single seed is no test");
        let f = comparisons("w=raw", "fd_mnist-cnn", &compared[0].1, &family);
        assert_eq!(f.len(), 3);
        // Paired differences −2.4, −2.4, −2.1: mean −2.3 over a baseline of 10.
        assert!(
            f[0].starts_with("`w=ema` changes fd_mnist-cnn by **-23.0% ± ")
                && f[0].contains("paired by seed, n = 3")
                && f[0].contains("better (lower)"),
            "{}",
            f[0]
        );
        assert!(f[1].contains("within the noise"), "{}", f[1]);
        assert!(f[2].contains("fewer than 2"), "{}", f[2]);
    }

    #[test]
    fn headline_metrics_come_in_a_fixed_order() {
        let m: Vec<String> = ["final_loss", "recall_x", "bpd_prior", "bpd", "fd_x", "lr"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(headline(&m), vec!["fd_x", "bpd", "recall_x", "final_loss"]);
        assert_eq!(lower_is_better("fd_x"), Some(true));
        assert_eq!(lower_is_better("precision_x"), Some(false));
        assert_eq!(lower_is_better("lr"), None);
    }
}
