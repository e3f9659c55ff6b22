//! ggml's tensor types, as GGUF files store them (`ggml-common.h`), and their reference
//! dequantisation and quantisation, the same f32 operations in the same order as ggml's
//! `dequantize_row_*` and `quantize_row_*_ref` (`ggml-quants.c`), so every value comes out with the
//! bits llama.cpp and Python's `gguf` package give it.
//!
//! Block layouts (little-endian; `f16` is an IEEE half, `i8` two's complement):
//!
//! | type | values | bytes | layout | value |
//! |---|---|---|---|---|
//! | F32, F16, BF16 | 1 | 4, 2, 2 | the value | as stored |
//! | Q4_0 | 32 | 18 | `d: f16, qs: [u8; 16]` | `(q − 8)·d` |
//! | Q4_1 | 32 | 20 | `d: f16, m: f16, qs: [u8; 16]` | `q·d + m` |
//! | Q8_0 | 32 | 34 | `d: f16, qs: [i8; 32]` | `q·d` |
//! | Q4_K | 256 | 144 | `d, dmin: f16, scales: [u8; 12], qs: [u8; 128]` | `(d·sc)·q − dmin·m` per 32 |
//! | Q6_K | 256 | 210 | `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16` | `d·sc·(q − 32)` per 16 |
//!
//! In the 32-value blocks, value j < 16 is the low nibble of `qs[j]` and value j ≥ 16 the high nibble of
//! `qs[j − 16]`. Q4_K packs eight 6-bit scales and mins in 12 bytes (`get_scale_min_k4`); Q6_K splits
//! each 6-bit code into 4 low bits (`ql`) and 2 high bits (`qh`).
//!
//! f16 → f32 is exact (`half`). BF16 ↔ f32 follows ggml's own `ggml_compute_bf16_to_fp32` (a plain
//! shift, so a NaN keeps its payload) and `ggml_compute_fp32_to_bf16` (round to nearest even, NaN made
//! quiet); f32 → f16 rounds to nearest even as ggml's `ggml_compute_fp32_to_fp16` does, which turns
//! every NaN into `0x7E00` with its sign. Plain safe Rust: this is the reference the kernels that read
//! these blocks are tested against.

use std::fmt;

use half::f16;

use crate::{LabError, Result};

/// Values per K-quant super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// The tensor types this lab reads and writes, by ggml's names (`enum ggml_type`).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4_K,
    Q6_K,
}

impl GgmlType {
    /// Every type, in ggml's id order.
    pub const ALL: [GgmlType; 8] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::BF16,
    ];

    /// The type with ggml id `id`, if this lab reads it.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's id (`GGML_TYPE_*`), as GGUF's tensor infos store it.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// ggml's name ("Q4_1", "F32", …).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// Values per block: 1 for the float types, 32 for Q4_0/Q4_1/Q8_0, 256 for the K-quants.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => 32,
            GgmlType::Q4_K | GgmlType::Q6_K => QK_K,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_K => 144,
            GgmlType::Q6_K => 210,
        }
    }

    /// Whether values come in blocks with shared scales (anything but F32, F16, BF16).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes that `n` values take; `None` unless `n` is a whole number of blocks (or on overflow).
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_size()) {
            return None;
        }
        (n / self.block_size()).checked_mul(self.block_bytes())
    }

    /// "F32, F16, BF16, Q4_0, …": the types this lab reads, for messages.
    pub fn list() -> String {
        use GgmlType::*;
        [F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K].map(GgmlType::name).join(", ")
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// ggml's name for any type id it has defined (`ggml_type_name`), for messages about the types this lab
/// does not read; `None` for ids ggml never used or has since removed.
pub fn ggml_type_name(id: u32) -> Option<&'static str> {
    const NAMES: [&str; 40] = [
        "F32", "F16", "Q4_0", "Q4_1", "", "", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
        "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32",
        "I64", "F64", "IQ1_M", "BF16", "", "", "", "TQ1_0", "TQ2_0", "", "", "", "MXFP4",
    ];
    NAMES.get(id as usize).copied().filter(|n| !n.is_empty())
}

