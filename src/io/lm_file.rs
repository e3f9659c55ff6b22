//! A base language model as `LlamaForCausalLM.save_pretrained(folder)` writes it, and as
//! `from_pretrained(folder)` loads it: `config.json` ([`super::lm_config`]) and `model.safetensors`
//! (F32, HF's state-dict keys, `{"format": "pt"}` metadata as PyTorch writes).
//!
//! Import is strict both ways: every tensor the config implies must be there with its shape, and any
//! other tensor is an error naming it (nothing is ignored silently: a leftover `rotary_emb.inv_freq`
//! buffer, or a layer the config does not count, means the two files disagree). `lm_head.weight` is
//! required unless `tie_word_embeddings` (then the file has none, as `save_pretrained` writes it). On any error nothing is created.
//!
//! [`export_lm_f16`] writes a model, an adapter merged in or not, with its weights in F16 (half the
//! bytes), tensor by tensor; [`import_lm_floats`] reads F16 and BF16 weights as well as F32.

use std::collections::{BTreeMap, HashMap};

use super::lm_config::{parse_lm_config_file, write_lm_config, write_lm_config_with, LM_CONFIG_FILE};
use super::model_file::MODEL_FILE;
use super::nf4_file::{read_nf4_safetensors, write_nf4_safetensors};
use super::tensors::{read_float_safetensors, read_safetensors, write_f16_safetensors, write_safetensors, Tensor};
use crate::error::{LabError, Result};
use crate::lm::{config::LAYER_MODULES, Llama, LmConfig};
use crate::lora::{Adaptable, Adapter, LoraLayer, Module};
use crate::nn::Linear;
use crate::quant::QuantizedWeight;

/// Every tensor of a `LlamaForCausalLM` with `cfg`'s sizes, as (state-dict key, shape), in
/// `Llama::params` order. Linear weights are out × in, as PyTorch stores them.
pub fn lm_tensors(cfg: &LmConfig) -> Vec<(String, Vec<usize>)> {
    let (h, v) = (cfg.hidden, cfg.vocab);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    for l in 0..cfg.layers {
        out.push((format!("model.layers.{l}.input_layernorm.weight"), vec![h]));
        out.push((format!("model.layers.{l}.post_attention_layernorm.weight"), vec![h]));
        for (j, name) in LAYER_MODULES.iter().enumerate() {
            let (i, o) = cfg.module_shape(j);
            out.push((format!("model.layers.{l}.{name}.weight"), vec![o, i]));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, h]));
    }
    out
}

/// (`config.json` text, `model.safetensors` bytes). Two exports of one model are byte-identical.
/// A model with a non-finite weight is refused: import would refuse the file. A 4-bit base is written
/// as transformers saves one loaded with bitsandbytes: its quantised Linears in `Linear4bit`'s layout,
/// `config.json` with its `quantization_config`.
pub fn export_lm(model: &Llama) -> Result<(String, Vec<u8>)> {
    let quant = model.quantization();
    let config = write_lm_config_with(&model.cfg, quant)?;
    let params = model.params();
    let shapes = lm_tensors(&model.cfg);
    let modules = model.modules();
    let quantized: Vec<(&str, &QuantizedWeight)> = modules
        .iter()
        .zip(&model.linears)
        .filter_map(|(m, l)| l.nf4.as_deref().map(|q| (m.name.as_str(), q)))
        .collect();
    let is_quantized = |key: &str| quantized.iter().any(|(m, _)| key.strip_suffix(".weight") == Some(*m));
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::with_capacity(params.len());
    for ((name, data), (key, shape)) in params.into_iter().zip(shapes) {
        debug_assert_eq!(name, key, "Llama::params and lm_tensors list the same tensors");
        if is_quantized(&name) {
            continue;
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(LabError::state(format!(
                "cannot export the model: {name} holds a non-finite value ({}) at index {i}",
                data[i]
            )));
        }
        tensors.push((name, shape, data));
    }
    if !quantized.is_empty() {
        return Ok((config, write_nf4_safetensors(&quantized, &tensors)?));
    }
    // One metadata key, so the header is the same on every export (the map is written in hash order).
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = write_safetensors(&tensors, Some(metadata))?;
    Ok((config, weights))
}

