//! [`write_gguf`]: a GGUF version 3 file laid out as ggml's `gguf_write_to_buf` and gguf-py's
//! `GGUFWriter` lay it out — header, metadata, tensor infos, zero padding to the alignment, then each
//! tensor's bytes in order, each padded with zeros to the alignment (the last one too). A file written
//! by either is written again byte for byte from what [`super::read_gguf`] reads of it.

use std::collections::HashSet;

use super::{alignment_of, tensor_size, GgufArray, GgufValue, GGUF_MAGIC, GGUF_VERSION, MAX_ARRAY_DEPTH, MAX_NAME};
use crate::quant::GgmlType;
use crate::{LabError, Result};

/// One tensor to write: ggml's dims (`ne`, innermost first) and its bytes in type `ty`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GgufTensorData<'a> {
    pub name: &'a str,
    pub dims: &'a [u64],
    pub ty: GgmlType,
    pub data: &'a [u8],
}

/// Writes `metadata` (in order) and `tensors` (in order) as a GGUF v3 file. The alignment is the
/// metadata's `general.alignment` (a u32 power of two) or 32. Refuses what [`super::read_gguf`] would
/// refuse: empty or repeated keys, arrays nested more than [`MAX_ARRAY_DEPTH`] deep, repeated or
/// over-long tensor names, more than 4 dims, rows that are not whole blocks, and bytes that do not match
/// the dims.
pub fn write_gguf(metadata: &[(String, GgufValue)], tensors: &[GgufTensorData]) -> Result<Vec<u8>> {
    let mut keys = HashSet::new();
    for (key, value) in metadata {
        let bad = |reason: String| LabError::setting(format!("GGUF metadata key \"{key}\""), reason);
        if key.is_empty() {
            return Err(LabError::setting("GGUF metadata key", "a key must not be empty"));
        }
        if !keys.insert(key.as_str()) {
            return Err(bad("appears twice".into()));
        }
        if let GgufValue::Array(a) = value {
            if a.depth() > MAX_ARRAY_DEPTH {
                return Err(bad(format!("arrays nest {} deep; GGUF readers here take {MAX_ARRAY_DEPTH}", a.depth())));
            }
        }
    }
    let alignment = alignment_of(metadata).map_err(|r| LabError::setting("GGUF metadata", r))?;
    let mut names = HashSet::new();
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut data_len = 0usize;
    for t in tensors {
        let bad = |reason: String| LabError::setting(format!("GGUF tensor \"{}\"", t.name), reason);
        if t.name.len() >= MAX_NAME {
            return Err(bad(format!("its name is {} bytes; ggml allows at most {}", t.name.len(), MAX_NAME - 1)));
        }
        if !names.insert(t.name) {
            return Err(bad("appears twice".into()));
        }
        let size = tensor_size(t.name, t.dims, t.ty).map_err(|r| LabError::setting("GGUF tensor", r))?;
        if size != t.data.len() as u64 {
            return Err(bad(format!(
                "dims {:?} of {} take {size} bytes, but {} were given",
                t.dims,
                t.ty,
                t.data.len()
            )));
        }
        offsets.push(data_len as u64);
        data_len = data_len
            .checked_add(t.data.len().next_multiple_of(alignment))
            .ok_or_else(|| bad("the tensors' total size overflows".into()))?;
    }

    let mut out = Vec::new();
    out.extend_from_slice(&GGUF_MAGIC);
    out.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        out.extend_from_slice(&value.ty().id().to_le_bytes());
        put_value(&mut out, value);
    }
    for (t, offset) in tensors.iter().zip(&offsets) {
        put_str(&mut out, t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        t.dims.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out.resize(out.len().next_multiple_of(alignment), 0);
    out.reserve_exact(data_len);
    for t in tensors {
        out.extend_from_slice(t.data);
        out.resize(out.len().next_multiple_of(alignment), 0);
    }
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A value's bytes, without its type (which the caller has written).
fn put_value(out: &mut Vec<u8>, value: &GgufValue) {
    use GgufValue as V;
    match value {
        V::U8(x) => out.push(*x),
        V::I8(x) => out.push(*x as u8),
        V::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::Bool(x) => out.push(*x as u8),
        V::String(s) => put_str(out, s),
        V::Array(a) => put_array(out, a),
        V::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// An array: element type, count, elements.
fn put_array(out: &mut Vec<u8>, a: &GgufArray) {
    use GgufArray as A;
    out.extend_from_slice(&a.elem_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    match a {
        A::U8(v) => out.extend_from_slice(v),
        A::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        A::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        A::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        A::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        A::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        A::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        A::Bool(v) => out.extend(v.iter().map(|&x| x as u8)),
        A::String(v) => v.iter().for_each(|s| put_str(out, s)),
        A::Array(v) => v.iter().for_each(|x| put_array(out, x)),
        A::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        A::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        A::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
}
