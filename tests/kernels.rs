//! The GEMM kernels against a naive f64 reference, on awkward shapes, in all three layouts; and
//! bit-identical results for any thread count.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::kernels::{self, Epilogue, Strided};

mod common;
use common::data;

/// Naive `A·B` with A, B strided, in f64.
fn naive(a: Strided, b: Strided) -> Vec<f64> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
            }
            c[i * n + j] = s;
        }
    }
    c
}

fn assert_close(got: &[f32], want: &[f64], k: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    // Each term is below 1 in magnitude: the f32 error of a k-term sum is at most ~k·2⁻²⁴ per term.
    let tol = 1e-6 * (k.max(1) as f64) + 1e-6;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() <= tol, "{what}: element {i}: got {g}, want {w} (tol {tol})");
    }
}

const SHAPES: &[(usize, usize, usize)] =
    &[(1, 1, 1), (7, 13, 5), (64, 784, 512), (3, 300, 17), (5, 257, 9), (64, 256, 10), (13, 1, 31), (1, 513, 1)];

#[test]
fn forward_matches_naive_with_bias_and_relu() {
    for &(m, k, n) in SHAPES {
        let x = data(m * k, 1);
        let w = data(n * k, 2);
        let bias = data(n, 3);
        let mut want = naive(Strided::row_major(&x, m, k), Strided::transposed(&w, k, n));
        for (idx, v) in want.iter_mut().enumerate() {
            *v = (*v + bias[idx % n] as f64).max(0.0);
        }
        let mut y = vec![f32::NAN; m * n];
        kernels::linear_forward(&x, &w, Some(&bias), &mut y, m, k, n, true);
        assert_close(&y, &want, k, &format!("forward {m}x{k}x{n}"));
    }
}

#[test]
fn input_grad_matches_naive() {
    for &(m, k, n) in SHAPES {
        let dy = data(m * n, 4);
        let w = data(n * k, 5);
        let want = naive(Strided::row_major(&dy, m, n), Strided::row_major(&w, n, k));
        let mut dx = vec![f32::NAN; m * k];
        kernels::linear_input_grad(&dy, &w, &mut dx, m, k, n);
        assert_close(&dx, &want, n, &format!("input grad {m}x{k}x{n}"));
    }
}

#[test]
fn weight_grad_matches_naive_and_accumulates() {
    for &(m, k, n) in SHAPES {
        let dy = data(m * n, 6);
        let x = data(m * k, 7);
        let want = naive(Strided::transposed(&dy, n, m), Strided::row_major(&x, m, k));
        let mut dw = vec![f32::NAN; n * k];
        kernels::linear_weight_grad(&dy, &x, &mut dw, m, k, n, false);
        assert_close(&dw, &want, m, &format!("weight grad {m}x{k}x{n}"));
        // Accumulating the same product again doubles it.
        kernels::linear_weight_grad(&dy, &x, &mut dw, m, k, n, true);
        let doubled: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(&dw, &doubled, 2 * m, &format!("accumulated weight grad {m}x{k}x{n}"));
    }
}

#[test]
fn padded_output_stride_leaves_other_columns_alone() {
    let (m, k, n, ldc) = (6, 10, 9, 13);
    let a = data(m * k, 8);
    let b = data(k * n, 9);
    let mut c = vec![42.0f32; m * ldc];
    kernels::gemm(Strided::row_major(&a, m, k), Strided::row_major(&b, k, n), &mut c, ldc, Epilogue::default());
    let want = naive(Strided::row_major(&a, m, k), Strided::row_major(&b, k, n));
    for i in 0..m {
        assert_close(&c[i * ldc..i * ldc + n], &want[i * n..(i + 1) * n], k, "strided C");
        assert!(c[i * ldc + n..i * ldc + ldc].iter().all(|&v| v == 42.0), "row {i}: padding overwritten");
    }
}

#[test]
fn empty_inner_dimension_gives_bias_only() {
    let (m, n) = (3, 5);
    let bias = [1.0, -2.0, 3.0, -4.0, 5.0];
    let mut y = vec![f32::NAN; m * n];
    kernels::linear_forward(&[], &[], Some(&bias), &mut y, m, 0, n, true);
    for row in y.chunks(n) {
        assert_eq!(row, &[1.0, 0.0, 3.0, 0.0, 5.0]);
    }
}

#[test]
fn relu_keeps_nan_so_divergence_is_seen() {
    let x = [f32::NAN, 1.0];
    let w = [1.0, 0.0];
    let mut y = [0.0f32; 1];
    kernels::linear_forward(&x, &w, None, &mut y, 1, 2, 1, true);
    assert!(y[0].is_nan());
}

fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(f)
}

