//! Planning: which runs can share one training job.
//!
//! Some keys change only how a trained model is evaluated, not how it is
//! trained (evaluation-only keys, [`crate::run::identity`]). Runs that differ only in those keys share one
//! training job: its EMAs are tracked together (an `ema.decay` axis becomes
//! one job whose `ema.decays` is the union of the decays), and each run then
//! reads its own weights. The chapter's EMA ablation thus costs one training
//! per seed, not one per decay.
//!
//! Under `ema.mode = "power"` a job tracks `ema.std_rel` (a list, a training
//! key) and reconstructs any other length after training: an `ema.std_rel`
//! axis of single numbers, and an `ema.decay` axis (each μ as the σ_rel of
//! equal standard deviation at the last step, [`phema::decay_to_std_rel`]),
//! pick `phema-<σ>` weights and add nothing to the job.
//!
//! Ids: a job is named by a short hash of its training config; a run by the
//! slug of its swept values and that hash (`prediction-v_decay-0.999-1a2b3c`).

use super::expand::Assignment;
use super::spec::{slug, SweepSpec};
use crate::config::load::{ConfigError, SetArg};
use crate::config::run::EmaMode;
use crate::config::{Problem, RunConfig};
use crate::run::{identity, phema, EvalKeys, Weights};

/// One run of the plan.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub id: String,
    pub assignment: Assignment,
    /// Index into [`Plan::jobs`].
    pub job: usize,
    /// The weights this run is evaluated with.
    pub weights: Weights,
    /// The run's whole config: its job's training config plus its own `eval.*`.
    pub config: RunConfig,
}

/// One training job: a config that is trained once.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub config: RunConfig,
    /// Indices into [`Plan::runs`].
    pub runs: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub runs: Vec<PlannedRun>,
    pub jobs: Vec<Job>,
}

/// Split runs into training jobs.
pub fn plan(spec: &SweepSpec, sets: &[SetArg], env: bool) -> Result<Plan, ConfigError> {
    // The EMA axes pick a run's weights, not its config (`ema.decay` is not a
    // run-config key; `ema.std_rel` as a number is a target length, not the
    // tracked list), so they are applied here; `eval.*` keys resolve normally
    // and the training-config hash leaves them out.
    let resolved = spec.resolve_with(sets, env, |a| {
        a.iter()
            .filter(|kv| EmaPick::of_pair(kv).is_none())
            .cloned()
            .collect()
    })?;
    let mut jobs: Vec<Job> = vec![];
    // The training-config hash each job was created with (before decays merge in).
    let mut keys: Vec<String> = vec![];
    let mut runs = vec![];
    for (i, r) in resolved.into_iter().enumerate() {
        let pick = EmaPick::of(&r.assignment);
        let key = identity::training_hash(&r.config);
        let j = match keys.iter().position(|k| *k == key) {
            Some(j) => j,
            None => {
                keys.push(key);
                // The job keeps its first run's [eval]: the trainer uses its
                // evaluation points (every, at_steps); each run applies its own
                // sampling keys later.
                let config = r.config.clone();
                jobs.push(Job {
                    id: String::new(),
                    config,
                    runs: vec![],
                });
                jobs.len() - 1
            }
        };
        // Decay 0 is the raw weights (an EMA of decay 0 is θ itself). A
        // power-EMA job tracks no decays: it reconstructs them.
        if let Some(EmaPick::Decay(d)) = pick.filter(|_| r.config.ema.mode != EmaMode::Power) {
            if d > 0.0 && !jobs[j].config.ema.decays.contains(&d) {
                jobs[j].config.ema.decays.push(d);
            }
        }
        jobs[j].runs.push(i);
        // Guidance scales are evaluated on the job's checkpoints: it takes
        // the union of its runs' scales.
        let mut scales = jobs[j].config.eval.scales();
        for g in r.config.eval.scales() {
            if !scales.contains(&g) {
                scales.push(g);
            }
        }
        jobs[j].config.eval.guidance_scales = scales;
        let weights = run_weights(pick, &r.assignment, &r.config);
        runs.push(PlannedRun {
            id: String::new(),
            assignment: r.assignment,
            job: j,
            weights,
            config: r.config,
        });
    }
    let problems = axis_problems(spec, &runs);
    if !problems.is_empty() {
        return Err(ConfigError {
            origin: spec.path.display().to_string(),
            problems,
        });
    }
    for job in &mut jobs {
        job.config.ema.decays.sort_by(|a, b| a.total_cmp(b));
        job.id = identity::training_hash(&job.config)[..8].to_string();
    }
    for run in &mut runs {
        run.id = format!("{}-{}", slug(&run.assignment), &jobs[run.job].id[..6]);
        run.config.ema.decays = jobs[run.job].config.ema.decays.clone();
    }
    share_guidance_scales(&mut runs);
    Ok(Plan { runs, jobs })
}

