//! A pretrained model as a Hugging Face folder (what `save_pretrained` writes, and what
//! `../shared/peers/smol_to_hf.py` makes of SmolLM2's GGUF): `config.json` and `model.safetensors` (read by
//! `lm_file`: F32, F16 or BF16 tensors, held as f32), `tokenizer.json` (byte-level BPE, read by `text`),
//! and the chat template from `chat_template.jinja` (transformers 5) or `tokenizer_config.json`'s
//! `chat_template` (older).
//!
//! A folder saved in half precision says so in `config.json` (`dtype` or `torch_dtype` "float16" or
//! "bfloat16"): that is the dtype transformers would compute in with `dtype="auto"`; this lab computes in
//! f32 on the values widened exactly, as `from_pretrained(folder, dtype=torch.float32)` does, so the field
//! is read as float32. Any other dtype is refused as `lm_config` refuses it.

use std::borrow::Cow;

use serde_json::Value;

use super::lm_file::import_lm_floats;
use crate::error::{LabError, Result};
use crate::lm::Llama;
use crate::text::{Bpe, ChatTemplate};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// The files of a folder, as text or bytes; the optional ones may be absent.
pub struct HfFolder<'a> {
    pub config_json: &'a str,
    pub safetensors: &'a [u8],
    pub tokenizer_json: &'a str,
    pub tokenizer_config_json: Option<&'a str>,
    pub chat_template: Option<&'a str>,
}

/// The model, its tokenizer, its chat template (if the folder has one) and whether its tokenizer adds
/// BOS (`tokenizer_config.json`'s `add_bos_token`, false when absent).
pub fn hf_pretrained(f: &HfFolder) -> Result<(Llama, Bpe, Option<ChatTemplate>, bool)> {
    let model = import_lm_floats(&computed_in_f32(f.config_json), f.safetensors)?;
    let tokenizer = Bpe::from_tokenizer_json(f.tokenizer_json, TOKENIZER_FILE)?;
    if tokenizer.vocab_size() > model.cfg.vocab {
        return Err(LabError::file(
            TOKENIZER_FILE,
            format!("{} tokens, but config.json's vocab_size is {}", tokenizer.vocab_size(), model.cfg.vocab),
        ));
    }
    let config: Option<Value> = match f.tokenizer_config_json {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| LabError::file(TOKENIZER_CONFIG_FILE, format!("not valid JSON: {e}")))?,
        ),
        None => None,
    };
    let field = |key: &str| config.as_ref().and_then(|c| c.get(key)).filter(|v| !v.is_null());
    let add_bos = match field("add_bos_token") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(LabError::file(TOKENIZER_CONFIG_FILE, format!("add_bos_token must be true or false, found {v}"))),
    };
    let (source, file) = match (f.chat_template, field("chat_template")) {
        (Some(t), _) => (Some(t.to_string()), CHAT_TEMPLATE_FILE),
        (None, Some(Value::String(t))) => (Some(t.clone()), TOKENIZER_CONFIG_FILE),
        (None, Some(v)) => {
            return Err(LabError::file(
                TOKENIZER_CONFIG_FILE,
                format!("chat_template must be one template's text, found {}", if v.is_array() { "a list of named templates" } else { "something else" }),
            ))
        }
        (None, None) => (None, TOKENIZER_CONFIG_FILE),
    };
    let text = |id: u32| tokenizer.token_text(id).unwrap_or("").to_string();
    let template = match source {
        Some(s) => Some(ChatTemplate::new(&s, &text(model.cfg.bos), &text(model.cfg.eos), file)?),
        None => None,
    };
    Ok((model, tokenizer, template, add_bos))
}

/// `config.json` with a `dtype`/`torch_dtype` of float16 or bfloat16 read as float32 (see the module's
/// notes); anything else, valid or not, as it is, for `lm_config` to judge and to name.
fn computed_in_f32(config_json: &str) -> Cow<'_, str> {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(config_json) else {
        return Cow::Borrowed(config_json);
    };
    let mut changed = false;
    for key in ["dtype", "torch_dtype"] {
        if let Some(v) = obj.get_mut(key).filter(|v| *v == "float16" || *v == "bfloat16") {
            *v = Value::String("float32".into());
            changed = true;
        }
    }
    if !changed {
        return Cow::Borrowed(config_json);
    }
    match serde_json::to_string(&obj) {
        Ok(text) => Cow::Owned(text),
        Err(_) => Cow::Borrowed(config_json),
    }
}
