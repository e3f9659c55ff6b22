//! `model.safetensors`: the base MLP under PyTorch's state-dict names, so the article's `MLP` takes it
//! with `load_state_dict` as is. A 4-bit base (QLoRA) has its three Linears' weights in bitsandbytes'
//! `Linear4bit` layout (`nf4_file`) and the biases in F32: the state dict of the MLP with its
//! `nn.Linear`s replaced by `bnb.nn.Linear4bit`s.

use std::collections::{BTreeMap, HashMap};

use super::nf4_file::{read_nf4_safetensors, write_nf4_safetensors};
use super::tensors::{expect_tensors, read_safetensors, read_tensors, write_safetensors, Data, Tensor};
use crate::error::{LabError, Result};
use crate::lora::mlp_modules;
use crate::nn::{Linear, Mlp, LAYER_NAMES, LAYER_SHAPES};
use crate::quant::QuantizedWeight;

pub const MODEL_FILE: &str = "model.safetensors";

pub fn export_model(mlp: &Mlp) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    let mut quantized: Vec<(&str, &QuantizedWeight)> = Vec::new();
    for (name, l) in LAYER_NAMES.iter().zip(&mlp.layers) {
        match l.nf4.as_deref() {
            Some(q) => quantized.push((name, q)),
            None => tensors.push((format!("{name}.weight"), vec![l.out_features, l.in_features], &l.weight[..])),
        }
        tensors.push((format!("{name}.bias"), vec![l.out_features], &l.bias[..]));
    }
    if !quantized.is_empty() {
        return write_nf4_safetensors(&quantized, &tensors);
    }
    write_safetensors(&tensors, Some(HashMap::from([("format".to_string(), "pt".to_string())])))
}

/// Whether a safetensors file holds U8 tensors (a 4-bit base); a file that does not parse is not.
fn holds_u8(bytes: &[u8]) -> bool {
    read_tensors(bytes, MODEL_FILE).is_ok_and(|m| m.values().any(|t| matches!(t.data, Data::U8(_))))
}

/// Reads a base model, f32 or 4-bit; any missing, extra, misshapen or non-finite tensor is an error
/// naming it.
pub fn import_model(bytes: &[u8]) -> Result<Mlp> {
    if holds_u8(bytes) {
        return import_quantized(bytes);
    }
    let map = read_safetensors(bytes, MODEL_FILE)?;
    let names: Vec<(String, Vec<usize>)> = LAYER_NAMES
        .iter()
        .zip(LAYER_SHAPES)
        .flat_map(|(n, (i, o))| [(format!("{n}.weight"), vec![o, i]), (format!("{n}.bias"), vec![o])])
        .collect();
    let expected: Vec<(&str, &[usize])> = names.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    expect_tensors(&map, MODEL_FILE, &expected, false)?;
    check_finite(&map)?;
    let layer = |n: &str, (i, o): (usize, usize)| {
        Linear::from_parts(i, o, map[&format!("{n}.weight")].data.clone(), map[&format!("{n}.bias")].data.clone())
    };
    Ok(Mlp { layers: [0, 1, 2].map(|k| layer(LAYER_NAMES[k], LAYER_SHAPES[k])) })
}

/// A 4-bit base: every Linear quantised (read strictly by `nf4_file`), the biases F32.
fn import_quantized(bytes: &[u8]) -> Result<Mlp> {
    let read = read_nf4_safetensors(bytes, MODEL_FILE, &mlp_modules())?;
    let biases: Vec<(String, Vec<usize>)> =
        LAYER_NAMES.iter().zip(LAYER_SHAPES).map(|(n, (_, o))| (format!("{n}.bias"), vec![o])).collect();
    let expected: Vec<(&str, &[usize])> = biases.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    expect_tensors(&read.tensors, MODEL_FILE, &expected, false)?;
    check_finite(&read.tensors)?;
    if read.quantized.values().map(|q| q.double_quant()).collect::<std::collections::BTreeSet<_>>().len() > 1 {
        return Err(LabError::file(
            MODEL_FILE,
            "some Linears are double-quantised and others not: one base, one setting",
        ));
    }
    let mut quantized = read.quantized;
    let mut layer = |k: usize| {
        let q = quantized.remove(LAYER_NAMES[k]).expect("read_nf4_safetensors returns every module");
        Linear::from_quantized(q, read.tensors[&format!("{}.bias", LAYER_NAMES[k])].data.clone())
    };
    Ok(Mlp { layers: [layer(0), layer(1), layer(2)] })
}

fn check_finite(map: &BTreeMap<String, Tensor>) -> Result<()> {
    for (name, t) in map {
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(LabError::file(
                MODEL_FILE,
                format!("{name} holds a non-finite value ({}) at index {i}", t.data[i]),
            ));
        }
    }
    Ok(())
}
