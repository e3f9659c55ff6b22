//! What the fuzz targets do with each input. Shared by the cargo-fuzz targets (`fuzz_targets/*.rs`,
//! this file is the fuzz crate's library) and by `tests/fuzz_regressions.rs` (which includes it with
//! `#[path]`), so every seed and every input that once crashed is replayed by plain `cargo test`.
//!
//! Errors are the expected answer to almost every input; a panic, or a broken invariant (asserted
//! here), is a bug. Each function returns the parser's result so tests can check the message.
//!
//! Input layouts:
//! - `idx`: the whole input is tried as an image file and as a label file; then byte 0 = n, the next
//!   n bytes are a label file and the rest an image file, and a pair that parses becomes a `Dataset`.
//! - `safetensors`: the whole input is one safetensors file (any tensors, then as `model.safetensors`).
//! - `adapter`: bytes 0–1 little-endian = k; bits 0–14 are the length of the `adapter_config.json`
//!   part (UTF-8, lossily), the rest is `adapter_model.safetensors`; bit 15 set also passes that rest
//!   as the PiSSA `base_model` file.
//! - `lm_model`: bytes 0–1 little-endian = k, the length of the `config.json` part (UTF-8, lossily);
//!   the rest is the language model's `model.safetensors`.
//! - `nf4`: the same split; the first part is a `quantization_config` object (skipped when empty),
//!   the rest a 4-bit `model.safetensors` holding [`NF4_LINEARS`] quantised.
//! - `gguf`: the whole input is one GGUF file; also read as llama.cpp's LoRA adapter for
//!   [`lora_llama_config`]'s Llama.
//! - `hf_tokenizer`: bytes 0–1 little-endian = k, the length of a chat-template part (UTF-8, lossily;
//!   skipped when empty); the rest is a `tokenizer.json` (UTF-8, lossily), the text side of a Hugging
//!   Face folder as `io::hf_pretrained` reads it.
//! - `sft_jsonl`: the whole input is one JSONL file of TRL SFT rows; the maximum length, the packing
//!   block and whether assistant-only loss is tried come from a hash of the input.

use std::cell::RefCell;
use std::collections::BTreeMap;

use lora_lab::data::{parse_images, parse_labels, Dataset, PIXELS, SIDE};
use lora_lab::io::{self, read_safetensors, write_safetensors, Tensor};
use lora_lab::lab::{AdapterSummary, Lab};
use lora_lab::lm::Llama;
use lora_lab::lora::{Adaptable, Module};
use lora_lab::nn::{Mlp, LAYER_NAMES, LAYER_SHAPES};
use lora_lab::rng::{Rng, Stream};
use lora_lab::text::{
    encode_sft, pack_sft, pack_sft_bfd, parse_sft_jsonl, Bpe, ChatTemplate, Content, Message, SftExample, SftKind,
    SftRow, SftTokenizer, MAX_SFT_ROWS, PACK_MAP_BATCH,
};
use lora_lab::{LabError, Result};

/// Every file error must name the file it is about and give a reason.
fn check_file_error<T>(r: &Result<T>, file: &str) {
    if let Err(e) = r {
        match e {
            LabError::BadFile { file: f, reason } => {
                assert_eq!(f, file, "error names the wrong file: {e}");
                assert!(!reason.trim().is_empty(), "error without a reason for {file}");
            }
            other => panic!("{file}: expected a file error, got {other:?}"),
        }
    }
}

// ---------- IDX ----------

/// An `idx` input: the label file, then the image file.
pub fn idx_input(labels: &[u8], images: &[u8]) -> Vec<u8> {
    assert!(labels.len() <= 255, "the label part's length must fit in one byte");
    let mut out = vec![labels.len() as u8];
    out.extend_from_slice(labels);
    out.extend_from_slice(images);
    out
}

/// An IDX file: magic, dimensions, data.
pub fn idx_file(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
    out.extend_from_slice(data);
    out
}

/// Returns the size of the `Dataset` made from the split input (an error if either part or the
/// pair is rejected).
pub fn idx(data: &[u8]) -> Result<usize> {
    check_file_error(&parse_images(data, "images"), "images");
    check_file_error(&parse_labels(data, "labels"), "labels");
    let Some((&n, rest)) = data.split_first() else {
        return Err(LabError::file("fuzz input", "empty"));
    };
    let (label_bytes, image_bytes) = rest.split_at((n as usize).min(rest.len()));
    let images = parse_images(image_bytes, "images");
    check_file_error(&images, "images");
    let labels = parse_labels(label_bytes, "labels");
    check_file_error(&labels, "labels");
    if let Ok(im) = &images {
        assert_eq!((im.rows, im.cols), (SIDE, SIDE), "parse_images accepted {}×{}", im.rows, im.cols);
        assert_eq!(Some(im.pixels.len()), im.count.checked_mul(PIXELS), "pixel count does not match the header");
        assert!(im.count > 0, "parse_images accepted zero images");
    }
    if let Ok(l) = &labels {
        assert!(l.iter().all(|&d| d <= 9), "parse_labels accepted a label above 9");
        assert!(!l.is_empty(), "parse_labels accepted zero labels");
    }
    let (images, labels) = (images?, labels?);
    let same_count = images.count == labels.len();
    let count = images.count;
    let set = Dataset::new(images, labels, "fuzz set");
    check_file_error(&set, "fuzz set");
    // Two files that parse and agree on the count always make a dataset; otherwise never.
    assert_eq!(set.is_ok(), same_count, "Dataset::new: {set:?}");
    let set = set?;
    assert_eq!(set.len(), count);
    assert_eq!(set.label_counts().iter().sum::<usize>(), count);
    assert_eq!(set.indices_of(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).len(), count);
    assert_eq!(set.image(count - 1).len(), PIXELS);
    Ok(count)
}

// ---------- safetensors ----------

const FUZZ_FILE: &str = "fuzz.safetensors";

