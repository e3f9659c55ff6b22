//! The per-batch buffers every objective needs: activations, logits' gradient, labels.

use crate::nn::{Activations, CLASSES};

pub struct BatchBuffers {
    pub acts: Activations,
    pub dlogits: Vec<f32>,
    pub labels: Vec<u8>,
}

impl BatchBuffers {
    pub fn new(batch_size: usize) -> Self {
        Self {
            acts: Activations::new(batch_size),
            dlogits: vec![0.0; batch_size * CLASSES],
            labels: vec![0; batch_size],
        }
    }

    /// Sizes everything for a batch of `b` (the last batch of an epoch may be short).
    pub fn resize(&mut self, b: usize) {
        self.acts.resize(b);
        self.labels.resize(b, 0);
        self.dlogits.resize(b * CLASSES, 0.0);
    }
}
