//! Generated 2-D distributions (`data.source = "toy"`). They train in seconds
//! and their densities are known, so metrics on them can be exact. Seeded:
//! the same `data.seed` always gives the same points.

use super::spec::ToyKind;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64;

/// Samples of a toy distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct ToySamples {
    pub points: Vec<[f32; 2]>,
    /// Labels and the number of classes, where the distribution has classes.
    pub labels: Option<(Vec<i64>, i64)>,
    /// A continuous condition per point and its width, where the distribution has one:
    /// eight-gaussians: the centre's (cos a, sin a); swiss-roll: the position along
    /// the roll, scaled to [−1, 1].
    pub condition: Option<(Vec<f32>, i64)>,
}

/// Radius of the circle the eight Gaussians' centres sit on.
pub const EIGHT_GAUSSIANS_RADIUS: f64 = 2.0;
/// Standard deviation of each of the eight Gaussians (isotropic).
pub const EIGHT_GAUSSIANS_SD: f64 = 0.2;

/// Centre of eight-Gaussians class `k` (0…7): angle k·π/4 on the circle.
pub fn eight_gaussians_centre(k: i64) -> [f64; 2] {
    let a = k as f64 * std::f64::consts::PI / 4.0;
    [
        EIGHT_GAUSSIANS_RADIUS * a.cos(),
        EIGHT_GAUSSIANS_RADIUS * a.sin(),
    ]
}

/// Width of the continuous condition of a toy distribution, if it has one.
pub fn condition_dim(kind: ToyKind) -> Option<i64> {
    match kind {
        ToyKind::EightGaussians => Some(2),
        ToyKind::SwissRoll => Some(1),
        ToyKind::TwoMoons | ToyKind::Checkerboard => None,
    }
}

/// Number of classes of a toy distribution, if it has classes.
pub fn num_classes(kind: ToyKind) -> Option<i64> {
    match kind {
        ToyKind::EightGaussians => Some(8),
        ToyKind::TwoMoons | ToyKind::Checkerboard => Some(2),
        ToyKind::SwissRoll => None,
    }
}

/// `n` points of the distribution, with their labels and condition where it has them.
pub fn generate(kind: ToyKind, n: usize, seed: u64) -> ToySamples {
    let mut rng = Pcg64::seed_from_u64(seed);
    let normal = |rng: &mut Pcg64| -> f64 { StandardNormal.sample(rng) };
    let mut pts = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let mut cond = Vec::with_capacity(n * 2);
    for _ in 0..n {
        let (x, y, label) = match kind {
            ToyKind::EightGaussians => {
                let k = rng.random_range(0..8);
                let [cx, cy] = eight_gaussians_centre(k);
                cond.extend([
                    (cx / EIGHT_GAUSSIANS_RADIUS) as f32,
                    (cy / EIGHT_GAUSSIANS_RADIUS) as f32,
                ]);
                (
                    cx + EIGHT_GAUSSIANS_SD * normal(&mut rng),
                    cy + EIGHT_GAUSSIANS_SD * normal(&mut rng),
                    k,
                )
            }
            ToyKind::TwoMoons => {
                let k = rng.random_range(0..2i64);
                let a = rng.random::<f64>() * std::f64::consts::PI;
                let (x, y) = if k == 0 {
                    (a.cos(), a.sin())
                } else {
                    (1.0 - a.cos(), 0.5 - a.sin())
                };
                // Centre the pair on the origin.
                (
                    x - 0.5 + 0.1 * normal(&mut rng),
                    y - 0.25 + 0.1 * normal(&mut rng),
                    k,
                )
            }
            ToyKind::SwissRoll => {
                let r = rng.random::<f64>();
                cond.push((2.0 * r - 1.0) as f32);
                let u = 1.5 * std::f64::consts::PI * (1.0 + 2.0 * r);
                let (x, y) = (u * u.cos() / 5.0, u * u.sin() / 5.0);
                (x + 0.05 * normal(&mut rng), y + 0.05 * normal(&mut rng), 0)
            }
            ToyKind::Checkerboard => {
                // Pick one of the 8 filled unit squares of the 4×4 board on [−2, 2]².
                let col = rng.random_range(0..4i64);
                let row = 2 * rng.random_range(0..2i64) + (col % 2);
                let x = col as f64 - 2.0 + rng.random::<f64>();
                let y = row as f64 - 2.0 + rng.random::<f64>();
                (x, y, i64::from(x >= 0.0))
            }
        };
        pts.push([x as f32, y as f32]);
        labels.push(label);
    }
    ToySamples {
        points: pts,
        labels: num_classes(kind).map(|c| (labels, c)),
        condition: condition_dim(kind).map(|d| (cond, d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_gaussians_sit_on_the_circle_with_their_labels() {
        let s = generate(ToyKind::EightGaussians, 4000, 1);
        let (pts, (labels, classes)) = (s.points, s.labels.unwrap());
        let (cond, dim) = s.condition.unwrap();
        assert_eq!((classes, cond.len(), dim), (8, 8000, 2));
        for (i, (p, &k)) in pts.iter().zip(&labels).enumerate() {
            let a = k as f64 * std::f64::consts::PI / 4.0;
            // The condition is the direction of the point's centre.
            assert!((cond[2 * i] as f64 - a.cos()).abs() < 1e-6);
            assert!((cond[2 * i + 1] as f64 - a.sin()).abs() < 1e-6);
            let d = ((p[0] as f64 - 2.0 * a.cos()).powi(2) + (p[1] as f64 - 2.0 * a.sin()).powi(2))
                .sqrt();
            assert!(d < 0.2 * 6.0, "{p:?} far from centre {k}");
        }
        // Every class appears about n/8 times.
        for k in 0..8 {
            let c = labels.iter().filter(|&&l| l == k).count();
            assert!((400..600).contains(&c), "class {k}: {c}");
        }
    }

    #[test]
    fn checkerboard_points_are_in_filled_squares() {
        let s = generate(ToyKind::Checkerboard, 2000, 2);
        assert!(s.condition.is_none());
        for p in s.points {
            let (c, r) = ((p[0] + 2.0).floor() as i64, (p[1] + 2.0).floor() as i64);
            assert!((0..4).contains(&c) && (0..4).contains(&r));
            assert_eq!((c + r) % 2, 0, "{p:?} in an empty square");
        }
    }

    #[test]
    fn same_seed_same_points_other_seed_other_points() {
        for kind in [
            ToyKind::EightGaussians,
            ToyKind::TwoMoons,
            ToyKind::SwissRoll,
            ToyKind::Checkerboard,
        ] {
            assert_eq!(generate(kind, 100, 5), generate(kind, 100, 5));
            assert_ne!(generate(kind, 100, 5).points, generate(kind, 100, 6).points);
        }
    }
}
