//! safetensors in and out: `model.safetensors` (the base MLP) and `adapter_model.safetensors`
//! (PEFT's adapter file). Always F32, little-endian, row-major, which is what PyTorch's
//! `load_state_dict` and PEFT read for an f32 model; a 4-bit base (`nf4_file.rs`) adds U8 tensors,
//! read and written by [`read_tensors`] and [`write_tensors`]. A pretrained model's Hugging Face folder
//! may hold F16 or BF16 tensors: [`read_float_safetensors`] reads them as f32 (exactly: both widen
//! without rounding), and [`write_f16_safetensors`] writes a merged model in F16, tensor by tensor.
//!
//! Reading goes through the `safetensors` crate, after our own header check (`header.rs`) has
//! turned every way a file can be malformed into a message that names the tensor and the numbers.

use std::collections::{BTreeMap, HashMap, HashSet};

use half::{bf16, f16};
use safetensors::tensor::{Metadata, TensorInfo, TensorView};
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

/// Parses a safetensors file of F32, F16 and BF16 tensors (`file` names it in errors), every value as
/// f32: f16 → f32 and bf16 → f32 are exact. What a Hugging Face folder saved in half precision holds
/// (`model.half().save_pretrained(..)`, the Hub's bf16 checkpoints); the header is checked as
/// [`read_safetensors`] checks it, with two bytes a value for the half types.
pub fn read_float_safetensors(bytes: &[u8], file: &str) -> Result<BTreeMap<String, Tensor>> {
    const FLOATS: header::Dtypes = header::Dtypes {
        allowed: &[("F32", 4), ("F16", 2), ("BF16", 2)],
        refusal: "only F32, F16 and BF16 are read (convert it with tensor.float() before saving)",
    };
    header::check_with(bytes, &FLOATS).map_err(|reason| LabError::file(file, reason))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| LabError::file(file, crate_reason(e)))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        let b = view.data();
        let data = match view.dtype() {
            Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => return Err(LabError::file(file, format!("tensor {name} has dtype {other:?}"))),
        };
        out.insert(name.to_string(), Tensor { shape: view.shape().to_vec(), data });
    }
    Ok(out)
}

/// Where [`write_f16_safetensors`] asks for one tensor's values: append them, in row-major order, in as
/// many pieces as suits (a row at a time keeps no f32 copy of a whole matrix).
pub struct F16Sink<'a> {
    out: &'a mut Vec<u8>,
    name: &'a str,
    written: usize,
    count: usize,
}

impl F16Sink<'_> {
    /// The tensor's key, for the caller's own messages.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Appends `values` rounded to f16 (to nearest, ties to even, as PyTorch's `.half()`). A non-finite
    /// value, or one beyond f16's range (|x| ≥ 65520 rounds to infinity), is refused naming the
    /// tensor and the index; so is a value past the tensor's count.
    pub fn push(&mut self, values: &[f32]) -> Result<()> {
        if values.len() > self.count - self.written {
            return Err(LabError::state(format!(
                "{}: {} values given past the {} its shape holds",
                self.name,
                self.written + values.len(),
                self.count
            )));
        }
        for (i, &v) in values.iter().enumerate() {
            let h = f16::from_f32(v);
            if !h.is_finite() {
                let at = self.written + i;
                return Err(LabError::state(if v.is_finite() {
                    format!("{} holds {v} at index {at}, beyond f16's range (±65504)", self.name)
                } else {
                    format!("{} holds a non-finite value ({v}) at index {at}", self.name)
                }));
            }
            self.out.extend_from_slice(&h.to_le_bytes());
        }
        self.written += values.len();
        Ok(())
    }
}

/// An F16 safetensors file of `tensors` (key, shape), each tensor's values given by
/// `fill(index into tensors, sink)` when its turn comes, written straight into one buffer of the
/// file's final size: a model is never held whole in f32, and nothing is copied. The layout is the
/// `safetensors` crate's (and so PyTorch's `save_file`'s): tensors in key order, offsets from the start
/// of the data, the header (`__metadata__` first, as the crate writes it) padded with spaces to a
/// multiple of 8.
///
/// Why not the crate's `serialize`: it needs every tensor's bytes alive at once and then copies them
/// into its buffer — a whole second file in memory (SmolLM2 in F16: 269 MB more), which a browser tab
/// should not pay. The header still comes from the crate's own `Metadata`, so it is the crate's JSON.
pub fn write_f16_safetensors(
    tensors: &[(String, Vec<usize>)],
    metadata: Option<HashMap<String, String>>,
    mut fill: impl FnMut(usize, &mut F16Sink) -> Result<()>,
) -> Result<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut counts = Vec::with_capacity(tensors.len());
    for (name, shape) in tensors {
        if name == "__metadata__" {
            return Err(LabError::setting(name, "is reserved for the header's metadata"));
        }
        if !seen.insert(name.as_str()) {
            return Err(LabError::setting(name, "appears twice in one safetensors file"));
        }
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|n| n.checked_mul(2).is_some())
            .ok_or_else(|| LabError::setting(name, format!("shape {shape:?} is too large")))?;
        counts.push(count);
    }
    // The crate's order for tensors of one dtype: by key.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| tensors[a].0.cmp(&tensors[b].0));
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for &i in &order {
        let end = offset
            .checked_add(2 * counts[i])
            .ok_or_else(|| LabError::setting("safetensors export", "the tensors are too large for one file"))?;
        let info = TensorInfo { dtype: Dtype::F16, shape: tensors[i].1.clone(), data_offsets: (offset, end) };
        infos.push((tensors[i].0.clone(), info));
        offset = end;
    }
    let header = Metadata::new(metadata, infos).map_err(|e| LabError::setting("safetensors export", e.to_string()))?;
    let mut header = serde_json::to_vec(&header).map_err(|e| LabError::setting("safetensors export", e.to_string()))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let total = 8 + header.len() + offset;
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| {
        LabError::state(format!("not enough memory for the {:.0} MB safetensors file", total as f64 / 1e6))
    })?;
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    drop(header);
    for &i in &order {
        let (name, _) = &tensors[i];
        let mut sink = F16Sink { out: &mut out, name, written: 0, count: counts[i] };
        fill(i, &mut sink)?;
        if sink.written != sink.count {
            return Err(LabError::state(format!(
                "{name}: {} values given for the {} its shape holds",
                sink.written, sink.count
            )));
        }
    }
    debug_assert_eq!(out.len(), total);
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
