//! Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training
//! Dynamics of Diffusion Models", section 3 and appendix C): the arithmetic
//! that turns snapshots of a few tracked power-function EMAs into any other
//! averaging profile after training. Pure f64; the snapshot files and the
//! tensors live in [`super::phema_store`], the trainer's EMAs in
//! `train::power_ema`.
//!
//! A power-function EMA with exponent γ, read after t optimizer steps, is
//! updated at step c with β_c = (1 − 1/c)^(γ+1), so the weights θ_τ of step
//! τ ∈ 1..=t carry
//!
//! ```text
//! w_t(τ) = (τ^(γ+1) − (τ−1)^(γ+1)) / t^(γ+1)        (sums to 1 over τ)
//! ```
//!
//! which, in continuous time, is the density p_t(τ) = (γ+1) τ^γ / t^(γ+1) on
//! [0, t]. Its standard deviation relative to t is
//! σ_rel = sqrt((γ+1) / ((γ+2)² (γ+3))): the length the paper sweeps.
//!
//! To reconstruct a target profile (t*, σ*) from snapshots (t_i, σ_i), the
//! coefficients x minimise ‖Σ x_i p_i − p*‖₂ in continuous time: the normal
//! equations G x = c, where G_ij = ⟨p_i, p_j⟩ and c_i = ⟨p_i, p*⟩, each
//! inner product in closed form ([`profile_inner`]). The reconstructed
//! weights are Σ x_i θ̂_i. How well the snapshots span the target is
//! reported as the relative L2 error of the *discrete* per-step weights
//! ([`Solution::residual`]), the quantity that bounds the error of the
//! reconstructed parameters (Cauchy–Schwarz).
//!
//! A classic EMA of decay μ is matched by the standard deviation of the age
//! of what it averages: ages k ≥ 0 weighted (1 − μ) μ^k have standard
//! deviation √μ / (1 − μ) steps, so at step t it is σ_rel = √μ / ((1 − μ) t)
//! ([`decay_to_std_rel`]).

/// The largest σ_rel accepted: at γ = 0 (a uniform average of the whole
/// run) σ_rel = 1/√12 ≈ 0.289, and σ_rel is decreasing in γ ≥ 0; 0.28
/// keeps γ > 0 (γ ≈ 0.17).
pub const MAX_STD_REL: f64 = 0.28;

/// Why a post-hoc EMA cannot be solved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PhemaError {
    #[error("σ_rel = {0}: must be in (0, {MAX_STD_REL}] (the paper tracks 0.05 and 0.10; 0.28 is a near-uniform average of the whole run)")]
    StdRelOutOfRange(f64),
    #[error("ema.decay = {decay} at step {step} is σ_rel = {std_rel:.4} (√μ / ((1 − μ) · step)), outside (0, {MAX_STD_REL}]: pick a decay whose horizon 1/(1 − μ) is shorter than the run, or a later step")]
    DecayOutOfRange { decay: f64, step: u64, std_rel: f64 },
    #[error("no snapshot at or before step {step}: the first is at step {first}")]
    NoSnapshots { step: u64, first: u64 },
    #[error("the snapshots' profiles are linearly dependent (a duplicated step and σ_rel?): the solve is singular")]
    Singular,
}

/// σ_rel of the power-function profile of exponent γ.
pub fn exp_to_std_rel(gamma: f64) -> f64 {
    ((gamma + 1.0) / ((gamma + 2.0).powi(2) * (gamma + 3.0))).sqrt()
}

