//! A 4-bit base in a safetensors file, as bitsandbytes' `Linear4bit.state_dict()` lays it out and
//! `safetensors.torch.save_file` writes it (`../shared/QLORA.md`). For a quantised Linear `P`, in place
//! of `P.weight` f32:
//!
//! | key | dtype, shape |
//! |---|---|
//! | `P.weight` | U8 `[(out·in + 1) / 2, 1]`, packed codes, the first of two in the high nibble |
//! | `P.weight.absmax` | F32 `[blocks]`, or U8 `[blocks]` with double quantisation |
//! | `P.weight.quant_map` | F32 `[16]`, the NF4 values |
//! | `P.weight.nested_absmax`, `P.weight.nested_quant_map` | F32 `[⌈blocks/256⌉]`, F32 `[256]` (double quantisation only) |
//! | `P.weight.quant_state.bitsandbytes__nf4` | U8 bytes of the JSON of `QuantState.as_dict(packed=True)`'s non-tensor items |
//!
//! The JSON is written as Python's `json.dumps` writes it, in `as_dict`'s key order:
//! `{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [out, in]}`, with double
//! quantisation followed by `"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": <repr>`.
//! Every other tensor (biases, norms, embeddings, unquantised Linears) stays F32 under its usual key.
//!
//! Reading is strict: each expected Linear must be there, quantised, with every key at its dtype and
//! shape; the JSON must say nf4, blocksize 64, float32 and the Linear's shape, and carry the nested keys
//! exactly when the absmax is U8 and the nested tensors are there; `quant_map` must be the NF4 table
//! (bitsandbytes decodes nf4 with its own table whatever the file holds, so another one would mean
//! something else here than there). Errors name the file and the key.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::tensors::{read_tensors, write_tensors, AnyTensor, Data, Tensor, Values};
use crate::lora::Module;
use crate::quant::{Absmax, DoubleQuant, QuantizedWeight, BLOCK, NESTED_BLOCK, NF4};
use crate::{LabError, Result};

/// The quant state key's suffix for NF4 (`quant_state.bitsandbytes__` + quant_type).
pub const QUANT_STATE: &str = "quant_state.bitsandbytes__nf4";
const QUANT_STATE_PREFIX: &str = "quant_state.bitsandbytes__";
/// The suffixes under `P.weight.` a quantised Linear may have.
const SUFFIXES: [&str; 5] = ["absmax", "quant_map", "nested_absmax", "nested_quant_map", QUANT_STATE];

/// What a 4-bit file holds: the quantised Linears by module name, and every other tensor (F32).
#[derive(Clone, Debug, PartialEq)]
pub struct Nf4Tensors {
    pub quantized: BTreeMap<String, QuantizedWeight>,
    pub tensors: BTreeMap<String, Tensor>,
}

/// The keys a quantised Linear `module` occupies, in the order [`nf4_tensors`] lists them.
pub fn nf4_keys(module: &str, double_quant: bool) -> Vec<String> {
    let mut keys = vec![format!("{module}.weight"), format!("{module}.weight.absmax")];
    keys.push(format!("{module}.weight.quant_map"));
    if double_quant {
        keys.push(format!("{module}.weight.nested_absmax"));
        keys.push(format!("{module}.weight.nested_quant_map"));
    }
    keys.push(format!("{module}.weight.{QUANT_STATE}"));
    keys
}

/// The quant state JSON of `w`, byte for byte as bitsandbytes writes it.
pub fn quant_state_json(w: &QuantizedWeight) -> String {
    let mut s = format!(
        "{{\"quant_type\": \"nf4\", \"blocksize\": {BLOCK}, \"dtype\": \"float32\", \"shape\": [{}, {}]",
        w.rows(),
        w.cols()
    );
    if let Absmax::Double(d) = w.absmax() {
        s += &format!(
            ", \"nested_blocksize\": {NESTED_BLOCK}, \"nested_dtype\": \"float32\", \"nested_offset\": {}",
            python_float_repr(d.offset as f64)
        );
    }
    s.push('}');
    s
}

