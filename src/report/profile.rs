//! Exercise 4's reading of the per-timestep loss (chapter §7.2): how the
//! profile changes between evaluation points, and where it peaks.
//!
//! From initialisation every bin starts near the same loss and falls, so
//! "which range improved most since step 0" says little. The notes compare
//! consecutive evaluation points after initialisation instead, and say
//! where the last profile peaks: inside [0, T) (the hump the chapter
//! describes near T/2) or at one end (then whether it is monotone).

use super::collect::RunData;
use super::format::share;
use crate::run::Weights;
use std::collections::BTreeMap;

/// The per-timestep loss of one weight set, mean over runs: bins in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub weights: Weights,
    /// Evaluation steps, ascending.
    pub steps: Vec<u64>,
    /// [t_lo, t_hi) of each bin.
    pub bins: Vec<(i64, i64)>,
    /// (step, bin) → mean unweighted loss over the runs that have it.
    pub loss: BTreeMap<(u64, usize), f64>,
    pub runs: usize,
}

impl Profile {
    /// The profile of `weights` over `runs` (None when none has one).
    pub fn of(runs: &[&RunData], weights: Weights) -> Option<Profile> {
        let mut acc: BTreeMap<(u64, usize), Vec<f64>> = BTreeMap::new();
        let mut bins: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
        for r in runs {
            for t in r.timestep.iter().filter(|t| t.weights == weights) {
                acc.entry((t.step, t.bin))
                    .or_default()
                    .push(t.loss_unweighted);
                bins.insert(t.bin, (t.t_lo, t.t_hi));
            }
        }
        if acc.is_empty() {
            return None;
        }
        let mut steps: Vec<u64> = acc.keys().map(|k| k.0).collect();
        steps.dedup();
        Some(Profile {
            weights,
            steps,
            bins: bins.into_values().collect(),
            loss: acc
                .into_iter()
                .map(|(k, v)| (k, v.iter().sum::<f64>() / v.len() as f64))
                .collect(),
            runs: runs.len(),
        })
    }

    /// The curve at `step`, one value per bin (None where a bin is missing).
    pub fn at(&self, step: u64) -> Option<Vec<f64>> {
        (0..self.bins.len())
            .map(|b| self.loss.get(&(step, b)).copied())
            .collect()
    }

    fn span(&self, b: usize) -> String {
        let (lo, hi) = self.bins[b];
        format!("t ∈ [{lo}, {hi})")
    }

    /// For each pair of consecutive evaluation points after initialisation
    /// (step 0 is left out: every bin falls from it), the bins whose loss
    /// fell most and least.
    pub fn changes(&self) -> Vec<Change> {
        let trained: Vec<u64> = self.steps.iter().copied().filter(|&s| s > 0).collect();
        trained
            .windows(2)
            .filter_map(|w| {
                let (a, z) = (self.at(w[0])?, self.at(w[1])?);
                let falls: Vec<(usize, f64)> = a
                    .iter()
                    .zip(&z)
                    .enumerate()
                    .filter(|(_, (a, _))| **a > 0.0)
                    .map(|(b, (a, z))| (b, 1.0 - z / a))
                    .collect();
                let most = falls.iter().copied().max_by(|x, y| x.1.total_cmp(&y.1))?;
                let least = falls.iter().copied().min_by(|x, y| x.1.total_cmp(&y.1))?;
                Some(Change {
                    from: w[0],
                    to: w[1],
                    most,
                    least,
                })
            })
            .collect()
    }

    /// Where the curve at `step` peaks, and its shape.
    pub fn shape(&self, step: u64) -> Option<Shape> {
        let c = self.at(step)?;
        let peak = c
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(b, _)| b)?;
        let falling = c.windows(2).all(|w| w[1] <= w[0]);
        let rising = c.windows(2).all(|w| w[1] >= w[0]);
        Some(if c.len() < 3 {
            Shape::TooFewBins
        } else if falling {
            Shape::Falling
        } else if rising {
            Shape::Rising
        } else if peak == 0 || peak == c.len() - 1 {
            Shape::PeakAtEnd(peak)
        } else {
            Shape::Hump(peak)
        })
    }
}

/// How the profile changed between two evaluation points: (bin, fall) of
/// the bins that fell most and least, fall = 1 − L_to / L_from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub from: u64,
    pub to: u64,
    pub most: (usize, f64),
    pub least: (usize, f64),
}

/// The shape of one profile over its bins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Highest inside [0, T), at this bin.
    Hump(usize),
    /// Highest at the first or last bin, not monotone.
    PeakAtEnd(usize),
    /// Monotone, highest at t = 0.
    Falling,
    /// Monotone, highest at t = T.
    Rising,
    TooFewBins,
}

/// The notes of each variant: with `shapes`, its own weights' changes
/// between evaluation points and the shape at the last; always, for EMA
/// weights, how they compare with the raw ones at the last step.
pub fn notes(variants: &[(String, Vec<&RunData>)], shapes: bool) -> Vec<String> {
    let mut out = vec![];
    for (label, runs) in variants {
        let done: Vec<&RunData> = runs.iter().copied().filter(|r| r.completed()).collect();
        let Some(w) = done.first().map(|r| r.weights) else {
            continue;
        };
        let Some(p) = Profile::of(&done, w) else {
            continue;
        };
        for Change {
            from: a,
            to: z,
            most,
            least,
        } in p.changes().into_iter().filter(|_| shapes)
        {
            out.push(format!(
                "`{label}` ({w}, {} run(s)): from step {a} to {z} the per-timestep loss fell most at {} ({}) and least at {} ({}).",
                p.runs,
                p.span(most.0),
                share(most.1),
                p.span(least.0),
                share(least.1)
            ));
        }
        let Some(&last) = p.steps.last() else {
            continue;
        };
        if shapes {
            out.extend(shape_note(label, &p, last));
        }
        if w != Weights::Raw {
            out.extend(ema_note(label, &p, &done, last));
        }
    }
    out
}

