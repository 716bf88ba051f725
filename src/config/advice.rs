//! Advice on configs that are valid and run, but probably not as the user
//! intends: printed as warnings by `train` and by `sweep` before any work, never
//! an error (a researcher may want exactly this setting).
//!
//! Two cases: a warm-up longer than the run (the learning rate never reaches
//! `train.lr`), and a noise schedule that ends with signal left in x_T.
//! Training only sees t < T, but sampling starts from x_T ~ N(0, I), and the
//! bits/dim prior term is KL(q(x_T|x₀) ‖ N(0, I)); both assume ᾱ_T ≈ 0. The
//! chapter's linear schedule (β from 1e-4 to 0.02) gets there at T = 1000 only:
//! with fewer steps it stops early (ᾱ_T = 0.13 at T = 200, 0.60 at T = 50).
//! improved-diffusion scales both betas by 1000/T for this reason.

use super::run::{LrSchedule, RunConfig};
use crate::diffusion::{NoiseSchedule, ScheduleConfig, ScheduleKind};

/// ᾱ_T above this leaves √ᾱ_T > 10% of the data's amplitude in x_T.
pub const MAX_TERMINAL_ALPHA_BAR: f64 = 0.01;

/// ᾱ at the last timestep, or None when the schedule is invalid.
fn terminal_alpha_bar(sc: &ScheduleConfig) -> Option<f64> {
    NoiseSchedule::new(sc.clone())
        .ok()
        .and_then(|s| s.alpha_bar.last().copied())
}

/// Warnings for `cfg`, each a sentence that names the keys and the fix.
pub fn advise(cfg: &RunConfig) -> Vec<String> {
    let mut out = vec![];
    let t = &cfg.train;
    if t.lr_schedule != LrSchedule::Constant && t.warmup_steps > t.steps {
        out.push(format!(
            "train: warmup_steps = {} is longer than the run (train.steps = {}), so the learning rate never reaches train.lr = {} (it ends at {:.3e}); lower train.warmup_steps (a few percent of the steps is usual)",
            t.warmup_steps,
            t.steps,
            t.lr,
            t.lr_at(t.steps.saturating_sub(1))
        ));
    }
    out.extend(schedule_advice(cfg));
    out
}

/// The noise schedule's advice (see the module notes).
fn schedule_advice(cfg: &RunConfig) -> Vec<String> {
    let mut out = vec![];
    let sc = cfg.diffusion.schedule_config();
    let Some(a_t) = terminal_alpha_bar(&sc) else {
        return out;
    };
    if a_t <= MAX_TERMINAL_ALPHA_BAR {
        return out;
    }
    let t = sc.timesteps;
    let mut fixes = vec![];
    if matches!(
        sc.schedule,
        ScheduleKind::Linear | ScheduleKind::ScaledLinear
    ) {
        let scale = 1000.0 / t as f64;
        let scaled = ScheduleConfig {
            beta_start: sc.beta_start * scale,
            beta_end: sc.beta_end * scale,
            ..sc.clone()
        };
        if let Some(a) = terminal_alpha_bar(&scaled).filter(|&a| a <= MAX_TERMINAL_ALPHA_BAR) {
            fixes.push(format!(
                "scale the betas by 1000/T as improved-diffusion does (diffusion.beta_start = {}, diffusion.beta_end = {} gives ᾱ_T = {a:.1e})",
                fmt_beta(scaled.beta_start),
                fmt_beta(scaled.beta_end)
            ));
        }
    }
    if sc.schedule != ScheduleKind::Cosine {
        fixes.push("use diffusion.schedule = \"cosine\"".into());
    }
    fixes.push("set diffusion.zero_terminal_snr = true".into());
    out.push(format!(
        "diffusion: the {} schedule ends at ᾱ_T = {a_t:.3} after diffusion.timesteps = {t}, so x_T keeps {:.0}% of the data while sampling starts from pure noise N(0, I); samples and the bits/dim prior term suffer. To fix it, {}.",
        sc.schedule.name(),
        100.0 * a_t.sqrt(),
        fixes.join(", or ")
    ));
    out
}

