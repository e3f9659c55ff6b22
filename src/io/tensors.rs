//! safetensors in and out: `model.safetensors` (the base MLP) and `adapter_model.safetensors`
//! (PEFT's adapter file). Always F32, little-endian, row-major, which is what PyTorch's
//! `load_state_dict` and PEFT read for an f32 model; a 4-bit base (`nf4_file.rs`) adds U8 tensors,
//! read and written by [`read_tensors`] and [`write_tensors`].
//!
//! Reading goes through the `safetensors` crate, after our own header check (`header.rs`) has
//! turned every way a file can be malformed into a message that names the tensor and the numbers.

use std::collections::{BTreeMap, HashMap, HashSet};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use super::header;
use crate::{LabError, Result};

/// One tensor read from a file: its shape and its values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A tensor's values as read, in one of the two dtypes this lab reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

/// A tensor's values to write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Values<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::U8(v) => v.len(),
        }
    }
}

/// One tensor read from a file with [`read_tensors`]: its shape and its values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct AnyTensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Serialises `(name, shape, values)` triples as an F32 safetensors file. `metadata` becomes the
/// header's `__metadata__` (PyTorch writes `{"format": "pt"}`).
pub fn write_safetensors(
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let tensors: Vec<(String, Vec<usize>, Values)> =
        tensors.iter().map(|(n, s, d)| (n.clone(), s.clone(), Values::F32(d))).collect();
    write_tensors(&tensors, metadata)
}

/// [`write_safetensors`] for F32 and U8 tensors.
pub fn write_tensors(
    tensors: &[(String, Vec<usize>, Values)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut seen = HashSet::new();
    for (name, shape, data) in tensors {
        if name == "__metadata__" {
            return Err(LabError::setting(name, "is reserved for the header's metadata"));
        }
        if !seen.insert(name.as_str()) {
            return Err(LabError::setting(name, "appears twice in one safetensors file"));
        }
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if count != Some(data.len()) {
            return Err(LabError::setting(
                name,
                format!("shape {shape:?} does not hold the {} values given", data.len()),
            ));
        }
    }
    // The crate borrows the bytes, so they must outlive the views.
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| match data {
            Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::U8(v) => v.to_vec(),
        })
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, data), b) in tensors.iter().zip(&bytes) {
        let dtype = match data {
            Values::F32(_) => Dtype::F32,
            Values::U8(_) => Dtype::U8,
        };
        let view = TensorView::new(dtype, shape.clone(), b).map_err(|e| LabError::setting(name, e.to_string()))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, metadata).map_err(|e| LabError::setting("safetensors export", e.to_string()))
}

/// Parses a whole safetensors file (`file` names it in errors). Every tensor must be F32.
pub fn read_safetensors(bytes: &[u8], file: &str) -> Result<BTreeMap<String, Tensor>> {
    header::check(bytes).map_err(|reason| LabError::file(file, reason))?;
    // Our check should leave nothing for the crate to reject; if it does, still say what.
    let st = SafeTensors::deserialize(bytes).map_err(|e| LabError::file(file, crate_reason(e)))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(LabError::file(
                file,
                format!("tensor {name} has dtype {:?}; only F32 is supported", view.dtype()),
            ));
        }
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(name.to_string(), Tensor { shape: view.shape().to_vec(), data });
    }
    Ok(out)
}

/// Parses a safetensors file of F32 and U8 tensors (a 4-bit base: packed codes, quant states); any
/// other dtype is refused, naming the tensor.
pub fn read_tensors(bytes: &[u8], file: &str) -> Result<BTreeMap<String, AnyTensor>> {
    const F32_U8: header::Dtypes = header::Dtypes {
        allowed: &[("F32", 4), ("U8", 1)],
        refusal: "a 4-bit (NF4) file holds only F32 and U8 tensors (convert the others with tensor.float())",
    };
    header::check_with(bytes, &F32_U8).map_err(|reason| LabError::file(file, reason))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| LabError::file(file, crate_reason(e)))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        let data = match view.dtype() {
            Dtype::F32 => {
                Data::F32(view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            Dtype::U8 => Data::U8(view.data().to_vec()),
            other => return Err(LabError::file(file, format!("tensor {name} has dtype {other:?}"))),
        };
        out.insert(name.to_string(), AnyTensor { shape: view.shape().to_vec(), data });
    }
    Ok(out)
}

/// Checks that `map` holds exactly the tensors a model or adapter needs, with the right shapes;
/// `allow_extra` lets other tensors through (e.g. PEFT files that also carry biases). Reports every
/// problem at once, so one fix-and-retry is enough.
pub fn expect_tensors(
    map: &BTreeMap<String, Tensor>,
    file: &str,
    expected: &[(&str, &[usize])],
    allow_extra: bool,
) -> Result<()> {
    let mut problems = Vec::new();
    let missing: Vec<&str> = expected.iter().map(|(n, _)| *n).filter(|n| !map.contains_key(*n)).collect();
    if !missing.is_empty() {
        problems.push(format!("missing {}", missing.join(", ")));
    }
    if !allow_extra {
        let unexpected: Vec<&str> =
            map.keys().map(String::as_str).filter(|k| !expected.iter().any(|(n, _)| n == k)).collect();
        if !unexpected.is_empty() {
            let wanted: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
            problems.push(format!("unexpected {} (expected only {})", unexpected.join(", "), wanted.join(", ")));
        }
    }
    for (name, shape) in expected {
        if let Some(t) = map.get(*name) {
            if t.shape != *shape {
                problems.push(format!("{name} has shape {:?}, expected {shape:?}", t.shape));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::file(file, problems.join("; ")))
    }
}

/// The crate's errors in our words, for anything `header::check` let through.
fn crate_reason(e: SafeTensorError) -> String {
    use SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "file is too short to hold the 8-byte header length".into(),
        E::HeaderTooLarge => "header is larger than the 100 MB safetensors allows".into(),
        E::InvalidHeaderLength => "header length runs past the end of the file".into(),
        E::InvalidHeader(err) => format!("header is not valid UTF-8: {err}"),
        E::InvalidHeaderDeserialization(err) | E::JsonError(err) => {
            format!("header is not valid safetensors JSON: {err}")
        }
        E::InvalidOffset(name) => {
            format!("tensor {name}: data_offsets overlap or leave a gap; they must tile the data")
        }
        E::TensorInvalidInfo => "a tensor's data_offsets do not match its shape and dtype".into(),
        E::MetadataIncompleteBuffer => "the tensors do not cover the data exactly".into(),
        E::ValidationOverflow => "a tensor's shape is too large".into(),
        other => other.to_string(),
    }
}
