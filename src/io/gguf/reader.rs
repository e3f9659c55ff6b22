//! [`read_gguf`]: a GGUF file's header, checked from end to end before it is believed.
//!
//! The bytes are untrusted: every count, length and dimension is checked against what is left of the
//! file before anything is allocated for it (a string claiming 2⁶⁰ bytes or an array claiming 2⁶⁰
//! elements is refused at once, as is a count of keys or tensors that could not fit), arithmetic on
//! offsets and sizes is checked, and the tensors must lie inside the file, aligned, without
//! overlapping. ggml itself also requires the tensors to follow one another in order, each padded to
//! the alignment; this reader accepts any such layout, and [`super::write_gguf`] writes ggml's.
//! Every refusal says where and what: the key or tensor, the numbers, the byte.

use std::collections::HashSet;

use super::{
    alignment_of, tensor_size, Gguf, GgufArray, GgufTensorInfo, GgufType, GgufValue, GGUF_MAGIC, MAX_ARRAY_DEPTH,
    MAX_NAME,
};
use crate::quant::ggml::ggml_type_name;
use crate::quant::GgmlType;
use crate::{LabError, Result};

/// The fewest bytes a metadata entry takes: a 1-byte key with its length, a type, a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// The fewest bytes a tensor info takes: a 1-byte name with its length, n_dims, type, offset.
const MIN_TENSOR_BYTES: u64 = 8 + 1 + 4 + 4 + 8;

/// Reads a GGUF file's header from `bytes` (`file` names it in errors). Borrows nothing: slice the
/// tensors from `bytes` with [`Gguf::tensor_bytes`].
pub fn read_gguf(bytes: &[u8], file: &str) -> Result<Gguf> {
    read(bytes, file).map_err(|reason| LabError::file(file, reason))
}

/// Where reading is, and what is left.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Says what is being read, for messages ("metadata key \"general.name\""); built only on error.
type Context<'c> = &'c dyn Fn() -> String;

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Why `n` bytes cannot be read here: `what` (of `ctx`) needs more than the file has.
    fn short(&self, n: u64, ctx: Context, what: &str) -> String {
        format!(
            "{}: {what} needs {n} bytes from byte {}, but the file ends at byte {}: it is truncated or corrupt",
            ctx(),
            self.pos,
            self.bytes.len()
        )
    }

    /// The next `n` bytes, or why not.
    fn take(&mut self, n: u64, ctx: Context, what: &str) -> std::result::Result<&'a [u8], String> {
        if n > self.left() as u64 {
            return Err(self.short(n, ctx, what));
        }
        let out = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, ctx: Context, what: &str) -> std::result::Result<[u8; N], String> {
        let b = self.take(N as u64, ctx, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, ctx: Context, what: &str) -> std::result::Result<u32, String> {
        self.array(ctx, what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, ctx: Context, what: &str) -> std::result::Result<u64, String> {
        self.array(ctx, what).map(u64::from_le_bytes)
    }

    /// A GGUF string: a u64 length, then that many bytes of UTF-8 (messages are built only on error:
    /// a vocabulary holds tens of thousands of strings).
    fn string(&mut self, ctx: Context, what: &str) -> std::result::Result<&'a str, String> {
        let start = self.pos;
        if self.left() < 8 {
            return Err(self.short(8, ctx, &format!("{what}'s length")));
        }
        let len = self.u64(ctx, what)?;
        if len > self.left() as u64 {
            return Err(self.short(len, ctx, &format!("{what} ({len} bytes, length at byte {start})")));
        }
        let raw = self.take(len, ctx, what)?;
        std::str::from_utf8(raw).map_err(|e| {
            format!("{}: {what} (at byte {start}) is not valid UTF-8 (at its byte {})", ctx(), e.valid_up_to())
        })
    }
}

/// Refuses a count of items that cannot fit in what is left of the file, before anything is allocated
/// for them.
fn check_count(n: u64, min_bytes: u64, left: usize, what: &str) -> std::result::Result<usize, String> {
    match n.checked_mul(min_bytes) {
        Some(b) if b <= left as u64 => Ok(n as usize),
        _ => Err(format!(
            "{what} is {n}, but the {left} bytes left in the file hold at most {} (each takes at least \
             {min_bytes} bytes): it is truncated or corrupt",
            left as u64 / min_bytes
        )),
    }
}

