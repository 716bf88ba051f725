//! Seeds derived from a run's seed. Every random stream of a run (data order,
//! noise, timesteps, dropout) is re-seeded from (seed, step, stream tag) at each
//! step, so a run's randomness is a pure function of its seed and step: a
//! resumed run draws exactly what an uninterrupted one would, with no generator
//! state to save.

/// SplitMix64's finalizer: a strong 64-bit mix.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for stream `tag` at `step` of a run seeded `seed`. Non-negative as an i64,
/// as `tch::manual_seed` wants.
pub fn mix_seed(seed: u64, step: u64, tag: u64) -> u64 {
    splitmix(splitmix(splitmix(seed) ^ step) ^ tag) >> 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_by_seed_step_and_tag() {
        let a = mix_seed(0, 0, 0);
        assert_ne!(a, mix_seed(1, 0, 0));
        assert_ne!(a, mix_seed(0, 1, 0));
        assert_ne!(a, mix_seed(0, 0, 1));
        assert_eq!(a, mix_seed(0, 0, 0));
        assert!(mix_seed(u64::MAX, u64::MAX, u64::MAX) <= i64::MAX as u64);
    }
}
