//! Training the language model as `TrainingArguments` does: the causal-LM loss over packed blocks,
//! gradients clipped to a global norm of 1.0, AdamW with decoupled weight decay on matrices only. The
//! base objective trains every parameter; the adapter objective only the adapter's tensors over a
//! frozen base.

use super::trainer::Objective;
use crate::error::Result;
use crate::lm::{loss, Llama, LmActivations, LmGrads};
use crate::lora::Adapter;
use crate::nn::{clip_grad_norm, Adam};
use crate::text::Blocks;

/// TrainingArguments' `max_grad_norm`.
pub const MAX_GRAD_NORM: f32 = 1.0;

/// The per-batch buffers both objectives need.
#[derive(Default)]
struct Buffers {
    ids: Vec<u16>,
    acts: LmActivations,
    dlogits: Vec<f32>,
}

impl Buffers {
    /// Forward of one batch of blocks and the loss's gradient; `None` when the loss is not finite.
    fn forward(
        &mut self,
        model: &Llama,
        data: &Blocks,
        batch: &[u32],
        delta: Option<&mut dyn crate::nn::LayerDelta>,
    ) -> Result<Option<f32>> {
        let t = data.block_len();
        self.ids.resize(batch.len() * t, 0);
        data.fill(batch, &mut self.ids)?;
        model.forward(&self.ids, batch.len(), t, &mut self.acts, delta)?;
        self.dlogits.resize(self.acts.logits.len(), 0.0);
        let targets = loss::targets(&self.ids, t, model.cfg.pad);
        let (l, _) = loss::cross_entropy(&self.acts.logits, model.cfg.vocab, &targets, &mut self.dlogits);
        Ok(l.is_finite().then_some(l))
    }
}

/// What persists between batches of a base run.
pub struct LmBaseState {
    adam: Adam,
    grads: LmGrads,
    buf: Buffers,
}

impl LmBaseState {
    pub fn new(model: &Llama, weight_decay: f32) -> Self {
        let sizes: Vec<usize> = model.params().iter().map(|(_, p)| p.len()).collect();
        Self {
            adam: Adam::with_weight_decay(&sizes, weight_decay, &model.decays()),
            grads: LmGrads::zeros(model),
            buf: Buffers::default(),
        }
    }
}

pub struct LmBaseObjective<'a> {
    pub model: &'a mut Llama,
    pub state: &'a mut LmBaseState,
}

impl Objective<Blocks> for LmBaseObjective<'_> {
    fn train_batch(&mut self, data: &Blocks, batch: &[u32], lr: f32) -> Result<f32> {
        let s = &mut *self.state;
        let Some(l) = s.buf.forward(self.model, data, batch, None)? else { return Ok(f32::NAN) };
        self.model.backward(&s.buf.acts, &s.buf.dlogits, &mut s.grads, true, None);
        let mut grads = s.grads.tensors_mut(self.model);
        if !clip_grad_norm(&mut grads, MAX_GRAD_NORM).is_finite() {
            return Ok(f32::NAN);
        }
        let grads: Vec<&[f32]> = grads.into_iter().map(|g| &*g).collect();
        s.adam.step(lr, self.model.params_mut(), grads);
        Ok(l)
    }
}

/// What persists between batches of an adapter run.
pub struct LmAdapterState {
    adam: Adam,
    grads: LmGrads,
    buf: Buffers,
}

impl LmAdapterState {
    /// AdamW over the adapter's tensors: LoRA's matrices decay, trained bias shifts do not (as
    /// TrainingArguments leaves biases undecayed).
    pub fn new(base: &Llama, adapter: &Adapter, weight_decay: f32) -> Self {
        let sizes = adapter.param_sizes();
        let decays: Vec<bool> = (0..sizes.len()).map(|i| i < 2 * adapter.layers.len()).collect();
        Self {
            adam: Adam::with_weight_decay(&sizes, weight_decay, &decays),
            grads: LmGrads::zeros(base),
            buf: Buffers::default(),
        }
    }
}

pub struct LmAdapterObjective<'a> {
    pub base: &'a Llama,
    pub adapter: &'a mut Adapter,
    pub state: &'a mut LmAdapterState,
}

impl Objective<Blocks> for LmAdapterObjective<'_> {
    fn train_batch(&mut self, data: &Blocks, batch: &[u32], lr: f32) -> Result<f32> {
        let s = &mut *self.state;
        let Some(l) = s.buf.forward(self.base, data, batch, Some(&mut *self.adapter))? else { return Ok(f32::NAN) };
        self.base.backward(&s.buf.acts, &s.buf.dlogits, &mut s.grads, false, Some(&mut *self.adapter));
        let (params, grads) = self.adapter.params_and_grads_mut();
        let mut grads = grads;
        if !clip_grad_norm(&mut grads, MAX_GRAD_NORM).is_finite() {
            return Ok(f32::NAN);
        }
        let grads: Vec<&[f32]> = grads.into_iter().map(|g| &*g).collect();
        s.adam.step(lr, params, grads);
        Ok(l)
    }
}
