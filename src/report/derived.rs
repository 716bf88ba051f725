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
//! * at the last step, `profile_low`, `profile_mid` and `profile_high`: the
//!   per-timestep loss (unweighted) averaged over the bins whose centre lies
//!   in [0, T/4), [T/4, 3T/4) and [3T/4, T): the chapter's hump (§7.2) is
//!   `profile_mid` above both ends (exercise 4).
//! * `best_<d>`: the lowest distance to the data (a Fréchet distance, or on
//!   vectors the sliced Wasserstein distance and MMD²) over the evaluated
//!   guidance scales at the last step, and `guidance_of_best_<d>` the scale
//!   that gave it: each run's best point on its quality front (exercise 5).
//!
//! And, over the runs of a sweep ([`convergence`]), `steps_to_<m>` for the
//! Fréchet distance and the ε-equivalent loss: the training steps a run
//! needs to reach the level every variant reaches on average by its end
//! (exercise 1). A claim on `steps_to_<m>` compares its two variants at
//! their own level instead ([`pair_level`]).

use super::collect::RunData;
use crate::run::metrics_table::MetricRow;
use crate::run::weights::Warmth;
use std::collections::BTreeMap;

pub const EPS_MSE: &str = "eps_mse";
pub const EMA_DECAY: &str = "ema_decay_eff";
pub const EMA_INITIAL: &str = "ema_init_fraction";
pub const PROFILE: [&str; 3] = ["profile_low", "profile_mid", "profile_high"];

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
    let row = |step: u64, checkpoint: &str, metric: &str, value: f64| {
        derived_row(r, step, checkpoint, metric, value)
    };
    let mut out = vec![];
    for (step, (checkpoint, sum, width)) in &eps {
        let mean = sum / width;
        // Tables written before the ε-equivalent column have NaN there.
        if mean.is_finite() {
            out.push(row(*step, checkpoint, EPS_MSE, mean));
        }
    }
    if let Some(step) = eps.keys().next_back() {
        out.extend(
            profile_rows(r, *step)
                .into_iter()
                .map(|(m, v)| row(*step, "", m, v)),
        );
    }
    out.extend(
        best_over_guidance(r)
            .into_iter()
            .map(|(step, m, v)| row(step, "", &m, v)),
    );
    if r.weights.decay().is_some() {
        for (step, checkpoint) in &steps {
            let w = Warmth::of(&r.config.ema, r.weights, *step);
            out.push(row(*step, checkpoint, EMA_DECAY, w.effective_decay));
            out.push(row(*step, checkpoint, EMA_INITIAL, w.initial_fraction));
        }
    }
    out
}

/// The per-timestep loss of the run's own weights at `step`, averaged over
/// the low, middle and high parts of [0, T) (by bin centre).
fn profile_rows(r: &RunData, step: u64) -> Vec<(&'static str, f64)> {
    let t = r.config.diffusion.timesteps as f64;
    let mut acc = [(0.0, 0usize); 3];
    for b in r
        .timestep
        .iter()
        .filter(|b| b.weights == r.weights && b.step == step)
    {
        let centre = (b.t_lo + b.t_hi) as f64 / 2.0;
        let part = if centre < t / 4.0 {
            0
        } else if centre < 3.0 * t / 4.0 {
            1
        } else {
            2
        };
        acc[part].0 += b.loss_unweighted;
        acc[part].1 += 1;
    }
    if acc.iter().any(|a| a.1 == 0) {
        return vec![];
    }
    PROFILE
        .iter()
        .zip(acc)
        .map(|(m, (sum, n))| (*m, sum / n as f64))
        .collect()
}

/// The lowest distance to the data over guidance scales at the last step
/// with one, and the scale: (step, metric, value) rows.
fn best_over_guidance(r: &RunData) -> Vec<(u64, String, f64)> {
    let fd =
        |m: &str| m.starts_with("fd_") || ["fid", "sliced_wasserstein", "mmd2_rbf"].contains(&m);
    let Some(step) = r
        .eval
        .iter()
        .filter(|m| fd(&m.metric) && m.guidance.is_some())
        .map(|m| m.step)
        .max()
    else {
        return vec![];
    };
    let mut best: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for m in r.eval.iter().filter(|m| m.step == step && fd(&m.metric)) {
        let (Some(g), true) = (m.guidance, m.value.is_finite()) else {
            continue;
        };
        let e = best.entry(&m.metric).or_insert((m.value, g));
        if m.value < e.0 {
            *e = (m.value, g);
        }
    }
    best.into_iter()
        .flat_map(|(m, (v, g))| {
            [
                (step, format!("best_{m}"), v),
                (step, format!("guidance_of_best_{m}"), g),
            ]
        })
        .collect()
}

