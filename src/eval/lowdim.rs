//! Two-sample statistics for 2-D and tabular data, where every number can be
//! read in the data's own units: generated rows against held-out real rows,
//! both [N, D] in original units.
//!
//! * sliced Wasserstein-1: the mean over random unit directions of the 1-D
//!   Wasserstein-1 distance of the projections (quantile functions compared on
//!   a common grid, so the sets may differ in size);
//! * MMD² with an RBF kernel k(a, b) = exp(−‖a − b‖² / 2h²), h the median
//!   pairwise distance of the pooled sets (the median heuristic), unbiased
//!   estimate;
//! * per-dimension two-sample Kolmogorov–Smirnov statistic sup |F₁ − F₂|;
//! * correlation error: the root mean square of the off-diagonal differences
//!   of the two correlation matrices;
//! * the error of the 1% and 5% quantiles, averaged over dimensions (the
//!   left tail is where returns hurt);
//! * for time-ordered data, the autocorrelation of squared (demeaned) values
//!   at lags 1…L (volatility clustering), compared lag by lag.

use crate::rng::mix_seed;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Rows as columns: `cols[d][i]`.
pub type Columns = Vec<Vec<f64>>;

/// [N, D] rows (row-major) → columns.
pub fn columns(values: &[f64], d: usize) -> Columns {
    let n = values.len() / d.max(1);
    (0..d)
        .map(|j| (0..n).map(|i| values[i * d + j]).collect())
        .collect()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// The q-quantile of sorted values (linear interpolation, numpy's default).
pub fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos.fract());
    let hi = (lo + 1).min(s.len() - 1);
    s[lo] + (s[hi] - s[lo]) * frac
}

/// 1-D Wasserstein-1 between two samples: ∫₀¹ |F⁻¹(u) − G⁻¹(u)| du on the
/// merged grid of both sets' steps (exact for empirical distributions).
pub fn wasserstein_1d(a: &[f64], b: &[f64]) -> f64 {
    let (a, b) = (sorted(a.to_vec()), sorted(b.to_vec()));
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return f64::NAN;
    }
    let (mut i, mut j, mut u, mut total) = (0usize, 0usize, 0.0f64, 0.0f64);
    while i < n && j < m {
        let next = (((i + 1) as f64) / n as f64).min(((j + 1) as f64) / m as f64);
        total += (next - u) * (a[i] - b[j]).abs();
        u = next;
        if ((i + 1) as f64) / n as f64 <= u + 1e-15 {
            i += 1;
        }
        if ((j + 1) as f64) / m as f64 <= u + 1e-15 {
            j += 1;
        }
    }
    total
}

/// Sliced Wasserstein-1 over `projections` seeded random directions.
pub fn sliced_wasserstein(x: &Columns, y: &Columns, projections: usize, seed: u64) -> f64 {
    let d = x.len();
    if d == 1 {
        return wasserstein_1d(&x[0], &y[0]);
    }
    let mut rng = rand_pcg::Pcg64::seed_from_u64(mix_seed(seed, 0, 0x511CE));
    let project = |c: &Columns, dir: &[f64]| -> Vec<f64> {
        (0..c[0].len())
            .map(|i| (0..d).map(|k| c[k][i] * dir[k]).sum())
            .collect()
    };
    let mut total = 0.0;
    for _ in 0..projections {
        let mut dir: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        dir.iter_mut().for_each(|v| *v /= norm);
        total += wasserstein_1d(&project(x, &dir), &project(y, &dir));
    }
    total / projections.max(1) as f64
}

fn sq_dist(c: &Columns, i: usize, e: &Columns, j: usize) -> f64 {
    c.iter().zip(e).map(|(a, b)| (a[i] - b[j]).powi(2)).sum()
}

/// The median pairwise distance of the pooled sets (at most 1,000 points of each).
pub fn median_bandwidth(x: &Columns, y: &Columns) -> f64 {
    let take = |c: &Columns| -> Columns {
        c.iter()
            .map(|v| v.iter().take(1000).copied().collect())
            .collect()
    };
    let (x, y) = (take(x), take(y));
    let pooled: Columns = x
        .iter()
        .zip(&y)
        .map(|(a, b)| a.iter().chain(b).copied().collect())
        .collect();
    let n = pooled[0].len();
    let mut d = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in (i + 1)..n {
            d.push(sq_dist(&pooled, i, &pooled, j).sqrt());
        }
    }
    quantile_sorted(&sorted(d), 0.5).max(1e-12)
}

