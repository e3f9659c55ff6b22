//! The 4-bit NF4 weight as the GEMM's B operand (QLoRA's frozen base): the forward `X·Wᵀ` and the
//! input gradient `dY·W` read the packed codes and dequantise them panel by panel — one `kc × NR`
//! panel of at most 256 × 8 values at a time, in L1 beside the micro-kernel that uses it — so no f32
//! copy of W is ever made. Each value is `NF4[code] · scale`, the very product `dequantize_4bit`
//! computes, and the micro-kernel sums in its usual order: the result is bit-identical to the same
//! `gemm` on the dequantised matrix, for any thread count.
//!
//! Two codes share a byte (the first in the high nibble), and blocks of 64 start at even flat
//! indices, so a byte never straddles two blocks: a whole byte dequantises with one lookup into
//! [`PAIRS`] (both of its values) and one two-lane multiply by its block's scale.

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

/// The two values of every byte, `[NF4[b >> 4], NF4[b & 15]]`.
static PAIRS: [[f32; 2]; 256] = {
    let mut t = [[0.0f32; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = [NF4[b >> 4], NF4[b & 15]];
        b += 1;
    }
    t
};

/// Dequantises flat elements `start .. start + out.len()` of `w` into `out`.
pub(super) fn dequantize_run(w: Nf4Weight, start: usize, out: &mut [f32]) {
    let end = start + out.len();
    let mut i = start;
    let mut o = 0;
    while i < end {
        let block_end = ((i / BLOCK + 1) * BLOCK).min(end);
        let s = w.scales[i / BLOCK];
        if i % 2 == 1 {
            out[o] = NF4[(w.packed[i / 2] & 0x0f) as usize] * s;
            i += 1;
            o += 1;
        }
        let pairs = (block_end - i) / 2;
        let bytes = &w.packed[i / 2..i / 2 + pairs];
        let dst = &mut out[o..o + 2 * pairs];
        let sv = F32x4::splat(s);
        let (quads, rest) = (bytes.len() / 2 * 2, bytes.len() % 2);
        for (q, two) in bytes[..quads].chunks_exact(2).enumerate() {
            let (a, b) = (PAIRS[two[0] as usize], PAIRS[two[1] as usize]);
            let v = [a[0], a[1], b[0], b[1]];
            let d = &mut dst[4 * q..4 * q + 4];
            // SAFETY: `v` and `d` hold 4 floats each.
            unsafe { F32x4::load(v.as_ptr()).mul(sv).store(d.as_mut_ptr()) };
        }
        if rest == 1 {
            let [h, l] = PAIRS[bytes[quads] as usize];
            dst[2 * quads] = h * s;
            dst[2 * quads + 1] = l * s;
        }
        i += 2 * pairs;
        o += 2 * pairs;
        if i < block_end {
            // A last high nibble: only where the run ends at an odd index.
            out[o] = NF4[(w.packed[i / 2] >> 4) as usize] * s;
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

    /// The `kc × NR` panel of B at rows `k0..k0+kc`, columns `j0..j0+NR` (zero past B's last column),
    /// dequantised: `panel[p·NR + j] = B[k0 + p][j0 + j]`.
    pub fn pack_panel(&self, k0: usize, kc: usize, j0: usize, panel: &mut [f32]) {
        let w = self.w;
        let cols = NR.min(self.cols() - j0);
        if !self.transposed {
            // B = W: panel row p is W's row k0 + p, columns j0..j0+cols, contiguous codes.
            for (p, row) in panel[..kc * NR].chunks_exact_mut(NR).enumerate() {
                dequantize_run(w, (k0 + p) * w.cols + j0, &mut row[..cols]);
                row[cols..].fill(0.0);
            }
            return;
        }
        // B = Wᵀ: panel column j is W's row j0 + j, columns k0..k0+kc: dequantised as a run, then
        // moved into place four rows at a time.
        let mut rows = [[0.0f32; KC_RUN]; NR];
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

/// The deepest panel `pack_panel` builds: the GEMM's largest k-block.
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
