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

use tch::{nn, Device, Kind, Tensor};

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
}

impl FlatParams {
    /// Re-point every trainable variable of `vs` into one buffer on `device`.
    pub fn new(vs: &nn::VarStore, device: Device) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let total: i64 = named.iter().map(|(_, t)| t.numel() as i64).sum();
        let flat = Tensor::zeros([total], (Kind::Float, device));
        let grad = Tensor::zeros([total], (Kind::Float, device));
        let mut names = vec![];
        let mut shapes = vec![];
        let mut offsets = vec![];
        let mut vars = vec![];
        let mut off = 0i64;
        tch::no_grad(|| {
            for (name, mut var) in named {
                let n = var.numel() as i64;
                let shape = var.size();
                let mut view = flat.narrow(0, off, n).view(shape.as_slice());
                view.copy_(&var);
                var.set_data(&view);
                names.push(name);
                shapes.push(shape);
                offsets.push(off);
                vars.push(var);
                off += n;
            }
        });
        // Create every .grad with a zero backward pass, then re-point them too.
        let zero: Tensor = vars.iter().map(|v| v.sum(Kind::Float) * 0.0).sum();
        zero.backward();
        tch::no_grad(|| {
            for (i, v) in vars.iter().enumerate() {
                let mut g = v.grad();
                let view = grad
                    .narrow(0, offsets[i], v.numel() as i64)
                    .view(shapes[i].as_slice());
                g.set_data(&view);
            }
        });
        let _ = grad.shallow_clone().zero_();
        FlatParams {
            names,
            shapes,
            offsets,
            vars,
            flat,
            grad,
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

    #[test]
    fn parameters_and_gradients_live_in_the_flat_buffers() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let l1 = nn::linear(&root / "a", 3, 4, Default::default());
        let l2 = nn::linear(&root / "b", 4, 2, Default::default());
        let before: Vec<(String, Tensor)> = {
            let mut v: Vec<_> = vs
                .variables()
                .into_iter()
                .map(|(n, t)| (n, t.copy()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let fp = FlatParams::new(&vs, Device::Cpu);
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
}