fn read(bytes: &[u8], file: &str) -> std::result::Result<Gguf, String> {
    if bytes.len() < GGUF_MAGIC.len() || bytes[..4] != GGUF_MAGIC {
        let head = &bytes[..bytes.len().min(4)];
        return Err(if GGUF_MAGIC.starts_with(head) {
            format!("the file is {} bytes, too short for a GGUF file (a 24-byte header starting \"GGUF\")", bytes.len())
        } else {
            format!(
                "the file does not start with \"GGUF\" (it starts with \"{}\"): not a GGUF file",
                head.escape_ascii()
            )
        });
    }
    let mut c = Cursor { bytes, pos: 4 };
    let header: Context = &|| "the header".to_string();
    let version = c.u32(header, "the version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err("GGUF version 1 is not read by this lab (versions 2 and 3 are): convert the file again with \
                        a current llama.cpp"
                .to_string())
        }
        v if v & 0xffff == 0 => {
            return Err(format!(
                "the version field reads {v:#010x}: a big-endian GGUF file? This lab reads little-endian GGUF \
                 versions 2 and 3"
            ))
        }
        v => return Err(format!("GGUF version {v} is not read by this lab (versions 2 and 3 are)")),
    }
    let n_tensors = c.u64(header, "the tensor count")?;
    let n_kv = c.u64(header, "the metadata count")?;
    let n_kv = check_count(n_kv, MIN_KV_BYTES, c.left(), "the header's metadata count")?;
    check_count(n_tensors, MIN_TENSOR_BYTES, c.left(), "the header's tensor count")?;

    // Metadata.
    let mut metadata = Vec::with_capacity(n_kv);
    let mut keys = HashSet::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"), "its name")?;
        if key.is_empty() {
            return Err(format!("metadata key #{i} has an empty name"));
        }
        if !keys.insert(key) {
            return Err(format!("metadata key \"{key}\" appears twice"));
        }
        let ctx: Context = &|| format!("metadata key \"{key}\"");
        let id = c.u32(ctx, "its value type")?;
        let ty = GgufType::from_id(id)
            .ok_or_else(|| format!("metadata key \"{key}\" has value type {id}, which is not a GGUF type (0 to 12)"))?;
        let value = read_value(&mut c, ty, ctx)?;
        metadata.push((key.to_string(), value));
    }
    let alignment = alignment_of(&metadata)?;

    // Tensor infos.
    let n_tensors = check_count(n_tensors, MIN_TENSOR_BYTES, c.left(), "the header's tensor count")?;
    let mut infos = Vec::with_capacity(n_tensors);
    let mut names = HashSet::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = c.string(&|| format!("tensor #{i}"), "its name")?;
        if name.len() >= MAX_NAME {
            return Err(format!(
                "tensor \"{name}\": its name is {} bytes; ggml allows at most {}",
                name.len(),
                MAX_NAME - 1
            ));
        }
        if !names.insert(name) {
            return Err(format!("tensor \"{name}\" appears twice"));
        }
        let ctx: Context = &|| format!("tensor \"{name}\"");
        let n_dims = c.u32(ctx, "its number of dimensions")?;
        if n_dims as usize > super::MAX_DIMS {
            return Err(format!("tensor \"{name}\" has {n_dims} dimensions; GGUF allows at most {}", super::MAX_DIMS));
        }
        let dims = (0..n_dims).map(|_| c.u64(ctx, "its dimensions")).collect::<std::result::Result<Vec<_>, _>>()?;
        let type_id = c.u32(ctx, "its type")?;
        let rel = c.u64(ctx, "its offset")?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| {
            let known = ggml_type_name(type_id).map(|n| format!("{n} ({type_id})")).unwrap_or(type_id.to_string());
            format!("tensor \"{name}\" has type {known}, which this lab does not read (it reads {})", GgmlType::list())
        })?;
        let size = tensor_size(name, &dims, ty)?;
        if rel % alignment as u64 != 0 {
            return Err(format!(
                "tensor \"{name}\" is at offset {rel} of the data, not a multiple of the alignment ({alignment})"
            ));
        }
        infos.push((name, dims, ty, rel, size));
    }

    // The data: aligned after the header; every tensor inside the file, none overlapping.
    let header_end = c.pos;
    let data_offset = header_end
        .checked_next_multiple_of(alignment)
        .filter(|&d| d <= bytes.len() || infos.is_empty())
        .ok_or_else(|| {
            format!(
                "the header ends at byte {header_end}, so the data would start at the next multiple of {alignment}, \
                 past the end of the file ({} bytes): it is truncated",
                bytes.len()
            )
        })?;
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, dims, ty, rel, size) in infos {
        let end = (data_offset as u64).checked_add(rel).and_then(|s| s.checked_add(size));
        match end {
            Some(end) if end <= bytes.len() as u64 => {}
            _ => {
                return Err(format!(
                    "tensor \"{name}\" ({ty}, dims {dims:?}, {size} bytes at offset {rel} of the data, which starts \
                     at byte {data_offset}) runs past the end of the file ({} bytes): it is truncated",
                    bytes.len()
                ))
            }
        }
        let offset = data_offset + rel as usize;
        tensors.push(GgufTensorInfo { name: name.to_string(), dims, ty, offset, bytes: size as usize });
    }
    check_overlaps(&tensors)?;
    Ok(Gguf { file: file.to_string(), version, alignment, metadata, tensors, data_offset })
}

