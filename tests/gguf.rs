#![cfg(not(target_arch = "wasm32"))]
//! GGUF in and out (src/io/gguf/) and ggml's block types (src/quant/ggml.rs):
//! - round trips: every metadata value type, empty and nested arrays, every tensor type, alignments from
//!   1 to 256 — read(write(x)) gives x back and writing it again gives the same bytes;
//! - a table of broken files, each refused with a message naming the file and the key or tensor, and
//!   every truncation and many one-byte corruptions of a small file answered without a panic;
//! - the pretrained model's file (`www/data/SmolLM2-135M-Instruct.Q4_1.gguf`, from `./build.sh setup`):
//!   the facts `PRETRAINED.md` states, its metadata and the dequantised values of all 272 tensors equal to
//!   what Python's `gguf` package reads (fixtures/gguf/, made by its make_fixture.py), and written again
//!   byte for byte;
//! - dequantisation of synthetic blocks of every type, and ggml's reference quantisers, bit for bit
//!   against gguf-py.

use std::sync::OnceLock;

use lora_lab::io::gguf::{MAX_ARRAY_DEPTH, MAX_NAME};
use lora_lab::io::{read_gguf, write_gguf, Gguf, GgufArray, GgufTensorData, GgufValue};
use lora_lab::quant::ggml::{dequantize, dequantize_run, quantize};
use lora_lab::quant::GgmlType;
use lora_lab::LabError;
use serde_json::Value;

const FILE: &str = "model.gguf";

// ---------- helpers ----------

/// The pretrained model's file, read once.
fn model_file() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/www/data/SmolLM2-135M-Instruct.Q4_1.gguf");
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}: run ./build.sh setup"))
    })
}

fn fixture() -> &'static Value {
    static FIXTURE: OnceLock<Value> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gguf/fixture.json"))
            .expect("tests/fixtures/gguf/fixture.json");
        serde_json::from_str(&text).expect("fixture.json parses")
    })
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn ggml_type(name: &str) -> GgmlType {
    GgmlType::ALL.into_iter().find(|t| t.name() == name).unwrap_or_else(|| panic!("type {name}"))
}

