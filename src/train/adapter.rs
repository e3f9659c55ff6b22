//! Training an adapter: the base frozen, only the adapter's tensors (and the biases its setting
//! names) updated by Adam. Layers below the lowest adapted one are frozen and deterministic, so their
//! output — the adapted layer's input — is computed once per dataset and reused every epoch.

use super::buffers::BatchBuffers;
use super::trainer::Objective;
use crate::data::{fill_batch, Dataset};
use crate::error::{LabError, Result};
use crate::lora::Adapter;
use crate::nn::{self, Activations, Adam, GradNeeds, LayerDelta, Mlp, MlpGrads, CLASSES, LAYER_SHAPES};

const FEATURE_BATCH: usize = 500;

/// The frozen base's activations entering layer `layer`, for a fixed set of samples.
pub struct FeatureCache {
    pub layer: usize,
    width: usize,
    /// Row of each dataset index in `data`, `u32::MAX` where the sample is not cached.
    row_of: Vec<u32>,
    data: Vec<f32>,
}

impl FeatureCache {
    /// Runs the base's layers below `layer` over `indices` of `ds`.
    pub fn build(base: &Mlp, ds: &Dataset, indices: &[u32], layer: usize) -> Result<Self> {
        let width = LAYER_SHAPES[layer].0;
        let mut row_of = vec![u32::MAX; ds.len()];
        let mut data = vec![0.0f32; indices.len() * width];
        let mut acts = Activations::new(FEATURE_BATCH);
        let mut labels = vec![0u8; FEATURE_BATCH];
        for (c, chunk) in indices.chunks(FEATURE_BATCH).enumerate() {
            acts.resize(chunk.len());
            labels.resize(chunk.len(), 0);
            fill_batch(ds, chunk, acts.input_mut(), &mut labels)?;
            base.forward_layers(0..layer, &mut acts, None);
            let start = c * FEATURE_BATCH * width;
            data[start..start + chunk.len() * width].copy_from_slice(&acts.xs[layer]);
        }
        for (row, &i) in indices.iter().enumerate() {
            row_of[i as usize] = row as u32;
        }
        Ok(Self { layer, width, row_of, data })
    }

    fn fill(&self, batch: &[u32], out: &mut [f32]) -> Result<()> {
        for (&i, dst) in batch.iter().zip(out.chunks_exact_mut(self.width)) {
            let row = *self
                .row_of
                .get(i as usize)
                .filter(|&&r| r != u32::MAX)
                .ok_or_else(|| LabError::state(format!("sample {i} is not in the feature cache")))?
                as usize;
            dst.copy_from_slice(&self.data[row * self.width..(row + 1) * self.width]);
        }
        Ok(())
    }
}

/// What persists between batches of an adapter run.
pub struct AdapterState {
    adam: Adam,
    grads: MlpGrads,
    buf: BatchBuffers,
    features: Option<FeatureCache>,
}

impl AdapterState {
    /// `features`: the cache for the adapter's lowest layer, when that layer is above the input.
    pub fn new(base: &Mlp, adapter: &Adapter, batch_size: usize, features: Option<FeatureCache>) -> Self {
        Self {
            adam: Adam::new(&adapter.param_sizes()),
            grads: MlpGrads::zeros(base),
            buf: BatchBuffers::new(batch_size),
            features,
        }
    }
}

pub struct AdapterObjective<'a> {
    pub base: &'a Mlp,
    pub adapter: &'a mut Adapter,
    pub state: &'a mut AdapterState,
}

impl Objective for AdapterObjective<'_> {
    fn train_batch(&mut self, ds: &Dataset, batch: &[u32], lr: f32) -> Result<f32> {
        let s = &mut *self.state;
        let buf = &mut s.buf;
        buf.resize(batch.len());
        let start = match &s.features {
            Some(f) => {
                f.fill(batch, &mut buf.acts.xs[f.layer])?;
                for (l, &i) in buf.labels.iter_mut().zip(batch) {
                    *l = ds.label(i as usize);
                }
                f.layer
            }
            None => {
                fill_batch(ds, batch, buf.acts.input_mut(), &mut buf.labels)?;
                0
            }
        };
        let delta: &mut dyn LayerDelta = self.adapter;
        self.base.forward_layers(start..3, &mut buf.acts, Some(&mut *delta));
        let loss = nn::softmax_cross_entropy(buf.acts.logits(), &buf.labels, &mut buf.dlogits, CLASSES);
        if !loss.is_finite() {
            return Ok(loss);
        }
        self.base.backward(&buf.acts, &buf.dlogits, &mut s.grads, GradNeeds::NONE, Some(&mut *delta));
        let (params, grads) = self.adapter.params_and_grads();
        if !crate::kernels::all_finite_in(&grads) {
            return Ok(f32::NAN);
        }
        s.adam.step(lr, params, grads);
        Ok(loss)
    }
}