/// A quantised Linear's tensors, as (key, shape, values) in [`nf4_keys`] order. `json` must be
/// [`quant_state_json`]`(w)` (the caller keeps it alive).
fn nf4_tensors<'a>(module: &str, w: &'a QuantizedWeight, json: &'a str) -> Vec<(String, Vec<usize>, Values<'a>)> {
    let keys = nf4_keys(module, w.double_quant());
    let mut values = vec![(vec![w.packed().len(), 1], Values::U8(w.packed()))];
    match w.absmax() {
        Absmax::Plain(a) => values.push((vec![a.len()], Values::F32(a))),
        Absmax::Double(d) => values.push((vec![d.codes.len()], Values::U8(&d.codes))),
    }
    values.push((vec![NF4.len()], Values::F32(&NF4)));
    if let Absmax::Double(d) = w.absmax() {
        values.push((vec![d.nested_absmax.len()], Values::F32(&d.nested_absmax)));
        values.push((vec![d.nested_map.len()], Values::F32(&d.nested_map)));
    }
    values.push((vec![json.len()], Values::U8(json.as_bytes())));
    keys.into_iter().zip(values).map(|(k, (s, v))| (k, s, v)).collect()
}

/// A safetensors file with the `quantized` Linears in bitsandbytes' layout and the F32 `tensors`
/// beside them, with `{"format": "pt"}` metadata as PyTorch writes. Two exports are byte-identical.
pub fn write_nf4_safetensors(
    quantized: &[(&str, &QuantizedWeight)],
    tensors: &[(String, Vec<usize>, &[f32])],
) -> Result<Vec<u8>> {
    let jsons: Vec<String> = quantized.iter().map(|(_, w)| quant_state_json(w)).collect();
    let mut all: Vec<(String, Vec<usize>, Values)> = Vec::new();
    for ((module, w), json) in quantized.iter().zip(&jsons) {
        all.extend(nf4_tensors(module, w, json));
    }
    all.extend(tensors.iter().map(|(n, s, d)| (n.clone(), s.clone(), Values::F32(d))));
    write_tensors(&all, Some(HashMap::from([("format".to_string(), "pt".to_string())])))
}

/// Reads a file holding each of `linears` quantised (see the module's notes for what is checked).
/// Every other tensor must be F32 and is returned as it is, for the caller to check against its model.
pub fn read_nf4_safetensors(bytes: &[u8], file: &str, linears: &[Module]) -> Result<Nf4Tensors> {
    let mut map = read_tensors(bytes, file)?;
    let bad = |reason: String| LabError::file(file, reason);
    let mut quantized = BTreeMap::new();
    for m in linears {
        let w = read_linear(&mut map, m).map_err(bad)?;
        quantized.insert(m.name.clone(), w);
    }
    // What is left: no quant state of a Linear not expected, nothing else but F32.
    let names: Vec<&str> = linears.iter().map(|m| m.name.as_str()).collect();
    for (key, t) in &map {
        let module = key.find(".weight.").map(|i| &key[..i]);
        let quant_key = module.is_some_and(|m| {
            let suffix = &key[m.len() + ".weight.".len()..];
            SUFFIXES.contains(&suffix) || suffix.starts_with(QUANT_STATE_PREFIX)
        });
        if quant_key {
            return Err(bad(format!(
                "unexpected {key}: {} is not one of the quantised Linears ({})",
                module.unwrap_or_default(),
                names.join(", ")
            )));
        }
        if let Data::U8(_) = t.data {
            return Err(bad(format!(
                "tensor {key} is U8 {:?}: only the quantised Linears' weights and quant states are U8",
                t.shape
            )));
        }
    }
    let tensors = map
        .into_iter()
        .map(|(k, t)| match t.data {
            Data::F32(data) => (k, Tensor { shape: t.shape, data }),
            Data::U8(_) => unreachable!("refused above"),
        })
        .collect();
    Ok(Nf4Tensors { quantized, tensors })
}

fn dtype(t: &AnyTensor) -> &'static str {
    match t.data {
        Data::F32(_) => "F32",
        Data::U8(_) => "U8",
    }
}

