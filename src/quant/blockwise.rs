//! bitsandbytes' blockwise quantisation kernel (`backends/default/ops.py`: `quantize_4bit` and
//! `quantize_blockwise` share it; CPU runs it for the 4-bit codes), and its inverse:
//!
//! ```python
//! A_com = A_flat[:full].reshape(blocks, blocksize)
//! absmax = A_com.abs().max(dim=-1)[0]
//! scaled = torch.clamp(A_com * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)
//! if rem:
//!     am = A_flat[full:].abs().max().clamp(min=1e-38)
//!     absmax = torch.cat([absmax, am.unsqueeze(0)])
//!     scaled = torch.cat([scaled, torch.clamp(A_flat[full:] / am, -1, 1)])
//! q = torch.bucketize(scaled, bounds, out_int32=True)
//! ```
//!
//! So a full block multiplies by the f32 reciprocal of its absmax (floored at 1e-38 for the division
//! only: an all-zero block stores absmax 0 and codes of 0.0), while the short last block divides by its
//! absmax, which is stored floored. The two roundings differ for some values, and so can the code.
//! `bucketize` (right=False) gives the number of bounds strictly below the value: a value exactly on a
//! bound takes the lower code. Inputs must be finite (the callers check).

/// The floor bitsandbytes puts under an absmax before dividing by it (`clamp(min=1e-38)`, as f32).
pub const ABSMAX_FLOOR: f32 = 1e-38;

fn max_abs(xs: &[f32]) -> f32 {
    xs.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// `torch.bucketize(x, bounds)` for sorted `bounds`: how many are strictly below `x`.
#[inline]
fn bucketize(x: f32, bounds: &[f32]) -> u8 {
    bounds.partition_point(|&b| b < x) as u8
}

/// Codes (one per value, indices into the code table whose midpoints are `bounds`) and the absmax of
/// each block of `block` values, the last block possibly short.
pub fn quantize_blockwise(x: &[f32], block: usize, bounds: &[f32]) -> (Vec<u8>, Vec<f32>) {
    assert!(block > 0 && bounds.len() < 256);
    let full = x.len() - x.len() % block;
    let mut codes = Vec::with_capacity(x.len());
    let mut absmax = Vec::with_capacity(x.len().div_ceil(block));
    for chunk in x[..full].chunks_exact(block) {
        let am = max_abs(chunk);
        let recip = 1.0 / am.max(ABSMAX_FLOOR);
        codes.extend(chunk.iter().map(|&v| bucketize((v * recip).clamp(-1.0, 1.0), bounds)));
        absmax.push(am);
    }
    if full < x.len() {
        let tail = &x[full..];
        let am = max_abs(tail).max(ABSMAX_FLOOR);
        codes.extend(tail.iter().map(|&v| bucketize((v / am).clamp(-1.0, 1.0), bounds)));
        absmax.push(am);
    }
    (codes, absmax)
}

/// `code[q] · absmax[block]` for every value (`_dequantize_blockwise_compute`, f32).
pub fn dequantize_blockwise(codes: &[u8], absmax: &[f32], code: &[f32], block: usize) -> Vec<f32> {
    codes.iter().enumerate().map(|(i, &q)| code[q as usize] * absmax[i / block]).collect()
}