/// `model` with `adapter` merged in, if one is given — W + ΔW on every Linear it adapts, PEFT's
/// `merge_and_unload` — as (`config.json` text, `model.safetensors` bytes with every tensor in F16),
/// under HF's state-dict keys by [`export_lm`]'s rules: a tied output layer is the one matrix, written
/// as `model.embed_tokens.weight` only. An adapter that changes a tied `lm_head` unties it: the
/// embedding stays the base's, `lm_head.weight` is written apart and `tie_word_embeddings` is false,
/// so the file computes what the adapted model computes. Linears held quantised (GGUF blocks, NF4) are
/// written as the dequantised weights they compute with; `config.json` is the f32 model's (no
/// `quantization_config`; `dtype` float32, so `from_pretrained`'s `dtype="auto"` computes in f32 as
/// this lab does, the f16 weights widened exactly).
///
/// Memory: the file is written into one buffer of its final size, a Linear row by row (dequantised,
/// plus its ΔW row, rounded to f16), so no f32 copy of the model exists beside the file; the one
/// extra is ΔW of the Linear being written. A value that is not finite, or beyond f16's range, is
/// refused naming the tensor and the index. Refused too: an adapter with bias shifts (a Llama's
/// Linears have no bias to merge them into) or whose layers do not fit the model's Linears.
pub fn export_lm_f16(model: &Llama, adapter: Option<&Adapter>) -> Result<(String, Vec<u8>)> {
    let lm_head = model.cfg.lm_head();
    let mut deltas: Vec<Option<&LoraLayer>> = vec![None; model.linears.len()];
    if let Some(a) = adapter {
        if let Some(i) = a.bias_shift.iter().position(Option::is_some) {
            let name = a.modules.get(i).map_or("a module", |m| m.name.as_str());
            return Err(LabError::state(format!(
                "adapter \"{}\" shifts the bias of {name}, but the model's Linears have no bias to merge it into",
                a.name
            )));
        }
        for l in &a.layers {
            match model.linears.get(l.layer) {
                Some(lin) if (lin.in_features, lin.out_features) == (l.in_features, l.out_features) => {}
                _ => {
                    return Err(LabError::state(format!(
                        "adapter \"{}\": its layer on Linear {} ({} → {}) is not one of the model's",
                        a.name, l.layer, l.in_features, l.out_features
                    )))
                }
            }
            deltas[l.layer] = Some(l);
        }
    }
    let mut cfg = model.cfg.clone();
    if cfg.tie_embeddings && deltas[lm_head].is_some() {
        cfg.tie_embeddings = false;
    }
    let config = write_lm_config(&cfg)?;

    /// What a key's values are: a Linear's weight (with the delta to add, if any), or f32 values.
    enum Source<'a> {
        Linear(usize, Option<&'a LoraLayer>),
        Values(&'a [f32]),
    }
    let mut sources: HashMap<String, Source> = HashMap::new();
    for (m, (name, _, _)) in cfg.linear_modules().into_iter().enumerate() {
        sources.insert(format!("{name}.weight"), Source::Linear(m, deltas[m]));
    }
    let embed = if model.cfg.tie_embeddings { Source::Linear(lm_head, None) } else { Source::Values(&model.embed) };
    sources.insert("model.embed_tokens.weight".into(), embed);
    for (name, data) in model.params() {
        sources.entry(name).or_insert(Source::Values(data));
    }
    let layout = lm_tensors(&cfg);
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = write_f16_safetensors(&layout, Some(metadata), |i, sink| {
        let (key, shape) = &layout[i];
        match &sources[key] {
            Source::Values(v) => {
                if v.len() != shape.iter().product::<usize>() {
                    return Err(LabError::state(format!("{key} holds {} values, not {shape:?}", v.len())));
                }
                sink.push(v)
            }
            Source::Linear(m, delta) => {
                let lin = &model.linears[*m];
                let k = lin.in_features;
                let dw = delta.map(LoraLayer::delta_weight);
                let mut row = vec![0.0f32; k];
                for r in 0..lin.out_features {
                    lin.weight_row(r, &mut row);
                    if let Some(dw) = &dw {
                        row.iter_mut().zip(&dw[r * k..(r + 1) * k]).for_each(|(w, d)| *w += d);
                    }
                    sink.push(&row)?;
                }
                Ok(())
            }
        }
    })?;
    Ok((config, weights))
}

/// [`import_lm`] for a Hugging Face folder saved in half precision: F16 and BF16 tensors are read too,
/// as f32 (exactly). The config is read as `import_lm` reads it (its `dtype` must say float32).
pub fn import_lm_floats(config_json: &str, safetensors: &[u8]) -> Result<Llama> {
    import_lm_with(config_json, safetensors, read_float_safetensors)
}

/// Reads a base model from its two files. Errors name `config.json` or `model.safetensors` and say
/// what is wrong: the config's field and value; a missing, unexpected or misshapen tensor by key
/// (with the expected and the found shape); a non-finite value by tensor and index.
///
/// With a `quantization_config` in `config.json`, `model.safetensors` must hold every Linear but
/// `lm_head` in bitsandbytes' 4-bit layout (read strictly by `nf4_file`), double-quantised exactly when
/// the config says so; the model is then a 4-bit base.
pub fn import_lm(config_json: &str, safetensors: &[u8]) -> Result<Llama> {
    import_lm_with(config_json, safetensors, read_safetensors)
}

/// A reader of an unquantised `model.safetensors` (bytes, file name for errors).
type Reader = fn(&[u8], &str) -> Result<BTreeMap<String, Tensor>>;

/// [`import_lm`], reading an unquantised `model.safetensors` with `read`.
fn import_lm_with(config_json: &str, safetensors: &[u8], read: Reader) -> Result<Llama> {
    let (cfg, quant) = parse_lm_config_file(config_json)?;
    let (mut map, mut quantized) = match quant {
        None => (read(safetensors, MODEL_FILE)?, BTreeMap::new()),
        Some(double_quant) => {
            let modules = quantized_modules(&cfg);
            let read = read_nf4_safetensors(safetensors, MODEL_FILE, &modules)?;
            if let Some((name, _)) = read.quantized.iter().find(|(_, q)| q.double_quant() != double_quant) {
                return Err(LabError::file(
                    MODEL_FILE,
                    format!(
                        "{name}.weight is {}double-quantised but {LM_CONFIG_FILE} says bnb_4bit_use_double_quant is {double_quant}",
                        if double_quant { "not " } else { "" }
                    ),
                ));
            }
            (read.tensors, read.quantized)
        }
    };
    let expected: Vec<(String, Vec<usize>)> = lm_tensors(&cfg)
        .into_iter()
        .filter(|(key, _)| !key.strip_suffix(".weight").is_some_and(|m| quantized.contains_key(m)))
        .collect();
    check_tensors(&map, &expected, &cfg)?;
    for (name, _) in &expected {
        let data = &map[name].data;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(LabError::file(
                MODEL_FILE,
                format!("{name} holds a non-finite value ({}) at index {i}", data[i]),
            ));
        }
    }
    let mut take = |name: &str| map.remove(name).expect("checked above").data;
    let embed = take("model.embed_tokens.weight");
    let mut norms = Vec::with_capacity(cfg.layers);
    let mut linears = Vec::with_capacity(cfg.lm_head() + 1);
    for l in 0..cfg.layers {
        norms.push([
            take(&format!("model.layers.{l}.input_layernorm.weight")),
            take(&format!("model.layers.{l}.post_attention_layernorm.weight")),
        ]);
        for (j, name) in LAYER_MODULES.iter().enumerate() {
            let (i, o) = cfg.module_shape(j);
            let module = format!("model.layers.{l}.{name}");
            linears.push(match quantized.remove(&module) {
                Some(q) => Linear::from_quantized(q, Vec::new()),
                None => Linear::without_bias(i, o, take(&format!("{module}.weight"))),
            });
        }
    }
    let final_norm = take("model.norm.weight");
    // Tied: lm_head holds the one matrix (the embedding's), as `Llama` keeps it.
    let (embed, head) = if cfg.tie_embeddings { (Vec::new(), embed) } else { (embed, take("lm_head.weight")) };
    linears.push(Linear::without_bias(cfg.hidden, cfg.vocab, head));
    Ok(Llama { cfg, embed, linears, norms, final_norm })
}

