//! Files a person can download and load again: safetensors weights (the base models, in f32 or with
//! 4-bit NF4 Linears in bitsandbytes' layout, and PEFT adapters), PEFT's `adapter_config.json` and the
//! language model's `config.json` (with its `quantization_config` for a 4-bit base), and GGUF files
//! (`gguf/`: llama.cpp's format, the pretrained model's, metadata and tensors in ggml's block types).
//! Bytes in, checked values out; nothing here trains.
//!
//! File names, as `save_pretrained` writes them: [`MODEL_FILE`] (`model.safetensors`, the weights of
//! either base model), [`LM_CONFIG_FILE`] (`config.json`, the language model's), [`ADAPTER_FILE`] and
//! [`CONFIG_FILE`] (`adapter_config.json`).

pub mod adapter_config;
pub mod adapter_file;
pub mod gguf;
pub mod gguf_llama;
pub mod gguf_lora;
mod header;
pub mod hf_pretrained;
pub mod lm_config;
pub mod lm_file;
pub mod model_file;
pub mod nf4_file;
pub mod quant_config;
pub mod tensors;

pub use adapter_config::{from_peft, parse_adapter_config, peft_alpha, AdapterConfig};
pub use adapter_file::{
    adapter_data, export_adapter, export_adapter_with_data, import_adapter, AdapterFiles, ADAPTER_FILE, CONFIG_FILE,
};
pub use gguf::{read_gguf, write_gguf, Gguf, GgufArray, GgufTensorData, GgufTensorInfo, GgufType, GgufValue};
pub use gguf_llama::{
    gguf_adds_bos, gguf_chat_template, gguf_llama, gguf_llama_config, gguf_llama_shared, gguf_tokenizer,
};
pub use gguf_lora::{export_gguf_lora, gguf_base_tensor, gguf_lora_to_peft, llama_cpp_alpha, GGUF_LORA_MODULES};
pub use hf_pretrained::{hf_pretrained, HfFolder};
pub use lm_config::{parse_lm_config, write_lm_config, LM_CONFIG_FILE};
pub use lm_file::{export_lm, import_lm, lm_tensors};
pub use model_file::{export_model, import_model, MODEL_FILE};
pub use nf4_file::{nf4_keys, quant_state_json, read_nf4_safetensors, write_nf4_safetensors, Nf4Tensors};
pub use quant_config::{parse_quantization_config, parse_quantization_config_json, quantization_config};
pub use tensors::{
    expect_tensors, read_safetensors, read_tensors, write_safetensors, write_tensors, AnyTensor, Data, Tensor, Values,
};
