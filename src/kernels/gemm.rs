//! Packed, tiled matrix multiply `C = A·B` with a fused bias/ReLU epilogue, parallel over output tiles.
//!
//! A and B are strided views, so the three layouts training needs (X·Wᵀ, dY·W, dYᵀ·X) are one kernel
//! with different strides; packing turns every layout into the same contiguous panels. Threads split
//! the output only: every element of C is reduced over k in ascending order by one micro-kernel, so the
//! result is bit-identical for any thread count and any task split.

use super::elementwise::bias_grad;
use super::lane::F32x4;
use super::qweight::QuantB;
use super::pool::{par_all, par_for, parallel_min_macs};

/// Rows of A per micro-kernel tile.
pub const MR: usize = 4;
/// Columns of B per micro-kernel tile (two lanes of four).
pub const NR: usize = 8;
/// Largest depth of one packed block: an `MR×kc` A panel and a `kc×NR` B panel stay in L1.
pub(super) const KC_MAX: usize = 256;

/// The depth of every k-block but the last: k split into equal blocks of at most `KC_MAX`
/// (784 → 4 × 196, not 3 × 256 + 16), so no block is a short, overhead-heavy tail.
fn block_depth(k: usize) -> usize {
    if k == 0 {
        return 1;
    }
    k.div_ceil(k.div_ceil(KC_MAX))
}

/// A read-only strided matrix view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Strided<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major `cols × rows` matrix, seen as `rows × cols`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, rs: 1, cs: rows }
    }
    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// The B operand: f32 through a strided view, or a quantised weight dequantised panel by panel.
#[derive(Clone, Copy, Debug)]
pub(super) enum BSource<'a> {
    Dense(Strided<'a>),
    Quant(QuantB<'a>),
}

impl BSource<'_> {
    fn rows(&self) -> usize {
        match self {
            Self::Dense(s) => s.rows,
            Self::Quant(q) => q.rows(),
        }
    }
    fn cols(&self) -> usize {
        match self {
            Self::Dense(s) => s.cols,
            Self::Quant(q) => q.cols(),
        }
    }
}

/// What happens to a tile of C after the product is summed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Add the product to what C holds (`C += A·B`) instead of overwriting it.
    pub accumulate: bool,
    /// Add `bias[j]` to column j.
    pub bias: Option<&'a [f32]>,
    /// Apply `max(·, 0)` last.
    pub relu: bool,
}

