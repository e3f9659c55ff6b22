//! The pretrained model with an adapter merged in, as a Hugging Face folder's weights: what PEFT's
//! `merge_and_unload()` then `save_pretrained(folder)` writes, in F16 (SmolLM2: 269 MB instead of 538).
//! `from_pretrained(folder)` loads it without PEFT; llama.cpp's `convert_hf_to_gguf.py` converts it.

use crate::error::Result;
use crate::io::lm_file::export_lm_f16;
use crate::lab::Lab;

impl Lab {
    /// The loaded model with adapter `name` merged in (W + ΔW on each Linear it adapts), as
    /// (`config.json` text, `model.safetensors` bytes in F16), under HF's state-dict keys, a tied output
    /// layer written once as `model.embed_tokens.weight` (see `io::lm_file::export_lm_f16`). Built tensor
    /// by tensor into the one buffer the file takes: no f32 copy of the model is made. Refused: no model,
    /// an unknown adapter, a value that is not finite or beyond f16's range (naming the tensor).
    ///
    /// A whole folder also needs the tokenizer's files (`tokenizer.json`, `tokenizer_config.json`,
    /// `chat_template.jinja`), which are the base model's.
    pub fn llm_export_merged(&self, name: &str) -> Result<(String, Vec<u8>)> {
        let m = self.llm_require()?;
        let (adapter, _) = self.llm.find(name)?;
        export_lm_f16(&m.model, Some(adapter))
    }
}