/// Takes module `m`'s keys out of `map` and checks them. Reasons name the key.
fn read_linear(map: &mut BTreeMap<String, AnyTensor>, m: &Module) -> std::result::Result<QuantizedWeight, String> {
    let p = &m.name;
    let (rows, cols) = (m.out_features, m.in_features);
    let n = rows * cols;
    let blocks = n.div_ceil(BLOCK);
    let key = |suffix: &str| format!("{p}.weight.{suffix}");
    let weight_key = format!("{p}.weight");
    let state_key = key(QUANT_STATE);

    // Another quant type's state, before anything else: it explains every other difference.
    let other_state = map.keys().find(|k| k.starts_with(&key(QUANT_STATE_PREFIX)) && **k != state_key).cloned();
    if let Some(k) = other_state {
        let qt = &k[key(QUANT_STATE_PREFIX).len()..];
        return Err(format!("{k}: quant type \"{qt}\" is not supported; only nf4 is"));
    }
    if let Some(t) = map.get(&weight_key) {
        if let Data::F32(_) = t.data {
            return Err(format!(
                "{weight_key} is F32 {:?}: this Linear is not quantised (expected packed NF4 codes, U8 [{}, 1], \
                 and its quant state)",
                t.shape,
                n.div_ceil(2)
            ));
        }
    }
    let missing: Vec<String> = [weight_key.clone(), key("absmax"), key("quant_map"), state_key.clone()]
        .into_iter()
        .filter(|k| !map.contains_key(k))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing {} (the quantised Linear {p})", missing.join(", ")));
    }

    // The quant state says what the tensors must be.
    let state = map.remove(&state_key).expect("checked");
    let Data::U8(state_bytes) = &state.data else {
        return Err(format!("{state_key} is {}; the quant state is U8 bytes of JSON", dtype(&state)));
    };
    if state.shape.len() != 1 {
        return Err(format!("{state_key} has shape {:?}; the quant state is a 1-D U8 tensor", state.shape));
    }
    let offset = parse_quant_state(state_bytes, rows, cols).map_err(|r| format!("{state_key}: {r}"))?;
    let nested_keys = [key("nested_absmax"), key("nested_quant_map")];

    let packed = take_u8(map, &weight_key, &[n.div_ceil(2), 1], || {
        format!("the packed NF4 codes of a {rows} × {cols} Linear ({n} values, two per byte)")
    })?;
    let quant_map = take_f32(map, &key("quant_map"), &[16], || "the 16 NF4 values".to_string())?;
    if let Some(i) = (0..16).find(|&i| quant_map[i].to_bits() != NF4[i].to_bits()) {
        return Err(format!(
            "{}: value {i} is {}, NF4's is {}; bitsandbytes decodes nf4 codes with its own table, so a file \
             with another one is refused",
            key("quant_map"),
            quant_map[i],
            NF4[i]
        ));
    }
    let absmax_key = key("absmax");
    let absmax_dtype = dtype(&map[&absmax_key]);
    let absmax = match (absmax_dtype, offset) {
        ("F32", None) => {
            if let Some(k) = nested_keys.iter().find(|k| map.contains_key(*k)) {
                return Err(format!(
                    "{k} is there but {absmax_key} is F32 and {state_key} has no nested_* keys: \
                     without double quantisation there is no nested state"
                ));
            }
            Absmax::Plain(take_f32(map, &absmax_key, &[blocks], || format!("one absmax per block of {BLOCK}"))?)
        }
        ("U8", Some(offset)) => {
            let missing: Vec<&str> = nested_keys.iter().filter(|k| !map.contains_key(*k)).map(|k| k.as_str()).collect();
            if !missing.is_empty() {
                let verb = if missing.len() > 1 { "are" } else { "is" };
                return Err(format!(
                    "{absmax_key} is U8 (double quantisation) but {} {verb} missing",
                    missing.join(" and ")
                ));
            }
            let codes = take_u8(map, &absmax_key, &[blocks], || format!("one absmax code per block of {BLOCK}"))?;
            let nested_absmax = take_f32(map, &nested_keys[0], &[blocks.div_ceil(NESTED_BLOCK)], || {
                format!("one nested absmax per {NESTED_BLOCK} blocks")
            })?;
            let nested_map = take_f32(map, &nested_keys[1], &[256], || "the 256 values of an 8-bit map".to_string())?;
            Absmax::Double(DoubleQuant { codes, nested_absmax, nested_map, offset })
        }
        ("U8", None) => {
            return Err(format!(
                "{absmax_key} is U8 (double-quantised codes) but {state_key} has no nested_offset, \
                 nested_blocksize or nested_dtype: the absmax cannot be decoded"
            ))
        }
        (_, Some(_)) => {
            return Err(format!(
                "{absmax_key} is {absmax_dtype} but {state_key} describes double quantisation (nested_*): \
                 the absmax must be U8 codes"
            ))
        }
        (other, None) => {
            return Err(format!("{absmax_key} is {other}; the absmax is F32 (or U8 with double quantisation)"))
        }
    };
    QuantizedWeight::from_parts(rows, cols, packed, absmax).map_err(|r| format!("{p}.weight: {r}"))
}

