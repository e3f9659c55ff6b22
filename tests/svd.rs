#![cfg(not(target_arch = "wasm32"))]
//! Low-rank approximation: the article's numbers, Eckart–Young, and the input checks.

use lora_lab::svd::{low_rank, singular_values, tail_error};
use lora_lab::LabError;

/// The article's W (printed to 4 decimals, which is what we start from).
const W: [f32; 16] = [
    0.0918, 0.4794, 0.8106, 0.0151, //
    0.0153, 0.6036, 0.2318, 0.8633, //
    0.9859, 0.1975, 0.0830, 0.4253, //
    0.9149, 0.4799, 0.5348, 0.2695,
];

/// The article's printed rank-2 approximation.
const W2: [f32; 16] = [
    0.0374, 0.5079, 0.4906, 0.3878, //
    0.0747, 0.5884, 0.5673, 0.4529, //
    1.0059, 0.2161, 0.1760, 0.2814, //
    0.8896, 0.4589, 0.4149, 0.4510,
];

fn max_diff(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// (rows × k)·(k × cols), row-major.
fn matmul(a: &[f32], b: &[f32], rows: usize, k: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = (0..k).map(|i| a[r * k + i] * b[i * cols + c]).sum();
        }
    }
    out
}

/// Deterministic values in [-1, 1) without a dependency (splitmix64).
fn pseudo_random(n: usize, mut seed: u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn setting_reason(e: LabError, expected_name: &str) -> String {
    match e {
        LabError::BadSetting { name, reason } => {
            assert_eq!(name, expected_name);
            reason
        }
        other => panic!("expected a BadSetting error, got {other:?}"),
    }
}

#[test]
fn article_rank_2_matches_the_printed_result() {
    let lr = low_rank(&W, 4, 4, 2).unwrap();
    assert!(max_diff(&lr.approx, &W2) < 1e-4, "approx {:?}", lr.approx);
    assert_eq!((lr.rank, lr.rows, lr.cols), (2, 4, 4));
    assert_eq!(lr.a.len(), 4 * 2);
    assert_eq!(lr.b.len(), 2 * 4);
}

#[test]
fn full_rank_gives_w_back() {
    let lr = low_rank(&W, 4, 4, 4).unwrap();
    assert!(max_diff(&lr.approx, &W) < 1e-5);
    assert!(lr.error < 1e-5);
}

#[test]
fn singular_values_are_descending_and_non_negative() {
    let sv = singular_values(&W, 4, 4).unwrap();
    assert_eq!(sv.len(), 4);
    assert!(sv.windows(2).all(|p| p[0] >= p[1]));
    assert!(sv.iter().all(|&s| s >= 0.0));
    assert_eq!(low_rank(&W, 4, 4, 1).unwrap().singular_values, sv);
    // Σσ² = ‖W‖²_F.
    let frob2: f32 = W.iter().map(|x| x * x).sum();
    let sum2: f32 = sv.iter().map(|s| s * s).sum();
    assert!((frob2 - sum2).abs() < 1e-5);
}

#[test]
fn error_is_the_tail_of_the_singular_values_at_every_rank() {
    for rank in 1..=4 {
        let lr = low_rank(&W, 4, 4, rank).unwrap();
        let predicted = tail_error(&lr.singular_values, rank);
        assert!((lr.error - predicted).abs() < 1e-5, "rank {rank}: {} vs {predicted}", lr.error);
    }
    assert_eq!(tail_error(&[3.0, 4.0], 0), 5.0);
    assert_eq!(tail_error(&[3.0, 4.0], 2), 0.0);
}

#[test]
fn a_times_b_is_the_approximation() {
    for rank in 1..=4 {
        let lr = low_rank(&W, 4, 4, rank).unwrap();
        let ab = matmul(&lr.a, &lr.b, 4, rank, 4);
        assert!(max_diff(&ab, &lr.approx) < 1e-6, "rank {rank}");
    }
}

#[test]
fn factors_split_the_singular_values_evenly() {
    // Column i of A and row i of B both have norm √σᵢ (U, V orthonormal).
    let lr = low_rank(&W, 4, 4, 3).unwrap();
    for i in 0..3 {
        let a_norm2: f32 = (0..4).map(|r| lr.a[r * 3 + i].powi(2)).sum();
        let b_norm2: f32 = (0..4).map(|c| lr.b[i * 4 + c].powi(2)).sum();
        assert!((a_norm2 - lr.singular_values[i]).abs() < 1e-5);
        assert!((b_norm2 - lr.singular_values[i]).abs() < 1e-5);
    }
}

#[test]
fn signs_are_fixed_and_results_repeat() {
    let lr = low_rank(&W, 4, 4, 4).unwrap();
    for i in 0..4 {
        let col: Vec<f32> = (0..4).map(|r| lr.a[r * 4 + i]).collect();
        let biggest = col.iter().copied().fold(0.0f32, |m, x| if x.abs() > m.abs() { x } else { m });
        assert!(biggest > 0.0, "column {i} of A: {col:?}");
    }
    assert_eq!(low_rank(&W, 4, 4, 4).unwrap(), lr);
}

#[test]
fn non_square_matrix_every_rank() {
    let (rows, cols) = (10, 256);
    let w = pseudo_random(rows * cols, 7);
    let sv = singular_values(&w, rows, cols).unwrap();
    assert_eq!(sv.len(), 10);
    let mut last = f32::INFINITY;
    for rank in 1..=10 {
        let lr = low_rank(&w, rows, cols, rank).unwrap();
        assert_eq!((lr.a.len(), lr.b.len(), lr.approx.len()), (rows * rank, rank * cols, rows * cols));
        assert!(lr.error < last, "rank {rank}: error {} did not decrease from {last}", lr.error);
        assert!((lr.error - tail_error(&sv, rank)).abs() < 1e-4);
        last = lr.error;
    }
    assert!(last < 1e-4);
    // Tall as well as wide.
    let wt: Vec<f32> = (0..cols * rows).map(|i| w[(i % rows) * cols + i / rows]).collect();
    let tall = low_rank(&wt, cols, rows, 3).unwrap();
    assert!((tall.error - tail_error(&sv, 3)).abs() < 1e-4);
}

#[test]
fn rank_outside_the_allowed_range_is_rejected() {
    for rank in [0, 5] {
        let reason = setting_reason(low_rank(&W, 4, 4, rank).unwrap_err(), "rank");
        assert!(reason.contains("1 to 4"), "{reason}");
    }
}

#[test]
fn non_finite_and_misshapen_input_is_rejected() {
    let mut w = W;
    w[6] = f32::NAN;
    let reason = setting_reason(low_rank(&w, 4, 4, 2).unwrap_err(), "matrix");
    assert!(reason.contains("(1, 2)") && reason.contains("NaN"), "{reason}");
    w[6] = f32::INFINITY;
    assert!(singular_values(&w, 4, 4).is_err());
    let reason = setting_reason(low_rank(&W, 4, 5, 2).unwrap_err(), "matrix");
    assert!(reason.contains("16") && reason.contains("20"), "{reason}");
    assert!(low_rank(&[], 0, 4, 1).is_err());
}
