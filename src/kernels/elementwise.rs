//! Vector loops around the GEMMs: ReLU backward, bias gradient, the Adam(W) update.
//! Each element's result depends only on its own inputs, so chunking across threads never changes it.

use super::lane::F32x4;
use rayon::prelude::*;

/// Elements per parallel chunk of the Adam update (a multiple of 4).
const CHUNK: usize = 16 * 1024;

/// Whether every value is finite.
pub fn all_finite(v: &[f32]) -> bool {
    all_finite_in(&[v])
}

/// Whether every value of every tensor is finite: `x · 0` is 0 for finite x and NaN for ±inf and
/// NaN, so one sum of those products tells. One parallel pass over chunks of all the tensors (a
/// single wake-up of the pool per training step); the answer does not depend on the split.
pub fn all_finite_in(tensors: &[&[f32]]) -> bool {
    fn chunk(v: &[f32]) -> bool {
        let zero = F32x4::splat(0.0);
        let mut acc = zero;
        let n4 = v.len() / 4 * 4;
        for i in (0..n4).step_by(4) {
            // SAFETY: i + 4 <= n4 <= len.
            acc = F32x4::mul_add(unsafe { F32x4::load(v.as_ptr().add(i)) }, zero, acc);
        }
        let a = acc.to_array();
        a.iter().chain(&v[n4..]).all(|x| (x * 0.0) == 0.0)
    }
    let total: usize = tensors.iter().map(|t| t.len()).sum();
    if total <= CHUNK || rayon::current_num_threads() == 1 {
        return tensors.iter().all(|t| chunk(t));
    }
    let chunks: Vec<&[f32]> = tensors.iter().flat_map(|t| t.chunks(CHUNK)).collect();
    chunks.par_iter().all(|c| chunk(c))
}

/// `y = max(y, 0)` in place (NaN is kept).
pub fn relu(y: &mut [f32]) {
    let n4 = y.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n4 <= len.
        unsafe { F32x4::load(y.as_ptr().add(i)).relu().store(y.as_mut_ptr().add(i)) };
    }
    for v in &mut y[n4..] {
        if *v < 0.0 {
            *v = 0.0;
        }
    }
}

/// `dy[i] = 0` where `y[i] <= 0` (ReLU backward, with `y` the ReLU output).
pub fn relu_backward(dy: &mut [f32], y: &[f32]) {
    assert_eq!(dy.len(), y.len(), "relu_backward: lengths differ");
    let n4 = dy.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n4 <= len of both slices.
        unsafe {
            let g = F32x4::load(dy.as_ptr().add(i));
            let m = F32x4::load(y.as_ptr().add(i));
            g.where_positive(m).store(dy.as_mut_ptr().add(i));
        }
    }
    for i in n4..dy.len() {
        if y[i] <= 0.0 {
            dy[i] = 0.0;
        }
    }
}

/// `db[j] = Σ_i dy[i][j]` over the `m` rows of `dy (m×n)`, rows added in order.
pub fn bias_grad(dy: &[f32], m: usize, n: usize, db: &mut [f32]) {
    assert_eq!(dy.len(), m * n, "bias_grad: dy is not m×n");
    assert_eq!(db.len(), n, "bias_grad: db length");
    db.fill(0.0);
    for row in dy.chunks_exact(n) {
        let n4 = n / 4 * 4;
        for j in (0..n4).step_by(4) {
            // SAFETY: j + 4 <= n4 <= n.
            unsafe {
                let s = F32x4::load(db.as_ptr().add(j)).add(F32x4::load(row.as_ptr().add(j)));
                s.store(db.as_mut_ptr().add(j));
            }
        }
        for j in n4..n {
            db[j] += row[j];
        }
    }
}

/// One Adam step's constants, in PyTorch's formulation:
/// `p -= step_size · m / (sqrt(v) / bc2_sqrt + eps)` with `step_size = lr / (1 − β1ᵗ)`,
/// `bc2_sqrt = sqrt(1 − β2ᵗ)`; the division by `bc2_sqrt` is done as a multiplication by its inverse.
/// AdamW's decoupled weight decay comes first, as in PyTorch's `_single_tensor_adam`: `p *= 1 − lr·wd`
/// on the tensors that decay, then the update above from the decayed `p`.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub step_size: f32,
    pub inv_bc2_sqrt: f32,
    /// `1 − lr·wd`, the factor of a decaying tensor (1 without weight decay: the factor is then skipped).
    pub decay: f32,
}

impl AdamStep {
    /// Constants for step `t` (1-based), without weight decay.
    pub fn new(lr: f32, beta1: f32, beta2: f32, eps: f32, t: u64) -> Self {
        Self::adamw(lr, beta1, beta2, eps, 0.0, t)
    }

