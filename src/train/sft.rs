//! Supervised fine-tuning of an adapter over a frozen pretrained base, as TRL's `SFTTrainer` runs it
//! under `TrainingArguments`: examples of different lengths batched and padded on the right (causal
//! attention never reads the padding), the loss the mean over every trained token of the optimizer
//! step (transformers' `num_items_in_batch`, also across `gradient_accumulation_steps`), gradients
//! clipped to a global norm of 1.0, AdamW with decoupled weight decay on the LoRA matrices. Every
//! pass is `Llama::sft_pass`: gradient checkpointing, the loss only where there is a target.

use super::lm::MAX_GRAD_NORM;
use super::trainer::Objective;
use crate::error::{LabError, Result};
use crate::lm::{Llama, SftActivations, SftBatch};
use crate::lora::Adapter;
use crate::nn::{clip_grad_norm, Adam};

/// Examples ready for the model: token ids and, per position, the token it is trained to predict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SftData {
    examples: Vec<Sequence>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Sequence {
    ids: Vec<u32>,
    /// `targets[i]`: the id position i must predict (None: not in the loss).
    targets: Vec<Option<u32>>,
    /// For a sequence that packs several examples, each token's position in its example (else empty).
    positions: Vec<u32>,
}

impl SftData {
    /// From ids and their loss mask (`trained[i]`: the loss predicts `ids[i]` from position i − 1),
    /// every id below `vocab`.
    pub fn new<'a>(examples: impl IntoIterator<Item = (&'a [u32], &'a [bool])>, vocab: usize) -> Result<Self> {
        Self::packed(examples.into_iter().map(|(ids, trained)| (ids, trained, &[][..])), vocab)
    }

    /// As `new`, each sequence with the lengths of the examples it packs (TRL's `seq_lengths`; empty:
    /// one example): each example attends to itself only, from position 0, as in TRL's padding-free
    /// packing. Lengths must sum to the sequence's.
    pub fn packed<'a>(
        examples: impl IntoIterator<Item = (&'a [u32], &'a [bool], &'a [usize])>,
        vocab: usize,
    ) -> Result<Self> {
        let mut out = Vec::new();
        for (n, (ids, trained, lengths)) in examples.into_iter().enumerate() {
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
            if lengths.len() > 1 && (lengths.contains(&0) || lengths.iter().sum::<usize>() != ids.len()) {
                return Err(LabError::setting(
                    "examples",
                    format!("example {n}: packed lengths {lengths:?} do not make its {} ids", ids.len()),
                ));
            }
            let positions =
                if lengths.len() > 1 { lengths.iter().flat_map(|&l| 0..l as u32).collect() } else { Vec::new() };
            let ids = ids.to_vec();
            let targets = (0..ids.len()).map(|i| trained.get(i + 1).filter(|&&t| t).map(|_| ids[i + 1])).collect();
            out.push(Sequence { ids, targets, positions });
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
        self.examples[i].ids.len()
    }

    /// Every example's tokens.
    pub fn total_tokens(&self) -> usize {
        self.examples.iter().map(|e| e.ids.len()).sum()
    }

    /// Every example's trained tokens.
    pub fn total_targets(&self) -> usize {
        self.examples.iter().map(|e| e.targets.iter().flatten().count()).sum()
    }

    /// Example `i`'s ids and, per id, whether the loss trains on it (`trained[i]` of `new`; the first
    /// never is), or `None` past the end.
    pub fn example(&self, i: usize) -> Option<(&[u32], Vec<bool>)> {
        let Sequence { ids, targets, .. } = self.examples.get(i)?;
        let trained = std::iter::once(false).chain(targets[..ids.len() - 1].iter().map(Option::is_some)).collect();
        Some((ids, trained))
    }

    /// The lengths of the examples sequence `i` packs (one entry for a sequence of one example).
    pub fn lengths(&self, i: usize) -> Vec<usize> {
        let Some(s) = self.examples.get(i) else { return Vec::new() };
        if s.positions.is_empty() {
            return vec![s.ids.len()];
        }
        let starts: Vec<usize> = (0..s.positions.len()).filter(|&j| s.positions[j] == 0).collect();
        starts.iter().zip(starts.iter().skip(1).chain([&s.ids.len()])).map(|(a, b)| b - a).collect()
    }

    /// Trained tokens of the examples `batch` names.
    pub fn targets_in(&self, batch: &[u32]) -> usize {
        batch.iter().map(|&i| self.examples[i as usize].targets.iter().flatten().count()).sum()
    }

    /// Fills `b` with the sequences `batch` names, each cut after its last position with a target and
    /// padded on the right with `pad` to the longest (positions, where one of them packs examples,
    /// counting on through the padding). The cut changes nothing: under causal attention a position
    /// reaches only those after it, and none of those is in the loss (a sequence's last token never is).
    fn fill(&self, batch: &[u32], pad: u32, b: &mut Batch) -> Result<()> {
        let get = |i: u32| self.examples.get(i as usize).ok_or_else(|| LabError::state(format!("no example {i}")));
        let used = |s: &Sequence| s.targets.iter().rposition(Option::is_some).map_or(1, |i| i + 1);
        let (mut t, mut packed) = (0, false);
        for &i in batch {
            let e = get(i)?;
            t = t.max(used(e));
            packed |= !e.positions.is_empty();
        }
        b.ids.clear();
        b.targets.clear();
        b.positions.clear();
        b.packed = packed;
        for &i in batch {
            let s = get(i)?;
            let u = used(s);
            let (e, tg) = (&s.ids[..u], &s.targets[..u]);
            b.ids.extend_from_slice(e);
            b.ids.resize(b.ids.len() + t - u, pad);
            b.targets.extend_from_slice(tg);
            b.targets.resize(b.targets.len() + t - u, None);
            if packed {
                let pos = &s.positions[..s.positions.len().min(u)];
                let last = pos.last().map_or(u, |&p| p as usize + 1);
                b.positions.extend_from_slice(pos);
                b.positions.extend((pos.len()..u).map(|i| i as u32));
                b.positions.extend((0..t - u).map(|j| (last + j) as u32));
            }
        }
        b.t = t;
        b.b = batch.len();
        Ok(())
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
        let mut filled = Batch::default();
        let (mut sum, mut count) = (0.0, 0);
        let all: Vec<u32> = (0..self.len() as u32).collect();
        for part in all.chunks(batch.max(1)) {
            self.fill(part, base.cfg.pad, &mut filled)?;
            let n = filled.targets.iter().flatten().count();
            let d = delta.as_mut().map(|d| &mut **d as &mut dyn crate::nn::LayerDelta);
            let (s, c) = base.sft_pass(&filled.view(), n, acts, d, false)?;
            sum += s;
            count += c;
        }
        Ok((sum, count))
    }
}

/// One batch as `SftData::fill` lays it out for `Llama::sft_pass`, its buffers reused.
#[derive(Default)]
struct Batch {
    ids: Vec<u32>,
    targets: Vec<Option<u32>>,
    positions: Vec<u32>,
    packed: bool,
    b: usize,
    t: usize,
}

impl Batch {
    fn view(&self) -> SftBatch<'_> {
        SftBatch {
            ids: &self.ids,
            b: self.b,
            t: self.t,
            targets: &self.targets,
            positions: self.packed.then_some(&self.positions[..]),
        }
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
    batch: Batch,
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
            batch: Batch::default(),
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
            data.fill(part, self.base.cfg.pad, &mut s.batch)?;
            let (sum, _) = self.base.sft_pass(&s.batch.view(), denom, &mut s.acts, Some(&mut *self.adapter), true)?;
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