/// The message of a file error about [`FILE`] (anything else fails the test).
fn refusal<T: std::fmt::Debug>(r: lora_lab::Result<T>) -> String {
    match r {
        Err(e @ LabError::BadFile { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{FILE}: ")), "error does not name the file: {msg}");
            msg
        }
        other => panic!("expected a file error, got {other:?}"),
    }
}

/// SHA-256 (FIPS 180-4), for the fixture's digests without a dependency.
struct Sha256 {
    h: [u32; 8],
    buf: Vec<u8>,
    len: u64,
}

impl Sha256 {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    fn new() -> Self {
        let h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
        Self { h, buf: Vec::with_capacity(64), len: 0 }
    }

    fn block(&mut self, b: &[u8]) {
        let mut w = [0u32; 64];
        for (i, c) in b.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.h;
        for (&k, &wi) in Self::K.iter().zip(&w) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h.wrapping_add(s1).wrapping_add(ch).wrapping_add(k).wrapping_add(wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let t2 = s0.wrapping_add((a & b) ^ (a & c) ^ (b & c));
            (h, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (x, y) in self.h.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *x = x.wrapping_add(y);
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.buf.is_empty() {
            let take = (64 - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == 64 {
                let b = std::mem::take(&mut self.buf);
                self.block(&b);
            }
        }
        let mut chunks = data.chunks_exact(64);
        for c in &mut chunks {
            self.block(c);
        }
        self.buf.extend_from_slice(chunks.remainder());
    }

    fn hex(mut self) -> String {
        let bit_len = self.len * 8;
        self.update(&[0x80]);
        while self.buf.len() != 56 {
            self.update(&[0]);
        }
        self.update(&bit_len.to_be_bytes());
        self.h.iter().map(|x| format!("{x:08x}")).collect()
    }
}

fn sha256(data: &[u8]) -> String {
    let mut s = Sha256::new();
    s.update(data);
    s.hex()
}

/// SHA-256 of values as little-endian f32, hashed a chunk at a time.
fn sha256_f32(values: &[f32]) -> String {
    let mut s = Sha256::new();
    for chunk in values.chunks(4096) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        s.update(&bytes);
    }
    s.hex()
}

#[test]
fn sha256_known_answers() {
    assert_eq!(sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(sha256(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    let long = vec![b'a'; 1000];
    let mut split = Sha256::new();
    split.update(&long[..3]);
    split.update(&long[3..130]);
    split.update(&long[130..]);
    assert_eq!(split.hex(), sha256(&long));
    assert_eq!(sha256(&long), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

// ---------- small files ----------

/// Every value type once, empty arrays of several types, nested arrays of mixed element types.
fn every_value() -> Vec<(String, GgufValue)> {
    use GgufArray as A;
    use GgufValue as V;
    let values = vec![
        V::U8(200),
        V::I8(-100),
        V::U16(60000),
        V::I16(-30000),
        V::U32(4_000_000_000),
        V::I32(-2_000_000_000),
        V::F32(-1.5e-7),
        V::Bool(true),
        V::Bool(false),
        V::String("llama ✓ 🦙".into()),
        V::String(String::new()),
        V::U64(u64::MAX),
        V::I64(i64::MIN),
        V::F64(std::f64::consts::PI),
        V::Array(A::U8(vec![0, 1, 255])),
        V::Array(A::I8(vec![-128, 127])),
        V::Array(A::U16(vec![1, 65535])),
        V::Array(A::I16(vec![-1, 2])),
        V::Array(A::U32(vec![7; 5])),
        V::Array(A::I32(vec![-7, 0, 7])),
        V::Array(A::F32(vec![0.5, -0.0, f32::INFINITY, f32::MIN_POSITIVE / 4.0])),
        V::Array(A::Bool(vec![true, false, true])),
        V::Array(A::String(vec!["<|im_start|>".into(), "Ġthe".into(), String::new()])),
        V::Array(A::U64(vec![u64::MAX, 0])),
        V::Array(A::I64(vec![i64::MIN, i64::MAX])),
        V::Array(A::F64(vec![1e300, -2.5])),
        V::Array(A::String(vec![])),
        V::Array(A::F32(vec![])),
        V::Array(A::Array(vec![])),
        V::Array(A::Array(vec![
            A::U32(vec![1, 2]),
            A::String(vec!["x".into()]),
            A::Array(vec![A::Bool(vec![true]), A::I8(vec![])]),
            A::Array(vec![]),
        ])),
    ];
    values.into_iter().enumerate().map(|(i, v)| (format!("test.{i}.{}", v.ty()), v)).collect()
}

/// Tensors of every type: quantised from a ramp (K-quants: bytes with finite scales), odd shapes,
/// a scalar (no dims), an empty tensor, four dims.
fn every_tensor() -> Vec<(String, Vec<u64>, GgmlType, Vec<u8>)> {
    let ramp = |n: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7919) % 97) as f32 / 13.0 - 3.5).collect() };
    let k_blocks = |ty: GgmlType, n_blocks: usize| -> Vec<u8> {
        let mut b: Vec<u8> = (0..n_blocks * ty.block_bytes()).map(|i| (i * 131 % 251) as u8).collect();
        for blk in b.chunks_exact_mut(ty.block_bytes()) {
            let at = if ty == GgmlType::Q6_K { 208 } else { 0 };
            blk[at..at + 2].copy_from_slice(&0x2e66u16.to_le_bytes()); // f16 0.1
            if ty == GgmlType::Q4_K {
                blk[2..4].copy_from_slice(&0x2a66u16.to_le_bytes());
            }
        }
        b
    };
    let mut out = Vec::new();
    for (ty, dims) in [
        (GgmlType::F32, vec![3u64, 2]),
        (GgmlType::F16, vec![5]),
        (GgmlType::BF16, vec![2, 1, 3]),
        (GgmlType::Q4_0, vec![32, 3]),
        (GgmlType::Q4_1, vec![64, 2, 1, 1]),
        (GgmlType::Q8_0, vec![32]),
        (GgmlType::F32, vec![]),
        (GgmlType::Q4_1, vec![32, 0]),
    ] {
        let n = dims.iter().product::<u64>() as usize;
        let data = quantize(ty, &ramp(n)).unwrap();
        out.push((format!("t.{}.{}", ty, dims.len()), dims, ty, data));
    }
    out.push(("k.q4_k".into(), vec![256, 2], GgmlType::Q4_K, k_blocks(GgmlType::Q4_K, 2)));
    out.push(("k.q6_k".into(), vec![512], GgmlType::Q6_K, k_blocks(GgmlType::Q6_K, 2)));
    out
}

fn write(metadata: &[(String, GgufValue)], tensors: &[(String, Vec<u64>, GgmlType, Vec<u8>)]) -> Vec<u8> {
    let t: Vec<GgufTensorData> =
        tensors.iter().map(|(n, d, ty, b)| GgufTensorData { name: n, dims: d, ty: *ty, data: b }).collect();
    write_gguf(metadata, &t).unwrap()
}

fn small_file() -> Vec<u8> {
    let mut meta = vec![("general.architecture".to_string(), GgufValue::String("llama".into()))];
    meta.push(("llama.block_count".into(), GgufValue::U32(2)));
    meta.push(("tokenizer.ggml.tokens".into(), GgufValue::Array(GgufArray::String(vec!["a".into(), "b".into()]))));
    let tensors = vec![
        (
            "blk.0.attn_q.weight".to_string(),
            vec![32u64, 2],
            GgmlType::Q4_1,
            quantize(GgmlType::Q4_1, &[0.25; 64]).unwrap(),
        ),
        ("output_norm.weight".to_string(), vec![3], GgmlType::F32, quantize(GgmlType::F32, &[1.0, 2.0, 3.0]).unwrap()),
    ];
    write(&meta, &tensors)
}

#[test]
fn every_value_and_tensor_type_round_trips_at_every_alignment() {
    let tensors = every_tensor();
    for alignment in [None, Some(1u32), Some(8), Some(32), Some(64), Some(256)] {
        let mut meta = every_value();
        if let Some(a) = alignment {
            meta.insert(3, ("general.alignment".into(), GgufValue::U32(a)));
        }
        let bytes = write(&meta, &tensors);
        let a = alignment.unwrap_or(32) as usize;
        assert_eq!(bytes.len() % a, 0, "the file ends padded to {a}");
        let g = read_gguf(&bytes, FILE).unwrap();
        assert_eq!((g.version, g.alignment, g.file.as_str()), (3, a, FILE));
        assert_eq!(g.metadata, meta, "metadata at alignment {a}");
        assert_eq!(g.data_offset % a, 0);
        assert_eq!(g.tensors.len(), tensors.len());
        let mut end = g.data_offset;
        for (i, (info, (name, dims, ty, data))) in g.tensors.iter().zip(&tensors).enumerate() {
            assert_eq!((&info.name, &info.dims, info.ty, info.bytes), (name, dims, *ty, data.len()));
            assert_eq!(info.offset, end.next_multiple_of(a), "{name}: laid out in order, each aligned");
            assert_eq!(g.tensor_bytes(&bytes, i).unwrap(), &data[..]);
            end = info.offset + info.bytes;
        }
        assert_eq!(g.write(&bytes).unwrap(), bytes, "written again at alignment {a}");
    }
}

#[test]
fn tensor_helpers() {
    let bytes = small_file();
    let g = read_gguf(&bytes, FILE).unwrap();
    let (i, t) = g.find_tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!((i, t.n_elements(), t.shape()), (0, 64, vec![2, 32]));
    assert_eq!(dequantize(t.ty, g.tensor_bytes(&bytes, i).unwrap(), t.n_elements()), vec![0.25; 64]);
    assert_eq!(g.tensor("output_norm.weight").unwrap().shape(), vec![3]);
    let msg = refusal(g.tensor("output.weight"));
    assert_eq!(msg, "model.gguf: there is no tensor \"output.weight\"");
    let msg = refusal(g.tensor_bytes(&bytes[..100], 1));
    assert!(msg.contains("tensor \"output_norm.weight\" lies at bytes"), "{msg}");
    assert!(refusal(g.tensor_bytes(&bytes, 2)).contains("no tensor #2 (2 in all)"));
}

#[test]
fn typed_getters() {
    let meta = vec![
        ("u64".to_string(), GgufValue::U64(30)),
        ("neg".into(), GgufValue::I32(-3)),
        ("big".into(), GgufValue::U64(1 << 40)),
        ("s".into(), GgufValue::String("gpt2".into())),
        ("f64".into(), GgufValue::F64(1.5)),
        ("f64x".into(), GgufValue::F64(0.1)),
        ("b".into(), GgufValue::Bool(true)),
        ("tokens".into(), GgufValue::Array(GgufArray::String(vec!["a".into()]))),
        ("types".into(), GgufValue::Array(GgufArray::U8(vec![1, 3]))),
        ("negs".into(), GgufValue::Array(GgufArray::I64(vec![1, -1]))),
        ("empty".into(), GgufValue::Array(GgufArray::I32(vec![]))),
    ];
    let bytes = write(&meta, &[]);
    let g = read_gguf(&bytes, FILE).unwrap();
    assert_eq!(g.get_u32("u64").unwrap(), 30);
    assert_eq!(g.get_i64("neg").unwrap(), -3);
    assert_eq!(g.get_u64("big").unwrap(), 1 << 40);
    assert_eq!(g.get_str("s").unwrap(), "gpt2");
    assert_eq!(g.get_f32("f64").unwrap(), 1.5);
    assert_eq!(g.get_f64("f64x").unwrap(), 0.1);
    assert!(g.get_bool("b").unwrap());
    assert_eq!(g.get_array_str("tokens").unwrap(), ["a"]);
    assert_eq!(g.get_array_str("empty").unwrap(), [] as [String; 0]);
    assert_eq!(g.get_array_i32("types").unwrap(), [1, 3]);
    assert_eq!(g.get_array_u32("empty").unwrap(), [] as [u32; 0]);
    assert_eq!(g.optional("b", Gguf::get_bool).unwrap(), Some(true));
    assert_eq!(g.optional("absent", Gguf::get_bool).unwrap(), None);
    const U32: &str = "expected an integer from 0 to 4294967295 (u32)";
    for (msg, expected) in [
        (refusal(g.get_u32("neg")), format!("metadata key \"neg\" is an i32 (-3); {U32}")),
        (refusal(g.get_u32("big")), format!("metadata key \"big\" is a u64 (1099511627776); {U32}")),
        (refusal(g.get_u32("s")), format!("metadata key \"s\" is a string; {U32}")),
        (refusal(g.get_str("u64")), "metadata key \"u64\" is a u64 (30); expected a string".into()),
        (refusal(g.get_f32("f64x")), "metadata key \"f64x\" is an f64 (0.1); expected an f32".into()),
        (refusal(g.get_bool("missing")), "metadata key \"missing\" is missing".into()),
        (
            refusal(g.get_array_str("types")),
            "metadata key \"types\" is an array of 2 u8; expected an array of strings".into(),
        ),
        (
            refusal(g.get_array_u32("negs")),
            "metadata key \"negs\": element 1 is -1; expected an array of integers from 0 to 4294967295 (u32)".into(),
        ),
        (
            refusal(g.get_array_i32("tokens")),
            "metadata key \"tokens\" is an array of 1 string; expected an array of integers that fit in an i32".into(),
        ),
        (refusal(g.optional("s", Gguf::get_bool)), "metadata key \"s\" is a string; expected a bool".into()),
    ] {
        assert_eq!(msg, format!("{FILE}: {expected}"));
    }
}

#[test]
fn the_writer_refuses_what_the_reader_would() {
    let t = |name: &'static str, dims: &'static [u64], ty, data: &'static [u8]| GgufTensorData { name, dims, ty, data };
    let long = "x".repeat(MAX_NAME);
    type Case<'a> = (Vec<(String, GgufValue)>, Vec<GgufTensorData<'a>>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("".into(), GgufValue::U8(1))], vec![], "invalid GGUF metadata key: a key must not be empty"),
        (
            vec![("a".into(), GgufValue::U8(1)), ("a".into(), GgufValue::U8(2))],
            vec![],
            "invalid GGUF metadata key \"a\": appears twice",
        ),
        (
            vec![("general.alignment".into(), GgufValue::U32(24))],
            vec![],
            "\"general.alignment\" is 24; it must be a power of two",
        ),
        (vec![("general.alignment".into(), GgufValue::U64(32))], vec![], "is a u64 (32); GGUF requires a u32"),
        (
            vec![],
            vec![t("a", &[4], GgmlType::F32, &[0; 12])],
            "invalid GGUF tensor \"a\": dims [4] of F32 take 16 bytes, but 12 were given",
        ),
        (
            vec![],
            vec![t("a", &[16], GgmlType::Q8_0, &[0; 17])],
            "tensor \"a\" is Q8_0 with dims [16]: its rows of 16 values are not whole 32-value blocks",
        ),
        (
            vec![],
            vec![t("a", &[1, 1, 1, 1, 1], GgmlType::F32, &[0; 4])],
            "tensor \"a\" has 5 dimensions; GGUF allows at most 4",
        ),
        (
            vec![],
            vec![t("a", &[1], GgmlType::F32, &[0; 4]), t("a", &[1], GgmlType::F32, &[0; 4])],
            "invalid GGUF tensor \"a\": appears twice",
        ),
    ];
    for (meta, tensors, expected) in cases {
        let err = write_gguf(&meta, &tensors).unwrap_err().to_string();
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
    let long_name = [GgufTensorData { name: &long, dims: &[1], ty: GgmlType::F32, data: &[0; 4] }];
    assert!(write_gguf(&[], &long_name)
        .unwrap_err()
        .to_string()
        .contains("its name is 64 bytes; ggml allows at most 63"));
    let mut deep = GgufArray::U8(vec![1]);
    for _ in 0..MAX_ARRAY_DEPTH {
        deep = GgufArray::Array(vec![deep]);
    }
    let err = write_gguf(&[("deep".into(), GgufValue::Array(deep))], &[]).unwrap_err().to_string();
    assert!(err.contains("arrays nest 9 deep"), "{err}");
}

// ---------- broken files ----------

/// A GGUF file put together field by field, so that it can be wrong in any way.
#[derive(Clone, Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_kv)
    }
    fn u32(self, x: u32) -> Self {
        self.bytes(&x.to_le_bytes())
    }
    fn u64(self, x: u64) -> Self {
        self.bytes(&x.to_le_bytes())
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A u32 metadata entry.
    fn kv_u32(self, key: &str, v: u32) -> Self {
        self.str(key).u32(4).u32(v)
    }
    /// A tensor info.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let r = self.str(name).u32(dims.len() as u32);
        dims.iter().fold(r, |r, &d| r.u64(d)).u32(ty).u64(offset)
    }
    /// Zeros up to a multiple of `a`, then `n` bytes of data.
    fn data(mut self, a: usize, n: usize) -> Vec<u8> {
        self.0.resize(self.0.len().next_multiple_of(a) + n, 0);
        self.0
    }
}

