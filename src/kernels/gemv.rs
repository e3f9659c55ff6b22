//! `y = x·Wᵀ (+ bias, ReLU)` for one to three rows of x: a drawn digit, not a batch. Packing W for the
//! tiled GEMM would cost as much as the product itself here, so each output is a SIMD dot product over
//! a contiguous row of W.

use super::lane::F32x4;

/// `y (m×n) = x (m×k) · wᵀ` with `w` row-major `n×k`, plus bias and ReLU.
pub fn linear_forward_rows(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    relu: bool,
) {
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n, "linear_forward_rows: buffers too small");
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let mut v = dot(xr, &w[j * k..(j + 1) * k]);
            if let Some(b) = bias {
                v += b[j];
            }
            y[i * n + j] = if relu && v < 0.0 { 0.0 } else { v };
        }
    }
}

/// Σ a[p]·b[p] with four 4-lane accumulators, then the tail; a fixed order, so deterministic.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let k = a.len().min(b.len());
    let k16 = k / 16 * 16;
    let mut acc = [F32x4::splat(0.0); 4];
    for p in (0..k16).step_by(16) {
        for (q, acc) in acc.iter_mut().enumerate() {
            // SAFETY: p + 4q + 4 <= k16 <= len of both slices.
            unsafe {
                let av = F32x4::load(a.as_ptr().add(p + 4 * q));
                let bv = F32x4::load(b.as_ptr().add(p + 4 * q));
                *acc = F32x4::mul_add(av, bv, *acc);
            }
        }
    }
    let s = acc[0].add(acc[1]).add(acc[2].add(acc[3])).to_array();
    let mut total = (s[0] + s[1]) + (s[2] + s[3]);
    for p in k16..k {
        total += a[p] * b[p];
    }
    total
}
