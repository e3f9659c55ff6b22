//! A frozen weight held in the blocks it was read in, as the kernels read it: the forward `X·Wᵀ` and the
//! input gradient `dY·W` dequantise it where they use it — as the GEMM's B operand, one `kc × NR` panel
//! of at most 256 × 8 values at a time, beside the micro-kernel; for the dot-product tiles
//! (`dot::WRows`), a few W rows at a time — so no f32 copy of W is ever made. One weight source, many
//! formats (candle's `QMatMul` idea): bitsandbytes' NF4 and ggml's block types.
//!
//! Every value is the very product the format's reference dequantisation computes (`quant::ggml`,
//! `quant::QuantizedWeight`), and the tiles sum in their usual order: results are bit-identical to the
//! f32 kernels on the dequantised matrix, for any thread count.
//!
//! Runs are over W's flat (row-major) index. ggml's blocks never cross a row (a row is a whole number of
//! blocks); NF4's blocks of 64 may, which `nf4::dequantize_run` handles.

use super::gemm::{KC_MAX, MR, NR};
use super::lane::F32x4;
use super::nf4;

/// How a weight's bytes decode.
#[derive(Clone, Copy, Debug)]
pub enum QFormat<'a> {
    /// bitsandbytes' NF4: two codes per byte (the first in the high nibble); element i's scale is
    /// `scales[i / 64]`, the block's absmax already dequantised.
    Nf4 { scales: &'a [f32] },
    /// ggml's Q4_0: blocks of 32 = f16 `d`, 16 bytes of nibbles; value `(q − 8)·d`.
    Q4_0,
    /// ggml's Q4_1: blocks of 32 = f16 `d`, f16 `m`, 16 bytes; value `q·d + m`. Element j < 16 is the
    /// low nibble of byte j, element j ≥ 16 the high nibble of byte j − 16.
    Q4_1,
    /// ggml's Q8_0: blocks of 32 = f16 `d`, 32 × i8; value `q·d`.
    Q8_0,
    /// Any other block type, decoded one whole block at a time by its reference (`quant::ggml`):
    /// K-quants, f16, bf16, f32.
    Blocks { block: usize, block_bytes: usize, decode: fn(&[u8], &mut [f32]) },
}

/// A quantised weight W (`rows × cols`, row-major) as the kernels read it.
#[derive(Clone, Copy, Debug)]
pub struct QWeight<'a> {
    pub format: QFormat<'a>,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

const GGML_BLOCK: usize = 32;

