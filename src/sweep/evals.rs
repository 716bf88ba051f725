//! A job's evaluations, and whether each is done, missing or stale.
//!
//! Runs that share a training job may still ask for different evaluations
//! (an `eval.sampler` axis, a changed `eval.num_samples`). The job is
//! evaluated once per distinct evaluation key among its runs, each time with
//! the settings of the group's first run, for the union of the group's weight
//! sets (and the raw weights, the reference every EMA is compared against).
//! A completed job whose evaluations are all done is skipped; one with an
//! evaluation missing is evaluated; one evaluated with other settings is
//! re-evaluated, and the plan says which settings changed.

use super::plan::{Job, Plan};
use super::results::Action;
use crate::config::run::EvalConfig;
use crate::run::records::EvalTask;
use crate::run::{EvalDir, EvalKeys, Freshness, SweepDir, Weights};

/// One evaluation of a job with the settings it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEval {
    pub task: EvalTask,
    pub eval: EvalConfig,
    /// The runs whose metrics it computes, with their weight sets.
    pub members: Vec<(String, Weights)>,
}

/// The evaluations of `job`, one per evaluation key among its runs, in plan
/// order.
pub fn job_evals(plan: &Plan, job: &Job) -> Vec<JobEval> {
    let mut keys: Vec<String> = vec![];
    let mut out: Vec<JobEval> = vec![];
    for &r in &job.runs {
        let run = &plan.runs[r];
        let key = EvalKeys::of(&run.config.eval).combined();
        let i = match keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                keys.push(key);
                out.push(JobEval {
                    task: EvalTask {
                        run: run.id.clone(),
                        weights: vec![],
                    },
                    eval: run.config.eval.clone(),
                    members: vec![],
                });
                out.len() - 1
            }
        };
        out[i].members.push((run.id.clone(), run.weights));
        let weights = &mut out[i].task.weights;
        if !weights.contains(&run.weights) {
            weights.push(run.weights);
        }
    }
    for e in &mut out {
        if !e.task.weights.contains(&Weights::Raw) {
            e.task.weights.push(Weights::Raw);
        }
    }
    out
}

/// What a job found as `action` needs once its evaluations are counted: a
/// completed job with an evaluation missing is evaluated, one evaluated
/// with other settings re-evaluated (with what changed, for the plan).
pub fn with_evals(
    action: Action,
    dir: &SweepDir,
    id: &str,
    evals: &[JobEval],
    no_eval: bool,
) -> (Action, Vec<String>) {
    if action != Action::SkipCompleted || no_eval {
        return (action, vec![]);
    }
    let job = dir.job(id);
    let eval_dir = EvalDir::new(job.eval());
    let mut missing = false;
    let mut changes: Vec<String> = vec![];
    for e in evals {
        match eval_dir.freshness(&job, &e.task.weights, &e.eval) {
            Freshness::Done => {}
            Freshness::Missing => missing = true,
            Freshness::Stale { changes: c } => {
                for change in c {
                    if !changes.contains(&change) {
                        changes.push(change);
                    }
                }
            }
        }
    }
    if !changes.is_empty() {
        (Action::Reevaluate, changes)
    } else if missing {
        (Action::Evaluate, vec![])
    } else {
        (action, vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_job_with_other_samplers_get_their_own_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cfg.toml");
        std::fs::write(
            &p,
            "[base]\nema.decays = []\n[sweep]\n\"eval.sampler\" = [\"ddpm\", \"ddim\"]\n\"ema.decay\" = [0.0, 0.9]\n",
        )
        .unwrap();
        let spec = super::super::spec::read(&p).unwrap();
        let plan = super::super::plan::plan(&spec, &[], false).unwrap();
        assert_eq!(plan.jobs.len(), 1);
        let evals = job_evals(&plan, &plan.jobs[0]);
        assert_eq!(evals.len(), 2, "one per sampler");
        for e in &evals {
            assert_eq!(e.task.weights, vec![Weights::Raw, Weights::ema(0.9)]);
        }
        assert_eq!(evals[0].eval.sampler, crate::config::run::SamplerKind::Ddpm);
        assert_eq!(evals[1].eval.sampler, crate::config::run::SamplerKind::Ddim);
        // Each names a run of its group, whose folder holds its settings.
        let run = |id: &str| plan.runs.iter().find(|r| r.id == id).unwrap();
        assert_eq!(
            run(&evals[1].task.run).config.eval.sampler,
            evals[1].eval.sampler
        );
        // Each run is a member of exactly the evaluation with its settings,
        // with its own weight set (where its TensorBoard metrics come from).
        for e in &evals {
            assert_eq!(e.members.len(), 2);
            for (id, w) in &e.members {
                assert_eq!(run(id).config.eval.sampler, e.eval.sampler);
                assert_eq!(run(id).weights, *w);
            }
        }
    }
}
