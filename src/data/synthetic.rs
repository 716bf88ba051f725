//! Generated images (`data.source = "synthetic"`): one soft Gaussian blob per
//! image on a dark background, labelled by the quadrant of its centre. Cheap to
//! make at any size, learnable, and labelled, so smoke tests and GPU benchmarks
//! can run the image path (and class conditioning) without a dataset on disk.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use tch::Tensor;

/// Labels are the quadrant of the blob's centre.
pub const NUM_CLASSES: i64 = 4;

/// `n` images of shape [C, H, W] in [−1, 1] and their labels.
///
/// # Shapes
/// result: ([n, C, H, W] f32, [n] int64).
pub fn generate(n: usize, shape: &[i64], seed: u64) -> (Tensor, Tensor) {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * (c * h * w) as usize);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let (cy, cx) = (rng.random::<f64>(), rng.random::<f64>());
        let radius = 0.1 + 0.15 * rng.random::<f64>();
        let colour: Vec<f64> = (0..c).map(|_| 0.3 + 0.7 * rng.random::<f64>()).collect();
        labels.push(i64::from(cy >= 0.5) * 2 + i64::from(cx >= 0.5));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let dy = (y as f64 + 0.5) / h as f64 - cy;
                    let dx = (x as f64 + 0.5) / w as f64 - cx;
                    let v = colour[ch as usize]
                        * (-(dx * dx + dy * dy) / (2.0 * radius * radius)).exp();
                    pixels.push((2.0 * v - 1.0) as f32);
                }
            }
        }
    }
    (
        Tensor::from_slice(&pixels).reshape([n as i64, c, h, w]),
        Tensor::from_slice(&labels),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_in_range_and_labels_are_quadrants() {
        let (x, y) = generate(64, &[3, 16, 16], 0);
        assert_eq!(x.size(), vec![64, 3, 16, 16]);
        assert!(x.min().double_value(&[]) >= -1.0 && x.max().double_value(&[]) <= 1.0);
        let labels: Vec<i64> = Vec::try_from(&y).unwrap();
        assert!(labels.iter().all(|&l| (0..4).contains(&l)));
        // The brightest pixel of each image lies in its labelled quadrant.
        for i in 0..64 {
            let img = x
                .get(i)
                .sum_dim_intlist([0i64].as_slice(), false, tch::Kind::Float);
            let idx = img.flatten(0, -1).argmax(0, false).int64_value(&[]);
            let (r, c) = (idx / 16, idx % 16);
            let q = i64::from(r >= 8) * 2 + i64::from(c >= 8);
            assert_eq!(q, labels[i as usize], "image {i}");
        }
    }
}
