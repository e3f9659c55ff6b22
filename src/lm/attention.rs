//! Causal multi-head attention on head-major blocks (one `t × d` block per batch row and head), as HF's
//! eager attention computes it: S = Q·Kᵀ · scale, future positions masked, softmax in f32, O = P·V.
//! Blocks are independent, so they run in parallel and the result does not depend on the thread count.

use std::cell::RefCell;

use crate::kernels::{self, gemm, par_for, Chunks, Epilogue, Strided};

thread_local! {
    /// The backward's dS block (t × t), one per thread.
    static DS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Softmax of the causal rows of `s · scale` (t × t) in place: row i over columns 0..=i, zeros after.
fn causal_softmax(s: &mut [f32], t: usize, scale: f32) {
    for (i, row) in s.chunks_exact_mut(t).enumerate() {
        let (live, masked) = row.split_at_mut(i + 1);
        kernels::softmax_scaled(live, scale);
        masked.fill(0.0);
    }
}

/// q, k, v, o: `blocks` head-major blocks of t × d; p: `blocks` blocks of t × t (the attention
/// weights, kept for backward). Positions are 0..t in every block.
#[allow(clippy::too_many_arguments)]
pub fn forward(q: &[f32], k: &[f32], v: &[f32], p: &mut [f32], o: &mut [f32], t: usize, d: usize, scale: f32) {
    let (td, tt) = (t * d, t * t);
    let (ps, os) = (Chunks::new(p, tt), Chunks::new(o, td));
    par_for(os.count(), &|bh| {
        let (p, o) = (ps.take(bh), os.take(bh));
        let (q, k, v) = (&q[bh * td..][..td], &k[bh * td..][..td], &v[bh * td..][..td]);
        gemm(Strided::row_major(q, t, d), Strided::transposed(k, d, t), p, t, Epilogue::default());
        causal_softmax(p, t, scale);
        gemm(Strided::row_major(p, t, t), Strided::row_major(v, t, d), o, d, Epilogue::default());
    });
}

/// Given `d_o` (head-major like o): dq, dk, dv (overwritten, head-major), through the kept weights `p`.
/// dP = dO·Vᵀ, dV = Pᵀ·dO, dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale, dQ = dS·K, dK = dSᵀ·Q.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &[f32],
    d_o: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    t: usize,
    d: usize,
    scale: f32,
) {
    let (td, tt) = (t * d, t * t);
    let (dqs, dks, dvs) = (Chunks::new(dq, td), Chunks::new(dk, td), Chunks::new(dv, td));
    par_for(dqs.count(), &|bh| {
        let (dq, dk, dv) = (dqs.take(bh), dks.take(bh), dvs.take(bh));
        // dS scratch, one per thread and reused (every entry is written before use).
        DS.with_borrow_mut(|ds| {
            ds.resize(tt, 0.0);
            let (q, k, v) = (&q[bh * td..][..td], &k[bh * td..][..td], &v[bh * td..][..td]);
            let (p, d_o) = (&p[bh * tt..][..tt], &d_o[bh * td..][..td]);
            gemm(Strided::row_major(d_o, t, d), Strided::transposed(v, d, t), ds, t, Epilogue::default());
            gemm(Strided::transposed(p, t, t), Strided::row_major(d_o, t, d), dv, d, Epilogue::default());
            for (i, (ds, p)) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
                kernels::softmax_scaled_backward(&p[..=i], &mut ds[..=i], scale);
                ds[i + 1..].fill(0.0);
            }
            gemm(Strided::row_major(ds, t, t), Strided::row_major(k, t, d), dq, d, Epilogue::default());
            gemm(Strided::transposed(ds, t, t), Strided::row_major(q, t, d), dk, d, Epilogue::default());
        });
    });
}
