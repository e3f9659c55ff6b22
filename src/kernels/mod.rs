//! The compute kernels: the only module with SIMD and `unsafe`.
//!
//! `gemm` covers the three layouts training needs through strided views:
//! forward `Y = X·Wᵀ (+b, ReLU)`, input gradient `dX = dY·W`, weight gradient `dW = dYᵀ·X`.
//! `elementwise` has the vector loops around them (ReLU backward, bias gradient, Adam), `activation`
//! the exponential and what is built on it (softmax rows, log-sum-exp, the SiLU gate), `qweight` a
//! frozen weight in its quantised blocks (NF4, ggml's types) as the GEMM's B operand (the forward and
//! the input gradient), `nf4` the 4-bit NF4 codes.

mod activation;
mod dot;
mod elementwise;
mod gemm;
mod int8;
mod lane;
mod nf4;
mod peak;
mod pool;
mod qweight;

/// The forward `y = x·wᵀ (+ bias, ReLU)`, `w` row-major `n×k` (PyTorch's Linear layout), as tiles of dot
/// products; the `_offset` form skips what an input value `c` (layer 1's blank pixels) would add.
pub use activation::{
    exp, max as row_max, scale, silu_gate, silu_gate_backward, softmax_scaled, softmax_scaled_backward, sum_exp,
};
pub use dot::{gemm_xwt, gemm_xwt_offset as linear_forward_offset};
pub use elementwise::{adam_update, all_finite, all_finite_in, bias_grad, relu, relu_backward, AdamStep, AdamTensor};
pub use gemm::{gemm, weight_grad_offset, Epilogue, Strided, MR, NR};
pub use lane::FUSED_MUL_ADD;
pub use int8::Int8Weight;
pub use nf4::Nf4Weight;
pub use peak::simd_peak_flops;
pub use pool::{on_pool, par_for, par_map, Chunks};
pub use qweight::{QFormat, QWeight};

/// From this many rows on, the forward packs X and W for the outer-product tiles of `gemm`: each
/// packed value is then reused often enough to pay for its copy, and those tiles load a third as
/// much per multiply-add as the dot-product tiles (below it, `dot::gemm_xwt` needs no packing).
pub const PACKED_FORWARD_MIN_ROWS: usize = 256;

/// `y (m×n) = x (m×k) · wᵀ (+ bias, ReLU)`, `w` row-major `n×k` (PyTorch's Linear layout).
#[allow(clippy::too_many_arguments)]
pub fn linear_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    relu: bool,
) {
    if m < PACKED_FORWARD_MIN_ROWS {
        return gemm_xwt(x, w, bias, y, m, k, n, relu);
    }
    gemm(
        Strided::row_major(&x[..m * k], m, k),
        Strided::transposed(&w[..n * k], k, n),
        y,
        n,
        Epilogue { accumulate: false, bias, relu },
    );
}

/// `dx (m×k) = dy (m×n) · w (n×k)`.
pub fn linear_input_grad(dy: &[f32], w: &[f32], dx: &mut [f32], m: usize, k: usize, n: usize) {
    gemm(Strided::row_major(dy, m, n), Strided::row_major(w, n, k), dx, k, Epilogue::default());
}

/// `dw (n×k) = dyᵀ (n×m) · x (m×k)`; with `accumulate` it is added to `dw`. Returns whether all of
/// `dw` is finite.
pub fn linear_weight_grad(
    dy: &[f32],
    x: &[f32],
    dw: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) -> bool {
    gemm(
        Strided::transposed(dy, n, m),
        Strided::row_major(x, m, k),
        dw,
        k,
        Epilogue { accumulate, ..Epilogue::default() },
    )
}

/// `y (m×n) = x (m×k) · wᵀ (+ bias, ReLU)` with `w` a quantised weight (`n×k`: NF4 or a ggml block
/// type), dequantised inside the kernels a few rows (dot-product tiles, below
/// `PACKED_FORWARD_MIN_ROWS` rows) or a panel (packed tiles) at a time: bit-identical to
/// `linear_forward` on the dequantised matrix, never holding it.
pub fn quant_linear_forward(x: &[f32], w: QWeight, bias: Option<&[f32]>, y: &mut [f32], m: usize, relu: bool) {
    w.check();
    let (k, n) = (w.cols, w.rows);
    if m < PACKED_FORWARD_MIN_ROWS {
        return dot::gemm_xwt_rows(x, dot::WRows::Quant(w), bias, y, m, k, n, relu);
    }
    let b = gemm::BSource::Quant(qweight::QuantB { w, transposed: true });
    gemm::gemm_from(Strided::row_major(&x[..m * k], m, k), b, y, n, Epilogue { accumulate: false, bias, relu });
}

/// `quant_linear_forward` as llama.cpp computes it (`int8`): each row of x rounded to 8 bits per block
/// of 32, integer dot products with the weight's codes. Faster than the exact forward by several times
/// and close to it, not bit-identical.
pub fn quant_linear_forward_int8(x: &[f32], w: Int8Weight, bias: Option<&[f32]>, y: &mut [f32], m: usize, relu: bool) {
    int8::forward(x, w, bias, y, m, relu)
}

/// Row `r` of a quantised weight (`out.len()` = its columns), dequantised.
pub fn dequantize_row(w: QWeight, r: usize, out: &mut [f32]) {
    w.check();
    assert!(r < w.rows && out.len() == w.cols, "dequantize_row: row {r} of {} × {}", w.rows, w.cols);
    w.dequantize_run(r * w.cols, out);
}

/// `dx (m×k) = dy (m×n) · w` (added to `dx` when `accumulate`) with `w` a quantised weight (`n×k`).
pub fn quant_linear_input_grad(dy: &[f32], w: QWeight, dx: &mut [f32], m: usize, accumulate: bool) {
    w.check();
    let (k, n) = (w.cols, w.rows);
    let b = gemm::BSource::Quant(qweight::QuantB { w, transposed: false });
    gemm::gemm_from(Strided::row_major(&dy[..m * n], m, n), b, dx, k, Epilogue { accumulate, ..Epilogue::default() });
}
