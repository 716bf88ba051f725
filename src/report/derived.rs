//! Numbers the report derives for each evaluation point of a run from what
//! its job recorded, so that tables, charts and findings treat them like any
//! measured metric:
//!
//! * `eps_mse`: the ε-equivalent loss, the per-timestep table's ‖ε − ε̂‖²
//!   averaged over [0, T) (each bin weighted by its width, so it is the
//!   uniform-t mean). ε, x_0 and v models are compared in this unit
//!   (exercise 1); their training losses are in three different ones.
//! * for an EMA weight set, `ema_decay_eff` (the decay applied at that step)
//!   and `ema_init_fraction` (μ_eff^N, the weight the average still puts on
//!   the random initial weights), from the run's `ema.*` settings. An EMA
//!   above 1% is mostly the untrained model (exercise 2).

use super::collect::RunData;
use crate::run::metrics_table::MetricRow;
use crate::run::weights::Warmth;
use std::collections::BTreeMap;

pub const EPS_MSE: &str = "eps_mse";
pub const EMA_DECAY: &str = "ema_decay_eff";
pub const EMA_INITIAL: &str = "ema_init_fraction";

/// The derived rows of one run: at every step its own weights have a
/// per-timestep loss or a metric.
pub fn rows(r: &RunData) -> Vec<MetricRow> {
    // step → (checkpoint, Σ width·loss_eps, Σ width) over its own bins.
    let mut eps: BTreeMap<u64, (String, f64, f64)> = BTreeMap::new();
    for t in r.timestep.iter().filter(|t| t.weights == r.weights) {
        let e = eps
            .entry(t.step)
            .or_insert_with(|| (t.checkpoint.clone(), 0.0, 0.0));
        let width = (t.t_hi - t.t_lo).max(1) as f64;
        e.1 += width * t.loss_eps;
        e.2 += width;
    }
    let mut steps: BTreeMap<u64, String> = r
        .eval
        .iter()
        .map(|m| (m.step, m.checkpoint.clone()))
        .collect();
    steps.extend(eps.iter().map(|(s, (c, _, _))| (*s, c.clone())));
    let row = |step: u64, checkpoint: &str, metric: &str, value: f64| MetricRow {
        run: r.id.clone(),
        step,
        weights: r.weights,
        guidance: None,
        sampler: String::new(),
        metric: metric.to_string(),
        value,
        stderr: None,
        checkpoint: checkpoint.to_string(),
        eval_key: String::new(),
    };
    let mut out = vec![];
    for (step, (checkpoint, sum, width)) in &eps {
        let mean = sum / width;
        // Tables written before the ε-equivalent column have NaN there.
        if mean.is_finite() {
            out.push(row(*step, checkpoint, EPS_MSE, mean));
        }
    }
    if r.weights.decay().is_some() {
        for (step, checkpoint) in &steps {
            let w = Warmth::of(&r.config.ema, r.weights, *step);
            out.push(row(*step, checkpoint, EMA_DECAY, w.effective_decay));
            out.push(row(*step, checkpoint, EMA_INITIAL, w.initial_fraction));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::timestep_table::TimestepRow;
    use crate::run::Weights;

    fn run(weights: Weights) -> RunData {
        let mut config = crate::config::RunConfig::default();
        config.ema.decays = vec![0.99];
        RunData {
            id: "r".into(),
            job: "j".into(),
            weights,
            swept: vec![],
            config,
            state: crate::run::JobState::Completed,
            reason: String::new(),
            wall_time_s: 0.0,
            eval_wall_s: 0.0,
            device: String::new(),
            log: vec![],
            timestep: vec![],
            eval: vec![],
            stale: None,
        }
    }

    fn bin(step: u64, weights: Weights, lo: i64, hi: i64, eps: f64) -> TimestepRow {
        TimestepRow {
            step,
            weights,
            bin: lo as usize,
            t_lo: lo,
            t_hi: hi,
            loss_unweighted: 9.0,
            loss_weighted: 9.0,
            loss_eps: eps,
            checkpoint: format!("snapshots/step-{step}"),
            eval_key: String::new(),
        }
    }

    fn value(rows: &[MetricRow], step: u64, metric: &str) -> Option<f64> {
        rows.iter()
            .find(|m| m.step == step && m.metric == metric)
            .map(|m| m.value)
    }

    #[test]
    fn the_eps_equivalent_loss_is_the_width_weighted_mean_of_the_run_s_own_bins() {
        let mut r = run(Weights::Raw);
        // Bins of width 1 and 3: (1·2 + 3·6)/4 = 5; the EMA's rows are not its own.
        r.timestep = vec![
            bin(10, Weights::Raw, 0, 1, 2.0),
            bin(10, Weights::Raw, 1, 4, 6.0),
            bin(10, Weights::ema(0.99), 0, 4, 100.0),
            bin(20, Weights::Raw, 0, 4, f64::NAN),
        ];
        let rows = rows(&r);
        assert_eq!(value(&rows, 10, EPS_MSE), Some(5.0));
        assert_eq!(value(&rows, 20, EPS_MSE), None, "older tables: no value");
        assert!(
            value(&rows, 10, EMA_INITIAL).is_none(),
            "raw has no EMA rows"
        );
    }

    #[test]
    fn an_ema_s_initial_weight_is_mu_to_the_n_at_each_evaluated_step() {
        let mut r = run(Weights::ema(0.99));
        r.timestep = vec![
            bin(100, Weights::ema(0.99), 0, 4, 1.0),
            bin(500, Weights::ema(0.99), 0, 4, 1.0),
        ];
        let rows = rows(&r);
        for n in [100, 500] {
            let f = value(&rows, n, EMA_INITIAL).unwrap();
            assert!((f - 0.99f64.powi(n as i32)).abs() < 1e-12, "{n}: {f}");
            assert_eq!(value(&rows, n, EMA_DECAY), Some(0.99));
        }
    }
}
