//! Hugging Face's `config.json` for a `LlamaForCausalLM` ↔ [`LmConfig`].
//!
//! Writing gives every field of `LlamaConfig` that the model depends on (../shared/LANGUAGE_MODEL.md),
//! in transformers 5's form (`rope_parameters`, `dtype`), keys sorted and indented as transformers'
//! `to_json_file` writes them, so two exports of one model are byte-identical.
//!
//! Reading takes that form and the older one (top-level `rope_theta`, `torch_dtype`, `rope_scaling`),
//! ignores fields this lab has no use for (`transformers_version`, `use_cache`, `pretraining_tp`, …),
//! and refuses, naming the field and the value, anything that would make `transformers` compute
//! something other than what this lab computes: another architecture or activation, biases, rope
//! scaling, a dtype other than float32. Grouped-query attention (`num_key_value_heads` dividing the
//! heads) and tied embeddings are read and written. A
//! `quantization_config` marks a 4-bit base (QLoRA): [`parse_lm_config_file`] reads it with
//! `quant_config`'s rules, and [`write_lm_config_with`] writes it.
//!
//! Required: `model_type`, the sizes (`vocab_size`, `hidden_size`, `intermediate_size`,
//! `num_hidden_layers`, `num_attention_heads`, `max_position_embeddings`), `rms_norm_eps`, the rope
//! θ (either form) and the three token ids. `LlamaConfig` has defaults for these too, but they are
//! those of a 7B model (vocab 32000, rms_norm_eps 1e-6, no PAD), never this lab's, so a file without
//! them is refused rather than guessed. Optional, with `LlamaConfig`'s defaults: `architectures`,
//! `head_dim` (hidden_size / num_attention_heads), `num_key_value_heads` (= num_attention_heads),
//! `hidden_act` ("silu"), `attention_bias`, `mlp_bias`, `tie_word_embeddings` (false),
//! `initializer_range` (0.02), `attention_dropout` (0.0; dropout in attention only changes training
//! in `transformers`, and this lab's model has none, so any value in [0, 1) is read and not used).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::lm::LmConfig;
use crate::{LabError, Result};

/// The file's name, as `save_pretrained` writes it; errors about it start with this name.
pub const LM_CONFIG_FILE: &str = "config.json";

