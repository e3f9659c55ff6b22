//! The metric everywhere (LANGUAGE_MODEL.md): mean cross-entropy in nats per predicted token, each
//! held-out line scored alone from BOS through EOS, nothing packed; and per-token log-probabilities of
//! one text, for the page's colouring.

use super::forward::LmActivations;
use super::loss;
use super::model::Llama;
use crate::error::{LabError, Result};
use crate::kernels;
use crate::nn::LayerDelta;

/// Sequences per forward pass while evaluating: 16 × 64 tokens keep the buffers at ~12 MB, and
/// still fill the GEMM tiles.
const EVAL_BATCH: usize = 16;

/// Mean cross-entropy (nats) per predicted token over `seqs`, each scored alone (padded to its
/// batch's longest with PAD, whose positions predict nothing). Summed in f64, so the order of
/// batches does not change the mean beyond f64 rounding.
/// Runs on the pool, its threads kept awake from one batch to the next (`kernels::on_pool`).
/// `seqs` in any id width (the byte tokenizer's `u16`, a BPE's `u32`).
pub fn held_out_loss<T: Copy + Into<u32> + Sync>(
    model: &Llama,
    seqs: &[Vec<T>],
    delta: Option<&mut dyn LayerDelta>,
) -> Result<f64> {
    kernels::on_pool(|| held_out_loss_here(model, seqs, delta))
}

fn held_out_loss_here<T: Copy + Into<u32>>(
    model: &Llama,
    seqs: &[Vec<T>],
    mut delta: Option<&mut dyn LayerDelta>,
) -> Result<f64> {
    let pad = model.cfg.pad;
    let mut acts = LmActivations::for_inference();
    let (mut total, mut count) = (0.0f64, 0usize);
    for chunk in seqs.chunks(EVAL_BATCH) {
        let t = chunk.iter().map(Vec::len).max().unwrap_or(0);
        if t < 2 {
            continue;
        }
        let mut ids = vec![pad; chunk.len() * t];
        for (row, s) in ids.chunks_exact_mut(t).zip(chunk) {
            for (id, &x) in row.iter_mut().zip(s) {
                *id = x.into();
            }
        }
        model.forward(&ids, chunk.len(), t, &mut acts, delta.as_mut().map(|d| &mut **d as &mut dyn LayerDelta))?;
        let targets = loss::targets(&ids, t, pad);
        for lp in loss::log_probs(&acts.logits, model.cfg.vocab, &targets).into_iter().filter(|v| !v.is_nan()) {
            total -= lp as f64;
            count += 1;
        }
    }
    if count == 0 {
        return Err(LabError::state("no held-out tokens to evaluate"));
    }
    Ok(total / count as f64)
}

/// log p(ids[i + 1] | ids[..=i]) for every position of one sequence (ids.len() − 1 values).
pub fn token_log_probs(model: &Llama, ids: &[u32], delta: Option<&mut dyn LayerDelta>) -> Result<Vec<f32>> {
    let mut acts = LmActivations::for_inference();
    model.forward(ids, 1, ids.len(), &mut acts, delta)?;
    // Every next token counts here, PAD included: the text is the caller's.
    let targets: Vec<Option<u32>> = (0..ids.len()).map(|i| ids.get(i + 1).copied()).collect();
    let mut lp = loss::log_probs(&acts.logits, model.cfg.vocab, &targets);
    lp.pop();
    Ok(lp)
}