// ---------- scalar conversions ----------

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// `ggml_compute_bf16_to_fp32`: the 16 bits become the high half of the f32, NaN payloads included.
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// `ggml_compute_fp32_to_bf16`: round to nearest even; a NaN is made quiet.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// `ggml_compute_fp32_to_fp16`: round to nearest even, overflow to ±inf, every NaN to `0x7E00` with its
/// sign (`half` rounds the same way; only its NaNs keep their payload, so they are mapped here).
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    if x.is_nan() {
        ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7e00
    } else {
        f16::from_f32(x).to_bits()
    }
}

// ---------- dequantisation ----------

/// Dequantises one block (`block.len() == ty.block_bytes()`) into `out` (`ty.block_size()` values).
fn dequantize_block(ty: GgmlType, block: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => out[0] = f32::from_le_bytes([block[0], block[1], block[2], block[3]]),
        GgmlType::F16 => out[0] = f16_at(block, 0),
        GgmlType::BF16 => out[0] = bf16_to_f32(u16::from_le_bytes([block[0], block[1]])),
        GgmlType::Q4_0 => {
            // dequantize_row_q4_0: x0*d with x0 = (q & 0x0F) - 8, an int made float.
            let d = f16_at(block, 0);
            let qs = &block[2..18];
            for j in 0..16 {
                out[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
                out[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
            }
        }
        GgmlType::Q4_1 => {
            // dequantize_row_q4_1: x0*d + m, a multiply then an add (never fused).
            let d = f16_at(block, 0);
            let m = f16_at(block, 2);
            let qs = &block[4..20];
            for j in 0..16 {
                out[j] = (qs[j] & 0x0f) as f32 * d + m;
                out[j + 16] = (qs[j] >> 4) as f32 * d + m;
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(block, 0);
            for (o, &q) in out.iter_mut().zip(&block[2..34]) {
                *o = q as i8 as f32 * d;
            }
        }
        GgmlType::Q4_K => dequantize_q4_k(block, out),
        GgmlType::Q6_K => dequantize_q6_k(block, out),
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) of a Q4_K block.
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `dequantize_row_q4_K` for one block: per 64 values, two sub-blocks of 32 share the nibbles of 32
/// bytes (low nibbles first); value = `d1·q − m1` with `d1 = d·sc`, `m1 = dmin·m`.
fn dequantize_q4_k(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let min = f16_at(block, 2);
    let scales = &block[4..16];
    let qs = &block[16..144];
    for (chunk, (q, y)) in qs.chunks_exact(32).zip(out.chunks_exact_mut(64)).enumerate() {
        let (sc, m) = get_scale_min_k4(2 * chunk, scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = get_scale_min_k4(2 * chunk + 1, scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// `dequantize_row_q6_K` for one block: per 128 values, 64 bytes of low nibbles and 32 of 2-bit high
/// parts; value = `d·sc·q` (left to right) with `q` in −32..32 and one i8 scale per 16 values.
fn dequantize_q6_k(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 208);
    for n in 0..2 {
        let ql = &block[64 * n..64 * n + 64];
        let qh = &block[128 + 32 * n..128 + 32 * n + 32];
        let sc = &block[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut out[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            y[l] = d * sc[is] as i8 as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}

/// Dequantises the flat values `start .. start + out.len()` of a tensor of type `ty` whose bytes begin
/// at `bytes[0]` (blocks run over the flat index, ggml's `ne[0]` innermost). Any start and any length:
/// the blocks at either end are decoded whole and cut.
///
/// # Panics
/// If `bytes` ends before the block holding the last value (callers slice tensors whose size the file
/// reader has checked).
pub fn dequantize_run(ty: GgmlType, bytes: &[u8], start: usize, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let (bs, bb) = (ty.block_size(), ty.block_bytes());
    let end = start.checked_add(out.len()).expect("value range overflows usize");
    let needed = end.div_ceil(bs).checked_mul(bb).expect("byte range overflows usize");
    assert!(
        needed <= bytes.len(),
        "{ty} values {start}..{end} need {needed} bytes of blocks, only {} given",
        bytes.len()
    );
    if bs == 1 {
        let src = &bytes[start * bb..end * bb];
        match ty {
            GgmlType::F32 => {
                for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            GgmlType::F16 => {
                for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                }
            }
            _ => {
                for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
                }
            }
        }
        return;
    }
    let mut buf = [0f32; QK_K];
    let mut i = start;
    while i < end {
        let b = i / bs;
        let block = &bytes[b * bb..(b + 1) * bb];
        let (lo, hi) = (i - b * bs, (end - b * bs).min(bs));
        let dst = &mut out[i - start..i - start + (hi - lo)];
        if lo == 0 && hi == bs {
            dequantize_block(ty, block, dst);
        } else {
            dequantize_block(ty, block, &mut buf[..bs]);
            dst.copy_from_slice(&buf[lo..hi]);
        }
        i += hi - lo;
    }
}

/// The first `n` values of a tensor of type `ty` stored in `bytes`, dequantised.
///
/// # Panics
/// As [`dequantize_run`], if `bytes` is too short for `n` values.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize_run(ty, bytes, 0, &mut out);
    out
}

// ---------- quantisation ----------

/// Quantises `values` to `ty` exactly as ggml's reference quantisers do (`quantize_row_q4_0_ref`,
/// `_q4_1_ref`, `_q8_0_ref`; F16 and BF16 by ggml's conversions; F32 as little-endian bytes). The
/// K-quants are read, never written, here; `values.len()` must be a whole number of blocks. Results for
/// non-finite values follow the same formulas but are of no use (a NaN makes its whole block garbage).
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    let Some(n_bytes) = ty.bytes_for(values.len()) else {
        return Err(LabError::setting(
            format!("{ty} quantisation"),
            format!("{} values are not a whole number of {}-value blocks", values.len(), ty.block_size()),
        ));
    };
    let mut out = Vec::with_capacity(n_bytes);
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values.iter().for_each(|&v| out.extend_from_slice(&f32_to_f16(v).to_le_bytes())),
        GgmlType::BF16 => values.iter().for_each(|&v| out.extend_from_slice(&f32_to_bf16(v).to_le_bytes())),
        GgmlType::Q4_0 => values.chunks_exact(32).for_each(|x| quantize_q4_0(x, &mut out)),
        GgmlType::Q4_1 => values.chunks_exact(32).for_each(|x| quantize_q4_1(x, &mut out)),
        GgmlType::Q8_0 => values.chunks_exact(32).for_each(|x| quantize_q8_0(x, &mut out)),
        GgmlType::Q4_K | GgmlType::Q6_K => {
            return Err(LabError::setting(
                format!("{ty} quantisation"),
                "this lab reads K-quant blocks but does not make them (use Q4_0, Q4_1 or Q8_0)",
            ))
        }
    }
    debug_assert_eq!(out.len(), n_bytes);
    Ok(out)
}

/// C's `MIN(15, (int8_t)v)` stored as `uint8_t`: truncation toward zero (saturating here, where C's
/// out-of-range conversion is undefined; only non-finite inputs get there).
#[inline]
fn nibble(v: f32) -> u8 {
    (v as i8).min(15) as u8
}

/// `quantize_row_q4_0_ref` for one block of 32.
fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
    for j in 0..16 {
        let xi0 = nibble(x[j] * id + 8.5);
        let xi1 = nibble(x[16 + j] * id + 8.5);
        out.push(xi0 | (xi1 << 4));
    }
}

/// `quantize_row_q4_1_ref` for one block of 32.
fn quantize_q4_1(x: &[f32], out: &mut Vec<u8>) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
    out.extend_from_slice(&f32_to_f16(min).to_le_bytes());
    for j in 0..16 {
        let xi0 = nibble((x[j] - min) * id + 0.5);
        let xi1 = nibble((x[16 + j] - min) * id + 0.5);
        out.push(xi0 | (xi1 << 4));
    }
}

/// `quantize_row_q8_0_ref` for one block of 32: `amax = MAX(amax, fabsf(v))` (C's macro, not
/// `f32::max`, so a NaN propagates as it does there), `q = roundf(v·id)` (half away from zero).
fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let mut amax = 0f32;
    for &v in x {
        amax = if amax > v.abs() { amax } else { v.abs() };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn ids_names_and_sizes() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(ggml_type_name(t.id()), Some(t.name()));
        }
        assert_eq!(GgmlType::from_id(13), None);
        assert_eq!(ggml_type_name(13), Some("Q5_K"));
        assert_eq!(ggml_type_name(4), None);
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q4_1.bytes_for(33), None);
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::BF16.bytes_for(3), Some(6));
        assert_eq!(GgmlType::Q8_0.bytes_for(usize::MAX - 31), None);
        assert_eq!(GgmlType::list(), "F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K");
    }

    #[test]
    fn q4_1_block_by_hand() {
        // d = 0.5, m = -1: value j < 16 is 0.5·(qs[j] & 15) − 1, j ≥ 16 uses the high nibble of qs[j−16].
        let mut b = [h(0.5), h(-1.0)].concat();
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let v = dequantize(GgmlType::Q4_1, &b, 32);
        for j in 0..16 {
            assert_eq!(v[j], 0.5 * j as f32 - 1.0);
            assert_eq!(v[j + 16], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q4_0_and_q8_0_blocks_by_hand() {
        let mut b = h(0.25).to_vec();
        b.extend((0..16u8).map(|j| j | (j << 4)));
        let v = dequantize(GgmlType::Q4_0, &b, 32);
        assert_eq!(v[0], -2.0);
        assert_eq!(v[8], 0.0);
        assert_eq!(v[31], 1.75);
        let mut b = h(-2.0).to_vec();
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let v = dequantize(GgmlType::Q8_0, &b, 32);
        assert_eq!(v[0], 32.0);
        assert_eq!(v[31], -30.0);
    }

    #[test]
    fn q4_k_scales_and_mins() {
        // Sub-blocks 0–3 keep 6 bits in scales[0..4] (mins in [4..8]); 4–7 take low 4 bits from
        // scales[8..12] and the top 2 from bits 6–7 of scales[0..8].
        let mut scales = [0u8; 12];
        let want: [(u8, u8); 8] = [(1, 2), (63, 0), (5, 33), (17, 9), (40, 3), (7, 62), (0, 1), (33, 48)];
        for (j, &(sc, m)) in want.iter().enumerate() {
            if j < 4 {
                scales[j] = sc;
                scales[j + 4] = m;
            } else {
                scales[j + 4] = (sc & 0xf) | ((m & 0xf) << 4);
                scales[j - 4] |= (sc >> 4) << 6;
                scales[j] |= (m >> 4) << 6;
            }
        }
        for (j, &w) in want.iter().enumerate() {
            assert_eq!(get_scale_min_k4(j, &scales), w, "sub-block {j}");
        }
        // d = 1, dmin = 0.5; all codes 3 in the low nibbles, 12 in the high ones.
        let mut b = [h(1.0), h(0.5)].concat();
        b.extend_from_slice(&scales);
        b.extend(std::iter::repeat_n(0xc3u8, 128));
        let v = dequantize(GgmlType::Q4_K, &b, 256);
        for (j, &(sc, m)) in want.iter().enumerate() {
            let q = if j % 2 == 0 { 3.0 } else { 12.0 };
            for &x in &v[32 * j..32 * j + 32] {
                assert_eq!(x, sc as f32 * q - 0.5 * m as f32, "sub-block {j}");
            }
        }
    }

    #[test]
    fn q6_k_codes_and_scales() {
        // Value i of 256: half n = i / 128, l = i % 32, quarter k = (i % 128) / 32; its low nibble is
        // in ql[64n + l + 32(k & 1)] (high nibble when k ≥ 2), its 2 high bits in qh[32n + l] >> 2k.
        let codes: Vec<u8> = (0..256).map(|i| ((i * 7 + 3) % 64) as u8).collect();
        let mut b = vec![0u8; 210];
        for (i, &q) in codes.iter().enumerate() {
            let (n, k, l) = (i / 128, (i % 128) / 32, i % 32);
            let ql = 64 * n + l + 32 * (k & 1);
            b[ql] |= if k >= 2 { (q & 0xf) << 4 } else { q & 0xf };
            b[128 + 32 * n + l] |= (q >> 4) << (2 * k);
        }
        for s in 0..16 {
            b[192 + s] = (s as i8 - 8) as u8;
        }
        b[208..210].copy_from_slice(&h(0.125));
        let v = dequantize(GgmlType::Q6_K, &b, 256);
        for (i, &q) in codes.iter().enumerate() {
            let sc = (i / 16) as f32 - 8.0;
            assert_eq!(v[i], 0.125 * sc * (q as f32 - 32.0), "value {i}");
        }
    }

    #[test]
    fn runs_match_whole_tensors() {
        let values: Vec<f32> = (0..96).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32] {
            let bytes = quantize(ty, &values).unwrap();
            let all = dequantize(ty, &bytes, 96);
            for (start, len) in [(0, 96), (5, 1), (31, 2), (17, 60), (64, 32), (95, 1), (40, 0)] {
                let mut part = vec![0f32; len];
                dequantize_run(ty, &bytes, start, &mut part);
                assert_eq!(part, all[start..start + len], "{ty} {start}+{len}");
            }
        }
    }

    #[test]
    fn reference_quantisers_by_hand() {
        // Q8_0: amax 127 → d = 1; v·id rounded half away from zero.
        let mut x = vec![0.0f32; 32];
        x[0] = 127.0;
        x[1] = -2.5;
        x[2] = 2.5;
        x[3] = 0.49;
        let b = quantize(GgmlType::Q8_0, &x).unwrap();
        assert_eq!(&b[..2], &h(1.0));
        assert_eq!(&b[2..6], &[127, (-3i8) as u8, 3, 0]);
        // Q4_0: the largest magnitude is −8: d = max / −8 = 1, codes q = trunc(v + 8.5) capped at 15.
        let mut x = vec![0.0f32; 32];
        x[0] = -8.0;
        x[1] = 7.9;
        x[16] = 3.4;
        let b = quantize(GgmlType::Q4_0, &x).unwrap();
        assert_eq!(&b[..2], &h(1.0));
        assert_eq!(b[2], 11 << 4); // x[0] → 0, x[16] → 11
        assert_eq!(b[3], 15 | (8 << 4)); // x[1] → 16 capped at 15, x[17] → 8

        // Q4_1: min −1, max 14 → d = 1, m = −1; all-equal blocks keep d = 0 and codes 0.
        let x: Vec<f32> = (0..32).map(|i| (i % 16) as f32 - 1.0).collect();
        let b = quantize(GgmlType::Q4_1, &x).unwrap();
        assert_eq!(&b[..4], &[h(1.0), h(-1.0)].concat()[..]);
        assert_eq!(b[4], 0);
        assert_eq!(b[19], 0xff);
        assert_eq!(dequantize(GgmlType::Q4_1, &b, 32), x);
        let b = quantize(GgmlType::Q4_1, &[0.75; 32]).unwrap();
        assert_eq!(dequantize(GgmlType::Q4_1, &b, 32), vec![0.75; 32]);
        assert!(quantize(GgmlType::Q4_K, &[0.0; 256]).is_err());
        assert!(quantize(GgmlType::Q8_0, &[0.0; 31]).is_err());
    }

    #[test]
    fn float_conversions_as_ggml() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // Ties to even: 0x3f80_8000 is halfway between 0x3f80 and 0x3f81.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert_eq!(bf16_to_f32(0x7f81).to_bits(), 0x7f81_0000, "a signalling NaN keeps its bits");
        assert_eq!(f32_to_f16(f32::from_bits(0xffc0_1234)), 0xfe00);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(1.0 + f32::EPSILON), 0x3c00);
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001);
    }
}