thread_local! {
    /// The calling thread's packed A, reused across calls.
    static PACKED_A: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Each thread's B-panel buffer, reused across calls (no allocation per task).
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint tiles of C through this pointer (see `gemm`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `C (m×n, row stride ldc) = A (m×k) · B (k×n)`, then the epilogue. Returns whether every value
/// written to C is finite: checked on the accumulators as they are stored, which costs far less than
/// reading C again (training must not apply a step with a NaN or infinite gradient).
///
/// Panics if the shapes disagree: callers (nn, lora) check shapes before they reach here.
pub fn gemm(a: Strided, b: Strided, c: &mut [f32], ldc: usize, ep: Epilogue) -> bool {
    assert!(b.fits(), "gemm: a strided view runs past its data");
    gemm_from(a, BSource::Dense(b), c, ldc, ep)
}

/// `gemm` with any B operand (see [`BSource`]).
pub(super) fn gemm_from(a: Strided, b: BSource, c: &mut [f32], ldc: usize, ep: Epilogue) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols());
    assert_eq!(b.rows(), k, "gemm: inner dimensions differ");
    assert!(a.fits(), "gemm: a strided view runs past its data");
    assert!(ldc >= n, "gemm: ldc < n");
    if m == 0 || n == 0 {
        return true;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C too small");
    if let Some(bias) = ep.bias {
        assert_eq!(bias.len(), n, "gemm: bias length");
    }

    let m_tiles = m.div_ceil(MR);
    let n_tiles = n.div_ceil(NR);
    let kc = block_depth(k);
    // The packed A of the last call is reused (taken, not borrowed, so a nested call just allocates).
    let threads = rayon::current_num_threads().max(1);
    let serial = m * n * k.max(1) < parallel_min_macs() || threads == 1;
    let mut packed_a = PACKED_A.take();
    pack_a(a, m_tiles, kc, !serial, &mut packed_a);
    let bias_padded: Option<Vec<f32>> = ep.bias.map(|b| {
        let mut v = b.to_vec();
        v.resize(n_tiles * NR, 0.0);
        v
    });

    // Split columns into chunks of whole tiles; with few columns also split rows, so two threads
    // always have work. The split never changes a result, only who computes it.
    let want_tasks = if serial { 1 } else { 4 * threads };
    let col_chunks = n_tiles.min(want_tasks).max(1);
    let row_chunks = (want_tasks / col_chunks).clamp(1, m_tiles);
    let tiles_per_col_chunk = n_tiles.div_ceil(col_chunks);
    let tiles_per_row_chunk = m_tiles.div_ceil(row_chunks);
    let tasks: Vec<(usize, usize)> = (0..n_tiles)
        .step_by(tiles_per_col_chunk)
        .flat_map(|jt| (0..m_tiles).step_by(tiles_per_row_chunk).map(move |it| (it, jt)))
        .collect();

    let c_ptr = SendPtr(c.as_mut_ptr());
    let job = |&(it0, jt0): &(usize, usize)| {
        let it1 = (it0 + tiles_per_row_chunk).min(m_tiles);
        let jt1 = (jt0 + tiles_per_col_chunk).min(n_tiles);
        // Capture the whole Send wrapper, not its raw-pointer field (edition 2021 closures).
        #[allow(clippy::redundant_locals)]
        let c_ptr = c_ptr;
        compute_block(&packed_a, b, c_ptr, ldc, (m, k, n), kc, (it0, it1), (jt0, jt1), ep, bias_padded.as_deref())
    };
    let finite = par_all(tasks.len(), &|i| job(&tasks[i]));
    PACKED_A.set(packed_a);
    finite
}

/// Packs all of A: for each k-block, for each row tile, an `MR × kc` panel stored k-major
/// (`panel[p * MR + i]`), rows past `m` zero.
fn pack_a(a: Strided, m_tiles: usize, depth: usize, parallel: bool, out: &mut Vec<f32>) {
    let k = a.cols;
    grow(out, m_tiles * MR * k);
    let mut off = 0;
    for k0 in (0..k).step_by(depth) {
        let kc = depth.min(k - k0);
        let slab = &mut out[off..off + m_tiles * MR * kc];
        if parallel {
            // Packing runs before the tiles can start: serial, it left the other threads waiting.
            // Tasks of 8 panels each.
            assert_eq!(slab.len(), m_tiles * MR * kc);
            let slab_ptr = SendPtr(slab.as_mut_ptr());
            par_for(m_tiles.div_ceil(8), &|c| {
                #[allow(clippy::redundant_locals)]
                let slab_ptr = slab_ptr;
                for it in c * 8..(c * 8 + 8).min(m_tiles) {
                    // SAFETY: panel `it` is its own MR·kc floats of the slab, written by this task only.
                    let panel = unsafe { std::slice::from_raw_parts_mut(slab_ptr.0.add(it * MR * kc), MR * kc) };
                    pack_a_panel(a, it * MR, k0, kc, panel);
                }
            });
        } else {
            slab.chunks_mut(MR * kc).enumerate().for_each(|(it, panel)| pack_a_panel(a, it * MR, k0, kc, panel));
        }
        off += m_tiles * MR * kc;
    }
}

/// One `MR × kc` panel of A from row `r0`, column `k0`. The two layouts training packs have fast
/// paths: A transposed (`rs == 1`, dYᵀ), where the four values of one k are adjacent, and A
/// row-major (`cs == 1`, dY), moved as 4×4 blocks; anything else, and edge tiles, go value by value.
fn pack_a_panel(a: Strided, r0: usize, k0: usize, kc: usize, panel: &mut [f32]) {
    let rows = MR.min(a.rows - r0);
    if rows == MR && a.rs == 1 {
        for p in 0..kc {
            let at = r0 + (k0 + p) * a.cs;
            let src = &a.data[at..at + MR];
            // SAFETY: both slices hold MR = 4 floats.
            unsafe { F32x4::load(src.as_ptr()).store(panel[p * MR..p * MR + MR].as_mut_ptr()) };
        }
    } else if rows == MR && a.cs == 1 {
        let k4 = kc / 4 * 4;
        let row = |i: usize| &a.data[(r0 + i) * a.rs + k0..(r0 + i) * a.rs + k0 + kc];
        let src = [row(0), row(1), row(2), row(3)];
        for p in (0..k4).step_by(4) {
            // SAFETY: p + 4 <= kc, the length of each source row; the panel holds kc·MR floats.
            unsafe {
                let block = F32x4::transpose(src.map(|r| F32x4::load(r[p..p + 4].as_ptr())));
                for (q, v) in block.iter().enumerate() {
                    v.store(panel[(p + q) * MR..(p + q) * MR + MR].as_mut_ptr());
                }
            }
        }
        for p in k4..kc {
            for (i, r) in src.iter().enumerate() {
                panel[p * MR + i] = r[p];
            }
        }
    } else {
        for i in 0..MR {
            for p in 0..kc {
                panel[p * MR + i] = if i < rows { a.data[(r0 + i) * a.rs + (k0 + p) * a.cs] } else { 0.0 };
            }
        }
    }
}

/// Packs columns `[jt0, jt1)` tiles of B rows `[k0, k0+kc)`: one `kc × NR` panel per column tile.
/// With `partial_only`, full tiles are skipped: they are read from B directly.
fn pack_b(b: BSource, k0: usize, kc: usize, jt0: usize, jt1: usize, partial_only: bool, out: &mut Vec<f32>) {
    grow(out, (jt1 - jt0) * NR * kc);
    let b = match b {
        BSource::Dense(s) => s,
        BSource::Quant(q) => return q.pack_panels(k0, kc, jt0, jt1, out),
    };
    for (t, jt) in (jt0..jt1).enumerate() {
        if partial_only && (jt + 1) * NR <= b.cols {
            continue;
        }
        let panel = &mut out[t * NR * kc..(t + 1) * NR * kc];
        let cols = NR.min(b.cols - jt * NR);
        for j in 0..NR {
            let col = k0 * b.rs + (jt * NR + j) * b.cs;
            for p in 0..kc {
                panel[p * NR + j] = if j < cols { b.data[col + p * b.rs] } else { 0.0 };
            }
        }
    }
}

/// Makes `buf` at least `len` long, never shorter: the packing buffers are reused across calls of
/// different sizes, and every packed value is written before it is read, so shrinking and growing
/// back would only zero-fill memory for nothing.
pub(super) fn grow<T: Copy + Default>(buf: &mut Vec<T>, len: usize) {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
}

#[allow(clippy::too_many_arguments)]
fn compute_block(
    packed_a: &[f32],
    b: BSource,
    c: SendPtr,
    ldc: usize,
    (m, k, n): (usize, usize, usize),
    depth: usize,
    (it0, it1): (usize, usize),
    (jt0, jt1): (usize, usize),
    ep: Epilogue,
    bias: Option<&[f32]>,
) -> bool {
    let m_tiles = m.div_ceil(MR);
    // Sum of every stored value times zero: zero while all are finite, NaN from the first that is not.
    let mut nonfinite = F32x4::splat(0.0);
    // B rows contiguous (dY·W): full column tiles are read in place, with B's row stride; packing
    // them would copy each value to use it only m times.
    let direct = match b {
        BSource::Dense(s) if s.cs == 1 => Some(s),
        _ => None,
    };
    PACKED_B.with_borrow_mut(|packed_b| {
        let k_blocks: Vec<usize> = if k == 0 { vec![0] } else { (0..k).step_by(depth).collect() };
        let last_k0 = *k_blocks.last().unwrap_or(&0);
        for &k0 in &k_blocks {
            let kc = depth.min(k - k0);
            pack_b(b, k0, kc, jt0, jt1, direct.is_some(), packed_b);
            let a_block = &packed_a[k0 * m_tiles * MR..];
            let first = k0 == 0;
            let last = k0 == last_k0;
            for (t, jt) in (jt0..jt1).enumerate() {
                let cols = NR.min(n - jt * NR);
                let b_panel = if let Some(b) = direct.filter(|_| cols == NR) {
                    // B element (k0 + p, jt·NR + j) at row stride b.rs; fits() bounds the last one.
                    BPanel { ptr: b.data[k0 * b.rs + jt * NR..].as_ptr(), ld: b.rs }
                } else {
                    BPanel { ptr: packed_b[t * NR * kc..(t + 1) * NR * kc].as_ptr(), ld: NR }
                };
                let tile_bias = if last { bias.map(|bv| &bv[jt * NR..jt * NR + NR]) } else { None };
                for it in it0..it1 {
                    let a_panel = &a_block[it * MR * kc..(it + 1) * MR * kc];
                    let rows = MR.min(m - it * MR);
                    let tile = TileOut {
                        // SAFETY: (it, jt) lies inside C; tasks own disjoint tile ranges.
                        ptr: unsafe { c.0.add(it * MR * ldc + jt * NR) },
                        ldc,
                        rows,
                        cols,
                    };
                    let load_c = !first || ep.accumulate;
                    let relu = last && ep.relu;
                    let check = if last { Some(&mut nonfinite) } else { None };
                    // SAFETY: the A panel holds kc*MR floats, the B panel kc rows of NR at stride ld;
                    // the tile is inside C.
                    unsafe { tile_kernel(kc, a_panel, b_panel, tile, load_c, tile_bias, relu, check) };
                }
            }
        }
    });
    nonfinite.to_array().iter().all(|&x| x == 0.0)
}

/// `kc` rows of `NR` floats, `ld` apart: a packed panel (ld = NR) or B itself.
#[derive(Clone, Copy)]
struct BPanel {
    ptr: *const f32,
    ld: usize,
}

struct TileOut {
    ptr: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
}

/// One `MR × NR` tile: edge tiles go through a local buffer so the micro-kernel is always full size.
///
/// # Safety
/// `tile.ptr` must address a `tile.rows × tile.cols` region with row stride `tile.ldc` that no other
/// thread touches.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_kernel(
    kc: usize,
    a: &[f32],
    b: BPanel,
    tile: TileOut,
    load_c: bool,
    bias: Option<&[f32]>,
    relu: bool,
    check: Option<&mut F32x4>,
) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        debug_assert!(a.len() >= MR * kc);
        if tile.rows == MR && tile.cols == NR {
            micro_kernel(kc, a.as_ptr(), b, tile.ptr, tile.ldc, load_c, bias, relu, check);
        } else {
            let mut buf = [0.0f32; MR * NR];
            if load_c {
                for i in 0..tile.rows {
                    for j in 0..tile.cols {
                        buf[i * NR + j] = *tile.ptr.add(i * tile.ldc + j);
                    }
                }
            }
            // Padding rows and columns hold products of zero padding: finite, so checking them is harmless.
            micro_kernel(kc, a.as_ptr(), b, buf.as_mut_ptr(), NR, load_c, bias, relu, check);
            for i in 0..tile.rows {
                for j in 0..tile.cols {
                    *tile.ptr.add(i * tile.ldc + j) = buf[i * NR + j];
                }
            }
        }
    }
}

