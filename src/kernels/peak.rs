//! A register-only multiply-add loop: the ceiling the GEMM micro-kernel is measured against.

use super::lane::F32x4;

/// Runs `iters` rounds of 12 independent `mul_add` chains (the same instruction the micro-kernel
/// uses) and returns the floating-point operations done; the caller times it. The returned checksum
/// keeps the optimiser from deleting the loop.
pub fn simd_peak_flops(iters: u32) -> (f64, f32) {
    let x = F32x4::splat(0.999_999);
    let y = F32x4::splat(1e-7);
    let mut acc = [F32x4::splat(1.0); 12];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = F32x4::splat(1.0 + i as f32 * 1e-3);
    }
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = F32x4::mul_add(*a, x, y);
        }
    }
    let mut sum = F32x4::splat(0.0);
    for a in acc {
        sum = sum.add(a);
    }
    let s = sum.to_array();
    (iters as f64 * 12.0 * 4.0 * 2.0, s[0] + s[1] + s[2] + s[3])
}
