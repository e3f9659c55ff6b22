//! The 4-bit kernels (QLoRA's frozen base): `X·Wᵀ` and `dY·W` computed from the packed NF4 codes give,
//! bit for bit, what the same f32 kernels give on the dequantised matrix — on awkward shapes (columns that
//! are not a multiple of 8 or 64, so blocks cross row ends; odd element counts; one row), with and
//! without double quantisation, bias, ReLU and accumulation — for any thread count; and they agree
//! with a naive f64 product. A Linear quantised and dequantised again is the f32 Linear bit for bit.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::kernels::{self, Epilogue, QWeight, Strided};
use lora_lab::nn::Linear;
use lora_lab::quant::QuantizedWeight;

mod common;
use common::data;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn view(q: &QuantizedWeight) -> QWeight<'_> {
    q.kernel_view()
}

fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(f)
}

/// (m, k, n): m rows of input, W n × k. Includes the MLP's and the language model's shapes.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 3, 5),
    (2, 70, 13),
    (7, 13, 5),
    (5, 257, 9),
    (3, 300, 17),
    (13, 33, 31),
    (64, 784, 512),
    (64, 256, 10),
    (192, 128, 128),
    (300, 352, 128),
    (1, 128, 352),
    (256, 129, 65),
];

#[test]
fn forward_is_the_gemm_on_the_dequantised_weight_bit_for_bit() {
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        for double_quant in [false, true] {
            let x = data(m * k, 100 + s as u64);
            let q = QuantizedWeight::quantize(&data(n * k, 200 + s as u64), n, k, double_quant).unwrap();
            let deq = q.dequantize();
            let bias = data(n, 300 + s as u64);
            for (bias, relu) in [(None, false), (Some(&bias[..]), true)] {
                // The f32 forward on the dequantised weight: dot-product tiles below 256 rows, packed from there.
                let mut want = vec![f32::NAN; m * n];
                kernels::linear_forward(&x, &deq, bias, &mut want, m, k, n, relu);
                let mut got = vec![f32::NAN; m * n];
                kernels::quant_linear_forward(&x, view(&q), bias, &mut got, m, relu);
                assert_eq!(bits(&got), bits(&want), "forward {m}×{k}×{n}, double quant {double_quant}, relu {relu}");
            }
        }
    }
}

#[test]
fn input_gradient_is_the_gemm_on_the_dequantised_weight_bit_for_bit() {
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        for double_quant in [false, true] {
            let dy = data(m * n, 400 + s as u64);
            let q = QuantizedWeight::quantize(&data(n * k, 500 + s as u64), n, k, double_quant).unwrap();
            let deq = q.dequantize();
            for accumulate in [false, true] {
                let start = data(m * k, 600 + s as u64);
                let mut want = start.clone();
                kernels::gemm(
                    Strided::row_major(&dy, m, n),
                    Strided::row_major(&deq, n, k),
                    &mut want,
                    k,
                    Epilogue { accumulate, ..Epilogue::default() },
                );
                let mut got = start.clone();
                kernels::quant_linear_input_grad(&dy, view(&q), &mut got, m, accumulate);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "input grad {m}×{k}×{n}, double quant {double_quant}, acc {accumulate}"
                );
            }
        }
    }
}

#[test]
fn both_agree_with_a_naive_product_of_the_dequantised_values() {
    let (m, k, n) = (9, 71, 13);
    let x = data(m * k, 1);
    let q = QuantizedWeight::quantize(&data(n * k, 2), n, k, true).unwrap();
    let mut y = vec![0.0; m * n];
    kernels::quant_linear_forward(&x, view(&q), None, &mut y, m, false);
    let mut dx = vec![0.0; m * k];
    kernels::quant_linear_input_grad(&y, view(&q), &mut dx, m, false);
    let w = q.dequantize();
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k).map(|p| x[i * k + p] as f64 * w[j * k + p] as f64).sum();
            assert!((y[i * n + j] as f64 - want).abs() < 1e-4, "y[{i}][{j}] = {}, want {want}", y[i * n + j]);
        }
        for p in 0..k {
            let want: f64 = (0..n).map(|j| y[i * n + j] as f64 * w[j * k + p] as f64).sum();
            assert!((dx[i * k + p] as f64 - want).abs() < 1e-4, "dx[{i}][{p}] = {}, want {want}", dx[i * k + p]);
        }
    }
}