impl QWeight<'_> {
    /// (elements, bytes) of one block; NF4 counts a byte as a block of two.
    pub(super) fn block(&self) -> (usize, usize) {
        match self.format {
            QFormat::Nf4 { .. } => (2, 1),
            QFormat::Q4_0 => (GGML_BLOCK, 18),
            QFormat::Q4_1 => (GGML_BLOCK, 20),
            QFormat::Q8_0 => (GGML_BLOCK, 34),
            QFormat::Blocks { block, block_bytes, .. } => (block, block_bytes),
        }
    }

    /// Panics unless the parts fit `rows × cols` (callers build it from a checked weight).
    pub(super) fn check(&self) {
        let n = self.rows * self.cols;
        let (block, bytes) = self.block();
        if let QFormat::Nf4 { scales } = self.format {
            assert!(scales.len() >= n.div_ceil(crate::quant::BLOCK), "nf4: scales too short");
        } else {
            assert!(self.cols.is_multiple_of(block), "a ggml weight's rows are whole blocks");
        }
        assert!(self.data.len() >= n.div_ceil(block) * bytes, "quantised weight too short for its shape");
    }

    /// Dequantises flat elements `start .. start + out.len()` into `out`.
    pub(super) fn dequantize_run(&self, start: usize, out: &mut [f32]) {
        match self.format {
            QFormat::Nf4 { scales } => {
                let w = nf4::Nf4Weight { packed: self.data, scales, rows: self.rows, cols: self.cols };
                nf4::dequantize_run(w, start, out)
            }
            _ => self.dequantize_blocks(start, out),
        }
    }

    /// A run of a block format: whole blocks decoded straight into `out`, partial ones through a
    /// block-sized buffer.
    fn dequantize_blocks(&self, start: usize, out: &mut [f32]) {
        let (block, bytes) = self.block();
        let mut tmp = [0.0f32; 256];
        let (mut i, end) = (start, start + out.len());
        while i < end {
            let b = i / block;
            let (b0, b1) = (b * block, (b + 1) * block);
            let src = &self.data[b * bytes..(b + 1) * bytes];
            let (lo, hi) = (i - b0, b1.min(end) - b0);
            let o = &mut out[i - start..i - start + hi - lo];
            if lo == 0 && hi == block {
                self.decode_block(src, o);
            } else {
                self.decode_block(src, &mut tmp[..block]);
                o.copy_from_slice(&tmp[lo..hi]);
            }
            i = b0 + hi;
        }
    }

    /// Whether rows decode a block at a time straight into the dot products (`rows_dot`).
    pub(super) fn fuses(&self) -> bool {
        matches!(self.format, QFormat::Q4_0 | QFormat::Q4_1 | QFormat::Q8_0)
    }

    /// `y[i][j] = x_i · W_j (+ bias[j], ReLU)` for the `m` rows of x and W's rows `j0..j1`, each summed
    /// exactly as the dot-product tiles sum it (4 lanes over k in steps of 4, then `hsum`, then the
    /// bias): W's blocks are decoded one at a time into registers, never into a buffer. For `fuses()`
    /// formats (whole blocks of 32 per row, so k is a multiple of 4).
    ///
    /// # Safety
    /// `y` addresses an m×n row-major matrix that no other thread writes in columns `j0..j1`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn rows_dot(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        relu: bool,
        y: *mut f32,
        n: usize,
        j0: usize,
        j1: usize,
    ) {
        const MAX_ROWS: usize = 4;
        let k = self.cols;
        debug_assert!(self.fuses() && m <= MAX_ROWS && k.is_multiple_of(GGML_BLOCK));
        let (_, bytes) = self.block();
        let row_bytes = k / GGML_BLOCK * bytes;
        let mut w = [0.0f32; GGML_BLOCK];
        for j in j0..j1 {
            let mut acc = [F32x4::splat(0.0); MAX_ROWS];
            for (b, src) in self.data[j * row_bytes..(j + 1) * row_bytes].chunks_exact(bytes).enumerate() {
                self.decode_block(src, &mut w);
                for (i, a) in acc.iter_mut().enumerate().take(m) {
                    let xb = &x[i * k + b * GGML_BLOCK..][..GGML_BLOCK];
                    for p in (0..GGML_BLOCK).step_by(4) {
                        // SAFETY: p + 4 <= 32 floats of xb and of w.
                        unsafe { *a = F32x4::mul_add(F32x4::load(xb.as_ptr().add(p)), F32x4::load(w.as_ptr().add(p)), *a) };
                    }
                }
            }
            for (i, a) in acc.iter().enumerate().take(m) {
                let v = super::dot::hsum(*a) + bias.map_or(0.0, |b| b[j]);
                // SAFETY: (i, j) is inside y and in this call's columns.
                unsafe { *y.add(i * n + j) = if relu && v < 0.0 { 0.0 } else { v } };
            }
        }
    }

    /// One whole block into `out` (its length is the block's).
    #[inline(always)]
    fn decode_block(&self, src: &[u8], out: &mut [f32]) {
        let f16 = |at: usize| f16_to_f32(u16::from_le_bytes([src[at], src[at + 1]]));
        match self.format {
            // Whole vectors: integer codes converted to f32, then a multiply (and an add) per value,
            // separately rounded as ggml computes them.
            QFormat::Q4_0 => {
                let (d, eight) = (F32x4::splat(f16(0)), F32x4::splat(8.0));
                let (lo, hi) = F32x4::from_nibbles(src[2..18].try_into().expect("16 bytes"));
                let out: &mut [f32; 32] = out.try_into().expect("a block of 32");
                for i in 0..4 {
                    // (q − 8) is exact in f32, as ggml's integer subtraction is.
                    // SAFETY: 4i + 4 <= 16 and 16 + 4i + 4 <= 32 floats of `out`.
                    unsafe {
                        lo[i].sub(eight).mul(d).store(out.as_mut_ptr().add(4 * i));
                        hi[i].sub(eight).mul(d).store(out.as_mut_ptr().add(16 + 4 * i));
                    }
                }
            }
            QFormat::Q4_1 => {
                let (d, m) = (F32x4::splat(f16(0)), F32x4::splat(f16(2)));
                let (lo, hi) = F32x4::from_nibbles(src[4..20].try_into().expect("16 bytes"));
                let out: &mut [f32; 32] = out.try_into().expect("a block of 32");
                for i in 0..4 {
                    // SAFETY: 4i + 4 <= 16 and 16 + 4i + 4 <= 32 floats of `out`.
                    unsafe {
                        lo[i].mul(d).add(m).store(out.as_mut_ptr().add(4 * i));
                        hi[i].mul(d).add(m).store(out.as_mut_ptr().add(16 + 4 * i));
                    }
                }
            }
            QFormat::Q8_0 => {
                let d = F32x4::splat(f16(0));
                let out: &mut [f32; 32] = out.try_into().expect("a block of 32");
                let lo = F32x4::from_i8(src[2..18].try_into().expect("16 bytes"));
                let hi = F32x4::from_i8(src[18..34].try_into().expect("16 bytes"));
                for i in 0..4 {
                    // SAFETY: 4i + 4 <= 16 and 16 + 4i + 4 <= 32 floats of `out`.
                    unsafe {
                        lo[i].mul(d).store(out.as_mut_ptr().add(4 * i));
                        hi[i].mul(d).store(out.as_mut_ptr().add(16 + 4 * i));
                    }
                }
            }
            QFormat::Blocks { decode, .. } => decode(src, out),
            QFormat::Nf4 { .. } => unreachable!("NF4 runs go through nf4::dequantize_run"),
        }
    }
}

