//! Two variants compared on one metric's final values, b against a.
//!
//! Variants whose runs share seeds share their initialisation and data order
//! (and, for EMA decays of one training, the very same trained weights), so
//! their values are not independent: such runs are paired by seed, and the
//! test is Student's t on the per-seed differences b − a (n − 1 degrees of
//! freedom). Variants without a seed in common are compared with Welch's
//! unequal-variance t (Welch–Satterthwaite degrees of freedom). Either way
//! the result is the mean difference, its standard error, a two-sided
//! p-value and a 95% interval; the relative change is the mean difference
//! over |mean of a|, as the findings state it.

use super::stats::{summarize, t975, t_quantile, t_two_sided_p};

/// One run's final value of a metric, with its seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub seed: Option<i64>,
    pub value: f64,
}

/// How the two sides were compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// Per-seed differences (the seeds both sides have).
    Paired,
    /// Welch's t on two independent samples.
    Welch,
}

/// The power a detectable effect is stated at.
pub const POWER: f64 = 0.8;

/// b against a.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub design: Design,
    /// Values on each side (paired: both the number of pairs).
    pub n_a: usize,
    pub n_b: usize,
    /// The means of each side (paired: over the paired runs).
    pub mean_a: f64,
    pub mean_b: f64,
    /// mean(b) − mean(a) (paired: the mean of the differences).
    pub diff: f64,
    /// The standard error of `diff`.
    pub se: f64,
    pub df: f64,
    /// Two-sided p-value of no difference (before any correction).
    pub p: f64,
}

/// Too few values for a test: fewer than 2 on a side, or fewer than 2
/// seeds in common when the sides share seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TooFew {
    pub design: Design,
    pub n_a: usize,
    pub n_b: usize,
    pub mean_a: f64,
    pub mean_b: f64,
}

impl Comparison {
    /// Half-width of the 95% interval of `diff`: t_{0.975, df} · se.
    pub fn ci95(&self) -> f64 {
        t975(self.df) * self.se
    }

    /// `diff` / |mean(a)|: NaN when mean(a) is 0.
    pub fn relative(&self) -> f64 {
        self.diff / self.mean_a.abs()
    }

    /// The n a reader weighs the test by: the pairs, or the smaller side.
    pub fn n(&self) -> usize {
        self.n_a.min(self.n_b)
    }

    /// The smallest true difference a two-sided t test at level `alpha`
    /// would detect with probability [`POWER`], given this comparison's
    /// standard error and degrees of freedom:
    ///
    /// δ = (t_{1−α/2, df} + t_{power, df}) · SE
    ///
    /// (the usual normal-approximation formula with t quantiles in place of
    /// z, so small n is not flattered).
    pub fn detectable(&self, alpha: f64) -> f64 {
        (t_quantile(1.0 - alpha / 2.0, self.df) + t_quantile(POWER, self.df)) * self.se
    }

    /// a against b: the same test, the other way round.
    pub fn reversed(&self) -> Comparison {
        Comparison {
            n_a: self.n_b,
            n_b: self.n_a,
            mean_a: self.mean_b,
            mean_b: self.mean_a,
            diff: -self.diff,
            ..*self
        }
    }
}

impl TooFew {
    pub fn reversed(&self) -> TooFew {
        TooFew {
            n_a: self.n_b,
            n_b: self.n_a,
            mean_a: self.mean_b,
            mean_b: self.mean_a,
            ..*self
        }
    }
}

/// The seeds both sides have, when every run on both sides has a seed and
/// no side has one twice; None: compare them unpaired.
fn shared_seeds(a: &[Sample], b: &[Sample]) -> Option<Vec<i64>> {
    let seeds = |s: &[Sample]| -> Option<Vec<i64>> {
        let mut v: Vec<i64> = s.iter().map(|x| x.seed).collect::<Option<_>>()?;
        v.sort();
        let n = v.len();
        v.dedup();
        (v.len() == n).then_some(v)
    };
    let (sa, sb) = (seeds(a)?, seeds(b)?);
    let shared: Vec<i64> = sa.into_iter().filter(|s| sb.contains(s)).collect();
    (!shared.is_empty()).then_some(shared)
}

