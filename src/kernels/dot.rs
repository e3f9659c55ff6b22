//! `Y = X·Wᵀ (+ bias, ReLU)` — the forward layout — as tiles of dot products. X rows and W rows are
//! both contiguous along k, so this needs no packing at all (packing W for the outer-product kernel
//! cost about a third of the forward at batch 64, because each packed value is reused only 64 times).
//!
//! Every output is one 4-lane accumulator over k in steps of 4, summed as ((l0+l1)+(l2+l3)), then the
//! k % 4 tail, then the bias: the same order in full tiles and edge tiles, so results do not depend
//! on where a tile falls, nor on how the columns are split across threads.

use super::gemm::grow;
use super::lane::F32x4;
use super::qweight::QWeight;
use super::pool::{par_for, parallel_min_macs};
use rayon::prelude::*;

/// Tile of X rows × W rows: 9 accumulators + 3 W vectors + 1 X vector stay within V8's 15 xmm.
const TR: usize = 3;
const TC: usize = 3;

#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: tasks write disjoint column ranges of Y through this pointer.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `y (m×n) = x (m×k) · wᵀ` with `w` row-major `n×k`, plus `bias[j]`, then ReLU when asked.
#[allow(clippy::too_many_arguments)]
pub fn gemm_xwt(x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], m: usize, k: usize, n: usize, relu: bool) {
    assert!(w.len() >= n * k, "gemm_xwt: buffers too small");
    gemm_xwt_rows(x, WRows::Dense(w), bias, y, m, k, n, relu);
}

/// W's rows as the dot-product tiles read them: f32 in place, or a quantised weight dequantised
/// `NF4_CHUNK` rows at a time (each row once per call, never the whole matrix). Every output is
/// summed over its own x row and w row in one fixed order, so both give the same bits for the same
/// values.
#[derive(Clone, Copy)]
pub(super) enum WRows<'a> {
    Dense(&'a [f32]),
    Quant(QWeight<'a>),
}

/// What dequantising one value costs, in multiply-adds (for the choice to run in parallel).
const QUANT_WORK: usize = 4;

/// W rows dequantised at a time: whole 3-row tiles, 12 × k floats (37 KB at k = 784), in L2.
const NF4_CHUNK: usize = 4 * TC;

/// `gemm_xwt` for any `WRows`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_xwt_rows(
    x: &[f32],
    w: WRows,
    bias: Option<&[f32]>,
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    relu: bool,
) {
    assert!(x.len() >= m * k && y.len() >= m * n, "gemm_xwt: buffers too small");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "gemm_xwt: bias length");
    }
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    // A quantised W costs its dequantisation too, once per value whatever m is (decoding: m = 1).
    let work = match w {
        WRows::Dense(_) => m * n * k.max(1),
        WRows::Quant(_) => (m + QUANT_WORK) * n * k.max(1),
    };
    let serial = work < parallel_min_macs() || threads == 1;
    if m < TR {
        // Whole `ROW_COLS` groups of columns per task, four tasks per thread (a thread that is late
        // leaves less behind).
        let groups = n.div_ceil(ROW_COLS);
        let per_task = if serial { groups } else { groups.div_ceil(4 * threads) };
        let y_ptr = SendPtr(y.as_mut_ptr());
        let job = |t: usize| {
            let (j0, j1) = (t * per_task * ROW_COLS, ((t + 1) * per_task * ROW_COLS).min(n));
            #[allow(clippy::redundant_locals)]
            let y_ptr = y_ptr;
            match w {
                // SAFETY: this task writes only columns [j0, j1) of y, which is m×n.
                WRows::Quant(q) if q.fuses() => unsafe { q.rows_dot(x, m, bias, relu, y_ptr.0, n, j0, j1) },
                // SAFETY: as above.
                _ => for_rows(w, k, j0, j1, |rows, w0, a, b| unsafe {
                    rows_only(x, rows, w0, bias, y_ptr.0, m, k, n, a, b, relu)
                }),
            }
        };
        return par_for(groups.div_ceil(per_task), &job);
    }
    let col_tiles = n.div_ceil(TC);
    let tasks = if serial { 1 } else { (4 * threads).min(col_tiles) };
    // Chunk boundaries fall on whole column tiles.
    let tiles_per_task = col_tiles.div_ceil(tasks);
    let y_ptr = SendPtr(y.as_mut_ptr());
    let job = |t: usize| {
        let j0 = t * tiles_per_task * TC;
        let j1 = ((t + 1) * tiles_per_task * TC).min(n);
        // Capture the whole Send wrapper, not its raw-pointer field (edition 2021 closures).
        #[allow(clippy::redundant_locals)]
        let y_ptr = y_ptr;
        // SAFETY: this task writes only columns [j0, j1) of y, which is m×n.
        for_rows(w, k, j0, j1, |rows, w0, a, b| unsafe { columns(x, rows, w0, bias, y_ptr.0, m, k, n, a, b, relu) });
    };
    par_for(col_tiles.div_ceil(tiles_per_task), &job);
}