/// The EMA a run's evaluation-only axes pick.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EmaPick {
    /// `ema.decay = μ`: a classic EMA (reconstructed in a power-EMA job).
    Decay(f64),
    /// `ema.std_rel = σ` (one number): a post-hoc EMA of that length.
    StdRel(f64),
}

impl EmaPick {
    fn of_pair((k, v): &(String, toml::Value)) -> Option<EmaPick> {
        let x = v.as_float().or(v.as_integer().map(|x| x as f64));
        match k.as_str() {
            // A non-number is still the axis: the value check names it.
            "ema.decay" => Some(EmaPick::Decay(x.unwrap_or(f64::NAN))),
            // A list is the tracked lengths: a training key like any other.
            "ema.std_rel" => x.map(EmaPick::StdRel),
            _ => None,
        }
    }

    fn of(assignment: &Assignment) -> Option<EmaPick> {
        assignment.iter().find_map(EmaPick::of_pair)
    }
}

/// The weights a run is evaluated with.
fn run_weights(pick: Option<EmaPick>, assignment: &Assignment, cfg: &RunConfig) -> Weights {
    match pick {
        Some(EmaPick::StdRel(s)) => Weights::phema(s),
        // A power-EMA job reconstructs the classic decay at its last step
        // (an out-of-range one is reported by `axis_problems`).
        Some(EmaPick::Decay(d)) if d > 0.0 && cfg.ema.mode == EmaMode::Power => {
            phema::decay_to_std_rel(d, cfg.train.steps).map_or(Weights::Raw, Weights::phema)
        }
        Some(EmaPick::Decay(d)) if d > 0.0 => Weights::ema(d),
        // An `ema.decays` axis of one decay per run: the run reads its EMA.
        _ => match cfg.ema.decays.as_slice() {
            [d] if assignment.iter().any(|(k, _)| k == "ema.decays") => Weights::ema(*d),
            _ => Weights::Raw,
        },
    }
}