/// Unbiased MMD² with an RBF kernel of bandwidth `h` (None: the median heuristic).
/// Uses at most 2,000 points of each set.
pub fn mmd2_rbf(x: &Columns, y: &Columns, h: Option<f64>) -> f64 {
    let h = h.unwrap_or_else(|| median_bandwidth(x, y));
    let take = |c: &Columns| -> Columns {
        c.iter()
            .map(|v| v.iter().take(2000).copied().collect())
            .collect()
    };
    let (x, y) = (take(x), take(y));
    let (n, m) = (x[0].len(), y[0].len());
    let k =
        |a: &Columns, i: usize, b: &Columns, j: usize| (-sq_dist(a, i, b, j) / (2.0 * h * h)).exp();
    let within = |c: &Columns, n: usize| -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            for j in (i + 1)..n {
                s += k(c, i, c, j);
            }
        }
        2.0 * s / (n * (n - 1)) as f64
    };
    let mut cross = 0.0;
    for i in 0..n {
        for j in 0..m {
            cross += k(&x, i, &y, j);
        }
    }
    within(&x, n) + within(&y, m) - 2.0 * cross / (n * m) as f64
}

/// The two-sample Kolmogorov–Smirnov statistic sup_x |F_a(x) − F_b(x)|.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (a, b) = (sorted(a.to_vec()), sorted(b.to_vec()));
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut best) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let v = a[i].min(b[j]);
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        best = best.max((i as f64 / n - j as f64 / m).abs());
    }
    best
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The correlation matrix of columns (D × D, row-major).
pub fn correlation(c: &Columns) -> Vec<f64> {
    let d = c.len();
    let centred: Columns = c
        .iter()
        .map(|v| {
            let m = mean(v);
            v.iter().map(|x| x - m).collect()
        })
        .collect();
    let norms: Vec<f64> = centred
        .iter()
        .map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300))
        .collect();
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            let dot: f64 = centred[i].iter().zip(&centred[j]).map(|(a, b)| a * b).sum();
            out[i * d + j] = dot / (norms[i] * norms[j]);
        }
    }
    out
}

/// RMS of the off-diagonal differences of the correlation matrices (0 for D = 1).
pub fn correlation_error(x: &Columns, y: &Columns) -> f64 {
    let d = x.len();
    if d < 2 {
        return 0.0;
    }
    let (cx, cy) = (correlation(x), correlation(y));
    let mut s = 0.0;
    for i in 0..d {
        for j in 0..d {
            if i != j {
                s += (cx[i * d + j] - cy[i * d + j]).powi(2);
            }
        }
    }
    (s / (d * (d - 1)) as f64).sqrt()
}

/// Mean over dimensions of |Q_x(q) − Q_y(q)|.
pub fn quantile_error(x: &Columns, y: &Columns, q: f64) -> f64 {
    mean(
        &x.iter()
            .zip(y)
            .map(|(a, b)| {
                (quantile_sorted(&sorted(a.clone()), q) - quantile_sorted(&sorted(b.clone()), q))
                    .abs()
            })
            .collect::<Vec<_>>(),
    )
}

/// Autocorrelation of the squared demeaned series at lags 1…`lags`.
pub fn acf_of_squares(v: &[f64], lags: usize) -> Vec<f64> {
    let m = mean(v);
    let sq: Vec<f64> = v.iter().map(|x| (x - m).powi(2)).collect();
    let ms = mean(&sq);
    let c: Vec<f64> = sq.iter().map(|s| s - ms).collect();
    let var: f64 = c.iter().map(|x| x * x).sum();
    (1..=lags)
        .map(|k| {
            if k >= c.len() || var <= 0.0 {
                return f64::NAN;
            }
            c.iter().zip(&c[k..]).map(|(a, b)| a * b).sum::<f64>() / var
        })
        .collect()
}

