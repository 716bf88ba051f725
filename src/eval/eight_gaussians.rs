//! Exact class metrics for a class-conditional model of the eight-Gaussians
//! toy. Its density is known — class k is N(c_k, σ²I), c_k on a circle of
//! radius 2 at angle kπ/4, σ = 0.2 — so, unlike on images, nothing here
//! needs a learned evaluator or a nearest-neighbour estimate of a manifold:
//!
//! * `class_accuracy_exact`: the share of samples that the Bayes classifier
//!   (the nearest centre, for equal priors and equal isotropic covariances)
//!   assigns to the class they were drawn for. Real data score
//!   1 − P(error) ≈ 0.9999 (neighbouring centres are 3.8σ from their
//!   boundary).
//! * `precision_exact`: the share of samples within r₉₅ = σ√(2 ln 20) of the
//!   centre of their class, the radius holding 95% of the class's mass (the
//!   radius of a 2-D isotropic Gaussian is Rayleigh distributed). Real data
//!   score 0.95.
//! * `recall_exact`, the per-class coverage: for each class, the share of
//!   its true mass within the radius R_k that holds 95% of its samples,
//!   1 − exp(−R_k² / 2σ²), averaged over classes. Real data score 0.95;
//!   samples collapsed onto the centres (too little diversity) score less;
//!   samples spread wider than the class score more.
//!
//! Both precision and coverage read 0.95 for a perfect model; guidance that
//! trades diversity for fidelity moves them in opposite directions.

use crate::data::toy::{eight_gaussians_centre, EIGHT_GAUSSIANS_SD};

/// Number of classes of the eight Gaussians.
pub const CLASSES: i64 = 8;
/// The share of a class's mass (and of its samples) the radii hold.
pub const MASS: f64 = 0.95;

/// Radius around a centre that holds `mass` of a class: the Rayleigh
/// quantile σ√(−2 ln(1 − mass)).
pub fn radius_holding(mass: f64) -> f64 {
    EIGHT_GAUSSIANS_SD * (-2.0 * (1.0 - mass).ln()).sqrt()
}

/// Mass of a class within radius `r` of its centre: 1 − exp(−r²/2σ²).
pub fn mass_within(r: f64) -> f64 {
    1.0 - (-r * r / (2.0 * EIGHT_GAUSSIANS_SD * EIGHT_GAUSSIANS_SD)).exp()
}

fn distance(x: f64, y: f64, k: i64) -> f64 {
    let [cx, cy] = eight_gaussians_centre(k);
    (x - cx).hypot(y - cy)
}

/// The Bayes class of a point: its nearest centre.
pub fn bayes_class(x: f64, y: f64) -> i64 {
    (0..CLASSES)
        .min_by(|&a, &b| distance(x, y, a).total_cmp(&distance(x, y, b)))
        .unwrap_or(0)
}

