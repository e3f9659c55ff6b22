//! Evaluation over sequences that begin alike — a chat template's system prompt and the wording of the
//! question every example repeats: their common first positions run once, as one sequence, and each
//! sequence's own rest reads those positions' keys and values from a cache, as `generate` continues a
//! prompt. Under causal attention the shared positions' activations are the same in every sequence, so
//! the numbers are those of the whole batch (each row's products and attention sums are made the same
//! way; only a GEMM that picks its tiling by row count may round differently). Not for training: there
//! each sequence draws its own dropout masks, so no two are alike.

use super::forward::resize;
use super::layer::{Keys, LayerActs, Output};
use super::model::Llama;
use super::rope::Rope;
use super::SftBatch;
use crate::nn::LayerDelta;

/// Fewer shared positions than this are not worth a second pass per layer.
const MIN_SHARED: usize = 8;

/// The buffers of a shared-prefix pass, reused across batches.
#[derive(Default)]
pub(super) struct SharedPrefix {
    /// The prefix's rows (p × hidden), in and out of a layer.
    prefix: [Vec<f32>; 2],
    /// The sequences' own rows (b · (t − p) × hidden), in and out of a layer.
    rest: [Vec<f32>; 2],
    /// One layer's keys and values, every sequence's (b, kv_heads, t, d).
    k: Vec<f32>,
    v: Vec<f32>,
    ids: Vec<u32>,
}

impl SharedPrefix {
    pub fn bytes(&self) -> usize {
        let f = |v: &Vec<f32>| v.capacity() * 4;
        self.prefix.iter().chain(&self.rest).map(f).sum::<usize>() + f(&self.k) + f(&self.v) + self.ids.capacity() * 4
    }
}

/// How many first positions every sequence of `batch` shares and may run once: the ids all sequences
/// have in common, up to the first position with a target. 0 where there is nothing worth sharing: one
/// sequence, packed examples, fewer than `MIN_SHARED` positions, or a delta that draws dropout masks.
pub(super) fn shared_positions(batch: &SftBatch, delta: &Option<&mut dyn LayerDelta>) -> usize {
    let &SftBatch { ids, b, t, targets, positions } = batch;
    if b < 2 || positions.is_some() || delta.as_ref().is_some_and(|d| d.draws()) {
        return 0;
    }
    let first = &ids[..t];
    // At least one position of each sequence is its own, even in a batch without targets.
    let first_target = targets.chunks_exact(t).filter_map(|row| row.iter().position(Option::is_some)).min();
    let mut p = first_target.unwrap_or(t).min(t - 1);
    for row in ids.chunks_exact(t).skip(1) {
        p = p.min(row.iter().zip(first).take_while(|(a, b)| a == b).count());
    }
    if p < MIN_SHARED {
        0
    } else {
        p
    }
}

impl Llama {
    /// Every layer over `batch` (no targets before position `p`, its first `p` ids alike in every
    /// sequence): the top layer's output lands at rows `p..t` of each sequence in `out` (b·t × hidden;
    /// rows before `p` are left as they were).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_shared_prefix(
        &self,
        batch: &SftBatch,
        p: usize,
        sp: &mut SharedPrefix,
        la: &mut LayerActs,
        scratch: &mut Vec<f32>,
        rope: &Rope,
        delta: &mut Option<&mut dyn LayerDelta>,
        out: &mut [f32],
    ) {
        let c = &self.cfg;
        let (b, t, h) = (batch.b, batch.t, c.hidden);
        let (rest, kv_block) = (t - p, c.head_dim * t);
        for x in &mut sp.prefix {
            resize(x, p * h);
        }
        for x in &mut sp.rest {
            resize(x, b * rest * h);
        }
        resize(&mut sp.k, b * c.kv_heads() * kv_block);
        resize(&mut sp.v, b * c.kv_heads() * kv_block);
        self.embed_rows(&batch.ids[..p], &mut sp.prefix[0]);
        sp.ids.clear();
        sp.ids.extend(batch.ids.chunks_exact(t).flat_map(|row| &row[p..]));
        self.embed_rows(&sp.ids, &mut sp.rest[0]);
        let (seq, span) = (c.kv_heads() * kv_block, p * c.head_dim);
        for l in 0..c.layers {
            let [p0, p1] = &mut sp.prefix;
            let (x, x_next) = if l % 2 == 0 { (&*p0, p1) } else { (&*p1, p0) };
            // The prefix as the first sequence's positions 0..p; the others get a copy of its keys and values.
            let keys = Keys::Cache { k: &mut sp.k[..seq], v: &mut sp.v[..seq], cap: t, pos0: 0, int8: false };
            self.layer_forward(l, x, Output::Next(x_next), la, scratch, rope, 1, p, keys, delta);
            for cache in [&mut sp.k, &mut sp.v] {
                let (first, others) = cache.split_at_mut(seq);
                for other in others.chunks_exact_mut(seq) {
                    for (dst, src) in other.chunks_exact_mut(kv_block).zip(first.chunks_exact(kv_block)) {
                        dst[..span].copy_from_slice(&src[..span]);
                    }
                }
            }
            let [r0, r1] = &mut sp.rest;
            let (x, x_next) = if l % 2 == 0 { (&*r0, r1) } else { (&*r1, r0) };
            let keys = Keys::Cache { k: &mut sp.k, v: &mut sp.v, cap: t, pos0: p, int8: false };
            self.layer_forward(l, x, Output::Next(x_next), la, scratch, rope, b, rest, keys, delta);
        }
        let top = &sp.rest[c.layers % 2];
        for (dst, src) in out.chunks_exact_mut(t * h).zip(top.chunks_exact(rest * h)) {
            dst[p * h..].copy_from_slice(src);
        }
    }
}
