//! What `./build.sh bench` measures inside the module: GEMMs at fixed shapes (f32, and with the weight
//! in 4-bit NF4) and the register-only SIMD loop that bounds them. The caller (the worker, through `web.rs`) times each call.

use crate::error::{LabError, Result};
use crate::kernels;
use crate::quant::{ggml, GgmlType, GgmlWeight, QuantizedWeight};

/// (rows, in, out) of the GEMMs measured: the MLP's layer 1 at batch 64, and the language model's
/// Linears at 32 sequences of 64 tokens (q/k/v/o, gate/up, down, lm_head) and at 3 (`_b3`).
pub fn gemm_shape(shape: &str) -> Result<(usize, usize, usize)> {
    Ok(match shape {
        "mlp_layer1" => (64, 784, 512),
        "lm_attn" => (2048, 128, 128),
        "lm_up" => (2048, 128, 352),
        "lm_down" => (2048, 352, 128),
        "lm_head" => (2048, 128, 264),
        // The same at 3 sequences per batch (the adapter presets' batch).
        "lm_attn_b3" => (192, 128, 128),
        "lm_qkv_b3" => (192, 128, 384),
        "lm_up_b3" => (192, 128, 352),
        "lm_down_b3" => (192, 352, 128),
        "lm_head_b3" => (192, 128, 264),
        // SmolLM2's decoding (one row): gate/up (Q4_1 in its GGUF) and the tied output layer (Q8_0).
        "smol_up_m1" => (1, 576, 1536),
        "smol_kv_m1" => (1, 576, 192),
        "smol_head_m1" => (1, 576, 49152),
        other => return Err(LabError::setting("GEMM shape", format!("unknown shape \"{other}\""))),
    })
}

/// `reps` GEMMs of `shape` (see `gemm_shape`) in one layout (`forward`, `forward_dot`, `input_grad`,
/// `weight_grad`, and with the weight in 4-bit NF4 — double-quantised, as QLoRA holds it —
/// `forward_nf4`, `input_grad_nf4`; with the weight in ggml's Q4_1 or Q8_0 blocks, the exact forward
/// `forward_q4_1` / `forward_q8_0` and the one with 8-bit activations `forward_q4_1_int8` /
/// `forward_q8_0_int8`). Returns the FLOPs done.
///
/// The operands of the last shape are kept between calls, so that a call times its GEMMs, not the
/// making of its inputs (nor the quantisation of the 4-bit weight).
pub fn gemm(shape: &str, layout: &str, reps: u32) -> Result<f64> {
    let (m, k, n) = gemm_shape(shape)?;
    let mut operands = match OPERANDS.take() {
        Some(o) if o.shape == shape => o,
        _ => Operands::new(shape, m, k, n)?,
    };
    let flops = kernels::on_pool(|| run_gemm(&mut operands, layout, reps, (m, k, n)));
    OPERANDS.set(Some(operands));
    flops
}

/// One shape's inputs, its weight in f32 and in 4 bits, and an output buffer.
struct Operands {
    shape: String,
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
    q: QuantizedWeight,
    /// The weight in a ggml block type, made when a layout first asks for it.
    ggml: Option<GgmlWeight>,
    out: Vec<f32>,
}

impl Operands {
    fn new(shape: &str, m: usize, k: usize, n: usize) -> Result<Self> {
        let w: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.01).collect();
        Ok(Self {
            shape: shape.to_string(),
            x: (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect(),
            dy: (0..m * n).map(|i| (i % 5) as f32 * 0.01).collect(),
            q: QuantizedWeight::quantize(&w, n, k, true)?,
            ggml: None,
            w,
            out: vec![0.0f32; (m * n).max(m * k).max(n * k)],
        })
    }
}

thread_local! {
    static OPERANDS: std::cell::Cell<Option<Operands>> = const { std::cell::Cell::new(None) };
}

fn run_gemm(o: &mut Operands, layout: &str, reps: u32, (m, k, n): (usize, usize, usize)) -> Result<f64> {
    let ty = match layout {
        "forward_q4_1" | "forward_q4_1_int8" => Some(GgmlType::Q4_1),
        "forward_q8_0" | "forward_q8_0_int8" => Some(GgmlType::Q8_0),
        _ => None,
    };
    if let Some(ty) = ty.filter(|&t| o.ggml.as_ref().map(|g| g.ty()) != Some(t)) {
        let blocks = ggml::quantize(ty, &o.w)?;
        o.ggml = Some(GgmlWeight::new(ty, n, k, blocks).map_err(|e| LabError::setting("GEMM layout", e))?);
    }
    let (x, w, dy, out) = (&o.x, &o.w, &o.dy, &mut o.out);
    let nf4 = o.q.kernel_view();
    for _ in 0..reps {
        match layout {
            "forward_q4_1" | "forward_q8_0" => {
                let g = o.ggml.as_ref().expect("made above").kernel_view();
                kernels::quant_linear_forward(x, g, None, &mut out[..m * n], m, false)
            }
            "forward_q4_1_int8" | "forward_q8_0_int8" => {
                let g = o.ggml.as_ref().expect("made above").int8_view().expect("finite scales");
                kernels::quant_linear_forward_int8(x, g, None, &mut out[..m * n], m, false)
            }
            "forward_nf4" => kernels::quant_linear_forward(x, nf4, None, &mut out[..m * n], m, false),
            "input_grad_nf4" => kernels::quant_linear_input_grad(dy, nf4, &mut out[..m * k], m, false),
            "forward" => kernels::linear_forward(x, w, None, &mut out[..m * n], m, k, n, false),
            "forward_dot" => kernels::gemm_xwt(x, w, None, &mut out[..m * n], m, k, n, false),
            "input_grad" => kernels::linear_input_grad(dy, w, &mut out[..m * k], m, k, n),
            "weight_grad" => {
                kernels::linear_weight_grad(dy, x, &mut out[..n * k], m, k, n, false);
            }
            other => return Err(LabError::setting("GEMM layout", format!("unknown layout \"{other}\""))),
        }
    }
    Ok(2.0 * (m * k * n) as f64 * reps as f64)
}

/// The register-only multiply-add loop on the calling thread → (flops, checksum).
pub fn simd_peak(iters: u32) -> (f64, f32) {
    kernels::simd_peak_flops(iters)
}

/// The same loop on every thread of the pool at once → (flops of all threads, checksum): the machine's
/// SIMD limit for the thread count, which bounds what 2 threads can gain over 1.
pub fn simd_peak_all_threads(iters: u32) -> (f64, f32) {
    let runs = rayon::broadcast(|_| kernels::simd_peak_flops(iters));
    (runs.iter().map(|r| r.0).sum(), runs.iter().map(|r| r.1).sum())
}