/// b against a: paired by seed when they share seeds, else Welch (see the
/// module notes). Non-finite values are dropped first.
pub fn compare(a: &[Sample], b: &[Sample]) -> Result<Comparison, TooFew> {
    let finite = |s: &[Sample]| -> Vec<Sample> {
        s.iter().copied().filter(|x| x.value.is_finite()).collect()
    };
    let (a, b) = (finite(a), finite(b));
    match shared_seeds(&a, &b) {
        Some(seeds) => paired(&a, &b, &seeds),
        None => welch(&a, &b),
    }
}

fn value_of(s: &[Sample], seed: i64) -> f64 {
    s.iter()
        .find(|x| x.seed == Some(seed))
        .map_or(f64::NAN, |x| x.value)
}

/// Student's t on the per-seed differences b − a over `seeds`.
fn paired(a: &[Sample], b: &[Sample], seeds: &[i64]) -> Result<Comparison, TooFew> {
    let va: Vec<f64> = seeds.iter().map(|&s| value_of(a, s)).collect();
    let vb: Vec<f64> = seeds.iter().map(|&s| value_of(b, s)).collect();
    let d: Vec<f64> = va.iter().zip(&vb).map(|(x, y)| y - x).collect();
    let n = d.len();
    let (ma, mb) = (summarize(&va).mean, summarize(&vb).mean);
    if n < 2 {
        return Err(TooFew {
            design: Design::Paired,
            n_a: n,
            n_b: n,
            mean_a: ma,
            mean_b: mb,
        });
    }
    let sd = summarize(&d);
    let se = sd.std / (n as f64).sqrt();
    let df = (n - 1) as f64;
    Ok(Comparison {
        design: Design::Paired,
        n_a: n,
        n_b: n,
        mean_a: ma,
        mean_b: mb,
        diff: sd.mean,
        se,
        df,
        p: p_value(sd.mean, se, df),
    })
}

/// Welch's t on two independent samples.
fn welch(a: &[Sample], b: &[Sample]) -> Result<Comparison, TooFew> {
    let va: Vec<f64> = a.iter().map(|x| x.value).collect();
    let vb: Vec<f64> = b.iter().map(|x| x.value).collect();
    let (sa, sb) = (summarize(&va), summarize(&vb));
    if sa.n < 2 || sb.n < 2 {
        return Err(TooFew {
            design: Design::Welch,
            n_a: sa.n,
            n_b: sb.n,
            mean_a: sa.mean,
            mean_b: sb.mean,
        });
    }
    let (wa, wb) = (sa.std.powi(2) / sa.n as f64, sb.std.powi(2) / sb.n as f64);
    let se = (wa + wb).sqrt();
    let df = if se == 0.0 {
        (sa.n + sb.n - 2) as f64
    } else {
        (wa + wb).powi(2) / (wa.powi(2) / (sa.n - 1) as f64 + wb.powi(2) / (sb.n - 1) as f64)
    };
    let diff = sb.mean - sa.mean;
    Ok(Comparison {
        design: Design::Welch,
        n_a: sa.n,
        n_b: sb.n,
        mean_a: sa.mean,
        mean_b: sb.mean,
        diff,
        se,
        df,
        p: p_value(diff, se, df),
    })
}

