//! Scheduling training jobs over slots: longest estimated job first, each slot
//! running one job at a time, until the queue is empty or a stop is asked for.
//!
//! Greedy longest-first (LPT) keeps the sweep's end close to the longest job's
//! end: the long jobs start early, the short ones fill the gaps. Running a job
//! is a [`SlotWorker`]'s business (the runner's, which hands it to an
//! executor; a mock in the tests), so the policy is tested without training
//! anything.

use super::devices::Slot;
use crate::run::StopToken;
use std::collections::VecDeque;
use std::sync::Mutex;

/// A job to schedule: an index of the caller's, and its estimated cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Task {
    pub job: usize,
    pub cost: f64,
}

/// Runs one task in one slot and reports how it went. Called from one thread
/// per slot, so implementations must be `Sync`.
pub trait SlotWorker: Sync {
    type Output: Send;
    fn run(&self, task: &Task, slot: &Slot) -> Self::Output;
}

/// One job that was run: where, in which order it was started, and its output.
#[derive(Debug)]
pub struct Dispatched<O> {
    pub task: Task,
    pub slot: usize,
    /// 0 for the first job started, 1 for the next, …
    pub order: usize,
    pub output: O,
}

/// The queue order: longest first; equal costs keep the plan's order.
pub fn queue_order(mut tasks: Vec<Task>) -> Vec<Task> {
    tasks.sort_by(|a, b| b.cost.total_cmp(&a.cost).then(a.job.cmp(&b.job)));
    tasks
}

/// Run every task once, each slot one at a time. Once `stop` is set, no new
/// task starts (running ones finish through their executor); the tasks never
/// started are simply absent from the result.
pub fn run_all<W: SlotWorker>(
    tasks: Vec<Task>,
    slots: &[Slot],
    worker: &W,
    stop: &StopToken,
) -> Vec<Dispatched<W::Output>> {
    let queue = Mutex::new((VecDeque::from(queue_order(tasks)), 0usize));
    let done = Mutex::new(vec![]);
    std::thread::scope(|scope| {
        for slot in slots {
            let (queue, done) = (&queue, &done);
            scope.spawn(move || loop {
                if stop.is_stopped() {
                    break;
                }
                let next = {
                    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                    let order = q.1;
                    q.0.pop_front().map(|t| {
                        q.1 += 1;
                        (t, order)
                    })
                };
                let Some((task, order)) = next else { break };
                let output = worker.run(&task, slot);
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Dispatched {
                        task,
                        slot: slot.index,
                        order,
                        output,
                    });
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|d| d.order);
    done
}

#[cfg(test)]
mod tests {
    use super::super::devices::{slots, DeviceRequest};
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// Pretends to train: sleeps in proportion to the cost, and records how
    /// many jobs each device is running at once.
    struct Mock {
        running: Mutex<BTreeMap<String, usize>>,
        peak: Mutex<BTreeMap<String, usize>>,
        runs: Mutex<Vec<usize>>,
        stop_after: Option<(usize, StopToken)>,
    }

    impl SlotWorker for Mock {
        type Output = String;
        fn run(&self, task: &Task, slot: &Slot) -> String {
            let label = slot.label();
            {
                let mut r = self.running.lock().unwrap();
                let n = r.entry(label.clone()).or_default();
                *n += 1;
                let mut p = self.peak.lock().unwrap();
                let peak = p.entry(label.clone()).or_default();
                *peak = (*peak).max(*n);
            }
            let count = {
                let mut runs = self.runs.lock().unwrap();
                runs.push(task.job);
                runs.len()
            };
            if let Some((n, stop)) = &self.stop_after {
                if count >= *n {
                    stop.stop();
                }
            }
            std::thread::sleep(Duration::from_millis(2 + task.cost as u64));
            *self.running.lock().unwrap().get_mut(&label).unwrap() -= 1;
            label
        }
    }

    fn mock(stop_after: Option<(usize, StopToken)>) -> Mock {
        Mock {
            running: Mutex::new(BTreeMap::new()),
            peak: Mutex::new(BTreeMap::new()),
            runs: Mutex::new(vec![]),
            stop_after,
        }
    }

    fn tasks(n: usize) -> Vec<Task> {
        // Costs in a scrambled order, with ties.
        (0..n)
            .map(|job| Task {
                job,
                cost: ((job * 7) % 11) as f64 * 3.0,
            })
            .collect()
    }

    #[test]
    fn four_gpus_with_two_slots_each_respect_limits_run_everything_once_longest_first() {
        let inventory = slots(&DeviceRequest::Auto, 4, None, 2, 1, 16).unwrap();
        assert_eq!(inventory.len(), 8);
        let m = mock(None);
        let done = run_all(tasks(40), &inventory, &m, &StopToken::new());
        // Every job exactly once.
        let mut jobs: Vec<usize> = m.runs.lock().unwrap().clone();
        jobs.sort();
        assert_eq!(jobs, (0..40).collect::<Vec<_>>());
        assert_eq!(done.len(), 40);
        // Never more than two jobs on one GPU, and every GPU used.
        let peak = m.peak.lock().unwrap().clone();
        assert_eq!(peak.len(), 4, "{peak:?}");
        assert!(peak.values().all(|&p| p <= 2), "{peak:?}");
        assert!(
            peak.values().any(|&p| p == 2),
            "slots are used in parallel: {peak:?}"
        );
        // Started longest first; ties in plan order.
        let costs: Vec<f64> = done.iter().map(|d| d.task.cost).collect();
        assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{costs:?}");
        for w in done.windows(2) {
            if w[0].task.cost == w[1].task.cost {
                assert!(w[0].task.job < w[1].task.job);
            }
        }
        // Outputs come back with their slot.
        for d in &done {
            assert_eq!(d.output, inventory[d.slot].label());
        }
    }

    #[test]
    fn a_stop_starts_nothing_new() {
        let stop = StopToken::new();
        let inventory = slots(&DeviceRequest::Cpu, 0, None, 1, 2, 2).unwrap();
        let m = mock(Some((3, stop.clone())));
        let done = run_all(tasks(20), &inventory, &m, &stop);
        // The third start sets the flag; at most one more (the other slot's
        // in-flight pick) can have started.
        assert!((3..=4).contains(&done.len()), "{}", done.len());
    }
}
