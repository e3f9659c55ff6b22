//! Files a person can download and load again: safetensors weights (the base model and PEFT
//! adapters) and PEFT's `adapter_config.json`. Bytes in, checked values out; nothing here trains.

pub mod adapter_config;
pub mod adapter_file;
mod header;
pub mod model_file;
pub mod tensors;

pub use adapter_config::{from_peft, parse_adapter_config, peft_alpha, AdapterConfig};
pub use adapter_file::{export_adapter, import_adapter, AdapterFiles, ADAPTER_FILE, CONFIG_FILE};
pub use model_file::{export_model, import_model, MODEL_FILE};
pub use tensors::{expect_tensors, read_safetensors, write_safetensors, Tensor};
