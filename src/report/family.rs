//! The comparisons one report makes, tested together: the verdict's claims
//! and the findings' variant-against-baseline comparisons each add theirs
//! (one test per metric and pair of variants, however many ask for it), and
//! the Holm–Bonferroni correction then adjusts every p-value for the size of
//! the family. "Significant" in the report means an adjusted p below
//! [`ALPHA`], and the report says over how many comparisons.

use super::collect::RunData;
use super::compare::{compare, Comparison, Sample, TooFew};
use super::tables::final_metrics;

/// The level of every test of a report: 95% confidence.
pub const ALPHA: f64 = 0.05;

/// One test: `b` against `a` on `metric`.
#[derive(Debug, Clone)]
struct Test {
    metric: String,
    a: String,
    b: String,
    result: Result<Comparison, TooFew>,
    p_adj: Option<f64>,
}

/// A test of the family, as the one who added it asked for it (`b` against
/// `a`, perhaps the other way round from the test stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRef {
    index: usize,
    reversed: bool,
}

/// What a test found, oriented as asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub result: Result<Comparison, TooFew>,
    /// Holm-adjusted p; None when there was no test.
    pub p_adj: Option<f64>,
}

impl Outcome {
    /// Whether the adjusted p is below [`ALPHA`].
    pub fn significant(&self) -> bool {
        self.p_adj.is_some_and(|p| p < ALPHA)
    }
}

/// Every test of one report.
#[derive(Debug, Clone, Default)]
pub struct Family {
    tests: Vec<Test>,
}

impl Family {
    /// Test `b` against `a` on `metric` (each side's runs' final values), or
    /// reuse the test of the same pair either way round.
    pub fn add(&mut self, metric: &str, a: (&str, &[Sample]), b: (&str, &[Sample])) -> TestRef {
        let found = self.tests.iter().position(|t| {
            t.metric == metric && ((t.a == a.0 && t.b == b.0) || (t.a == b.0 && t.b == a.0))
        });
        if let Some(index) = found {
            return TestRef {
                index,
                reversed: self.tests[index].a != a.0,
            };
        }
        self.tests.push(Test {
            metric: metric.to_string(),
            a: a.0.to_string(),
            b: b.0.to_string(),
            result: compare(a.1, b.1),
            p_adj: None,
        });
        TestRef {
            index: self.tests.len() - 1,
            reversed: false,
        }
    }

    /// Adjust every p-value for the family (Holm–Bonferroni); call once all
    /// tests are in.
    pub fn adjust(&mut self) {
        let idx: Vec<usize> = (0..self.tests.len())
            .filter(|&i| self.tests[i].result.is_ok())
            .collect();
        let p: Vec<f64> = idx
            .iter()
            .map(|&i| self.tests[i].result.map_or(f64::NAN, |c| c.p))
            .collect();
        for (&i, q) in idx.iter().zip(holm(&p)) {
            self.tests[i].p_adj = Some(q);
        }
    }

    /// How many tests the family holds (comparisons with too few values
    /// are not tests).
    pub fn size(&self) -> usize {
        self.tests.iter().filter(|t| t.result.is_ok()).count()
    }

    /// The level at which a detectable effect is stated: ALPHA over the
    /// family's size (Bonferroni, the strictest step of Holm's procedure, so
    /// the effect stated is one the report would surely have called
    /// significant).
    pub fn alpha_each(&self) -> f64 {
        ALPHA / self.size().max(1) as f64
    }

    /// "Holm–Bonferroni over 12 comparisons".
    pub fn correction_text(&self) -> String {
        let m = self.size();
        format!(
            "Holm–Bonferroni over {m} comparison{}",
            if m == 1 { "" } else { "s" }
        )
    }

    pub fn get(&self, r: TestRef) -> Outcome {
        let t = &self.tests[r.index];
        let result = if r.reversed {
            t.result.map(|c| c.reversed()).map_err(|e| e.reversed())
        } else {
            t.result
        };
        Outcome {
            result,
            p_adj: t.p_adj,
        }
    }
}

/// Holm–Bonferroni adjusted p-values, in the order given: with the m
/// p-values sorted ascending, p₍ᵢ₎ becomes max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎).
/// A hypothesis is rejected at level α when its adjusted p is below α,
/// which is Holm's step-down procedure.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut out = vec![f64::NAN; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let q = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(q);
        out[i] = running;
    }
    out
}

/// The final values of `metric` of the completed runs among `runs`, with
/// their seeds.
pub fn samples(runs: &[&RunData], metric: &str) -> Vec<Sample> {
    runs.iter()
        .filter(|r| r.completed())
        .filter_map(|r| {
            final_metrics(r).get(metric).map(|(v, _)| Sample {
                seed: r.seed(),
                value: *v,
            })
        })
        .collect()
}

