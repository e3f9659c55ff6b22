//! The reference for decoding with 8-bit activations (`kernels::quant_linear_forward_int8`), written
//! element by element from the formats' definitions; shared by the native tests (`int8_kernels.rs`) and
//! the browser's (`browser.rs`, where the SIMD128 and relaxed-SIMD kernels run).

use half::f16;
use lora_lab::quant::{GgmlType, GgmlWeight};

/// A block's scale, minimum (Q4_1; else 0) and 32 codes as the format defines them (Q4_0: nibble − 8).
fn decode_block(ty: GgmlType, b: &[u8]) -> (f32, f32, [i32; 32]) {
    let half = |at: usize| f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
    let mut q = [0i32; 32];
    match ty {
        GgmlType::Q8_0 => {
            for (j, q) in q.iter_mut().enumerate() {
                *q = b[2 + j] as i8 as i32;
            }
            (half(0), 0.0, q)
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let (codes, m) = if ty == GgmlType::Q4_0 { (&b[2..18], 0.0) } else { (&b[4..20], half(2)) };
            let off = if ty == GgmlType::Q4_0 { 8 } else { 0 };
            for j in 0..16 {
                q[j] = (codes[j] & 15) as i32 - off;
                q[16 + j] = (codes[j] >> 4) as i32 - off;
            }
            (half(0), m, q)
        }
        _ => unreachable!(),
    }
}

/// The reference, element by element from the definitions.
pub fn reference(ty: GgmlType, w: &GgmlWeight, x: &[f32], bias: &[f32], m: usize, relu: bool) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    let bb = ty.block_bytes();
    let mut y = vec![0.0f32; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let mut acc = 0.0f32;
            for b in 0..k / 32 {
                let xb = &xr[b * 32..(b + 1) * 32];
                let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let dx = amax / 127.0;
                let qx: Vec<i32> =
                    xb.iter().map(|v| if dx == 0.0 { 0 } else { (v * (1.0 / dx)).round() as i32 }).collect();
                let (dw, mw, qw) = decode_block(ty, &w.blocks().bytes()[(j * k / 32 + b) * bb..][..bb]);
                let dot: i32 = (0..32).map(|p| qw[p] * qx[p]).sum();
                let mut t = dot as f32 * (dw * dx);
                if ty == GgmlType::Q4_1 {
                    t += mw * (dx * qx.iter().sum::<i32>() as f32);
                }
                acc += t;
            }
            let v = acc + bias[j];
            y[i * n + j] = if relu && v < 0.0 { 0.0 } else { v };
        }
    }
    y
}
