//! Improved precision and recall (Kynkäänniemi et al. 2019): each set's
//! manifold is the union of balls around its points, each ball reaching the
//! point's k-th nearest neighbour in the same set (k = 3). Precision is the
//! share of generated points inside the real manifold (are samples
//! realistic?), recall the share of real points inside the generated manifold
//! (is the data covered?).
//!
//! Distances are Euclidean on the evaluator's features, computed in blocks so
//! memory stays O(block × N).

use tch::{Device, Kind, Tensor};

/// The k of the paper.
pub const K: i64 = 3;
const BLOCK: i64 = 1024;

/// Distance of each point of `x` [N, D] to its k-th nearest other point.
pub fn knn_radii(x: &Tensor, k: i64) -> Tensor {
    let n = x.size()[0];
    let k = k.clamp(1, (n - 1).max(1));
    let mut out = Vec::with_capacity((n / BLOCK + 1) as usize);
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let d = Tensor::cdist(&x.narrow(0, start, len), x, 2.0, None::<i64>);
        // The smallest is the point itself (0); the (k+1)-th is its k-th neighbour.
        let (v, _) = d.kthvalue((k + 1).min(n), 1, false);
        out.push(v);
        start += len;
    }
    Tensor::cat(&out, 0)
}

/// Share of `queries` [M, D] inside the union of balls (centres [N, D], radii [N]).
pub fn coverage(queries: &Tensor, centres: &Tensor, radii: &Tensor) -> f64 {
    let m = queries.size()[0];
    if m == 0 {
        return f64::NAN;
    }
    let mut inside = 0i64;
    let mut start = 0;
    while start < m {
        let len = BLOCK.min(m - start);
        let d = Tensor::cdist(&queries.narrow(0, start, len), centres, 2.0, None::<i64>);
        inside += d
            .le_tensor(&radii.unsqueeze(0))
            .any_dim(1, false)
            .sum(Kind::Int64)
            .int64_value(&[]);
        start += len;
    }
    inside as f64 / m as f64
}

/// (precision, recall) of generated features against real ones.
pub fn precision_recall(real: &Tensor, fake: &Tensor, k: i64) -> (f64, f64) {
    let (real, fake) = (
        real.to_kind(Kind::Float).to_device(Device::Cpu),
        fake.to_kind(Kind::Float).to_device(Device::Cpu),
    );
    let precision = coverage(&fake, &real, &knn_radii(&real, k));
    let recall = coverage(&real, &fake, &knn_radii(&fake, k));
    (precision, recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(n: i64, shift: f64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn([n, 8], (Kind::Float, Device::Cpu)) + shift
    }

    #[test]
    fn identical_sets_have_precision_and_recall_one() {
        let x = cloud(600, 0.0, 1);
        assert_eq!(precision_recall(&x, &x, K), (1.0, 1.0));
    }

    #[test]
    fn the_k_th_neighbour_radius_follows_its_definition() {
        // Points on a line at 0, 1, 3, 6: the 1st/2nd neighbours of 0 are at 1 and 3.
        let x = Tensor::from_slice(&[0.0f32, 1.0, 3.0, 6.0]).reshape([4, 1]);
        let r: Vec<f32> = Vec::try_from(knn_radii(&x, 2)).unwrap();
        assert_eq!(r, vec![3.0, 2.0, 3.0, 5.0]);
    }

    #[test]
    fn a_shifted_set_loses_precision_and_recall_and_a_narrow_one_loses_recall() {
        let real = cloud(1000, 0.0, 2);
        let same = cloud(1000, 0.0, 3);
        let (p0, r0) = precision_recall(&real, &same, K);
        assert!(p0 > 0.8 && r0 > 0.8, "{p0} {r0}");
        let far = cloud(1000, 1.5, 4);
        let (p1, r1) = precision_recall(&real, &far, K);
        assert!(p1 < p0 - 0.3 && r1 < r0 - 0.3, "{p1} {r1}");
        // Mode collapse: samples only near the centre are realistic but cover little.
        let narrow = cloud(1000, 0.0, 5) * 0.3;
        let (p2, r2) = precision_recall(&real, &narrow, K);
        assert!(p2 > 0.95 && r2 < 0.5, "{p2} {r2}");
    }
}