/// `read_safetensors`, then `import_model`. Returns the number of tensors read (the model import is
/// checked for panics and invariants only: a valid model is 2 MB, beyond the fuzzer's inputs).
pub fn safetensors(data: &[u8]) -> Result<usize> {
    let model = io::import_model(data);
    check_file_error(&model, io::MODEL_FILE);
    if let Ok(mlp) = &model {
        assert!(mlp.layers.iter().all(|l| l.weight.iter().chain(&l.bias).all(|v| v.is_finite())));
        // A 4-bit base (bitsandbytes' layout) goes out and in again unchanged.
        if mlp.quantization().is_some() {
            let bytes = io::export_model(mlp).expect("an imported 4-bit base exports");
            assert_eq!(
                &io::import_model(&bytes).expect("and imports again"),
                mlp,
                "4-bit round trip changed the model"
            );
        }
    }
    let map = read_safetensors(data, FUZZ_FILE);
    check_file_error(&map, FUZZ_FILE);
    let map = map?;
    for (name, t) in &map {
        let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        assert_eq!(n, Some(t.data.len()), "{name}: shape {:?} but {} values", t.shape, t.data.len());
    }
    // What was read writes back and reads again bit for bit.
    let tensors: Vec<(String, Vec<usize>, &[f32])> =
        map.iter().map(|(n, t)| (n.clone(), t.shape.clone(), t.data.as_slice())).collect();
    let bytes = write_safetensors(&tensors, None).expect("tensors that were read can be written");
    let again = read_safetensors(&bytes, FUZZ_FILE).expect("a file we wrote reads back");
    assert_eq!(bits(&map), bits(&again), "safetensors round trip changed the tensors");
    Ok(map.len())
}

fn bits(map: &BTreeMap<String, Tensor>) -> Vec<(&str, &[usize], Vec<u32>)> {
    map.iter().map(|(n, t)| (n.as_str(), t.shape.as_slice(), t.data.iter().map(|v| v.to_bits()).collect())).collect()
}

// ---------- adapter ----------

/// Bit 15 of the `adapter` input's first two bytes: also pass the weights part as `base_model`.
pub const WITH_BASE_MODEL: u16 = 0x8000;

/// An `adapter` input from its parts.
pub fn adapter_input(config_json: &[u8], safetensors: &[u8], as_base_model_too: bool) -> Vec<u8> {
    assert!(config_json.len() < WITH_BASE_MODEL as usize, "config part too long for the 15-bit length");
    let k = config_json.len() as u16 | if as_base_model_too { WITH_BASE_MODEL } else { 0 };
    let mut out = k.to_le_bytes().to_vec();
    out.extend_from_slice(config_json);
    out.extend_from_slice(safetensors);
    out
}

/// The model every fuzzed adapter is imported against: fixed random weights, no MNIST needed.
pub fn base_model_bytes() -> Vec<u8> {
    io::export_model(&Mlp::new(&mut Rng::new(1, Stream::BaseInit))).expect("a fresh model exports")
}

/// A lab holding only a base model, reused across inputs: building one costs a 2 MB export and
/// import, which would dominate every run. Each input leaves it as it found it (checked).
pub struct AdapterHarness {
    lab: Lab,
    base: Mlp,
}

impl Default for AdapterHarness {
    fn default() -> Self {
        Self::new()
    }
}

const NAME: &str = "fuzz";
const AGAIN: &str = "fuzz-again";

impl AdapterHarness {
    pub fn new() -> Self {
        let mut lab = Lab::new(|| 0.0);
        lab.import_model(&base_model_bytes()).expect("the base model imports");
        let base = lab.base().expect("base loaded").clone();
        Self { lab, base }
    }

    /// Parses the config on its own, then imports the pair into the lab; on success exports the
    /// adapter, checks the files against the input, and imports the export again.
    pub fn run(&mut self, data: &[u8]) -> Result<AdapterSummary> {
        let (config, weights, base_model) = split_adapter_input(data);
        let known: Vec<(&str, usize, usize)> =
            LAYER_NAMES.iter().zip(LAYER_SHAPES).map(|(n, (i, o))| (*n, i, o)).collect();
        let parsed = io::parse_adapter_config(&config, io::CONFIG_FILE, &known);
        check_file_error(&parsed, io::CONFIG_FILE);
        if let Ok(cfg) = &parsed {
            assert!(!cfg.target_modules.is_empty());
            for t in cfg.target_modules.names() {
                let i = LAYER_NAMES.iter().position(|n| n == t).unwrap_or_else(|| panic!("unresolved target {t}"));
                let (fan_in, fan_out) = LAYER_SHAPES[i];
                assert!(cfg.r >= 1 && cfg.r <= fan_in.min(fan_out), "r = {} accepted for {t}", cfg.r);
            }
            assert!(cfg.lora_alpha.is_finite() && cfg.lora_alpha > 0.0);
        }

        let result = self.lab.import_adapter(NAME, weights, &config, base_model);
        let Ok(summary) = result else {
            // "On any error nothing changes."
            let list = self.lab.adapters();
            assert!(list.list.is_empty() && list.active.is_none(), "a failed import changed the lab");
            return result;
        };
        assert!(parsed.is_ok(), "the lab imported an adapter whose config does not parse: {parsed:?}");
        assert_eq!(self.lab.adapters().active.as_deref(), Some(NAME));

        // Export: the same tensors as the input (biases up to the rounding of base + (file − base)).
        let files = self.lab.export_adapter(NAME).expect("an imported adapter exports");
        assert!(files.base_model.is_none(), "imported adapters are Default-init, never PiSSA");
        let input = read_safetensors(weights, io::ADAPTER_FILE).expect("the input was accepted");
        let output = read_safetensors(&files.safetensors, io::ADAPTER_FILE).expect("the export reads back");
        assert_eq!(
            input.keys().collect::<Vec<_>>(),
            output.keys().collect::<Vec<_>>(),
            "exported tensors differ in names"
        );
        for (name, a) in &input {
            let b = &output[name];
            assert_eq!(a.shape, b.shape, "{name}: shape changed on export");
            if name.ends_with(".bias") {
                let layer = LAYER_NAMES
                    .iter()
                    .position(|n| name.ends_with(&format!("{n}.bias")))
                    .expect("bias of a known layer");
                for ((x, y), base) in a.data.iter().zip(&b.data).zip(&self.base.layers[layer].bias) {
                    let tol = 2.0 * f32::EPSILON * (x.abs() + base.abs());
                    assert!((x - y).abs() <= tol, "{name}: {x} exported as {y} (base bias {base})");
                }
            } else {
                let same = a.data.iter().zip(&b.data).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{name}: values changed on export");
            }
        }

        // The export imports again and exports the same files.
        let json = files.config.to_json_pretty();
        self.lab.import_adapter(AGAIN, &files.safetensors, &json, None).expect("an exported adapter imports again");
        let twice = self.lab.export_adapter(AGAIN).expect("exports again");
        assert_eq!(twice.config, files.config, "config changed on a second round trip");
        let again = read_safetensors(&twice.safetensors, io::ADAPTER_FILE).expect("reads back");
        assert_eq!(bits(&again).len(), bits(&output).len());
        for ((n, a), (_, b)) in output.iter().zip(&again) {
            if !n.ends_with(".bias") {
                assert_eq!(a.data, b.data, "{n}: values changed on a second round trip");
            }
        }

        // Leave the lab as it was.
        self.lab.delete_adapter(AGAIN).expect("delete");
        let list = self.lab.delete_adapter(NAME).expect("delete");
        assert!(list.list.is_empty() && list.active.is_none());
        Ok(summary)
    }
}