/// `config.json` as this lab writes it. Fields in alphabetical order: serde writes them in
/// declaration order, and transformers sorts its keys, so the file reads like one it wrote.
#[derive(Serialize)]
struct HfLlamaConfig {
    architectures: [&'static str; 1],
    attention_bias: bool,
    attention_dropout: f32,
    bos_token_id: u32,
    dtype: &'static str,
    eos_token_id: u32,
    head_dim: usize,
    hidden_act: &'static str,
    hidden_size: usize,
    initializer_range: f32,
    intermediate_size: usize,
    max_position_embeddings: usize,
    mlp_bias: bool,
    model_type: &'static str,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    num_key_value_heads: usize,
    pad_token_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantization_config: Option<Value>,
    rms_norm_eps: f32,
    rope_parameters: RopeParameters,
    tie_word_embeddings: bool,
    use_cache: bool,
    vocab_size: usize,
}

#[derive(Serialize)]
struct RopeParameters {
    rope_theta: f32,
    rope_type: &'static str,
}

/// `cfg` as `config.json` text (2-space indent, sorted keys, final newline, as transformers writes).
/// A config this lab would refuse to read is refused here too. f32 values are written in their
/// shortest decimal form (serde_json writes 1e-5 as `0.00001`, Python as `1e-05`), which reads back to the same f32.
pub fn write_lm_config(cfg: &LmConfig) -> Result<String> {
    write_lm_config_with(cfg, None)
}

/// `write_lm_config`, with the `quantization_config` of a 4-bit base when `double_quant` is given
/// (whether its absmax are double-quantised).
pub fn write_lm_config_with(cfg: &LmConfig, double_quant: Option<bool>) -> Result<String> {
    cfg.validate(LM_CONFIG_FILE)?;
    check_init_std(cfg.init_std).map_err(|r| LabError::file(LM_CONFIG_FILE, r))?;
    let file = HfLlamaConfig {
        architectures: ["LlamaForCausalLM"],
        attention_bias: false,
        attention_dropout: 0.0,
        bos_token_id: cfg.bos,
        dtype: "float32",
        eos_token_id: cfg.eos,
        head_dim: cfg.head_dim,
        hidden_act: "silu",
        hidden_size: cfg.hidden,
        initializer_range: cfg.init_std,
        intermediate_size: cfg.intermediate,
        max_position_embeddings: cfg.context,
        mlp_bias: false,
        model_type: "llama",
        num_attention_heads: cfg.heads,
        num_hidden_layers: cfg.layers,
        num_key_value_heads: cfg.kv_heads(),
        pad_token_id: cfg.pad,
        quantization_config: double_quant.map(super::quant_config::quantization_config),
        rms_norm_eps: cfg.rms_norm_eps,
        rope_parameters: RopeParameters { rope_theta: cfg.rope_theta, rope_type: "default" },
        tie_word_embeddings: cfg.tie_embeddings,
        use_cache: true,
        vocab_size: cfg.vocab,
    };
    let mut text = serde_json::to_string_pretty(&file).expect("the config always serialises");
    text.push('\n');
    Ok(text)
}

/// Parses and validates `config.json` (see the module's notes for what is required and refused).
pub fn parse_lm_config(json: &str) -> Result<LmConfig> {
    parse_lm_config_file(json).map(|(cfg, _)| cfg)
}

/// `parse_lm_config`, and for a 4-bit base (a `quantization_config` that is not null) whether it asks
/// for double quantisation; a quantization_config this lab cannot compute is refused naming its key.
pub fn parse_lm_config_file(json: &str) -> Result<(LmConfig, Option<bool>)> {
    let bad = |reason: String| LabError::file(LM_CONFIG_FILE, reason);
    let value: Value = serde_json::from_str(json).map_err(|e| {
        // Python's json module writes non-finite floats as bare NaN/Infinity, which is not JSON.
        let hint = if json.contains("NaN") || json.contains("Infinity") {
            " (NaN/Infinity is not JSON; every number must be finite)"
        } else {
            ""
        };
        bad(format!("not valid JSON: {e}{hint}"))
    })?;
    let Value::Object(obj) = &value else {
        return Err(bad(format!("expected a JSON object of LlamaConfig fields, found {}", kind(&value))));
    };
    let (cfg, kv_heads) = read(obj).map_err(bad)?;
    cfg.validate(LM_CONFIG_FILE)?;
    // After validate, so that a count of 0 heads gets validate's message.
    if let Some(kv) = kv_heads.filter(|&kv| kv != cfg.kv_heads() as u64) {
        return Err(bad(format!(
            "num_key_value_heads is {kv}, which does not divide num_attention_heads {}",
            cfg.heads
        )));
    }
    let quant = match optional(obj, "quantization_config") {
        Some(q) => Some(super::quant_config::parse_quantization_config(q)?),
        None => None,
    };
    Ok((cfg, quant))
}

type Reason<T> = std::result::Result<T, String>;

/// The config, and `num_key_value_heads` if given (checked against the heads after validation).
fn read(obj: &Map<String, Value>) -> Reason<(LmConfig, Option<u64>)> {
    // What the file describes.
    match obj.get("model_type") {
        Some(Value::String(t)) if t == "llama" => {}
        Some(other) => return Err(format!("model_type is {other}; only \"llama\" (LlamaForCausalLM) is supported")),
        None => return Err("model_type is missing; expected \"llama\"".into()),
    }
    match optional(obj, "architectures") {
        None => {}
        Some(Value::Array(a)) if a.len() == 1 && a[0] == "LlamaForCausalLM" => {}
        Some(other) => return Err(format!("architectures is {other}; expected [\"LlamaForCausalLM\"]")),
    }
    for key in ["dtype", "torch_dtype"] {
        match optional(obj, key) {
            None => {}
            Some(Value::String(s)) if s == "float32" => {}
            Some(other) => {
                return Err(format!(
                    "{key} is {other}; only float32 checkpoints load: convert bf16/f16 ones first \
                     (model.float().save_pretrained(folder))"
                ))
            }
        }
    }

    // Sizes.
    let vocab = size(obj, "vocab_size")?;
    let hidden = size(obj, "hidden_size")?;
    let intermediate = size(obj, "intermediate_size")?;
    let layers = size(obj, "num_hidden_layers")?;
    let heads = size(obj, "num_attention_heads")?;
    let context = size(obj, "max_position_embeddings")?;
    // HF's default: hidden_size // num_attention_heads (validate refuses 0 heads and a remainder).
    let head_dim = match optional_int(obj, "head_dim")? {
        Some(d) => to_usize("head_dim", d)?,
        None => hidden.checked_div(heads).unwrap_or(0),
    };
    let kv_heads = optional_int(obj, "num_key_value_heads")?;

    // The computation.
    match optional(obj, "hidden_act") {
        None => {}
        Some(Value::String(s)) if s == "silu" => {}
        Some(other) => return Err(format!("hidden_act is {other}; only \"silu\" (Llama's gated MLP) is supported")),
    }
    for (key, what) in [
        ("attention_bias", "the attention projections have no bias in this lab"),
        ("mlp_bias", "the MLP projections have no bias in this lab"),
    ] {
        match optional(obj, key) {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => return Err(format!("{key} is true; {what}")),
            Some(other) => return Err(format!("{key} must be true or false, found {other}")),
        }
    }
    let tie_embeddings = match optional(obj, "tie_word_embeddings") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(other) => return Err(format!("tie_word_embeddings must be true or false, found {other}")),
    };
    let rms_norm_eps = float(obj, "rms_norm_eps")?.ok_or("rms_norm_eps is missing")?;
    let rope_theta = rope_theta(obj)?;
    let init_std = float(obj, "initializer_range")?.unwrap_or(0.02);
    check_init_std(init_std)?;
    if let Some(p) = float(obj, "attention_dropout")? {
        if !(0.0..1.0).contains(&p) {
            return Err(format!("attention_dropout must be a number in [0, 1), found {p}"));
        }
    }