/// The exponent γ > 0 whose profile has relative standard deviation
/// `std_rel` ∈ (0, [`MAX_STD_REL`]]. σ_rel(γ) is strictly decreasing for
/// γ ≥ 0 and ≈ 1/γ for large γ, so bisection on [0, 2/σ + 10] finds it to
/// the last bit.
pub fn std_rel_to_exp(std_rel: f64) -> Result<f64, PhemaError> {
    if !(std_rel > 0.0 && std_rel <= MAX_STD_REL) {
        return Err(PhemaError::StdRelOutOfRange(std_rel));
    }
    let (mut lo, mut hi) = (0.0f64, 2.0 / std_rel + 10.0);
    loop {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if exp_to_std_rel(mid) > std_rel {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // The end whose σ_rel is nearer.
    let err = |g: f64| (exp_to_std_rel(g) - std_rel).abs();
    Ok(if err(lo) <= err(hi) { lo } else { hi })
}

/// The σ_rel at step `step` whose profile has the standard deviation of a
/// classic EMA of decay μ: √μ / ((1 − μ) step).
pub fn decay_to_std_rel(decay: f64, step: u64) -> Result<f64, PhemaError> {
    let std_rel = decay.sqrt() / ((1.0 - decay) * step as f64);
    if decay > 0.0 && decay < 1.0 && std_rel > 0.0 && std_rel <= MAX_STD_REL {
        Ok(std_rel)
    } else {
        Err(PhemaError::DecayOutOfRange {
            decay,
            step,
            std_rel,
        })
    }
}

/// One averaging profile: a power-function EMA of relative length
/// `std_rel` read after `step` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub step: u64,
    pub std_rel: f64,
}

/// ⟨p_a, p_b⟩ = ∫ p_a p_b dτ over [0, min(t_a, t_b)]
/// = (γ_a+1)(γ_b+1)/(γ_a+γ_b+1) · m^(γ_a+γ_b+1) / (t_a^(γ_a+1) t_b^(γ_b+1)),
/// m = min(t_a, t_b); computed through the ratios m/t ≤ 1 so that large
/// exponents neither overflow nor underflow early.
pub fn profile_inner(t_a: f64, g_a: f64, t_b: f64, g_b: f64) -> f64 {
    let m = t_a.min(t_b);
    let scale = (m / t_a).powf(g_a + 1.0) * (m / t_b).powf(g_b + 1.0) / m;
    (g_a + 1.0) * (g_b + 1.0) / (g_a + g_b + 1.0) * scale
}

/// The weight θ_τ carries in a power EMA of exponent γ read at step t:
/// (τ/t)^(γ+1) − ((τ−1)/t)^(γ+1) for 1 ≤ τ ≤ t, else 0.
pub fn step_weight(t: u64, gamma: f64, tau: u64) -> f64 {
    if tau == 0 || tau > t {
        return 0.0;
    }
    let t = t as f64;
    (tau as f64 / t).powf(gamma + 1.0) - ((tau - 1) as f64 / t).powf(gamma + 1.0)
}

/// The coefficients of a reconstruction and how good it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// One per input snapshot profile, in the order given.
    pub coefficients: Vec<f64>,
    /// ‖Σ x_i w_i − w*‖₂ / ‖w*‖₂ over the discrete per-step weights of steps
    /// 1..=target step.
    pub residual: f64,
    /// ‖w*‖₂, so that |reconstructed − exact| ≤ ‖θ‖₂ ‖w*‖₂ · residual for
    /// a parameter whose per-step values are θ.
    pub target_norm: f64,
}

/// The least-squares coefficients that combine `inputs` into `target`
/// (the paper's `solve_posthoc_coefficients`), with the residual.
pub fn solve(inputs: &[Profile], target: Profile) -> Result<Solution, PhemaError> {
    let gammas = inputs
        .iter()
        .map(|p| std_rel_to_exp(p.std_rel))
        .collect::<Result<Vec<_>, _>>()?;
    let g_t = std_rel_to_exp(target.std_rel)?;
    let n = inputs.len();
    let mut gram = vec![vec![0.0; n]; n];
    let mut rhs = vec![0.0; n];
    for i in 0..n {
        let t_i = inputs[i].step as f64;
        for j in 0..n {
            gram[i][j] = profile_inner(t_i, gammas[i], inputs[j].step as f64, gammas[j]);
        }
        rhs[i] = profile_inner(t_i, gammas[i], target.step as f64, g_t);
    }
    let coefficients = solve_linear(gram, rhs).ok_or(PhemaError::Singular)?;
    let weights = combined_weights(inputs, &gammas, &coefficients, target.step);
    let (mut err, mut norm) = (0.0, 0.0);
    for (k, w) in weights.iter().enumerate() {
        let exact = step_weight(target.step, g_t, k as u64 + 1);
        err += (w - exact).powi(2);
        norm += exact * exact;
    }
    Ok(Solution {
        coefficients,
        residual: (err / norm).sqrt(),
        target_norm: norm.sqrt(),
    })
}

/// Σ x_i w_i(τ) for τ = 1..=`upto`: the weight each step carries in a
/// reconstruction.
pub fn reconstructed_weights(
    inputs: &[Profile],
    coefficients: &[f64],
    upto: u64,
) -> Result<Vec<f64>, PhemaError> {
    let gammas = inputs
        .iter()
        .map(|p| std_rel_to_exp(p.std_rel))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(combined_weights(inputs, &gammas, coefficients, upto))
}

fn combined_weights(inputs: &[Profile], gammas: &[f64], x: &[f64], upto: u64) -> Vec<f64> {
    let mut out = vec![0.0; upto as usize];
    for ((p, &g), &c) in inputs.iter().zip(gammas).zip(x) {
        for tau in 1..=p.step.min(upto) {
            out[tau as usize - 1] += c * step_weight(p.step, g, tau);
        }
    }
    out
}

/// The weight θ_τ (τ = 0..=t, θ_0 the initial weights) carries in a
/// classic EMA of decay μ started from θ_0 and read at step t:
/// μ^t for τ = 0, else (1 − μ) μ^(t−τ).
pub fn classic_weight(decay: f64, t: u64, tau: u64) -> f64 {
    match tau {
        0 => decay.powf(t as f64),
        _ if tau > t => 0.0,
        _ => (1.0 - decay) * decay.powf((t - tau) as f64),
    }
}

