//! `model.safetensors`: the base MLP under PyTorch's state-dict names, so the article's `MLP` takes it
//! with `load_state_dict` as is.

use std::collections::HashMap;

use super::tensors::{expect_tensors, read_safetensors, write_safetensors};
use crate::error::{LabError, Result};
use crate::nn::{Linear, Mlp, LAYER_NAMES, LAYER_SHAPES};

pub const MODEL_FILE: &str = "model.safetensors";

pub fn export_model(mlp: &Mlp) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    for (name, l) in LAYER_NAMES.iter().zip(&mlp.layers) {
        tensors.push((format!("{name}.weight"), vec![l.out_features, l.in_features], &l.weight[..]));
        tensors.push((format!("{name}.bias"), vec![l.out_features], &l.bias[..]));
    }
    write_safetensors(&tensors, Some(HashMap::from([("format".to_string(), "pt".to_string())])))
}

/// Reads a base model; any missing, extra, misshapen or non-finite tensor is an error naming it.
pub fn import_model(bytes: &[u8]) -> Result<Mlp> {
    let map = read_safetensors(bytes, MODEL_FILE)?;
    let names: Vec<(String, Vec<usize>)> = LAYER_NAMES
        .iter()
        .zip(LAYER_SHAPES)
        .flat_map(|(n, (i, o))| [(format!("{n}.weight"), vec![o, i]), (format!("{n}.bias"), vec![o])])
        .collect();
    let expected: Vec<(&str, &[usize])> = names.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    expect_tensors(&map, MODEL_FILE, &expected, false)?;
    for (name, t) in &map {
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(LabError::file(
                MODEL_FILE,
                format!("{name} holds a non-finite value ({}) at index {i}", t.data[i]),
            ));
        }
    }
    let layer = |n: &str, (i, o): (usize, usize)| {
        Linear::from_parts(i, o, map[&format!("{n}.weight")].data.clone(), map[&format!("{n}.bias")].data.clone())
    };
    Ok(Mlp { layers: [0, 1, 2].map(|k| layer(LAYER_NAMES[k], LAYER_SHAPES[k])) })
}
