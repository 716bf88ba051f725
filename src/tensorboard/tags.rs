//! The tags runs are shown under: one home, so training, evaluation and the
//! tests agree. Runs of a sweep share tags, so TensorBoard overlays them.

use crate::run::metrics_table::MetricRow;
use crate::run::records::LogRecord;

/// A training log record as scalars: `train/<field>`, one per quarter of
/// [0, T) that had samples, and `train/ema_decay/<weights>` per EMA.
pub fn training(r: &LogRecord) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = [
        ("loss", r.loss),
        ("loss_unweighted", r.loss_unweighted),
        ("grad_norm", r.grad_norm),
        ("lr", r.lr),
        ("loss_scale", r.loss_scale),
        ("skipped_steps", r.skipped_steps as f64),
        ("images_per_s", r.images_per_s),
        ("data_wait_frac", r.data_wait_frac),
    ]
    .into_iter()
    .map(|(k, v)| (format!("train/{k}"), v))
    .collect();
    for (i, q) in r.loss_q.iter().enumerate() {
        if let Some(v) = q {
            out.push((format!("train/loss_q{i}"), *v));
        }
    }
    for (name, d) in &r.ema_decay {
        out.push((format!("train/ema_decay/{name}"), *d));
    }
    out
}

/// The suffix of a guidance scale: none for unguided sampling (s = 1, or
/// no scale), `/guidance-<s>` otherwise.
fn guidance_suffix(g: Option<f64>) -> String {
    match g {
        Some(s) if s != 1.0 => format!("/guidance-{s}"),
        _ => String::new(),
    }
}

/// An evaluation metric's tag: `eval/<metric>[/guidance-<s>]`.
pub fn evaluation(row: &MetricRow) -> String {
    format!("eval/{}{}", row.metric, guidance_suffix(row.guidance))
}

/// The sample grid's tag: `samples[/guidance-<s>]`.
pub fn samples(guidance: f64) -> String {
    format!("samples{}", guidance_suffix(Some(guidance)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Weights;

    #[test]
    fn a_record_gives_every_field_and_only_the_quarters_that_had_samples() {
        let r = LogRecord {
            step: 5,
            loss: 0.5,
            loss_unweighted: 0.4,
            loss_q: [Some(1.0), None, Some(3.0), None],
            grad_norm: 2.0,
            lr: 1e-4,
            ema_decay: [(Weights::ema(0.99).to_string(), 0.9)]
                .into_iter()
                .collect(),
            loss_scale: 1.0,
            skipped_steps: 2,
            images_per_s: 50.0,
            data_wait_frac: 0.1,
            wall_time_s: 3.0,
        };
        let t = training(&r);
        let get = |k: &str| t.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(t.len(), 8 + 2 + 1);
        assert_eq!(get("train/loss"), Some(0.5));
        assert_eq!(get("train/loss_q2"), Some(3.0));
        assert_eq!(get("train/loss_q1"), None);
        assert_eq!(get("train/skipped_steps"), Some(2.0));
        assert_eq!(get("train/ema_decay/ema-0.99"), Some(0.9));
    }

    #[test]
    fn guided_metrics_and_grids_name_their_scale() {
        let mut row = MetricRow {
            run: "r".into(),
            step: 1,
            weights: Weights::Raw,
            guidance: None,
            sampler: String::new(),
            metric: "bpd".into(),
            value: 1.0,
            stderr: None,
            checkpoint: String::new(),
            eval_key: String::new(),
        };
        assert_eq!(evaluation(&row), "eval/bpd");
        row.metric = "fd".into();
        row.guidance = Some(1.0);
        assert_eq!(evaluation(&row), "eval/fd");
        row.guidance = Some(2.5);
        assert_eq!(evaluation(&row), "eval/fd/guidance-2.5");
        assert_eq!(samples(1.0), "samples");
        assert_eq!(samples(3.0), "samples/guidance-3");
    }
}
