//! Decoding's matrix-vector products with 8-bit activations, as llama.cpp computes them: each row of x
//! rounded to 8 bits per block of 32 (ggml's `Q8_0` rule: `d = max|x| / 127`, `q = round(x / d)`), then
//! integer dot products with the weight's own 4- or 8-bit codes, each block's integer sum scaled once.
//! About ten vector operations per block of 32 weights where dequantising each weight to f32 first
//! (`qweight::rows_dot`, the exact path) takes about fifty — but the result parts from the exact one by
//! the activations' rounding (relative ~0.4 % per value, mostly averaging out in the sums), so it is an
//! opt-in mode, never what training or evaluation compute with.
//!
//! Every build gives the same bits: the integer sums are exact whichever instructions make them
//! (`i32x4.relaxed_dot_i8x16_i7x16_add_s` with the 4-bit codes as its 7-bit operand in the relaxed-SIMD
//! build, `i32x4.dot_i16x8_s` on widened values otherwise, plain integers natively), and the float
//! work after them is the same separately rounded operations in the same order:
//! per block, `t = f32(Σ qw·qx) · (d_w · d_x)` (`+ m_w · s_x` for Q4_1, where `s_x = d_x · Σ qx`), and
//! the row's sum `acc + t` block after block, then the bias.

use super::dot::SendPtr;
use super::pool::{par_for, parallel_min_macs};
use super::qweight::{QFormat, QWeight};

/// Values per block (ggml's and the activations').
const BLOCK: usize = 32;

/// The weight formats with integer codes (`QFormat`'s Q4_0, Q4_1 and Q8_0), as const parameters.
const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

/// A weight `forward` reads: a format with integer codes (Q4_0, Q4_1, Q8_0) and every block's scales
/// finite (the kernels convert them without the infinity and NaN cases). Made by `check`, which reads
/// every block, or by `scanned` for a weight that `check` passed when it was made (`GgmlWeight`).
#[derive(Clone, Copy, Debug)]
pub struct Int8Weight<'a>(QWeight<'a>);

impl<'a> Int8Weight<'a> {
    /// `w` if `forward` can read it.
    pub fn check(w: QWeight<'a>) -> Option<Self> {
        w.check();
        let scales = match w.format {
            QFormat::Q4_0 | QFormat::Q8_0 => 1,
            QFormat::Q4_1 => 2,
            _ => return None,
        };
        let bytes = w.block().1;
        let blocks = w.rows * w.cols / BLOCK;
        let finite = w.data[..blocks * bytes]
            .chunks_exact(bytes)
            .all(|b| (0..scales).all(|i| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) & 0x7c00 != 0x7c00));
        finite.then_some(Self(w))
    }

    /// `w`, which `check` passed before (the caller kept the answer with the weight).
    pub(crate) fn scanned(w: QWeight<'a>) -> Self {
        debug_assert!(Self::check(w).is_some());
        Self(w)
    }
}

/// One row of x rounded to 8 bits per block of 32.
pub(super) struct Int8Row {
    /// The codes, in [-127, 127].
    q: Vec<i8>,
    /// The same codes widened to 16 bits (the dot products without relaxed SIMD read these).
    wide: Vec<i16>,
    /// Per block: the scale `max|x| / 127` (NaN where the block holds a NaN or an infinity, so the
    /// outputs it touches are NaN as the exact path's would be).
    d: Vec<f32>,
    /// Per block: Σ q (Q4_0's offset of 8 and Q4_1's minimum multiply it).
    sum: Vec<i32>,
    /// Per block: `d · Σ q`.
    s: Vec<f32>,
}

impl Int8Row {
    /// `x` (a whole number of blocks) rounded as ggml's `quantize_row_q8_0` rounds it, the scale kept in
    /// f32 (ggml stores it as f16).
    pub(super) fn quantize(x: &[f32]) -> Self {
        debug_assert!(x.len().is_multiple_of(BLOCK));
        let blocks = x.len() / BLOCK;
        let mut r = Self {
            q: vec![0; x.len()],
            wide: vec![0; x.len()],
            d: vec![0.0; blocks],
            sum: vec![0; blocks],
            s: vec![0.0; blocks],
        };
        for (b, xb) in x.chunks_exact(BLOCK).enumerate() {
            let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let finite = xb.iter().all(|v| v.is_finite());
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (j, v) in xb.iter().enumerate() {
                // |v · id| ≤ 127 up to rounding: the cast saturates, and NaN (a non-finite block) gives 0.
                let q = (v * id).round() as i8;
                r.q[b * BLOCK + j] = q;
                r.wide[b * BLOCK + j] = q as i16;
                sum += q as i32;
            }
            r.d[b] = if finite { d } else { f32::NAN };
            r.sum[b] = sum;
            r.s[b] = r.d[b] * sum as f32;
        }
        r
    }
}

