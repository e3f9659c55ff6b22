//! `config.json`'s `quantization_config` for a language model whose base is held in NF4: the object
//! transformers writes for `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
//! bnb_4bit_use_double_quant=…, bnb_4bit_compute_dtype=torch.float32)` (`to_dict()`, which
//! `PretrainedConfig.to_json_string` embeds; checked with transformers 5.24.0). It carries the seven
//! keys `../shared/QLORA.md` lists plus the six transformers always adds (`_load_in_4bit`,
//! `_load_in_8bit` and the `llm_int8_*` defaults), so the file reads like one transformers saved.
//!
//! Reading takes that form or the seven keys alone, and refuses, naming the key, anything this lab
//! does not compute: another quant method or type, 8-bit loading, a compute dtype other than float32
//! (the lab computes in f32), a storage dtype other than uint8. The `llm_int8_*` keys concern 8-bit
//! loading and are read only for their type; other keys are ignored, as `lm_config` ignores them.

use serde_json::{json, Map, Value};

use super::lm_config::LM_CONFIG_FILE;
use crate::{LabError, Result};

/// The `quantization_config` object (keys sorted, as transformers writes them).
pub fn quantization_config(double_quant: bool) -> Value {
    json!({
        "_load_in_4bit": true,
        "_load_in_8bit": false,
        "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_quant_storage": "uint8",
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": double_quant,
        "llm_int8_enable_fp32_cpu_offload": false,
        "llm_int8_has_fp16_weight": false,
        "llm_int8_skip_modules": null,
        "llm_int8_threshold": 6.0,
        "load_in_4bit": true,
        "load_in_8bit": false,
        "quant_method": "bitsandbytes",
    })
}

/// Reads a `quantization_config` value (from `config.json`); returns whether it asks for double
/// quantisation. Errors name `config.json` and the key.
pub fn parse_quantization_config(value: &Value) -> Result<bool> {
    let bad = |reason: String| LabError::file(LM_CONFIG_FILE, format!("quantization_config{reason}"));
    let Value::Object(obj) = value else {
        return Err(bad(format!(" is {value}, not an object")));
    };
    read(obj).map_err(bad)
}

/// [`parse_quantization_config`] of JSON text (the object alone, as a test or a fuzzer holds it).
pub fn parse_quantization_config_json(text: &str) -> Result<bool> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| LabError::file(LM_CONFIG_FILE, format!("quantization_config is not valid JSON: {e}")))?;
    parse_quantization_config(&value)
}

fn read(obj: &Map<String, Value>) -> std::result::Result<bool, String> {
    let text = |k: &str, want: &str, required: bool| -> std::result::Result<(), String> {
        match obj.get(k) {
            None if !required => Ok(()),
            None => Err(format!(".{k} is missing")),
            Some(Value::String(s)) if s == want => Ok(()),
            Some(Value::String(s)) => Err(format!(".{k} is \"{s}\"; only \"{want}\" is supported")),
            Some(v) => Err(format!(".{k} is {v}, not a string")),
        }
    };
    let flag = |k: &str| -> std::result::Result<Option<bool>, String> {
        match obj.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(format!(".{k} is {v}, not true or false")),
        }
    };
    text("quant_method", "bitsandbytes", true)?;
    for k in ["load_in_4bit", "_load_in_4bit"] {
        match flag(k)? {
            Some(true) => {}
            None if k == "_load_in_4bit" => {}
            None => return Err(format!(".{k} is missing")),
            Some(false) => return Err(format!(".{k} is false: only 4-bit (NF4) checkpoints are supported")),
        }
    }
    for k in ["load_in_8bit", "_load_in_8bit"] {
        if flag(k)? == Some(true) {
            return Err(format!(".{k} is true: 8-bit (LLM.int8) checkpoints are not supported; only 4-bit NF4"));
        }
    }
    text("bnb_4bit_quant_type", "nf4", true)?;
    text("bnb_4bit_compute_dtype", "float32", false)?;
    text("bnb_4bit_quant_storage", "uint8", false)?;
    let double_quant = flag("bnb_4bit_use_double_quant")?.ok_or(".bnb_4bit_use_double_quant is missing")?;
    for k in ["llm_int8_enable_fp32_cpu_offload", "llm_int8_has_fp16_weight"] {
        flag(k)?;
    }
    match obj.get("llm_int8_threshold") {
        None | Some(Value::Number(_)) => {}
        Some(v) => return Err(format!(".llm_int8_threshold is {v}, not a number")),
    }
    match obj.get("llm_int8_skip_modules") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(v) => return Err(format!(".llm_int8_skip_modules is {v}, not null or a list of module names")),
    }
    Ok(double_quant)
}