/// The steps at which a curve of (step, value), ascending in step, first
/// reaches `level` or below, interpolated linearly between the evaluation
/// points around it; the last step when it never does (the run is counted
/// as just reaching it at its end, which understates the gap).
pub fn steps_to(curve: &[(u64, f64)], level: f64) -> Option<f64> {
    let (first, last) = (curve.first()?, curve.last()?);
    if first.1 <= level {
        return Some(first.0 as f64);
    }
    for w in curve.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        if v1 <= level {
            let f = if v0 > v1 {
                (v0 - level) / (v0 - v1)
            } else {
                1.0
            };
            return Some(s0 as f64 + f * (s1 - s0) as f64);
        }
    }
    Some(last.0 as f64)
}

/// Add `steps_to_<m>` to every completed run, for the Fréchet distance and
/// the ε-equivalent loss, when the sweep has several variants and at least
/// three evaluation points: the level is the highest of the variants' mean
/// final values (every variant reaches it on average by its end).
pub fn convergence(runs: &mut [RunData]) {
    use super::collect::variant_label;
    let metrics: Vec<String> = {
        let mut m: Vec<String> = runs
            .iter()
            .flat_map(|r| r.eval.iter().map(|e| e.metric.clone()))
            .filter(|m| m.starts_with("fd_") || m == "fid" || m == EPS_MSE)
            .collect();
        m.sort();
        m.dedup();
        m
    };
    for metric in metrics {
        // Each completed run's curve, once.
        let curves: Vec<(usize, Vec<(u64, f64)>)> = (0..runs.len())
            .filter(|&i| runs[i].completed())
            .map(|i| (i, curve(&runs[i], &metric)))
            .collect();
        let mut finals: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (i, c) in &curves {
            if let Some(&(_, v)) = c.last() {
                finals
                    .entry(variant_label(&runs[*i].variant()))
                    .or_default()
                    .push(v);
            }
        }
        let points = curves.iter().map(|(_, c)| c.len()).min().unwrap_or(0);
        if finals.len() < 2 || points < 3 {
            continue;
        }
        let level = finals
            .values()
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        for (i, c) in curves {
            if let (Some(steps), Some(&(last, _))) = (steps_to(&c, level), c.last()) {
                let row = derived_row(&runs[i], last, "", &format!("steps_to_{metric}"), steps);
                runs[i].eval.push(row);
            }
        }
    }
}

/// A run's curve of `metric` (step, value), ascending in step, at the run's
/// own guidance scale.
pub fn curve(r: &RunData, metric: &str) -> Vec<(u64, f64)> {
    let g = r.config.eval.guidance_scale;
    let mut c: Vec<(u64, f64)> = r
        .eval
        .iter()
        .filter(|e| e.metric == metric && e.guidance.is_none_or(|x| x == g))
        .map(|e| (e.step, e.value))
        .collect();
    c.sort_by_key(|p| p.0);
    c
}

/// The level two variants are compared at on `steps_to_<metric>`: the
/// higher of their mean final values, which both reach on average by their
/// end. A third variant far behind cannot make the comparison degenerate
/// (both sides reaching its level at their first point). None unless
/// every completed run of both has at least three evaluation points.
pub fn pair_level(a: &[&RunData], b: &[&RunData], metric: &str) -> Option<f64> {
    let mean_final = |runs: &[&RunData]| -> Option<f64> {
        let finals: Vec<f64> = runs
            .iter()
            .filter(|r| r.completed())
            .map(|r| {
                let c = curve(r, metric);
                (c.len() >= 3).then(|| c.last().map(|p| p.1)).flatten()
            })
            .collect::<Option<Vec<f64>>>()?;
        (!finals.is_empty()).then(|| finals.iter().sum::<f64>() / finals.len() as f64)
    };
    Some(mean_final(a)?.max(mean_final(b)?))
}