/// Calls `f(rows, w0, j0, j1)` for W's rows `[j0, j1)`, where `rows` holds W's rows from `w0` on, in f32:
/// W itself (w0 = 0) once, or a quantised W dequantised `NF4_CHUNK` rows at a time.
fn for_rows(w: WRows, k: usize, j0: usize, j1: usize, mut f: impl FnMut(&[f32], usize, usize, usize)) {
    match w {
        WRows::Dense(w) => f(w, 0, j0, j1),
        WRows::Quant(q) => {
            let mut buf = vec![0.0f32; NF4_CHUNK.min(j1 - j0) * k];
            for c0 in (j0..j1).step_by(NF4_CHUNK) {
                let c1 = (c0 + NF4_CHUNK).min(j1);
                q.dequantize_run(c0 * k, &mut buf[..(c1 - c0) * k]);
                f(&buf, c0, c0, c1);
            }
        }
    }
}

/// Columns `[j0, j1)` of y; `w` holds W's rows from `w0` on.
///
/// # Safety
/// `y` addresses an m×n row-major matrix that no other thread writes in these columns.
#[allow(clippy::too_many_arguments)]
unsafe fn columns(
    x: &[f32],
    w: &[f32],
    w0: usize,
    bias: Option<&[f32]>,
    y: *mut f32,
    m: usize,
    k: usize,
    n: usize,
    j0: usize,
    j1: usize,
    relu: bool,
) {
    let finish = |v: f32, j: usize| {
        let v = v + bias.map_or(0.0, |b| b[j]);
        if relu && v < 0.0 {
            0.0
        } else {
            v
        }
    };
    let mut j = j0;
    while j < j1 {
        let full_cols = j + TC <= j1;
        let mut i = 0;
        while i < m {
            if full_cols && i + TR <= m {
                // SAFETY: rows i..i+3 of x and j..j+3 of W exist (checked above) and w holds them.
                let t = unsafe { tile(x.as_ptr().add(i * k), w[(j - w0) * k..(j - w0 + TC) * k].as_ptr(), k) };
                for (r, row) in t.iter().enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        // SAFETY: (i + r, j + c) is inside y and in this task's columns.
                        unsafe { *y.add((i + r) * n + j + c) = finish(v, j + c) };
                    }
                }
                i += TR;
            } else {
                for jj in j..(j + TC).min(j1) {
                    let v = dot(&x[i * k..(i + 1) * k], &w[(jj - w0) * k..(jj - w0 + 1) * k]);
                    // SAFETY: (i, jj) is inside y and in this task's columns.
                    unsafe { *y.add(i * n + jj) = finish(v, jj) };
                }
                i += 1;
            }
        }
        j += TC;
    }
}

/// Fewer rows than a tile (one drawn digit): each row against `ROW_COLS` rows of W at a time, so that
/// many independent accumulators hide the multiply-add latency; each output is still summed exactly
/// as `tile` and `dot` sum it.
const ROW_COLS: usize = 8;