    let [bos, eos, pad] = ["bos_token_id", "eos_token_id", "pad_token_id"].map(|key| token(obj, key, vocab));
    let cfg = LmConfig {
        vocab,
        hidden,
        intermediate,
        layers,
        heads,
        // Checked against the heads after validation (a count that does not divide them is refused).
        kv_group: match kv_heads {
            Some(kv) if kv > 0 && (heads as u64).is_multiple_of(kv) => heads / kv as usize,
            _ => 1,
        },
        head_dim,
        context,
        rms_norm_eps,
        rope_theta,
        bos: bos?,
        eos: eos?,
        pad: pad?,
        tie_embeddings,
        init_std,
    };
    Ok((cfg, kv_heads))
}

fn check_init_std(std: f32) -> Reason<()> {
    if std.is_finite() && std >= 0.0 {
        Ok(())
    } else {
        Err(format!("initializer_range must be a finite number ≥ 0, found {std}"))
    }
}

/// θ from transformers 5's `rope_parameters.rope_theta` or the older top-level `rope_theta`; both
/// may be present if they agree. `rope_parameters` and the older `rope_scaling` may only say
/// `rope_type: "default"`: any other type or parameter is rope scaling, which this lab does not do.
fn rope_theta(obj: &Map<String, Value>) -> Reason<f32> {
    let in_params = rope_object(obj, "rope_parameters", true)?;
    rope_object(obj, "rope_scaling", false)?;
    let top = float(obj, "rope_theta")?;
    match (in_params, top) {
        (Some(a), Some(b)) if a != b => Err(format!("rope_parameters.rope_theta {a} and rope_theta {b} disagree")),
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => {
            Err("rope_theta is missing: give rope_parameters.rope_theta (transformers 5) or rope_theta".into())
        }
    }
}

/// Checks `rope_parameters` / `rope_scaling` and returns the θ inside it, if any (and if allowed).
fn rope_object(obj: &Map<String, Value>, key: &str, theta_allowed: bool) -> Reason<Option<f32>> {
    let Some(v) = optional(obj, key) else { return Ok(None) };
    let Value::Object(m) = v else {
        return Err(format!("{key} must be an object or null, found {v}"));
    };
    let mut theta = None;
    for (k, v) in m {
        match k.as_str() {
            "rope_type" | "type" => {
                if v != "default" {
                    return Err(format!(
                        "{key}.{k} is {v}; only \"default\" rotary embeddings are supported (no rope scaling)"
                    ));
                }
            }
            "rope_theta" if theta_allowed => theta = float(m, "rope_theta").map_err(|e| format!("{key}.{e}"))?,
            _ => return Err(format!("{key}.{k} is set ({v}): rope scaling is not supported")),
        }
    }
    Ok(theta)
}

/// The field, unless it is absent or null.
fn optional<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn optional_int(obj: &Map<String, Value>, key: &str) -> Reason<Option<u64>> {
    optional(obj, key)
        .map(|v| v.as_u64().ok_or_else(|| format!("{key} must be a non-negative integer, found {v}")))
        .transpose()
}

/// A required size.
fn size(obj: &Map<String, Value>, key: &str) -> Reason<usize> {
    match obj.get(key) {
        None => Err(format!("{key} is missing")),
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| format!("{key} must be a non-negative integer, found {v}"))?;
            to_usize(key, n)
        }
    }
}

/// Only fails where usize is narrower than u64 (wasm32); `LmConfig::validate` gives the limits.
fn to_usize(key: &str, n: u64) -> Reason<usize> {
    usize::try_from(n).map_err(|_| format!("{key} is {n}, far more than this lab handles"))
}

/// A number that must fit an f32 (`None` if absent or null).
fn float(obj: &Map<String, Value>, key: &str) -> Reason<Option<f32>> {
    let Some(v) = optional(obj, key) else { return Ok(None) };
    let x = v.as_f64().ok_or_else(|| format!("{key} must be a number, found {v}"))?;
    let y = x as f32;
    if !y.is_finite() {
        return Err(format!("{key} is {v}, beyond the range of float32"));
    }
    Ok(Some(y))
}

/// A required token id: one integer inside the vocabulary (`LmConfig::validate` checks it too).
fn token(obj: &Map<String, Value>, key: &str, vocab: usize) -> Reason<u32> {
    let v = optional(obj, key).ok_or_else(|| format!("{key} is missing; this lab needs BOS, EOS and PAD ids"))?;
    let id = v.as_u64().ok_or_else(|| format!("{key} must be one non-negative integer, found {v}"))?;
    u32::try_from(id)
        .ok()
        .filter(|&id| (id as usize) < vocab)
        .ok_or_else(|| format!("{key} {id} is outside the vocabulary of {vocab}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
