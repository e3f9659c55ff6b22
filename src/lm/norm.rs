//! RMSNorm as HF's `LlamaRMSNorm` computes it in f32: `y = w · (x · rsqrt(mean(x²) + ε))`.

use crate::kernels::{par_for, par_map, Chunks};

/// Rows per parallel task; fixed, so that the weight gradient's partial sums, and with them its
/// rounding, do not depend on the thread count.
const ROWS: usize = 64;

/// `y = rmsnorm(x) · w` over rows of `w.len()`; `rstd` (one per row) keeps `rsqrt(mean(x²) + ε)`.
pub fn forward(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    let h = w.len();
    let (ys, rs) = (Chunks::new(y, h * ROWS), Chunks::new(rstd, ROWS));
    par_for(ys.count(), &|c| {
        let (y, r) = (ys.take(c), rs.take(c));
        let x = &x[c * h * ROWS..][..y.len()];
        for ((y, x), r) in y.chunks_exact_mut(h).zip(x.chunks_exact(h)).zip(r) {
            let ms = x.iter().map(|v| v * v).sum::<f32>() / h as f32;
            *r = 1.0 / (ms + eps).sqrt();
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = w * (x * *r);
            }
        }
    });
}

/// Given `dy` at the output: `dx += ∂L/∂x` and, when asked, `dw = ∂L/∂w` (overwritten, or added to
/// it when its flag says so).
/// With x̂ = x·r: dw = Σ_rows dy ⊙ x̂, and dx = r · (g − x̂ · mean(g ⊙ x̂)) where g = dy ⊙ w.
pub fn backward(x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], dw: Option<(&mut [f32], bool)>) {
    let h = w.len();
    let dxs = Chunks::new(dx, h * ROWS);
    par_for(dxs.count(), &|c| {
        let dx = dxs.take(c);
        let (x, dy) = (&x[c * h * ROWS..][..dx.len()], &dy[c * h * ROWS..][..dx.len()]);
        for (((dx, x), dy), &r) in
            dx.chunks_exact_mut(h).zip(x.chunks_exact(h)).zip(dy.chunks_exact(h)).zip(&rstd[c * ROWS..])
        {
            let dot = x.iter().zip(dy).zip(w).map(|((&x, &dy), &w)| dy * w * (x * r)).sum::<f32>() / h as f32;
            for (((dx, &x), &dy), &w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
                *dx += r * (dy * w - x * r * dot);
            }
        }
    });
    if let Some((dw, add)) = dw {
        let partials = par_map(x.len().div_ceil(h * ROWS), &|c| {
            let mut acc = vec![0.0f32; h];
            let rows = (x.len() / h - c * ROWS).min(ROWS);
            let (x, dy) = (&x[c * h * ROWS..][..rows * h], &dy[c * h * ROWS..][..rows * h]);
            for ((x, dy), &r) in x.chunks_exact(h).zip(dy.chunks_exact(h)).zip(&rstd[c * ROWS..]) {
                for ((a, &x), &dy) in acc.iter_mut().zip(x).zip(dy) {
                    *a += dy * (x * r);
                }
            }
            acc
        });
        if !add {
            dw.fill(0.0);
        }
        for p in &partials {
            dw.iter_mut().zip(p).for_each(|(d, v)| *d += v);
        }
    }
}