/// `y (m×n) = x (m×k) · wᵀ (+ bias, ReLU)` with x's rows rounded to 8 bits (`Int8Row`). Rows of W go
/// four at a time, split across threads in whole groups.
pub(super) fn forward(x: &[f32], w: Int8Weight, bias: Option<&[f32]>, y: &mut [f32], m: usize, relu: bool) {
    let w = w.0;
    let (k, n) = (w.cols, w.rows);
    assert!(x.len() >= m * k && y.len() >= m * n, "int8 forward: buffers too small");
    let fmt = match w.format {
        QFormat::Q4_0 => Q4_0,
        QFormat::Q4_1 => Q4_1,
        QFormat::Q8_0 => Q8_0,
        _ => panic!("int8 forward: {:?} has no integer codes", w.format),
    };
    let bytes = layout(fmt).0;
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "int8 forward: bias length");
    }
    if n == 0 {
        return;
    }
    let blocks = k / BLOCK;
    let row_bytes = blocks * bytes;
    let threads = rayon::current_num_threads().max(1);
    let groups = n.div_ceil(4);
    let serial = n * k < parallel_min_macs() || threads == 1;
    let per_task = if serial { groups } else { groups.div_ceil(4 * threads) };
    for i in 0..m {
        let a = Int8Row::quantize(&x[i * k..(i + 1) * k]);
        let y_ptr = SendPtr(y[i * n..(i + 1) * n].as_mut_ptr());
        let job = |t: usize| {
            #[allow(clippy::redundant_locals)]
            let y_ptr = y_ptr;
            for g in t * per_task..((t + 1) * per_task).min(groups) {
                let j0 = 4 * g;
                // A last group short of four rows reads its last row again and keeps only its own.
                let rows = [0, 1, 2, 3].map(|r| w.data[(j0 + r).min(n - 1) * row_bytes..].as_ptr());
                // SAFETY: `Int8Weight::check` ran `w.check()`: every row is `row_bytes` long, whole blocks.
                let v = unsafe {
                    match fmt {
                        Q4_0 => imp::group::<Q4_0>(rows, blocks, &a),
                        Q4_1 => imp::group::<Q4_1>(rows, blocks, &a),
                        _ => imp::group::<Q8_0>(rows, blocks, &a),
                    }
                };
                for (r, &v) in v.iter().enumerate().take(n - j0) {
                    let v = v + bias.map_or(0.0, |b| b[j0 + r]);
                    // SAFETY: j0 + r < n, this row of y; each group's columns belong to one task.
                    unsafe { *y_ptr.0.add(j0 + r) = if relu && v < 0.0 { 0.0 } else { v } };
                }
            }
        };
        par_for(groups.div_ceil(per_task), &job);
    }
}

