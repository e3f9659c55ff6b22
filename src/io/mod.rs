//! Files a person can download and load again: safetensors weights (the base models and PEFT
//! adapters), PEFT's `adapter_config.json` and the language model's `config.json`. Bytes in, checked
//! values out; nothing here trains.
//!
//! File names, as `save_pretrained` writes them: [`MODEL_FILE`] (`model.safetensors`, the weights of
//! either base model), [`LM_CONFIG_FILE`] (`config.json`, the language model's), [`ADAPTER_FILE`] and
//! [`CONFIG_FILE`] (`adapter_config.json`).

pub mod adapter_config;
pub mod adapter_file;
mod header;
pub mod lm_config;
pub mod lm_file;
pub mod model_file;
pub mod tensors;

pub use adapter_config::{from_peft, parse_adapter_config, peft_alpha, AdapterConfig};
pub use adapter_file::{export_adapter, import_adapter, AdapterFiles, ADAPTER_FILE, CONFIG_FILE};
pub use lm_config::{parse_lm_config, write_lm_config, LM_CONFIG_FILE};
pub use lm_file::{export_lm, import_lm, lm_tensors};
pub use model_file::{export_model, import_model, MODEL_FILE};
pub use tensors::{expect_tensors, read_safetensors, write_safetensors, Tensor};
