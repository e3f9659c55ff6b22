//! A 4-bit NF4 frozen base (QLoRA), exactly as bitsandbytes quantises it (`../shared/QLORA.md`): the
//! weight is flattened row-major and cut into blocks of 64; each block keeps its absmax and 4-bit codes
//! into the NF4 table, two per byte (first element in the high nibble); with double quantisation the
//! absmax themselves are quantised to 8 bits in blocks of 256.
//!
//! Files, one job each: `nf4.rs` (the table and the packing), `blockwise.rs` (bitsandbytes' blockwise
//! kernel, shared by the 4-bit codes and the 8-bit absmax), `double_quant.rs` (the dynamic 8-bit map and
//! the compressed absmax), `torch_sum.rs` (PyTorch's f32 sum order, which fixes the double-quant offset),
//! `weight.rs` ([`QuantizedWeight`]: one Linear's weight, quantised, and its dequantisation).
//!
//! Plain safe Rust: this is the reference the 4-bit kernels are tested against. Files are in
//! `io::nf4_file`.
//!
//! Beside NF4, `ggml.rs` holds ggml's block types as GGUF files store them ([`GgmlType`]: F32, F16,
//! BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K) with ggml's reference dequantisation and quantisation (`ggml::dequantize_run`,
//! `ggml::quantize`); `ggml_weight.rs` ([`GgmlWeight`]) holds a Linear's weight in those blocks. GGUF
//! files themselves are in `io::gguf`.

mod blockwise;
mod double_quant;
pub mod ggml;
mod ggml_weight;
mod nf4;
mod torch_sum;
mod weight;

pub use blockwise::{dequantize_blockwise, quantize_blockwise, ABSMAX_FLOOR};
pub use double_quant::{dynamic_map, DoubleQuant, NESTED_BLOCK};
pub use ggml::GgmlType;
pub use ggml_weight::{Blocks, GgmlWeight};
pub use nf4::{code_at, midpoints, pack, unpack, BLOCK, NF4, ZERO_CODE};
pub use torch_sum::{torch_mean, torch_sum};
pub use weight::{Absmax, QuantizedWeight};
