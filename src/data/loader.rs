//! Serving training batches, in an order that is a pure function of
//! (seed, step): the stream of samples is epoch 0's permutation, then epoch
//! 1's, …, each drawn from (seed, epoch); step s takes stream positions
//! [s·B, (s+1)·B). Resuming at step s needs no saved state.
//!
//! Two ways to serve them (`data.loader`):
//! * `device`: the whole dataset lives on the training device; a batch is one
//!   `index_select` there (each epoch's permutation is uploaded once), so no
//!   step waits on the host. `auto` picks this when the dataset fits in
//!   [`DEVICE_BUDGET_BYTES`] (always on a CPU).
//! * `prefetch`: the dataset stays in host memory; a background thread gathers
//!   the next batches (double buffering: two in flight), flips them, pins them,
//!   and the trainer copies each to the device without blocking.
//!
//! Both serve the same samples in the same order; random flips are drawn on
//! the device in `device` mode and on the host in `prefetch` mode (each seeded
//! per step, so either resumes exactly).

use super::Dataset;
use crate::rng::mix_seed;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;
use tch::{Device, Kind, Tensor};

/// How batches reach the trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoaderKind {
    /// `device` when the dataset fits in the device budget, else `prefetch`.
    Auto,
    Device,
    Prefetch,
}

/// `auto` keeps a dataset on a GPU up to this many bytes (as f32).
pub const DEVICE_BUDGET_BYTES: i64 = 4 << 30;
/// Batches in flight in `prefetch` mode.
pub const PREFETCH_DEPTH: usize = 2;

/// Tag that separates the data-order seeds from the other seeds of a run.
const DATA_ORDER_TAG: u64 = 0xDA7A;
/// Tag of the flip coins' seed.
const FLIP_TAG: u64 = 0xF11B;

/// One training batch on the training device.
#[derive(Debug)]
pub struct Batch {
    pub x0: Tensor,
    pub labels: Option<Tensor>,
    pub condition: Option<Tensor>,
}

/// The sample order: a function of (seed, epoch) per epoch.
#[derive(Debug, Clone)]
pub struct Order {
    n: i64,
    batch: i64,
    seed: u64,
    cached: Option<(i64, Vec<i64>)>,
}

impl Order {
    pub fn new(n: i64, batch: i64, seed: u64) -> Self {
        Order {
            n,
            batch,
            seed,
            cached: None,
        }
    }

    /// Epoch `epoch`'s permutation of 0..n.
    pub fn permutation(&mut self, epoch: i64) -> &[i64] {
        if self.cached.as_ref().map(|c| c.0) != Some(epoch) {
            let mut p: Vec<i64> = (0..self.n).collect();
            p.shuffle(&mut Pcg64::seed_from_u64(mix_seed(
                self.seed,
                epoch as u64,
                DATA_ORDER_TAG,
            )));
            self.cached = Some((epoch, p));
        }
        &self.cached.as_ref().expect("just filled").1 // ok: filled above
    }

    /// (epoch, position, count) runs that make up step `step`'s batch.
    fn runs(&self, step: u64) -> Vec<(i64, i64, i64)> {
        let mut start = step as i64 * self.batch;
        let end = start + self.batch;
        let mut out = vec![];
        while start < end {
            let (epoch, pos) = (start / self.n, start % self.n);
            let take = (self.n - pos).min(end - start);
            out.push((epoch, pos, take));
            start += take;
        }
        out
    }

    /// The dataset indices of step `step`'s batch.
    pub fn indices(&mut self, step: u64) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.batch as usize);
        for (epoch, pos, take) in self.runs(step) {
            out.extend_from_slice(&self.permutation(epoch)[pos as usize..(pos + take) as usize]);
        }
        out
    }
}

struct DeviceData {
    x: Tensor,
    labels: Option<Tensor>,
    condition: Option<Tensor>,
    order: Order,
    perm: Option<(i64, Tensor)>,
}

/// What the prefetch thread needs to (re)start.
struct HostData {
    x: Tensor,
    labels: Option<Tensor>,
    condition: Option<Tensor>,
    order: Order,
}

impl HostData {
    fn clone_shallow(&self) -> HostData {
        HostData {
            x: self.x.shallow_clone(),
            labels: self.labels.as_ref().map(|t| t.shallow_clone()),
            condition: self.condition.as_ref().map(|t| t.shallow_clone()),
            order: self.order.clone(),
        }
    }
}

struct Prefetch {
    data: HostData,
    rx: Option<Receiver<(u64, Batch)>>,
    handle: Option<JoinHandle<()>>,
    next: u64,
}

enum Inner {
    Device(DeviceData),
    Prefetch(Prefetch),
}