/// The register tile: `MR × NR` accumulators (8 lanes of 4), summed over `kc` in ascending order.
/// With `check`, each stored value times zero is added to it (see `compute_block`).
///
/// # Safety
/// `a` holds `MR*kc` floats, `b` addresses `kc` rows of `NR` floats; `c` addresses `MR` rows of `NR`
/// floats, stride `ldc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(
    kc: usize,
    a: *const f32,
    b: BPanel,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
    bias: Option<&[f32]>,
    relu: bool,
    check: Option<&mut F32x4>,
) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        let zero = F32x4::splat(0.0);
        let mut acc = [[zero; 2]; MR];
        if load_c {
            for (i, row) in acc.iter_mut().enumerate() {
                row[0] = F32x4::load(c.add(i * ldc));
                row[1] = F32x4::load(c.add(i * ldc + 4));
            }
        }
        for p in 0..kc {
            let b0 = F32x4::load(b.ptr.add(p * b.ld));
            let b1 = F32x4::load(b.ptr.add(p * b.ld + 4));
            let a_col = F32x4::load(a.add(p * MR)).splat_lanes();
            for (ai, row) in a_col.iter().zip(acc.iter_mut()) {
                row[0] = F32x4::mul_add(*ai, b0, row[0]);
                row[1] = F32x4::mul_add(*ai, b1, row[1]);
            }
        }
        if let Some(bias) = bias {
            let b0 = F32x4::load(bias.as_ptr());
            let b1 = F32x4::load(bias.as_ptr().add(4));
            for row in acc.iter_mut() {
                row[0] = row[0].add(b0);
                row[1] = row[1].add(b1);
            }
        }
        if relu {
            for row in acc.iter_mut() {
                row[0] = row[0].relu();
                row[1] = row[1].relu();
            }
        }
        for (i, row) in acc.iter().enumerate() {
            row[0].store(c.add(i * ldc));
            row[1].store(c.add(i * ldc + 4));
        }
        if let Some(z) = check {
            for row in &acc {
                *z = F32x4::mul_add(row[0], zero, *z);
                *z = F32x4::mul_add(row[1], zero, *z);
            }
        }
    }
}

