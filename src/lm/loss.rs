//! The causal-LM loss as transformers computes it: logits at position i predict the token at i + 1
//! (`logits[:, :-1]` against `ids[:, 1:]`), cross-entropy in f32, mean over the targets that are not
//! padding.

use crate::kernels::{self, par_map, Chunks};

/// The target of each logits row (b·t rows): the next token of the same sequence, `None` for the last
/// position and wherever the next token is `pad`.
pub fn targets(ids: &[u32], t: usize, pad: u32) -> Vec<Option<u32>> {
    ids.chunks_exact(t).flat_map(|seq| (0..t).map(move |i| seq.get(i + 1).copied().filter(|&x| x != pad))).collect()
}

/// log p(target) of each row that has a target (`NaN` elsewhere), from logits (rows × vocab).
pub fn log_probs(logits: &[f32], vocab: usize, targets: &[Option<u32>]) -> Vec<f32> {
    par_map((logits.len() / vocab).min(targets.len()), &|i| match targets[i] {
        Some(t) => {
            let row = &logits[i * vocab..][..vocab];
            let max = kernels::row_max(row);
            row[t as usize] - max - kernels::sum_exp(row, max, None).ln()
        }
        None => f32::NAN,
    })
}

/// One part of a batch whose mean runs over `denom` targets in all: `dlogits` = (softmax − onehot) /
/// denom on the rows that have a target, 0 on the others; returns the part's summed cross-entropy.
pub fn cross_entropy_part(
    logits: &[f32],
    vocab: usize,
    targets: &[Option<u32>],
    dlogits: &mut [f32],
    denom: usize,
) -> f64 {
    if denom == 0 || targets.iter().all(Option::is_none) {
        dlogits.fill(0.0);
        return 0.0;
    }
    let inv = 1.0 / denom as f32;
    // Each row's loss in its own place, summed in row order afterwards: the same sum on any threads.
    let rows = (logits.len() / vocab).min(targets.len());
    let ds = Chunks::new(&mut dlogits[..rows * vocab], vocab);
    let losses = par_map(rows, &|i| {
        let d = ds.take(i);
        let Some(t) = targets[i] else {
            d.fill(0.0);
            return 0.0;
        };
        let row = &logits[i * vocab..][..vocab];
        let max = kernels::row_max(row);
        let sum = kernels::sum_exp(row, max, Some(&mut *d));
        kernels::scale(d, inv / sum);
        d[t as usize] -= inv;
        (sum.ln() - (row[t as usize] - max)) as f64
    });
    losses.iter().sum()
}