fn shape_note(label: &str, p: &Profile, step: u64) -> Option<String> {
    let what = match p.shape(step)? {
        Shape::Hump(b) => format!(
            "peaks inside [0, T), at {}: the hump the chapter describes (§7.2, near T/2)",
            p.span(b)
        ),
        Shape::PeakAtEnd(b) => format!(
            "peaks at its end bin {}, without falling steadily away from it: not the chapter's hump near T/2",
            p.span(b)
        ),
        Shape::Falling => "falls monotonically from t = 0 to T: no hump near T/2 (the chapter's §7.2 pattern is not seen)".into(),
        Shape::Rising => "rises monotonically from t = 0 to T: no hump near T/2 (the chapter's §7.2 pattern is not seen)".into(),
        Shape::TooFewBins => return None,
    };
    Some(format!(
        "`{label}` ({}): at step {step} the per-timestep loss {what}.",
        p.weights
    ))
}

fn ema_note(label: &str, p: &Profile, runs: &[&RunData], step: u64) -> Option<String> {
    let raw = Profile::of(runs, Weights::Raw)?;
    let (mine, theirs) = (p.at(step)?, raw.at(step)?);
    let ratios: Vec<f64> = mine
        .iter()
        .zip(&theirs)
        .filter(|(_, r)| **r > 0.0)
        .map(|(m, r)| m / r)
        .collect();
    if ratios.is_empty() {
        return None;
    }
    let m = ratios.iter().sum::<f64>() / ratios.len() as f64;
    Some(format!(
        "`{label}`: at step {step} the {} weights' per-timestep loss is on average {} of the raw weights' ({}).",
        p.weights,
        share(m),
        if m < 1.0 {
            "lower: the average helps"
        } else {
            "higher: the average still lags the raw weights"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::timestep_table::TimestepRow;

    fn run(curves: &[(u64, &[f64])]) -> RunData {
        let timestep = curves
            .iter()
            .flat_map(|(step, c)| {
                c.iter().enumerate().map(move |(b, &l)| TimestepRow {
                    step: *step,
                    weights: Weights::Raw,
                    bin: b,
                    t_lo: b as i64 * 100,
                    t_hi: (b as i64 + 1) * 100,
                    loss_unweighted: l,
                    loss_weighted: l,
                    loss_eps: l,
                    checkpoint: String::new(),
                    eval_key: String::new(),
                })
            })
            .collect();
        let mut r = crate::report::testing::bare_run("j", Weights::Raw);
        r.timestep = timestep;
        r
    }

    #[test]
    fn changes_skip_initialisation_and_compare_consecutive_points() {
        let r = run(&[
            (0, &[1.0, 1.0, 1.0]),
            (10, &[0.5, 0.4, 0.2]),
            (40, &[0.4, 0.2, 0.19]),
        ]);
        let p = Profile::of(&[&r], Weights::Raw).unwrap();
        let c = p.changes();
        assert_eq!(c.len(), 1, "only 10 → 40: 0 → 10 is from initialisation");
        let Change {
            from: a,
            to: z,
            most,
            least,
        } = c[0];
        assert_eq!((a, z), (10, 40));
        // Falls: 1 − 0.4/0.5 = 0.2, 1 − 0.2/0.4 = 0.5, 1 − 0.19/0.2 = 0.05.
        assert_eq!(most.0, 1);
        assert!((most.1 - 0.5).abs() < 1e-12);
        assert_eq!(least.0, 2);
        assert!((least.1 - 0.05).abs() < 1e-12);
        // Without shapes (another exercise), raw weights have no notes.
        assert!(notes(&[("raw".to_string(), vec![&r])], false).is_empty());
        let notes = notes(&[("raw".to_string(), vec![&r])], true);
        assert!(
            notes[0].contains("from step 10 to 40") && notes[0].contains("t ∈ [100, 200) (50.0%)"),
            "{notes:?}"
        );
    }

    #[test]
    fn the_shape_says_hump_monotone_or_peak_at_an_end() {
        let shape = |c: &[f64]| {
            let r = run(&[(5, c)]);
            Profile::of(&[&r], Weights::Raw).unwrap().shape(5).unwrap()
        };
        assert_eq!(shape(&[0.1, 0.3, 0.2, 0.1]), Shape::Hump(1));
        assert_eq!(shape(&[0.9, 0.3, 0.2, 0.1]), Shape::Falling);
        assert_eq!(shape(&[0.1, 0.2, 0.2, 0.5]), Shape::Rising);
        assert_eq!(shape(&[0.9, 0.3, 0.4, 0.1]), Shape::PeakAtEnd(0));
        assert_eq!(shape(&[0.9, 0.3]), Shape::TooFewBins);
        let r = run(&[(5, &[0.9, 0.3, 0.2, 0.1])]);
        let n = notes(&[("raw".to_string(), vec![&r])], true);
        assert!(n.iter().any(|l| l.contains("falls monotonically")), "{n:?}");
    }

    #[test]
    fn a_profile_is_the_mean_over_runs() {
        let (a, b) = (run(&[(5, &[1.0, 2.0])]), run(&[(5, &[3.0, 4.0])]));
        let p = Profile::of(&[&a, &b], Weights::Raw).unwrap();
        assert_eq!(p.at(5), Some(vec![2.0, 3.0]));
        assert_eq!(p.runs, 2);
    }
}