    /// Constants for step `t` (1-based) of AdamW with weight decay `weight_decay` (0 is plain Adam).
    pub fn adamw(lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, t: u64) -> Self {
        let t = t.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - (beta1 as f64).powi(t);
        let bc2 = 1.0 - (beta2 as f64).powi(t);
        Self {
            beta1,
            beta2,
            eps,
            step_size: (lr as f64 / bc1) as f32,
            inv_bc2_sqrt: (1.0 / bc2.sqrt()) as f32,
            decay: (1.0 - lr as f64 * weight_decay as f64) as f32,
        }
    }
}

/// One tensor's share of an Adam step: parameters, gradient, first and second moments (equal lengths),
/// and whether the step's weight decay applies to it.
pub type AdamTensor<'a> = (&'a mut [f32], &'a [f32], &'a mut [f32], &'a mut [f32], bool);

/// Adam update of every tensor, in one parallel pass over chunks of all of them. Moments below the
/// smallest normal float are flushed to zero: WebAssembly has no flush-to-zero mode, and subnormal
/// arithmetic is slow. Each element depends only on its own inputs, so the split never changes a bit.
pub fn adam_update<'a>(tensors: impl IntoIterator<Item = AdamTensor<'a>>, s: AdamStep) {
    let mut chunks: Vec<AdamTensor<'a>> = Vec::new();
    for (p, g, m, v, decays) in tensors {
        let n = p.len();
        assert!(g.len() == n && m.len() == n && v.len() == n, "adam_update: lengths differ");
        let pieces = p.chunks_mut(CHUNK).zip(g.chunks(CHUNK)).zip(m.chunks_mut(CHUNK)).zip(v.chunks_mut(CHUNK));
        chunks.extend(pieces.map(|(((p, g), m), v)| (p, g, m, v, decays)));
    }
    let run = |(p, g, m, v, decays): AdamTensor<'_>| {
        if decays && s.decay != 1.0 {
            adam_chunk::<true>(p, g, m, v, s)
        } else {
            adam_chunk::<false>(p, g, m, v, s)
        }
    };
    if chunks.len() <= 1 || rayon::current_num_threads() == 1 {
        chunks.into_iter().for_each(run);
    } else {
        chunks.into_par_iter().for_each(run);
    }
}

/// `DECAY`: multiply `p` by `s.decay` before the update (AdamW); without it the loop is plain Adam.
fn adam_chunk<const DECAY: bool>(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    let b1 = F32x4::splat(s.beta1);
    let b1c = F32x4::splat(1.0 - s.beta1);
    let b2 = F32x4::splat(s.beta2);
    let b2c = F32x4::splat(1.0 - s.beta2);
    let eps = F32x4::splat(s.eps);
    let step = F32x4::splat(s.step_size);
    let inv_bc2 = F32x4::splat(s.inv_bc2_sqrt);
    let decay = F32x4::splat(s.decay);
    let tiny = F32x4::splat(f32::MIN_POSITIVE);
    let n = p.len();
    let n4 = n / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n4 <= n, and all four slices have length n.
        unsafe {
            let gi = F32x4::load(g.as_ptr().add(i));
            let mi = b1.mul(F32x4::load(m.as_ptr().add(i))).add(b1c.mul(gi)).flush_below(tiny);
            let vi = b2.mul(F32x4::load(v.as_ptr().add(i))).add(b2c.mul(gi.mul(gi))).flush_below(tiny);
            let denom = vi.sqrt().mul(inv_bc2).add(eps);
            let mut pi = F32x4::load(p.as_ptr().add(i));
            if DECAY {
                pi = pi.mul(decay);
            }
            let pi = pi.sub(step.mul(mi).div(denom));
            mi.store(m.as_mut_ptr().add(i));
            vi.store(v.as_mut_ptr().add(i));
            pi.store(p.as_mut_ptr().add(i));
        }
    }
    for i in n4..n {
        let mut mi = s.beta1 * m[i] + (1.0 - s.beta1) * g[i];
        let mut vi = s.beta2 * v[i] + (1.0 - s.beta2) * (g[i] * g[i]);
        if mi.abs() < f32::MIN_POSITIVE {
            mi = 0.0;
        }
        if vi.abs() < f32::MIN_POSITIVE {
            vi = 0.0;
        }
        let denom = vi.sqrt() * s.inv_bc2_sqrt + s.eps;
        if DECAY {
            p[i] *= s.decay;
        }
        p[i] -= (s.step_size * mi) / denom;
        m[i] = mi;
        v[i] = vi;
    }
}