/// Columns `[c0, c1)` of y (m×n, at `y`); `w` holds W's rows from `w0` on.
///
/// # Safety
/// `y` addresses an m×n row-major matrix that no other thread writes in these columns.
#[allow(clippy::too_many_arguments)]
unsafe fn rows_only(
    x: &[f32],
    w: &[f32],
    w0: usize,
    bias: Option<&[f32]>,
    y: *mut f32,
    m: usize,
    k: usize,
    n: usize,
    c0: usize,
    c1: usize,
    relu: bool,
) {
    let k4 = k / 4 * 4;
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j0 in (c0..c1).step_by(ROW_COLS) {
            let cols = ROW_COLS.min(c1 - j0);
            let w = &w[(j0 - w0) * k..(j0 - w0 + cols) * k];
            let mut acc = [F32x4::splat(0.0); ROW_COLS];
            let mut p = 0;
            while p < k4 {
                // SAFETY: p + 4 <= k4 <= k within row i of x and rows j0..j0+cols of w.
                unsafe {
                    let xv = F32x4::load(xr.as_ptr().add(p));
                    for (c, a) in acc.iter_mut().enumerate().take(cols) {
                        *a = F32x4::mul_add(xv, F32x4::load(w.as_ptr().add(c * k + p)), *a);
                    }
                }
                p += 4;
            }
            for (c, a) in acc.iter().enumerate().take(cols) {
                let wr = &w[c * k..(c + 1) * k];
                let mut v = hsum(*a);
                for q in k4..k {
                    v += xr[q] * wr[q];
                }
                v += bias.map_or(0.0, |b| b[j0 + c]);
                // SAFETY: (i, j0 + c) is inside y and in this call's columns.
                unsafe { *y.add(i * n + j0 + c) = if relu && v < 0.0 { 0.0 } else { v } };
            }
        }
    }
}

/// Horizontal sum in the one order every output uses.
#[inline(always)]
pub(super) fn hsum(v: F32x4) -> f32 {
    let a = v.to_array();
    (a[0] + a[1]) + (a[2] + a[3])
}

/// A 3×3 tile of dot products over k.
///
/// # Safety
/// `x` and `w` each address 3 rows of `k` floats, row stride `k`.
#[inline(always)]
unsafe fn tile(x: *const f32, w: *const f32, k: usize) -> [[f32; TC]; TR] {
    let zero = F32x4::splat(0.0);
    let mut acc = [[zero; TC]; TR];
    let k4 = k / 4 * 4;
    let mut p = 0;
    while p < k4 {
        // SAFETY: p + 4 <= k4 <= k within every row.
        unsafe {
            let w0 = F32x4::load(w.add(p));
            let w1 = F32x4::load(w.add(k + p));
            let w2 = F32x4::load(w.add(2 * k + p));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = F32x4::load(x.add(r * k + p));
                acc[0] = F32x4::mul_add(xv, w0, acc[0]);
                acc[1] = F32x4::mul_add(xv, w1, acc[1]);
                acc[2] = F32x4::mul_add(xv, w2, acc[2]);
            }
        }
        p += 4;
    }
    let mut out = [[0.0f32; TC]; TR];
    for r in 0..TR {
        for c in 0..TC {
            let mut s = hsum(acc[r][c]);
            for q in k4..k {
                // SAFETY: q < k within rows r of x and c of w.
                s += unsafe { *x.add(r * k + q) * *w.add(c * k + q) };
            }
            out[r][c] = s;
        }
    }
    out
}

/// One output, summed exactly as `tile` sums each of its nine.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let k = a.len().min(b.len());
    let k4 = k / 4 * 4;
    let mut acc = F32x4::splat(0.0);
    let mut p = 0;
    while p < k4 {
        // SAFETY: p + 4 <= k4 <= len of both slices.
        acc = unsafe { F32x4::mul_add(F32x4::load(a.as_ptr().add(p)), F32x4::load(b.as_ptr().add(p)), acc) };
        p += 4;
    }
    let mut s = hsum(acc);
    for q in k4..k {
        s += a[q] * b[q];
    }
    s
}

/// Fewer rows than this use the dense kernel in `gemm_xwt_offset`: the row sums of W it needs cost as
/// much as a one-row product.
const OFFSET_MIN_ROWS: usize = 16;

