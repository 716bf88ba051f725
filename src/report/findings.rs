//! Findings computed from the data, never written by hand: each variant's
//! headline metrics against the baseline variant (the first in plan order),
//! as a relative change with its 95% interval, and what the data cannot
//! support — a change within the noise, a single seed, an EMA that has not
//! warmed up within the training run. [`all`] gathers the report's list
//! (the guidance findings come from [`super::guidance`]).

use super::collect::{RunData, SweepData};
use super::guidance;
use super::stats::{relative_change, Summary};
use super::tables::SummaryRow;

/// Whether lower is better for a metric (None: no direction, e.g. learning rate).
pub fn lower_is_better(metric: &str) -> Option<bool> {
    let m = metric;
    if m == "final_loss"
        || m == super::derived::EPS_MSE
        || m.starts_with("bpd")
        || m.starts_with("fd_")
        || m == "fid"
        || m == "sliced_wasserstein"
        || m == "mmd2_rbf"
        || m.starts_with("ks_")
        || m.ends_with("_error")
    {
        Some(true)
    } else if m.starts_with("is_")
        || m.starts_with("precision_")
        || m.starts_with("recall_")
        || m.starts_with("class_accuracy_")
    {
        Some(false)
    } else {
        None
    }
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

fn fmt(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e5) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// `mean ± ci (n = k)`.
pub fn mean_ci(s: &Summary) -> String {
    if s.n == 0 {
        "—".into()
    } else if s.n < 2 {
        format!("{} (n = 1)", fmt(s.mean))
    } else {
        format!("{} ± {} (n = {})", fmt(s.mean), fmt(s.ci95), s.n)
    }
}

/// Every finding of the report, in its order: the three leading headline
/// metrics of each variant against the first (when there are several), the
/// guidance, per-timestep and EMA notes; a sentence saying there is nothing
/// to compare when there is none.
pub fn all(
    s: &SweepData,
    variants: &[(String, Vec<&RunData>)],
    rows: &[SummaryRow],
    headline: &[String],
) -> Vec<String> {
    let labels: Vec<String> = variants.iter().map(|(l, _)| l.clone()).collect();
    let mut f = vec![];
    if labels.len() > 1 {
        // The leading metrics; every number is in the tables below.
        for m in headline.iter().take(3) {
            f.extend(comparisons(rows, &labels, m));
        }
    }
    f.extend(guidance::notes(s, headline));
    f.extend(super::profile::notes(variants));
    f.extend(ema_warmup_notes(s));
    if f.is_empty() {
        f.push("Nothing to compare yet: one variant, or no completed runs.".into());
    }
    f
}

/// One sentence per (variant, headline metric) against the baseline.
pub fn comparisons(rows: &[SummaryRow], variants: &[String], metric: &str) -> Vec<String> {
    let Some(base) = variants.first() else {
        return vec![];
    };
    let get = |v: &str| rows.iter().find(|r| r.variant == v && r.metric == metric);
    let Some(b) = get(base) else {
        return vec![];
    };
    let mut out = vec![];
    for v in variants.iter().skip(1) {
        let Some(r) = get(v) else { continue };
        let text = match relative_change(&b.stats, &r.stats) {
            None if r.stats.n < 2 || b.stats.n < 2 => format!(
                "`{v}`: {metric} {} against {} for `{base}` — fewer than 2 completed seeds on a side, so no interval; run more seeds to tell a difference from noise.",
                fmt(r.stats.mean),
                fmt(b.stats.mean)
            ),
            None => format!("`{v}`: {metric} cannot be compared with `{base}` (its baseline mean is 0)."),
            Some(c) => {
                let pct = |x: f64| format!("{:+.1}%", 100.0 * x);
                let verdict = if !c.significant {
                    "within the noise: the 95% interval includes no change".to_string()
                } else {
                    match lower_is_better(metric) {
                        Some(true) if c.relative < 0.0 => "better (lower)".into(),
                        Some(true) => "worse (higher)".into(),
                        Some(false) if c.relative > 0.0 => "better (higher)".into(),
                        Some(false) => "worse (lower)".into(),
                        None => "a real difference".into(),
                    }
                };
                format!(
                    "`{v}` changes {metric} by **{} ± {:.1}%** against `{base}` ({} vs {} seeds): {verdict}.",
                    pct(c.relative),
                    100.0 * c.ci95,
                    r.stats.n,
                    b.stats.n
                )
            }
        };
        out.push(text);
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
                "{} still puts {:.0}% of its weight on the random initial weights at step {} (μ^N = {}, above 1%): its numbers are mostly the untrained model's, not an EMA effect. Use a decay whose horizon the run supports (1/(1 − μ) well under the steps), `ema.mode = \"warmup\"` or `\"bias-corrected\"`, or train longer.",
                r.weights,
                100.0 * last.value,
                last.step,
                fmt(last.value)
            );
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stats::summarize;

    fn row(v: &str, m: &str, vals: &[f64]) -> SummaryRow {
        SummaryRow {
            variant: v.into(),
            metric: m.into(),
            stats: summarize(vals),
            runs: vals.len(),
        }
    }

    #[test]
    fn findings_state_the_change_its_interval_and_its_verdict() {
        let rows = vec![
            row("raw", "fd_mnist-cnn", &[10.0, 10.2, 9.8]),
            row("ema", "fd_mnist-cnn", &[7.6, 7.8, 7.7]),
            row("noisy", "fd_mnist-cnn", &[9.0, 11.0, 10.4]),
            row("one", "fd_mnist-cnn", &[5.0]),
        ];
        let v: Vec<String> = ["raw", "ema", "noisy", "one"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = comparisons(&rows, &v, "fd_mnist-cnn");
        assert_eq!(f.len(), 3);
        assert!(
            f[0].contains("**-23.0% ± ") && f[0].contains("better (lower)"),
            "{}",
            f[0]
        );
        assert!(f[1].contains("within the noise"), "{}", f[1]);
        assert!(f[2].contains("fewer than 2 completed seeds"), "{}", f[2]);
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
