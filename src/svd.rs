//! Low-rank approximation by SVD (panel 1, and the article's adapter init).
//!
//! W = U·S·Vᵀ; keeping the r largest singular values gives W_r = A·B with
//! A = U_r·√S_r (out × r, the article's A = PEFT `lora_B`) and B = √S_r·V_rᵀ (r × in, the article's
//! B = PEFT `lora_A`). Splitting √S between the two factors keeps them on the same scale, which is
//! what the article does and what makes them a sensible starting point for training.
//!
//! The decomposition runs in f64 (nalgebra) so that the f32 results we hand out are as accurate as
//! f32 can hold, and its output is normalised (descending order, fixed signs) so that nothing we
//! return depends on nalgebra's internals.

use nalgebra::DMatrix;

use crate::{LabError, Result};

/// A rank-r approximation of a rows × cols matrix, all matrices row-major f32.
#[derive(Clone, Debug, PartialEq)]
pub struct LowRank {
    /// All min(rows, cols) singular values, descending (not only the kept ones: the panel plots them).
    pub singular_values: Vec<f32>,
    /// rows × rank: U_r·√S_r (article's A, PEFT's `lora_B`).
    pub a: Vec<f32>,
    /// rank × cols: √S_r·V_rᵀ (article's B, PEFT's `lora_A`).
    pub b: Vec<f32>,
    /// rows × cols: W_r = A·B.
    pub approx: Vec<f32>,
    /// ‖W − W_r‖_F, measured on the difference itself (not derived from the singular values), so it
    /// doubles as a check of Eckart–Young against [`tail_error`].
    pub error: f32,
    pub rank: usize,
    pub rows: usize,
    pub cols: usize,
}

/// The best rank-`rank` approximation of `w` (rows × cols, row-major), rank in 1..=min(rows, cols).
pub fn low_rank(w: &[f32], rows: usize, cols: usize, rank: usize) -> Result<LowRank> {
    let m = to_matrix(w, rows, cols)?;
    let k = rows.min(cols);
    if rank < 1 || rank > k {
        return Err(LabError::setting(
            "rank",
            format!("{rank} is outside the allowed range 1 to {k} (= min(rows, cols) for a {rows}×{cols} matrix)"),
        ));
    }
    let (sv, u, v_t) = decompose(m.clone())?;

    // A = U_r·√S_r (rows × r), B = √S_r·V_rᵀ (r × cols), in f64 until the end.
    let mut a64 = DMatrix::<f64>::zeros(rows, rank);
    let mut b64 = DMatrix::<f64>::zeros(rank, cols);
    for i in 0..rank {
        let s = sv[i].sqrt();
        for r in 0..rows {
            a64[(r, i)] = u[(r, i)] * s;
        }
        for c in 0..cols {
            b64[(i, c)] = v_t[(i, c)] * s;
        }
    }
    let approx64 = &a64 * &b64;
    let error = (&m - &approx64).norm(); // Frobenius norm of the difference

    Ok(LowRank {
        singular_values: sv.iter().map(|&s| s as f32).collect(),
        a: row_major(&a64),
        b: row_major(&b64),
        approx: row_major(&approx64),
        error: error as f32,
        rank,
        rows,
        cols,
    })
}

/// All min(rows, cols) singular values of `w` (rows × cols, row-major), descending.
pub fn singular_values(w: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
    let m = to_matrix(w, rows, cols)?;
    let svd = m.try_svd_unordered(false, false, f64::EPSILON, MAX_ITERATIONS).ok_or_else(no_convergence)?;
    let mut sv: Vec<f64> = svd.singular_values.iter().copied().collect();
    sv.sort_by(|x, y| y.total_cmp(x));
    Ok(sv.into_iter().map(|s| s as f32).collect())
}

/// ‖W − W_r‖_F predicted by Eckart–Young from the singular values: √(Σ of the dropped σ²).
/// `sv` is descending; a rank at or past its length drops nothing.
pub fn tail_error(sv: &[f32], rank: usize) -> f32 {
    let tail: f64 = sv.iter().skip(rank).map(|&s| (s as f64) * (s as f64)).sum();
    tail.sqrt() as f32
}

/// Generous: the implicit-shift QR converges in a few sweeps per singular value; this only turns a
/// pathological input into an error instead of a hung worker.
const MAX_ITERATIONS: usize = 1_000_000;

fn no_convergence() -> LabError {
    LabError::setting("matrix", "the SVD did not converge")
}

/// Checks the shape and the values, then copies into an f64 nalgebra matrix.
fn to_matrix(w: &[f32], rows: usize, cols: usize) -> Result<DMatrix<f64>> {
    if rows == 0 || cols == 0 {
        return Err(LabError::setting("matrix", format!("a {rows}×{cols} matrix has no entries")));
    }
    let n = rows.checked_mul(cols).ok_or_else(|| LabError::setting("matrix", format!("{rows}×{cols} is too large")))?;
    if w.len() != n {
        return Err(LabError::setting("matrix", format!("has {} values, a {rows}×{cols} matrix needs {n}", w.len())));
    }
    if let Some(i) = w.iter().position(|x| !x.is_finite()) {
        return Err(LabError::setting(
            "matrix",
            format!("entry ({}, {}) is {}; every entry must be finite", i / cols, i % cols, w[i]),
        ));
    }
    Ok(DMatrix::from_fn(rows, cols, |r, c| w[r * cols + c] as f64))
}

/// Thin SVD with singular values descending and each pair's sign fixed: the largest-magnitude
/// entry of every U column is made positive (first one on ties), flipping the matching Vᵀ row so
/// U·S·Vᵀ is unchanged. Returns (σ, U rows × k, Vᵀ k × cols).
fn decompose(m: DMatrix<f64>) -> Result<(Vec<f64>, DMatrix<f64>, DMatrix<f64>)> {
    let (rows, cols) = m.shape();
    let svd = m.try_svd_unordered(true, true, f64::EPSILON, MAX_ITERATIONS).ok_or_else(no_convergence)?;
    let (u, v_t) = match (svd.u, svd.v_t) {
        (Some(u), Some(v_t)) => (u, v_t),
        _ => return Err(no_convergence()),
    };
    let k = svd.singular_values.len();

    // Sort the (σ, u, v) triplets, not only the values.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));

    let mut sv = Vec::with_capacity(k);
    let mut u_sorted = DMatrix::<f64>::zeros(rows, k);
    let mut v_t_sorted = DMatrix::<f64>::zeros(k, cols);
    for (dst, &src) in order.iter().enumerate() {
        sv.push(svd.singular_values[src]);
        let col = u.column(src);
        let mut pivot = 0;
        for r in 1..rows {
            if col[r].abs() > col[pivot].abs() {
                pivot = r;
            }
        }
        let sign = if col[pivot] < 0.0 { -1.0 } else { 1.0 };
        for r in 0..rows {
            u_sorted[(r, dst)] = sign * u[(r, src)];
        }
        for c in 0..cols {
            v_t_sorted[(dst, c)] = sign * v_t[(src, c)];
        }
    }
    Ok((sv, u_sorted, v_t_sorted))
}

/// nalgebra stores column-major; everything we hand out is row-major.
fn row_major(m: &DMatrix<f64>) -> Vec<f32> {
    let (rows, cols) = m.shape();
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            out.push(m[(r, c)] as f32);
        }
    }
    out
}
