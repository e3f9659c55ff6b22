//! Training the base model: every parameter of the Mlp, cross-entropy over 10 classes, Adam.

use super::buffers::BatchBuffers;
use super::trainer::Objective;
use crate::data::{fill_batch, Dataset};
use crate::error::Result;
use crate::nn::{self, Adam, GradNeeds, Mlp, MlpGrads, CLASSES};

pub struct BaseObjective<'a> {
    pub mlp: &'a mut Mlp,
    state: &'a mut BaseState,
}

/// What persists between batches: optimiser moments, gradients and activation buffers.
pub struct BaseState {
    adam: Adam,
    grads: MlpGrads,
    buf: BatchBuffers,
}

impl BaseState {
    pub fn new(mlp: &Mlp, batch_size: usize) -> Self {
        let sizes: Vec<usize> = mlp.params().iter().map(|p| p.len()).collect();
        Self { adam: Adam::new(&sizes), grads: MlpGrads::zeros(mlp), buf: BatchBuffers::new(batch_size) }
    }
}

impl<'a> BaseObjective<'a> {
    pub fn new(mlp: &'a mut Mlp, state: &'a mut BaseState) -> Self {
        Self { mlp, state }
    }
}

impl Objective for BaseObjective<'_> {
    fn train_batch(&mut self, ds: &Dataset, batch: &[u32], lr: f32) -> Result<f32> {
        let s = &mut *self.state;
        let buf = &mut s.buf;
        buf.resize(batch.len());
        fill_batch(ds, batch, buf.acts.input_mut(), &mut buf.labels)?;
        self.mlp.forward(&mut buf.acts, None);
        let loss = nn::softmax_cross_entropy(buf.acts.logits(), &buf.labels, &mut buf.dlogits, CLASSES);
        if !loss.is_finite() {
            return Ok(loss);
        }
        if !self.mlp.backward(&buf.acts, &buf.dlogits, &mut s.grads, GradNeeds::ALL, None) {
            return Ok(f32::NAN);
        }
        s.adam.step(lr, self.mlp.params_mut(), s.grads.tensors());
        Ok(loss)
    }
}
