//! The backward pass through the activations of the last forward: gradients of every parameter when
//! the base trains, or only the input gradients an adapter's modules need when it is frozen.

use super::config::{DOWN, GATE, K, LAYER_MODULES, O, Q, UP, V};
use super::forward::LmActivations;
use super::model::Llama;
use super::attention::{self, Shape};
use super::{gate, norm};
use crate::kernels;
use crate::nn::LayerDelta;

/// Gradients shaped like the model's parameters, plus the backward pass's scratch buffers.
#[derive(Clone, Debug, Default)]
pub struct LmGrads {
    pub embed: Vec<f32>,
    pub linears: Vec<Vec<f32>>,
    pub norms: Vec<[Vec<f32>; 2]>,
    pub final_norm: Vec<f32>,
    scratch: Scratch,
}

#[derive(Clone, Debug, Default)]
struct Scratch {
    /// Gradient at the current layer's output, then at its input.
    dx: Vec<f32>,
    dh2: Vec<f32>,
    /// Gradient at a norm's output (n × hidden).
    dn: Vec<f32>,
    /// Token-major gradient at o_proj's input, and at q/k/v's outputs.
    dtok: [Vec<f32>; 3],
    /// Head-major gradients of dO, dQ, dK, dV.
    dheads: [Vec<f32>; 4],
    dm: Vec<f32>,
    dg: Vec<f32>,
    du: Vec<f32>,
}

impl LmGrads {
    pub fn zeros(model: &Llama) -> Self {
        Self {
            embed: vec![0.0; model.embed.len()],
            linears: model.linears.iter().map(|l| vec![0.0; l.weight.len()]).collect(),
            norms: model.norms.iter().map(|[a, b]| [vec![0.0; a.len()], vec![0.0; b.len()]]).collect(),
            final_norm: vec![0.0; model.final_norm.len()],
            scratch: Scratch::default(),
        }
    }

    /// The gradients in the order of `Llama::params`.
    pub fn tensors_mut(&mut self, model: &Llama) -> Vec<&mut [f32]> {
        let cfg = &model.cfg;
        let mut linears: Vec<Option<&mut Vec<f32>>> = self.linears.iter_mut().map(Some).collect();
        let head = linears[cfg.lm_head()].take().expect("lm_head once");
        let (embed, head): (&mut [f32], _) =
            if cfg.tie_embeddings { (head, None) } else { (&mut self.embed, Some(head)) };
        let mut v: Vec<&mut [f32]> = vec![embed];
        for (l, [a, b]) in self.norms.iter_mut().enumerate() {
            v.push(a);
            v.push(b);
            for j in 0..LAYER_MODULES.len() {
                v.push(linears[cfg.module(l, j)].take().expect("each Linear once"));
            }
        }
        v.push(&mut self.final_norm);
        v.extend(head.map(|h| &mut h[..]));
        v
    }
}

/// The backward of module `i` (y = x·Wᵀ + delta): `dw (+)= dyᵀ·x` when `dw` is given (added when its
/// flag says so), `dx (+)= dy·W`
/// (added when `accumulate`) when `dx` is given, and the delta's own backward where active.
#[allow(clippy::too_many_arguments)]
fn project_back(
    model: &Llama,
    i: usize,
    x: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    accumulate: bool,
    dw: Option<(&mut [f32], bool)>,
    n: usize,
    delta: &mut Option<&mut dyn LayerDelta>,
) {
    let lin = &model.linears[i];
    let (k, o) = (lin.in_features, lin.out_features);
    if let Some((dw, add)) = dw {
        kernels::linear_weight_grad(dy, x, dw, n, k, o, add);
    }
    if let Some(dx) = dx.as_deref_mut() {
        lin.input_grad(dy, dx, n, accumulate);
    }
    if let Some(d) = delta.as_deref_mut().filter(|d| d.is_active(i)) {
        d.backward(i, x, dy, dx, n);
    }
}

impl Llama {
    /// Backward from `dlogits` (n × vocab) through `acts`. With `weights` every parameter gradient is
    /// written into `grads`; without, none is (a frozen base), and gradients flow only as far down as
    /// the lowest layer where `delta` has an active module.
    pub fn backward(
        &self,
        acts: &LmActivations,
        dlogits: &[f32],
        grads: &mut LmGrads,
        weights: bool,
        delta: Option<&mut dyn LayerDelta>,
    ) {
        self.backward_into(acts, dlogits, grads, weights, false, delta);
    }

