//! The Fréchet distance between two Gaussians fitted to feature sets
//! (Heusel et al. 2017): ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^{1/2}.
//!
//! With the Inception-v3 pool features it is FID; with our own evaluator's
//! features it is `fd_<evaluator>`, a different number that must never be
//! called FID.
//!
//! tr (Σ₁ Σ₂)^{1/2} is computed as Σ √λᵢ(A Σ₂ A) with A = Σ₁^{1/2}: A Σ₂ A is
//! similar to Σ₁ Σ₂ and symmetric, so a symmetric eigensolver (f64) suffices
//! and no complex square root is needed. Eigenvalues below 0 (rounding) are
//! taken as 0.

use tch::{Kind, Tensor};

/// The Gaussian statistics of a feature set.
#[derive(Debug)]
pub struct FeatureStats {
    /// [D] f64.
    pub mean: Tensor,
    /// [D, D] f64, the unbiased covariance.
    pub cov: Tensor,
    pub count: i64,
}

impl FeatureStats {
    /// Fit to features [N, D] (N ≥ 2).
    pub fn fit(features: &Tensor) -> FeatureStats {
        let f = features.to_kind(Kind::Double).to_device(tch::Device::Cpu);
        let n = f.size()[0];
        let mean = f.mean_dim(0, false, Kind::Double);
        let c = &f - &mean;
        let cov = c.transpose(0, 1).matmul(&c) / ((n - 1).max(1) as f64);
        FeatureStats {
            mean,
            cov,
            count: n,
        }
    }

    /// As named tensors, to cache.
    pub fn to_named(&self) -> Vec<(String, Tensor)> {
        vec![
            ("mean".into(), self.mean.shallow_clone()),
            ("cov".into(), self.cov.shallow_clone()),
            ("count".into(), Tensor::from_slice(&[self.count])),
        ]
    }

    /// From [`FeatureStats::to_named`]'s tensors.
    pub fn from_named(named: &[(String, Tensor)]) -> Option<FeatureStats> {
        let get = |k: &str| named.iter().find(|(n, _)| n == k).map(|(_, t)| t);
        Some(FeatureStats {
            mean: get("mean")?.to_kind(Kind::Double),
            cov: get("cov")?.to_kind(Kind::Double),
            count: get("count")?.f_int64_value(&[0]).ok()?,
        })
    }
}

/// Σ^{1/2} of a symmetric positive semi-definite matrix.
fn sqrtm_psd(m: &Tensor) -> Result<Tensor, tch::TchError> {
    let (vals, vecs) = m.f_linalg_eigh("L")?;
    let root = vals.clamp_min(0.0).sqrt();
    Ok((&vecs * root.unsqueeze(0)).matmul(&vecs.transpose(0, 1)))
}

