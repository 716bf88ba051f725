//! Every trainable parameter as a view into one flat f32 buffer, and every
//! gradient as a view into a second one.
//!
//! Why: AdamW, all EMA updates, gradient clipping and loss-scale unscaling then
//! become a handful of tensor ops on two big tensors, whatever the number of
//! layers (the UNet has ~250 parameter tensors; a per-tensor loop costs ~250
//! kernel launches per op on a GPU). It also makes checkpoints and EMA copies one
//! tensor each.
//!
//! How: the model is built as usual in a `VarStore`; then each variable's data is
//! re-pointed (`set_data`) at a slice of the flat buffer. Gradients are created
//! once by a zero backward pass and re-pointed the same way; autograd then
//! accumulates into them in place (PyTorch's AccumulateGrad adds into an existing
//! `.grad` when not building a graph), so `grad.zero_()` on the flat buffer
//! resets them all.
//!
//! With `precision = "bf16-pure"` the network computes in bf16 (no autocast, so
//! none of the casts it adds around every layer), while AdamW, clipping, the EMAs and
//! checkpoints keep working on the fp32 buffers above: the variables then point
//! into a bf16 copy of `flat` ([`Compute`]), refreshed from it by one cast after
//! each update ([`FlatParams::publish`]), and autograd accumulates into a bf16
//! gradient buffer that one cast brings into `grad` ([`FlatParams::gather_grad`]).

use tch::{nn, Device, Kind, Tensor};

/// The network's own low-precision copies of the flat buffers (bf16-pure).
pub struct Compute {
    /// [P] in the compute dtype: what the variables point into.
    pub weights: Tensor,
    /// [P] in the compute dtype: where autograd accumulates.
    pub grad: Tensor,
}

/// The flat parameter and gradient buffers of a `VarStore`.
pub struct FlatParams {
    /// Parameter names in buffer order (sorted), with their shapes and offsets.
    pub names: Vec<String>,
    pub shapes: Vec<Vec<i64>>,
    pub offsets: Vec<i64>,
    /// The parameters' tensors (views into `flat`).
    pub vars: Vec<Tensor>,
    /// [P] f32: every parameter.
    pub flat: Tensor,
    /// [P] f32: every gradient.
    pub grad: Tensor,
    /// None: the variables are views of `flat` and `grad` themselves.
    pub compute: Option<Compute>,
}