/// (block bytes, offset of the codes) of a format.
const fn layout(fmt: u8) -> (usize, usize) {
    match fmt {
        Q4_0 => (18, 2),
        Q4_1 => (20, 4),
        _ => (34, 2),
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use super::{layout, Int8Row, BLOCK, Q4_0, Q4_1, Q8_0};
    use core::arch::wasm32::*;

    /// Four finite IEEE halves, each in the high 16 bits of a 32-bit lane, as f32, exactly as
    /// `qweight::f16_to_f32`: the arithmetic shift puts the sign at bit 31 and the exponent and mantissa
    /// where an f32's go (with three copies of the sign above the exponent, and the lane's low bits
    /// below the mantissa, both masked off), then 2^112 rebiases the exponent — exact for normal and
    /// subnormal halves. (An infinity or NaN would come out finite: `Int8Weight` has none.)
    #[inline(always)]
    fn halves_high(h: v128) -> v128 {
        let bits = v128_and(i32x4_shr(h, 3), u32x4_splat(0x8fff_e000));
        f32x4_mul(bits, f32x4_splat(f32::from_bits(0x7780_0000)))
    }

    /// Lane r = the sum of the four lanes of `v[r]`.
    #[inline(always)]
    fn sum_lanes(v: [v128; 4]) -> v128 {
        let ab = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]), i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]));
        let cd = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]), i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
    }

    /// Σ code·qx over one Q4 block's 16 bytes at `p` (low nibbles: values 0..16, high: 16..32), in
    /// four lanes, against a's block b.
    #[cfg(target_feature = "relaxed-simd")]
    #[inline(always)]
    unsafe fn q4_sum(p: *const u8, a: &Int8Row, b: usize) -> v128 {
        // SAFETY (all loads): the caller's block is whole, and a.q holds 32 codes from b·32.
        unsafe {
            let v = v128_load(p as *const v128);
            let x = a.q.as_ptr().add(b * BLOCK) as *const v128;
            let (lo, hi) = (v128_and(v, u8x16_splat(15)), u8x16_shr(v, 4));
            // The codes (0..15) are the 7-bit operand: the same sum on every implementation.
            let s = i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(x), lo, i32x4_splat(0));
            i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(x.add(1)), hi, s)
        }
    }

    #[cfg(not(target_feature = "relaxed-simd"))]
    #[inline(always)]
    unsafe fn q4_sum(p: *const u8, a: &Int8Row, b: usize) -> v128 {
        // SAFETY (all loads): as above, a.wide holds 32 codes from b·32.
        unsafe {
            let v = v128_load(p as *const v128);
            let x = a.wide.as_ptr().add(b * BLOCK) as *const v128;
            let (lo, hi) = (v128_and(v, u8x16_splat(15)), u8x16_shr(v, 4));
            let dot = |c: v128, i: usize| {
                i32x4_add(
                    i32x4_dot_i16x8(v128_load(x.add(i)), u16x8_extend_low_u8x16(c)),
                    i32x4_dot_i16x8(v128_load(x.add(i + 1)), u16x8_extend_high_u8x16(c)),
                )
            };
            i32x4_add(dot(lo, 0), dot(hi, 2))
        }
    }

    /// Σ code·qx over one Q8_0 block's 32 signed codes at `p`, in four lanes.
    #[inline(always)]
    unsafe fn q8_sum(p: *const u8, a: &Int8Row, b: usize) -> v128 {
        // SAFETY (all loads): the block's 32 codes, and a.wide's 32 from b·32.
        unsafe {
            let x = a.wide.as_ptr().add(b * BLOCK) as *const v128;
            let dot = |i: usize| {
                let v = v128_load(p.add(16 * i) as *const v128);
                i32x4_add(
                    i32x4_dot_i16x8(v128_load(x.add(2 * i)), i16x8_extend_low_i8x16(v)),
                    i32x4_dot_i16x8(v128_load(x.add(2 * i + 1)), i16x8_extend_high_i8x16(v)),
                )
            };
            i32x4_add(dot(0), dot(1))
        }
    }

    /// The four rows' sums (before the bias) of W rows starting at `rows`, `blocks` blocks each.
    ///
    /// # Safety
    /// Each of `rows` points at `blocks` whole blocks of format `F`; `a` holds as many.
    #[inline(always)]
    pub(super) unsafe fn group<const F: u8>(rows: [*const u8; 4], blocks: usize, a: &Int8Row) -> [f32; 4] {
        let (bytes, codes) = layout(F);
        let mut acc = f32x4_splat(0.0);
        for b in 0..blocks {
            // SAFETY: block b of each row is whole (the caller's contract).
            let at = rows.map(|r| unsafe { r.add(b * bytes) });
            let sums = at.map(|p| unsafe {
                if F == Q8_0 {
                    q8_sum(p.add(codes), a, b)
                } else {
                    q4_sum(p.add(codes), a, b)
                }
            });
            let mut s = sum_lanes(sums);
            // The rows' first 32 bits: d, then (Q4_1) m.
            let mut dm = u32x4_splat(0);
            // SAFETY: every block is at least 18 bytes.
            unsafe {
                dm = v128_load32_lane::<0>(dm, at[0] as *const u32);
                dm = v128_load32_lane::<1>(dm, at[1] as *const u32);
                dm = v128_load32_lane::<2>(dm, at[2] as *const u32);
                dm = v128_load32_lane::<3>(dm, at[3] as *const u32);
            }
            if F == Q4_0 {
                // Σ (q − 8)·qx = Σ q·qx − 8 Σ qx, exactly.
                s = i32x4_sub(s, i32x4_splat(8 * a.sum[b]));
            }
            let d = halves_high(i32x4_shl(dm, 16));
            let mut t = f32x4_mul(f32x4_convert_i32x4(s), f32x4_mul(d, f32x4_splat(a.d[b])));
            if F == Q4_1 {
                t = f32x4_add(t, f32x4_mul(halves_high(dm), f32x4_splat(a.s[b])));
            }
            acc = f32x4_add(acc, t);
        }
        [
            f32x4_extract_lane::<0>(acc),
            f32x4_extract_lane::<1>(acc),
            f32x4_extract_lane::<2>(acc),
            f32x4_extract_lane::<3>(acc),
        ]
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    //! Plain integers and the same float operations, lane by lane (native tests and tools).
    use super::super::qweight::f16_to_f32;
    use super::{layout, Int8Row, BLOCK, Q4_0, Q4_1, Q8_0};

    /// # Safety
    /// As the wasm `group`.
    pub(super) unsafe fn group<const F: u8>(rows: [*const u8; 4], blocks: usize, a: &Int8Row) -> [f32; 4] {
        let (bytes, codes) = layout(F);
        let mut acc = [0.0f32; 4];
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the caller's rows hold `blocks` whole blocks.
            let row = unsafe { std::slice::from_raw_parts(rows[r], blocks * bytes) };
            for (b, blk) in row.chunks_exact(bytes).enumerate() {
                let x = &a.q[b * BLOCK..(b + 1) * BLOCK];
                let c = &blk[codes..];
                let mut s: i32 = if F == Q8_0 {
                    (0..BLOCK).map(|j| c[j] as i8 as i32 * a.wide[b * BLOCK + j] as i32).sum()
                } else {
                    (0..16).map(|j| (c[j] & 15) as i32 * x[j] as i32 + (c[j] >> 4) as i32 * x[16 + j] as i32).sum()
                };
                if F == Q4_0 {
                    s -= 8 * a.sum[b];
                }
                let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                let mut t = s as f32 * (d * a.d[b]);
                if F == Q4_1 {
                    t += f16_to_f32(u16::from_le_bytes([blk[2], blk[3]])) * a.s[b];
                }
                *acc += t;
            }
        }
        acc
    }
}
