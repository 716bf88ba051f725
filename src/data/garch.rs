//! A synthetic daily-returns file for the finance example: k assets, each a
//! GARCH(1,1) process (Bollerslev 1986) with Student-t innovations,
//! correlated through a constant correlation of the innovations. It has the
//! stylized facts a return model must reproduce — fat tails (excess
//! kurtosis), volatility clustering (autocorrelated squared returns) and
//! cross-asset correlation — with known parameters, and needs no download.
//!
//! r_t = σ_t z_t,  σ²_t = ω + α r²_{t−1} + β σ²_{t−1},
//! z_t = √((ν − 2)/ν) · t_ν (unit variance), corr(z_i, z_j) = ρ.
//!
//! Columns: `day`, `r0`…`r{k−1}` (returns), and `vol20`, the trailing
//! 20-day realized volatility of the equal-weight portfolio known before the
//! day (a conditioning variable for scenario generation).

use rand::SeedableRng;
use rand_distr::{ChiSquared, Distribution, StandardNormal};
use std::io::Write;
use std::path::Path;

/// The process's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Garch {
    pub omega: f64,
    pub alpha: f64,
    pub beta: f64,
    /// Student-t degrees of freedom (> 2).
    pub nu: f64,
    /// Correlation of the innovations between any two assets.
    pub rho: f64,
}

impl Default for Garch {
    /// Typical daily equity values: unconditional volatility 1%/day
    /// (ω = 1e-4 · (1 − α − β)), persistence α + β = 0.98, ν = 5.
    fn default() -> Self {
        Garch {
            omega: 1e-4 * 0.02,
            alpha: 0.08,
            beta: 0.90,
            nu: 5.0,
            rho: 0.5,
        }
    }
}

impl Garch {
    /// The unconditional variance ω/(1 − α − β).
    pub fn variance(&self) -> f64 {
        self.omega / (1.0 - self.alpha - self.beta)
    }
}

/// `days` rows of `assets` returns (row-major), after a 500-day burn-in.
pub fn simulate(g: &Garch, assets: usize, days: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let chi = ChiSquared::new(g.nu).expect("nu > 0"); // ok: validated by callers (nu > 2)
    let unit = ((g.nu - 2.0) / g.nu).sqrt();
    let (a, b) = (g.rho.sqrt(), (1.0 - g.rho).sqrt());
    let mut var = vec![g.variance(); assets];
    let mut prev = vec![0.0; assets];
    let burn = 500;
    let mut out = Vec::with_capacity(days);
    for day in 0..(days + burn) {
        // Correlated normals: a common factor plus idiosyncratic parts; one
        // shared chi-square makes the t draws jointly heavy-tailed.
        let common: f64 = StandardNormal.sample(&mut rng);
        let w = (chi.sample(&mut rng) / g.nu).sqrt();
        let mut row = Vec::with_capacity(assets);
        for i in 0..assets {
            let own: f64 = StandardNormal.sample(&mut rng);
            let z = (a * common + b * own) / w * unit;
            var[i] = g.omega + g.alpha * prev[i] * prev[i] + g.beta * var[i];
            let r = var[i].sqrt() * z;
            prev[i] = r;
            row.push(r);
        }
        if day >= burn {
            out.push(row);
        }
    }
    out
}

/// Write the returns file as CSV (atomically).
pub fn write_csv(path: &Path, rows: &[Vec<f64>]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("csv.tmp");
    // A write that fails (a full disk) leaves no half-written file behind.
    write_rows(&tmp, rows)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// The CSV text of `rows` (with the day index and the portfolio's trailing
/// 20-day volatility) into `tmp`.
fn write_rows(tmp: &Path, rows: &[Vec<f64>]) -> std::io::Result<()> {
    let k = rows.first().map_or(0, |r| r.len());
    let mut f = std::io::BufWriter::new(std::fs::File::create(tmp)?);
    let names: Vec<String> = (0..k).map(|i| format!("r{i}")).collect();
    writeln!(f, "day,{},vol20", names.join(","))?;
    let port: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().sum::<f64>() / k.max(1) as f64)
        .collect();
    for (d, r) in rows.iter().enumerate() {
        let lo = d.saturating_sub(20);
        let window = &port[lo..d];
        let vol = if window.is_empty() {
            0.0
        } else {
            (window.iter().map(|x| x * x).sum::<f64>() / window.len() as f64).sqrt()
        };
        let vals: Vec<String> = r.iter().map(|v| format!("{v:.8}")).collect();
        writeln!(f, "{d},{},{vol:.8}", vals.join(","))?;
    }
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::lowdim::acf_of_squares;

    #[test]
    fn the_series_has_its_variance_fat_tails_clustering_and_correlation() {
        let g = Garch::default();
        let rows = simulate(&g, 2, 40_000, 1);
        let r0: Vec<f64> = rows.iter().map(|r| r[0]).collect();
        let r1: Vec<f64> = rows.iter().map(|r| r[1]).collect();
        let n = r0.len() as f64;
        let var = r0.iter().map(|x| x * x).sum::<f64>() / n;
        // The unconditional variance 1e-4, within sampling error of a
        // persistent, heavy-tailed process.
        assert!((var / g.variance() - 1.0).abs() < 0.15, "{var}");
        let kurt = r0.iter().map(|x| x.powi(4)).sum::<f64>() / n / (var * var);
        assert!(kurt > 4.0, "excess kurtosis: {kurt}");
        let acf = acf_of_squares(&r0, 5);
        assert!(
            acf.iter().all(|&a| a > 0.05),
            "volatility clustering: {acf:?}"
        );
        let cov = r0.iter().zip(&r1).map(|(a, b)| a * b).sum::<f64>() / n;
        let v1 = r1.iter().map(|x| x * x).sum::<f64>() / n;
        let corr = cov / (var * v1).sqrt();
        assert!((corr - 0.5).abs() < 0.08, "{corr}");
        assert_eq!(simulate(&g, 2, 10, 1), simulate(&g, 2, 10, 1));
    }

    #[test]
    fn the_csv_has_a_header_and_a_trailing_volatility() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        write_csv(&p, &[vec![0.01, -0.02], vec![0.03, 0.0], vec![0.0, 0.0]]).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "day,r0,r1,vol20");
        assert!(lines[1].ends_with(",0.00000000"), "no history on day 0");
        // Day 2: portfolio returns −0.005 and 0.015 → √((2.5e-5 + 2.25e-4)/2).
        let vol: f64 = lines[3].rsplit(',').next().unwrap().parse().unwrap();
        assert!((vol - (1.25e-4f64).sqrt()).abs() < 1e-8, "{vol}");
    }
}