/// The Fréchet distance between two fitted Gaussians; NaN when it has no
/// value (non-finite features, e.g. samples of a diverged model, or
/// statistics of different widths), instead of a panic in the eigensolver.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> f64 {
    let finite = |s: &FeatureStats| {
        s.cov.isfinite().all().int64_value(&[]) == 1
            && s.mean.isfinite().all().int64_value(&[]) == 1
    };
    if a.mean.size() != b.mean.size() || !finite(a) || !finite(b) {
        return f64::NAN;
    }
    let value = || -> Result<f64, tch::TchError> {
        let diff = (&a.mean - &b.mean)
            .square()
            .sum(Kind::Double)
            .double_value(&[]);
        let root_a = sqrtm_psd(&a.cov)?;
        let inner = root_a.matmul(&b.cov).matmul(&root_a);
        let inner = (&inner + inner.transpose(0, 1)) * 0.5;
        let tr_sqrt = inner
            .f_linalg_eigvalsh("L")?
            .clamp_min(0.0)
            .sqrt()
            .sum(Kind::Double)
            .double_value(&[]);
        let tr = |s: &Tensor| s.trace().double_value(&[]);
        Ok((diff + tr(&a.cov) + tr(&b.cov) - 2.0 * tr_sqrt).max(0.0))
    };
    value().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn gaussian(n: i64, mean: &[f64], scales: &[f64], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        let d = mean.len() as i64;
        Tensor::randn([n, d], (Kind::Double, Device::Cpu)) * Tensor::from_slice(scales)
            + Tensor::from_slice(mean)
    }

    #[test]
    fn identical_sets_are_at_distance_zero() {
        let x = gaussian(500, &[0.0, 1.0, 2.0], &[1.0, 0.5, 2.0], 1);
        let s = FeatureStats::fit(&x);
        assert!(frechet_distance(&s, &s).abs() < 1e-9);
    }

    #[test]
    fn known_gaussians_give_the_closed_form() {
        // Two fixed Gaussians (not fitted): N(μ₁, Σ₁), N(μ₂, Σ₂) with Σ₁ = diag(a),
        // Σ₂ = R diag(b) Rᵀ for a rotation R. The closed form for commuting
        // diagonal covariances is Σ (√aᵢ − √bᵢ)²; for the rotated one, the
        // 2×2 formula tr Σ₁ + tr Σ₂ − 2 √(tr(Σ₁Σ₂) + 2 √det(Σ₁Σ₂)).
        let stats = |mean: &[f64], cov: Tensor| FeatureStats {
            mean: Tensor::from_slice(mean),
            cov,
            count: 0,
        };
        let a = stats(
            &[1.0, -2.0, 0.5],
            Tensor::from_slice(&[4.0f64, 1.0, 0.25]).diag(0),
        );
        let b = stats(
            &[0.0, 0.0, 0.5],
            Tensor::from_slice(&[1.0f64, 9.0, 0.25]).diag(0),
        );
        let expect = 1.0 + 4.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2);
        let fd = frechet_distance(&a, &b);
        assert!((fd - expect).abs() < 1e-9, "{fd} vs {expect}");

        let th = 0.7f64;
        let r = Tensor::from_slice(&[th.cos(), -th.sin(), th.sin(), th.cos()]).reshape([2, 2]);
        let s1 = Tensor::from_slice(&[2.0f64, 0.5]).diag(0);
        let s2 = r
            .matmul(&Tensor::from_slice(&[3.0f64, 0.2]).diag(0))
            .matmul(&r.transpose(0, 1));
        let p = s1.matmul(&s2);
        let (tr_p, det_p) = (p.trace().double_value(&[]), p.det().double_value(&[]));
        let expect = 2.5 + 3.2 - 2.0 * (tr_p + 2.0 * det_p.sqrt()).sqrt();
        let fd = frechet_distance(&stats(&[0.0, 0.0], s1), &stats(&[0.0, 0.0], s2));
        assert!((fd - expect).abs() < 1e-9, "{fd} vs {expect}");
    }

    #[test]
    fn fitted_sets_from_shifted_gaussians_approach_the_closed_form() {
        let x = gaussian(20000, &[0.0, 0.0], &[1.0, 1.0], 2);
        let y = gaussian(20000, &[3.0, 0.0], &[2.0, 1.0], 3);
        let fd = frechet_distance(&FeatureStats::fit(&x), &FeatureStats::fit(&y));
        // 3² + (1 − 2)² = 10; sampling error at n = 20000 is a few percent.
        assert!((fd - 10.0).abs() < 0.3, "{fd}");
        // Features of a diverged model: NaN, not a panic.
        let nan = FeatureStats::fit(&x.full_like(f64::NAN));
        assert!(frechet_distance(&nan, &FeatureStats::fit(&x)).is_nan());
        let named = FeatureStats::fit(&x).to_named();
        let back = FeatureStats::from_named(&named).unwrap();
        assert_eq!(back.count, 20000);
        assert!(frechet_distance(&back, &FeatureStats::fit(&x)).abs() < 1e-9);
        // A damaged cache entry reads as missing (it is then recomputed).
        let mut bad = named;
        bad.retain(|(n, _)| n != "count");
        bad.push((
            "count".into(),
            Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
        ));
        assert!(FeatureStats::from_named(&bad).is_none());
    }
}