/// The EMA axes' values that cannot be evaluated, each once, at its line
/// of the spec.
fn axis_problems(spec: &SweepSpec, runs: &[PlannedRun]) -> Vec<Problem> {
    // The spec's own layer (read() pushes it last); without one, line 1.
    let text = spec.bases.last().map_or("", |b| b.text.as_str());
    let at = |key: &str| {
        let line = crate::config::locate::line_of(text, key);
        Some(format!("{}:{}", spec.path.display(), line.unwrap_or(1)))
    };
    let mut problems = vec![];
    for r in runs {
        let power = r.config.ema.mode == EmaMode::Power;
        let p = match EmaPick::of(&r.assignment) {
            Some(EmaPick::Decay(d)) if !(0.0..1.0).contains(&d) => Problem::new(
                "sweep.ema.decay",
                format!("= {}: each decay must be a number in [0, 1), e.g. 0.999 (0 = the raw weights)", value_of(&r.assignment, "ema.decay")),
            ),
            Some(EmaPick::Decay(d)) if d > 0.0 && power => {
                match phema::decay_to_std_rel(d, r.config.train.steps) {
                    Ok(_) => continue,
                    Err(e) => Problem::new("sweep.ema.decay", format!("= {d}: {e}")),
                }
            }
            Some(EmaPick::StdRel(s)) if !power => Problem::new(
                "sweep.ema.std_rel",
                format!("= {s}: a post-hoc EMA length needs ema.mode = \"power\" in [base] (the job then tracks ema.std_rel = [0.05, 0.10] and reconstructs each length)"),
            ),
            Some(EmaPick::StdRel(s)) => match phema::std_rel_to_exp(s) {
                Ok(_) => continue,
                Err(e) => Problem::new("sweep.ema.std_rel", format!("= {s}: {e}")),
            },
            _ => continue,
        };
        let p = p.clone().at(at(&p.key));
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    problems
}

fn value_of(assignment: &Assignment, key: &str) -> String {
    assignment
        .iter()
        .find(|(k, _)| k == key)
        .map_or(String::new(), |(_, v)| v.to_string())
}

/// Runs of one job with the same evaluation settings are evaluated together
/// (`sweep::evals`): each of their configs lists the union of their guidance
/// scales, so that the one evaluation, with any of their settings, covers
/// every scale. A run's own scale stays `eval.guidance_scale`.
fn share_guidance_scales(runs: &mut [PlannedRun]) {
    let group = |r: &PlannedRun| (r.job, EvalKeys::of(&r.config.eval).combined());
    let groups: Vec<(usize, String)> = runs.iter().map(group).collect();
    let mut scales: Vec<((usize, String), Vec<f64>)> = vec![];
    for (r, g) in runs.iter().zip(&groups) {
        let i = match scales.iter().position(|(k, _)| k == g) {
            Some(i) => i,
            None => {
                scales.push((g.clone(), vec![]));
                scales.len() - 1
            }
        };
        for s in r.config.eval.scales() {
            if !scales[i].1.contains(&s) {
                scales[i].1.push(s);
            }
        }
    }
    for (r, g) in runs.iter_mut().zip(&groups) {
        let union = &scales
            .iter()
            .find(|(k, _)| k == g)
            .expect("every group was seen")
            .1; // ok: built above from the same runs
        if union.len() > 1 {
            r.config.eval.guidance_scales = union.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ema_decay_axis_shares_one_training_job_per_seed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ema.toml");
        std::fs::write(
            &p,
            "[base]\nema.decays = []\n[sweep]\n\"ema.decay\" = [0.999, 0.9999]\nseeds = [0, 1, 2]\n",
        )
        .unwrap();
        let spec = super::super::spec::read(&p).unwrap();
        let plan = plan(&spec, &[], false).unwrap();
        assert_eq!(plan.runs.len(), 6);
        assert_eq!(plan.jobs.len(), 3, "one job per seed");
        for job in &plan.jobs {
            assert_eq!(job.config.ema.decays, vec![0.999, 0.9999]);
            assert_eq!(job.runs.len(), 2);
        }
        assert_eq!(plan.runs[0].weights, Weights::ema(0.999));
        // Seeds vary fastest: run 3 is decay 0.9999 with seed 0, run 0's job.
        assert_eq!(plan.runs[3].weights, Weights::ema(0.9999));
        assert_eq!(plan.runs[0].job, plan.runs[3].job);
        // Ids: unique, readable, and carry the job's hash.
        let ids: std::collections::BTreeSet<&str> =
            plan.runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), 6);
        assert!(
            plan.runs[0].id.starts_with("decay-0.999_seed-0-"),
            "{}",
            plan.runs[0].id
        );
        assert!(plan.runs[0]
            .id
            .ends_with(&plan.jobs[plan.runs[0].job].id[..6]));
    }

    #[test]
    fn decay_0_is_the_raw_weights_of_the_same_job() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ema.toml");
        std::fs::write(
            &p,
            "[base]\nema.decays = []\n[sweep]\n\"ema.decay\" = [0.0, 0.999]\n",
        )
        .unwrap();
        let plan = plan(&super::super::spec::read(&p).unwrap(), &[], false).unwrap();
        assert_eq!(plan.jobs.len(), 1);
        assert_eq!(plan.jobs[0].config.ema.decays, vec![0.999]);
        assert_eq!(plan.runs[0].weights, Weights::Raw);
        assert_eq!(plan.runs[1].weights, Weights::ema(0.999));
    }

    #[test]
    fn bad_decays_on_the_axis_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[sweep]\n\"ema.decay\" = [0.9, 1.5]\n").unwrap();
        let e = plan(&super::super::spec::read(&p).unwrap(), &[], false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.toml:2: sweep.ema.decay: = 1.5: each decay must be a number in [0, 1)"),
            "{e}"
        );
    }

    #[test]
    fn an_ema_decays_axis_trains_a_job_per_value_and_each_run_reads_its_own_ema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("decays.toml");
        std::fs::write(
            &p,
            "[sweep]\n\"ema.decays\" = [[0.999], [0.9999], [0.9, 0.99]]\n",
        )
        .unwrap();
        let plan = plan(&super::super::spec::read(&p).unwrap(), &[], false).unwrap();
        assert_eq!(plan.jobs.len(), 3, "ema.decays is a training key");
        let w: Vec<Weights> = plan.runs.iter().map(|r| r.weights).collect();
        // Several decays in one value: no one EMA is the run's, so raw.
        assert_eq!(w, [Weights::ema(0.999), Weights::ema(0.9999), Weights::Raw]);
    }

    #[test]
    fn training_keys_make_separate_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pred.toml");
        std::fs::write(
            &p,
            "[sweep]\n\"diffusion.prediction\" = [\"epsilon\", \"x0\", \"v\"]\n",
        )
        .unwrap();
        let plan = plan(&super::super::spec::read(&p).unwrap(), &[], false).unwrap();
        assert_eq!(plan.jobs.len(), 3);
        assert!(plan.runs.iter().all(|r| r.weights == Weights::Raw));
    }

    #[test]
    fn eval_keys_share_the_job_and_keep_their_values_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cfg.toml");
        std::fs::write(
            &p,
            "[base]\ndata.labels = true\ntrain.p_uncond = 0.1\n[sweep]\n\"eval.guidance_scale\" = [1.0, 3.0, 5.0]\n\"eval.sampler\" = [\"ddpm\", \"ddim\"]\nseeds = [0, 1]\n",
        )
        .unwrap();
        let plan = plan(&super::super::spec::read(&p).unwrap(), &[], false).unwrap();
        assert_eq!(plan.runs.len(), 12);
        assert_eq!(plan.jobs.len(), 2, "one training job per seed");
        // Guidance slowest, then sampler, seeds fastest: run 4 is (3.0, ddpm, 0).
        assert_eq!(plan.runs[4].config.eval.guidance_scale, 3.0);
        assert_eq!(
            plan.runs[2].config.eval.sampler,
            crate::config::run::SamplerKind::Ddim
        );
        assert_eq!(
            plan.jobs[0].config.eval.guidance_scale, 1.0,
            "the first run's"
        );
        // The shared job evaluates every scale its runs ask for; so does
        // each run's evaluation (per sampler), through the run's config.
        assert_eq!(plan.jobs[0].config.eval.scales(), vec![1.0, 3.0, 5.0]);
        assert_eq!(plan.runs[4].config.eval.scales(), vec![1.0, 3.0, 5.0]);
        assert_eq!(plan.runs[4].config.eval.guidance_scale, 3.0, "its own");
    }

    #[test]
    fn a_std_rel_axis_shares_one_power_job_per_seed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("phema.toml");
        std::fs::write(
            &p,
            "[base]\nema.mode = \"power\"\nema.decays = []\ntrain.steps = 1000\n[sweep]\n\"ema.std_rel\" = [0.01, 0.05, 0.2]\nseeds = [0, 1]\n",
        )
        .unwrap();
        let plan = plan(&super::super::spec::read(&p).unwrap(), &[], false).unwrap();
        assert_eq!(plan.runs.len(), 6);
        assert_eq!(plan.jobs.len(), 2, "one job per seed");
        assert_eq!(
            plan.jobs[0].config.ema.std_rel,
            vec![0.05, 0.10],
            "the tracked pair"
        );
        assert_eq!(plan.runs[0].weights, Weights::phema(0.01));
        assert_eq!(plan.runs[5].weights, Weights::phema(0.2));
        assert!(
            plan.runs[0].id.starts_with("std-rel-0.01_seed-0-"),
            "{}",
            plan.runs[0].id
        );
        // A tracked list on the axis is a training key: a job per value.
        std::fs::write(
            &p,
            "[base]\nema.mode = \"power\"\nema.decays = []\n[sweep]\n\"ema.std_rel\" = [[0.05], [0.1, 0.2]]\n",
        )
        .unwrap();
        let tracked = super::plan(&super::super::spec::read(&p).unwrap(), &[], false).unwrap();
        assert_eq!(tracked.jobs.len(), 2);
        assert!(tracked.runs.iter().all(|r| r.weights == Weights::Raw));
    }

    #[test]
    fn a_decay_axis_of_a_power_job_is_reconstructed_not_tracked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("phema.toml");
        std::fs::write(
            &p,
            "[base]\nema.mode = \"power\"\nema.decays = []\ntrain.steps = 1000\n[sweep]\n\"ema.decay\" = [0.0, 0.99]\n",
        )
        .unwrap();
        let plan = plan(&super::super::spec::read(&p).unwrap(), &[], false).unwrap();
        assert_eq!(plan.jobs.len(), 1);
        assert!(plan.jobs[0].config.ema.decays.is_empty());
        assert_eq!(plan.runs[0].weights, Weights::Raw);
        let s = 0.99f64.sqrt() / ((1.0 - 0.99) * 1000.0);
        assert_eq!(plan.runs[1].weights, Weights::phema(s));
    }

    #[test]
    fn bad_lengths_on_the_axis_are_named_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        let e = |text: &str| {
            std::fs::write(&p, text).unwrap();
            plan(&super::super::spec::read(&p).unwrap(), &[], false)
                .unwrap_err()
                .to_string()
        };
        let err = e("[base]\nema.mode = \"power\"\nema.decays = []\n[sweep]\n\"ema.std_rel\" = [0.05, 0.3]\n");
        assert!(
            err.contains("bad.toml:5: sweep.ema.std_rel: = 0.3: σ_rel = 0.3: must be in (0, 0.28]"),
            "{err}"
        );
        let err = e("[sweep]\n\"ema.std_rel\" = [0.05]\n");
        assert!(err.contains("bad.toml:2: sweep.ema.std_rel: = 0.05: a post-hoc EMA length needs ema.mode = \"power\""), "{err}");
        let err = e("[base]\nema.mode = \"power\"\nema.decays = []\ntrain.steps = 100\n[sweep]\n\"ema.decay\" = [0.9999]\n");
        assert!(
            err.contains("sweep.ema.decay: = 0.9999: ema.decay = 0.9999 at step 100 is σ_rel"),
            "{err}"
        );
    }
}