/// Serves batches for the trainer; see the module notes.
pub struct Batcher {
    inner: Inner,
    device: Device,
    flip: bool,
    seed: u64,
}

impl Batcher {
    /// `use_labels` / `use_condition`: serve the labels / condition vectors too;
    /// `kind`: how (see the module notes).
    pub fn new(
        ds: &Dataset,
        device: Device,
        batch: i64,
        seed: u64,
        use_labels: bool,
        use_condition: bool,
        kind: LoaderKind,
    ) -> Self {
        let pick = |t: &Option<Tensor>, used: bool| {
            if used {
                t.as_ref().map(|t| t.shallow_clone())
            } else {
                None
            }
        };
        let (labels, condition) = (
            pick(&ds.labels, use_labels),
            pick(&ds.condition, use_condition),
        );
        let order = Order::new(ds.len(), batch, seed);
        let bytes = ds.x.numel() as i64 * 4;
        let on_device = match kind {
            LoaderKind::Device => true,
            LoaderKind::Prefetch => false,
            LoaderKind::Auto => !device.is_cuda() || bytes <= DEVICE_BUDGET_BYTES,
        };
        let inner = if on_device {
            Inner::Device(DeviceData {
                x: ds.x.to_device(device).to_kind(Kind::Float),
                labels: labels.map(|t| t.to_device(device)),
                condition: condition.map(|t| t.to_device(device)),
                order,
                perm: None,
            })
        } else {
            Inner::Prefetch(Prefetch {
                data: HostData {
                    x: ds.x.to_kind(Kind::Float),
                    labels,
                    condition,
                    order,
                },
                rx: None,
                handle: None,
                next: 0,
            })
        };
        Batcher {
            inner,
            device,
            flip: false,
            seed,
        }
    }

    /// Flip each image of a batch horizontally with probability 1/2.
    pub fn with_flip(mut self, flip: bool) -> Self {
        self.flip = flip;
        self
    }

    /// Which way batches are served.
    pub fn kind(&self) -> LoaderKind {
        match self.inner {
            Inner::Device(_) => LoaderKind::Device,
            Inner::Prefetch(_) => LoaderKind::Prefetch,
        }
    }

    pub fn batch(&mut self, step: u64) -> Batch {
        let (device, flip, seed) = (self.device, self.flip, self.seed);
        match &mut self.inner {
            Inner::Device(d) => {
                let mut parts = vec![];
                for (epoch, pos, take) in d.order.runs(step) {
                    if d.perm.as_ref().map(|p| p.0) != Some(epoch) {
                        let p = Tensor::from_slice(d.order.permutation(epoch)).to_device(device);
                        d.perm = Some((epoch, p));
                    }
                    let perm = &d.perm.as_ref().expect("just set").1; // ok: set above
                    parts.push(perm.narrow(0, pos, take));
                }
                let idx = if parts.len() == 1 {
                    parts.pop().expect("one part")
                } else {
                    Tensor::cat(&parts, 0)
                }; // ok: len checked
                let mut x0 = d.x.index_select(0, &idx);
                if flip {
                    tch::manual_seed(mix_seed(seed, step, FLIP_TAG) as i64);
                    let b = x0.size()[0];
                    let coin = Tensor::rand([b, 1, 1, 1], (Kind::Float, device)).lt(0.5);
                    x0 = x0.flip([3]).where_self(&coin, &x0);
                }
                Batch {
                    x0,
                    labels: d.labels.as_ref().map(|l| l.index_select(0, &idx)),
                    condition: d.condition.as_ref().map(|c| c.index_select(0, &idx)),
                }
            }
            Inner::Prefetch(p) => {
                if p.rx.is_none() || p.next != step {
                    p.start(step, device, flip, seed);
                }
                let received = p.rx.as_ref().and_then(|rx| rx.recv().ok());
                let (got, b) = match received {
                    Some(x) => x,
                    None => {
                        // The thread died (it cannot, short of a libtorch panic): make this
                        // batch here rather than fail the run.
                        let mut h = p.data.clone_shallow();
                        (step, host_batch(&mut h, step, flip, seed, None))
                    }
                };
                debug_assert_eq!(got, step);
                p.next = step + 1;
                let to = |t: Tensor| {
                    if device.is_cuda() {
                        t.to_device_(device, t.kind(), true, false)
                    } else {
                        t
                    }
                };
                Batch {
                    x0: to(b.x0),
                    labels: b.labels.map(to),
                    condition: b.condition.map(to),
                }
            }
        }
    }
}

