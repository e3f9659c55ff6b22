//! GGUF files in and out: the format llama.cpp, wllama and Python's `gguf` package read, and the one the
//! pretrained model of part 3 comes in.
//!
//! Layout (little-endian, versions 2 and 3; version 1 used 32-bit counts and is refused):
//!
//! ```text
//! "GGUF"  u32 version  u64 tensor_count  u64 metadata_count
//! metadata_count × (string key, u32 value type, value)
//! tensor_count × (string name, u32 n_dims, n_dims × u64 ne, u32 ggml type, u64 offset)
//! padding to `general.alignment` (32 unless the metadata says otherwise)
//! the data: each tensor at its offset (relative to here, a multiple of the alignment)
//! ```
//!
//! A string is a u64 byte length and UTF-8 bytes; an array a u32 element type, a u64 count and the
//! elements. `ne[0]` is the innermost dimension (a PyTorch `out × in` weight has `ne = [in, out]`), and
//! quantised blocks run along it.
//!
//! Files, one job each: `value.rs` (the metadata value types), `reader.rs` ([`read_gguf`]: every count,
//! length and offset checked against the file before anything is allocated), `writer.rs`
//! ([`write_gguf`]: the canonical file, as ggml and gguf-py lay it out), `metadata.rs` (typed getters
//! whose refusals name the key). [`Gguf`] borrows nothing: tensors stay in the caller's buffer and are
//! sliced from it with [`Gguf::tensor_bytes`], so a 98 MB model is never copied.

mod metadata;
mod reader;
mod value;
mod writer;

pub use reader::read_gguf;
pub use value::{GgufArray, GgufType, GgufValue};
pub use writer::{write_gguf, GgufTensorData};

use crate::quant::GgmlType;
use crate::{LabError, Result};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The version [`write_gguf`] writes.
pub const GGUF_VERSION: u32 = 3;
/// Data alignment when the metadata has no `general.alignment`.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// The metadata key that sets the alignment (a u32, a power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// ggml's `GGML_MAX_NAME`: tensor names are shorter than this, in bytes.
pub const MAX_NAME: usize = 64;
/// How deeply arrays may nest (an array of arrays of scalars is 2). ggml reads none; gguf-py reads any.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// A GGUF file's header, read and checked; the tensors' bytes stay in the file's buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Gguf {
    /// The name the file was read under, for messages.
    pub file: String,
    /// 2 or 3 (they differ only in that 3 also allows big-endian files, which this lab does not read).
    pub version: u32,
    /// `general.alignment`, or [`DEFAULT_ALIGNMENT`].
    pub alignment: usize,
    /// The metadata in file order (keys are unique).
    pub metadata: Vec<(String, GgufValue)>,
    /// The tensors in file order (names are unique).
    pub tensors: Vec<GgufTensorInfo>,
    /// Where the data section starts in the file.
    pub data_offset: usize,
}

/// One tensor's entry, checked against the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml's `ne`, innermost first (0 to 4 of them; none is a single value).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Where its bytes start in the file (the data section's start plus the stored offset).
    pub offset: usize,
    /// How many bytes it takes.
    pub bytes: usize,
}

impl GgufTensorInfo {
    /// The number of values (the product of `dims`; 1 for none). The reader has checked that the product
    /// stays below 2⁶³ and that the bytes it takes fit in the file.
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// The shape in PyTorch's order, outermost first (`dims` reversed), e.g. `[out, in]` for a weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

impl Gguf {
    /// The tensor called `name`, with its index.
    pub fn find_tensor(&self, name: &str) -> Option<(usize, &GgufTensorInfo)> {
        self.tensors.iter().enumerate().find(|(_, t)| t.name == name)
    }

    /// The tensor called `name`, or an error naming it.
    pub fn tensor(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.find_tensor(name)
            .map(|(_, t)| t)
            .ok_or_else(|| LabError::file(&self.file, format!("there is no tensor \"{name}\"")))
    }

    /// Tensor `i`'s bytes, sliced from `file`, the buffer it was read from.
    pub fn tensor_bytes<'a>(&self, file: &'a [u8], i: usize) -> Result<&'a [u8]> {
        let t = self.tensors.get(i).ok_or_else(|| {
            LabError::file(&self.file, format!("there is no tensor #{i} ({} in all)", self.tensors.len()))
        })?;
        file.get(t.offset..t.offset + t.bytes).ok_or_else(|| {
            LabError::file(
                &self.file,
                format!(
                    "tensor \"{}\" lies at bytes {}..{}, past the {} bytes given: not the buffer it was read from",
                    t.name,
                    t.offset,
                    t.offset + t.bytes,
                    file.len()
                ),
            )
        })
    }

    /// Every tensor as [`write_gguf`] takes it, its bytes sliced from `file`.
    pub fn tensor_data<'a>(&'a self, file: &'a [u8]) -> Result<Vec<GgufTensorData<'a>>> {
        (0..self.tensors.len())
            .map(|i| {
                let t = &self.tensors[i];
                Ok(GgufTensorData { name: &t.name, dims: &t.dims, ty: t.ty, data: self.tensor_bytes(file, i)? })
            })
            .collect()
    }

    /// The canonical file holding what was read from `file` (for a file written by ggml or gguf-py:
    /// the same bytes).
    pub fn write(&self, file: &[u8]) -> Result<Vec<u8>> {
        write_gguf(&self.metadata, &self.tensor_data(file)?)
    }
}

/// The data alignment `metadata` sets: `general.alignment` (a u32, a power of two) or the default.
/// Errors are reasons without the file name.
fn alignment_of(metadata: &[(String, GgufValue)]) -> std::result::Result<usize, String> {
    match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY).map(|(_, v)| v) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(GgufValue::U32(a)) if a.is_power_of_two() => Ok(*a as usize),
        Some(GgufValue::U32(a)) => Err(format!("metadata key \"{ALIGNMENT_KEY}\" is {a}; it must be a power of two")),
        Some(v) => Err(format!("metadata key \"{ALIGNMENT_KEY}\" is {}; GGUF requires a u32", v.describe())),
    }
}

/// The bytes a tensor of type `ty` and dims `dims` takes, as ggml checks them: at most [`MAX_DIMS`]
/// dims, each and their product below 2⁶³ (ggml counts in int64), whole blocks along `ne[0]`. Errors
/// are reasons that start with the tensor's name.
fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> std::result::Result<u64, String> {
    if dims.len() > MAX_DIMS {
        return Err(format!("tensor \"{name}\" has {} dimensions; GGUF allows at most {MAX_DIMS}", dims.len()));
    }
    let n = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n < i64::MAX as u64 && dims.iter().all(|&d| d < i64::MAX as u64))
        .ok_or_else(|| {
            format!("tensor \"{name}\" has dims {dims:?}: a dimension or their product reaches 2^63, beyond ggml's int64 counts")
        })?;
    let (bs, bb) = (ty.block_size() as u64, ty.block_bytes() as u64);
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % bs != 0 {
        return Err(format!(
            "tensor \"{name}\" is {ty} with dims {dims:?}: its rows of {ne0} values are not whole {bs}-value blocks"
        ));
    }
    (n / bs)
        .checked_mul(bb)
        .ok_or_else(|| format!("tensor \"{name}\" has dims {dims:?}: too many bytes for a {ty} tensor"))
}