/// (config text, weights, base_model) from an `adapter` input.
pub fn split_adapter_input(data: &[u8]) -> (String, &[u8], Option<&[u8]>) {
    let (k, rest) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => (0, data),
    };
    let n = ((k & !WITH_BASE_MODEL) as usize).min(rest.len());
    let (config, weights) = rest.split_at(n);
    let base_model = (k & WITH_BASE_MODEL != 0).then_some(weights);
    (String::from_utf8_lossy(config).into_owned(), weights, base_model)
}

thread_local! {
    static HARNESS: RefCell<AdapterHarness> = RefCell::new(AdapterHarness::new());
}

/// The `adapter` target: one lab per thread (libFuzzer runs the target on one thread).
pub fn adapter(data: &[u8]) -> Result<AdapterSummary> {
    HARNESS.with(|h| h.borrow_mut().run(data))
}

// ---------- lm_model ----------

/// An `lm_model` input from its parts.
pub fn lm_model_input(config_json: &[u8], safetensors: &[u8]) -> Vec<u8> {
    let k = u16::try_from(config_json.len()).expect("config part too long for the 16-bit length");
    let mut out = k.to_le_bytes().to_vec();
    out.extend_from_slice(config_json);
    out.extend_from_slice(safetensors);
    out
}

/// (config text, weights) from an `lm_model` input.
pub fn split_lm_model_input(data: &[u8]) -> (String, &[u8]) {
    let (k, rest) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => (0, data),
    };
    let (config, weights) = rest.split_at((k as usize).min(rest.len()));
    (String::from_utf8_lossy(config).into_owned(), weights)
}

fn lm_bits(model: &Llama) -> Vec<(String, Vec<u32>)> {
    model.params().into_iter().map(|(n, p)| (n, p.iter().map(|v| v.to_bits()).collect())).collect()
}

/// `parse_lm_config` on the config part, then `import_lm` on both parts. A config that does not
/// parse fails the import with the same error; otherwise errors name `model.safetensors`. On
/// success: the model holds the file's tensors bit for bit, its export imports again to the same
/// model, and exporting that gives the same bytes. Returns the parameter count.
pub fn lm_model(data: &[u8]) -> Result<usize> {
    let (config, weights) = split_lm_model_input(data);
    let parsed = io::parse_lm_config(&config);
    check_file_error(&parsed, io::LM_CONFIG_FILE);
    let model = io::import_lm(&config, weights);
    match (&parsed, &model) {
        (Err(e), m) => {
            assert_eq!(m.as_ref().err(), Some(e), "import_lm must refuse the config as parse_lm_config does")
        }
        (Ok(_), Err(_)) => check_file_error(&model, io::MODEL_FILE),
        (Ok(cfg), Ok(m)) => assert_eq!(&m.cfg, cfg, "import_lm read another config"),
    }
    // The half-precision reader (Hugging Face folders in F16/BF16) takes every f32 file `import_lm`
    // takes, to the same model; whatever it refuses, it refuses with a file's name.
    let floats = io::lm_file::import_lm_floats(&config, weights);
    match (&model, &floats) {
        (Ok(m), Ok(f)) => assert_eq!(lm_bits(f), lm_bits(m), "import_lm_floats read another model"),
        (Ok(m), Err(e)) => {
            assert!(m.quantization().is_some(), "import_lm_floats refused an f32 file import_lm took: {e}")
        }
        (_, Err(LabError::BadFile { .. })) | (Err(_), Ok(_)) => {}
        (_, Err(e)) => panic!("import_lm_floats: expected a file error, got {e:?}"),
    }
    let model = model?;
    let cfg = &model.cfg;
    cfg.validate("fuzz").expect("an imported config is valid");
    assert_eq!(model.num_params(), cfg.num_params());

    // The model holds exactly the file's tensors, with the shapes the config implies: a 4-bit base's
    // quantised Linears as read, everything else F32.
    let modules = model.modules();
    let input = if model.quantization().is_some() {
        let quantized: Vec<Module> = modules.iter().filter(|m| m.name != "lm_head").cloned().collect();
        let read = io::read_nf4_safetensors(weights, io::MODEL_FILE, &quantized).expect("the input was accepted");
        for (m, l) in modules.iter().zip(&model.linears) {
            assert_eq!(l.nf4.as_deref(), read.quantized.get(&m.name), "{}: the 4-bit weight as read", m.name);
        }
        read.tensors
    } else {
        read_safetensors(weights, io::MODEL_FILE).expect("the input was accepted")
    };
    let is_quantized = |key: &str| {
        modules.iter().zip(&model.linears).any(|(m, l)| l.is_quantized() && key == format!("{}.weight", m.name))
    };
    let listed: Vec<(String, Vec<usize>)> = io::lm_tensors(cfg).into_iter().filter(|(k, _)| !is_quantized(k)).collect();
    assert_eq!(input.len(), listed.len(), "tensors other than the model's were accepted");
    let f32_params = lm_bits(&model).into_iter().filter(|(n, _)| !is_quantized(n)).collect::<Vec<_>>();
    for ((name, bits), (key, shape)) in f32_params.iter().zip(&listed) {
        assert_eq!(name, key);
        let t = &input[name];
        assert_eq!(&t.shape, shape, "{name}: shape");
        assert!(t.data.iter().all(|v| v.is_finite()), "{name}: a non-finite value was accepted");
        assert_eq!(&t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), bits, "{name}: values");
    }

    // Export → import gives the same model; a second export the same bytes.
    let (json, bytes) = io::export_lm(&model).expect("an imported model exports");
    assert_eq!(&io::parse_lm_config(&json).expect("an exported config parses"), cfg, "config changed on export");
    let again = io::import_lm(&json, &bytes).expect("an exported model imports again");
    assert_eq!(&again.cfg, cfg);
    assert_eq!(lm_bits(&again), lm_bits(&model), "weights changed on a round trip");
    assert!(
        again.linears.iter().zip(&model.linears).all(|(a, b)| a.nf4 == b.nf4),
        "4-bit weights changed on a round trip"
    );
    let (json2, bytes2) = io::export_lm(&again).expect("exports again");
    assert_eq!(json2, json, "config.json changed on a second round trip");
    assert!(bytes2 == bytes, "model.safetensors changed on a second round trip");
    Ok(model.num_params())
}

