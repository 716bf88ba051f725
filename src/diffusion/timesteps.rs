//! Timestep samplers (chapter table 4.4): which t each training sample gets, and
//! the importance weight that keeps the objective unbiased.
//!
//! A sampler draws t_i with probability p(t_i) and returns w_i = 1/(T·p(t_i)), so
//! E[w·L(t)] = (1/T) Σ_t L(t), the uniform objective, whatever p is.
//!
//! * `uniform`: p = 1/T, w = 1.
//! * `stratified`: one uniform offset u per batch, t_i = ⌊(i + u)·T/B⌋, shuffled.
//!   Every stratum [i·T/B, (i+1)·T/B) gets exactly one sample, and each t keeps
//!   marginal probability 1/T, so w = 1.
//! * `importance`: improved-diffusion's loss-second-moment resampler: the last 10
//!   losses of every t; uniform until every t has its 10; then p ∝ √E[L²], mixed
//!   with 0.001 uniform. L is the weighted loss w(t)·MSE that training minimises
//!   (before importance weights), as in improved-diffusion.
//! * `loss-aware`: p ∝ a running mean (exponential, decay 0.9) of recent loss in
//!   each of `bins` equal bins of [0, T), uniform within a bin, mixed with 0.001
//!   uniform; uniform until every bin has been seen.
//!
//! Samplers draw on the host from a [`Pcg64`] the caller owns, so a run's draws
//! follow from its seed. Their learned state serializes with serde, for
//! checkpoints ([`TimestepSampler::state`], [`TimestepSampler::load_state`]).

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The sampler family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TimestepSampling {
    Uniform,
    Stratified,
    Importance,
    LossAware,
}

/// Losses remembered per timestep by the `importance` sampler (improved-diffusion).
pub const IMPORTANCE_HISTORY: usize = 10;
/// Share of uniform probability mixed into the adaptive samplers.
pub const UNIFORM_MIX: f64 = 0.001;
/// Decay of the `loss-aware` sampler's running mean.
pub const LOSS_AWARE_DECAY: f64 = 0.9;
/// Default number of `loss-aware` bins.
pub const DEFAULT_LOSS_AWARE_BINS: usize = 20;

/// A batch of timesteps and their importance weights.
#[derive(Debug, Clone, PartialEq)]
pub struct TimestepBatch {
    pub t: Vec<i64>,
    pub weights: Vec<f64>,
}

/// A sampler's learned state, for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sampler", rename_all = "kebab-case")]
pub enum SamplerState {
    Uniform,
    Stratified,
    Importance {
        /// Row-major [T, IMPORTANCE_HISTORY].
        history: Vec<f64>,
        counts: Vec<usize>,
    },
    LossAware {
        bins: usize,
        mean: Vec<f64>,
        seen: Vec<bool>,
    },
}

/// A checkpointed state that does not fit this sampler.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("timestep-sampler state does not match: {0}. Resume with the run's original `diffusion.timestep_sampling` and `diffusion.timesteps`")]
pub struct SamplerStateError(String);

pub trait TimestepSampler: Send {
    /// Draw `batch` timesteps and their importance weights.
    fn sample(&mut self, batch: usize, rng: &mut Pcg64) -> TimestepBatch;
    /// Feed back the per-sample losses of the drawn timesteps: w(t)·MSE, the loss
    /// the objective weights, before importance weights.
    fn update(&mut self, _t: &[i64], _losses: &[f64]) {}
    /// Whether [`Self::update`] does anything: the trainer skips reading losses back otherwise.
    fn wants_losses(&self) -> bool {
        false
    }
    /// p(t) for every t, as the next [`Self::sample`] would use.
    fn probabilities(&self) -> Vec<f64>;
    fn state(&self) -> SamplerState;
    fn load_state(&mut self, state: SamplerState) -> Result<(), SamplerStateError>;
}

/// [0, T) cut into `bins` nearly equal, contiguous ranges [lo, hi), first to
/// last (the per-timestep loss's bins, the likelihood's strata).
pub fn equal_bins(timesteps: usize, bins: usize) -> Vec<(i64, i64)> {
    let t = timesteps as i64;
    let b = bins.max(1) as i64;
    (0..b).map(|i| (i * t / b, (i + 1) * t / b)).collect()
}