    /// `backward`, with the parameter gradients added to what `grads` holds when `accumulate` (a batch
    /// computed in parts).
    pub fn backward_into(
        &self,
        acts: &LmActivations,
        dlogits: &[f32],
        grads: &mut LmGrads,
        weights: bool,
        accumulate: bool,
        mut delta: Option<&mut dyn LayerDelta>,
    ) {
        assert!(acts.trainable(), "backward needs the activations of a training forward pass");
        let c = &self.cfg;
        let (b, t) = (acts.b, acts.t);
        let (h, n, nh, nkv, d, inter) = (c.hidden, b * t, c.heads, c.kv_heads(), c.head_dim, c.intermediate);
        let active = |d: &Option<&mut dyn LayerDelta>, i: usize| d.as_ref().is_some_and(|d| d.is_active(i));
        let lowest = if weights {
            Some(0)
        } else {
            (0..c.layers).find(|&l| (0..LAYER_MODULES.len()).any(|j| active(&delta, c.module(l, j))))
        };
        let LmGrads { embed: g_embed, linears: g_lin, norms: g_norms, final_norm: g_final, scratch: s } = grads;
        // The forward that filled `acts` built the rotary table; without one there is nothing to do.
        let Some(rope) = acts.rope.as_ref() else { return };
        let scale = 1.0 / (d as f32).sqrt();
        for v in [&mut s.dx, &mut s.dh2, &mut s.dn] {
            v.resize(n * h, 0.0);
        }
        let (qd, kvd) = (c.q_dim(), c.kv_dim());
        for (v, w) in s.dtok.iter_mut().zip([qd, kvd, kvd]).chain(s.dheads.iter_mut().zip([qd, qd, kvd, kvd])) {
            v.resize(n * w, 0.0);
        }
        for v in [&mut s.dm, &mut s.dg, &mut s.du] {
            v.resize(n * inter, 0.0);
        }

        // lm_head, then the final norm.
        let head = c.lm_head();
        let need_below = lowest.is_some();
        project_back(
            self,
            head,
            &acts.f,
            dlogits,
            need_below.then_some(&mut s.dn[..]),
            false,
            weights.then_some((&mut g_lin[head][..], accumulate)),
            n,
            &mut delta,
        );
        let Some(lowest) = lowest else { return };
        s.dx.fill(0.0);
        norm::backward(
            &acts.xs[c.layers],
            &self.final_norm,
            &acts.rstd_f,
            &s.dn,
            &mut s.dx,
            weights.then_some((&mut g_final[..], accumulate)),
        );

        for l in (lowest..c.layers).rev() {
            let la = &acts.layers[l];
            let m = |j: usize| c.module(l, j);
            let [g_in, g_post] = &mut g_norms[l];
            // MLP: x_next = h2 + down(silu(gate(c)) ⊙ up(c)), c = post_norm(h2).
            project_back(
                self,
                m(DOWN),
                &la.m,
                &s.dx,
                Some(&mut s.dm),
                false,
                weights.then_some((&mut g_lin[m(DOWN)][..], accumulate)),
                n,
                &mut delta,
            );
            gate::backward(&la.g, &la.u, &s.dm, &mut s.dg, &mut s.du);
            project_back(
                self,
                m(GATE),
                &la.c,
                &s.dg,
                Some(&mut s.dn),
                false,
                weights.then_some((&mut g_lin[m(GATE)][..], accumulate)),
                n,
                &mut delta,
            );
            project_back(
                self,
                m(UP),
                &la.c,
                &s.du,
                Some(&mut s.dn),
                true,
                weights.then_some((&mut g_lin[m(UP)][..], accumulate)),
                n,
                &mut delta,
            );
            s.dh2.copy_from_slice(&s.dx);
            norm::backward(
                &la.h2,
                &self.norms[l][1],
                &la.rstd_post,
                &s.dn,
                &mut s.dh2,
                weights.then_some((&mut g_post[..], accumulate)),
            );

            // Attention: h2 = x + o_proj(attn(rope(q(a)), rope(k(a)), v(a))), a = input_norm(x).
            let [dtok_o, dtok_k, dtok_v] = &mut s.dtok;
            let [dh_o, dh_q, dh_k, dh_v] = &mut s.dheads;
            project_back(
                self,
                m(O),
                &la.o,
                &s.dh2,
                Some(dtok_o),
                false,
                weights.then_some((&mut g_lin[m(O)][..], accumulate)),
                n,
                &mut delta,
            );
            rope.to_heads(dtok_o, dh_o, b, t, nh, d, 0, (0, t), false);
            attention::backward(&la.q, &la.k, &la.v, &la.p, dh_o, dh_q, dh_k, dh_v, Shape::training(t, d, nh, nkv), scale);
            // dtok_o is free again: it takes dq.
            rope.back_to_tokens(dh_q, dtok_o, b, t, nh, d, true);
            rope.back_to_tokens(dh_k, dtok_k, b, t, nkv, d, true);
            rope.back_to_tokens(dh_v, dtok_v, b, t, nkv, d, false);
            // Below the lowest adapted layer of a frozen base nothing needs a gradient.
            let below = l > lowest || weights;
            for (j, dy) in [(Q, &*dtok_o), (K, &*dtok_k), (V, &*dtok_v)] {
                let dx = below.then_some(&mut s.dn[..]);
                project_back(
                    self,
                    m(j),
                    &la.a,
                    dy,
                    dx,
                    j != Q,
                    weights.then_some((&mut g_lin[m(j)][..], accumulate)),
                    n,
                    &mut delta,
                );
            }
            s.dx.copy_from_slice(&s.dh2);
            if below {
                norm::backward(
                    &acts.xs[l],
                    &self.norms[l][0],
                    &la.rstd_in,
                    &s.dn,
                    &mut s.dx,
                    weights.then_some((&mut g_in[..], accumulate)),
                );
            }
        }
        if weights {
            // The padding row gets no gradient, as `nn.Embedding(padding_idx=pad)` gives it none.
            // A tied embedding is lm_head's weight, whose gradient (above) this adds to.
            let g_embed = if c.tie_embeddings {
                &mut g_lin[head]
            } else {
                if !accumulate {
                    g_embed.fill(0.0);
                }
                g_embed
            };
            for (&id, g) in acts.ids.iter().zip(s.dx.chunks_exact(h)).filter(|(&id, _)| id != c.pad) {
                g_embed[id as usize * h..][..h].iter_mut().zip(g).for_each(|(e, g)| *e += g);
            }
        }
    }
}