const HUGE: u64 = 1 << 60;

/// A file of `n_tensors` and `n_kv` entries, whatever `fill` puts after the header.
fn raw(n_tensors: u64, n_kv: u64, fill: impl FnOnce(Raw) -> Raw) -> Vec<u8> {
    fill(Raw::header(3, n_tensors, n_kv)).0
}

/// A file of one tensor info, then `n` bytes of data from the first multiple of 32.
fn one_tensor(name: &str, dims: &[u64], ty: u32, offset: u64, n: usize) -> Vec<u8> {
    Raw::header(3, 1, 0).tensor(name, dims, ty, offset).data(32, n)
}

/// Tensors "a" (32 f32 at offset 0) and "b" (8 f32 at `b_offset`), 160 bytes of data.
fn two_tensors(b_offset: u64) -> Vec<u8> {
    Raw::header(3, 2, 0).tensor("a", &[32], 0, 0).tensor("b", &[8], 0, b_offset).data(32, 160)
}

#[test]
fn broken_files_are_refused_with_what_and_where() {
    let nested = (0..=MAX_ARRAY_DEPTH).fold(Raw::header(3, 0, 1).str("deep").u32(9), |r, _| r.u32(9).u64(1));
    let nested = nested.u32(0).u64(0);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not GGUF", b"GGML\x01\0\0\0".to_vec(), "the file does not start with \"GGUF\" (it starts with \"GGML\")"),
        ("a zip", b"PK\x03\x04rest".to_vec(), "(it starts with \"PK\\x03\\x04\"): not a GGUF file"),
        ("too short", b"GG".to_vec(), "model.gguf: the file is 2 bytes, too short for a GGUF file"),
        ("version 1", Raw::header(1, 0, 0).0, "GGUF version 1 is not read by this lab (versions 2 and 3 are)"),
        ("version 4", Raw::header(4, 0, 0).0, "model.gguf: GGUF version 4 is not read by this lab"),
        ("big-endian", Raw::header(0x0300_0000, 0, 0).0, "the version field reads 0x03000000: a big-endian GGUF file?"),
        (
            "no counts",
            Raw::header(3, 0, 0).0[..12].to_vec(),
            "model.gguf: the header: the tensor count needs 8 bytes from byte 8, but the file ends at byte 12",
        ),
        (
            "2^60 keys",
            Raw::header(3, 0, HUGE).0,
            "the header's metadata count is 1152921504606846976, but the 0 bytes left in the file hold at most 0",
        ),
        ("2^60 tensors", Raw::header(3, HUGE, 0).0, "the header's tensor count is 1152921504606846976"),
        (
            "2^60-byte key",
            raw(0, 1, |r| r.u64(HUGE).bytes(&[0; 10])),
            concat!(
                "model.gguf: metadata key #0: its name (1152921504606846976 bytes, length at byte 24) needs ",
                "1152921504606846976 bytes from byte 32, but the file ends at byte 42"
            ),
        ),
        ("empty key", raw(0, 1, |r| r.str("").u32(0).bytes(&[1, 0])), "metadata key #0 has an empty name"),
        (
            "repeated key",
            raw(0, 2, |r| r.kv_u32("a", 1).kv_u32("a", 2)),
            "model.gguf: metadata key \"a\" appears twice",
        ),
        (
            "value type 13",
            raw(0, 1, |r| r.str("a").u32(13).u32(0)),
            "model.gguf: metadata key \"a\" has value type 13, which is not a GGUF type (0 to 12)",
        ),
        (
            "2^60 u32 array",
            raw(0, 1, |r| r.str("a").u32(9).u32(4).u64(HUGE).u32(1)),
            concat!(
                "model.gguf: metadata key \"a\": an array of 1152921504606846976 u32 elements (length at byte 41) ",
                "needs at least 4 bytes each, but the file has only 4 bytes left"
            ),
        ),
        (
            "2^60 strings",
            raw(0, 1, |r| r.str("tokenizer.ggml.tokens").u32(9).u32(8).u64(HUGE).str("a")),
            "metadata key \"tokenizer.ggml.tokens\": an array of 1152921504606846976 string elements",
        ),
        (
            "string past the end",
            raw(0, 1, |r| r.str("general.name").u32(8).u64(100).bytes(b"Smol")),
            concat!(
                "model.gguf: metadata key \"general.name\": its string (100 bytes, length at byte 48) needs 100 ",
                "bytes from byte 56, but the file ends at byte 60: it is truncated or corrupt"
            ),
        ),
        (
            "not UTF-8",
            raw(0, 1, |r| r.str("a").u32(9).u32(8).u64(2).str("ok").u64(2).bytes(&[0xc3, 0x28])),
            "metadata key \"a\", array element 1: its string (at byte 59) is not valid UTF-8 (at its byte 0)",
        ),
        (
            "element type 99",
            raw(0, 1, |r| r.str("a").u32(9).u32(99).u64(0)),
            "model.gguf: metadata key \"a\": array element type 99 is not a GGUF type",
        ),
        ("nested too deep", nested.0, ", array element 0: arrays nest more than 8 deep"),
        (
            "alignment 48",
            raw(0, 1, |r| r.kv_u32("general.alignment", 48)),
            "model.gguf: metadata key \"general.alignment\" is 48; it must be a power of two",
        ),
        (
            "alignment 0",
            raw(0, 1, |r| r.kv_u32("general.alignment", 0)),
            "\"general.alignment\" is 0; it must be a power of two",
        ),
        (
            "alignment u64",
            raw(0, 1, |r| r.str("general.alignment").u32(10).u64(64)),
            "model.gguf: metadata key \"general.alignment\" is a u64 (64); GGUF requires a u32",
        ),
        ("long name", one_tensor(&"n".repeat(64), &[1], 0, 0, 4), "its name is 64 bytes; ggml allows at most 63"),
        (
            "repeated tensor",
            raw(2, 0, |r| r.tensor("a", &[1], 0, 0).tensor("a", &[1], 0, 32).bytes(&[0; 128])),
            "model.gguf: tensor \"a\" appears twice",
        ),
        (
            "5 dims",
            one_tensor("a", &[1; 5], 0, 0, 4),
            "model.gguf: tensor \"a\" has 5 dimensions; GGUF allows at most 4",
        ),
        (
            "type 99",
            one_tensor("blk.0.attn_q.weight", &[32], 99, 0, 128),
            concat!(
                "model.gguf: tensor \"blk.0.attn_q.weight\" has type 99, which this lab does not read ",
                "(it reads F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K)"
            ),
        ),
        (
            "Q5_K",
            one_tensor("a", &[256], 13, 0, 176),
            "model.gguf: tensor \"a\" has type Q5_K (13), which this lab does not read",
        ),
        (
            "row not whole blocks",
            one_tensor("a", &[33], 3, 0, 40),
            "model.gguf: tensor \"a\" is Q4_1 with dims [33]: its rows of 33 values are not whole 32-value blocks",
        ),
        (
            "2^64 values",
            one_tensor("a", &[1 << 32, 1 << 32], 0, 0, 4),
            "tensor \"a\" has dims [4294967296, 4294967296]: a dimension or their product reaches 2^63",
        ),
        ("dim 2^63", one_tensor("a", &[0, 1 << 63], 0, 0, 4), "tensor \"a\" has dims [0, 9223372036854775808]"),
        (
            "misaligned",
            one_tensor("a", &[1], 0, 16, 64),
            "model.gguf: tensor \"a\" is at offset 16 of the data, not a multiple of the alignment (32)",
        ),
        (
            "past the end",
            one_tensor("a", &[8], 0, 0, 31),
            concat!(
                "model.gguf: tensor \"a\" (F32, dims [8], 32 bytes at offset 0 of the data, which starts at byte 64) ",
                "runs past the end of the file (95 bytes): it is truncated"
            ),
        ),
        (
            "offset 2^64 - 32",
            one_tensor("a", &[8], 0, u64::MAX - 31, 32),
            "tensor \"a\" (F32, dims [8], 32 bytes at offset 18446744073709551584",
        ),
        ("overlap", two_tensors(96), "model.gguf: tensors \"a\" (bytes 96..224) and \"b\" (bytes 192..224) overlap"),
        (
            "no data section",
            raw(1, 0, |r| r.tensor("a", &[0], 0, 0)),
            concat!(
                "model.gguf: the header ends at byte 57, so the data would start at the next multiple of 32, ",
                "past the end of the file (57 bytes)"
            ),
        ),
    ];
    for (what, bytes, expected) in cases {
        let msg = refusal(read_gguf(&bytes, FILE));
        assert!(msg.contains(expected), "{what}: expected {expected:?} in:\n{msg}");
    }
    // The same two tensors side by side are fine; so is an empty tensor anywhere.
    read_gguf(&two_tensors(128), FILE).unwrap();
    let r = Raw::header(3, 2, 0).tensor("a", &[32], 0, 0).tensor("empty", &[0, 3], 0, 64);
    let g = read_gguf(&r.data(32, 128), FILE).unwrap();
    assert_eq!(g.tensors[1].bytes, 0);
}

