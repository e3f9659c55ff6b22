//! The compute kernels: the only module with SIMD and `unsafe`.
//!
//! `gemm` covers the three layouts training needs through strided views:
//! forward `Y = X·Wᵀ (+b, ReLU)`, input gradient `dX = dY·W`, weight gradient `dW = dYᵀ·X`.
//! `elementwise` has the vector loops around them (ReLU backward, bias gradient, Adam).

mod dot;
mod elementwise;
mod gemm;
mod lane;
mod peak;

/// The forward `y = x·wᵀ (+ bias, ReLU)`, `w` row-major `n×k` (PyTorch's Linear layout), as tiles of dot
/// products; the `_offset` form skips what an input value `c` (layer 1's blank pixels) would add.
pub use dot::{gemm_xwt as linear_forward, gemm_xwt_offset as linear_forward_offset};
pub use elementwise::{adam_update, all_finite, all_finite_in, bias_grad, relu, relu_backward, AdamStep, AdamTensor};
pub use gemm::{gemm, weight_grad_offset, Epilogue, Strided, MR, NR};
pub use lane::FUSED_MUL_ADD;
pub use peak::simd_peak_flops;

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
