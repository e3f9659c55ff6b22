//! The 4-bit NF4 weight as the kernels read it (QLoRA's frozen base), one of `qweight`'s formats:
//! each value is `NF4[code] · scale`, the very product `dequantize_4bit` computes.
//!
//! Two codes share a byte (the first in the high nibble), and blocks of 64 start at even flat
//! indices, so a byte never straddles two blocks: per block the 16 code values are scaled once, and
//! each byte is then two lookups into that table. W's rows are dequantised as long runs — all the
//! column tiles of a task at once for `dY·W`, a panel column's whole depth for `X·Wᵀ` — so the
//! per-block table is paid for by 64 values.

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

impl<'a> From<Nf4Weight<'a>> for super::QWeight<'a> {
    fn from(w: Nf4Weight<'a>) -> Self {
        super::QWeight { format: super::QFormat::Nf4 { scales: w.scales }, data: w.packed, rows: w.rows, cols: w.cols }
    }
}

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
