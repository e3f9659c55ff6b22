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

/// Sequences per forward and backward pass of a base step: a batch of 32 runs as two parts whose
/// gradients add up, so the saved activations are those of 16 × 64 tokens (~40 MB, not ~85 MB). The
/// gradient is the whole batch's mean, as TrainingArguments takes it, up to rounding.
pub const PART: usize = 16;

/// The per-batch buffers both objectives need.
#[derive(Default)]
struct Buffers {
    ids: Vec<u32>,
    acts: LmActivations,
    dlogits: Vec<f32>,
}

impl Buffers {
    /// Forward of the blocks of `part` and its loss's gradient, for a batch whose mean runs over
    /// `denom` targets (`None`: this part's own); → (summed loss, targets), or `None` when the loss is
    /// not finite.
    fn forward(
        &mut self,
        model: &Llama,
        data: &Blocks,
        part: &[u32],
        denom: Option<usize>,
        delta: Option<&mut dyn crate::nn::LayerDelta>,
    ) -> Result<Option<(f64, usize)>> {
        let t = data.block_len();
        self.ids.resize(part.len() * t, 0);
        data.fill(part, &mut self.ids)?;
        model.forward(&self.ids, part.len(), t, &mut self.acts, delta)?;
        self.dlogits.resize(self.acts.logits.len(), 0.0);
        let targets = loss::targets(&self.ids, t, model.cfg.pad);
        let count = targets.iter().flatten().count();
        let sum = loss::cross_entropy_part(
            &self.acts.logits,
            model.cfg.vocab,
            &targets,
            &mut self.dlogits,
            denom.unwrap_or(count),
        );
        Ok(sum.is_finite().then_some((sum, count)))
    }
}

/// The mean of `sum` over `count` targets (0 for none), as the loss is reported.
fn mean(sum: f64, count: usize) -> f32 {
    if count == 0 {
        0.0
    } else {
        (sum / count as f64) as f32
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
        let t = data.block_len();
        // The whole batch's target count: every part's gradient is divided by it.
        s.buf.ids.resize(batch.len() * t, 0);
        data.fill(batch, &mut s.buf.ids)?;
        let denom = loss::targets(&s.buf.ids, t, self.model.cfg.pad).iter().flatten().count();
        let mut sum = 0.0f64;
        for (i, part) in batch.chunks(PART).enumerate() {
            let Some((part_sum, _)) = s.buf.forward(self.model, data, part, Some(denom), None)? else {
                return Ok(f32::NAN);
            };
            sum += part_sum;
            self.model.backward_into(&s.buf.acts, &s.buf.dlogits, &mut s.grads, true, i > 0, None);
        }
        let l = mean(sum, denom);
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
    pub fn new(adapter: &Adapter, weight_decay: f32) -> Self {
        let sizes = adapter.param_sizes();
        let decays: Vec<bool> = (0..sizes.len()).map(|i| i < 2 * adapter.layers.len()).collect();
        Self {
            adam: Adam::with_weight_decay(&sizes, weight_decay, &decays),
            // The base is frozen: no gradient buffers for its weights, only the backward's scratch.
            grads: LmGrads::frozen(),
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
        let Some((sum, count)) = s.buf.forward(self.base, data, batch, None, Some(&mut *self.adapter))? else {
            return Ok(f32::NAN);
        };
        let l = mean(sum, count);
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