#[test]
fn results_are_bit_identical_for_any_thread_count() {
    let (m, k, n) = (64, 784, 512);
    let x = data(m * k, 10);
    let w = data(n * k, 11);
    let bias = data(n, 12);
    let run = || {
        let mut y = vec![0.0f32; m * n];
        kernels::linear_forward(&x, &w, Some(&bias), &mut y, m, k, n, true);
        let mut dx = vec![0.0f32; m * k];
        kernels::linear_input_grad(&y, &w, &mut dx, m, k, n);
        let mut dw = vec![0.0f32; n * k];
        kernels::linear_weight_grad(&y, &x, &mut dw, m, k, n, false);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        (bits(&y), bits(&dx), bits(&dw))
    };
    let one = with_threads(1, run);
    for t in [2, 3, 4] {
        assert!(with_threads(t, run) == one, "{t} threads differ from 1 thread");
    }
}

#[test]
fn all_finite_finds_any_nan_or_infinity() {
    let mut v = data(100_000, 13);
    assert!(kernels::all_finite(&v));
    assert!(kernels::all_finite(&[]));
    for (i, bad) in [(0, f32::NAN), (99_999, f32::INFINITY), (50_001, f32::NEG_INFINITY), (77_777, f32::NAN)] {
        let keep = v[i];
        v[i] = bad;
        assert!(!kernels::all_finite(&v), "{bad} at {i} not found");
        assert!(!with_threads(2, || kernels::all_finite(&v)), "{bad} at {i} not found on 2 threads");
        v[i] = keep;
    }
    assert!(kernels::all_finite(&[f32::MAX, -f32::MAX, f32::MIN_POSITIVE / 2.0]));
}

#[test]
fn weight_grad_reports_whether_its_output_is_finite() {
    // 37×130 output: full and edge tiles; k = 300: two k-blocks, so only the final store is checked.
    let (m, k, n) = (300, 130, 37);
    let dy = data(m * n, 21);
    let x = data(m * k, 22);
    let mut dw = vec![0.0f32; n * k];
    for t in [1, 2] {
        assert!(with_threads(t, || kernels::linear_weight_grad(&dy, &x, &mut dw, m, k, n, false)));
        assert!(kernels::all_finite(&dw));
    }
    // A non-finite input value, in a full tile and in the last (edge) row and column of the output.
    for (row, col, bad) in [(5, 7, f32::NAN), (m - 1, n - 1, f32::INFINITY), (120, 36, f32::NEG_INFINITY)] {
        let mut dy_bad = dy.clone();
        dy_bad[row * n + col] = bad;
        for t in [1, 2] {
            let ok = with_threads(t, || kernels::linear_weight_grad(&dy_bad, &x, &mut dw, m, k, n, false));
            assert!(!ok, "{bad} in dy[{row}][{col}] not reported on {t} threads");
            assert!(!kernels::all_finite(&dw));
        }
    }
    // Finite inputs whose products overflow.
    let big = vec![1e30f32; m * n];
    assert!(!kernels::linear_weight_grad(&big, &vec![1e30f32; m * k], &mut dw, m, k, n, false));
    // Accumulating onto an infinite value is reported too.
    dw.fill(0.0);
    dw[n * k - 1] = f32::INFINITY;
    assert!(!kernels::linear_weight_grad(&dy, &x, &mut dw, m, k, n, true));
}

/// Test input like a normalised MNIST batch: mostly exactly `c`, some other values.
fn mostly(c: f32, len: usize, seed: u64) -> Vec<f32> {
    data(len, seed).into_iter().enumerate().map(|(i, v)| if (i * 7 + seed as usize) % 10 < 8 { c } else { v }).collect()
}

#[test]
fn weight_grad_skipping_the_common_input_value_matches_naive() {
    for &(m, k, n, c) in
        &[(64, 784, 512, -1.0f32), (1, 1, 1, -1.0), (7, 13, 5, 0.5), (50, 130, 37, -1.0), (3, 9, 4, 0.0)]
    {
        let dy = data(m * n, 31);
        let mut x = mostly(c, m * k, 32);
        if m > 1 {
            x[k..2 * k].fill(c); // a sample that is all background
        }
        let want = naive(Strided::transposed(&dy, n, m), Strided::row_major(&x, m, k));
        let mut dw = vec![f32::NAN; n * k];
        assert!(kernels::weight_grad_offset(&dy, &x, c, &mut dw, m, k, n));
        // x − c is at most 2 here, and c·Σdy adds m more terms: allow twice the usual error.
        assert_close(&dw, &want, 2 * m, &format!("weight_grad_offset {m}×{k}×{n}"));
        let one = with_threads(1, || {
            let mut d = vec![0.0f32; n * k];
            kernels::weight_grad_offset(&dy, &x, c, &mut d, m, k, n);
            d
        });
        let two = with_threads(2, || {
            let mut d = vec![0.0f32; n * k];
            kernels::weight_grad_offset(&dy, &x, c, &mut d, m, k, n);
            d
        });
        assert!(one.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()), "{m}×{k}×{n}: 1 and 2 threads differ");
    }
    // Deeper than one k-block: the dense path, same contract.
    let (m, k, n) = (300, 20, 9);
    let (dy, x) = (data(m * n, 41), mostly(-1.0, m * k, 42));
    let mut dw = vec![0.0f32; n * k];
    assert!(kernels::weight_grad_offset(&dy, &x, -1.0, &mut dw, m, k, n));
    assert_close(&dw, &naive(Strided::transposed(&dy, n, m), Strided::row_major(&x, m, k)), 2 * m, "deep batch");
}