/// `y (m×n) = x (m×k) · wᵀ + bias` (then ReLU) for an input whose values are mostly the constant `c`
/// (the network's input: a blank pixel normalises to −1, and 81 % of MNIST's pixels are blank).
///
/// Computed as `(x − c)·wᵀ + (bias + c·Σ_k w)`: each tile of 3 rows sums only over the 4-column blocks
/// where one of its rows differs from `c` (about half of them in a batch of digits); the blocks it
/// skips would add exact zeros. Every output of a row tile sums the same blocks in ascending order,
/// so results do not depend on the column split (thread count). Below `OFFSET_MIN_ROWS` rows this is
/// the dense `gemm_xwt`, which equals it up to rounding.
#[allow(clippy::too_many_arguments)]
pub fn gemm_xwt_offset(
    x: &[f32],
    c: f32,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    relu: bool,
) {
    if m < OFFSET_MIN_ROWS {
        return gemm_xwt(x, w, bias, y, m, k, n, relu);
    }
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n, "gemm_xwt_offset: buffers too small");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "gemm_xwt_offset: bias length");
    }
    if n == 0 {
        return;
    }
    let blocks = k / 4;
    let row_tiles = m.div_ceil(TR);
    let threads = rayon::current_num_threads().max(1);
    let col_tiles = n.div_ceil(TC);
    let tasks = if m * n * k < parallel_min_macs() || threads == 1 { 1 } else { (4 * threads).min(col_tiles) };
    // Per row tile, at a fixed stride: its active blocks, and (x − c) of its rows packed block by
    // block (TR × 4 floats, rows past m zero), so one pointer walks all three rows. The buffers of
    // the last call are reused; only the first `counts[t]` entries of tile t are meaningful.
    let (act_stride, pan_stride) = (blocks.max(1), blocks.max(1) * TR * 4);
    let (mut active, mut panel) = OFFSET_PACK.take();
    grow(&mut active, row_tiles * act_stride);
    grow(&mut panel, row_tiles * pan_stride);
    let mut counts = vec![0usize; row_tiles];
    let pack = |(t, ((act, pan), count)): (usize, ((_, _), &mut usize))| *count = pack_active(x, c, m, k, t, act, pan);
    let (act_used, pan_used) = (&mut active[..row_tiles * act_stride], &mut panel[..row_tiles * pan_stride]);
    if tasks == 1 {
        act_used
            .chunks_mut(act_stride)
            .zip(pan_used.chunks_mut(pan_stride))
            .zip(counts.iter_mut())
            .enumerate()
            .for_each(pack);
    } else {
        act_used
            .par_chunks_mut(act_stride)
            .zip(pan_used.par_chunks_mut(pan_stride))
            .zip(counts.par_iter_mut())
            .enumerate()
            .for_each(pack);
    }
    let per_task = col_tiles.div_ceil(tasks);
    let y_ptr = SendPtr(y.as_mut_ptr());
    let (act_all, pan_all, counts) = (&active[..], &panel[..], &counts[..]);
    let job = |t: usize| {
        #[allow(clippy::redundant_locals)]
        let y_ptr = y_ptr;
        for ct in t * per_task..((t + 1) * per_task).min(col_tiles) {
            // Edge tiles repeat the last row of w; only the columns that exist are stored.
            let cols: [usize; TC] = std::array::from_fn(|cc| (ct * TC + cc).min(n - 1));
            let shift: [f32; TC] = cols.map(|j| bias.map_or(0.0, |b| b[j]) + c * sum(&w[j * k..(j + 1) * k]));
            for rt in 0..row_tiles {
                let count = counts[rt];
                let pan = &pan_all[rt * pan_stride..rt * pan_stride + count * TR * 4];
                let act = &act_all[rt * act_stride..rt * act_stride + count];
                // SAFETY: the panel holds TR×4 floats per active block of this row tile; every block
                // index is below k/4, within each of the three rows of w.
                let sums = unsafe { offset_tile(pan.as_ptr(), act, cols.map(|j| w.as_ptr().add(j * k))) };
                for (r, row) in sums.iter().enumerate() {
                    let i = rt * TR + r;
                    if i >= m {
                        break;
                    }
                    for (cc, &s) in row.iter().enumerate() {
                        let j = ct * TC + cc;
                        if j >= n {
                            break;
                        }
                        let mut v = s;
                        for q in blocks * 4..k {
                            v += (x[i * k + q] - c) * w[j * k + q];
                        }
                        v += shift[cc];
                        // SAFETY: (i, j) is inside y and in this task's columns.
                        unsafe { *y_ptr.0.add(i * n + j) = if relu && v < 0.0 { 0.0 } else { v } };
                    }
                }
            }
        }
    };
    par_for(tasks, &job);
    OFFSET_PACK.set((active, panel));
}

