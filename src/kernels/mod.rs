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

pub use elementwise::{adam_update, all_finite, all_finite_in, bias_grad, relu, relu_backward, AdamStep, AdamTensor};
pub use gemm::{gemm, weight_grad_offset, Epilogue, Strided, MR, NR};
pub use lane::FUSED_MUL_ADD;
pub use peak::simd_peak_flops;

/// `y (m×n) = x (m×k) · wᵀ` with `w` row-major `n×k` (PyTorch's Linear layout), plus bias and ReLU.
/// Tiles of dot products: both operands are contiguous along k, so nothing is packed.
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
    dot::gemm_xwt(x, w, bias, y, m, k, n, relu);
}

/// `linear_forward` for an input whose values are mostly `c` (layer 1: blank pixels): skips the
/// 4-column blocks where a tile's rows all equal `c` (see `dot::gemm_xwt_offset`).
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_offset(
    x: &[f32],
    c: f32,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    relu: bool,
) {
    dot::gemm_xwt_offset(x, c, w, bias, y, m, k, n, relu);
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