/// Solve the square system `a x = b` by Gaussian elimination with partial
/// pivoting; None when a pivot vanishes.
fn solve_linear(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col] == 0.0 || !a[pivot][col].is_finite() {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            if f == 0.0 {
                continue;
            }
            let (top, bottom) = a.split_at_mut(row);
            for (t, p) in bottom[0][col..].iter_mut().zip(&top[col][col..]) {
                *t -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponent_inverts_the_relative_std_and_matches_the_papers_pairs() {
        // The paper: σ_rel 0.05 and 0.10 are γ = 16.97 and 6.94.
        assert!((std_rel_to_exp(0.05).unwrap() - 16.97).abs() < 0.01);
        assert!((std_rel_to_exp(0.10).unwrap() - 6.94).abs() < 0.01);
        for s in [0.001, 0.01, 0.05, 0.1, 0.2, 0.28] {
            let g = std_rel_to_exp(s).unwrap();
            assert!((exp_to_std_rel(g) - s).abs() < 1e-15, "{s}: {g}");
        }
        for bad in [0.0, -0.1, 0.29, f64::NAN, f64::INFINITY] {
            assert!(std_rel_to_exp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn step_weights_sum_to_one_and_approach_the_density() {
        for (t, g) in [(1u64, 3.0), (10, 0.5), (1000, 16.97)] {
            let s: f64 = (1..=t).map(|tau| step_weight(t, g, tau)).sum();
            assert!((s - 1.0).abs() < 1e-12, "{t} {g}: {s}");
        }
        // Continuous density at τ: (γ+1) τ^γ / t^(γ+1), per unit step.
        let (t, g) = (10_000u64, 6.94);
        let dens = (g + 1.0) * (5000.0f64 / t as f64).powf(g) / t as f64;
        assert!((step_weight(t, g, 5000) / dens - 1.0).abs() < 1e-3);
    }

    #[test]
    fn the_inner_product_is_the_integral_of_the_densities() {
        let (ta, ga, tb, gb) = (700.0, 6.94, 1000.0, 16.97);
        let p = |t: f64, g: f64, x: f64| {
            if x > t {
                0.0
            } else {
                (g + 1.0) * (x / t).powf(g) / t
            }
        };
        // Midpoint rule over [0, 700].
        let n = 200_000;
        let h = ta / n as f64;
        let num: f64 = (0..n)
            .map(|k| {
                let x = (k as f64 + 0.5) * h;
                p(ta, ga, x) * p(tb, gb, x) * h
            })
            .sum();
        let exact = profile_inner(ta, ga, tb, gb);
        assert!((num / exact - 1.0).abs() < 1e-6, "{num} vs {exact}");
        assert_eq!(exact, profile_inner(tb, gb, ta, ga));
    }

    #[test]
    fn a_tracked_profile_is_reconstructed_by_itself() {
        let inputs: Vec<Profile> = [200u64, 400, 600]
            .iter()
            .flat_map(|&step| [0.05, 0.10].map(move |std_rel| Profile { step, std_rel }))
            .collect();
        let sol = solve(
            &inputs,
            Profile {
                step: 600,
                std_rel: 0.10,
            },
        )
        .unwrap();
        for (i, c) in sol.coefficients.iter().enumerate() {
            let want = if i == 5 { 1.0 } else { 0.0 };
            assert!((c - want).abs() < 1e-9, "{i}: {c}");
        }
        assert!(sol.residual < 1e-9, "{}", sol.residual);
        // Between the tracked lengths: close, not exact.
        let sol = solve(
            &inputs,
            Profile {
                step: 600,
                std_rel: 0.07,
            },
        )
        .unwrap();
        assert!(
            sol.residual > 1e-6 && sol.residual < 0.05,
            "{}",
            sol.residual
        );
    }

    #[test]
    fn duplicated_snapshots_are_singular() {
        let p = Profile {
            step: 100,
            std_rel: 0.05,
        };
        assert_eq!(solve(&[p, p], p), Err(PhemaError::Singular));
    }

    #[test]
    fn a_classic_decay_maps_to_the_std_of_its_age() {
        // μ = 0.99: √0.99/0.01 = 99.5 steps, over 1,000 steps 0.0995.
        let s = decay_to_std_rel(0.99, 1000).unwrap();
        assert!((s - 0.99f64.sqrt() / 10.0).abs() < 1e-15);
        // Its age's std, numerically.
        let (mu, t) = (0.99, 5000u64);
        let w: Vec<f64> = (0..=t).map(|tau| classic_weight(mu, t, tau)).collect();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let mean: f64 = w
            .iter()
            .enumerate()
            .map(|(k, x)| (t - k as u64) as f64 * x)
            .sum();
        let var: f64 = w
            .iter()
            .enumerate()
            .map(|(k, x)| ((t - k as u64) as f64 - mean).powi(2) * x)
            .sum();
        assert!((var.sqrt() / 99.4987 - 1.0).abs() < 1e-4, "{}", var.sqrt());
        assert!(
            decay_to_std_rel(0.9999, 1000).is_err(),
            "a horizon longer than the run"
        );
    }
}
