//! The forward pass of the whole model over a batch of `b` sequences of `t` tokens, keeping what the
//! backward pass needs. Every Linear goes through `project`, where an adapter (`LayerDelta`) may add
//! its part; module indices are `LmConfig::linear_modules`'s.

use super::layer::{Keys, LayerActs, Output};
use super::model::Llama;
use super::norm;
use super::rope::Rope;
use crate::error::{LabError, Result};
use crate::nn::LayerDelta;

/// Everything one forward pass saves, reused across batches.
#[derive(Default)]
pub struct LmActivations {
    pub b: usize,
    pub t: usize,
    pub(super) ids: Vec<u32>,
    /// `xs[l]` is layer l's input (n × hidden); `xs[layers]` the last layer's output.
    pub(super) xs: Vec<Vec<f32>>,
    pub(super) layers: Vec<LayerActs>,
    pub(super) rstd_f: Vec<f32>,
    /// The final norm's output: lm_head's input.
    pub(super) f: Vec<f32>,
    /// n × vocab.
    pub logits: Vec<f32>,
    /// A token-major projection before it is rotated into heads.
    pub(super) scratch: Vec<f32>,
    pub(super) rope: Option<Rope>,
    /// Evaluation only: one layer's buffers serve every layer (a quarter of the memory), and there
    /// is nothing for `backward` to use.
    inference: bool,
}

/// `v` at length `n`, its capacity grown to exactly what a longer batch needs: `Vec::resize` may
/// double it, and a pass keeps some hundred such buffers.
pub(super) fn resize(v: &mut Vec<f32>, n: usize) {
    if n > v.capacity() {
        v.reserve_exact(n - v.len());
    }
    v.resize(n, 0.0);
}

impl LmActivations {
    /// Buffers for forward passes that no backward follows (evaluation, scoring, logits).
    pub fn for_inference() -> Self {
        Self { inference: true, ..Self::default() }
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Whether these activations were kept for a backward pass.
    pub fn trainable(&self) -> bool {
        !self.inference
    }
}

/// How `project` runs a Linear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Run {
    /// `x·Wᵀ` in f32, and the delta's `forward`.
    F32,
    /// `x·Wᵀ` with 8-bit activations (`GenerateOptions::int8`); the delta stays exact.
    Int8,
    /// A recomputation for the backward pass (gradient checkpointing): `x·Wᵀ` in f32 and the delta's
    /// `forward_again`, which reuses what its first forward kept and draws nothing.
    Again,
}

impl Run {
    /// `Int8` where `int8`, else `F32`.
    pub fn int8(int8: bool) -> Self {
        if int8 {
            Run::Int8
        } else {
            Run::F32
        }
    }
}

/// `y = x·Wᵀ` of module `i` plus the delta's part where it is active.
pub(super) fn project(
    model: &Llama,
    i: usize,
    x: &[f32],
    y: &mut [f32],
    n: usize,
    run: Run,
    delta: &mut Option<&mut dyn LayerDelta>,
) {
    if run == Run::Int8 {
        model.linears[i].forward_int8(x, y, n);
    } else {
        model.linears[i].forward(x, y, n, false);
    }
    match delta.as_deref_mut().filter(|d| d.is_active(i)) {
        Some(d) if run == Run::Again => d.forward_again(i, x, y, n),
        Some(d) => d.forward(i, x, y, n),
        None => {}
    }
}

impl Llama {
    /// Checks a batch of token ids: `b` sequences of `t` ids, t within the context, every id in the
    /// vocabulary.
    pub fn check_ids(&self, ids: &[u32], b: usize, t: usize) -> Result<()> {
        let c = &self.cfg;
        if b == 0 || t == 0 || ids.len() != b * t {
            return Err(LabError::setting("token ids", format!("{} ids do not make {b} sequences of {t}", ids.len())));
        }
        if t > c.context {
            return Err(LabError::setting(
                "token ids",
                format!("{t} tokens is longer than the context of {}", c.context),
            ));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= c.vocab) {
            return Err(LabError::setting("token ids", format!("{bad} is outside the vocabulary of {}", c.vocab)));
        }
        Ok(())
    }

    /// Runs the model over `ids` (b × t, each sequence at positions 0..t); logits end in `acts.logits`.
    pub fn forward(
        &self,
        ids: &[u32],
        b: usize,
        t: usize,
        acts: &mut LmActivations,
        mut delta: Option<&mut dyn LayerDelta>,
    ) -> Result<()> {
        self.check_ids(ids, b, t)?;
        let c = &self.cfg;
        let (h, n, d) = (c.hidden, b * t, c.head_dim);
        acts.b = b;
        acts.t = t;
        acts.ids.clear();
        acts.ids.extend_from_slice(ids);
        if acts.rope.as_ref().is_none_or(|r| r.context() < c.context) {
            acts.rope = Some(Rope::new(d, c.context, c.rope_theta));
        }
        acts.xs.resize_with(c.layers + 1, Vec::new);
        acts.layers.resize_with(if acts.inference { 1 } else { c.layers }, LayerActs::default);
        for x in &mut acts.xs {
            resize(x, n * h);
        }
        self.embed_rows(ids, &mut acts.xs[0]);
        let rope = acts.rope.as_ref().expect("set above");
        for l in 0..c.layers {
            let (lo, hi) = acts.xs.split_at_mut(l + 1);
            let la = &mut acts.layers[if acts.inference { 0 } else { l }];
            let keys = Keys::Own(None);
            let out = Output::Next(&mut hi[0]);
            self.layer_forward(l, &lo[l], out, la, &mut acts.scratch, rope, b, t, keys, &mut delta);
        }
        resize(&mut acts.rstd_f, n);
        resize(&mut acts.f, n * h);
        resize(&mut acts.logits, n * c.vocab);
        norm::forward(&acts.xs[c.layers], &self.final_norm, c.rms_norm_eps, &mut acts.f, &mut acts.rstd_f);
        project(self, c.lm_head(), &acts.f, &mut acts.logits, n, Run::F32, &mut delta);
        Ok(())
    }
}