/// The Linears a 4-bit base holds in 4 bits: all but `lm_head` (transformers keeps the output layer
/// in full precision).
fn quantized_modules(cfg: &LmConfig) -> Vec<Module> {
    cfg.linear_modules()
        .into_iter()
        .filter(|(name, _, _)| name != "lm_head")
        .map(|(name, in_features, out_features)| Module { name, in_features, out_features, has_bias: false })
        .collect()
}

/// At most this many keys are listed per problem (a config off by a size would list every tensor).
const LISTED: usize = 8;

fn listing(names: &[String]) -> String {
    if names.len() <= LISTED {
        names.join(", ")
    } else {
        format!("{} and {} more", names[..LISTED].join(", "), names.len() - LISTED)
    }
}

/// Missing, unexpected and misshapen tensors, all in one message.
fn check_tensors(map: &BTreeMap<String, Tensor>, expected: &[(String, Vec<usize>)], cfg: &LmConfig) -> Result<()> {
    let mut problems = Vec::new();
    let missing: Vec<String> = expected.iter().filter(|(n, _)| !map.contains_key(n)).map(|(n, _)| n.clone()).collect();
    if !missing.is_empty() {
        let mut p = format!("missing {}", listing(&missing));
        if missing.iter().any(|n| n == "lm_head.weight") {
            p += " (tie_word_embeddings is false, so lm_head.weight must be in the file)";
        }
        problems.push(p);
    }
    let unexpected: Vec<String> = map.keys().filter(|k| !expected.iter().any(|(n, _)| n == *k)).cloned().collect();
    if !unexpected.is_empty() {
        let mut p = format!("unexpected {}", listing(&unexpected));
        let beyond = |k: &String| {
            k.strip_prefix("model.layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i >= cfg.layers)
        };
        if unexpected.iter().any(beyond) {
            p += &format!(" ({LM_CONFIG_FILE} says num_hidden_layers = {})", cfg.layers);
        }
        problems.push(p);
    }
    let misshapen: Vec<String> = expected
        .iter()
        .filter_map(|(n, shape)| {
            let t = map.get(n)?;
            (t.shape != *shape).then(|| format!("{n} has shape {:?}, expected {shape:?}", t.shape))
        })
        .collect();
    if !misshapen.is_empty() {
        let more = misshapen.len().saturating_sub(LISTED);
        let mut p = misshapen.into_iter().take(LISTED).collect::<Vec<_>>().join("; ");
        if more > 0 {
            p += &format!("; and {more} more tensors of the wrong shape");
        }
        p += &format!(" (the shapes follow from {LM_CONFIG_FILE})");
        problems.push(p);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::file(MODEL_FILE, problems.join("; ")))
    }
}
