//! The backward pass through the activations of the last forward: gradients of every parameter when
//! the base trains, or only the input gradients an adapter's modules need when it is frozen.

use super::attention::{self, Shape};
use super::config::{DOWN, GATE, K, LAYER_MODULES, O, Q, UP, V};
use super::forward::{resize, LmActivations};
use super::layer::LayerActs;
use super::model::Llama;
use super::rope::{Positions, Rope};
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
pub(super) struct Scratch {
    /// Gradient at the current layer's output, then at its input.
    pub(super) dx: Vec<f32>,
    dh2: Vec<f32>,
    /// Gradient at a norm's output (n × hidden).
    pub(super) dn: Vec<f32>,
    /// Token-major gradient at o_proj's input, and at q/k/v's outputs.
    dtok: [Vec<f32>; 3],
    /// Head-major gradients of dO, dQ, dK, dV.
    dheads: [Vec<f32>; 4],
    dm: Vec<f32>,
    dg: Vec<f32>,
    du: Vec<f32>,
}

impl LmGrads {
    /// What a backward pass over a frozen base needs: its scratch buffers, no parameter gradients.
    pub fn frozen() -> Self {
        Self::default()
    }

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

impl Scratch {
    /// Bytes the buffers hold.
    pub(super) fn bytes(&self) -> usize {
        let f = |v: &Vec<f32>| v.capacity() * 4;
        [&self.dx, &self.dh2, &self.dn, &self.dm, &self.dg, &self.du].into_iter().map(f).sum::<usize>()
            + self.dtok.iter().chain(&self.dheads).map(f).sum::<usize>()
    }

    /// Sizes every buffer for `n` rows of `cfg`'s model.
    pub(super) fn resize(&mut self, c: &crate::lm::LmConfig, n: usize) {
        let (h, inter, qd, kvd) = (c.hidden, c.intermediate, c.q_dim(), c.kv_dim());
        for v in [&mut self.dx, &mut self.dh2, &mut self.dn] {
            resize(v, n * h);
        }
        for (v, w) in self.dtok.iter_mut().zip([qd, kvd, kvd]).chain(self.dheads.iter_mut().zip([qd, qd, kvd, kvd])) {
            resize(v, n * w);
        }
        for v in [&mut self.dm, &mut self.dg, &mut self.du] {
            resize(v, n * inter);
        }
    }
}

/// Where one layer's weight gradients go when the base trains: the model's Linear gradients (indexed
/// by module) and this layer's two norm weights', written or added to.
pub(super) struct WeightGrads<'a> {
    pub linears: &'a mut [Vec<f32>],
    pub norms: &'a mut [Vec<f32>; 2],
    pub accumulate: bool,
}

/// Module `i`'s weight gradient in `g`, if the base trains.
fn linear_grad<'a>(g: &'a mut Option<WeightGrads>, i: usize) -> Option<(&'a mut [f32], bool)> {
    g.as_mut().map(|g| (&mut g.linears[i][..], g.accumulate))
}