/// Build a sampler over `timesteps` steps. `bins` only matters for `loss-aware`.
pub fn create_sampler(
    kind: TimestepSampling,
    timesteps: usize,
    bins: usize,
) -> Box<dyn TimestepSampler> {
    match kind {
        TimestepSampling::Uniform => Box::new(Uniform { timesteps }),
        TimestepSampling::Stratified => Box::new(Stratified { timesteps }),
        TimestepSampling::Importance => Box::new(Importance::new(timesteps)),
        TimestepSampling::LossAware => Box::new(LossAware::new(timesteps, bins)),
    }
}

/// t ~ Uniform{0, …, T−1}.
pub struct Uniform {
    timesteps: usize,
}

impl TimestepSampler for Uniform {
    fn sample(&mut self, batch: usize, rng: &mut Pcg64) -> TimestepBatch {
        TimestepBatch {
            t: (0..batch)
                .map(|_| rng.random_range(0..self.timesteps) as i64)
                .collect(),
            weights: vec![1.0; batch],
        }
    }
    fn probabilities(&self) -> Vec<f64> {
        vec![1.0 / self.timesteps as f64; self.timesteps]
    }
    fn state(&self) -> SamplerState {
        SamplerState::Uniform
    }
    fn load_state(&mut self, state: SamplerState) -> Result<(), SamplerStateError> {
        match state {
            SamplerState::Uniform => Ok(()),
            other => Err(SamplerStateError(format!(
                "expected uniform, got {other:?}"
            ))),
        }
    }
}

/// The stratified draw: t_i = ⌊(i + u)·T/B⌋ (at most T − 1) for i < B, one
/// per stratum of [0, T), taken in the order `order` (a permutation of
/// 0..B). The trainer calls it with u and the permutation drawn on the
/// device; [`Stratified`] with them drawn on the host.
///
/// # Shapes
/// `u`: [1] f64; `order`: [B] int64; returns [B] int64 on `u`'s device.
pub fn stratified_timesteps(u: &Tensor, order: &Tensor, timesteps: i64) -> Tensor {
    let batch = order.size()[0];
    let t = ((Tensor::arange(batch, (Kind::Double, u.device())) + u)
        * (timesteps as f64 / batch as f64))
        .floor()
        .clamp_max((timesteps - 1) as f64)
        .to_kind(Kind::Int64);
    t.index_select(0, order)
}

/// Low-discrepancy: one offset per batch, one sample per stratum.
pub struct Stratified {
    timesteps: usize,
}

impl TimestepSampler for Stratified {
    fn sample(&mut self, batch: usize, rng: &mut Pcg64) -> TimestepBatch {
        let u: f64 = rng.random();
        let mut order: Vec<i64> = (0..batch as i64).collect();
        order.shuffle(rng);
        let t = stratified_timesteps(
            &Tensor::from_slice(&[u]),
            &Tensor::from_slice(&order),
            self.timesteps as i64,
        );
        let t = Vec::<i64>::try_from(&t).expect("an int64 vector"); // ok: built just above
        TimestepBatch {
            t,
            weights: vec![1.0; batch],
        }
    }
    fn probabilities(&self) -> Vec<f64> {
        vec![1.0 / self.timesteps as f64; self.timesteps]
    }
    fn state(&self) -> SamplerState {
        SamplerState::Stratified
    }
    fn load_state(&mut self, state: SamplerState) -> Result<(), SamplerStateError> {
        match state {
            SamplerState::Stratified => Ok(()),
            other => Err(SamplerStateError(format!(
                "expected stratified, got {other:?}"
            ))),
        }
    }
}

/// Draw from `p` (over t) and weight by 1/(T·p).
fn sample_from(p: &[f64], batch: usize, rng: &mut Pcg64) -> TimestepBatch {
    let n = p.len() as f64;
    let dist = WeightedIndex::new(p).expect("probabilities are positive and finite"); // ok: p ≥ UNIFORM_MIX/T > 0
    let t: Vec<i64> = (0..batch).map(|_| dist.sample(rng) as i64).collect();
    let weights = t.iter().map(|&i| 1.0 / (n * p[i as usize])).collect();
    TimestepBatch { t, weights }
}

/// Mix `UNIFORM_MIX` of uniform into normalised `w`.
fn mix_uniform(w: &[f64]) -> Vec<f64> {
    let sum: f64 = w.iter().sum();
    let n = w.len() as f64;
    if !(sum.is_finite() && sum > 0.0) {
        return vec![1.0 / n; w.len()];
    }
    w.iter()
        .map(|x| x / sum * (1.0 - UNIFORM_MIX) + UNIFORM_MIX / n)
        .collect()
}

