//! Supervised fine-tuning of an adapter over a frozen pretrained base, as TRL's `SFTTrainer` runs it
//! under `TrainingArguments`: examples of different lengths batched and padded on the right (causal
//! attention never reads the padding), the loss the mean over every trained token of the optimizer
//! step (transformers' `num_items_in_batch`, also across `gradient_accumulation_steps`), gradients
//! clipped to a global norm of 1.0, AdamW with decoupled weight decay on the LoRA matrices. Every
//! pass is `Llama::sft_pass`: gradient checkpointing, the loss only where there is a target.

use super::lm::MAX_GRAD_NORM;
use super::trainer::Objective;
use crate::error::{LabError, Result};
use crate::lm::{Llama, SftActivations};
use crate::lora::Adapter;
use crate::nn::{clip_grad_norm, Adam};

/// Examples ready for the model: token ids and, per position, the token it is trained to predict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SftData {
    /// Per example: ids, and `targets[i]` = the id position i must predict (None: not in the loss).
    examples: Vec<(Vec<u32>, Vec<Option<u32>>)>,
}

impl SftData {
    /// From ids and their loss mask (`trained[i]`: the loss predicts `ids[i]` from position i − 1),
    /// every id below `vocab`.
    pub fn new<'a>(examples: impl IntoIterator<Item = (&'a [u32], &'a [bool])>, vocab: usize) -> Result<Self> {
        let mut out = Vec::new();
        for (n, (ids, trained)) in examples.into_iter().enumerate() {
            if ids.len() != trained.len() || ids.is_empty() {
                return Err(LabError::setting(
                    "examples",
                    format!("example {n}: {} ids, {} mask entries", ids.len(), trained.len()),
                ));
            }
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(LabError::setting(
                    "examples",
                    format!("example {n}: id {bad} is outside the vocabulary of {vocab}"),
                ));
            }
            let ids = ids.to_vec();
            let targets = (0..ids.len()).map(|i| trained.get(i + 1).filter(|&&t| t).map(|_| ids[i + 1])).collect();
            out.push((ids, targets));
        }
        Ok(Self { examples: out })
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Tokens of example `i`.
    pub fn tokens(&self, i: usize) -> usize {
        self.examples[i].0.len()
    }

    /// Every example's tokens.
    pub fn total_tokens(&self) -> usize {
        self.examples.iter().map(|(ids, _)| ids.len()).sum()
    }

    /// Every example's trained tokens.
    pub fn total_targets(&self) -> usize {
        self.examples.iter().map(|(_, t)| t.iter().flatten().count()).sum()
    }

    /// Example `i`'s ids and, per id, whether the loss trains on it (`trained[i]` of `new`; the first
    /// never is), or `None` past the end.
    pub fn example(&self, i: usize) -> Option<(&[u32], Vec<bool>)> {
        let (ids, targets) = self.examples.get(i)?;
        let trained = std::iter::once(false).chain(targets[..ids.len() - 1].iter().map(Option::is_some)).collect();
        Some((ids, trained))
    }

    /// Trained tokens of the examples `batch` names.
    pub fn targets_in(&self, batch: &[u32]) -> usize {
        batch.iter().map(|&i| self.examples[i as usize].1.iter().flatten().count()).sum()
    }

    /// Fills `ids` and `targets` with the examples of `batch`, each padded on the right with `pad` to
    /// the longest: → its length.
    fn fill(&self, batch: &[u32], pad: u32, ids: &mut Vec<u32>, targets: &mut Vec<Option<u32>>) -> Result<usize> {
        let get = |i: u32| self.examples.get(i as usize).ok_or_else(|| LabError::state(format!("no example {i}")));
        let mut t = 0;
        for &i in batch {
            t = t.max(get(i)?.0.len());
        }
        ids.clear();
        targets.clear();
        for &i in batch {
            let (e, tg) = get(i)?;
            ids.extend_from_slice(e);
            ids.resize(ids.len() + t - e.len(), pad);
            targets.extend_from_slice(tg);
            targets.resize(targets.len() + t - tg.len(), None);
        }
        Ok(t)
    }

    /// The held-out loss as TRL's `eval_loss` of an adapter (or the base alone): → (summed
    /// cross-entropy, trained tokens), `batch` examples at a time.
    pub fn evaluate(
        &self,
        base: &Llama,
        mut delta: Option<&mut dyn crate::nn::LayerDelta>,
        batch: usize,
        acts: &mut SftActivations,
    ) -> Result<(f64, usize)> {
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        let (mut sum, mut count) = (0.0, 0);
        let all: Vec<u32> = (0..self.len() as u32).collect();
        for part in all.chunks(batch.max(1)) {
            let t = self.fill(part, base.cfg.pad, &mut ids, &mut targets)?;
            let n = targets.iter().flatten().count();
            let d = delta.as_mut().map(|d| &mut **d as &mut dyn crate::nn::LayerDelta);
            let (s, c) = base.sft_pass(&ids, part.len(), t, &targets, n, acts, d, false)?;
            sum += s;
            count += c;
        }
        Ok((sum, count))
    }
}

