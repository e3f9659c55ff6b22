//! The language model of part 2: Hugging Face's `LlamaForCausalLM`, tiny (../shared/LANGUAGE_MODEL.md),
//! forward and backward of every layer on our kernels. Module names and state-dict keys are HF's, so
//! files move between this lab and `transformers` as they are.
//!
//! Layers, one file each: `norm` (RMSNorm), `rope` (rotary embeddings and the head-major layout),
//! `attention` (causal, per head), `gate` (the SiLU-gated MLP's middle), `loss` (the causal-LM loss).
//! `layer` is one decoder layer's forward (training, evaluation and generation run it), `forward` and
//! `backward` run the whole model, `checkpointed` trains an adapter over a frozen base in little memory
//! (gradient checkpointing, the loss at chosen rows in chunks; `shared_prefix` runs an evaluation's
//! common first positions once), `generate` samples from it with a key/value cache;
//! `model` holds the parameters, `config` the shape.

mod attention;
mod backward;
mod checkpointed;
pub mod config;
pub mod eval;
mod forward;
mod gate;
mod generate;
mod layer;
pub mod loss;
mod model;
mod norm;
mod rope;
mod shared_prefix;

pub use backward::LmGrads;
pub use checkpointed::{SftActivations, SftBatch, KEPT_GATE_UP_BYTES, LOSS_ROWS};
pub use config::LmConfig;
pub use forward::LmActivations;
pub use generate::{pick, GenerateOptions, Sampling};
pub use model::Llama;