/// improved-diffusion's `LossSecondMomentResampler`.
pub struct Importance {
    timesteps: usize,
    history: Vec<f64>,
    counts: Vec<usize>,
}

impl Importance {
    pub fn new(timesteps: usize) -> Self {
        Importance {
            timesteps,
            history: vec![0.0; timesteps * IMPORTANCE_HISTORY],
            counts: vec![0; timesteps],
        }
    }
    fn warmed_up(&self) -> bool {
        self.counts.iter().all(|&c| c == IMPORTANCE_HISTORY)
    }
}

impl TimestepSampler for Importance {
    fn sample(&mut self, batch: usize, rng: &mut Pcg64) -> TimestepBatch {
        sample_from(&self.probabilities(), batch, rng)
    }
    fn update(&mut self, t: &[i64], losses: &[f64]) {
        for (&ti, &loss) in t.iter().zip(losses) {
            let ti = ti as usize;
            let row = &mut self.history[ti * IMPORTANCE_HISTORY..(ti + 1) * IMPORTANCE_HISTORY];
            if self.counts[ti] == IMPORTANCE_HISTORY {
                row.rotate_left(1);
                row[IMPORTANCE_HISTORY - 1] = loss;
            } else {
                row[self.counts[ti]] = loss;
                self.counts[ti] += 1;
            }
        }
    }
    fn wants_losses(&self) -> bool {
        true
    }
    fn probabilities(&self) -> Vec<f64> {
        if !self.warmed_up() {
            return vec![1.0 / self.timesteps as f64; self.timesteps];
        }
        let w: Vec<f64> = self
            .history
            .chunks(IMPORTANCE_HISTORY)
            .map(|row| (row.iter().map(|l| l * l).sum::<f64>() / IMPORTANCE_HISTORY as f64).sqrt())
            .collect();
        mix_uniform(&w)
    }
    fn state(&self) -> SamplerState {
        SamplerState::Importance {
            history: self.history.clone(),
            counts: self.counts.clone(),
        }
    }
    fn load_state(&mut self, state: SamplerState) -> Result<(), SamplerStateError> {
        match state {
            SamplerState::Importance { history, counts }
                if counts.len() == self.timesteps
                    && history.len() == self.timesteps * IMPORTANCE_HISTORY
                    && counts.iter().all(|&c| c <= IMPORTANCE_HISTORY) =>
            {
                self.history = history;
                self.counts = counts;
                Ok(())
            }
            other => Err(SamplerStateError(format!(
                "expected importance over {} timesteps, got {}",
                self.timesteps,
                describe(&other)
            ))),
        }
    }
}

/// p ∝ a running mean of the loss per bin of timesteps.
pub struct LossAware {
    timesteps: usize,
    bins: usize,
    mean: Vec<f64>,
    seen: Vec<bool>,
}

impl LossAware {
    /// `bins` is clamped to [1, T].
    pub fn new(timesteps: usize, bins: usize) -> Self {
        let bins = bins.clamp(1, timesteps.max(1));
        LossAware {
            timesteps,
            bins,
            mean: vec![0.0; bins],
            seen: vec![false; bins],
        }
    }
    /// The bin of timestep t: bins split [0, T) as evenly as integers allow.
    fn bin(&self, t: usize) -> usize {
        t * self.bins / self.timesteps
    }
}

impl TimestepSampler for LossAware {
    fn sample(&mut self, batch: usize, rng: &mut Pcg64) -> TimestepBatch {
        sample_from(&self.probabilities(), batch, rng)
    }
    fn update(&mut self, t: &[i64], losses: &[f64]) {
        for (&ti, &loss) in t.iter().zip(losses) {
            let b = self.bin(ti as usize);
            if self.seen[b] {
                self.mean[b] = LOSS_AWARE_DECAY * self.mean[b] + (1.0 - LOSS_AWARE_DECAY) * loss;
            } else {
                self.mean[b] = loss;
                self.seen[b] = true;
            }
        }
    }
    fn wants_losses(&self) -> bool {
        true
    }
    fn probabilities(&self) -> Vec<f64> {
        let n = self.timesteps;
        if !self.seen.iter().all(|&s| s) {
            return vec![1.0 / n as f64; n];
        }
        let mut size = vec![0usize; self.bins];
        for t in 0..n {
            size[self.bin(t)] += 1;
        }
        // p_bin ∝ mean, spread evenly over the bin's timesteps.
        let per_t: Vec<f64> = (0..n)
            .map(|t| {
                let b = self.bin(t);
                self.mean[b].max(0.0) / size[b] as f64
            })
            .collect();
        mix_uniform(&per_t)
    }
    fn state(&self) -> SamplerState {
        SamplerState::LossAware {
            bins: self.bins,
            mean: self.mean.clone(),
            seen: self.seen.clone(),
        }
    }
    fn load_state(&mut self, state: SamplerState) -> Result<(), SamplerStateError> {
        match state {
            SamplerState::LossAware { bins, mean, seen }
                if bins == self.bins && mean.len() == bins && seen.len() == bins =>
            {
                self.mean = mean;
                self.seen = seen;
                Ok(())
            }
            other => Err(SamplerStateError(format!(
                "expected loss-aware with {} bins, got {}",
                self.bins,
                describe(&other)
            ))),
        }
    }
}