#[test]
fn results_are_bit_identical_for_any_thread_count() {
    let (m, k, n) = (256, 784, 512);
    let x = data(m * k, 7);
    let q = QuantizedWeight::quantize(&data(n * k, 8), n, k, true).unwrap();
    let run = || {
        let mut y = vec![0.0f32; m * n];
        kernels::quant_linear_forward(&x, view(&q), None, &mut y, m, true);
        let mut dx = vec![0.0f32; m * k];
        kernels::quant_linear_input_grad(&y, view(&q), &mut dx, m, false);
        (bits(&y), bits(&dx))
    };
    let one = with_threads(1, run);
    for t in [2, 3, 4] {
        assert!(with_threads(t, run) == one, "{t} threads differ from 1 thread");
    }
}

#[test]
fn a_quantised_linear_computes_with_its_codes_and_dequantises_back_exactly() {
    let (b, k, n) = (6, 40, 11);
    let w = data(n * k, 9);
    let mut lin = Linear::from_parts(k, n, w.clone(), data(n, 10));
    let f32_lin = lin.clone();
    let x = data(b * k, 11);
    let mut before = vec![0.0; b * n];
    lin.forward(&x, &mut before, b, true);

    lin.quantize(false).unwrap();
    assert!(lin.is_quantized());
    let q = QuantizedWeight::quantize(&w, n, k, false).unwrap();
    assert_eq!(lin.dense_weight().as_ref(), &q.dequantize()[..], "dense_weight is the dequantised weight");
    let mut got = vec![0.0; b * n];
    lin.forward(&x, &mut got, b, true);
    let mut want = vec![0.0; b * n];
    kernels::quant_linear_forward(&x, view(&q), Some(&lin.bias), &mut want, b, true);
    assert_eq!(bits(&got), bits(&want));
    assert_ne!(bits(&got), bits(&before), "the 4-bit weights give other outputs than the f32 ones");
    let (dy, mut dx) = (data(b * n, 12), vec![0.0; b * k]);
    lin.input_grad(&dy, &mut dx, b, false);
    let mut want_dx = vec![0.0; b * k];
    kernels::quant_linear_input_grad(&dy, view(&q), &mut want_dx, b, false);
    assert_eq!(bits(&dx), bits(&want_dx));

    lin.dequantize();
    assert_eq!(lin, f32_lin, "dequantize brings back the f32 weights kept aside");
    let mut after = vec![0.0; b * n];
    lin.forward(&x, &mut after, b, true);
    assert_eq!(bits(&after), bits(&before));
}

#[test]
fn merging_into_a_quantised_linear_quantises_the_sum_again() {
    let (k, n) = (70, 3);
    let mut lin = Linear::without_bias(k, n, data(n * k, 13));
    lin.quantize(true).unwrap();
    let dw = data(n * k, 14);
    let sum: Vec<f32> = lin.dense_weight().iter().zip(&dw).map(|(w, d)| w + d).collect();
    lin.add_to_weight(&dw).unwrap();
    let want = QuantizedWeight::quantize(&sum, n, k, true).unwrap();
    assert_eq!(lin.nf4.as_deref(), Some(&want));
    assert_eq!(lin.weight, sum);
}

#[test]
fn a_non_finite_weight_is_refused_and_nothing_changes() {
    let mut w = data(12, 15);
    w[5] = f32::NAN;
    let mut lin = Linear::without_bias(4, 3, w);
    let before = lin.clone();
    let err = lin.quantize(false).unwrap_err().to_string();
    assert!(err.contains("non-finite"), "{err}");
    assert_eq!(bits(&lin.weight), bits(&before.weight));
    assert!(!lin.is_quantized());
}
