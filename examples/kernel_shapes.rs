//! GFLOP/s of the Linear kernels at the language model's shapes, natively (SSE2's 4 lanes, the same
//! blocking as SIMD128): a quick look before a browser bench. `RAYON_NUM_THREADS` sets the threads.
//!
//!     cargo run --release --example kernel_shapes [shape ...]

use std::time::Instant;

fn main() {
    let shapes: Vec<String> = std::env::args().skip(1).collect();
    let shapes = if shapes.is_empty() {
        ["lm_attn", "lm_up", "lm_down", "lm_head", "lm_attn_b3", "lm_qkv_b3", "lm_up_b3", "lm_down_b3", "lm_head_b3"]
            .map(String::from)
            .to_vec()
    } else {
        shapes
    };
    for shape in &shapes {
        let mut line = format!("{shape:>12}");
        for layout in ["forward", "forward_dot", "input_grad", "weight_grad"] {
            lora_lab::bench::gemm(shape, layout, 3).expect("shape");
            let (mut flops, t) = (0.0, Instant::now());
            while t.elapsed().as_secs_f64() < 0.3 {
                flops += lora_lab::bench::gemm(shape, layout, 5).expect("shape");
            }
            line += &format!("  {layout} {:5.1}", flops / t.elapsed().as_secs_f64() / 1e9);
        }
        println!("{line}");
    }
}