/// Two-sided p of `diff` given its standard error; without noise (se = 0)
/// any difference is certain and none is no evidence.
fn p_value(diff: f64, se: f64, df: f64) -> f64 {
    if se == 0.0 {
        if diff == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        t_two_sided_p(diff / se, df)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Student's (1908) sleep data, as R ships it (`sleep`): extra hours of
    /// sleep of 10 patients under drug 1 and drug 2.
    const DRUG1: [f64; 10] = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
    const DRUG2: [f64; 10] = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];

    fn seeded(v: &[f64]) -> Vec<Sample> {
        v.iter()
            .enumerate()
            .map(|(i, &value)| Sample {
                seed: Some(i as i64),
                value,
            })
            .collect()
    }

    fn unseeded(v: &[f64]) -> Vec<Sample> {
        v.iter()
            .map(|&value| Sample { seed: None, value })
            .collect()
    }

    #[test]
    fn paired_by_seed_matches_students_sleep_data() {
        // R: t.test(extra ~ group, data = sleep, paired = TRUE) gives
        // t = -4.0621, df = 9, p-value = 0.002833, 95% CI -2.4598858 -0.7001142
        // (group 1 − group 2); here b − a = drug 2 − drug 1.
        let c = compare(&seeded(&DRUG1), &seeded(&DRUG2)).unwrap();
        assert_eq!(c.design, Design::Paired);
        assert_eq!((c.n_a, c.df), (10, 9.0));
        assert!((c.diff - 1.58).abs() < 1e-12, "{c:?}");
        assert!((c.diff / c.se - 4.0621).abs() < 1e-4, "{c:?}");
        assert!((c.p - 0.002833).abs() < 1e-6, "{c:?}");
        assert!((c.diff - c.ci95() - 0.7001142).abs() < 1e-6, "{c:?}");
        assert!((c.diff + c.ci95() - 2.4598858).abs() < 1e-6, "{c:?}");
        let r = c.reversed();
        assert_eq!((r.diff, r.p, r.mean_a), (-c.diff, c.p, c.mean_b));
    }

    #[test]
    fn without_shared_seeds_it_is_welch_and_matches_r() {
        // R: t.test(extra ~ group, data = sleep) gives t = -1.8608,
        // df = 17.776, p-value = 0.07939, 95% CI -3.3654832 0.2054832.
        let c = compare(&unseeded(&DRUG1), &unseeded(&DRUG2)).unwrap();
        assert_eq!(c.design, Design::Welch);
        assert!((c.df - 17.776).abs() < 1e-3, "{c:?}");
        assert!((c.diff / c.se - 1.8608).abs() < 1e-4, "{c:?}");
        assert!((c.p - 0.07939).abs() < 1e-5, "{c:?}");
        assert!((c.diff + c.ci95() - 3.3654832).abs() < 1e-5, "{c:?}");
        // Disjoint seeds are independent runs: Welch too.
        let mut b = seeded(&DRUG2);
        for s in &mut b {
            s.seed = s.seed.map(|x| x + 100);
        }
        assert_eq!(compare(&seeded(&DRUG1), &b).unwrap().design, Design::Welch);
    }

    #[test]
    fn too_few_seeds_give_no_test() {
        // One seed a side.
        let e = compare(&seeded(&[1.0]), &seeded(&[2.0])).unwrap_err();
        assert_eq!((e.design, e.n_a, e.mean_b), (Design::Paired, 1, 2.0));
        let e = compare(&unseeded(&[1.0, 2.0]), &unseeded(&[3.0])).unwrap_err();
        assert_eq!((e.design, e.n_a, e.n_b), (Design::Welch, 2, 1));
        // Seeds 0, 1, 2 against 0, 1 (seed 2 never ran): paired on 0 and 1.
        let c = compare(&seeded(&[10.0, 12.0, 14.0]), &seeded(&[8.0, 9.0])).unwrap();
        assert_eq!((c.design, c.n()), (Design::Paired, 2));
        assert_eq!((c.diff, c.mean_a), (-2.5, 11.0));
        // Identical differences: no noise, so certain.
        let c = compare(&seeded(&[1.0, 2.0]), &seeded(&[2.0, 3.0])).unwrap();
        assert_eq!((c.se, c.p), (0.0, 0.0));
    }

    #[test]
    fn the_detectable_effect_is_the_sum_of_two_t_quantiles_times_the_se() {
        // 2 pairs: df 1, where t quantiles are tan(π(p − 1/2)).
        let c = compare(&seeded(&[10.0, 12.0]), &seeded(&[8.0, 9.0])).unwrap();
        assert!((c.se - 0.5).abs() < 1e-12);
        let pi = std::f64::consts::PI;
        let want = ((pi * (0.975 - 0.5)).tan() + (pi * 0.3).tan()) * 0.5;
        assert!(
            (c.detectable(0.05) - want).abs() < 1e-9,
            "{}",
            c.detectable(0.05)
        );
    }
}
