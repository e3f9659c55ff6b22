//! Double quantisation (`quantize_4bit(..., compress_statistics=True)`, QLoRA's recipe): the f32
//! absmax of the 4-bit blocks are themselves quantised to 8 bits.
//!
//! ```python
//! offset = _absmax.mean()
//! qabsmax, state2 = quantize_blockwise(_absmax - offset, blocksize=256)   # code = create_dynamic_map()
//! ...
//! absmax = dequantize_blockwise(quant_state.absmax, quant_state.state2)   # code[q] * nested_absmax
//! absmax += quant_state.offset
//! ```
//!
//! The offset is torch's f32 mean (`torch_sum.rs`, its exact summation order); the centred values are
//! quantised with the same blockwise kernel as the 4-bit codes (`blockwise.rs`: the default backend's;
//! a CPU install with bitsandbytes' native library quantises them with a 65,536-entry lookup table
//! instead, `csrc/cpu_ops.cpp`, which can pick a neighbouring code), against the signed dynamic map.
//! Dequantisation is two f32 roundings per block: `code[q] · nested_absmax`, then `+ offset`.

use super::blockwise::{dequantize_blockwise, quantize_blockwise};
use super::torch_sum::torch_mean;
use crate::{LabError, Result};

/// Absmax values per nested block (bitsandbytes' fixed `blocksize=256` for the statistics).
pub const NESTED_BLOCK: usize = 256;

/// `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: for i in 0..7, the midpoints
/// of `torch.linspace(0.1, 1, 2^i + 1)` times ±10^(i−6), then 0 and 1.0, sorted: 127 negative values,
/// 0, 127 positive values and 1.0.
pub fn dynamic_map() -> [f32; 256] {
    const MAX_EXPONENT_BITS: i32 = 7;
    const POWERS_OF_TEN: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    let mut data: Vec<f32> = Vec::with_capacity(256);
    for i in 0..MAX_EXPONENT_BITS {
        let fraction_items = (1usize << i) + 1;
        let boundaries = torch_linspace(0.1, 1.0, fraction_items);
        // Python's `10 ** (i - 6)` (the f64 nearest 10^(i−6), or the int 1), rounded to f32 by torch's product.
        let scale = POWERS_OF_TEN[i as usize] as f32;
        let means: Vec<f32> = boundaries.windows(2).map(|b| (b[0] + b[1]) / 2.0).collect();
        data.extend(means.iter().map(|&m| scale * m));
        data.extend(means.iter().map(|&m| -scale * m));
    }
    data.push(0.0);
    data.push(1.0);
    data.sort_by(f32::total_cmp);
    data.try_into().expect("create_dynamic_map has 2^8 values")
}

/// `torch.linspace(start, end, steps, dtype=float32)` on CPU: `step = (end − start) / (steps − 1)`, the
/// first half `start + step·i`, the second `end − step·(steps − 1 − i)`, each one fused multiply-add
/// (how torch's compiled kernel rounds them; checked against torch 2.15 for every size used here).
fn torch_linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| if i < halfway { step.mul_add(i as f32, start) } else { (-step).mul_add((steps - 1 - i) as f32, end) })
        .collect()
}

/// The absmax of a 4-bit weight, double-quantised: 8-bit codes into `nested_map`, one f32
/// `nested_absmax` per 256 of them, and the `offset` added back after.
#[derive(Clone, Debug, PartialEq)]
pub struct DoubleQuant {
    /// One code per 4-bit block (the file's uint8 `weight.absmax`).
    pub codes: Vec<u8>,
    /// One per [`NESTED_BLOCK`] codes, the last block possibly short (stored floored at 1e-38).
    pub nested_absmax: Vec<f32>,
    /// The 256 values the codes index: [`dynamic_map`] when quantised here; a file's own when read.
    pub nested_map: Vec<f32>,
    /// `mean(absmax)`, subtracted before quantising and added back after.
    pub offset: f32,
}

impl DoubleQuant {
    /// Compresses the f32 absmax of a weight's blocks (finite, as the blockwise kernel makes them).
    pub fn compress(absmax: &[f32]) -> Result<Self> {
        let offset = torch_mean(absmax);
        if !offset.is_finite() {
            return Err(LabError::state(format!(
                "cannot double-quantise: the mean of the block absmax is {offset} (the weights are too large for f32)"
            )));
        }
        let map = dynamic_map();
        let bounds: Vec<f32> = map.windows(2).map(|c| (c[0] + c[1]) / 2.0).collect();
        let centred: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
        let (codes, nested_absmax) = quantize_blockwise(&centred, NESTED_BLOCK, &bounds);
        Ok(Self { codes, nested_absmax, nested_map: map.to_vec(), offset })
    }

    /// The dequantised absmax, one per 4-bit block: `nested_map[q] · nested_absmax + offset`.
    pub fn absmax(&self) -> Vec<f32> {
        let mut out = dequantize_blockwise(&self.codes, &self.nested_absmax, &self.nested_map, NESTED_BLOCK);
        for a in &mut out {
            *a += self.offset;
        }
        out
    }

    /// Whether the parts fit `blocks` 4-bit blocks; the reason if not.
    pub fn check(&self, blocks: usize) -> std::result::Result<(), String> {
        if self.codes.len() != blocks {
            return Err(format!("{} absmax codes for {blocks} blocks", self.codes.len()));
        }
        let nested = blocks.div_ceil(NESTED_BLOCK);
        if self.nested_absmax.len() != nested {
            return Err(format!(
                "{} nested absmax for {blocks} blocks (one per {NESTED_BLOCK}: {nested})",
                self.nested_absmax.len()
            ));
        }
        if self.nested_map.len() != 256 {
            return Err(format!("a nested map of {} values (an 8-bit map has 256)", self.nested_map.len()));
        }
        if let Some(i) = self.nested_absmax.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(format!("nested absmax {i} is {}, not a finite non-negative number", self.nested_absmax[i]));
        }
        if let Some(i) = self.nested_map.iter().position(|v| !v.is_finite()) {
            return Err(format!("nested map value {i} is {}", self.nested_map[i]));
        }
        if !self.offset.is_finite() {
            return Err(format!("the offset is {}", self.offset));
        }
        Ok(())
    }
}