/// No byte of the data may belong to two tensors (empty tensors hold none).
fn check_overlaps(tensors: &[GgufTensorInfo]) -> std::result::Result<(), String> {
    let mut order: Vec<&GgufTensorInfo> = tensors.iter().filter(|t| t.bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.offset < a.offset + a.bytes {
            return Err(format!(
                "tensors \"{}\" (bytes {}..{}) and \"{}\" (bytes {}..{}) overlap",
                a.name,
                a.offset,
                a.offset + a.bytes,
                b.name,
                b.offset,
                b.offset + b.bytes
            ));
        }
    }
    Ok(())
}

/// One value of type `ty` (an array's header and elements when `ty` is an array).
fn read_value(c: &mut Cursor, ty: GgufType, ctx: Context) -> std::result::Result<GgufValue, String> {
    use GgufValue as V;
    Ok(match ty {
        GgufType::U8 => V::U8(c.array::<1>(ctx, "its u8")?[0]),
        GgufType::I8 => V::I8(c.array::<1>(ctx, "its i8")?[0] as i8),
        GgufType::U16 => V::U16(u16::from_le_bytes(c.array(ctx, "its u16")?)),
        GgufType::I16 => V::I16(i16::from_le_bytes(c.array(ctx, "its i16")?)),
        GgufType::U32 => V::U32(u32::from_le_bytes(c.array(ctx, "its u32")?)),
        GgufType::I32 => V::I32(i32::from_le_bytes(c.array(ctx, "its i32")?)),
        GgufType::F32 => V::F32(f32::from_le_bytes(c.array(ctx, "its f32")?)),
        // ggml reads any non-zero byte as true.
        GgufType::Bool => V::Bool(c.array::<1>(ctx, "its bool")?[0] != 0),
        GgufType::String => V::String(c.string(ctx, "its string")?.to_string()),
        GgufType::Array => V::Array(read_array(c, 1, ctx)?),
        GgufType::U64 => V::U64(u64::from_le_bytes(c.array(ctx, "its u64")?)),
        GgufType::I64 => V::I64(i64::from_le_bytes(c.array(ctx, "its i64")?)),
        GgufType::F64 => V::F64(f64::from_le_bytes(c.array(ctx, "its f64")?)),
    })
}

/// Fixed-size elements, `N` bytes each, converted by `f`.
fn fixed<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            f(b)
        })
        .collect()
}

/// An array at nesting depth `depth` (1 for a value's own array): element type, count, elements.
fn read_array<'a>(c: &mut Cursor<'a>, depth: usize, ctx: Context) -> std::result::Result<GgufArray, String> {
    use GgufArray as A;
    if depth > MAX_ARRAY_DEPTH {
        return Err(format!("{}: arrays nest more than {MAX_ARRAY_DEPTH} deep", ctx()));
    }
    let id = c.u32(ctx, "its array's element type")?;
    let elem = GgufType::from_id(id)
        .ok_or_else(|| format!("{}: array element type {id} is not a GGUF type (0 to 12)", ctx()))?;
    let at = c.pos;
    let n = c.u64(ctx, "its array's length")?;
    let min = elem.min_size() as u64;
    let n = match n.checked_mul(min) {
        Some(b) if b <= c.left() as u64 => n as usize,
        _ => {
            return Err(format!(
                "{}: an array of {n} {elem} elements (length at byte {at}) needs at least {min} bytes each, but the \
                 file has only {} bytes left: it is truncated or corrupt",
                ctx(),
                c.left()
            ))
        }
    };
    let raw = |c: &mut Cursor<'a>, size: usize| c.take((n * size) as u64, ctx, "its array");
    Ok(match elem {
        GgufType::U8 => A::U8(raw(c, 1)?.to_vec()),
        GgufType::I8 => A::I8(raw(c, 1)?.iter().map(|&b| b as i8).collect()),
        GgufType::Bool => A::Bool(raw(c, 1)?.iter().map(|&b| b != 0).collect()),
        GgufType::U16 => A::U16(fixed(raw(c, 2)?, u16::from_le_bytes)),
        GgufType::I16 => A::I16(fixed(raw(c, 2)?, i16::from_le_bytes)),
        GgufType::U32 => A::U32(fixed(raw(c, 4)?, u32::from_le_bytes)),
        GgufType::I32 => A::I32(fixed(raw(c, 4)?, i32::from_le_bytes)),
        GgufType::F32 => A::F32(fixed(raw(c, 4)?, f32::from_le_bytes)),
        GgufType::U64 => A::U64(fixed(raw(c, 8)?, u64::from_le_bytes)),
        GgufType::I64 => A::I64(fixed(raw(c, 8)?, i64::from_le_bytes)),
        GgufType::F64 => A::F64(fixed(raw(c, 8)?, f64::from_le_bytes)),
        GgufType::String => {
            let mut items = Vec::with_capacity(n);
            for j in 0..n {
                items.push(c.string(&|| format!("{}, array element {j}", ctx()), "its string")?.to_string());
            }
            A::String(items)
        }
        GgufType::Array => {
            let mut items = Vec::with_capacity(n);
            for j in 0..n {
                items.push(read_array(c, depth + 1, &|| format!("{}, array element {j}", ctx()))?);
            }
            A::Array(items)
        }
    })
}
