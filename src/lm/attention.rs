//! Causal multi-head attention on head-major blocks (one `t × d` block per batch row and head), as HF's
//! eager attention computes it: S = Q·Kᵀ · scale, future positions masked, softmax in f32, O = P·V, with
//! grouped-query attention (several query heads reading one key/value head), queries that start past
//! position 0 (a key/value cache), and sequences that pack several examples, each attending only to
//! itself (the block-diagonal mask transformers makes from packed `position_ids`). Blocks are
//! independent, so they run in parallel and the result does not depend on the thread count.

use std::cell::RefCell;

use super::rope::Positions;
use crate::kernels::{self, gemm, par_for, Chunks, Epilogue, Strided};

thread_local! {
    /// The backward's dS block (t × t), one per thread.
    static DS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The blocks attention works on. Queries: `b · heads` blocks of `tq × d` at positions
/// `pos0..pos0 + tq`. Keys and values: `b · kv_heads` blocks of `cap × d` (a cache's capacity, or `tq`
/// in a training pass), of which rows `0..pos0 + tq` are live. Query head h reads key/value head
/// `h / (heads / kv_heads)` (grouped-query attention).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub tq: usize,
    pub pos0: usize,
    pub cap: usize,
    pub d: usize,
    pub heads: usize,
    pub kv_heads: usize,
}

impl Shape {
    /// A training pass: `t` positions from 0, keys and values those of the same positions.
    pub fn training(t: usize, d: usize, heads: usize, kv_heads: usize) -> Self {
        Self { tq: t, pos0: 0, cap: t, d, heads, kv_heads }
    }
    /// Live keys: the positions up to the last query's.
    pub fn tk(&self) -> usize {
        self.pos0 + self.tq
    }
    /// The key/value block that query block `bh` reads.
    fn kv_block(&self, bh: usize) -> usize {
        let (bi, h) = (bh / self.heads, bh % self.heads);
        bi * self.kv_heads + h / (self.heads / self.kv_heads)
    }
}

/// Softmax of the causal rows of `s · scale` (tq × tk) in place: row i (key row pos0 + i) over columns
/// `start(i)..=pos0 + i`, zeros elsewhere.
fn causal_softmax(s: &mut [f32], tk: usize, pos0: usize, scale: f32, start: impl Fn(usize) -> usize) {
    for (i, row) in s.chunks_exact_mut(tk).enumerate() {
        let (live, after) = row.split_at_mut(pos0 + i + 1);
        let (before, live) = live.split_at_mut(start(i));
        kernels::softmax_scaled(live, scale);
        before.fill(0.0);
        after.fill(0.0);
    }
}

/// q, o: query blocks; k, v: key/value blocks (see [`Shape`]); p: `b · heads` blocks of tq × tk (the
/// attention weights, kept for backward). `pos`: where packed examples start (`Positions::Each`, with
/// `pos0` 0): a query attends to its own example's keys only. Without `o`, only the weights are made
/// (a layer recomputed for its backward pass, whose output is known).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &mut [f32],
    o: Option<&mut [f32]>,
    sh: Shape,
    scale: f32,
    pos: Positions,
) {
    let (d, tq, tk) = (sh.d, sh.tq, sh.tk());
    let (qd, kd) = (tq * d, sh.cap * d);
    let ps = Chunks::new(p, tq * tk);
    let os = o.map(|o| Chunks::new(o, qd));
    par_for(ps.count(), &|bh| {
        let p = ps.take(bh);
        let kb = sh.kv_block(bh);
        let (q, k, v) = (&q[bh * qd..][..qd], &k[kb * kd..][..tk * d], &v[kb * kd..][..tk * d]);
        gemm(Strided::row_major(q, tq, d), Strided::transposed(k, d, tk), p, tk, Epilogue::default());
        let bi = bh / sh.heads;
        causal_softmax(p, tk, sh.pos0, scale, |i| pos.start(bi, i, tq));
        if let Some(os) = &os {
            gemm(Strided::row_major(p, tq, tk), Strided::row_major(v, tk, d), os.take(bh), d, Epilogue::default());
        }
    });
}

/// Given `d_o` (head-major like o): dq (query blocks), dk, dv (key/value blocks), overwritten, through the
/// kept weights `p` of a training pass. Per query head: dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)) ·
/// scale, dQ = dS·K; dV = Σ Pᵀ·dO and dK = Σ dSᵀ·Q over the query heads that share a key/value head,
/// summed in head order. `pos` as `forward`'s.
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
    sh: Shape,
    scale: f32,
    pos: Positions,
) {
    assert!(sh.pos0 == 0 && sh.cap == sh.tq, "backward runs over a training pass");
    let (t, d) = (sh.tq, sh.d);
    let (td, tt, group) = (t * d, t * t, sh.heads / sh.kv_heads);
    let dqs = Chunks::new(dq, td * group);
    let (dks, dvs) = (Chunks::new(dk, td), Chunks::new(dv, td));
    // One task per key/value head: it owns its dk and dv and the dq of its query heads.
    par_for(dks.count(), &|kb| {
        let (dq_group, dk, dv) = (dqs.take(kb), dks.take(kb), dvs.take(kb));
        // dS scratch, one per thread and reused (every entry is written before use).
        DS.with_borrow_mut(|ds| {
            ds.resize(tt, 0.0);
            let (k, v) = (&k[kb * td..][..td], &v[kb * td..][..td]);
            for (g, dq) in dq_group.chunks_exact_mut(td).enumerate() {
                let bh = kb * group + g;
                let bi = bh / sh.heads;
                let ep = Epilogue { accumulate: g > 0, ..Epilogue::default() };
                let (q, p, d_o) = (&q[bh * td..][..td], &p[bh * tt..][..tt], &d_o[bh * td..][..td]);
                gemm(Strided::row_major(d_o, t, d), Strided::transposed(v, d, t), ds, t, Epilogue::default());
                gemm(Strided::transposed(p, t, t), Strided::row_major(d_o, t, d), dv, d, ep);
                for (i, (ds, p)) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
                    let lo = pos.start(bi, i, t);
                    kernels::softmax_scaled_backward(&p[lo..=i], &mut ds[lo..=i], scale);
                    ds[..lo].fill(0.0);
                    ds[i + 1..].fill(0.0);
                }
                gemm(Strided::row_major(ds, t, t), Strided::row_major(k, t, d), dq, d, Epilogue::default());
                gemm(Strided::transposed(ds, t, t), Strided::row_major(q, t, d), dk, d, ep);
            }
        });
    });
}