impl FlatParams {
    /// Re-point every trainable variable of `vs` into one buffer on `device`;
    /// with a `compute` kind other than f32, into a copy of it in that kind.
    pub fn new(vs: &nn::VarStore, device: Device, compute: Kind) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let shapes: Vec<Vec<i64>> = named.iter().map(|(_, t)| t.size()).collect();
        let mut offsets = vec![];
        let mut total = 0i64;
        for (_, t) in &named {
            offsets.push(total);
            total += t.numel() as i64;
        }
        let mut fp = FlatParams {
            names: named.iter().map(|(n, _)| n.clone()).collect(),
            shapes,
            offsets,
            vars: vec![],
            flat: Tensor::zeros([total], (Kind::Float, device)),
            grad: Tensor::zeros([total], (Kind::Float, device)),
            compute: (compute != Kind::Float).then(|| Compute {
                weights: Tensor::zeros([total], (compute, device)),
                grad: Tensor::zeros([total], (compute, device)),
            }),
        };
        tch::no_grad(|| {
            for (i, (_, mut var)) in named.into_iter().enumerate() {
                fp.view_of(&fp.flat, i).copy_(&var);
                var.set_data(&fp.view_of(fp.network_weights(), i));
                fp.vars.push(var);
            }
        });
        fp.publish();
        // Create every .grad with a zero backward pass, then re-point them too.
        let zero: Tensor = fp.vars.iter().map(|v| v.sum(Kind::Float) * 0.0).sum();
        zero.backward();
        tch::no_grad(|| {
            for (i, v) in fp.vars.iter().enumerate() {
                v.grad().set_data(&fp.view_of(fp.network_grad(), i));
            }
        });
        fp.zero_grad();
        fp
    }

    /// What the variables point into: `flat`, or its bf16 copy.
    fn network_weights(&self) -> &Tensor {
        self.compute.as_ref().map_or(&self.flat, |c| &c.weights)
    }

    /// Where autograd accumulates: `grad`, or its bf16 copy.
    fn network_grad(&self) -> &Tensor {
        self.compute.as_ref().map_or(&self.grad, |c| &c.grad)
    }

    /// Zero the buffer autograd accumulates into, before a backward pass.
    pub fn zero_grad(&self) {
        let _ = tch::no_grad(|| self.network_grad().shallow_clone().zero_());
    }

    /// After a backward pass: bring the network's gradients into `grad` (f32),
    /// where clipping and AdamW read them (bf16-pure; otherwise they are there).
    pub fn gather_grad(&self) {
        if let Some(c) = &self.compute {
            tch::no_grad(|| self.grad.shallow_clone().copy_(&c.grad));
        }
    }

    /// After `flat` was written (an update, a restore): let the network see it
    /// (bf16-pure: one cast into its copy; otherwise it is already there).
    pub fn publish(&self) {
        if let Some(c) = &self.compute {
            tch::no_grad(|| c.weights.shallow_clone().copy_(&self.flat));
        }
    }

    /// The number of parameters.
    pub fn len(&self) -> i64 {
        self.flat.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parameter `i` of a flat buffer laid out like `self.flat` (e.g. an EMA), as a view.
    pub fn view_of(&self, buffer: &Tensor, i: usize) -> Tensor {
        buffer
            .narrow(0, self.offsets[i], self.shapes[i].iter().product())
            .view(self.shapes[i].as_slice())
    }

    /// (name, view) for every parameter of a flat buffer, e.g. to save it.
    pub fn named_views(&self, buffer: &Tensor) -> Vec<(String, Tensor)> {
        (0..self.names.len())
            .map(|i| (self.names[i].clone(), self.view_of(buffer, i)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::Module;

    /// Two linear layers `a` (3→4) and `b` (4→2) in one VarStore, and a copy
    /// of their initial variables sorted by name.
    fn two_linears() -> (nn::VarStore, nn::Linear, nn::Linear, Vec<(String, Tensor)>) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let l1 = nn::linear(&root / "a", 3, 4, Default::default());
        let l2 = nn::linear(&root / "b", 4, 2, Default::default());
        let mut init: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        init.sort_by(|a, b| a.0.cmp(&b.0));
        (vs, l1, l2, init)
    }

    #[test]
    fn parameters_and_gradients_live_in_the_flat_buffers() {
        let (vs, l1, l2, before) = two_linears();
        let fp = FlatParams::new(&vs, Device::Cpu, Kind::Float);
        assert_eq!(fp.len(), 3 * 4 + 4 + 4 * 2 + 2);
        assert_eq!(fp.names, vec!["a.bias", "a.weight", "b.bias", "b.weight"]);
        // Values survived the move.
        for (i, (name, t)) in before.iter().enumerate() {
            assert_eq!(&fp.names[i], name);
            assert!(fp.view_of(&fp.flat, i).equal(t));
        }
        // Writing the flat buffer changes what the model computes.
        let x = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
        let y0 = l2.forward(&l1.forward(&x));
        tch::no_grad(|| {
            let _ = fp.flat.shallow_clone().g_mul_scalar_(2.0);
        });
        let y1 = l2.forward(&l1.forward(&x));
        assert!(!y0.allclose(&y1, 1e-6, 1e-6, false));
        // Backward accumulates into the flat gradient, in place, step after step.
        let loss = l2.forward(&l1.forward(&x)).square().sum(Kind::Float);
        loss.backward();
        let expect = Tensor::cat(
            &fp.vars
                .iter()
                .map(|v| v.grad().flatten(0, -1))
                .collect::<Vec<_>>(),
            0,
        );
        assert!(fp.grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(fp.grad.equal(&expect));
        let g1 = fp.grad.copy();
        let loss = l2.forward(&l1.forward(&x)).square().sum(Kind::Float);
        loss.backward();
        assert!(
            fp.grad.allclose(&(&g1 * 2.0), 1e-5, 1e-6, false),
            "accumulated in place"
        );
        let _ = fp.grad.shallow_clone().zero_();
        assert_eq!(
            fp.vars[0].grad().abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
    }

    #[test]
    fn bf16_compute_copy_follows_the_f32_master_buffers() {
        let (vs, l1, l2, init) = two_linears();
        let fp = FlatParams::new(&vs, Device::Cpu, Kind::BFloat16);
        let c = fp.compute.as_ref().expect("a bf16 copy");
        assert_eq!((fp.flat.kind(), fp.grad.kind()), (Kind::Float, Kind::Float));
        assert_eq!(
            (c.weights.kind(), c.grad.kind()),
            (Kind::BFloat16, Kind::BFloat16)
        );
        for (i, (_, t)) in init.iter().enumerate() {
            // The master keeps the f32 values; the network sees their bf16 rounding.
            assert!(fp.view_of(&fp.flat, i).equal(t));
            assert_eq!(fp.vars[i].kind(), Kind::BFloat16);
            assert!(fp.vars[i].equal(&t.to_kind(Kind::BFloat16)));
        }
        let x = Tensor::randn([5, 3], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let y0 = l2.forward(&l1.forward(&x));
        assert_eq!(y0.kind(), Kind::BFloat16);
        // Backward lands in the bf16 buffer; gather_grad brings it to the f32 one.
        y0.to_kind(Kind::Float).square().sum(Kind::Float).backward();
        assert!(
            c.grad
                .to_kind(Kind::Float)
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.0
        );
        assert_eq!(fp.grad.abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(fp.vars[0].grad().kind(), Kind::BFloat16);
        fp.gather_grad();
        assert!(fp.grad.equal(&c.grad.to_kind(Kind::Float)));
        fp.zero_grad();
        assert_eq!(
            fp.vars[3].grad().abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
        // A write to the master is invisible to the network until published.
        tch::no_grad(|| {
            let _ = fp.flat.shallow_clone().g_mul_scalar_(2.0);
        });
        assert!(l2.forward(&l1.forward(&x)).equal(&y0));
        fp.publish();
        assert!(c.weights.equal(&fp.flat.to_kind(Kind::BFloat16)));
        assert!(!l2.forward(&l1.forward(&x)).equal(&y0));
    }
}
