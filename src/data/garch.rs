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
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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
    returns(g, assets, days, seed).collect()
}

/// The same rows as [`simulate`], one day at a time, so a long series is
/// written without holding it in memory.
pub fn returns(g: &Garch, assets: usize, days: usize, seed: u64) -> Returns {
    Returns {
        g: *g,
        rng: rand_pcg::Pcg64::seed_from_u64(seed),
        chi: ChiSquared::new(g.nu).expect("nu > 0"), // ok: validated by callers (nu > 2)
        unit: ((g.nu - 2.0) / g.nu).sqrt(),
        mix: (g.rho.sqrt(), (1.0 - g.rho).sqrt()),
        var: vec![g.variance(); assets],
        prev: vec![0.0; assets],
        burn: 500,
        days,
    }
}

/// The iterator behind [`returns`].
pub struct Returns {
    g: Garch,
    rng: rand_pcg::Pcg64,
    chi: ChiSquared<f64>,
    unit: f64,
    /// Weights of the common factor and of an asset's own normal.
    mix: (f64, f64),
    var: Vec<f64>,
    prev: Vec<f64>,
    /// Days still to simulate and throw away.
    burn: usize,
    /// Days still to yield.
    days: usize,
}

impl Returns {
    /// One day's returns, advancing every asset's variance.
    fn step(&mut self) -> Vec<f64> {
        let (g, (a, b)) = (&self.g, self.mix);
        // Correlated normals: a common factor plus idiosyncratic parts; one
        // shared chi-square makes the t draws jointly heavy-tailed.
        let common: f64 = StandardNormal.sample(&mut self.rng);
        let w = (self.chi.sample(&mut self.rng) / g.nu).sqrt();
        let mut row = Vec::with_capacity(self.var.len());
        for i in 0..self.var.len() {
            let own: f64 = StandardNormal.sample(&mut self.rng);
            let z = (a * common + b * own) / w * self.unit;
            self.var[i] = g.omega + g.alpha * self.prev[i] * self.prev[i] + g.beta * self.var[i];
            let r = self.var[i].sqrt() * z;
            self.prev[i] = r;
            row.push(r);
        }
        row
    }
}

impl Iterator for Returns {
    type Item = Vec<f64>;
    fn next(&mut self) -> Option<Vec<f64>> {
        while self.burn > 0 {
            self.burn -= 1;
            self.step();
        }
        if self.days == 0 {
            return None;
        }
        self.days -= 1;
        Some(self.step())
    }
}

/// Rows written between two looks at the stop flag (a few milliseconds' work).
const ROWS_PER_CHECK: usize = 4096;

/// Write the returns file as CSV (atomically): into `<path>.tmp`, renamed
/// into place at the end. `stop` (set by a Ctrl-C handler) is checked every
/// few thousand rows; once set, the write ends with an error of kind
/// [`std::io::ErrorKind::Interrupted`]. A write that stops or fails (a full
/// disk) removes its temporary file, and leaves an existing `path` as it was.
pub fn write_csv<R: AsRef<[f64]>>(
    path: &Path,
    rows: impl IntoIterator<Item = R>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("csv.tmp");
    write_rows(&tmp, rows, stop)
        .and_then(|()| check(stop))
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// An `Interrupted` error once `stop` is set.
fn check(stop: &AtomicBool) -> std::io::Result<()> {
    if stop.load(Ordering::SeqCst) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "stopped by a signal",
        ));
    }
    Ok(())
}

/// The CSV text of `rows` (with the day index and the portfolio's trailing
/// 20-day volatility) into `tmp`.
fn write_rows<R: AsRef<[f64]>>(
    tmp: &Path,
    rows: impl IntoIterator<Item = R>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut rows = rows.into_iter().peekable();
    let k = rows.peek().map_or(0, |r| r.as_ref().len());
    let mut f = std::io::BufWriter::new(std::fs::File::create(tmp)?);
    let names: Vec<String> = (0..k).map(|i| format!("r{i}")).collect();
    writeln!(f, "day,{},vol20", names.join(","))?;
    // The equal-weight portfolio's last 20 returns, oldest first.
    let mut window: VecDeque<f64> = VecDeque::with_capacity(20);
    for (d, r) in rows.enumerate() {
        if d % ROWS_PER_CHECK == 0 {
            check(stop)?;
        }
        let r = r.as_ref();
        let vol = if window.is_empty() {
            0.0
        } else {
            (window.iter().map(|x| x * x).sum::<f64>() / window.len() as f64).sqrt()
        };
        write!(f, "{d}")?;
        for v in r {
            write!(f, ",{v:.8}")?;
        }
        writeln!(f, ",{vol:.8}")?;
        if window.len() == 20 {
            window.pop_front();
        }
        window.push_back(r.iter().sum::<f64>() / k.max(1) as f64);
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
        write_csv(
            &p,
            [vec![0.01, -0.02], vec![0.03, 0.0], vec![0.0, 0.0]],
            &AtomicBool::new(false),
        )
        .unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "day,r0,r1,vol20");
        assert!(lines[1].ends_with(",0.00000000"), "no history on day 0");
        // Day 2: portfolio returns −0.005 and 0.015 → √((2.5e-5 + 2.25e-4)/2).
        let vol: f64 = lines[3].rsplit(',').next().unwrap().parse().unwrap();
        assert!((vol - (1.25e-4f64).sqrt()).abs() < 1e-8, "{vol}");
    }

    #[test]
    fn a_stopped_write_removes_its_temporary_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(&p, "old").unwrap();
        let stop = AtomicBool::new(false);
        let g = Garch::default();
        // The flag is set while the rows are being written.
        let rows = returns(&g, 2, 3 * ROWS_PER_CHECK, 0)
            .enumerate()
            .map(|(i, r)| {
                if i == ROWS_PER_CHECK + 1 {
                    stop.store(true, Ordering::SeqCst);
                }
                r
            });
        let e = write_csv(&p, rows, &stop).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert!(!dir.path().join("r.csv.tmp").exists());
    }
}