fn describe(s: &SamplerState) -> String {
    match s {
        SamplerState::Uniform => "uniform".into(),
        SamplerState::Stratified => "stratified".into(),
        SamplerState::Importance { counts, .. } => {
            format!("importance over {} timesteps", counts.len())
        }
        SamplerState::LossAware { bins, .. } => format!("loss-aware with {bins} bins"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const T: usize = 100;

    /// A synthetic loss table: large at small t, small at large t, noisy.
    fn loss_table() -> Vec<f64> {
        (0..T)
            .map(|t| 0.05 + 2.0 * (-(t as f64) / 15.0).exp())
            .collect()
    }

    fn train(sampler: &mut dyn TimestepSampler, rng: &mut Pcg64, steps: usize) {
        let table = loss_table();
        for _ in 0..steps {
            let b = sampler.sample(64, rng);
            let noisy: Vec<f64> =
                b.t.iter()
                    .map(|&t| table[t as usize] * (0.5 + rng.random::<f64>()))
                    .collect();
            sampler.update(&b.t, &noisy);
        }
    }

    fn uniform_mean() -> f64 {
        loss_table().iter().sum::<f64>() / T as f64
    }

    #[test]
    fn importance_weights_keep_the_objective_unbiased() {
        for kind in [TimestepSampling::Importance, TimestepSampling::LossAware] {
            let mut rng = Pcg64::seed_from_u64(3);
            let mut s = create_sampler(kind, T, 10);
            train(s.as_mut(), &mut rng, 400);
            let p = s.probabilities();
            // The learned p is far from uniform: it follows the loss.
            assert!(p[0] > 5.0 * p[T - 1], "{kind:?}: {} vs {}", p[0], p[T - 1]);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            // Exactly: Σ_t p_t · L_t / (T p_t) = mean L.
            let table = loss_table();
            let exact: f64 = (0..T).map(|t| p[t] * table[t] / (T as f64 * p[t])).sum();
            assert!((exact - uniform_mean()).abs() < 1e-12);
            // By Monte Carlo with the sampler's own weights, within 5 standard errors.
            let mut vals = vec![];
            for _ in 0..2000 {
                let b = s.sample(64, &mut rng);
                vals.extend(
                    b.t.iter()
                        .zip(&b.weights)
                        .map(|(&t, w)| w * table[t as usize]),
                );
            }
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let se = (var / n).sqrt();
            assert!(
                (mean - uniform_mean()).abs() < 5.0 * se,
                "{kind:?}: {mean} vs {} (se {se})",
                uniform_mean()
            );
        }
    }

    #[test]
    fn importance_is_uniform_until_every_timestep_has_its_history() {
        let mut s = Importance::new(4);
        for _ in 0..IMPORTANCE_HISTORY {
            s.update(&[0, 1, 2], &[1.0, 2.0, 3.0]);
        }
        assert_eq!(s.probabilities(), vec![0.25; 4]);
        for _ in 0..IMPORTANCE_HISTORY {
            s.update(&[3], &[4.0]);
        }
        // Warmed up: p ∝ √E[L²] = L here, mixed with 0.001 uniform.
        let p = s.probabilities();
        for (t, l) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
            let expect = l / 10.0 * (1.0 - UNIFORM_MIX) + UNIFORM_MIX / 4.0;
            assert!((p[t] - expect).abs() < 1e-12, "t={t}: {} vs {expect}", p[t]);
        }
        // The history is a window of the last 10: push 10 more losses of 8 for t=0.
        for _ in 0..IMPORTANCE_HISTORY {
            s.update(&[0], &[8.0]);
        }
        let p = s.probabilities();
        assert!((p[0] - (8.0 / 17.0 * (1.0 - UNIFORM_MIX) + UNIFORM_MIX / 4.0)).abs() < 1e-12);
    }

    #[test]
    fn stratified_sampler_covers_every_stratum() {
        let mut rng = Pcg64::seed_from_u64(11);
        let mut s = create_sampler(TimestepSampling::Stratified, 1000, 0);
        for batch in [1usize, 7, 64, 1000] {
            for _ in 0..50 {
                let b = s.sample(batch, &mut rng);
                assert!(b.weights.iter().all(|&w| w == 1.0));
                let mut t = b.t.clone();
                t.sort();
                // The i-th smallest t is ⌊x_i⌋ for one x_i in stratum [i·T/B, (i+1)·T/B):
                // i·T/B − 1 < t_(i) < (i+1)·T/B, in integers.
                let (big_b, big_t) = (batch as i64, 1000i64);
                for (i, &ti) in t.iter().enumerate() {
                    let i = i as i64;
                    assert!(
                        ti * big_b < (i + 1) * big_t,
                        "batch {batch}: t_({i}) = {ti}"
                    );
                    assert!(
                        (ti + 1) * big_b > i * big_t,
                        "batch {batch}: t_({i}) = {ti}"
                    );
                }
                // Strata at least one step wide give distinct timesteps.
                t.dedup();
                assert_eq!(t.len(), batch);
            }
        }
        // Marginally uniform: the mean of t is (T−1)/2.
        let draws: Vec<i64> = (0..2000).flat_map(|_| s.sample(3, &mut rng).t).collect();
        let mean = draws.iter().sum::<i64>() as f64 / draws.len() as f64;
        let se = (1000.0f64.powi(2) / 12.0 / draws.len() as f64).sqrt();
        assert!((mean - 499.5).abs() < 5.0 * se, "{mean}");
    }

    #[test]
    fn uniform_sampler_is_uniform_and_seeded() {
        let mut a = create_sampler(TimestepSampling::Uniform, 10, 0);
        let mut r1 = Pcg64::seed_from_u64(5);
        let mut r2 = Pcg64::seed_from_u64(5);
        assert_eq!(a.sample(32, &mut r1), a.sample(32, &mut r2));
        let mut counts = [0usize; 10];
        for _ in 0..1000 {
            for t in a.sample(10, &mut r1).t {
                counts[t as usize] += 1;
            }
        }
        // 10,000 draws: each count is Binomial(10000, 0.1), sd 30.
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn state_round_trips_through_json_and_resumes_identically() {
        for kind in [
            TimestepSampling::Uniform,
            TimestepSampling::Stratified,
            TimestepSampling::Importance,
            TimestepSampling::LossAware,
        ] {
            let mut rng = Pcg64::seed_from_u64(9);
            let mut a = create_sampler(kind, T, 10);
            train(a.as_mut(), &mut rng, 300);
            let json = serde_json::to_string(&a.state()).unwrap();
            let mut b = create_sampler(kind, T, 10);
            b.load_state(serde_json::from_str(&json).unwrap()).unwrap();
            assert_eq!(a.probabilities(), b.probabilities(), "{kind:?}");
            let mut r1 = rng.clone();
            let mut r2 = rng.clone();
            assert_eq!(a.sample(16, &mut r1), b.sample(16, &mut r2));
        }
    }

    #[test]
    fn mismatched_state_is_rejected_with_the_fix() {
        let mut s = create_sampler(TimestepSampling::Importance, 10, 0);
        let e = s
            .load_state(Importance::new(20).state())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected importance over 10 timesteps, got importance over 20"),
            "{e}"
        );
        assert!(e.contains("diffusion.timesteps"), "{e}");
        let e = s.load_state(SamplerState::Uniform).unwrap_err();
        assert!(e.to_string().contains("got uniform"));
    }

    #[test]
    fn loss_aware_bins_split_the_range() {
        let s = LossAware::new(1000, 20);
        assert_eq!(s.bin(0), 0);
        assert_eq!(s.bin(49), 0);
        assert_eq!(s.bin(50), 1);
        assert_eq!(s.bin(999), 19);
        let s = LossAware::new(5, 20); // clamped to T
        assert_eq!(s.bins, 5);
    }
}