/// `dw (n×k) = dyᵀ (n×m) · x (m×k)` for an input `x` whose values are mostly the constant `c` (the
/// network's input: a blank pixel normalises to −1, and 81 % of MNIST's pixels are blank).
///
/// Computed as `dyᵀ·(x − c) + c·(dyᵀ·1)`: for each 8-column tile of `x`, the rows (samples) where
/// `x − c` is zero in all 8 columns add exactly nothing, so they are skipped — in a batch of 64 digits
/// about 60 % of them. The second term is `c` times the row sums of `dyᵀ`, added to each output row.
/// The result equals `dyᵀ·x` up to rounding, is bit-identical for any thread count, and the return
/// value says whether it is all finite. Batches deeper than one k-block use the dense `gemm`.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad_offset(dy: &[f32], x: &[f32], c: f32, dw: &mut [f32], m: usize, k: usize, n: usize) -> bool {
    assert!(dy.len() >= m * n && x.len() >= m * k && dw.len() >= n * k, "weight_grad_offset: buffers too small");
    if m > KC_MAX || m == 0 {
        let a = Strided::transposed(dy, n, m);
        return gemm(a, Strided::row_major(x, m, k), dw, k, Epilogue::default());
    }
    if n == 0 || k == 0 {
        return true;
    }
    let m_tiles = n.div_ceil(MR); // rows of dw
    let n_tiles = k.div_ceil(NR); // columns of dw
    let threads = rayon::current_num_threads().max(1);
    let serial = m * n * k < parallel_min_macs() || threads == 1;
    let mut packed_a = PACKED_A.take();
    pack_a(Strided::transposed(dy, n, m), m_tiles, m, !serial, &mut packed_a);
    // c · Σ_i dy[i][j] for each row j of dw, padded to whole row tiles.
    let mut row_add = vec![0.0f32; m_tiles * MR];
    bias_grad(&dy[..m * n], m, n, &mut row_add[..n]);
    row_add.iter_mut().for_each(|r| *r *= c);
    let chunks = if serial { 1 } else { (4 * threads).min(n_tiles) };
    let per_chunk = n_tiles.div_ceil(chunks);
    let dw_ptr = SendPtr(dw.as_mut_ptr());
    let (packed, adds) = (&packed_a[..], &row_add[..]);
    let job = |t: usize| -> bool {
        #[allow(clippy::redundant_locals)]
        let dw_ptr = dw_ptr;
        let (jt0, jt1) = (t * per_chunk, ((t + 1) * per_chunk).min(n_tiles));
        let mut nonfinite = F32x4::splat(0.0);
        PACKED_B.with_borrow_mut(|panel| {
            let mut rows: Vec<u32> = vec![0; m];
            // At most m rows of NR.
            grow(panel, m * NR);
            for jt in jt0..jt1 {
                let cols = NR.min(k - jt * NR);
                // The samples with anything but `c` in these columns, and their `x − c`, packed.
                let count = pack_rows(x, c, k, m, jt * NR, cols, &mut rows, panel);
                let (rows, panel) = (&rows[..count], &panel[..count * NR]);
                for it in 0..m_tiles {
                    let tile = TileOut {
                        // SAFETY: (it, jt) lies inside dw; tasks own disjoint column tiles.
                        ptr: unsafe { dw_ptr.0.add(it * MR * k + jt * NR) },
                        ldc: k,
                        rows: MR.min(n - it * MR),
                        cols,
                    };
                    let a_panel = &packed[it * MR * m..(it + 1) * MR * m];
                    // SAFETY: the A panel holds m*MR floats and every index in `rows` is below m; the
                    // B panel holds rows.len() rows of NR; the tile is inside dw.
                    unsafe { rows_tile(a_panel, rows, panel, &adds[it * MR..it * MR + MR], tile, &mut nonfinite) };
                }
            }
        });
        nonfinite.to_array().iter().all(|&v| v == 0.0)
    };
    let finite = par_all(chunks, &job);
    PACKED_A.set(packed_a);
    finite
}

