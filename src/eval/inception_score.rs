//! The Inception Score (Salimans et al. 2016) with any classifier:
//! exp(E_x KL(p(y | x) ‖ p(y))), p(y) the mean of p(y | x) over the set. It is
//! high when each sample is confidently one class and the classes are evenly
//! used; it lies in [1, C]. Computed, as is customary, on `splits` equal
//! parts, reporting their mean and the standard error across them.
//!
//! With our evaluator it is an analogue (`is_<evaluator>`), not the Inception
//! Score of the literature.

use tch::{Kind, Tensor};

/// exp(E KL(p(y|x) ‖ p(y))) of class probabilities [N, C].
pub fn score(probs: &Tensor) -> f64 {
    let p = probs.to_kind(Kind::Double).clamp_min(1e-30);
    let py = p.mean_dim(0, true, Kind::Double);
    let kl = (&p * (p.log() - py.log())).sum_dim_intlist(1, false, Kind::Double);
    kl.mean(Kind::Double).exp().double_value(&[])
}

/// The score on `splits` parts: (mean, standard error).
pub fn score_splits(probs: &Tensor, splits: i64) -> (f64, f64) {
    let n = probs.size()[0];
    let splits = splits.clamp(1, n.max(1));
    let size = n / splits;
    let scores: Vec<f64> = (0..splits)
        .map(|i| score(&probs.narrow(0, i * size, size)))
        .collect();
    crate::diffusion::likelihood::mean_and_stderr(&scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn confident_even_classes_score_c_and_uniform_predictions_score_1() {
        let c = 7i64;
        let labels = Tensor::arange(70, (Kind::Int64, Device::Cpu)).remainder(c);
        let onehot = labels.one_hot(c).to_kind(Kind::Float);
        assert!((score(&onehot) - c as f64).abs() < 1e-9);
        let uniform = Tensor::full([70, c], 1.0 / c as f64, (Kind::Float, Device::Cpu));
        assert!((score(&uniform) - 1.0).abs() < 1e-9);
        // All samples confidently the same class: 1.
        let same = Tensor::zeros([70], (Kind::Int64, Device::Cpu))
            .one_hot(c)
            .to_kind(Kind::Float);
        assert!((score(&same) - 1.0).abs() < 1e-9);
        let (m, se) = score_splits(&onehot, 10);
        assert!((m - c as f64).abs() < 1e-9 && se.abs() < 1e-9);
    }

    #[test]
    fn two_classes_at_known_confidence_give_the_closed_form() {
        // Half the samples p = (q, 1 − q), half (1 − q, q): p(y) = (½, ½), and
        // KL = ln 2 + q ln q + (1 − q) ln(1 − q) for every sample.
        let q = 0.9f64;
        let a = Tensor::from_slice(&[q, 1.0 - q])
            .unsqueeze(0)
            .repeat([50, 1]);
        let b = Tensor::from_slice(&[1.0 - q, q])
            .unsqueeze(0)
            .repeat([50, 1]);
        let p = Tensor::cat(&[a, b], 0);
        let expect = (2f64.ln() + q * q.ln() + (1.0 - q) * (1.0 - q).ln()).exp();
        assert!((score(&p) - expect).abs() < 1e-9);
    }
}