thread_local! {
    /// The calling thread's packed input of `gemm_xwt_offset`, reused across calls.
    static OFFSET_PACK: std::cell::Cell<(Vec<u32>, Vec<f32>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// Row tile `t` of `gemm_xwt_offset`'s input: the indices of the 4-column blocks where one of its
/// rows differs from `c` into `act`, those blocks' `x − c` (TR rows of 4, rows past m zero) into
/// `pan`; returns how many.
fn pack_active(x: &[f32], c: f32, m: usize, k: usize, t: usize, act: &mut [u32], pan: &mut [f32]) -> usize {
    let cv = F32x4::splat(c);
    let (r0, rows) = (t * TR, TR.min(m - t * TR));
    let mut count = 0;
    for blk in 0..k / 4 {
        let at = blk * 4;
        let v: [F32x4; TR] = std::array::from_fn(|i| {
            if i < rows {
                let src = &x[(r0 + i) * k + at..(r0 + i) * k + at + 4];
                // SAFETY: src holds 4 floats.
                unsafe { F32x4::load(src.as_ptr()) }
            } else {
                cv
            }
        });
        if v.iter().any(|vi| vi.any_ne(cv)) {
            act[count] = blk as u32;
            for (i, vi) in v.iter().enumerate() {
                let dst = &mut pan[(count * TR + i) * 4..(count * TR + i) * 4 + 4];
                // SAFETY: dst holds 4 floats.
                unsafe { vi.sub(cv).store(dst.as_mut_ptr()) };
            }
            count += 1;
        }
    }
    count
}

/// `Σ a`, four lanes over blocks of 4, then the tail: one fixed order.
fn sum(a: &[f32]) -> f32 {
    let k4 = a.len() / 4 * 4;
    let mut acc = F32x4::splat(0.0);
    for p in (0..k4).step_by(4) {
        // SAFETY: p + 4 <= k4 <= len.
        acc = acc.add(unsafe { F32x4::load(a.as_ptr().add(p)) });
    }
    a[k4..].iter().fold(hsum(acc), |s, &v| s + v)
}

/// A 3×3 tile of `gemm_xwt_offset`: dot products over the listed 4-column blocks only.
///
/// # Safety
/// `xp` holds `TR × 4` floats per entry of `blocks`; each `w[c]` addresses a row of W with every
/// `4·block + 3` inside it.
#[inline(always)]
unsafe fn offset_tile(xp: *const f32, blocks: &[u32], w: [*const f32; TC]) -> [[f32; TC]; TR] {
    let zero = F32x4::splat(0.0);
    let mut acc = [[zero; TC]; TR];
    for (q, &blk) in blocks.iter().enumerate() {
        let off = blk as usize * 4;
        // SAFETY: the caller's contract.
        unsafe {
            let w0 = F32x4::load(w[0].add(off));
            let w1 = F32x4::load(w[1].add(off));
            let w2 = F32x4::load(w[2].add(off));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = F32x4::load(xp.add(q * TR * 4 + r * 4));
                acc[0] = F32x4::mul_add(xv, w0, acc[0]);
                acc[1] = F32x4::mul_add(xv, w1, acc[1]);
                acc[2] = F32x4::mul_add(xv, w2, acc[2]);
            }
        }
    }
    acc.map(|row| row.map(hsum))
}