/// The layer's norm weight `k`'s gradient in `g` (0 input, 1 post-attention), if the base trains.
fn norm_grad<'a>(g: &'a mut Option<WeightGrads>, k: usize) -> Option<(&'a mut [f32], bool)> {
    g.as_mut().map(|g| (&mut g.norms[k][..], g.accumulate))
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

    /// The lowest layer a backward pass must reach: 0 when the base trains, else the lowest layer
    /// where `delta` has an active module (`None`: no layer).
    pub(super) fn lowest_trained_layer(&self, weights: bool, delta: &Option<&mut dyn LayerDelta>) -> Option<usize> {
        let c = &self.cfg;
        if weights {
            return Some(0);
        }
        let active = |i: usize| delta.as_ref().is_some_and(|d| d.is_active(i));
        (0..c.layers).find(|&l| (0..LAYER_MODULES.len()).any(|j| active(c.module(l, j))))
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
        let (h, n) = (c.hidden, b * t);
        let lowest = self.lowest_trained_layer(weights, &delta);
        let LmGrads { embed: g_embed, linears: g_lin, norms: g_norms, final_norm: g_final, scratch: s } = grads;
        // The forward that filled `acts` built the rotary table; without one there is nothing to do.
        let Some(rope) = acts.rope.as_ref() else { return };
        s.resize(c, n);

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
            weights.then(|| (&mut g_lin[head][..], accumulate)),
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
            weights.then(|| (&mut g_final[..], accumulate)),
        );

        for l in (lowest..c.layers).rev() {
            let g = weights.then(|| WeightGrads { linears: &mut g_lin[..], norms: &mut g_norms[l], accumulate });
            // Below the lowest adapted layer of a frozen base nothing needs a gradient.
            let below = l > lowest || weights;
            let bt = (b, t, Positions::From(0));
            self.layer_backward(l, &acts.xs[l], &acts.layers[l], rope, bt, s, g, below, &mut delta);
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

    /// Backward through decoder layer `l`, whose input was `x` and whose forward saved `la`: on entry
    /// `s.dx` holds the gradient at the layer's output, on exit the gradient at its input (when
    /// `below`: something under this layer needs it). Weight gradients go to `g` when the base trains;
    /// the delta's to itself.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer_backward(
        &self,
        l: usize,
        x: &[f32],
        la: &LayerActs,
        rope: &Rope,
        (b, t, pos): (usize, usize, Positions),
        s: &mut Scratch,
        mut g: Option<WeightGrads>,
        below: bool,
        delta: &mut Option<&mut dyn LayerDelta>,
    ) {
        let c = &self.cfg;
        let (n, nh, nkv, d) = (b * t, c.heads, c.kv_heads(), c.head_dim);
        let scale = 1.0 / (d as f32).sqrt();
        let m = |j: usize| c.module(l, j);
        // MLP: x_next = h2 + down(silu(gate(c)) ⊙ up(c)), c = post_norm(h2).
        project_back(self, m(DOWN), &la.m, &s.dx, Some(&mut s.dm), false, linear_grad(&mut g, m(DOWN)), n, delta);
        gate::backward(&la.g, &la.u, &s.dm, &mut s.dg, &mut s.du);
        project_back(self, m(GATE), &la.c, &s.dg, Some(&mut s.dn), false, linear_grad(&mut g, m(GATE)), n, delta);
        project_back(self, m(UP), &la.c, &s.du, Some(&mut s.dn), true, linear_grad(&mut g, m(UP)), n, delta);
        s.dh2.copy_from_slice(&s.dx);
        norm::backward(&la.h2, &self.norms[l][1], &la.rstd_post, &s.dn, &mut s.dh2, norm_grad(&mut g, 1));

        // Attention: h2 = x + o_proj(attn(rope(q(a)), rope(k(a)), v(a))), a = input_norm(x).
        let [dtok_o, dtok_k, dtok_v] = &mut s.dtok;
        let [dh_o, dh_q, dh_k, dh_v] = &mut s.dheads;
        project_back(self, m(O), &la.o, &s.dh2, Some(dtok_o), false, linear_grad(&mut g, m(O)), n, delta);
        let shape = Shape::training(t, d, nh, nkv);
        rope.to_heads(dtok_o, dh_o, b, t, nh, d, pos, (0, t), false);
        attention::backward(&la.q, &la.k, &la.v, &la.p, dh_o, dh_q, dh_k, dh_v, shape, scale, pos);
        // dtok_o is free again: it takes dq.
        rope.back_to_tokens(dh_q, dtok_o, b, t, nh, d, pos, true);
        rope.back_to_tokens(dh_k, dtok_k, b, t, nkv, d, pos, true);
        rope.back_to_tokens(dh_v, dtok_v, b, t, nkv, d, pos, false);
        for (j, dy) in [(Q, &*dtok_o), (K, &*dtok_k), (V, &*dtok_v)] {
            let dx = below.then_some(&mut s.dn[..]);
            project_back(self, m(j), &la.a, dy, dx, j != Q, linear_grad(&mut g, m(j)), n, delta);
        }
        s.dx.copy_from_slice(&s.dh2);
        if below {
            norm::backward(x, &self.norms[l][0], &la.rstd_in, &s.dn, &mut s.dx, norm_grad(&mut g, 0));
        }
    }
}