// ---------- nf4 ----------

/// The quantised Linears every `nf4` input is read for: (name, in_features, out_features). Small, so
/// that a whole file fits the fuzzer's inputs; 69 values (a short block, an odd count) and 192.
pub const NF4_LINEARS: [(&str, usize, usize); 2] = [("layers.1", 23, 3), ("layers.3", 48, 4)];

pub fn nf4_modules() -> Vec<Module> {
    NF4_LINEARS
        .iter()
        .map(|&(n, i, o)| Module { name: n.to_string(), in_features: i, out_features: o, has_bias: true })
        .collect()
}

/// An `nf4` input from its parts (the same layout as `lm_model`'s).
pub fn nf4_input(quantization_config: &[u8], safetensors: &[u8]) -> Vec<u8> {
    lm_model_input(quantization_config, safetensors)
}

/// The `nf4` target. The first part, when not empty, is a `quantization_config` object (JSON) for
/// `parse_quantization_config`; the rest is a 4-bit `model.safetensors` read with
/// `read_nf4_safetensors` for [`NF4_LINEARS`]. Errors name `config.json` or `model.safetensors`. On
/// success: the weights have the Linears' shapes and dequantise to finite values; the export of what was
/// read holds the input's tensors bit for bit (all but the quant-state JSON, whose spacing may differ),
/// imports again to the same weights, and a second export gives the same bytes.
pub fn nf4(data: &[u8]) -> Result<String> {
    let (config, weights) = split_lm_model_input(data);
    if !config.is_empty() {
        let parsed = io::parse_quantization_config_json(&config);
        check_file_error(&parsed, io::LM_CONFIG_FILE);
        let dq = parsed?;
        let again = io::parse_quantization_config(&io::quantization_config(dq)).expect("our own config parses");
        assert_eq!(again, dq, "quantization_config round trip changed use_double_quant");
    }
    let modules = nf4_modules();
    let read = io::read_nf4_safetensors(weights, io::MODEL_FILE, &modules);
    check_file_error(&read, io::MODEL_FILE);
    let file = read?;
    assert_eq!(file.quantized.len(), modules.len());
    for m in &modules {
        let w = &file.quantized[&m.name];
        assert_eq!((w.rows(), w.cols()), (m.out_features, m.in_features), "{}: shape", m.name);
        assert_eq!(w.packed().len(), w.len().div_ceil(2));
        assert_eq!(w.scales().len(), w.blocks());
        assert!(w.dequantize().iter().all(|v| v.is_finite()), "{}: a non-finite dequantised value", m.name);
    }
    assert!(file
        .tensors
        .values()
        .all(|t| Some(t.data.len()) == t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))));

    // Export what was read: the same tensors, bit for bit.
    let export = |f: &io::Nf4Tensors| {
        let q: Vec<(&str, &lora_lab::quant::QuantizedWeight)> =
            f.quantized.iter().map(|(n, w)| (n.as_str(), w)).collect();
        let t: Vec<(String, Vec<usize>, &[f32])> =
            f.tensors.iter().map(|(n, t)| (n.clone(), t.shape.clone(), t.data.as_slice())).collect();
        io::write_nf4_safetensors(&q, &t).expect("what was read can be written")
    };
    let bytes = export(&file);
    let input = io::read_tensors(weights, io::MODEL_FILE).expect("the input was accepted");
    let output = io::read_tensors(&bytes, io::MODEL_FILE).expect("our export reads back");
    assert_eq!(input.keys().collect::<Vec<_>>(), output.keys().collect::<Vec<_>>(), "export changed the key set");
    for (k, t) in &input {
        if k.ends_with(io::nf4_file::QUANT_STATE) {
            continue;
        }
        let same = match (&t.data, &output[k].data) {
            (io::Data::F32(a), io::Data::F32(b)) => a.iter().map(|v| v.to_bits()).eq(b.iter().map(|v| v.to_bits())),
            (a, b) => a == b,
        };
        assert!(same && t.shape == output[k].shape, "{k}: changed on export");
    }
    let again = io::read_nf4_safetensors(&bytes, io::MODEL_FILE, &modules).expect("our export imports again");
    assert_eq!(again.quantized, file.quantized, "weights changed on a round trip");
    assert!(export(&again) == bytes, "model.safetensors changed on a second round trip");
    Ok(format!("{} quantised Linears and {} other tensors", file.quantized.len(), file.tensors.len()))
}

// ---------- gguf ----------

/// The name every `gguf` input is read under.
pub const GGUF_FILE: &str = "fuzz.gguf";

