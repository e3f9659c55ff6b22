//! Browser tests (`wasm-pack test --headless --chrome -- --features threads`): the rayon pool starts in
//! the page and a parallel SIMD128 GEMM gives the exact answer; the 4-bit kernels, in SIMD128 on two
//! threads, give the f32 kernels' bits on the dequantised weight, and so do ggml's blocks (a GGUF's);
//! decoding with 8-bit activations (relaxed SIMD's integer dot products) gives the integer reference's.
#![cfg(all(target_arch = "wasm32", feature = "threads"))]

#[path = "common/int8_reference.rs"]
mod int8_reference;

use lora_lab::kernels;
use rayon::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

// The pool is global: only this one test may start it.
#[wasm_bindgen_test]
async fn rayon_pool_runs_parallel_simd_gemm_exactly() {
    wasm_bindgen_futures::JsFuture::from(lora_lab::web::init_thread_pool(2)).await.expect("initThreadPool(2)");
    assert_eq!(rayon::current_num_threads(), 2);

    // The work really spreads over both threads.
    let mut seen: Vec<usize> = (0..64)
        .into_par_iter()
        .map(|_| {
            let t0 = js_sys::Date::now();
            while js_sys::Date::now() - t0 < 2.0 {}
            rayon::current_thread_index().expect("inside the pool")
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![0, 1], "tasks ran on threads {seen:?}");

    // Small integers: every product and partial sum is exact in f32, so the answer is exact.
    let (m, k, n) = (64, 784, 512);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
    let mut y = vec![0.0f32; m * n];
    kernels::linear_forward(&x, &w, Some(&bias), &mut y, m, k, n, false);
    for i in 0..m {
        for j in 0..n {
            let want: f32 = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum::<f32>() + bias[j];
            assert_eq!(y[i * n + j], want, "y[{i}][{j}]");
        }
    }

    // The 4-bit kernels (QLoRA) on both paths (dot-product tiles at 64 rows, packed tiles at 256) and
    // the input gradient: the same bits as the f32 kernels on the dequantised weight.
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    let wf: Vec<f32> = (0..n * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
    let q = lora_lab::quant::QuantizedWeight::quantize(&wf, n, k, true).expect("finite weights");
    let deq = q.dequantize();
    let view = q.kernel_view();
    for rows in [64, 256] {
        let x: Vec<f32> = (0..rows * k).map(|i| ((i * 13) % 29) as f32 / 14.0 - 1.0).collect();
        let (mut got, mut want) = (vec![0.0f32; rows * n], vec![0.0f32; rows * n]);
        kernels::quant_linear_forward(&x, view, Some(&bias), &mut got, rows, true);
        kernels::linear_forward(&x, &deq, Some(&bias), &mut want, rows, k, n, true);
        assert_eq!(bits(&got), bits(&want), "4-bit forward at {rows} rows");
        let dy: Vec<f32> = (0..rows * n).map(|i| ((i * 11) % 23) as f32 / 11.0 - 1.0).collect();
        let (mut got, mut want) = (vec![0.0f32; rows * k], vec![0.0f32; rows * k]);
        kernels::quant_linear_input_grad(&dy, view, &mut got, rows, false);
        kernels::linear_input_grad(&dy, &deq, &mut want, rows, k, n);
        assert_eq!(bits(&got), bits(&want), "4-bit input gradient at {rows} rows");
    }

    // ggml's blocks (a GGUF's Linears), decoded by the SIMD128 lanes: one row (decoding, the fused
    // block-at-a-time dot products), 40 rows (dot-product tiles) and 256 (packed tiles), forward and input
    // gradient, give the f32 kernels' bits on the matrix quant::ggml dequantises.
    use lora_lab::quant::{ggml, GgmlType, GgmlWeight};
    let (k, n) = (512, 96);
    let wf: Vec<f32> = (0..n * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16] {
        let w = GgmlWeight::new(ty, n, k, ggml::quantize(ty, &wf).expect("quantises")).expect("fits");
        let deq = w.dequantize();
        for rows in [1, 40, 256] {
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 13) % 29) as f32 / 14.0 - 1.0).collect();
            let (mut got, mut want) = (vec![0.0f32; rows * n], vec![0.0f32; rows * n]);
            kernels::quant_linear_forward(&x, w.kernel_view(), None, &mut got, rows, false);
            kernels::linear_forward(&x, &deq, None, &mut want, rows, k, n, false);
            assert_eq!(bits(&got), bits(&want), "{ty} forward at {rows} rows");
            let dy: Vec<f32> = (0..rows * n).map(|i| ((i * 11) % 23) as f32 / 11.0 - 1.0).collect();
            let (mut got, mut want) = (vec![0.0f32; rows * k], vec![0.0f32; rows * k]);
            kernels::quant_linear_input_grad(&dy, w.kernel_view(), &mut got, rows, false);
            kernels::linear_input_grad(&dy, &deq, &mut want, rows, k, n);
            assert_eq!(bits(&got), bits(&want), "{ty} input gradient at {rows} rows");
        }
    }

    // Decoding with 8-bit activations: SmolLM2's width, a row count that leaves a short group of four,
    // one and two rows of x, on two threads.
    // Weights of order 1 and of order 1e-6 (scales that are subnormal halves); Q4_0's scales are
    // negative, Q4_1's minimums too.
    let (k, n) = (576, 70);
    let bias: Vec<f32> = (0..n).map(|j| j as f32 / 10.0).collect();
    for (ty, size) in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0].into_iter().flat_map(|t| [(t, 1.0), (t, 1e-6)]) {
        let wf: Vec<f32> = (0..n * k).map(|i| (((i * 37) % 101) as f32 / 50.0 - 1.0) * size).collect();
        let w = GgmlWeight::new(ty, n, k, ggml::quantize(ty, &wf).expect("quantises")).expect("fits");
        let w8 = w.int8_view().expect("finite scales");
        for rows in [1, 2] {
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 13) % 29) as f32 / 14.0 - 1.0).collect();
            let mut got = vec![0.0f32; rows * n];
            kernels::quant_linear_forward_int8(&x, w8, Some(&bias), &mut got, rows, false);
            let want = int8_reference::reference(ty, &w, &x, &bias, rows, false);
            assert_eq!(bits(&got), bits(&want), "{ty} ×{size} 8-bit-activation forward at {rows} rows");
        }
    }
}