/// The two sides of a comparison of variants `a` and `b` on `metric`: their
/// final values, except that `steps_to_<m>` is measured at the pair's own
/// level ([`super::derived::pair_level`]) rather than the sweep's.
pub fn pair_samples(a: &[&RunData], b: &[&RunData], metric: &str) -> (Vec<Sample>, Vec<Sample>) {
    use super::derived::{curve, pair_level, steps_to};
    let Some((base, level)) = metric
        .strip_prefix("steps_to_")
        .and_then(|base| Some((base, pair_level(a, b, base)?)))
    else {
        return (samples(a, metric), samples(b, metric));
    };
    let at_level = |runs: &[&RunData]| -> Vec<Sample> {
        runs.iter()
            .filter(|r| r.completed())
            .filter_map(|r| {
                steps_to(&curve(r, base), level).map(|value| Sample {
                    seed: r.seed(),
                    value,
                })
            })
            .collect()
    };
    (at_level(a), at_level(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_adjusts_a_known_example() {
        // Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06,
        // 0.04; running maximum 0.02, 0.03, 0.06, 0.06; back in the given order.
        let q = holm(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn a_pair_is_tested_once_whichever_way_it_is_asked() {
        let s = |v: &[f64]| -> Vec<Sample> {
            v.iter()
                .enumerate()
                .map(|(i, &value)| Sample {
                    seed: Some(i as i64),
                    value,
                })
                .collect()
        };
        let (x, y, z) = (s(&[1.0, 2.0, 3.0]), s(&[2.0, 3.5, 4.0]), s(&[5.0]));
        let mut f = Family::default();
        let ab = f.add("fd", ("a", &x), ("b", &y));
        let ba = f.add("fd", ("b", &y), ("a", &x));
        let other = f.add("bpd", ("a", &x), ("b", &y));
        let few = f.add("fd", ("a", &x), ("c", &z));
        f.adjust();
        assert_eq!(f.size(), 2, "the single-seed side is no test");
        assert_eq!(f.correction_text(), "Holm–Bonferroni over 2 comparisons");
        let (o1, o2) = (f.get(ab), f.get(ba));
        let (c1, c2) = (o1.result.unwrap(), o2.result.unwrap());
        assert_eq!(c1.diff, -c2.diff);
        assert_eq!(o1.p_adj, o2.p_adj);
        // Two equal p-values: each doubled.
        assert_eq!(o1.p_adj, Some((2.0 * c1.p).min(1.0)));
        assert_eq!(f.get(other).p_adj, o1.p_adj);
        assert!(f.get(few).result.is_err() && f.get(few).p_adj.is_none());
        assert_eq!(f.alpha_each(), 0.025);
    }

    /// A run of variant `v`, seed `seed`, whose `fd_x` is `curve` at steps
    /// 100, 200, 300.
    fn run(v: &str, seed: i64, curve: [f64; 3]) -> RunData {
        let mut r = crate::report::testing::fake_run(&[("v", v.into())], seed, &[]);
        for (i, value) in curve.into_iter().enumerate() {
            let mut row = crate::report::testing::fake_run(&[], 0, &[("fd_x", value)])
                .eval
                .remove(0);
            row.step = 100 * (i as u64 + 1);
            r.eval.push(row);
        }
        r
    }

    #[test]
    fn steps_to_a_level_are_compared_at_the_pair_s_own_level() {
        let a = [run("a", 0, [10.0, 5.0, 2.0]), run("a", 1, [10.0, 5.0, 2.0])];
        let b = [run("b", 0, [10.0, 6.0, 3.0]), run("b", 1, [10.0, 6.0, 3.0])];
        let (a, b): (Vec<&RunData>, Vec<&RunData>) = (a.iter().collect(), b.iter().collect());
        // The pair's level is the higher mean final, 3 (not a third
        // variant's 8): a reaches it at 200 + (5 − 3)/(5 − 2)·100, b at 300.
        let (sa, sb) = pair_samples(&a, &b, "steps_to_fd_x");
        assert_eq!(sa.len(), 2);
        assert!((sa[0].value - (200.0 + 200.0 / 3.0)).abs() < 1e-9, "{sa:?}");
        assert_eq!(sb[0].value, 300.0);
        assert_eq!(sa[1].seed, Some(1));
        // Other metrics are the final values.
        let (fa, fb) = pair_samples(&a, &b, "fd_x");
        assert_eq!((fa[0].value, fb[0].value), (2.0, 3.0));
        // Two points are too few for a level.
        let mut short = run("c", 0, [10.0, 5.0, 1.0]);
        short.eval.pop();
        let (sc, _) = pair_samples(&[&short], &b, "steps_to_fd_x");
        assert!(sc.is_empty(), "{sc:?}");
    }
}
