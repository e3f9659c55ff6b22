//! The forward pass of the whole model over a batch of `b` sequences of `t` tokens, keeping what the
//! backward pass needs. Every Linear goes through `project`, where an adapter (`LayerDelta`) may add
//! its part; module indices are `LmConfig::linear_modules`'s.

use super::config::{DOWN, GATE, K, O, Q, UP, V};
use super::model::Llama;
use super::rope::Rope;
use super::{attention, gate, norm};
use crate::error::{LabError, Result};
use crate::nn::LayerDelta;

/// One decoder layer's saved activations (n = b·t rows).
#[derive(Default)]
pub(super) struct LayerActs {
    pub rstd_in: Vec<f32>,
    /// input_layernorm(x), n × hidden: the q/k/v projections' input.
    pub a: Vec<f32>,
    /// Head-major (b, head, t, d): q and k rotated, v as projected.
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// Attention weights, b·heads blocks of t × t.
    pub p: Vec<f32>,
    /// The heads' outputs, token-major (o_proj's input).
    pub o: Vec<f32>,
    /// x + attention, n × hidden.
    pub h2: Vec<f32>,
    pub rstd_post: Vec<f32>,
    /// post_attention_layernorm(h2): gate and up's input.
    pub c: Vec<f32>,
    pub g: Vec<f32>,
    pub u: Vec<f32>,
    /// silu(g) ⊙ u: down_proj's input.
    pub m: Vec<f32>,
}

/// Everything one forward pass saves, reused across batches.
#[derive(Default)]
pub struct LmActivations {
    pub b: usize,
    pub t: usize,
    pub(super) ids: Vec<u16>,
    /// `xs[l]` is layer l's input (n × hidden); `xs[layers]` the last layer's output.
    pub(super) xs: Vec<Vec<f32>>,
    pub(super) layers: Vec<LayerActs>,
    pub(super) rstd_f: Vec<f32>,
    /// The final norm's output: lm_head's input.
    pub(super) f: Vec<f32>,
    /// n × vocab.
    pub logits: Vec<f32>,
    /// A token-major projection before it is rotated into heads.
    scratch: Vec<f32>,
    pub(super) rope: Option<Rope>,
    /// Evaluation only: one layer's buffers serve every layer (a quarter of the memory), and there
    /// is nothing for `backward` to use.
    inference: bool,
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

impl LmActivations {
    /// Buffers for forward passes that no backward follows (evaluation, scoring, logits).
    pub fn for_inference() -> Self {
        Self { inference: true, ..Self::default() }
    }

    pub fn ids(&self) -> &[u16] {
        &self.ids
    }

    /// Whether these activations were kept for a backward pass.
    pub fn trainable(&self) -> bool {
        !self.inference
    }
}

/// `y = x·Wᵀ` of module `i` plus the delta's part where it is active.
pub(super) fn project(
    model: &Llama,
    i: usize,
    x: &[f32],
    y: &mut [f32],
    n: usize,
    delta: &mut Option<&mut dyn LayerDelta>,
) {
    model.linears[i].forward(x, y, n, false);
    if let Some(d) = delta.as_deref_mut().filter(|d| d.is_active(i)) {
        d.forward(i, x, y, n);
    }
}

impl Llama {
    /// Checks a batch of token ids: `b` sequences of `t` ids, t within the context, every id in the
    /// vocabulary.
    pub fn check_ids(&self, ids: &[u16], b: usize, t: usize) -> Result<()> {
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
        ids: &[u16],
        b: usize,
        t: usize,
        acts: &mut LmActivations,
        mut delta: Option<&mut dyn LayerDelta>,
    ) -> Result<()> {
        self.check_ids(ids, b, t)?;
        let c = &self.cfg;
        let (h, n, nh, d) = (c.hidden, b * t, c.heads, c.head_dim);
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
        for (x, &id) in acts.xs[0].chunks_exact_mut(h).zip(ids) {
            x.copy_from_slice(&self.embed[id as usize * h..][..h]);
        }
        resize(&mut acts.scratch, n * h.max(c.intermediate));
        let rope = acts.rope.as_ref().expect("set above");
        let scale = 1.0 / (d as f32).sqrt();
        for l in 0..c.layers {
            let (lo, hi) = acts.xs.split_at_mut(l + 1);
            let (x, x_next) = (&lo[l], &mut hi[0]);
            let la = &mut acts.layers[if acts.inference { 0 } else { l }];
            for v in [&mut la.a, &mut la.q, &mut la.k, &mut la.v, &mut la.o, &mut la.h2, &mut la.c] {
                resize(v, n * h);
            }
            for v in [&mut la.g, &mut la.u, &mut la.m] {
                resize(v, n * c.intermediate);
            }
            resize(&mut la.rstd_in, n);
            resize(&mut la.rstd_post, n);
            resize(&mut la.p, b * nh * t * t);
            let sc = &mut acts.scratch[..n * h];

            norm::forward(x, &self.norms[l][0], c.rms_norm_eps, &mut la.a, &mut la.rstd_in);
            for (j, out, rotate) in [(Q, &mut la.q, true), (K, &mut la.k, true), (V, &mut la.v, false)] {
                project(self, c.module(l, j), &la.a, sc, n, &mut delta);
                rope.to_heads(sc, out, b, t, nh, d, 0, rotate);
            }
            // The heads' outputs land in h2 for a moment (head-major), then move to `o` token-major.
            attention::forward(&la.q, &la.k, &la.v, &mut la.p, &mut la.h2, t, d, scale);
            rope.back_to_tokens(&la.h2, &mut la.o, b, t, nh, d, false);
            project(self, c.module(l, O), &la.o, sc, n, &mut delta);
            la.h2.iter_mut().zip(x.iter().zip(sc.iter())).for_each(|(h2, (x, y))| *h2 = x + y);

            norm::forward(&la.h2, &self.norms[l][1], c.rms_norm_eps, &mut la.c, &mut la.rstd_post);
            project(self, c.module(l, GATE), &la.c, &mut la.g, n, &mut delta);
            project(self, c.module(l, UP), &la.c, &mut la.u, n, &mut delta);
            gate::forward(&la.g, &la.u, &mut la.m);
            project(self, c.module(l, DOWN), &la.m, sc, n, &mut delta);
            x_next.iter_mut().zip(la.h2.iter().zip(sc.iter())).for_each(|(xn, (h2, y))| *xn = h2 + y);
        }
        resize(&mut acts.rstd_f, n);
        resize(&mut acts.f, n * h);
        resize(&mut acts.logits, n * c.vocab);
        norm::forward(&acts.xs[c.layers], &self.final_norm, c.rms_norm_eps, &mut acts.f, &mut acts.rstd_f);
        project(self, c.lm_head(), &acts.f, &mut acts.logits, n, &mut delta);
        Ok(())
    }
}