/// Gather, flip and (for a GPU) pin one batch on the host.
fn host_batch(h: &mut HostData, step: u64, flip: bool, seed: u64, pin: Option<Device>) -> Batch {
    let idx = Tensor::from_slice(&h.order.indices(step));
    let mut x0 = h.x.index_select(0, &idx);
    if flip {
        let b = x0.size()[0];
        let mut rng = Pcg64::seed_from_u64(mix_seed(seed, step, FLIP_TAG));
        let coins: Vec<bool> = (0..b).map(|_| rng.random::<bool>()).collect();
        let coin = Tensor::from_slice(&coins).reshape([b, 1, 1, 1]);
        x0 = x0.flip([3]).where_self(&coin, &x0);
    }
    let pinned = |t: Tensor| match pin {
        Some(d) => t.pin_memory(d),
        None => t,
    };
    Batch {
        x0: pinned(x0),
        labels: h.labels.as_ref().map(|l| pinned(l.index_select(0, &idx))),
        condition: h
            .condition
            .as_ref()
            .map(|c| pinned(c.index_select(0, &idx))),
    }
}

impl Prefetch {
    /// (Re)start the producer thread at `step`.
    fn start(&mut self, step: u64, device: Device, flip: bool, seed: u64) {
        self.rx = None; // the old producer sees the closed channel and ends
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let (tx, rx) = sync_channel(PREFETCH_DEPTH);
        let mut data = self.data.clone_shallow();
        let pin = device.is_cuda().then_some(device);
        self.handle = Some(std::thread::spawn(move || {
            let mut s = step;
            loop {
                let b = host_batch(&mut data, s, flip, seed, pin);
                if tx.send((s, b)).is_err() {
                    return;
                }
                s += 1;
            }
        }));
        self.rx = Some(rx);
        self.next = step;
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(n: i64) -> Dataset {
        Dataset {
            x: Tensor::arange(n, (Kind::Float, Device::Cpu))
                .reshape([n, 1, 1, 1])
                .repeat([1, 1, 1, 2])
                + Tensor::from_slice(&[0.0f32, 0.5]).reshape([1, 1, 1, 2]),
            labels: Some(Tensor::arange(n, (Kind::Int64, Device::Cpu))),
            num_classes: None,
            class_names: None,
            condition: None,
            stats: None,
        }
    }

    #[test]
    fn every_epoch_visits_every_sample_once() {
        let mut o = Order::new(10, 4, 7);
        // 5 steps of 4 = 2 epochs of 10.
        let all: Vec<i64> = (0..5).flat_map(|s| o.indices(s)).collect();
        let (mut e0, mut e1) = (all[..10].to_vec(), all[10..].to_vec());
        e0.sort();
        e1.sort();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
        assert_eq!(e1, (0..10).collect::<Vec<_>>());
        assert_ne!(all[..10], all[10..], "epochs are shuffled differently");
    }

    #[test]
    fn order_is_a_function_of_seed_and_step() {
        let mut a = Order::new(50, 8, 3);
        let a9 = (0..10).map(|s| a.indices(s)).last().unwrap();
        // A resumed run jumps straight to step 9.
        assert_eq!(Order::new(50, 8, 3).indices(9), a9);
        assert_ne!(Order::new(50, 8, 4).indices(9), a9);
    }

    #[test]
    fn prefetch_serves_what_device_mode_serves_and_follows_jumps() {
        let data = ds(23);
        let mut dev = Batcher::new(&data, Device::Cpu, 5, 11, true, false, LoaderKind::Device);
        let mut pre = Batcher::new(&data, Device::Cpu, 5, 11, true, false, LoaderKind::Prefetch);
        assert_eq!(pre.kind(), LoaderKind::Prefetch);
        for step in [0u64, 1, 2, 3, 9, 10, 4] {
            let (a, b) = (dev.batch(step), pre.batch(step));
            assert!(a.x0.equal(&b.x0), "step {step}");
            assert!(a.labels.unwrap().equal(&b.labels.unwrap()), "step {step}");
        }
    }

    #[test]
    fn flips_mirror_about_half_the_images_the_same_way_each_time() {
        let data = ds(64);
        for kind in [LoaderKind::Device, LoaderKind::Prefetch] {
            let mut b = Batcher::new(&data, Device::Cpu, 64, 1, true, false, kind).with_flip(true);
            let x = b.batch(0).x0;
            // Column 0 holds i and column 1 holds i + 0.5; a flipped image swaps them.
            let flipped = x
                .select(3, 0)
                .gt_tensor(&x.select(3, 1))
                .sum(Kind::Int64)
                .int64_value(&[]);
            assert!((16..48).contains(&flipped), "{kind:?}: {flipped} of 64");
            let again = b.batch(0).x0;
            assert!(x.equal(&again), "{kind:?}: flips are seeded per step");
        }
    }
}
