//! Adam with PyTorch's defaults (β 0.9/0.999, ε 1e-8), one moment pair per tensor; optionally AdamW's
//! decoupled weight decay (`torch.optim.AdamW`) on the tensors chosen to decay.

use crate::kernels::{adam_update, AdamStep};

pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay: each step multiplies a decaying tensor by `1 − lr·weight_decay` before
    /// the Adam update (0: plain Adam, what `new` gives).
    pub weight_decay: f32,
    /// Steps taken so far.
    pub t: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// Per tensor: whether `weight_decay` applies to it.
    decays: Vec<bool>,
}

impl Adam {
    /// Zero moments for tensors of the given sizes; no weight decay.
    pub fn new(sizes: &[usize]) -> Self {
        Self::with_weight_decay(sizes, 0.0, &vec![false; sizes.len()])
    }

    /// AdamW: zero moments for tensors of the given sizes, weight decay `weight_decay` on the tensors
    /// whose `decays` flag is set (the language model decays Linear and embedding weights, not norm
    /// weights). With `weight_decay` 0 it is `new`, bit for bit.
    ///
    /// Panics if `decays` does not have one flag per tensor, or `weight_decay` is negative or not finite
    /// (settings are checked before this point).
    pub fn with_weight_decay(sizes: &[usize], weight_decay: f32, decays: &[bool]) -> Self {
        assert_eq!(decays.len(), sizes.len(), "Adam: one weight-decay flag per tensor");
        assert!(weight_decay.is_finite() && weight_decay >= 0.0, "Adam: weight decay {weight_decay}");
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            decays: decays.to_vec(),
        }
    }

    /// Per tensor, whether the weight decay applies to it.
    pub fn decays(&self) -> &[bool] {
        &self.decays
    }

    /// The first and second moments (`exp_avg`, `exp_avg_sq`) of tensor `i`.
    pub fn moments(&self, i: usize) -> (&[f32], &[f32]) {
        (&self.m[i], &self.v[i])
    }

    /// One step at learning rate `lr` over `params` and their `grads` (same order and sizes as `new`).
    pub fn step<'a>(
        &mut self,
        lr: f32,
        params: impl IntoIterator<Item = &'a mut [f32]>,
        grads: impl IntoIterator<Item = &'a [f32]>,
    ) {
        self.t += 1;
        let s = AdamStep::adamw(lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.t);
        let tensors = params.into_iter().zip(grads).zip(&mut self.m).zip(&mut self.v).zip(&self.decays);
        adam_update(tensors.map(|((((p, g), m), v), &d)| (p, g, &mut m[..], &mut v[..], d)), s);
    }
}
