//! The first n samples of the held-out split as a model sees them: the data
//! on the evaluation device, with the class labels or condition vectors the
//! run is conditioned on (and only those). The per-timestep loss probe and
//! bits/dim both evaluate on such a set.

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::model::embedding::Conditioning;
use tch::{Device, Tensor};

pub struct HeldOut {
    /// [n, …] in model units.
    pub x: Tensor,
    pub labels: Option<Tensor>,
    pub vector: Option<Tensor>,
}

impl HeldOut {
    /// The first `n` samples of `test` (at least 1, at most all).
    pub fn first(cfg: &RunConfig, test: &Dataset, n: i64, device: Device) -> HeldOut {
        let n = n.min(test.len()).max(1);
        let head = |t: &Tensor| t.narrow(0, 0, n).to_device(device);
        HeldOut {
            x: head(&test.x),
            labels: test.labels.as_ref().filter(|_| cfg.data.labels).map(head),
            vector: test
                .condition
                .as_ref()
                .filter(|_| cfg.data.uses_vector_condition())
                .map(head),
        }
    }

    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The conditioning of samples [start, start + len).
    pub fn conditioning(&self, start: i64, len: i64) -> Conditioning {
        Conditioning {
            labels: self.labels.as_ref().map(|l| l.narrow(0, start, len)),
            vector: self.vector.as_ref().map(|v| v.narrow(0, start, len)),
            vector_dropped: None,
        }
    }
}
