//! Training data: sources that make or read samples, held in memory as one
//! tensor, and a [`Batcher`] that serves batches in a seeded, resumable order.
//!
//! Every source yields samples scaled to [−1, 1] (images [N, C, H, W], vectors
//! [N, D]) with optional class labels.

pub mod synthetic;
pub mod toy;

use crate::config::run::{DataSource, RunConfig};
use crate::rng::mix_seed;
use tch::{Device, Kind, Tensor};

/// A whole dataset in memory.
#[derive(Debug)]
pub struct Dataset {
    /// [N, …] f32 in [−1, 1].
    pub x: Tensor,
    /// [N] int64, when the source has classes.
    pub labels: Option<Tensor>,
    pub num_classes: Option<i64>,
    /// [N, D] f32: a continuous condition per sample, when the source has one.
    pub condition: Option<Tensor>,
}

impl Dataset {
    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Build the dataset a (validated) config names.
pub fn load(cfg: &RunConfig) -> Dataset {
    let d = &cfg.data;
    match d.source {
        DataSource::Toy => {
            let s = toy::generate(d.toy, d.n_samples, d.seed);
            let n = d.n_samples as i64;
            let flat: Vec<f32> = s.points.iter().flatten().copied().collect();
            let (labels, num_classes) = match s.labels {
                Some((l, c)) => (Some(Tensor::from_slice(&l)), Some(c)),
                None => (None, None),
            };
            Dataset {
                x: Tensor::from_slice(&flat).reshape([n, 2]),
                labels,
                num_classes,
                condition: s
                    .condition
                    .map(|(c, dim)| Tensor::from_slice(&c).reshape([n, dim])),
            }
        }
        DataSource::Synthetic => {
            let (x, y) = synthetic::generate(d.n_samples, &d.shape, d.seed);
            Dataset {
                x,
                labels: Some(y),
                num_classes: Some(synthetic::NUM_CLASSES),
                condition: None,
            }
        }
    }
}

/// One training batch on the training device.
#[derive(Debug)]
pub struct Batch {
    pub x0: Tensor,
    pub labels: Option<Tensor>,
    pub condition: Option<Tensor>,
}

/// Serves batches from a device-resident copy of the data, in an order that is a
/// pure function of (seed, step): the stream of samples is epoch 0's permutation,
/// then epoch 1's, …, and step s takes positions [s·B, (s+1)·B). Resuming at step
/// s therefore needs no saved state, and no step waits on the host.
pub struct Batcher {
    x: Tensor,
    labels: Option<Tensor>,
    condition: Option<Tensor>,
    n: i64,
    batch: i64,
    seed: u64,
    perm: Option<(i64, Tensor)>,
}

/// Tag that separates the data-order seeds from the other seeds of a run.
const DATA_ORDER_TAG: u64 = 0xDA7A;

impl Batcher {
    /// `use_labels` / `use_condition`: serve the labels / condition vectors too.
    pub fn new(
        ds: &Dataset,
        device: Device,
        batch: i64,
        seed: u64,
        use_labels: bool,
        use_condition: bool,
    ) -> Self {
        let on_device = |t: &Option<Tensor>, used: bool| {
            if used {
                t.as_ref().map(|t| t.to_device(device))
            } else {
                None
            }
        };
        Batcher {
            x: ds.x.to_device(device).to_kind(Kind::Float),
            labels: on_device(&ds.labels, use_labels),
            condition: on_device(&ds.condition, use_condition),
            n: ds.len(),
            batch,
            seed,
            perm: None,
        }
    }

    fn permutation(&mut self, epoch: i64) -> Tensor {
        match &self.perm {
            Some((e, p)) if *e == epoch => p.shallow_clone(),
            _ => {
                tch::manual_seed(mix_seed(self.seed, epoch as u64, DATA_ORDER_TAG) as i64);
                let p = Tensor::randperm(self.n, (Kind::Int64, self.x.device()));
                self.perm = Some((epoch, p.shallow_clone()));
                p
            }
        }
    }

    /// The dataset indices of step `step`'s batch.
    pub fn indices(&mut self, step: u64) -> Tensor {
        let mut start = step as i64 * self.batch;
        let end = start + self.batch;
        let mut parts = vec![];
        while start < end {
            let (epoch, pos) = (start / self.n, start % self.n);
            let take = (self.n - pos).min(end - start);
            parts.push(self.permutation(epoch).narrow(0, pos, take));
            start += take;
        }
        if parts.len() == 1 {
            parts.pop().expect("one part") // ok: just checked
        } else {
            Tensor::cat(&parts, 0)
        }
    }

    pub fn batch(&mut self, step: u64) -> Batch {
        let idx = self.indices(step);
        Batch {
            x0: self.x.index_select(0, &idx),
            labels: self.labels.as_ref().map(|l| l.index_select(0, &idx)),
            condition: self.condition.as_ref().map(|c| c.index_select(0, &idx)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(n: i64) -> Dataset {
        Dataset {
            x: Tensor::arange(n, (Kind::Float, Device::Cpu)).unsqueeze(1),
            labels: None,
            num_classes: None,
            condition: None,
        }
    }

    #[test]
    fn every_epoch_visits_every_sample_once() {
        let mut b = Batcher::new(&ds(10), Device::Cpu, 4, 7, false, false);
        // 5 steps of 4 = 2 epochs of 10.
        let all: Vec<i64> = (0..5)
            .flat_map(|s| Vec::<i64>::try_from(&b.indices(s)).unwrap())
            .collect();
        let mut e0 = all[..10].to_vec();
        let mut e1 = all[10..].to_vec();
        e0.sort();
        e1.sort();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
        assert_eq!(e1, (0..10).collect::<Vec<_>>());
        assert_ne!(all[..10], all[10..], "epochs are shuffled differently");
    }

    #[test]
    fn order_is_a_function_of_seed_and_step() {
        let mut a = Batcher::new(&ds(50), Device::Cpu, 8, 3, false, false);
        let mut b = Batcher::new(&ds(50), Device::Cpu, 8, 3, false, false);
        let mut c = Batcher::new(&ds(50), Device::Cpu, 8, 4, false, false);
        // b jumps straight to step 9, as a resumed run does.
        let a9: Vec<i64> = (0..10)
            .map(|s| a.indices(s))
            .last()
            .map(|t| Vec::try_from(&t).unwrap())
            .unwrap();
        let b9: Vec<i64> = Vec::try_from(&b.indices(9)).unwrap();
        let c9: Vec<i64> = Vec::try_from(&c.indices(9)).unwrap();
        assert_eq!(a9, b9);
        assert_ne!(a9, c9);
    }
}