/// The `gguf` target: the whole input is a GGUF file, read with `read_gguf` (errors name
/// [`GGUF_FILE`]). On success: every tensor lies inside the input, after the header, at an aligned
/// offset, and dequantises (whole, and as a run from its middle) to its count of values without a panic;
/// the canonical file written from what was read reads back to the same header and tensor bytes and
/// writes again to the same bytes.
pub fn gguf(data: &[u8]) -> Result<String> {
    use lora_lab::quant::ggml::{dequantize, dequantize_run};
    let read = io::read_gguf(data, GGUF_FILE);
    check_file_error(&read, GGUF_FILE);
    let g = read?;
    assert!(g.alignment.is_power_of_two() && g.data_offset % g.alignment == 0);
    let mut values = 0usize;
    for (i, t) in g.tensors.iter().enumerate() {
        assert!(t.offset >= g.data_offset && (t.offset - g.data_offset) % g.alignment == 0, "{}: offset", t.name);
        assert!(t.offset + t.bytes <= data.len(), "{}: past the end of the input", t.name);
        assert!(t.dims.len() <= 4 && t.name.len() < 64);
        let bytes = g.tensor_bytes(data, i).expect("a tensor that was read lies inside the input");
        let n = t.n_elements();
        assert_eq!(t.ty.bytes_for(n), Some(bytes.len()), "{}: {n} values in {} bytes of {}", t.name, t.bytes, t.ty);
        assert_eq!(dequantize(t.ty, bytes, n).len(), n);
        let mut run = vec![0f32; n.min(40)];
        dequantize_run(t.ty, bytes, n - run.len(), &mut run);
        values += n;
        int8_matches_exact(t, bytes);
    }
    let again = g.write(data).expect("what was read writes");
    let g2 = io::read_gguf(&again, GGUF_FILE).expect("a file we wrote reads back");
    assert_eq!(g2.metadata.len(), g.metadata.len());
    assert!(g2.metadata.iter().zip(&g.metadata).all(|((a, _), (b, _))| a == b), "keys changed on a round trip");
    assert_eq!(g2.tensors.len(), g.tensors.len());
    for (i, (a, b)) in g.tensors.iter().zip(&g2.tensors).enumerate() {
        assert_eq!((&a.name, &a.dims, a.ty, a.bytes), (&b.name, &b.dims, b.ty, b.bytes), "tensor {i} changed");
        assert!(g.tensor_bytes(data, i).unwrap() == g2.tensor_bytes(&again, i).unwrap(), "{}: bytes changed", a.name);
    }
    assert!(g2.write(&again).unwrap() == again, "the canonical file changed when written again");
    // As llama.cpp's LoRA adapter for a small Llama (panel 7's upload of a .gguf): refused naming the
    // file, or a PEFT folder that imports onto that model (the reader checked every pair's shape).
    let lora = LORA_LLAMA.with(|m| {
        let r = io::gguf_lora_to_peft(data, GGUF_FILE, &m.cfg);
        check_file_error(&r, GGUF_FILE);
        r.map(|(config, safetensors)| {
            let a = io::import_adapter("fuzz", &safetensors, &config.to_json_pretty(), m)
                .unwrap_or_else(|e| panic!("a LoRA GGUF that reads does not import: {e}"));
            assert!(a.layers.iter().all(|l| l.lora_a.iter().chain(&l.lora_b).all(|v| v.is_finite())));
            a.layers.len()
        })
    });
    let lora = lora.map_or(String::new(), |n| format!("; a LoRA adapter of {n} pairs"));
    Ok(format!("{} metadata keys, {} tensors, {values} values{lora}", g.metadata.len(), g.tensors.len()))
}

/// A 2-D tensor of a type with integer codes, as a frozen Linear (rows × cols): where the 8-bit-activation
/// kernel takes it (finite scales), its forward stays within the rounding bound of the exact one — any
/// scales, subnormal or huge, negative minimums, codes the quantiser would not write.
fn int8_matches_exact(t: &io::GgufTensorInfo, bytes: &[u8]) {
    use lora_lab::kernels;
    use lora_lab::quant::{GgmlType, GgmlWeight};
    let (Some(&cols), Some(&rows)) = (t.dims.first(), t.dims.get(1)) else { return };
    let (rows, cols) = (rows as usize, cols as usize);
    let int_codes = matches!(t.ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0);
    if !int_codes || t.dims.len() != 2 || rows * cols > 1 << 16 {
        return;
    }
    let Ok(w) = GgmlWeight::new(t.ty, rows, cols, bytes.to_vec()) else { return };
    let Some(w8) = w.int8_view() else { return };
    let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 61) as f32 / 30.0 - 1.0).collect();
    let (mut exact, mut fast) = (vec![0f32; rows], vec![0f32; rows]);
    kernels::quant_linear_forward(&x, w.kernel_view(), None, &mut exact, 1, false);
    kernels::quant_linear_forward_int8(&x, w8, None, &mut fast, 1, false);
    let deq = w.dequantize();
    for j in 0..rows {
        let wr = &deq[j * cols..(j + 1) * cols];
        if !exact[j].is_finite() || wr.iter().any(|v| !v.is_finite()) {
            continue;
        }
        // Each x moves by at most half its block's step; f32 rounding of sums up to Σ|w·x| on top.
        let step: f32 = (0..cols).map(|p| wr[p].abs() * x[p / 32 * 32..][..32].iter().fold(0f32, |a, v| a.max(v.abs())) / 254.0).sum();
        let mass: f32 = (0..cols).map(|p| (wr[p] * x[p]).abs()).sum();
        let bound = step * 1.01 + mass * 1e-5 + 1e-30;
        assert!((fast[j] - exact[j]).abs() <= bound, "{}: row {j}: int8 {} against {} (bound {bound})", t.name, fast[j], exact[j]);
    }
}

/// The Llama the `gguf` target reads LoRA adapters for: SmolLM2's layout in small (grouped-query
/// attention, tied embeddings), so q/k row permutations and every module name are exercised.
pub fn lora_llama_config() -> lora_lab::lm::LmConfig {
    lora_lab::lm::LmConfig {
        hidden: 16,
        intermediate: 24,
        layers: 2,
        heads: 4,
        kv_group: 2,
        head_dim: 4,
        context: 16,
        vocab: 32,
        bos: 1,
        eos: 2,
        pad: 2,
        tie_embeddings: true,
        ..lora_lab::lm::LmConfig::tiny()
    }
}

thread_local! {
    static LORA_LLAMA: Llama = Llama::new(lora_llama_config(), 1);
}

// ---------- hf_tokenizer ----------

/// The steps a render may take in the harness (`ChatTemplate::with_fuel`): the lab's 50 M take about
/// 57 s under the fuzzer's sanitizer and coverage instrumentation (1.6 s natively), far past its 10 s
/// timeout; 500,000 end in about a second there, so even four renders that stop just short of the
/// limit finish in time. SmolLM2's template takes 5,674 for 100 messages of 500 bytes.
pub const HF_FUEL: u64 = 500_000;

/// The chat template part's file: where a folder's `chat_template` is read from when it has no
/// `chat_template.jinja`.
const TEMPLATE_FILE: &str = io::hf_pretrained::TOKENIZER_CONFIG_FILE;

/// An `hf_tokenizer` input from its parts (the same layout as `lm_model`'s).
pub fn hf_tokenizer_input(chat_template: &[u8], tokenizer_json: &[u8]) -> Vec<u8> {
    lm_model_input(chat_template, tokenizer_json)
}

/// (chat template, tokenizer.json) from an `hf_tokenizer` input, both lossily as UTF-8.
pub fn split_hf_tokenizer_input(data: &[u8]) -> (String, String) {
    let (template, rest) = split_lm_model_input(data);
    (template, String::from_utf8_lossy(rest).into_owned())
}

