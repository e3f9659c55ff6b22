//! Sampling text one token at a time with a key/value cache: each step runs the model on the newest
//! token of every sequence only, attending to the keys and values kept from the steps before. The
//! sequences of a call advance together, one row each, so the Linears run as one batch.

use super::config::{DOWN, GATE, K, O, Q, UP, V};
use super::forward::project;
use super::model::Llama;
use super::rope::Rope;
use super::{gate, norm};
use crate::error::{LabError, Result};
use crate::kernels;
use crate::nn::LayerDelta;
use crate::rng::Rng;

/// How to pick each next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// 0 picks the most probable token (greedy); otherwise logits are divided by it.
    pub temperature: f32,
    /// Only the `top_k` most probable tokens are candidates (0: all).
    pub top_k: usize,
}

/// Picks a token from one row of logits.
pub fn pick(logits: &[f32], s: Sampling, rng: &mut Rng) -> u16 {
    let argmax =
        || logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
    if s.temperature == 0.0 {
        return argmax() as u16;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Descending by logit, ties by id: the candidates do not depend on the sort's stability.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if s.top_k > 0 {
        order.truncate(s.top_k);
    }
    let max = logits[order[0]];
    let weights: Vec<f64> = order.iter().map(|&i| (((logits[i] - max) / s.temperature) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.uniform() as f64 * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u16;
        }
        u -= w;
    }
    order[order.len() - 1] as u16
}

/// Keys and values of every layer for `n` sequences, up to the context.
struct Cache {
    /// Per layer: n × heads × context × d.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Llama {
    /// Continues each of `prompts` (each starting with BOS, all of one length) until EOS or the
    /// context is full, and returns the whole sequences (prompt included, EOS included when met).
    pub fn generate(
        &self,
        prompts: &[Vec<u16>],
        s: Sampling,
        rng: &mut Rng,
        mut delta: Option<&mut dyn LayerDelta>,
    ) -> Result<Vec<Vec<u16>>> {
        let c = &self.cfg;
        let n = prompts.len();
        let p = prompts.first().map_or(0, Vec::len);
        if n == 0 || p == 0 || prompts.iter().any(|q| q.len() != p) {
            return Err(LabError::setting("prompts", "give at least one prompt, all of the same non-zero length"));
        }
        if !(s.temperature.is_finite() && s.temperature >= 0.0) {
            return Err(LabError::setting("temperature", format!("{} is not a number ≥ 0", s.temperature)));
        }
        let flat: Vec<u16> = prompts.concat();
        self.check_ids(&flat, n, p)?;
        let (h, nh, d, inter, ctx) = (c.hidden, c.heads, c.head_dim, c.intermediate, c.context);
        let rope = Rope::new(d, ctx, c.rope_theta);
        let scale = 1.0 / (d as f32).sqrt();
        let mut cache =
            Cache { k: vec![vec![0.0; n * nh * ctx * d]; c.layers], v: vec![vec![0.0; n * nh * ctx * d]; c.layers] };
        let mut seqs: Vec<Vec<u16>> = prompts.to_vec();
        let mut done = vec![false; n];
        let (mut x, mut a, mut q, mut kv, mut o, mut y) = (
            vec![0.0; n * h],
            vec![0.0; n * h],
            vec![0.0; n * h],
            vec![0.0; n * h],
            vec![0.0; n * h],
            vec![0.0; n * h],
        );
        let (mut g, mut u, mut m) = (vec![0.0; n * inter], vec![0.0; n * inter], vec![0.0; n * inter]);
        // The new position's q and k/v in head-major order (n sequences × heads × d).
        let (mut qh, mut heads) = (vec![0.0; n * h], vec![0.0; n * h]);
        let mut rstd = vec![0.0; n];
        let mut logits = vec![0.0; n * c.vocab];
        let mut scores = vec![0.0f32; ctx];
        for pos in 0..ctx {
            if done.iter().all(|&d| d) {
                break;
            }
            for (xr, seq) in x.chunks_exact_mut(h).zip(&seqs) {
                let id = seq[pos.min(seq.len() - 1)] as usize;
                xr.copy_from_slice(&self.embed[id * h..][..h]);
            }
            for l in 0..c.layers {
                norm::forward(&x, &self.norms[l][0], c.rms_norm_eps, &mut a, &mut rstd);
                project(self, c.module(l, Q), &a, &mut q, n, &mut delta);
                rope.to_heads(&q, &mut qh, n, 1, nh, d, pos, true);
                for (j, store, rotate) in [(K, &mut cache.k[l], true), (V, &mut cache.v[l], false)] {
                    project(self, c.module(l, j), &a, &mut kv, n, &mut delta);
                    rope.to_heads(&kv, &mut heads, n, 1, nh, d, pos, rotate);
                    for (bh, row) in heads.chunks_exact(d).enumerate() {
                        store[(bh * ctx + pos) * d..][..d].copy_from_slice(row);
                    }
                }
                // Attention of the new position over positions 0..=pos, per sequence and head.
                for bh in 0..n * nh {
                    let (keys, values) = (&cache.k[l][bh * ctx * d..], &cache.v[l][bh * ctx * d..]);
                    let qv = &qh[bh * d..][..d];
                    let sc = &mut scores[..=pos];
                    for (j, s) in sc.iter_mut().enumerate() {
                        *s = qv.iter().zip(&keys[j * d..][..d]).map(|(a, b)| a * b).sum::<f32>();
                    }
                    // The same softmax as the forward pass's attention rows.
                    kernels::softmax_scaled(sc, scale);
                    let (bi, head) = (bh / nh, bh % nh);
                    let out = &mut o[bi * h + head * d..][..d];
                    out.fill(0.0);
                    for (j, &w) in sc.iter().enumerate() {
                        out.iter_mut().zip(&values[j * d..][..d]).for_each(|(o, v)| *o += w * v);
                    }
                }
                project(self, c.module(l, O), &o, &mut y, n, &mut delta);
                x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
                norm::forward(&x, &self.norms[l][1], c.rms_norm_eps, &mut a, &mut rstd);
                project(self, c.module(l, GATE), &a, &mut g, n, &mut delta);
                project(self, c.module(l, UP), &a, &mut u, n, &mut delta);
                gate::forward(&g, &u, &mut m);
                project(self, c.module(l, DOWN), &m, &mut y, n, &mut delta);
                x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
            }
            norm::forward(&x, &self.final_norm, c.rms_norm_eps, &mut a, &mut rstd);
            project(self, c.lm_head(), &a, &mut logits, n, &mut delta);
            // The prompt's own positions only fill the cache; sampling starts after its last token.
            if pos + 1 < p || pos + 1 >= ctx {
                continue;
            }
            for ((seq, fin), row) in seqs.iter_mut().zip(&mut done).zip(logits.chunks_exact(c.vocab)) {
                if *fin {
                    continue;
                }
                let t = pick(row, s, rng);
                seq.push(t);
                *fin = t == c.eos || seq.len() >= ctx;
            }
        }
        Ok(seqs)
    }
}