/// An IEEE half as f32, exactly (as `half::f16::to_f32`), in a few integer operations and one multiply:
/// the half's exponent and mantissa bits moved into an f32's and scaled by 2^112 (the difference of the
/// two exponent biases), which is exact for normal and subnormal halves; infinities and NaNs apart.
#[inline(always)]
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = (h as u32 & 0x8000) << 16;
    let rest = h as u32 & 0x7fff;
    if rest >= 0x7c00 {
        return f32::from_bits(sign | 0x7f80_0000 | ((rest & 0x3ff) << 13));
    }
    let scaled = f32::from_bits(rest << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(scaled.to_bits() | sign)
}

/// B of `gemm` made of a quantised weight: W itself (`dY·W`, B is rows × cols) or its transpose
/// (`X·Wᵀ`, B is cols × rows).
#[derive(Clone, Copy, Debug)]
pub(super) struct QuantB<'a> {
    pub w: QWeight<'a>,
    pub transposed: bool,
}

impl QuantB<'_> {
    pub fn rows(&self) -> usize {
        if self.transposed {
            self.w.cols
        } else {
            self.w.rows
        }
    }
    pub fn cols(&self) -> usize {
        if self.transposed {
            self.w.rows
        } else {
            self.w.cols
        }
    }

    /// The `kc × NR` panels of B's column tiles `jt0..jt1` at rows `k0..k0+kc`, one after the other
    /// in `out`, dequantised: tile t's `panel[p·NR + j] = B[k0 + p][(jt0 + t)·NR + j]`, zero past B's
    /// last column.
    pub fn pack_panels(&self, k0: usize, kc: usize, jt0: usize, jt1: usize, out: &mut [f32]) {
        if self.transposed {
            let mut runs = [[0.0f32; KC_RUN]; NR];
            for (t, jt) in (jt0..jt1).enumerate() {
                self.pack_transposed(k0, kc, jt * NR, &mut runs, &mut out[t * NR * kc..(t + 1) * NR * kc]);
            }
            return;
        }
        // B = W: row k0 + p of every panel is W's row k0 + p, columns jt0·NR.. (contiguous),
        // dequantised as one run and dealt out to the tiles.
        let w = self.w;
        let (j0, j1) = (jt0 * NR, (jt1 * NR).min(w.cols));
        let mut row = vec![0.0f32; (jt1 - jt0) * NR];
        for p in 0..kc {
            w.dequantize_run((k0 + p) * w.cols + j0, &mut row[..j1 - j0]);
            for (t, tile) in row.chunks_exact(NR).enumerate() {
                out[t * NR * kc + p * NR..t * NR * kc + (p + 1) * NR].copy_from_slice(tile);
            }
        }
    }

    /// One `kc × NR` panel of B = Wᵀ at rows `k0..`, columns `j0..`: `panel[p·NR + j] = W[j0 + j][k0 + p]`.
    /// Panel column j is W's row j0 + j, columns k0..k0+kc: dequantised as a run into `rows[j]`, then
    /// moved into place four rows at a time.
    fn pack_transposed(&self, k0: usize, kc: usize, j0: usize, rows: &mut [[f32; KC_RUN]; NR], panel: &mut [f32]) {
        let w = self.w;
        let cols = NR.min(self.cols() - j0);
        for (j, run) in rows.iter_mut().enumerate() {
            if j < cols {
                w.dequantize_run((j0 + j) * w.cols + k0, &mut run[..kc]);
            } else {
                run[..kc].fill(0.0);
            }
        }
        let k4 = kc / 4 * 4;
        for half in 0..NR / MR {
            let src = &rows[half * MR..half * MR + MR];
            for p in (0..k4).step_by(4) {
                // SAFETY: p + 4 <= kc <= KC_RUN, the length of each run; each panel row holds NR floats
                // and (p + q)·NR + half·MR + 4 <= kc·NR.
                unsafe {
                    let block = F32x4::transpose([0, 1, 2, 3].map(|r| F32x4::load(src[r][p..p + 4].as_ptr())));
                    for (q, v) in block.iter().enumerate() {
                        let at = (p + q) * NR + half * MR;
                        v.store(panel[at..at + MR].as_mut_ptr());
                    }
                }
            }
            for p in k4..kc {
                for (r, run) in src.iter().enumerate() {
                    panel[p * NR + half * MR + r] = run[p];
                }
            }
        }
    }
}