/// Texts every tokenizer that loads encodes: ASCII, digits and runs of whitespace, emoji (with a
/// skin tone and a flag), CJK, control and Latin-1 characters, a word past the cache's 256 bytes, and
/// special tokens written in text.
const HF_TEXTS: &[&str] = &[
    "hello world",
    "Hello, World! It's 2 o'clock; we'll see (don't) [x] {y} <z> #1 @a ~b",
    "0 12 345 6789 3.14159 1e-10 -42 +7 2026-05-20 00:00",
    "   \t\n\n  x  \r\n \u{a0}\u{2003}\u{3000} y\t\t\t\n",
    " ",
    "🦀 👍🏽 🇫🇷 👩‍💻 ok",
    "中文分词测试，日本語のテキスト、한국어 텍스트",
    "\u{0}\u{4}\u{1f}\u{7f}\u{80}\u{ff}\u{100}\u{143}é\u{fffd}",
    "<|im_start|>user\nhello<|im_end|>\n<|endoftext|>",
];

struct ByteMap {
    chars: [char; 256],
    bytes: BTreeMap<char, u8>,
}

impl ByteMap {
    fn new() -> Self {
        let chars = lora_lab::text::byte_chars();
        let bytes = chars.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Self { chars, bytes }
    }

    /// Whether byte `b` has a token: its byte-level character is one (bpe.rs: a byte without a token
    /// is dropped, or becomes the unknown token).
    fn has_token(&self, bpe: &Bpe, b: u8) -> bool {
        bpe.id_of(self.chars[b as usize].encode_utf8(&mut [0; 4])).is_some()
    }

    /// Whether token `id` decodes as a byte-level token (each character through the byte map, or the
    /// token's own text if a character is outside it, as `tokenizers`' ByteLevel decoder does). An
    /// added or special token whose text holds byte-level characters other than printable ASCII
    /// (`Ġx`, `<|é|>`) decodes to its text instead.
    fn decodes_as_bytes(&self, bpe: &Bpe, id: u32) -> bool {
        let Some(token) = bpe.token_text(id) else { return true };
        let bytes: Option<Vec<u8>> = token.chars().map(|c| self.bytes.get(&c).copied()).collect();
        let bytes = bytes.unwrap_or_else(|| token.as_bytes().to_vec());
        bpe.decode(&[id]) == String::from_utf8_lossy(&bytes)
    }
}

/// Encodes `text`: ids below the vocabulary size, the same ids again (from the word cache), a decode
/// that does not panic; and `decode(encode(text)) == text` when `exact`, or when every byte of `text`
/// has a token and every id decodes as a byte-level token. Returns whether the round trip was checked.
fn check_encode(bpe: &Bpe, map: &ByteMap, text: &str, exact: bool) -> bool {
    let ids = bpe.encode(text);
    let n = bpe.vocab_size();
    if let Some(id) = ids.iter().find(|&&id| id as usize >= n) {
        panic!("encode({text:?}) gave id {id}, past the vocabulary of {n}");
    }
    assert_eq!(bpe.encode(text), ids, "encode({text:?}) changed on a second call (the word cache)");
    let decoded = bpe.decode(&ids);
    let round_trip =
        exact || (text.bytes().all(|b| map.has_token(bpe, b)) && ids.iter().all(|&id| map.decodes_as_bytes(bpe, id)));
    if round_trip {
        assert_eq!(decoded, text, "decode(encode(text)) is not the text; ids {ids:?}");
    }
    round_trip
}

/// Up to 64 characters of `text` from a place the input's bytes choose.
fn slice_of<'a>(text: &'a str, data: &[u8]) -> &'a str {
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut start = (h as usize) % (text.len() + 1);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let rest = &text[start..];
    let len = rest.char_indices().nth(((h >> 32) % 65) as usize).map_or(rest.len(), |(i, _)| i);
    &rest[..len]
}

/// The conversations every template that compiles renders, with and without the generation prompt.
fn hf_conversations() -> [Vec<Message>; 2] {
    [
        vec![Message::new("user", "Hello!")],
        vec![
            Message::new("system", "You answer in one word."),
            Message::new("user", "Capital of France? 🇫🇷"),
            Message::new("assistant", "Paris."),
            Message::new("user", "And of 日本?\n\n  Be brief."),
        ],
    ]
}

/// The `hf_tokenizer` target. `Bpe::from_tokenizer_json` on the tokenizer part: errors name
/// `tokenizer.json`. On success, [`HF_TEXTS`], each added or special token's text, and a slice of the
/// input encode to ids below the vocabulary size (and to the same ids again); `decode(encode(s)) == s`
/// for an added token's text, and for any text whose bytes all have a token and whose ids all decode
/// as byte-level tokens. Then, when the template part is not empty, `ChatTemplate::new` (errors name
/// `tokenizer_config.json`) and four renders of two fixed conversations, with and without the
/// generation prompt, each limited to [`HF_FUEL`] steps: a render may fail (`raise_exception`, out of
/// fuel), naming
/// `tokenizer_config.json`, but not panic; a rendered prompt encodes. Returns the first error.
pub fn hf_tokenizer(data: &[u8]) -> Result<String> {
    let (template, json) = split_hf_tokenizer_input(data);
    let tokenizer_file = io::hf_pretrained::TOKENIZER_FILE;
    let bpe = Bpe::from_tokenizer_json(&json, tokenizer_file);
    check_file_error(&bpe, tokenizer_file);
    let bpe = bpe?;
    let n = bpe.vocab_size();
    let map = ByteMap::new();
    let mut checked = 0;
    for text in HF_TEXTS.iter().copied().chain([slice_of(&json, data)]) {
        checked += usize::from(check_encode(&bpe, &map, text, false));
    }
    let long = "supercalifragilistic".repeat(16);
    checked += usize::from(check_encode(&bpe, &map, &long, false));
    // The added and special tokens' texts (the first 64): matched whole, so always back as they were.
    let added: Vec<u32> =
        (0..n as u32).filter(|&id| bpe.is_special(id) || !map.decodes_as_bytes(&bpe, id)).take(64).collect();
    for &id in &added {
        let text = bpe.token_text(id).expect("a token decodes to its text");
        check_encode(&bpe, &map, text, true);
        let joined = format!("{text} {text}x{text}");
        checked += usize::from(check_encode(&bpe, &map, &joined, false));
    }
    let mut summary = format!("{n} tokens, {checked} round trips");
    if template.is_empty() {
        return Ok(summary);
    }
    let chat = ChatTemplate::new(&template, "<s>", "</s>", TEMPLATE_FILE).map(|t| t.with_fuel(HF_FUEL));
    check_file_error(&chat, TEMPLATE_FILE);
    let chat = chat?;
    for messages in hf_conversations() {
        for generation_prompt in [false, true] {
            let rendered = chat.render(&messages, generation_prompt);
            check_file_error(&rendered, TEMPLATE_FILE);
            let prompt = rendered?;
            if prompt.len() <= 1 << 16 {
                check_encode(&bpe, &map, &prompt, false);
            }
            summary.push_str(&format!(", a prompt of {} bytes", prompt.len()));
        }
    }
    Ok(summary)
}