/// Mean over dimensions and lags 1…`lags` of |ACF_x − ACF_y| of squared values.
pub fn acf_of_squares_error(x: &Columns, y: &Columns, lags: usize) -> f64 {
    mean(
        &x.iter()
            .zip(y)
            .flat_map(|(a, b)| {
                acf_of_squares(a, lags)
                    .into_iter()
                    .zip(acf_of_squares(b, lags))
                    .map(|(p, q)| (p - q).abs())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>(),
    )
}

/// Lags compared by the ACF metric.
pub const ACF_LAGS: usize = 10;

/// Every statistic of this module for generated `y` against real `x`, as
/// (metric, value). `time_ordered` adds the ACF of squared values.
pub fn all_metrics(
    x: &Columns,
    y: &Columns,
    names: &[String],
    time_ordered: bool,
    seed: u64,
) -> Vec<(String, f64)> {
    let mut out = vec![
        (
            "sliced_wasserstein".to_string(),
            sliced_wasserstein(x, y, 128, seed),
        ),
        ("mmd2_rbf".to_string(), mmd2_rbf(x, y, None)),
    ];
    let ks: Vec<f64> = x.iter().zip(y).map(|(a, b)| ks_statistic(a, b)).collect();
    for (name, k) in names.iter().zip(&ks) {
        out.push((format!("ks_{name}"), *k));
    }
    out.push(("ks_max".into(), ks.iter().copied().fold(0.0, f64::max)));
    out.push(("corr_error".into(), correlation_error(x, y)));
    out.push(("q01_error".into(), quantile_error(x, y, 0.01)));
    out.push(("q05_error".into(), quantile_error(x, y, 0.05)));
    if time_ordered {
        out.push(("acf_sq_error".into(), acf_of_squares_error(x, y, ACF_LAGS)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(n: usize, mu: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                mu + sd * z
            })
            .collect()
    }

    /// Φ by the Abramowitz–Stegun 26.2.17 polynomial (|error| < 7.5e-8).
    fn phi(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.2316419 * x.abs());
        let poly = t
            * (0.319381530
                + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
        let tail = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
        if x >= 0.0 {
            1.0 - tail
        } else {
            tail
        }
    }

    #[test]
    fn wasserstein_of_small_sets_follows_its_definition() {
        assert!((wasserstein_1d(&[0.0, 1.0], &[0.0, 1.0])).abs() < 1e-15);
        assert!((wasserstein_1d(&[0.0, 1.0], &[2.0, 3.0]) - 2.0).abs() < 1e-12);
        // Sizes 2 and 3: quantile steps at 1/3, 1/2, 2/3.
        // a: 0 on [0, ½), 1 on [½, 1); b: 0, 0.5, 2 on thirds.
        let w = wasserstein_1d(&[0.0, 1.0], &[0.0, 0.5, 2.0]);
        let expect =
            1.0 / 3.0 * 0.0 + (0.5 - 1.0 / 3.0) * 0.5 + (2.0 / 3.0 - 0.5) * 0.5 + 1.0 / 3.0 * 1.0;
        assert!((w - expect).abs() < 1e-12, "{w} vs {expect}");
    }

    #[test]
    fn sliced_wasserstein_of_a_shift_is_its_mean_projection() {
        // A shift δ along one axis in 2-D: E|cos φ| δ = 2δ/π over uniform directions.
        let n = 4000;
        let x = vec![normal(n, 0.0, 1.0, 1), normal(n, 0.0, 1.0, 2)];
        let y = vec![normal(n, 1.0, 1.0, 3), normal(n, 0.0, 1.0, 4)];
        let sw = sliced_wasserstein(&x, &y, 512, 0);
        let expect = 2.0 / std::f64::consts::PI;
        assert!((sw - expect).abs() < 0.05, "{sw} vs {expect}");
        assert!(sliced_wasserstein(&x, &x, 64, 0) < 1e-12);
    }

    #[test]
    fn ks_of_two_normals_approaches_its_population_value() {
        let a = normal(20000, 0.0, 1.0, 5);
        let b = normal(20000, 0.5, 1.0, 6);
        // sup |Φ(x) − Φ(x − ½)| is at x = ¼: 2Φ(¼) − 1.
        let expect = 2.0 * phi(0.25) - 1.0;
        let ks = ks_statistic(&a, &b);
        assert!((ks - expect).abs() < 0.02, "{ks} vs {expect}");
        assert_eq!(ks_statistic(&a, &a), 0.0);
        assert_eq!(ks_statistic(&[0.0, 1.0], &[2.0, 3.0]), 1.0);
        assert!((ks_statistic(&[1.0, 2.0, 3.0, 4.0], &[3.5, 10.0]) - 0.75).abs() < 1e-15);
    }

    #[test]
    fn mmd_of_two_normals_matches_the_rbf_closed_form() {
        // 1-D, x ~ N(0, 1), y ~ N(δ, 1), bandwidth h: E k(x, x') = h/√(h² + 2),
        // E k(x, y) = h/√(h² + 2) · exp(−δ²/(2(h² + 2))).
        let (h, delta) = (1.0f64, 1.0f64);
        let x = vec![normal(2000, 0.0, 1.0, 7)];
        let y = vec![normal(2000, delta, 1.0, 8)];
        let c = h / (h * h + 2.0).sqrt();
        let expect = 2.0 * c * (1.0 - (-delta * delta / (2.0 * (h * h + 2.0))).exp());
        let m = mmd2_rbf(&x, &y, Some(h));
        assert!((m - expect).abs() < 0.02, "{m} vs {expect}");
        let same = mmd2_rbf(&x, &vec![normal(2000, 0.0, 1.0, 9)], None);
        assert!(same.abs() < 0.005, "{same}");
        assert!(mmd2_rbf(&x, &y, None) > 0.1);
    }

    #[test]
    fn correlation_quantile_and_acf_errors_match_their_closed_forms() {
        let n = 20000;
        let (z1, z2) = (normal(n, 0.0, 1.0, 10), normal(n, 0.0, 1.0, 11));
        let rho = 0.6f64;
        let corr: Vec<f64> = z1
            .iter()
            .zip(&z2)
            .map(|(a, b)| rho * a + (1.0 - rho * rho).sqrt() * b)
            .collect();
        let x = vec![z1.clone(), z2.clone()];
        let y = vec![z1.clone(), corr];
        assert!((correlation_error(&x, &y) - rho).abs() < 0.02);
        // N(0, 1) vs N(0, 2²): the 5% quantiles are −1.645 and −3.290.
        let wide = vec![normal(n, 0.0, 2.0, 12)];
        let q = quantile_error(&vec![z1.clone()], &wide, 0.05);
        assert!((q - 1.6449).abs() < 0.06, "{q}");
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.25), 2.0);
        // 1, √3, −1, −√3, … (mean 0): squares alternate 1, 3, so the lag-1
        // ACF is −1 and the lag-2 one +1 (times (n − k)/n).
        let r3 = 3f64.sqrt();
        let alt: Vec<f64> = (0..1000).map(|i| [1.0, r3, -1.0, -r3][i % 4]).collect();
        let acf = acf_of_squares(&alt, 2);
        assert!(
            (acf[0] + 1.0).abs() < 0.01 && (acf[1] - 1.0).abs() < 0.01,
            "{acf:?}"
        );
        // iid noise has no volatility clustering; a regime-switching series does.
        let iid = acf_of_squares(&z1, 5);
        assert!(
            iid.iter().all(|a| a.abs() < 4.0 / (n as f64).sqrt()),
            "{iid:?}"
        );
        let regimes: Vec<f64> = z1
            .iter()
            .enumerate()
            .map(|(i, z)| if (i / 200) % 2 == 0 { *z } else { 4.0 * z })
            .collect();
        // Squares: within-regime variance (2 + 2·16²)/2 = 257, between-regime
        // variance ((16 − 1)/2)² = 56.25, so the lag-1 ACF is about
        // 56.25/313 = 0.18 (blocks of 200 make the lag barely matter).
        let a = acf_of_squares(&regimes, 1)[0];
        assert!((a - 0.18).abs() < 0.05, "{a}");
        let e = acf_of_squares_error(&vec![regimes], &vec![z1], ACF_LAGS);
        assert!((e - 0.175).abs() < 0.05, "{e}");
    }
}