/// The deepest panel `pack_transposed` builds: the GEMM's largest k-block.
const KC_RUN: usize = KC_MAX;
const _: () = assert!(NR == 2 * MR, "the transposed panel moves two 4-row halves");

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(v: f32) -> [u8; 2] {
        half::f16::from_f32(v).to_le_bytes()
    }

    /// Two rows of 64 in Q4_1 (four blocks) with distinct d, m and every nibble.
    fn q4_1() -> (Vec<u8>, Vec<f32>) {
        let mut data = Vec::new();
        let mut want = Vec::new();
        for b in 0..4 {
            let (d, m) = (0.125 * (b + 1) as f32, -0.5 + b as f32);
            data.extend(f16_bytes(d));
            data.extend(f16_bytes(m));
            let qs: Vec<u8> = (0..16u8).map(|j| ((j * 5 + b as u8) % 16) | (((j * 3 + 7) % 16) << 4)).collect();
            let mut vals = [0.0f32; 32];
            for j in 0..16 {
                vals[j] = (qs[j] & 15) as f32 * d + m;
                vals[j + 16] = (qs[j] >> 4) as f32 * d + m;
            }
            data.extend(&qs);
            want.extend(vals);
        }
        (data, want)
    }

    #[test]
    fn halves_convert_exactly_all_65536() {
        for h in 0..=u16::MAX {
            let (got, want) = (f16_to_f32(h), half::f16::from_bits(h).to_f32());
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{h:#06x}: {got} vs {want}");
        }
    }

    #[test]
    fn block_runs_match_value_by_value_from_any_start() {
        let (data, want) = q4_1();
        let w = QWeight { format: QFormat::Q4_1, data: &data, rows: 2, cols: 64 };
        w.check();
        for start in [0, 1, 15, 16, 31, 32, 33, 63, 64, 100] {
            for len in [0, 1, 2, 17, 31, 32, 33, 64, 65] {
                if start + len > 128 {
                    continue;
                }
                let mut out = vec![f32::NAN; len];
                w.dequantize_run(start, &mut out);
                let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                let exp: Vec<u32> = want[start..start + len].iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, exp, "start {start}, len {len}");
            }
        }
    }

    #[test]
    fn q8_0_and_q4_0_decode_as_ggml_does() {
        let mut q8 = f16_bytes(0.03125).to_vec();
        q8.extend((0..32).map(|j| (j as i8 * 7 - 100) as u8));
        let w = QWeight { format: QFormat::Q8_0, data: &q8, rows: 1, cols: 32 };
        let mut out = [0.0f32; 32];
        w.dequantize_run(0, &mut out);
        for (j, v) in out.iter().enumerate() {
            assert_eq!(*v, (j as i8 * 7 - 100) as f32 * 0.03125, "q8_0 element {j}");
        }
        let mut q4 = f16_bytes(1.5).to_vec();
        q4.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let w = QWeight { format: QFormat::Q4_0, data: &q4, rows: 1, cols: 32 };
        w.dequantize_run(0, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 1.5);
            assert_eq!(out[j + 16], (7.0 - j as f32) * 1.5);
        }
    }
}