// ---------- sft_jsonl ----------

const SFT_FILE: &str = "fuzz.jsonl";

/// SmolLM2-135M-Instruct's chat template (its GGUF's `tokenizer.chat_template`).
pub const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Conversations of at most this many messages in all are also encoded with assistant-only loss, which
/// renders each conversation up to every assistant message (n² steps).
const SFT_ASSISTANT_ONLY_MESSAGES: usize = 64;

/// A byte-level BPE with SmolLM2's pre-tokenizer, a few merges and ChatML's special tokens, and no
/// token for byte 0x04 (dropped from the text, as SmolLM2 drops it: token offsets then do not add up).
pub fn sft_bpe() -> Bpe {
    let chars = lora_lab::text::byte_chars();
    let mut tokens: Vec<String> = (0..256).filter(|&b| b != 4).map(|b| chars[b].to_string()).collect();
    let merges = ["Ġ t", "h e", "Ġt he", "i n", "a n", "Ċ Ċ", "e r", "o n", "Ġ Ġ", "ĠĠ ĠĠ"];
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    let mut types = vec![1; tokens.len()];
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(special.to_string());
        types.push(3);
    }
    let merges: Vec<String> = merges.iter().map(|m| m.to_string()).collect();
    Bpe::from_vocab(&tokens, &merges, &types, "smollm", "fuzz.gguf").expect("the fuzz tokenizer builds")
}

struct SftTools {
    bpe: Bpe,
    template: ChatTemplate,
}