fn take_u8(
    map: &mut BTreeMap<String, AnyTensor>,
    key: &str,
    shape: &[usize],
    what: impl Fn() -> String,
) -> std::result::Result<Vec<u8>, String> {
    let t = map.remove(key).ok_or_else(|| format!("missing {key}"))?;
    if t.shape != shape {
        return Err(format!("{key} has shape {:?}; {} are {shape:?}", t.shape, what()));
    }
    match t.data {
        Data::U8(v) => Ok(v),
        Data::F32(_) => Err(format!("{key} is F32; {} are U8", what())),
    }
}

fn take_f32(
    map: &mut BTreeMap<String, AnyTensor>,
    key: &str,
    shape: &[usize],
    what: impl Fn() -> String,
) -> std::result::Result<Vec<f32>, String> {
    let t = map.remove(key).ok_or_else(|| format!("missing {key}"))?;
    if t.shape != shape {
        return Err(format!("{key} has shape {:?}; {} are {shape:?}", t.shape, what()));
    }
    match t.data {
        Data::F32(v) => {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(format!("{key} holds a non-finite value ({}) at index {i}", v[i]));
            }
            Ok(v)
        }
        Data::U8(_) => Err(format!("{key} is U8; {} are F32", what())),
    }
}

/// Checks the quant state JSON against a `rows` × `cols` Linear; returns the nested offset when it
/// describes double quantisation.
fn parse_quant_state(bytes: &[u8], rows: usize, cols: usize) -> std::result::Result<Option<f32>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(obj) = &value else {
        return Err("not a JSON object".to_string());
    };
    const KEYS: [&str; 7] =
        ["quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key \"{k}\" (a quant state has {})", KEYS.join(", ")));
    }
    let field = |k: &str| obj.get(k).ok_or_else(|| format!("{k} is missing"));
    let string = |k: &str| field(k)?.as_str().ok_or_else(|| format!("{k} is {}, not a string", field(k).unwrap()));
    let quant_type = string("quant_type")?;
    if quant_type != "nf4" {
        return Err(format!("quant_type is \"{quant_type}\"; only \"nf4\" is supported"));
    }
    let blocksize = field("blocksize")?;
    if blocksize.as_u64() != Some(BLOCK as u64) {
        return Err(format!("blocksize is {blocksize}; only {BLOCK} (QLoRA's) is supported"));
    }
    let dt = string("dtype")?;
    if dt != "float32" {
        return Err(format!("dtype is \"{dt}\"; only \"float32\" is supported (the weight dequantises to it)"));
    }
    let shape = field("shape")?;
    let dims: Option<Vec<u64>> = shape.as_array().and_then(|a| a.iter().map(Value::as_u64).collect());
    if dims.as_deref() != Some(&[rows as u64, cols as u64][..]) {
        return Err(format!(
            "shape is {shape}, but the Linear is {rows} × {cols} (out × in): expected [{rows}, {cols}]"
        ));
    }
    nested(obj)
}

/// The nested keys: all three or none.
fn nested(obj: &Map<String, Value>) -> std::result::Result<Option<f32>, String> {
    let keys = ["nested_blocksize", "nested_dtype", "nested_offset"];
    let present: Vec<&str> = keys.iter().copied().filter(|k| obj.contains_key(*k)).collect();
    if present.is_empty() {
        return Ok(None);
    }
    if present.len() < keys.len() {
        let absent: Vec<&str> = keys.iter().copied().filter(|k| !obj.contains_key(*k)).collect();
        return Err(format!("{} without {}", present.join(", "), absent.join(", ")));
    }
    let bs = &obj["nested_blocksize"];
    if bs.as_u64() != Some(NESTED_BLOCK as u64) {
        return Err(format!("nested_blocksize is {bs}; only {NESTED_BLOCK} (bitsandbytes') is supported"));
    }
    let dt = &obj["nested_dtype"];
    if dt.as_str() != Some("float32") {
        return Err(format!("nested_dtype is {dt}; only \"float32\" is supported"));
    }
    let off = &obj["nested_offset"];
    // bitsandbytes reads it as `torch.tensor(float(offset))`: an f32.
    match off.as_f64().map(|v| v as f32) {
        Some(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!("nested_offset is {off}, not a finite number")),
    }
}

/// `repr(x)` of a Python float, which `json.dumps` writes: the shortest digits that read back to `x`,
/// positional for decimal exponents −4 to 15, else `d.ddde±XX` (at least two exponent digits).
pub fn python_float_repr(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits, as d.ddd…e<exp>.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    let body = if (-4..16).contains(&exp) {
        if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        format!("{first}{frac}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    };
    format!("{sign}{body}")
}
