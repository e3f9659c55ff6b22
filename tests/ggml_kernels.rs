//! Frozen weights held in ggml's blocks (a GGUF's Linears): `X·Wᵀ` and `dY·W` computed from the blocks give,
//! bit for bit, what the same f32 kernels give on the matrix `quant::ggml` dequantises — for every block
//! type, one row (decoding) to packed shapes, with bias and accumulation, for any thread count — and a
//! tied embedding's rows are that matrix's rows.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::kernels;
use lora_lab::quant::{ggml, GgmlType, GgmlWeight};

mod common;
use common::data;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(f)
}

/// A weight of `ty` with `n` rows of `k` values: quantised by ggml's reference where it can be, otherwise
/// (K-quants) random blocks with their f16 scales made finite.
fn weight(ty: GgmlType, n: usize, k: usize, seed: u64) -> GgmlWeight {
    let bytes = match ty {
        GgmlType::Q4_K | GgmlType::Q6_K => {
            let mut b: Vec<u8> = data(ty.bytes_for(n * k).unwrap(), seed).iter().map(|v| (v * 127.0 + 128.0) as u8).collect();
            let bb = ty.block_bytes();
            for block in b.chunks_exact_mut(bb) {
                // d (and dmin) as small finite halves: Q4_K keeps them first, Q6_K last.
                let at = if ty == GgmlType::Q4_K { [0, 2] } else { [bb - 2, bb - 2] };
                for a in at {
                    block[a..a + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                }
            }
            b
        }
        _ => ggml::quantize(ty, &data(n * k, seed)).unwrap(),
    };
    GgmlWeight::new(ty, n, k, bytes).unwrap()
}

const TYPES: [GgmlType; 7] =
    [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::F16, GgmlType::BF16];

/// (m, k, n): rows of input, W n × k (k a multiple of 256 for the K-quants).
const SHAPES: &[(usize, usize, usize)] = &[(1, 256, 9), (1, 512, 576), (2, 256, 33), (3, 256, 17), (40, 512, 70), (300, 256, 20)];

#[test]
fn forward_and_input_gradient_are_the_gemm_on_the_dequantised_weight_bit_for_bit() {
    for ty in TYPES {
        for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
            let w = weight(ty, n, k, 10 + s as u64);
            let deq = w.dequantize();
            assert!(deq.iter().all(|v| v.is_finite()), "{ty}");
            let x = data(m * k, 20 + s as u64);
            let bias = data(n, 30 + s as u64);
            let mut want = vec![f32::NAN; m * n];
            kernels::linear_forward(&x, &deq, Some(&bias), &mut want, m, k, n, false);
            let dy = data(m * n, 40 + s as u64);
            let mut want_dx = data(m * k, 50);
            let ep = kernels::Epilogue { accumulate: true, ..Default::default() };
            kernels::gemm(kernels::Strided::row_major(&dy, m, n), kernels::Strided::row_major(&deq, n, k), &mut want_dx, k, ep);
            for threads in [1, 2, 3] {
                let (got, got_dx) = with_threads(threads, || {
                    let mut got = vec![f32::NAN; m * n];
                    kernels::quant_linear_forward(&x, w.kernel_view(), Some(&bias), &mut got, m, false);
                    let mut dx = data(m * k, 50);
                    kernels::quant_linear_input_grad(&dy, w.kernel_view(), &mut dx, m, true);
                    (got, dx)
                });
                assert_eq!(bits(&got), bits(&want), "{ty} forward {m}×{k}×{n}, {threads} threads");
                assert_eq!(bits(&got_dx), bits(&want_dx), "{ty} input gradient {m}×{k}×{n}, {threads} threads");
            }
        }
    }
}

#[test]
fn rows_are_the_dequantised_rows() {
    for ty in TYPES {
        let w = weight(ty, 5, 512, 3);
        let deq = w.dequantize();
        for r in 0..5 {
            let mut row = vec![f32::NAN; 512];
            kernels::dequantize_row(w.kernel_view(), r, &mut row);
            assert_eq!(bits(&row), bits(&deq[r * 512..(r + 1) * 512]), "{ty} row {r}");
        }
    }
}

#[test]
fn permuted_rows_move_whole_rows() {
    let w = weight(GgmlType::Q4_1, 4, 64, 9);
    let p = w.permute_rows(&[2, 0, 3, 1]);
    let (a, b) = (w.dequantize(), p.dequantize());
    for (r, from) in [2, 0, 3, 1].into_iter().enumerate() {
        assert_eq!(bits(&b[r * 64..(r + 1) * 64]), bits(&a[from * 64..(from + 1) * 64]));
    }
    assert!(GgmlWeight::new(GgmlType::Q4_1, 4, 48, vec![0; 4 * 30]).unwrap_err().contains("not a whole number of Q4_1 blocks"));
    assert!(GgmlWeight::new(GgmlType::Q4_1, 4, 64, vec![0; 7]).unwrap_err().contains("do not hold a 4 × 64 Q4_1 weight"));
}