/// A beta as a short decimal (0.0005, not 0.0005000000000000001).
fn fmt_beta(b: f64) -> String {
    let s = format!("{b:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(schedule: ScheduleKind, timesteps: usize) -> RunConfig {
        let mut c = RunConfig::default();
        c.diffusion.schedule = schedule;
        c.diffusion.timesteps = timesteps;
        c
    }

    /// ᾱ_T of the chapter's linear schedule, computed here by hand.
    fn linear_alpha_bar_t(start: f64, end: f64, t: usize) -> f64 {
        (0..t)
            .map(|i| 1.0 - (start + (end - start) * i as f64 / (t - 1) as f64))
            .product()
    }

    #[test]
    fn a_short_linear_schedule_is_flagged_with_its_terminal_alpha_bar_and_the_scaled_betas() {
        let a = linear_alpha_bar_t(1e-4, 0.02, 200);
        assert!((a - 0.132).abs() < 0.001, "{a}");
        let w = advise(&cfg(ScheduleKind::Linear, 200));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains(&format!("ᾱ_T = {a:.3}")), "{}", w[0]);
        assert!(w[0].contains("diffusion.timesteps = 200"), "{}", w[0]);
        assert!(
            w[0].contains(&format!("keeps {:.0}%", 100.0 * a.sqrt())),
            "{}",
            w[0]
        );
        // The suggested betas, 5× the chapter's, really do end near zero.
        let scaled = linear_alpha_bar_t(5e-4, 0.1, 200);
        assert!(scaled < MAX_TERMINAL_ALPHA_BAR, "{scaled}");
        assert!(
            w[0].contains("diffusion.beta_start = 0.0005, diffusion.beta_end = 0.1 gives")
                && w[0].contains(&format!("ᾱ_T = {scaled:.1e}")),
            "{}",
            w[0]
        );
        assert!(w[0].contains("\"cosine\"") && w[0].contains("zero_terminal_snr = true"));
    }

    #[test]
    fn schedules_that_reach_noise_get_no_advice() {
        // The chapter's linear schedule at T = 1000: ᾱ_T = 4.0e-5.
        assert!(linear_alpha_bar_t(1e-4, 0.02, 1000) < 1e-4);
        assert_eq!(
            advise(&cfg(ScheduleKind::Linear, 1000)),
            Vec::<String>::new()
        );
        assert_eq!(advise(&cfg(ScheduleKind::Cosine, 50)), Vec::<String>::new());
        let mut z = cfg(ScheduleKind::Linear, 50);
        z.diffusion.zero_terminal_snr = true;
        assert_eq!(advise(&z), Vec::<String>::new());
        let mut scaled = cfg(ScheduleKind::Linear, 200);
        (scaled.diffusion.beta_start, scaled.diffusion.beta_end) = (5e-4, 0.1);
        assert_eq!(advise(&scaled), Vec::<String>::new());
    }

    #[test]
    fn a_warmup_longer_than_the_run_is_flagged_with_the_last_learning_rate() {
        let mut c = RunConfig::default();
        c.diffusion.timesteps = 1000;
        (c.train.steps, c.train.warmup_steps, c.train.lr) = (200, 5000, 2e-4);
        c.train.lr_schedule = LrSchedule::Warmup;
        let w = advise(&c);
        assert_eq!(w.len(), 1, "{w:?}");
        // Linear warm-up: step 199 runs at 200/5000 of lr.
        assert!(
            w[0].contains(&format!("it ends at {:.3e}", 2e-4 * 200.0 / 5000.0)),
            "{}",
            w[0]
        );
        assert!(w[0].contains("warmup_steps = 5000 is longer than the run (train.steps = 200)"));
        c.train.warmup_steps = 200;
        assert_eq!(advise(&c), Vec::<String>::new());
        (c.train.warmup_steps, c.train.lr_schedule) = (5000, LrSchedule::Constant);
        assert_eq!(
            advise(&c),
            Vec::<String>::new(),
            "no warm-up in a constant schedule"
        );
    }

    #[test]
    fn too_few_steps_for_scaled_betas_suggest_only_cosine_and_zero_snr() {
        // At T = 10 the scaled beta_end would be 2.0: not a valid beta.
        let w = advise(&cfg(ScheduleKind::Linear, 10));
        assert_eq!(w.len(), 1);
        assert!(!w[0].contains("1000/T"), "{}", w[0]);
        assert!(w[0].contains("\"cosine\""), "{}", w[0]);
    }
}