/// For `weight_grad_offset`: of the `m` rows of `x (m×k)`, those with a value other than `c` in
/// columns `[j0, j0 + cols)`: their indices into `rows`, those columns minus `c` into `panel` (rows of
/// NR, zero past `cols`). Returns how many.
#[allow(clippy::too_many_arguments)]
fn pack_rows(
    x: &[f32],
    c: f32,
    k: usize,
    m: usize,
    j0: usize,
    cols: usize,
    rows: &mut [u32],
    panel: &mut [f32],
) -> usize {
    let cv = F32x4::splat(c);
    let mut count = 0;
    for i in 0..m {
        let src = &x[i * k + j0..i * k + j0 + cols];
        let dst = &mut panel[count * NR..count * NR + NR];
        if cols == NR {
            // SAFETY: src and dst hold NR = 8 floats.
            let (lo, hi) = unsafe { (F32x4::load(src.as_ptr()), F32x4::load(src.as_ptr().add(4))) };
            if lo.any_ne(cv) || hi.any_ne(cv) {
                // SAFETY: as above.
                unsafe {
                    lo.sub(cv).store(dst.as_mut_ptr());
                    hi.sub(cv).store(dst.as_mut_ptr().add(4));
                }
                rows[count] = i as u32;
                count += 1;
            }
        } else if src.iter().any(|&v| v != c) {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = if j < cols { src[j] - c } else { 0.0 };
            }
            rows[count] = i as u32;
            count += 1;
        }
    }
    count
}

