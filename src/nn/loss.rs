//! Numerically stable softmax cross-entropy over 10 classes, mean over the batch (PyTorch's
//! `nn.CrossEntropyLoss()` default reduction).

/// Returns the mean loss over the batch and writes dlogits = (softmax − onehot) / b.
/// `logits` is b×classes, `labels` has b entries below `classes`.
pub fn softmax_cross_entropy(logits: &[f32], labels: &[u8], dlogits: &mut [f32], classes: usize) -> f32 {
    let b = labels.len();
    debug_assert_eq!(logits.len(), b * classes);
    debug_assert_eq!(dlogits.len(), b * classes);
    let inv_b = 1.0 / b as f32;
    let mut total = 0.0f64;
    for ((row, d), &label) in logits.chunks_exact(classes).zip(dlogits.chunks_exact_mut(classes)).zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (di, &z) in d.iter_mut().zip(row) {
            *di = (z - max).exp();
            sum += *di;
        }
        let log_sum = sum.ln();
        total += (log_sum - (row[label as usize] - max)) as f64;
        let inv_sum = 1.0 / sum;
        for di in d.iter_mut() {
            *di *= inv_sum * inv_b;
        }
        d[label as usize] -= inv_b;
    }
    (total / b as f64) as f32
}

/// Softmax of each row of `logits` (b×classes) into probabilities.
pub fn softmax(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; logits.len()];
    for (row, o) in logits.chunks_exact(classes).zip(out.chunks_exact_mut(classes)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (oi, &z) in o.iter_mut().zip(row) {
            *oi = (z - max).exp();
            sum += *oi;
        }
        o.iter_mut().for_each(|v| *v /= sum);
    }
    out
}

/// Index of the largest logit in each row (first one on ties).
pub fn argmax_rows(logits: &[f32], classes: usize) -> impl Iterator<Item = usize> + '_ {
    logits.chunks_exact(classes).map(|row| {
        row.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) })
            .0
    })
}
