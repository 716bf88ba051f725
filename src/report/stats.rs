//! The statistics a report states: mean, sample standard deviation, n and a
//! 95% confidence interval for the mean from Student's t (statrs gives the
//! quantiles and tail probabilities), and the smoothing of noisy training
//! curves (chapter §7.1). Two variants are compared in [`super::compare`].

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Summary of a sample of values (NaNs dropped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); NaN for n < 2.
    pub std: f64,
    /// Half-width of the 95% CI of the mean: t_{0.975, n−1} · std/√n; NaN for n < 2.
    pub ci95: f64,
}

/// t_{0.975, df}.
pub fn t975(df: f64) -> f64 {
    t_quantile(0.975, df)
}

/// The `p` quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .map(|t| t.inverse_cdf(p))
        .unwrap_or(f64::NAN)
}

/// The two-sided p-value of a t statistic: P(|T| ≥ |t|), T ~ t(df).
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .map(|d| (2.0 * d.sf(t.abs())).min(1.0))
        .unwrap_or(f64::NAN)
}

pub fn summarize(values: &[f64]) -> Summary {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return Summary {
            n,
            mean: f64::NAN,
            std: f64::NAN,
            ci95: f64::NAN,
        };
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Summary {
            n,
            mean,
            std: f64::NAN,
            ci95: f64::NAN,
        };
    }
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    Summary {
        n,
        mean,
        std,
        ci95: t975((n - 1) as f64) * std / (n as f64).sqrt(),
    }
}

/// A centred moving average over `window` points (shrinking at the ends);
/// window ≤ 1 returns the values.
pub fn smooth(values: &[f64], window: usize) -> Vec<f64> {
    if window <= 1 {
        return values.to_vec();
    }
    let h = window / 2;
    (0..values.len())
        .map(|i| {
            let lo = i.saturating_sub(h);
            let hi = (i + h + 1).min(values.len());
            let s: Vec<f64> = values[lo..hi]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if s.is_empty() {
                f64::NAN
            } else {
                s.iter().sum::<f64>() / s.len() as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        // Standard tables: t_{0.975} for 1, 2, 4, 30 degrees of freedom.
        for (df, t) in [(1.0, 12.706), (2.0, 4.303), (4.0, 2.776), (30.0, 2.042)] {
            assert!((t975(df) - t).abs() < 1e-3, "df {df}: {}", t975(df));
        }
    }

    #[test]
    fn summaries_match_a_hand_computation() {
        // 2, 4, 9: mean 5, variance ((9 + 1 + 16)/2) = 13, CI t_{.975,2}·√13/√3.
        let s = summarize(&[2.0, 4.0, 9.0, f64::NAN]);
        assert_eq!(s.n, 3);
        assert_eq!(s.mean, 5.0);
        assert!((s.std - 13f64.sqrt()).abs() < 1e-12);
        assert!((s.ci95 - 4.302653 * 13f64.sqrt() / 3f64.sqrt()).abs() < 1e-5);
        let one = summarize(&[7.0]);
        assert_eq!((one.n, one.mean), (1, 7.0));
        assert!(one.ci95.is_nan());
        assert_eq!(summarize(&[]).n, 0);
    }

    #[test]
    fn two_sided_p_values_match_the_tables() {
        // t = 2.776 with 4 df and 2.042 with 30 df are the 0.975 quantiles: p = 0.05.
        assert!((t_two_sided_p(2.776, 4.0) - 0.05).abs() < 1e-4);
        assert!((t_two_sided_p(-2.042, 30.0) - 0.05).abs() < 1e-3);
        // 1 df is the Cauchy distribution: P(|T| ≥ 1) = 1/2 exactly.
        assert!((t_two_sided_p(1.0, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(t_two_sided_p(0.0, 3.0), 1.0);
        // t_{0.8, 1} = tan(0.3π).
        assert!((t_quantile(0.8, 1.0) - (0.3 * std::f64::consts::PI).tan()).abs() < 1e-9);
    }

    #[test]
    fn smoothing_is_a_centred_moving_average() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(smooth(&v, 3), vec![1.5, 2.0, 3.0, 4.0, 4.5]);
        assert_eq!(smooth(&v, 1), v.to_vec());
    }
}