/// One `MR × NR` tile of `weight_grad_offset`: sums over the listed rows only, in ascending order,
/// then adds `row_add[i]` to row i; edge tiles go through a local buffer.
///
/// # Safety
/// `a` holds an `MR × m` panel (k-major) with every index of `rows` below m; `b` holds `rows.len()`
/// rows of `NR`; `tile.ptr` addresses a `tile.rows × tile.cols` region, stride `tile.ldc`, that no
/// other thread touches.
unsafe fn rows_tile(a: &[f32], rows: &[u32], b: &[f32], row_add: &[f32], tile: TileOut, check: &mut F32x4) {
    debug_assert!(b.len() >= rows.len() * NR && row_add.len() >= MR);
    let zero = F32x4::splat(0.0);
    let mut acc = [[zero; 2]; MR];
    for (q, &p) in rows.iter().enumerate() {
        // SAFETY: p < m, so p*MR + i < MR*m = a.len(); row q of b is inside b.
        unsafe {
            let b0 = F32x4::load(b.as_ptr().add(q * NR));
            let b1 = F32x4::load(b.as_ptr().add(q * NR + 4));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = F32x4::load_splat(a.as_ptr().add(p as usize * MR + i));
                row[0] = F32x4::mul_add(ai, b0, row[0]);
                row[1] = F32x4::mul_add(ai, b1, row[1]);
            }
        }
    }
    for (row, &r) in acc.iter_mut().zip(row_add) {
        let r = F32x4::splat(r);
        row[0] = row[0].add(r);
        row[1] = row[1].add(r);
    }
    for row in &acc {
        *check = F32x4::mul_add(row[0], zero, *check);
        *check = F32x4::mul_add(row[1], zero, *check);
    }
    // SAFETY: the caller's contract: the tile region belongs to this call.
    unsafe {
        if tile.rows == MR && tile.cols == NR {
            for (i, row) in acc.iter().enumerate() {
                row[0].store(tile.ptr.add(i * tile.ldc));
                row[1].store(tile.ptr.add(i * tile.ldc + 4));
            }
        } else {
            let mut buf = [0.0f32; MR * NR];
            for (i, row) in acc.iter().enumerate() {
                row[0].store(buf.as_mut_ptr().add(i * NR));
                row[1].store(buf.as_mut_ptr().add(i * NR + 4));
            }
            for i in 0..tile.rows {
                for j in 0..tile.cols {
                    *tile.ptr.add(i * tile.ldc + j) = buf[i * NR + j];
                }
            }
        }
    }
}