#[test]
fn version_2_and_files_without_tensors_read() {
    let r = Raw::header(2, 0, 1).kv_u32("general.alignment", 64);
    let g = read_gguf(&r.0, FILE).unwrap();
    assert_eq!((g.version, g.alignment, g.tensors.len()), (2, 64, 0));
    // Written again as version 3, padded.
    let again = g.write(&r.0).unwrap();
    assert_eq!(&again[4..8], &3u32.to_le_bytes());
    assert_eq!(again.len(), 64);
    // ggml reads any non-zero byte as true; written again, it is 1.
    let r = Raw::header(3, 0, 1).str("b").u32(7).bytes(&[2]);
    let g = read_gguf(&r.0, FILE).unwrap();
    assert!(g.get_bool("b").unwrap());
    assert_eq!(read_gguf(&g.write(&r.0).unwrap(), FILE).unwrap().metadata, g.metadata);
}

#[test]
fn every_truncation_and_byte_corruption_is_answered_without_a_panic() {
    let file = small_file();
    let g = read_gguf(&file, FILE).unwrap();
    let data_end = g.tensors.iter().map(|t| t.offset + t.bytes).max().unwrap();
    for n in 0..data_end {
        let msg = refusal(read_gguf(&file[..n], FILE));
        assert!(!msg.is_empty());
    }
    // Cut inside the last tensor's padding: still whole.
    read_gguf(&file[..data_end], FILE).unwrap();
    for i in 0..g.data_offset {
        for b in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bad = file.clone();
            bad[i] = b;
            if let Ok(g) = read_gguf(&bad, FILE) {
                // Whatever was accepted writes out and reads back the same.
                let again = g.write(&bad).unwrap();
                let g2 = read_gguf(&again, FILE).unwrap();
                assert_eq!(g2.write(&again).unwrap(), again, "byte {i} = {b:#x}");
            } else {
                refusal(read_gguf(&bad, FILE));
            }
        }
    }
}