#[test]
fn weight_grad_skipping_the_common_input_value_reports_non_finite() {
    let (m, k, n) = (64, 100, 30);
    let dy = data(m * n, 51);
    let x = mostly(-1.0, m * k, 52);
    let mut dw = vec![0.0f32; n * k];
    for (what, dy_bad, x_bad) in [
        ("NaN in dy", Some((10 * n + 29, f32::NAN)), None),
        ("inf in dy where x is background", Some((n + 3, f32::INFINITY)), None),
        ("NaN in x", None, Some((63 * k + 99, f32::NAN))),
    ] {
        let (mut d, mut xx) = (dy.clone(), x.clone());
        if let Some((i, v)) = dy_bad {
            d[i] = v;
        }
        if let Some((i, v)) = x_bad {
            xx[i] = v;
        }
        for t in [1, 2] {
            assert!(
                !with_threads(t, || kernels::weight_grad_offset(&d, &xx, -1.0, &mut dw, m, k, n)),
                "{what}, {t} threads"
            );
        }
    }
}

#[test]
fn forward_skipping_the_common_input_value_matches_naive() {
    // m ≥ 16 takes the skipping path; 17 and 20 rows leave partial row tiles, n = 5 and 7 partial
    // column tiles, k = 13 a tail of 1, k = 3 no whole block at all; m = 5 is the dense path.
    for &(m, k, n, c) in
        &[(64, 784, 512, -1.0f32), (16, 13, 5, -1.0), (17, 9, 4, 0.25), (20, 3, 7, -1.0), (5, 30, 6, -1.0)]
    {
        let mut x = mostly(c, m * k, 61);
        x[..k].fill(c); // a blank sample
        let w = data(n * k, 62);
        let bias = data(n, 63);
        let mut want = naive(Strided::row_major(&x, m, k), Strided::transposed(&w, k, n));
        for (i, v) in want.iter_mut().enumerate() {
            *v = (*v + bias[i % n] as f64).max(0.0);
        }
        let run = |threads| {
            with_threads(threads, || {
                let mut y = vec![f32::NAN; m * n];
                kernels::linear_forward_offset(&x, c, &w, Some(&bias), &mut y, m, k, n, true);
                y
            })
        };
        let one = run(1);
        // Σ(x − c)·w and c·Σw each add k terms below 2 in magnitude.
        assert_close(&one, &want, 4 * k, &format!("forward_offset {m}×{k}×{n}"));
        let two = run(2);
        assert!(one.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()), "{m}×{k}×{n}: 1 and 2 threads differ");
    }
    // NaN in the input reaches the output (ReLU keeps it), so a diverging run is seen.
    let (m, k, n) = (32, 40, 6);
    let mut x = mostly(-1.0, m * k, 64);
    x[31 * k + 39] = f32::NAN;
    let mut y = vec![0.0f32; m * n];
    kernels::linear_forward_offset(&x, -1.0, &data(n * k, 65), None, &mut y, m, k, n, true);
    assert!(y[31 * n..].iter().all(|v| v.is_nan()) && y[..31 * n].iter().all(|v| v.is_finite()));
}

#[test]
fn one_row_gives_the_same_bits_as_that_row_inside_a_batch() {
    // A drawn digit is classified alone; the same image in an evaluation batch must score the same.
    let (m, k, n) = (7, 785, 19);
    let x = data(m * k, 14);
    let w = data(n * k, 15);
    let bias = data(n, 16);
    let mut batch = vec![0.0f32; m * n];
    kernels::linear_forward(&x, &w, Some(&bias), &mut batch, m, k, n, true);
    for i in 0..m {
        let mut one = vec![0.0f32; n];
        kernels::linear_forward(&x[i * k..(i + 1) * k], &w, Some(&bias), &mut one, 1, k, n, true);
        assert_eq!(one, batch[i * n..(i + 1) * n], "row {i}");
    }
}

#[test]
fn every_bench_gemm_shape_and_layout_runs() {
    for shape in ["mlp_layer1", "lm_attn", "lm_up", "lm_down", "lm_head"] {
        let (m, k, n) = lora_lab::bench::gemm_shape(shape).unwrap();
        for layout in ["forward", "forward_dot", "input_grad", "weight_grad", "forward_nf4", "input_grad_nf4"] {
            assert_eq!(lora_lab::bench::gemm(shape, layout, 1).unwrap(), 2.0 * (m * k * n) as f64, "{shape} {layout}");
        }
    }
    assert!(lora_lab::bench::gemm("lm_attn", "sideways", 1).is_err());
    assert!(lora_lab::bench::gemm("huge", "forward", 1).is_err());
}