thread_local! {
    static SFT_TOOLS: SftTools = SftTools {
        bpe: sft_bpe(),
        template: ChatTemplate::new(SMOLLM2_TEMPLATE, "", "<|im_end|>", "tokenizer.chat_template")
            .expect("SmolLM2's template compiles")
            .with_fuel(HF_FUEL),
    };
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn conversational(row: &SftRow) -> bool {
    matches!(row.kind, SftKind::Messages(_) | SftKind::PromptCompletion { prompt: Content::Messages(_), .. })
}

/// What a row holds, as a tag that differs between forms.
fn form(row: &SftRow) -> u8 {
    match &row.kind {
        SftKind::Messages(_) => 0,
        SftKind::PromptCompletion { prompt: Content::Text(_), completion: Content::Text(_) } => 1,
        SftKind::PromptCompletion { prompt: Content::Messages(_), completion: Content::Messages(_) } => 2,
        SftKind::PromptCompletion { .. } => panic!("line {}: a prompt and a completion of different forms", row.line),
        SftKind::Text(_) => 3,
    }
}

fn message_count(row: &SftRow) -> usize {
    match &row.kind {
        SftKind::Messages(m) => m.len(),
        SftKind::PromptCompletion { prompt: Content::Messages(p), completion: Content::Messages(c) } => {
            p.len() + c.len()
        }
        _ => 0,
    }
}

/// An encoding error names the line of a row (`line N: ...`), as a state error.
fn check_encode_error<T>(r: &Result<T>, rows: &[SftRow]) {
    if let Err(e) = r {
        let LabError::State(msg) = e else { panic!("encode_sft: expected a state error, got {e:?}") };
        let line: Option<usize> =
            msg.strip_prefix("line ").and_then(|m| m.split(':').next()).and_then(|n| n.parse().ok());
        let line = line.unwrap_or_else(|| panic!("encode_sft's error names no line: {msg}"));
        assert!(rows.iter().any(|r| r.line == line), "encode_sft's error names line {line}, no row's: {msg}");
    }
}

/// The checks of one encoding: an example per row, in order, with its line; ids and mask of the same
/// length, 2 to `max_len` tokens, ids in the vocabulary, `trained[0]` false and some token trained.
fn check_examples(examples: &[SftExample], rows: &[SftRow], max_len: usize, vocab: usize) {
    assert_eq!(examples.len(), rows.len());
    for (e, r) in examples.iter().zip(rows) {
        assert_eq!(e.line, r.line);
        assert_eq!(e.ids.len(), e.trained.len());
        assert!(e.ids.len() >= 2 && e.ids.len() <= max_len, "line {}: {} tokens", e.line, e.ids.len());
        assert!(e.ids.iter().all(|&id| (id as usize) < vocab), "line {}: an id past the vocabulary", e.line);
        assert!(!e.trained[0] && e.trained.contains(&true), "line {}: mask {:?}", e.line, e.trained);
    }
}

/// `pack_sft`: each map batch's tokens and masks, in order, cut into rows of `block` (the last of a
/// batch shorter), `trained[0]` false, the line of the row's first token, `truncated` if one of its
/// examples was.
fn check_packing(examples: &[SftExample], block: usize) -> usize {
    let packed = pack_sft(examples, block);
    let mut rows = packed.iter();
    for batch in examples.chunks(PACK_MAP_BATCH) {
        let ids: Vec<u32> = batch.iter().flat_map(|e| e.ids.iter().copied()).collect();
        let trained: Vec<bool> = batch.iter().flat_map(|e| e.trained.iter().copied()).collect();
        let mut owner = Vec::with_capacity(ids.len());
        for (k, e) in batch.iter().enumerate() {
            owner.extend(std::iter::repeat_n(k, e.ids.len()));
        }
        for from in (0..ids.len()).step_by(block) {
            let to = (from + block).min(ids.len());
            let row = rows.next().expect("a packed row for every block of a batch");
            assert_eq!(row.ids, ids[from..to]);
            assert!(!row.trained[0]);
            assert_eq!(row.trained[1..], trained[from + 1..to]);
            assert_eq!(row.line, batch[owner[from]].line);
            assert_eq!(row.truncated, (owner[from]..=owner[to - 1]).any(|k| batch[k].truncated));
        }
    }
    assert!(rows.next().is_none(), "more packed rows than blocks");
    packed.len()
}

/// `pack_sft_bfd`: per map batch, every example in exactly one row, its first `block` tokens and their
/// mask in one piece (`lengths` saying where), `truncated` where it was cut or already was; no row
/// longer than `block`; each row's line that of its first example; no row opened while an earlier one
/// had room for the example that opened it. Returns the number of rows.
fn check_bfd(examples: &[SftExample], block: usize) -> usize {
    let packed = pack_sft_bfd(examples, block);
    let mut rows = packed.iter();
    for batch in examples.chunks(PACK_MAP_BATCH) {
        let mut seen = vec![false; batch.len()];
        let mut in_batch = Vec::new();
        let mut total = 0;
        while total < batch.len() {
            let r = rows.next().expect("fewer bfd rows than examples need");
            assert!(!r.lengths.is_empty() && r.lengths.iter().sum::<usize>() == r.ids.len() && r.ids.len() <= block);
            assert_eq!(r.ids.len(), r.trained.len());
            let mut at = 0;
            let mut truncated = false;
            for (j, &n) in r.lengths.iter().enumerate() {
                // the example this piece is: the first unseen one whose cut ids and mask match
                let k = (0..batch.len())
                    .find(|&k| {
                        let e = &batch[k];
                        !seen[k]
                            && e.ids.len().min(block) == n
                            && e.ids[..n] == r.ids[at..at + n]
                            && e.trained[..n] == r.trained[at..at + n]
                    })
                    .unwrap_or_else(|| panic!("a bfd row's piece of {n} tokens is no example's"));
                seen[k] = true;
                truncated |= batch[k].truncated || batch[k].ids.len() > block;
                if j == 0 {
                    assert_eq!(r.line, batch[k].line);
                }
                at += n;
            }
            assert_eq!(r.truncated, truncated);
            in_batch.push((block - r.ids.len(), r.lengths[0]));
            total += r.lengths.len();
        }
        assert_eq!(total, batch.len(), "an example in two rows");
        // A row is opened only when no row before it has room for the piece that opens it (its first), and
        // free space only shrinks: every row's final free space is below each later row's first piece.
        for (i, &(free, _)) in in_batch.iter().enumerate() {
            assert!(
                in_batch[i + 1..].iter().all(|&(_, first)| free < first),
                "row {i} had room for a later row's first example"
            );
        }
    }
    assert!(rows.next().is_none(), "more bfd rows than examples");
    packed.len()
}

/// The `sft_jsonl` target. `parse_sft_jsonl` on the input: errors name `fuzz.jsonl`; on success the rows
/// are in order of their lines, of one form, each message list not empty. Then `encode_sft` with a tiny
/// tokenizer ([`sft_bpe`]) and SmolLM2's chat template, at no limit and at a maximum length of 2 to 97
/// tokens: errors name a row's line; the truncated encoding is the first `max_len` tokens of the full
/// one (an error only where a truncated example has nothing left to train on), `truncated` where it was
/// longer. Conversations of up to 64 messages are also encoded with assistant-only loss: the same ids,
/// and a mask within the full one's. `pack_sft` and `pack_sft_bfd` at a block of 1 to 48 (see
/// [`check_packing`], [`check_bfd`]).
/// Returns the parse or the untruncated encoding's error (the others are only checked).
pub fn sft_jsonl(data: &[u8]) -> Result<String> {
    let rows = parse_sft_jsonl(data, SFT_FILE);
    check_file_error(&rows, SFT_FILE);
    let rows = rows?;
    assert!(!rows.is_empty() && rows.len() <= MAX_SFT_ROWS);
    let lines = data.split(|&b| b == b'\n').count();
    assert!(rows[0].line >= 1 && rows.windows(2).all(|w| w[0].line < w[1].line) && rows.last().unwrap().line <= lines);
    let first = form(&rows[0]);
    for r in &rows {
        assert_eq!(form(r), first, "line {}: another form than line {}'s", r.line, rows[0].line);
        if let SftKind::PromptCompletion { prompt: Content::Messages(p), completion: Content::Messages(c) } = &r.kind {
            assert!(!p.is_empty() && !c.is_empty());
        }
        if let SftKind::Messages(m) = &r.kind {
            assert!(!m.is_empty());
        }
    }
    let h = fnv(data);
    let max_len = 2 + (h % 96) as usize;
    let block = 1 + ((h >> 8) % 48) as usize;
    SFT_TOOLS.with(|t| {
        let eos = t.bpe.id_of("<|im_end|>").expect("the fuzz tokenizer has <|im_end|>");
        let tok = SftTokenizer { bpe: &t.bpe, template: Some(&t.template), bos: None, eos, eos_text: "<|im_end|>" };
        let vocab = t.bpe.vocab_size();
        let full = encode_sft(&rows, &tok, usize::MAX, false);
        check_encode_error(&full, &rows);
        let cut = encode_sft(&rows, &tok, max_len, false);
        check_encode_error(&cut, &rows);
        match (&full, &cut) {
            (Ok(full), Ok(cut)) => {
                check_examples(full, &rows, usize::MAX, vocab);
                check_examples(cut, &rows, max_len, vocab);
                for (f, c) in full.iter().zip(cut) {
                    let n = f.ids.len().min(max_len);
                    assert_eq!(c.ids, f.ids[..n]);
                    assert_eq!(c.trained, f.trained[..n]);
                    assert_eq!(c.truncated, f.ids.len() > max_len);
                    assert!(!f.truncated);
                }
            }
            (Ok(full), Err(_)) => {
                assert!(
                    full.iter().any(|f| f.ids.len() > max_len && !f.trained[..max_len].contains(&true)),
                    "truncation to {max_len} failed, but no example loses all it trains: {cut:?}"
                );
            }
            (Err(_), Ok(_)) => panic!("rows that fail untruncated encode truncated: {full:?}"),
            (Err(_), Err(_)) => {}
        }
        let all_messages: usize = rows.iter().map(message_count).sum();
        if conversational(&rows[0]) && all_messages <= SFT_ASSISTANT_ONLY_MESSAGES {
            let assistant = encode_sft(&rows, &tok, usize::MAX, true);
            check_encode_error(&assistant, &rows);
            if let (Ok(a), Ok(f)) = (&assistant, &full) {
                check_examples(a, &rows, usize::MAX, vocab);
                for (a, f) in a.iter().zip(f) {
                    assert_eq!(a.ids, f.ids, "line {}: assistant-only loss changed the ids", a.line);
                    assert!(a.trained.iter().zip(&f.trained).all(|(a, f)| !a || *f), "line {}", a.line);
                }
            }
        }
        let full = full?;
        let packed = check_packing(&full, block);
        let binned = check_bfd(&full, block);
        let tokens: usize = full.iter().map(|e| e.ids.len()).sum();
        let cut = match cut {
            Ok(c) => format!("{} truncated to {max_len}", c.iter().filter(|e| e.truncated).count()),
            Err(e) => format!("truncation to {max_len}: {e}"),
        };
        Ok(format!("{} rows, {tokens} tokens, {packed} packed rows of {block} ({binned} bfd); {cut}", rows.len()))
    })
}