/// A row the report derives for run `r` (no guidance, sampler or key of
/// its own: it is computed from rows that have them).
fn derived_row(r: &RunData, step: u64, checkpoint: &str, metric: &str, value: f64) -> MetricRow {
    MetricRow {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::timestep_table::TimestepRow;
    use crate::run::Weights;

    fn run(weights: Weights) -> RunData {
        let mut r = crate::report::testing::bare_run("j", weights);
        r.config.ema.decays = vec![0.99];
        r
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

    fn metric(step: u64, metric: &str, g: Option<f64>, v: f64) -> MetricRow {
        MetricRow {
            run: "r".into(),
            step,
            weights: Weights::Raw,
            guidance: g,
            sampler: String::new(),
            metric: metric.into(),
            value: v,
            stderr: None,
            checkpoint: String::new(),
            eval_key: String::new(),
        }
    }

    #[test]
    fn the_profile_parts_average_the_bins_by_their_centre() {
        let mut r = run(Weights::Raw);
        r.config.diffusion.timesteps = 400;
        // Bins of 100: centres 50 (low), 150 and 250 (middle), 350 (high).
        r.timestep = (0..4)
            .map(|b| {
                let mut row = bin(9, Weights::Raw, b * 100, (b + 1) * 100, 0.0);
                row.loss_unweighted = [4.0, 2.0, 6.0, 1.0][b as usize];
                row
            })
            .collect();
        let rows = rows(&r);
        assert_eq!(value(&rows, 9, "profile_low"), Some(4.0));
        assert_eq!(value(&rows, 9, "profile_mid"), Some(4.0));
        assert_eq!(value(&rows, 9, "profile_high"), Some(1.0));
    }

    #[test]
    fn the_best_fd_is_the_lowest_over_guidance_at_the_last_step() {
        let mut r = run(Weights::Raw);
        r.eval = vec![
            metric(5, "fd_x", Some(1.0), 1.0),
            metric(10, "fd_x", Some(1.0), 30.0),
            metric(10, "fd_x", Some(3.0), 20.0),
            metric(10, "fd_x", Some(7.5), 25.0),
        ];
        let rows = rows(&r);
        assert_eq!(value(&rows, 10, "best_fd_x"), Some(20.0));
        assert_eq!(value(&rows, 10, "guidance_of_best_fd_x"), Some(3.0));
        assert_eq!(value(&rows, 5, "best_fd_x"), None, "the last step only");
    }

    #[test]
    fn steps_to_a_level_interpolate_between_points_and_stop_at_the_end() {
        let c = [(100, 50.0), (200, 30.0), (400, 10.0)];
        // 20 lies halfway between 30 (step 200) and 10 (step 400).
        assert_eq!(steps_to(&c, 20.0), Some(300.0));
        assert_eq!(steps_to(&c, 60.0), Some(100.0));
        assert_eq!(steps_to(&c, 5.0), Some(400.0), "never reached: the end");
        assert_eq!(steps_to(&[], 5.0), None);
    }

    #[test]
    fn convergence_uses_the_level_every_variant_reaches_on_average() {
        let with = |pred: &str, seed: i64, curve: [f64; 3]| {
            let mut r = run(Weights::Raw);
            r.swept = vec![
                ("diffusion.prediction".into(), serde_json::json!(pred)),
                ("train.seed".into(), serde_json::json!(seed)),
            ];
            r.eval = [100, 200, 300]
                .iter()
                .zip(curve)
                .map(|(&s, v)| metric(s, "fd_x", Some(1.0), v))
                .collect();
            r
        };
        // Final means: a 10, b 20, so the level is 20.
        let mut runs = vec![
            with("a", 0, [40.0, 20.0, 10.0]),
            with("b", 0, [40.0, 30.0, 20.0]),
        ];
        convergence(&mut runs);
        let steps = |r: &RunData| {
            r.eval
                .iter()
                .find(|m| m.metric == "steps_to_fd_x")
                .map(|m| m.value)
        };
        assert_eq!(steps(&runs[0]), Some(200.0));
        assert_eq!(steps(&runs[1]), Some(300.0));
        // Two evaluation points are too few to say.
        let mut two = vec![
            with("a", 0, [40.0, 20.0, 10.0]),
            with("b", 0, [40.0, 30.0, 20.0]),
        ];
        for r in &mut two {
            r.eval.pop();
        }
        convergence(&mut two);
        assert_eq!(steps(&two[0]), None);
    }
}
