//! One decoder layer's forward pass, written once: training and evaluation (`forward`, keys and values
//! of the same positions) and generation (`generate`, keys and values kept in a cache) run this code.
//!
//! `x → a = input_norm(x) → q, k, v (rotated; grouped-query heads) → attention → o_proj → h2 = x + ·
//! → c = post_norm(h2) → down(silu(gate(c)) ⊙ up(c)) → x_next = h2 + ·`. Every Linear goes through
//! `project`, where an adapter (`LayerDelta`) may add its part.

use super::attention::{self, Shape};
use super::config::{DOWN, GATE, K, O, Q, UP, V};
use super::forward::{project, resize, Run};
use super::model::Llama;
use super::rope::{Positions, Rope};
use super::{gate, norm};
use crate::nn::LayerDelta;

/// One decoder layer's saved activations (n = b·t rows).
#[derive(Default)]
pub(super) struct LayerActs {
    pub rstd_in: Vec<f32>,
    /// input_layernorm(x), n × hidden: the q/k/v projections' input.
    pub a: Vec<f32>,
    /// Head-major: q (b, heads, t, d) rotated; k rotated and v as projected (b, kv_heads, t, d). Empty
    /// when keys and values go to a cache.
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// Attention weights, b·heads blocks of t × (positions attended).
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

impl LayerActs {
    /// Bytes the buffers hold.
    pub fn bytes(&self) -> usize {
        [&self.rstd_in, &self.a, &self.q, &self.k, &self.v, &self.p, &self.o, &self.h2, &self.rstd_post, &self.c]
            .into_iter()
            .chain([&self.g, &self.u, &self.m])
            .map(|v| v.capacity() * 4)
            .sum()
    }
}

/// Where a layer's attention finds its keys and values.
pub(super) enum Keys<'a> {
    /// A training or evaluation pass over positions 0..t: the block's own, kept in `LayerActs`; with
    /// per-token positions (b·t), each sequence packs several examples, each from position 0.
    Own(Option<&'a [u32]>),
    /// A key/value cache of `cap` positions per sequence and key/value head (b, kv_heads, cap, d): this
    /// call's keys and values are stored at rows `pos0..pos0 + t`, and attention reads rows
    /// `0..pos0 + t`. With `int8`, the Linears run with 8-bit activations (`GenerateOptions::int8`).
    Cache { k: &'a mut [f32], v: &'a mut [f32], cap: usize, pos0: usize, int8: bool },
}

/// What a layer's forward pass is for.
pub(super) enum Output<'a> {
    /// The layer's output (b·t rows of hidden), into this buffer.
    Next(&'a mut [f32]),
    /// A recomputation for the layer's backward pass, which never reads the output, with
    /// `LayerActs::h2` (x + attention) already as the first forward made it: o_proj's and down_proj's
    /// products are skipped, and so is the attention's weighted sum of the values unless o_proj has a
    /// delta (whose backward reads its input). The deltas run `forward_again`: what their first forward
    /// kept, no new draws. With `gate_up`, `LayerActs::g` and `u` too already hold what the first
    /// forward made, and gate's and up's products are skipped.
    Recompute { gate_up: bool },
}

impl Llama {
    /// Layer `l` over `x` (b·t rows of hidden), for `out`; `la` keeps what backward needs (for
    /// `Keys::Own`), `sc` is scratch.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer_forward(
        &self,
        l: usize,
        x: &[f32],
        out: Output,
        la: &mut LayerActs,
        sc: &mut Vec<f32>,
        rope: &Rope,
        b: usize,
        t: usize,
        keys: Keys,
        delta: &mut Option<&mut dyn LayerDelta>,
    ) {
        let c = &self.cfg;
        let (h, n, d, nh, nkv) = (c.hidden, b * t, c.head_dim, c.heads, c.kv_heads());
        let (qd, kvd) = (c.q_dim(), c.kv_dim());
        let run = match (&out, &keys) {
            (Output::Recompute { .. }, _) => Run::Again,
            (_, Keys::Cache { int8, .. }) => Run::int8(*int8),
            _ => Run::F32,
        };
        let (recompute, kept_gate_up) = (run == Run::Again, matches!(out, Output::Recompute { gate_up: true }));
        if recompute {
            let kept = |v: &Vec<f32>, len| v.len() == len;
            let mlp = n * c.intermediate;
            assert!(
                kept(&la.h2, n * h) && (!kept_gate_up || kept(&la.g, mlp) && kept(&la.u, mlp)),
                "recompute without kept rows"
            );
        }
        for v in [&mut la.a, &mut la.h2, &mut la.c] {
            resize(v, n * h);
        }
        for v in [&mut la.q, &mut la.o] {
            resize(v, n * qd);
        }
        for v in [&mut la.g, &mut la.u, &mut la.m] {
            resize(v, n * c.intermediate);
        }
        resize(&mut la.rstd_in, n);
        resize(&mut la.rstd_post, n);
        resize(sc, n * h.max(qd));

        norm::forward(x, &self.norms[l][0], c.rms_norm_eps, &mut la.a, &mut la.rstd_in);
        let (kc, vc, cap, pos0, pos) = match keys {
            Keys::Own(packed) => {
                resize(&mut la.k, n * kvd);
                resize(&mut la.v, n * kvd);
                (&mut la.k[..], &mut la.v[..], t, 0, packed.map_or(Positions::From(0), Positions::Each))
            }
            Keys::Cache { k, v, cap, pos0, .. } => (k, v, cap, pos0, Positions::From(pos0)),
        };
        project(self, c.module(l, Q), &la.a, &mut sc[..n * qd], n, run, delta);
        rope.to_heads(&sc[..n * qd], &mut la.q, b, t, nh, d, pos, (0, t), true);
        for (j, out, rotate) in [(K, &mut *kc, true), (V, &mut *vc, false)] {
            project(self, c.module(l, j), &la.a, &mut sc[..n * kvd], n, run, delta);
            rope.to_heads(&sc[..n * kvd], out, b, t, nkv, d, pos, (pos0, cap), rotate);
        }
        let shape = Shape { tq: t, pos0, cap, d, heads: nh, kv_heads: nkv };
        resize(&mut la.p, b * nh * t * shape.tk());
        let scale = 1.0 / (d as f32).sqrt();
        let o_proj = c.module(l, O);
        if recompute && !delta.as_ref().is_some_and(|d| d.is_active(o_proj)) {
            attention::forward(&la.q, kc, vc, &mut la.p, None, shape, scale, pos);
        } else {
            // The heads' outputs land in the scratch (head-major), then move to `o` token-major.
            attention::forward(&la.q, kc, vc, &mut la.p, Some(&mut sc[..n * qd]), shape, scale, pos);
            rope.back_to_tokens(&sc[..n * qd], &mut la.o, b, t, nh, d, pos, false);
        }
        if !recompute {
            project(self, o_proj, &la.o, &mut la.h2, n, run, delta);
            la.h2.iter_mut().zip(x).for_each(|(h2, x)| *h2 += x);
        }

        norm::forward(&la.h2, &self.norms[l][1], c.rms_norm_eps, &mut la.c, &mut la.rstd_post);
        if !kept_gate_up {
            project(self, c.module(l, GATE), &la.c, &mut la.g, n, run, delta);
            project(self, c.module(l, UP), &la.c, &mut la.u, n, run, delta);
        }
        gate::forward(&la.g, &la.u, &mut la.m);
        let down = c.module(l, DOWN);
        if let Output::Next(x_next) = out {
            project(self, down, &la.m, &mut sc[..n * h], n, run, delta);
            x_next.iter_mut().zip(la.h2.iter().zip(sc.iter())).for_each(|(xn, (h2, y))| *xn = h2 + y);
        }
    }
}
