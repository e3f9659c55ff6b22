//! [`QuantizedWeight`]: one Linear's weight (out × in, row-major) in NF4, as bitsandbytes'
//! `quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=double_quant)` makes it, and
//! its dequantisation (`dequantize_4bit`): value = `NF4[code] · absmax[block]` in f32.
//!
//! Layout, for the kernels that will read it directly: element (r, c) is flat index `i = r·cols + c`;
//! its code is nibble `i` of [`QuantizedWeight::packed`] (byte i/2, high nibble for even i) and its
//! scale is [`QuantizedWeight::scales`]`[i / 64]`, the block's absmax already dequantised. Blocks run
//! over the flat index, so they cross row ends when `cols` is not a multiple of 64.


use super::blockwise::quantize_blockwise;
use super::double_quant::{DoubleQuant, NESTED_BLOCK};
use super::nf4::{code_at, midpoints, pack, BLOCK, NF4};
use crate::{LabError, Result};

/// How a weight's block absmax are stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Absmax {
    /// One f32 per block (`compress_statistics=False`).
    Plain(Vec<f32>),
    /// Double quantisation: 8-bit codes and their nested state.
    Double(DoubleQuant),
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeight {
    rows: usize,
    cols: usize,
    /// ⌈rows·cols / 2⌉ bytes, two codes each, the first in the high nibble.
    packed: Vec<u8>,
    absmax: Absmax,
    /// The absmax of each block as dequantisation uses it (for `Double`, decompressed once here).
    scales: Vec<f32>,
}

impl QuantizedWeight {
    /// Quantises `weight` (rows × cols, row-major), refusing non-finite values: bitsandbytes would give
    /// the whole block a NaN absmax and garbage codes.
    pub fn quantize(weight: &[f32], rows: usize, cols: usize, double_quant: bool) -> Result<Self> {
        if rows == 0 || cols == 0 || rows.checked_mul(cols) != Some(weight.len()) {
            return Err(LabError::setting(
                "weight",
                format!("{} values do not make a {rows} × {cols} weight with at least one value", weight.len()),
            ));
        }
        if let Some(i) = weight.iter().position(|v| !v.is_finite()) {
            return Err(LabError::state(format!(
                "cannot quantise a weight holding a non-finite value ({}) at row {}, column {}",
                weight[i],
                i / cols,
                i % cols
            )));
        }
        let (codes, absmax) = quantize_blockwise(weight, BLOCK, &midpoints());
        let absmax = if double_quant { Absmax::Double(DoubleQuant::compress(&absmax)?) } else { Absmax::Plain(absmax) };
        Self::from_parts(rows, cols, pack(&codes), absmax).map_err(LabError::state)
    }

    /// A weight from its stored parts (a file's tensors), checked: sizes that fit rows × cols, finite
    /// values, non-negative plain absmax. The reason names the part when they do not.
    pub fn from_parts(rows: usize, cols: usize, packed: Vec<u8>, absmax: Absmax) -> std::result::Result<Self, String> {
        let n = rows.checked_mul(cols).filter(|&n| n > 0).ok_or_else(|| format!("a {rows} × {cols} weight"))?;
        if packed.len() != n.div_ceil(2) {
            return Err(format!(
                "weight: {} packed bytes for {n} values (two per byte: {})",
                packed.len(),
                n.div_ceil(2)
            ));
        }
        let blocks = n.div_ceil(BLOCK);
        let scales = match &absmax {
            Absmax::Plain(a) => {
                if a.len() != blocks {
                    return Err(format!("absmax: {} values for {blocks} blocks of {BLOCK}", a.len()));
                }
                if let Some(i) = a.iter().position(|v| !v.is_finite() || *v < 0.0) {
                    return Err(format!("absmax: value {i} is {}, not a finite non-negative number", a[i]));
                }
                a.clone()
            }
            Absmax::Double(d) => {
                d.check(blocks)?;
                let s = d.absmax();
                if let Some(i) = s.iter().position(|v| !v.is_finite()) {
                    return Err(format!("absmax: block {i} dequantises to {}", s[i]));
                }
                s
            }
        };
        Ok(Self { rows, cols, packed, absmax, scales })
    }

    /// out_features (the weight's rows).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// in_features (the weight's columns).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// rows · cols.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    /// Never: a weight has at least one value.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Blocks of 64 (the last may be short).
    pub fn blocks(&self) -> usize {
        self.len().div_ceil(BLOCK)
    }
    pub fn double_quant(&self) -> bool {
        matches!(self.absmax, Absmax::Double(_))
    }
    /// The packed codes, row-major, two per byte, high nibble first.
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }
    /// The absmax as stored.
    pub fn absmax(&self) -> &Absmax {
        &self.absmax
    }
    /// The dequantised absmax of every block: the scale of element i is `scales()[i / 64]`.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    /// The 16 values the codes index (`weight.quant_map`).
    pub fn quant_map(&self) -> &'static [f32; 16] {
        &NF4
    }
    /// The weight as the kernels read it (`kernels::quant_linear_forward` and `_input_grad`).
    pub fn kernel_view(&self) -> crate::kernels::QWeight<'_> {
        crate::kernels::Nf4Weight { packed: &self.packed, scales: &self.scales, rows: self.rows, cols: self.cols }.into()
    }

    /// The code of element (r, c).
    pub fn code(&self, r: usize, c: usize) -> u8 {
        code_at(&self.packed, r * self.cols + c)
    }

    /// Bytes of the tensors bitsandbytes stores for it (packed codes, absmax, quant_map, and with double
    /// quantisation nested_absmax, nested_quant_map and the offset), without the JSON quant state.
    pub fn byte_size(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        let absmax = match &self.absmax {
            Absmax::Plain(a) => a.len() * f,
            Absmax::Double(d) => d.codes.len() + (d.nested_absmax.len() + d.nested_map.len() + 1) * f,
        };
        self.packed.len() + absmax + NF4.len() * f
    }

    /// Bytes of the same weight in f32.
    pub fn f32_byte_size(&self) -> usize {
        self.len() * std::mem::size_of::<f32>()
    }

    /// The whole weight dequantised (rows × cols, row-major), as `dequantize_4bit` gives it.
    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.len()).map(|i| NF4[code_at(&self.packed, i) as usize] * self.scales[i / BLOCK]).collect()
    }

    /// How many 256-block nested absmax a double-quantised weight of this size has.
    pub fn nested_blocks(&self) -> usize {
        self.blocks().div_ceil(NESTED_BLOCK)
    }
}