/// What persists between the optimizer steps of a run.
pub struct SftState {
    adam: Adam,
    acts: SftActivations,
    /// Sequences per forward and backward pass (`per_device_train_batch_size`); an optimizer step
    /// of the trainer's batch runs `gradient_accumulation_steps` of them.
    micro: usize,
    /// The adapter's gradients summed over a step's micro-batches.
    sum: Vec<Vec<f32>>,
    ids: Vec<u32>,
    targets: Vec<Option<u32>>,
    /// Tokens of the examples trained on so far (padding not counted).
    pub tokens: usize,
}

impl SftState {
    /// AdamW over the adapter's tensors (LoRA's matrices decay, trained bias shifts do not), `micro`
    /// sequences per pass.
    pub fn new(adapter: &Adapter, weight_decay: f32, micro: usize) -> Self {
        let sizes = adapter.param_sizes();
        let decays: Vec<bool> = (0..sizes.len()).map(|i| i < 2 * adapter.layers.len()).collect();
        Self {
            adam: Adam::with_weight_decay(&sizes, weight_decay, &decays),
            acts: SftActivations::default(),
            micro: micro.max(1),
            sum: Vec::new(),
            ids: Vec::new(),
            targets: Vec::new(),
            tokens: 0,
        }
    }

    /// Bytes of the activations kept for a pass.
    pub fn activation_bytes(&self) -> usize {
        self.acts.bytes()
    }
}

pub struct SftObjective<'a> {
    pub base: &'a Llama,
    pub adapter: &'a mut Adapter,
    pub state: &'a mut SftState,
}

impl Objective<SftData> for SftObjective<'_> {
    fn train_batch(&mut self, data: &SftData, batch: &[u32], lr: f32) -> Result<f32> {
        let s = &mut *self.state;
        let denom = data.targets_in(batch);
        let mut total = 0.0f64;
        let parts = batch.chunks(s.micro).count();
        for (k, part) in batch.chunks(s.micro).enumerate() {
            let t = data.fill(part, self.base.cfg.pad, &mut s.ids, &mut s.targets)?;
            let (sum, _) = self.base.sft_pass(
                &s.ids,
                part.len(),
                t,
                &s.targets,
                denom,
                &mut s.acts,
                Some(&mut *self.adapter),
                true,
            )?;
            if !sum.is_finite() {
                return Ok(f32::NAN);
            }
            total += sum;
            s.tokens += part.iter().map(|&i| data.tokens(i as usize)).sum::<usize>();
            if parts > 1 {
                let (_, grads) = self.adapter.params_and_grads();
                if k == 0 {
                    // The sums' buffers are kept from step to step: written over, not reallocated.
                    s.sum.resize_with(grads.len(), Vec::new);
                    for (acc, g) in s.sum.iter_mut().zip(&grads) {
                        acc.clear();
                        acc.extend_from_slice(g);
                    }
                } else {
                    for (acc, g) in s.sum.iter_mut().zip(grads) {
                        acc.iter_mut().zip(g).for_each(|(a, g)| *a += g);
                    }
                }
            }
        }
        let (params, mut grads) = self.adapter.params_and_grads_mut();
        if parts > 1 {
            for (g, acc) in grads.iter_mut().zip(&s.sum) {
                g.copy_from_slice(acc);
            }
        }
        if !clip_grad_norm(&mut grads, MAX_GRAD_NORM).is_finite() {
            return Ok(f32::NAN);
        }
        let grads: Vec<&[f32]> = grads.into_iter().map(|g| &*g).collect();
        s.adam.step(lr, params, grads);
        Ok(if denom == 0 { 0.0 } else { (total / denom as f64) as f32 })
    }
}
