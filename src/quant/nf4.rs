//! The NF4 code table and the packing of 4-bit codes, as bitsandbytes defines them
//! (`functional.get_4bit_type("nf4")`, `backends/default/ops.py` `quantize_4bit`).

/// Values per absmax block (bitsandbytes' default `blocksize`, QLoRA's).
pub const BLOCK: usize = 64;

/// The 16 NF4 values, in code order (ascending): `get_4bit_type("nf4")`, whose Python floats torch
/// turns into f32 (the f64 literals below are bitsandbytes' digits, rounded to f32 as torch does).
#[allow(clippy::excessive_precision)]
pub const NF4: [f32; 16] = [
    -1.0_f64 as f32,
    -0.6961928009986877_f64 as f32,
    -0.5250730514526367_f64 as f32,
    -0.39491748809814453_f64 as f32,
    -0.28444138169288635_f64 as f32,
    -0.18477343022823334_f64 as f32,
    -0.09105003625154495_f64 as f32,
    0.0_f64 as f32,
    0.07958029955625534_f64 as f32,
    0.16093020141124725_f64 as f32,
    0.24611230194568634_f64 as f32,
    0.33791524171829224_f64 as f32,
    0.44070982933044434_f64 as f32,
    0.5626170039176941_f64 as f32,
    0.7229568362236023_f64 as f32,
    1.0_f64 as f32,
];

/// The code of 0.0, which also pads an odd count to whole bytes.
pub const ZERO_CODE: u8 = 7;

/// The 15 bucket bounds `(code[i] + code[i+1]) / 2`, computed in f32 as bitsandbytes does
/// (`_get_4bit_quantize_bounds`; NF4 is sorted, so its `argsort` order is the identity).
pub fn midpoints() -> [f32; 15] {
    std::array::from_fn(|i| (NF4[i] + NF4[i + 1]) / 2.0)
}

/// Two codes per byte, the first in the high nibble: `(q[0::2] << 4) | q[1::2]`; an odd count is
/// padded with [`ZERO_CODE`] (bitsandbytes pads the scaled values with one 0.0 before bucketizing).
pub fn pack(codes: &[u8]) -> Vec<u8> {
    codes.chunks(2).map(|c| (c[0] << 4) | c.get(1).copied().unwrap_or(ZERO_CODE)).collect()
}

/// The code of element `i` in packed bytes.
#[inline]
pub fn code_at(packed: &[u8], i: usize) -> u8 {
    let byte = packed[i / 2];
    if i.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0f
    }
}

/// The first `n` codes of packed bytes, one per element.
pub fn unpack(packed: &[u8], n: usize) -> Vec<u8> {
    (0..n).map(|i| code_at(packed, i)).collect()
}
