//! Decoding with 8-bit activations (`kernels::quant_linear_forward_int8`, llama.cpp's arithmetic): the
//! kernel gives, bit for bit, what a naive reference written from the formats' definitions gives (x
//! rounded per block of 32 to `round(x / (max|x| / 127))`, each block's Σ code·qx in integers, then
//! `f32(Σ) · (d_w · d_x) (+ m_w · d_x · Σ qx)` summed block after block, then the bias) for every
//! format with integer codes, any row count, any thread count; it stays within the bound the
//! activations' rounding allows of the exact forward; and a NaN or an infinity in x is not hidden.
#![cfg(not(target_arch = "wasm32"))]

use half::f16;
use lora_lab::kernels;
use lora_lab::nn::Linear;
use lora_lab::quant::{ggml, GgmlType, GgmlWeight};

mod common;
use common::data;
#[path = "common/int8_reference.rs"]
mod int8_reference;
use int8_reference::reference;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(f)
}

const TYPES: [GgmlType; 3] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0];

#[test]
fn int8_forward_is_the_integer_reference_bit_for_bit() {
    // (m, k, n): one row (decoding), two, row counts that leave a short group of four, SmolLM2's widths.
    for (s, &(m, k, n)) in [(1, 64, 9), (2, 256, 33), (1, 576, 192), (3, 96, 6), (1, 1536, 64)].iter().enumerate() {
        for ty in TYPES {
            let w = GgmlWeight::new(ty, n, k, ggml::quantize(ty, &data(n * k, 10 + s as u64)).unwrap()).unwrap();
            let mut x = data(m * k, 20 + s as u64);
            // A block of zeros (scale 0) and one outlier that sets its block's scale.
            x[32..64].fill(0.0);
            x[5] = 9.0;
            let bias = data(n, 30 + s as u64);
            for relu in [false, true] {
                let want = reference(ty, &w, &x, &bias, m, relu);
                for threads in [1, 2, 3] {
                    let got = with_threads(threads, || {
                        let mut y = vec![f32::NAN; m * n];
                        kernels::quant_linear_forward_int8(&x, w.int8_view().unwrap(), Some(&bias), &mut y, m, relu);
                        y
                    });
                    assert_eq!(bits(&got), bits(&want), "{ty} {m}×{k}×{n}, relu {relu}, {threads} threads");
                }
            }
        }
    }
}

#[test]
fn int8_forward_is_within_the_rounding_bound_of_the_exact_forward() {
    let (m, k, n) = (2, 576, 100);
    for ty in TYPES {
        let w = GgmlWeight::new(ty, n, k, ggml::quantize(ty, &data(n * k, 3)).unwrap()).unwrap();
        let deq = w.dequantize();
        let x = data(m * k, 4);
        let (mut exact, mut fast) = (vec![0.0; m * n], vec![0.0; m * n]);
        kernels::quant_linear_forward(&x, w.kernel_view(), None, &mut exact, m, false);
        kernels::quant_linear_forward_int8(&x, w.int8_view().unwrap(), None, &mut fast, m, false);
        let mut worst = 0.0f32;
        for i in 0..m {
            for j in 0..n {
                // Each x moves by at most half its block's step, max|x| / 254; plus f32 rounding.
                let bound: f32 = (0..k)
                    .map(|p| {
                        let b = &x[i * k + p / 32 * 32..][..32];
                        deq[j * k + p].abs() * b.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 254.0
                    })
                    .sum::<f32>()
                    * 1.01
                    + 1e-5;
                let err = (fast[i * n + j] - exact[i * n + j]).abs();
                assert!(
                    err <= bound,
                    "{ty} y[{i}][{j}]: {} against {} (bound {bound})",
                    fast[i * n + j],
                    exact[i * n + j]
                );
                worst = worst.max(err / bound);
            }
        }
        // The bound is not loose by orders of magnitude: the errors average out, but not to nothing.
        assert!(worst > 0.005, "{ty}: the int8 forward equals the exact one ({worst})");
    }
}

#[test]
fn int8_forward_keeps_a_nan_or_infinity_in_x() {
    let (k, n) = (64, 8);
    for ty in TYPES {
        let w = GgmlWeight::new(ty, n, k, ggml::quantize(ty, &data(n * k, 5)).unwrap()).unwrap();
        for bad in [f32::NAN, f32::INFINITY] {
            let mut x = data(k, 6);
            x[40] = bad;
            let mut y = vec![0.0; n];
            kernels::quant_linear_forward_int8(&x, w.int8_view().unwrap(), None, &mut y, 1, false);
            assert!(y.iter().all(|v| v.is_nan()), "{ty} with {bad} in x: {y:?}");
        }
    }
}

#[test]
fn only_integer_codes_with_finite_scales_take_the_int8_kernels() {
    let (k, n) = (256, 4);
    let x = data(k, 8);
    // K-quants (random blocks with small finite scales: no reference quantiser here) and f16 have no
    // integer codes: `int8_view` is None and a Linear holding them computes its exact forward.
    for ty in [GgmlType::Q4_K, GgmlType::F16] {
        let bytes = ggml::quantize(ty, &data(n * k, 7)).unwrap_or_else(|_| {
            let mut b: Vec<u8> =
                data(ty.bytes_for(n * k).unwrap(), 7).iter().map(|v| (v * 127.0 + 128.0) as u8).collect();
            for block in b.chunks_exact_mut(ty.block_bytes()) {
                for a in [0, 2] {
                    block[a..a + 2].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
                }
            }
            b
        });
        let w = GgmlWeight::new(ty, n, k, bytes).unwrap();
        assert!(w.int8_view().is_none(), "{ty}");
        let l = Linear::from_held(w);
        let (mut exact, mut fast) = (vec![0.0; n], vec![0.0; n]);
        l.forward(&x, &mut exact, 1, false);
        l.forward_int8(&x, &mut fast, 1);
        assert_eq!(bits(&fast), bits(&exact), "{ty}");
    }
    // An infinite or NaN scale (d, or Q4_1's m) anywhere: the exact forward, whose result it is.
    for (ty, at) in [(GgmlType::Q4_0, 0), (GgmlType::Q4_1, 2), (GgmlType::Q8_0, 0)] {
        for bad in [f16::INFINITY, f16::NAN] {
            let mut bytes = ggml::quantize(ty, &data(n * k, 9)).unwrap();
            assert!(GgmlWeight::new(ty, n, k, bytes.clone()).unwrap().int8_view().is_some(), "{ty}");
            let third_block = 2 * ty.block_bytes();
            bytes[third_block + at..third_block + at + 2].copy_from_slice(&bad.to_le_bytes());
            let w = GgmlWeight::new(ty, n, k, bytes).unwrap();
            assert!(w.int8_view().is_none(), "{ty} with a scale {bad}");
            assert!(kernels::Int8Weight::check(w.kernel_view()).is_none());
            let l = Linear::from_held(w);
            let (mut exact, mut fast) = (vec![0.0; n], vec![0.0; n]);
            l.forward(&x, &mut exact, 1, false);
            l.forward_int8(&x, &mut fast, 1);
            assert_eq!(bits(&fast), bits(&exact), "{ty} with a scale {bad}");
            assert!(fast[0].is_nan() || fast[0].is_infinite(), "{ty}: {}", fast[0]);
        }
    }
}