/// The `q` quantile of `v` (nearest rank, so an actual sample's radius).
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// The exact metrics of samples `xs`, `ys` drawn for classes `labels`, with
/// the standard error where the metric is a share of independent samples.
/// Empty when there are no samples or a label outside 0…7.
pub fn metrics(xs: &[f64], ys: &[f64], labels: &[i64]) -> Vec<(String, f64, Option<f64>)> {
    let n = labels.len().min(xs.len()).min(ys.len());
    if n == 0 || labels.iter().any(|l| !(0..CLASSES).contains(l)) {
        return vec![];
    }
    let share_se = |p: f64| (p * (1.0 - p) / n as f64).sqrt();
    let r95 = radius_holding(MASS);
    let mut right = 0usize;
    let mut inside = 0usize;
    let mut radii: Vec<Vec<f64>> = vec![vec![]; CLASSES as usize];
    for i in 0..n {
        let (x, y, k) = (xs[i], ys[i], labels[i]);
        right += usize::from(bayes_class(x, y) == k);
        let r = distance(x, y, k);
        inside += usize::from(r <= r95);
        radii[k as usize].push(r);
    }
    let covered: Vec<f64> = radii
        .into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| mass_within(quantile(r, MASS)))
        .collect();
    let accuracy = right as f64 / n as f64;
    let precision = inside as f64 / n as f64;
    let recall = covered.iter().sum::<f64>() / covered.len() as f64;
    vec![
        (
            "class_accuracy_exact".into(),
            accuracy,
            Some(share_se(accuracy)),
        ),
        (
            "precision_exact".into(),
            precision,
            Some(share_se(precision)),
        ),
        ("recall_exact".into(), recall, None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::spec::ToyKind;
    use crate::data::toy::generate;

    fn value(m: &[(String, f64, Option<f64>)], name: &str) -> f64 {
        m.iter().find(|x| x.0 == name).unwrap().1
    }

    #[test]
    fn the_radius_holds_its_mass() {
        // Rayleigh: P(r ≤ σ√(2 ln 20)) = 1 − 1/20.
        assert!((radius_holding(0.95) - 0.2 * (2.0 * 20f64.ln()).sqrt()).abs() < 1e-12);
        assert!((mass_within(radius_holding(0.95)) - 0.95).abs() < 1e-12);
        assert!((mass_within(0.2) - (1.0 - (-0.5f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn real_data_score_the_population_values() {
        let s = generate(ToyKind::EightGaussians, 20_000, 3);
        let (labels, _) = s.labels.unwrap();
        let xs: Vec<f64> = s.points.iter().map(|p| p[0] as f64).collect();
        let ys: Vec<f64> = s.points.iter().map(|p| p[1] as f64).collect();
        let m = metrics(&xs, &ys, &labels);
        // Precision is a binomial share with p = 0.95: SE 0.0015 at n = 20,000.
        assert!((value(&m, "precision_exact") - 0.95).abs() < 0.006, "{m:?}");
        // The 95% radius of 2,500 samples per class is within ~2% of r₉₅.
        assert!((value(&m, "recall_exact") - 0.95).abs() < 0.01, "{m:?}");
        // The Bayes error is 2Φ(−3.83) ≈ 1.3e-4 per sample.
        assert!(value(&m, "class_accuracy_exact") > 0.998, "{m:?}");
    }

    #[test]
    fn collapsed_shifted_and_mislabelled_samples_score_their_closed_forms() {
        // Every sample on the ring of radius σ around its centre: all inside
        // r₉₅, coverage 1 − e^{−1/2}.
        let (mut xs, mut ys, mut labels) = (vec![], vec![], vec![]);
        for k in 0..CLASSES {
            let [cx, cy] = eight_gaussians_centre(k);
            for j in 0..10 {
                let a = j as f64;
                xs.push(cx + 0.2 * a.cos());
                ys.push(cy + 0.2 * a.sin());
                labels.push(k);
            }
        }
        let m = metrics(&xs, &ys, &labels);
        assert_eq!(value(&m, "precision_exact"), 1.0);
        assert_eq!(value(&m, "class_accuracy_exact"), 1.0);
        assert!((value(&m, "recall_exact") - (1.0 - (-0.5f64).exp())).abs() < 1e-9);
        // Drawn for the neighbouring class: never right, never inside.
        let wrong: Vec<i64> = labels.iter().map(|k| (k + 1) % CLASSES).collect();
        let m = metrics(&xs, &ys, &wrong);
        assert_eq!(value(&m, "class_accuracy_exact"), 0.0);
        assert_eq!(value(&m, "precision_exact"), 0.0);
        // Half the samples at their centre, half 1.0 radially outward (at
        // radius 3): exactly the half at the centre is inside r₉₅.
        let (mut xs2, mut ys2) = (vec![], vec![]);
        for (i, k) in labels.iter().enumerate() {
            let [cx, cy] = eight_gaussians_centre(*k);
            let r = if i % 2 == 0 { 0.0 } else { 1.0 };
            xs2.push(cx * (1.0 + r / 2.0));
            ys2.push(cy * (1.0 + r / 2.0));
        }
        let m = metrics(&xs2, &ys2, &labels);
        assert_eq!(value(&m, "precision_exact"), 0.5);
        // Radially outward points stay nearest their own centre.
        assert_eq!(value(&m, "class_accuracy_exact"), 1.0);
        // 95% of each class's radii: the outer ones, 1.0 → coverage ≈ 1.
        assert!((value(&m, "recall_exact") - mass_within(1.0)).abs() < 1e-12);
    }

    #[test]
    fn labels_out_of_range_give_no_metrics() {
        assert!(metrics(&[0.0], &[0.0], &[8]).is_empty());
        assert!(metrics(&[], &[], &[]).is_empty());
    }
}
