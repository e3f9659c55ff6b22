//! Gradient clipping to a global norm, as `torch.nn.utils.clip_grad_norm_` (TrainingArguments'
//! `max_grad_norm`).

use rayon::prelude::*;

/// Elements per partial sum. The partition is fixed, and the partial sums are added in order, so the
/// norm does not depend on the number of threads.
const CHUNK: usize = 16 * 1024;

/// `Σ x²` of one chunk in f64 (each square is exact in f64), in four interleaved accumulators.
fn sum_squares(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let quads = x.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        for j in 0..4 {
            acc[j] += q[j] as f64 * q[j] as f64;
        }
    }
    let tail: f64 = rest.iter().map(|&r| r as f64 * r as f64).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Scales every gradient by `max_norm / (total + 1e-6)` when that is below 1, `total` being the global
/// L2 norm, and returns `total` (the norm before clipping), as `torch.nn.utils.clip_grad_norm_` does:
/// the norm of the per-tensor norms (each rounded to f32, as PyTorch's per-tensor norms are), the
/// coefficient computed in f32 as PyTorch computes it (`(1 / (total + 1e-6)) · max_norm`, clamped to 1).
/// The sums of squares are taken in f64 over fixed chunks. A non-finite norm is returned and the
/// gradients are left alone: the caller skips that step (PyTorch would scale them by NaN or 0).
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let chunks: Vec<(usize, &[f32])> =
        grads.iter().enumerate().flat_map(|(i, g)| g.chunks(CHUNK).map(move |c| (i, c))).collect();
    let partial: Vec<f64> = if chunks.len() <= 1 || rayon::current_num_threads() == 1 {
        chunks.iter().map(|(_, c)| sum_squares(c)).collect()
    } else {
        chunks.par_iter().map(|(_, c)| sum_squares(c)).collect()
    };
    let mut per_tensor = vec![0.0f64; grads.len()];
    for ((i, _), s) in chunks.iter().zip(&partial) {
        per_tensor[*i] += s;
    }
    let total_sq: f64 = per_tensor
        .iter()
        .map(|&s| {
            let norm = s.sqrt() as f32 as f64;
            norm * norm
        })
        .sum();
    let total = total_sq.sqrt() as f32;
    if !total.is_finite() {
        return total;
    }
    let coef = (1.0 / (total + 1e-6)) * max_norm;
    if coef < 1.0 {
        let scale = |g: &mut [f32]| g.iter_mut().for_each(|x| *x *= coef);
        let mut pieces: Vec<&mut [f32]> = grads.iter_mut().flat_map(|g| g.chunks_mut(CHUNK)).collect();
        if pieces.len() <= 1 || rayon::current_num_threads() == 1 {
            pieces.iter_mut().for_each(|p| scale(p));
        } else {
            pieces.par_iter_mut().for_each(|p| scale(p));
        }
    }
    total
}
