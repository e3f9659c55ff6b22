//! The 4-bit NF4 weight as the kernels read it (QLoRA's frozen base): the forward `X·Wᵀ` and the
//! input gradient `dY·W` read the packed codes and dequantise them where they are used — as the
//! GEMM's B operand, one `kc × NR` panel of at most 256 × 8 values at a time, in L1 beside the
//! micro-kernel; for the dot-product tiles (`dot::WRows`), 12 W rows at a time — so no f32 copy of W
//! is ever made. Each value is `NF4[code] · scale`, the very product `dequantize_4bit` computes, and
//! the tiles sum in their usual order: the result is bit-identical to the f32 kernels on the
//! dequantised matrix, for any thread count.
//!
//! Two codes share a byte (the first in the high nibble), and blocks of 64 start at even flat
//! indices, so a byte never straddles two blocks: per block the 16 code values are scaled once, and
//! each byte is then two lookups into that table. W's rows are dequantised as long runs — all the
//! column tiles of a task at once for `dY·W`, a panel column's whole depth for `X·Wᵀ` — so the
//! per-block table is paid for by 64 values.

use super::gemm::{KC_MAX, MR, NR};
use super::lane::F32x4;
use crate::quant::{BLOCK, NF4};

/// A 4-bit weight W (`rows × cols`, row-major) as the kernels read it: element (r, c) has flat index
/// `i = r·cols + c`; its code is nibble i of `packed` (byte i/2, the high nibble for even i) and its
/// value is `NF4[code] · scales[i / 64]` (the block's absmax, already dequantised).
#[derive(Clone, Copy, Debug)]
pub struct Nf4Weight<'a> {
    pub packed: &'a [u8],
    pub scales: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

impl Nf4Weight<'_> {
    /// Panics unless the parts fit `rows × cols` (callers build it from a checked `QuantizedWeight`).
    pub(super) fn check(&self) {
        let n = self.rows * self.cols;
        assert!(self.packed.len() >= n.div_ceil(2), "nf4: packed codes too short for {} × {}", self.rows, self.cols);
        assert!(self.scales.len() >= n.div_ceil(BLOCK), "nf4: scales too short for {} × {}", self.rows, self.cols);
    }
}

/// Dequantises flat elements `start .. start + out.len()` of `w` into `out`. Per block, the 16 code
/// values are scaled once (`NF4[c] · scale`, the product `dequantize_4bit` computes), then every value
/// is a lookup into that table: two per byte.
pub(super) fn dequantize_run(w: Nf4Weight, start: usize, out: &mut [f32]) {
    let end = start + out.len();
    let mut i = start;
    let mut o = 0;
    let mut table = [0.0f32; 16];
    while i < end {
        let block_end = ((i / BLOCK + 1) * BLOCK).min(end);
        let s = F32x4::splat(w.scales[i / BLOCK]);
        for (t, v) in table.chunks_exact_mut(4).zip(NF4.chunks_exact(4)) {
            // SAFETY: both chunks hold 4 floats.
            unsafe { F32x4::load(v.as_ptr()).mul(s).store(t.as_mut_ptr()) };
        }
        if i % 2 == 1 {
            out[o] = table[(w.packed[i / 2] & 0x0f) as usize];
            i += 1;
            o += 1;
        }
        let pairs = (block_end - i) / 2;
        let bytes = &w.packed[i / 2..i / 2 + pairs];
        for (d, &b) in out[o..o + 2 * pairs].chunks_exact_mut(2).zip(bytes) {
            d[0] = table[(b >> 4) as usize];
            d[1] = table[(b & 0x0f) as usize];
        }
        i += 2 * pairs;
        o += 2 * pairs;
        if i < block_end {
            // A last high nibble: only where the run ends at an odd index.
            out[o] = table[(w.packed[i / 2] >> 4) as usize];
            i += 1;
            o += 1;
        }
    }
}

/// B of `gemm` made of a 4-bit weight: W itself (`dY·W`, B is rows × cols) or its transpose
/// (`X·Wᵀ`, B is cols × rows).
#[derive(Clone, Copy, Debug)]
pub(super) struct Nf4B<'a> {
    pub w: Nf4Weight<'a>,
    pub transposed: bool,
}

impl Nf4B<'_> {
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
        // B = W: row k0 + p of every panel is W's row k0 + p, columns jt0·NR.. (contiguous codes),
        // dequantised as one run and dealt out to the tiles.
        let w = self.w;
        let (j0, j1) = (jt0 * NR, (jt1 * NR).min(w.cols));
        let mut row = vec![0.0f32; (jt1 - jt0) * NR];
        for p in 0..kc {
            dequantize_run(w, (k0 + p) * w.cols + j0, &mut row[..j1 - j0]);
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
                dequantize_run(w, (j0 + j) * w.cols + k0, &mut run[..kc]);
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

    #[test]
    fn runs_match_value_by_value_from_any_start() {
        let codes: Vec<u8> = (0..300u32).map(|i| (i * 7 % 16) as u8).collect();
        let packed = crate::quant::pack(&codes);
        let scales: Vec<f32> = (0..5).map(|b| 0.5 + b as f32).collect();
        let w = Nf4Weight { packed: &packed, scales: &scales, rows: 3, cols: 100 };
        for start in [0, 1, 2, 63, 64, 65, 127, 130] {
            for len in [0, 1, 2, 3, 5, 64, 65, 129] {
                if start + len > 300 {
                    continue;
                }
                let mut out = vec![f32::NAN; len];
                dequantize_run(w, start, &mut out);
                for (k, &v) in out.iter().enumerate() {
                    let i = start + k;
                    assert_eq!(
                        v.to_bits(),
                        (NF4[codes[i] as usize] * scales[i / 64]).to_bits(),
                        "start {start}, len {len}, k {k}"
                    );
                }
            }
        }
    }
}
