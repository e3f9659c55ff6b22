//! Our own reading of a safetensors header, done before the `safetensors` crate sees the bytes.
//!
//! The crate rejects every malformed file, but some of its errors carry no tensor name or no
//! numbers (`TensorInvalidInfo`, `MetadataIncompleteBuffer`), and it lumps overlaps, gaps and
//! out-of-range offsets together. A person holding a broken `adapter_model.safetensors` needs to
//! know which tensor is wrong and how, so we check the layout ourselves and say so; the crate stays
//! the final authority (see `tensors::read_safetensors`).
//!
//! Layout: 8-byte little-endian header length n, n bytes of JSON
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}?}`, then the data, whose
//! tensors must tile it exactly (offsets relative to the start of the data).

use serde_json::{Map, Value};

/// One tensor's entry in the header.
pub(crate) struct Entry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub begin: usize,
    pub end: usize,
}

/// Size of the header-length prefix.
const N_LEN: usize = 8;

/// The dtypes a reader accepts, with their sizes, and what to say of any other.
pub(crate) struct Dtypes {
    pub allowed: &'static [(&'static str, usize)],
    /// Follows "tensor X has dtype Y; ".
    pub refusal: &'static str,
}

/// What every reader but the 4-bit one takes.
pub(crate) const F32_ONLY: Dtypes =
    Dtypes { allowed: &[("F32", 4)], refusal: "only F32 is supported (convert it with tensor.float() before saving)" };

/// Checks everything about the file's layout that the crate would otherwise report vaguely, for F32
/// tensors only. Errors are reasons without the file name (the caller adds it).
pub(crate) fn check(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    check_with(bytes, &F32_ONLY)
}

/// [`check`], for tensors of any of `dtypes`.
pub(crate) fn check_with(bytes: &[u8], dtypes: &Dtypes) -> Result<Vec<Entry>, String> {
    if bytes.len() < N_LEN {
        return Err(format!(
            "file is {} bytes, too short for a safetensors file (it must start with an 8-byte header length)",
            bytes.len()
        ));
    }
    let mut len_bytes = [0u8; N_LEN];
    len_bytes.copy_from_slice(&bytes[..N_LEN]);
    let n = u64::from_le_bytes(len_bytes);
    let available = (bytes.len() - N_LEN) as u64;
    if n > available {
        return Err(format!(
            "header length {n} runs past the end of the file ({} bytes, so at most {available} for the header): \
             the file is truncated or not safetensors",
            bytes.len()
        ));
    }
    let header_end = N_LEN + n as usize;
    let text = std::str::from_utf8(&bytes[N_LEN..header_end]).map_err(|e| format!("header is not valid UTF-8: {e}"))?;
    let json: Value = serde_json::from_str(text).map_err(|e| format!("header is not valid JSON: {e}"))?;
    let Value::Object(map) = json else {
        return Err("header is not a JSON object of tensors".to_string());
    };
    let data_len = bytes.len() - header_end;

    let mut entries = Vec::with_capacity(map.len());
    for (name, value) in &map {
        if name == "__metadata__" {
            check_metadata(value)?;
            continue;
        }
        let entry = parse_entry(name, value)?;
        check_entry(&entry, data_len, dtypes)?;
        entries.push(entry);
    }
    check_tiling(&mut entries, data_len)?;
    Ok(entries)
}

fn check_metadata(value: &Value) -> Result<(), String> {
    match value {
        Value::Object(m) if m.values().all(Value::is_string) => Ok(()),
        _ => Err("__metadata__ must be an object whose values are all strings".to_string()),
    }
}

fn parse_entry(name: &str, value: &Value) -> Result<Entry, String> {
    let obj: &Map<String, Value> =
        value.as_object().ok_or_else(|| format!("tensor {name}: header entry is not an object"))?;
    let field = |key: &str| obj.get(key).ok_or_else(|| format!("tensor {name}: header entry has no \"{key}\""));
    let dtype = field("dtype")?.as_str().ok_or_else(|| format!("tensor {name}: dtype is not a string"))?.to_string();
    let shape = usizes(field("shape")?)
        .ok_or_else(|| format!("tensor {name}: shape is not a list of non-negative integers"))?;
    let offsets = usizes(field("data_offsets")?)
        .filter(|o| o.len() == 2)
        .ok_or_else(|| format!("tensor {name}: data_offsets is not a pair of non-negative integers"))?;
    Ok(Entry { name: name.to_string(), dtype, shape, begin: offsets[0], end: offsets[1] })
}

fn usizes(value: &Value) -> Option<Vec<usize>> {
    value.as_array()?.iter().map(|v| v.as_u64().and_then(|x| usize::try_from(x).ok())).collect()
}

/// Per tensor: an allowed dtype, offsets in order and inside the data, byte count matching the shape.
fn check_entry(e: &Entry, data_len: usize, dtypes: &Dtypes) -> Result<(), String> {
    let name = &e.name;
    let Some(&(_, size)) = dtypes.allowed.iter().find(|(d, _)| *d == e.dtype) else {
        return Err(format!("tensor {name} has dtype {}; {}", e.dtype, dtypes.refusal));
    };
    if e.end < e.begin {
        return Err(format!("tensor {name}: data_offsets [{}, {}] end before they begin", e.begin, e.end));
    }
    if e.end > data_len {
        return Err(format!(
            "tensor {name}: data_offsets [{}, {}] are out of range: the data after the header is only {data_len} bytes \
             (the file may be truncated)",
            e.begin, e.end
        ));
    }
    let needed = e
        .shape
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor {name}: shape {:?} is too large", e.shape))?;
    let held = e.end - e.begin;
    if needed != held {
        return Err(format!(
            "tensor {name}: shape {:?} needs {needed} bytes of {} but data_offsets [{}, {}] hold {held}",
            e.shape, e.dtype, e.begin, e.end
        ));
    }
    Ok(())
}

/// The tensors must tile the data: first at 0, each starting where the previous ends, the last
/// ending at the end of the file. Sorts `entries` by offset.
fn check_tiling(entries: &mut [Entry], data_len: usize) -> Result<(), String> {
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut pos = 0usize;
    let mut prev: Option<&Entry> = None;
    for e in entries.iter() {
        match prev {
            Some(p) if e.begin < pos => {
                return Err(format!(
                    "tensors {} [{}, {}] and {} [{}, {}] overlap; each byte of data must belong to one tensor",
                    p.name, p.begin, p.end, e.name, e.begin, e.end
                ))
            }
            Some(p) if e.begin > pos => {
                return Err(format!(
                "offsets are not contiguous: {} bytes unaccounted for between {} (ends at {}) and {} (begins at {})",
                e.begin - pos,
                p.name,
                p.end,
                e.name,
                e.begin
            ))
            }
            None if e.begin != 0 => {
                return Err(format!(
                    "offsets are not contiguous: the first tensor, {}, begins at {} instead of 0",
                    e.name, e.begin
                ))
            }
            _ => {}
        }
        pos = e.end;
        prev = Some(e);
    }
    if pos != data_len {
        return Err(format!(
            "{} bytes of data after the last tensor (the tensors cover {pos} of {data_len}); \
             the header and the data do not match",
            data_len - pos
        ));
    }
    Ok(())
}