// ---------- the pretrained model ----------

#[test]
fn the_pretrained_file_holds_what_pretrained_md_says() {
    let bytes = model_file();
    assert_eq!(bytes.len(), 98_362_432);
    let g = read_gguf(bytes, "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    assert_eq!((g.version, g.alignment, g.data_offset), (3, 32, 1_785_664));
    assert_eq!(g.metadata.len(), 33);
    assert_eq!(g.tensors.len(), 272);
    let count = |ty| g.tensors.iter().filter(|t| t.ty == ty).count();
    assert_eq!((count(GgmlType::Q4_1), count(GgmlType::F32), count(GgmlType::Q8_0)), (210, 61, 1));
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    for (key, value) in [
        ("llama.block_count", 30),
        ("llama.embedding_length", 576),
        ("llama.feed_forward_length", 1536),
        ("llama.attention.head_count", 9),
        ("llama.attention.head_count_kv", 3),
        ("llama.rope.dimension_count", 64),
        ("llama.context_length", 8192),
        ("llama.vocab_size", 49152),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
        ("tokenizer.ggml.padding_token_id", 2),
        ("tokenizer.ggml.unknown_token_id", 0),
    ] {
        assert_eq!(g.get_u32(key).unwrap(), value, "{key}");
    }
    assert!(!g.has("general.alignment"), "the alignment is the default, 32");
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(g.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(), 1e-5);
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert!(!g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    let tokens = g.get_array_str("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(&tokens[..3], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
    assert_eq!(tokens[3], "<repo_name>");
    assert_eq!(g.get_array_str("tokenizer.ggml.merges").unwrap().len(), 48900);
    assert_eq!(g.get_array_i32("tokenizer.ggml.token_type").unwrap().len(), 49152);
    assert!(g.get_str("tokenizer.chat_template").unwrap().starts_with("{% for message in messages %}"));

    assert!(g.find_tensor("output.weight").is_none(), "the output layer is tied to the embedding");
    let params: usize = g.tensors.iter().map(|t| t.n_elements()).sum();
    assert_eq!(params, 134_515_008);
    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!((embd.ty, embd.shape()), (GgmlType::Q8_0, vec![49152, 576]));
    for (name, shape) in [
        ("blk.0.attn_q.weight", [576, 576]),
        ("blk.0.attn_k.weight", [192, 576]),
        ("blk.0.attn_v.weight", [192, 576]),
        ("blk.0.attn_output.weight", [576, 576]),
        ("blk.29.ffn_gate.weight", [1536, 576]),
        ("blk.29.ffn_up.weight", [1536, 576]),
        ("blk.29.ffn_down.weight", [576, 1536]),
    ] {
        let t = g.tensor(name).unwrap();
        assert_eq!((t.ty, t.shape()), (GgmlType::Q4_1, shape.to_vec()), "{name}");
    }
    for name in ["blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight"] {
        let t = g.tensor(name).unwrap();
        assert_eq!((t.ty, t.shape()), (GgmlType::F32, vec![576]), "{name}");
    }
}

#[test]
fn the_pretrained_file_is_written_again_byte_for_byte() {
    let bytes = model_file();
    let g = read_gguf(bytes, FILE).unwrap();
    let again = g.write(bytes).unwrap();
    assert!(again == bytes, "write(read(file)) differs from the file");
}

#[test]
fn the_pretrained_metadata_matches_gguf_py() {
    let bytes = model_file();
    let g = read_gguf(bytes, FILE).unwrap();
    let want = fixture()["metadata"].as_array().unwrap();
    assert_eq!(g.metadata.len(), want.len());
    for ((key, value), w) in g.metadata.iter().zip(want) {
        assert_eq!(key, w["key"].as_str().unwrap());
        let ty = w["type"].as_str().unwrap();
        let digest = |parts: Vec<&[u8]>, sep: &[u8]| sha256(&parts.join(sep));
        match (value, ty) {
            (GgufValue::String(s), "STRING") => {
                assert_eq!(s.len() as u64, w["len"].as_u64().unwrap(), "{key}");
                assert_eq!(sha256(s.as_bytes()), w["sha256"].as_str().unwrap(), "{key}");
            }
            (GgufValue::U32(x), "UINT32") => assert_eq!(*x as u64, w["value"].as_u64().unwrap(), "{key}"),
            (GgufValue::F32(x), "FLOAT32") => assert_eq!(x.to_bits() as u64, w["bits"].as_u64().unwrap(), "{key}"),
            (GgufValue::Bool(x), "BOOL") => assert_eq!(*x, w["value"].as_bool().unwrap(), "{key}"),
            (GgufValue::Array(GgufArray::String(items)), "ARRAY") => {
                assert_eq!(w["elem"], "STRING");
                assert_eq!(items.len() as u64, w["len"].as_u64().unwrap(), "{key}");
                assert_eq!(digest(items.iter().map(|s| s.as_bytes()).collect(), b"\0"), w["sha256"].as_str().unwrap());
            }
            (GgufValue::Array(GgufArray::I32(items)), "ARRAY") => {
                assert_eq!(w["elem"], "INT32");
                let raw: Vec<u8> = items.iter().flat_map(|x| x.to_le_bytes()).collect();
                assert_eq!(sha256(&raw), w["sha256"].as_str().unwrap(), "{key}");
            }
            _ => panic!("{key}: {value:?} where gguf-py reads {ty}"),
        }
    }
    // gguf-py's offsets and sizes too.
    for (t, w) in g.tensors.iter().zip(fixture()["tensors"].as_array().unwrap()) {
        assert_eq!(t.name, w["name"].as_str().unwrap());
        assert_eq!(t.ty, ggml_type(w["type"].as_str().unwrap()));
        let dims: Vec<u64> = w["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(t.dims, dims, "{}", t.name);
        assert_eq!((t.offset as u64, t.bytes as u64), (w["offset"].as_u64().unwrap(), w["bytes"].as_u64().unwrap()));
    }
}

#[test]
fn every_pretrained_tensor_dequantises_as_gguf_py_does() {
    let bytes = model_file();
    let g = read_gguf(bytes, FILE).unwrap();
    let want = fixture()["tensors"].as_array().unwrap();
    assert_eq!(want.len(), g.tensors.len());
    for (i, (t, w)) in g.tensors.iter().zip(want).enumerate() {
        let values = dequantize(t.ty, g.tensor_bytes(bytes, i).unwrap(), t.n_elements());
        assert_eq!(values.len() as u64, w["n"].as_u64().unwrap());
        if let Some(first) = w.get("first") {
            assert_eq!(bits(&values[..64]), u32s(first), "{}: first 64 values", t.name);
        }
        assert_eq!(sha256_f32(&values), w["sha256"].as_str().unwrap(), "{}: SHA-256 of the values", t.name);
        // A run starting mid-block and ending mid-block gives the same values.
        let (start, len) = (t.n_elements() / 3 + 5, 77.min(t.n_elements() / 2));
        let mut run = vec![0f32; len];
        dequantize_run(t.ty, g.tensor_bytes(bytes, i).unwrap(), start, &mut run);
        assert_eq!(bits(&run), bits(&values[start..start + len]), "{}: a run", t.name);
    }
}

// ---------- synthetic blocks ----------

#[test]
fn synthetic_blocks_of_every_type_dequantise_as_gguf_py_does() {
    let cases = fixture()["dequantize"].as_array().unwrap();
    let mut seen = Vec::new();
    for c in cases {
        let ty = ggml_type(c["type"].as_str().unwrap());
        let raw = hex(c["hex"].as_str().unwrap());
        let want = u32s(&c["bits"]);
        assert_eq!(ty.bytes_for(want.len()), Some(raw.len()));
        assert_eq!(bits(&dequantize(ty, &raw, want.len())), want, "{ty}");
        // Every run that starts and ends anywhere in the first two blocks.
        let span = (2 * ty.block_size()).min(want.len());
        for start in (0..span).step_by(7) {
            for len in [1, 3, ty.block_size(), span - start] {
                let len = len.min(want.len() - start);
                let mut run = vec![0f32; len];
                dequantize_run(ty, &raw, start, &mut run);
                assert_eq!(bits(&run), want[start..start + len], "{ty} run {start}+{len}");
            }
        }
        seen.push(ty);
    }
    for ty in GgmlType::ALL.into_iter().filter(|&t| t != GgmlType::F32) {
        assert!(seen.contains(&ty), "no synthetic case for {ty}");
    }
}

#[test]
fn reference_quantisers_match_gguf_py() {
    for c in fixture()["quantize"].as_array().unwrap() {
        let ty = ggml_type(c["type"].as_str().unwrap());
        let values: Vec<f32> = hex(c["values"].as_str().unwrap())
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let want = hex(c["hex"].as_str().unwrap());
        let got = quantize(ty, &values).unwrap();
        assert_eq!(got.len(), want.len(), "{ty}");
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(
            first_diff,
            None,
            "{ty}: first different byte (block {})",
            first_diff.unwrap_or(0) / ty.block_bytes()
        );
    }
}
