//! Adam with PyTorch's defaults (β 0.9/0.999, ε 1e-8, no weight decay), one moment pair per tensor.

use crate::kernels::{adam_update, AdamStep};

pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Steps taken so far.
    pub t: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Adam {
    /// Zero moments for tensors of the given sizes.
    pub fn new(sizes: &[usize]) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// One step at learning rate `lr` over `params` and their `grads` (same order and sizes as `new`).
    pub fn step<'a>(
        &mut self,
        lr: f32,
        params: impl IntoIterator<Item = &'a mut [f32]>,
        grads: impl IntoIterator<Item = &'a [f32]>,
    ) {
        self.t += 1;
        let s = AdamStep::new(lr, self.beta1, self.beta2, self.eps, self.t);
        let tensors = params.into_iter().zip(grads).zip(&mut self.m).zip(&mut self.v);
        adam_update(tensors.map(|(((p, g), m), v)| (p, g, &mut m[..], &mut v[..])), s);
    }
}
