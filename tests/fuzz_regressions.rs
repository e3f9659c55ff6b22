#![cfg(not(target_arch = "wasm32"))]
//! The fuzz targets' checks (tests/fuzz/harness.rs) under plain `cargo test`: every committed seed
//! in tests/fuzz/seeds/<target>/ and every input a fuzzer ever crashed on (tests/fuzz/regressions/
//! <target>/) is replayed, with the answer it must give. `ok-` seeds must be accepted, `bad-` seeds and
//! regressions rejected with the message listed here.
//!
//! The seeds are written by the ignored test `write_seeds`:
//! `cargo +stable test --release --test fuzz_regressions -- --ignored write_seeds`.

#[path = "fuzz/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use lora_lab::data::{IMAGE_MAGIC, LABEL_MAGIC, PIXELS};
use lora_lab::io::{self, write_safetensors};
use lora_lab::lm::{Llama, LmConfig};
use lora_lab::lora::{Adaptable, Adapter, Bias, Init, LoraConfig, Scaling};
use lora_lab::Result;
use serde_json::{json, Value};

/// What replaying an input must give: acceptance, or an error whose message contains each part.
enum Expect {
    Ok,
    Err(&'static [&'static str]),
}
use Expect::{Err as Rejected, Ok as Accepted};

const TARGETS: [&str; 8] = ["idx", "safetensors", "adapter", "lm_model", "nf4", "gguf", "hf_tokenizer", "sft_jsonl"];

fn dir(kind: &str, target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(kind).join(target)
}

/// The files of a folder, by name (none if the folder does not exist).
/// The files of `tests/fuzz/<kind>/<target>/` but its `.keep` (which keeps an empty folder in git). A
/// missing folder fails the test: it would otherwise read as "nothing to replay" and pass whatever
/// happened to the inputs.
fn files(kind: &str, target: &str) -> BTreeMap<String, Vec<u8>> {
    let d = dir(kind, target);
    let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{} is missing ({e}): restore it from git", d.display()));
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".keep"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// The target's checks, as the fuzzer runs them (the adapter target reuses one lab per thread).
fn run(target: &str, bytes: &[u8]) -> Result<String> {
    match target {
        "idx" => harness::idx(bytes).map(|n| format!("{n} samples")),
        "safetensors" => harness::safetensors(bytes).map(|n| format!("{n} tensors")),
        "adapter" => harness::adapter(bytes).map(|s| format!("adapter with {} parameters", s.trainable_params)),
        "lm_model" => harness::lm_model(bytes).map(|n| format!("language model with {n} parameters")),
        "nf4" => harness::nf4(bytes),
        "gguf" => harness::gguf(bytes),
        "hf_tokenizer" => harness::hf_tokenizer(bytes),
        "sft_jsonl" => harness::sft_jsonl(bytes),
        _ => unreachable!(),
    }
}

/// Replays every file of `kind` against `expected`, which must list exactly those files.
fn replay(kind: &str, expected: &[(&str, &str, Expect)]) {
    for target in TARGETS {
        let found = files(kind, target);
        let listed: BTreeSet<&str> = expected.iter().filter(|(t, _, _)| *t == target).map(|(_, n, _)| *n).collect();
        let on_disk: BTreeSet<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(on_disk, listed, "tests/fuzz/{kind}/{target}/ and this test's list differ");
        for (_, name, expect) in expected.iter().filter(|(t, _, _)| *t == target) {
            let result = run(target, &found[*name]);
            match (expect, result) {
                (Accepted, Ok(_)) => {}
                (Accepted, Err(e)) => panic!("{kind}/{target}/{name} must be accepted, got: {e}"),
                (Rejected(_), Ok(what)) => panic!("{kind}/{target}/{name} must be rejected, got {what}"),
                (Rejected(parts), Err(e)) => {
                    let msg = e.to_string();
                    for p in *parts {
                        assert!(msg.contains(p), "{kind}/{target}/{name}: expected {p:?} in: {msg}");
                    }
                }
            }
        }
    }
}

/// Every committed seed, with its answer.
const SEEDS: &[(&str, &str, Expect)] = &[
    ("idx", "ok-one-image", Accepted),
    ("idx", "ok-two-images", Accepted),
    ("idx", "bad-count-mismatch", Rejected(&["fuzz set: 2 images but 3 labels"])),
    ("idx", "bad-label-not-a-digit", Rejected(&["labels: label 10 at index 1 is not a digit"])),
    ("idx", "bad-files-swapped", Rejected(&["images: this is a label file"])),
    ("idx", "bad-truncated-images", Rejected(&["images: truncated: 784 bytes of pixel data, header promises 1568"])),
    ("idx", "bad-trailing-bytes", Rejected(&["images: 3 trailing bytes"])),
    ("idx", "bad-27x27", Rejected(&["images: images are 27×27, expected 28×28"])),
    ("idx", "bad-zero-dimension", Rejected(&["labels: zero dimension in header (0)"])),
    ("safetensors", "ok-article-adapter", Accepted),
    ("safetensors", "ok-small-with-metadata", Accepted),
    ("safetensors", "ok-no-tensors", Accepted),
    ("safetensors", "bad-truncated", Rejected(&["fuzz.safetensors:", "out of range"])),
    ("safetensors", "bad-header-length", Rejected(&["fuzz.safetensors: header length", "runs past the end"])),
    ("safetensors", "bad-f16", Rejected(&["fuzz.safetensors: tensor x has dtype F16; only F32"])),
    ("safetensors", "bad-overlap", Rejected(&["fuzz.safetensors: tensors a [0, 8] and b [4, 12] overlap"])),
    ("safetensors", "bad-not-json", Rejected(&["fuzz.safetensors: header is not valid JSON"])),
    ("safetensors", "bad-too-short", Rejected(&["fuzz.safetensors: file is 3 bytes, too short"])),
    ("adapter", "ok-article", Accepted),
    ("adapter", "ok-rslora-lora-only-bias", Accepted),
    ("adapter", "ok-two-layers-r1", Accepted),
    ("adapter", "ok-peft-handwritten", Accepted),
    ("adapter", "bad-pissa-base-not-a-model", Rejected(&["model.safetensors: missing layers.1.weight"])),
    ("adapter", "bad-dora", Rejected(&["adapter_config.json: use_dora is true"])),
    ("adapter", "bad-nan-alpha", Rejected(&["adapter_config.json: not valid JSON", "NaN/Infinity is not JSON"])),
    (
        "adapter",
        "bad-rank-mismatch",
        Rejected(&["adapter_model.safetensors:", "has shape [4, 256], expected [8, 256]"]),
    ),
    ("adapter", "bad-unknown-target", Rejected(&["adapter_config.json: unknown target module \"layers.2\""])),
    ("adapter", "bad-non-finite", Rejected(&["adapter_model.safetensors:", "holds a non-finite value (inf)"])),
    ("adapter", "bad-missing-bias", Rejected(&["adapter_model.safetensors: missing base_model.model.layers.1.bias"])),
    ("lm_model", "ok-one-layer", Accepted),
    ("lm_model", "ok-two-layers", Accepted),
    ("lm_model", "ok-transformers4-config", Accepted),
    ("lm_model", "ok-transformers5-extras", Accepted),
    ("lm_model", "bad-config-not-json", Rejected(&["config.json: not valid JSON"])),
    ("lm_model", "bad-missing-field", Rejected(&["config.json: vocab_size is missing"])),
    ("lm_model", "bad-model-type", Rejected(&["config.json: model_type is \"mistral\"; only \"llama\""])),
    // Grouped-query attention is read; this file's k/v weights are those of one head per query head.
    (
        "lm_model",
        "bad-grouped-kv",
        Rejected(&["model.safetensors:", "k_proj.weight has shape [8, 8], expected [4, 8]"]),
    ),
    ("lm_model", "bad-bf16", Rejected(&["config.json: dtype is \"bfloat16\"; only float32", "bf16/f16"])),
    ("lm_model", "bad-quantized", Rejected(&["config.json: quantization_config.load_in_4bit is missing"])),
    ("lm_model", "ok-4-bit", Accepted),
    ("lm_model", "ok-4-bit-double-quant", Accepted),
    ("lm_model", "bad-4-bit-config-f32-weights", Rejected(&["model.safetensors:", "is F32", "not quantised"])),
    ("lm_model", "bad-rope-scaling", Rejected(&["config.json: rope_parameters.factor is set (2.0): rope scaling"])),
    // Tied embeddings are read: the file without lm_head.weight is a tied model.
    ("lm_model", "ok-tied", Accepted),
    ("lm_model", "bad-too-large", Rejected(&["config.json: vocab_size is 300000; this lab handles 1 to 262144"])),
    (
        "lm_model",
        "bad-missing-lm-head",
        Rejected(&["model.safetensors: missing lm_head.weight (tie_word_embeddings is false"]),
    ),
    (
        "lm_model",
        "bad-unexpected-key",
        Rejected(&["model.safetensors: unexpected model.layers.0.self_attn.rotary_emb.inv_freq"]),
    ),
    (
        "lm_model",
        "bad-sizes",
        Rejected(&[
            "model.safetensors: model.layers.0.mlp.gate_proj.weight has shape [12, 8], expected [16, 8]",
            "model.layers.0.mlp.down_proj.weight has shape [8, 12], expected [8, 16]",
        ]),
    ),
    (
        "lm_model",
        "bad-non-finite",
        Rejected(&["model.safetensors: model.norm.weight holds a non-finite value (NaN) at index 3"]),
    ),
    ("lm_model", "bad-truncated", Rejected(&["model.safetensors:", "out of range"])),
    ("lm_model", "bad-f16", Rejected(&["model.safetensors: tensor lm_head.weight has dtype F16; only F32"])),
    ("nf4", "ok-plain", Accepted),
    ("nf4", "ok-double-quant", Accepted),
    ("nf4", "ok-no-config", Accepted),
    ("nf4", "ok-qlora-md-config", Accepted),
    ("nf4", "bad-config-not-json", Rejected(&["config.json: quantization_config is not valid JSON"])),
    ("nf4", "bad-config-fp4", Rejected(&["config.json: quantization_config.bnb_4bit_quant_type is \"fp4\""])),
    ("nf4", "bad-config-8bit", Rejected(&["config.json: quantization_config.load_in_8bit is true"])),
    (
        "nf4",
        "bad-packed-size",
        Rejected(&["model.safetensors: layers.1.weight has shape [34, 1]; the packed NF4 codes", "are [35, 1]"]),
    ),
    (
        "nf4",
        "bad-quant-type",
        Rejected(&["layers.1.weight.quant_state.bitsandbytes__nf4: quant_type is \"fp4\"; only \"nf4\""]),
    ),
    ("nf4", "bad-fp4-state", Rejected(&["bitsandbytes__fp4: quant type \"fp4\" is not supported"])),
    ("nf4", "bad-blocksize", Rejected(&["bitsandbytes__nf4: blocksize is 128; only 64"])),
    (
        "nf4",
        "bad-json",
        Rejected(&["model.safetensors: layers.3.weight.quant_state.bitsandbytes__nf4: not valid JSON"]),
    ),
    ("nf4", "bad-shape", Rejected(&["shape is [23,3], but the Linear is 3 × 23 (out × in)"])),
    ("nf4", "bad-missing-quant-map", Rejected(&["model.safetensors: missing layers.3.weight.quant_map"])),
    (
        "nf4",
        "bad-u8-absmax-without-nested",
        Rejected(&["layers.1.weight.absmax is U8 (double quantisation) but layers.1.weight.nested_absmax"]),
    ),
    ("nf4", "bad-quant-map", Rejected(&["layers.1.weight.quant_map: value 15 is 0.5, NF4's is 1"])),
    ("nf4", "bad-unquantised", Rejected(&["layers.3.weight is F32 [4, 48]: this Linear is not quantised"])),
    (
        "nf4",
        "bad-f16",
        Rejected(&["model.safetensors: tensor x has dtype F16; a 4-bit (NF4) file holds only F32 and U8"]),
    ),
    ("nf4", "bad-truncated", Rejected(&["model.safetensors:", "out of range"])),
    ("gguf", "ok-every-type", Accepted),
    ("gguf", "ok-alignment-64", Accepted),
    ("gguf", "ok-no-tensors-v2", Accepted),
    ("gguf", "ok-smollm2-miniature", Accepted),
    ("gguf", "ok-lora-adapter", Accepted),
    ("gguf", "ok-lora-missing-half", Accepted),
    ("gguf", "bad-version-1", Rejected(&["fuzz.gguf: GGUF version 1 is not read by this lab"])),
    (
        "gguf",
        "bad-smollm2-header-truncated",
        Rejected(&["fuzz.gguf: metadata key \"tokenizer.ggml.tokens\": an array of 49152 string elements"]),
    ),
    ("gguf", "bad-truncated", Rejected(&["fuzz.gguf: tensor \"k.q6_k\"", "runs past the end of the file"])),
    (
        "gguf",
        "bad-huge-array",
        Rejected(&["fuzz.gguf: metadata key \"tokenizer.ggml.tokens\": an array of 1152921504606846976 string"]),
    ),
    ("gguf", "bad-unknown-type", Rejected(&["fuzz.gguf: tensor \"blk.0.attn_q.weight\" has type Q5_K (13)"])),
    (
        "gguf",
        "bad-misaligned",
        Rejected(&[
            "fuzz.gguf: tensor \"output_norm.weight\" is at offset 208 of the data, not a multiple of the alignment",
        ]),
    ),
    (
        "gguf",
        "bad-overlap",
        Rejected(&["fuzz.gguf: tensors \"token_embd.weight\" (bytes", "and \"blk.0.attn_q.weight\" (bytes", "overlap"]),
    ),
    ("gguf", "bad-alignment", Rejected(&["fuzz.gguf: metadata key \"general.alignment\" is 48"])),
    ("hf_tokenizer", "ok-smollm2-template", Accepted),
    ("hf_tokenizer", "ok-no-template", Accepted),
    ("hf_tokenizer", "ok-all-bytes-pair-merges", Accepted),
    ("hf_tokenizer", "ok-unk-fused", Accepted),
    ("hf_tokenizer", "bad-not-json", Rejected(&["tokenizer.json: not valid JSON"])),
    (
        "hf_tokenizer",
        "bad-wordpiece",
        Rejected(&["tokenizer.json: model.type: \"WordPiece\" is not supported (only \"BPE\")"]),
    ),
    (
        "hf_tokenizer",
        "bad-merges-missing",
        Rejected(&["tokenizer.json: model.merges: missing; a BPE tokenizer without merges is not supported"]),
    ),
    (
        "hf_tokenizer",
        "bad-merge-not-in-vocabulary",
        Rejected(&["tokenizer.json: model.merges[1] (\"h\" \"z\"): \"z\" is not in the vocabulary"]),
    ),
    (
        "hf_tokenizer",
        "bad-unknown-pre-tokenizer",
        Rejected(&["tokenizer.json: pre_tokenizer: \"Metaspace\" is not supported"]),
    ),
    (
        "hf_tokenizer",
        "bad-template-syntax",
        Rejected(&[
            "tokenizer_config.json: chat template, line 5: syntax error: unexpected `%`, expected end of block",
        ]),
    ),
    // Jinja's range() refuses more than 100,000 items before the loop runs.
    (
        "hf_tokenizer",
        "bad-template-range",
        Rejected(&["tokenizer_config.json: chat template: range has too many elements"]),
    ),
    // 10^10 steps: the fuel limit (50 M) stops it.
    ("hf_tokenizer", "bad-template-fuel", Rejected(&["tokenizer_config.json: chat template, line 1:", "fuel"])),
    // The first conversation renders; the second has a system message, which this template refuses.
    (
        "hf_tokenizer",
        "bad-template-raises",
        Rejected(&["tokenizer_config.json: chat template: System role not supported"]),
    ),
    ("sft_jsonl", "ok-demo-prompt-completion", Accepted),
    ("sft_jsonl", "ok-plain-prompt-completion", Accepted),
    ("sft_jsonl", "ok-text", Accepted),
    ("sft_jsonl", "ok-messages", Accepted),
    ("sft_jsonl", "ok-many-rows", Accepted),
    ("sft_jsonl", "bad-completion-missing", Rejected(&["fuzz.jsonl: line 2: \"completion\" is missing"])),
    ("sft_jsonl", "bad-not-json", Rejected(&["fuzz.jsonl: line 1: not JSON (EOF while parsing an object at column"])),
    (
        "sft_jsonl",
        "bad-array-row",
        Rejected(&[
            "fuzz.jsonl: line 1: a row has \"text\", \"messages\" or \"prompt\"+\"completion\", as a JSON object",
        ]),
    ),
    ("sft_jsonl", "bad-not-utf8", Rejected(&["fuzz.jsonl: line 2: not UTF-8 (byte 11 of the line)"])),
    (
        "sft_jsonl",
        "bad-mixed-forms",
        Rejected(&["fuzz.jsonl: line 3: a {\"text\": \"...\"} row, but line 1 is a {\"messages\": [...]} row"]),
    ),
    (
        "sft_jsonl",
        "bad-prompt-string-completion-list",
        Rejected(&["fuzz.jsonl: line 1: the prompt is a string and the completion a message list"]),
    ),
    (
        "sft_jsonl",
        "bad-role-not-string",
        Rejected(&["fuzz.jsonl: line 1: message 2 of \"messages\": \"role\" must be a string, not null"]),
    ),
    ("sft_jsonl", "bad-no-rows", Rejected(&["fuzz.jsonl: no rows"])),
    ("sft_jsonl", "bad-one-token", Rejected(&["line 2: 1 token: nothing to train on"])),
];

/// Every input a fuzzer crashed on (minimised), with the error it must now give.
const REGRESSIONS: &[(&str, &str, Expect)] = &[];

#[test]
fn seeds_replay_with_their_answers() {
    replay("seeds", SEEDS);
}

#[test]
fn fuzzer_crashes_stay_fixed() {
    replay("regressions", REGRESSIONS);
}

#[test]
fn adapter_input_layout() {
    let input = harness::adapter_input(b"{}", b"weights", true);
    assert_eq!(input[..2], [2, 0x80]);
    let (config, weights, base) = harness::split_adapter_input(&input);
    assert_eq!((config.as_str(), weights, base), ("{}", &b"weights"[..], Some(&b"weights"[..])));
    // A length past the end takes everything as config; short inputs do not panic.
    assert_eq!(harness::split_adapter_input(&[0xff, 0x7f, b'x']), ("x".to_string(), &[][..], None));
    assert_eq!(harness::split_adapter_input(&[7]), (String::new(), &[7u8][..], None));
}

#[test]
fn lm_model_input_layout() {
    let input = harness::lm_model_input(b"{}", b"weights");
    assert_eq!(input[..2], [2, 0]);
    assert_eq!(harness::split_lm_model_input(&input), ("{}".to_string(), &b"weights"[..]));
    // A length past the end takes everything as config; short inputs do not panic.
    assert_eq!(harness::split_lm_model_input(&[0xff, 0xff, b'x']), ("x".to_string(), &[][..]));
    assert_eq!(harness::split_lm_model_input(&[7]), (String::new(), &[7u8][..]));
}

#[test]
fn hf_tokenizer_input_layout() {
    let input = harness::hf_tokenizer_input(b"{{ x }}", b"{}");
    assert_eq!(input[..2], [7, 0]);
    assert_eq!(harness::split_hf_tokenizer_input(&input), ("{{ x }}".to_string(), "{}".to_string()));
    // A length past the end takes everything as the template; short inputs do not panic; bytes that are
    // not UTF-8 are read lossily.
    assert_eq!(harness::split_hf_tokenizer_input(&[0xff, 0xff, b'x']), ("x".to_string(), String::new()));
    assert_eq!(harness::split_hf_tokenizer_input(&[7]), (String::new(), "\u{7}".to_string()));
    assert_eq!(
        harness::split_hf_tokenizer_input(&[1, 0, 0xff, 0xc3]),
        ("\u{fffd}".to_string(), "\u{fffd}".to_string())
    );
}

/// A template that exhausts the fuel is an error, and soon: it cannot hang the page. The harness's
/// 500,000 steps, and the 50 M a template gets in the lab.
#[test]
fn hf_tokenizer_fuel_ends_a_looping_template() {
    let bytes = &files("seeds", "hf_tokenizer")["bad-template-fuel"];
    let start = std::time::Instant::now();
    assert!(harness::hf_tokenizer(bytes).unwrap_err().to_string().contains("out of fuel"));
    let seconds = start.elapsed().as_secs_f64();
    assert!(seconds < 1.0, "out of the harness's fuel after {seconds:.2} s");
    let (template, _) = harness::split_hf_tokenizer_input(bytes);
    let chat = lora_lab::text::ChatTemplate::new(&template, "<s>", "</s>", "t").unwrap();
    let start = std::time::Instant::now();
    assert!(chat.render(&[], false).unwrap_err().to_string().contains("out of fuel"));
    let seconds = start.elapsed().as_secs_f64();
    assert!(seconds < 20.0, "out of fuel after {seconds:.1} s");
}

// ---------- the seeds ----------

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn images(n: u32, side: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..n as usize * (side * side) as usize).map(|k| (k * 7 % 256) as u8).collect();
    harness::idx_file(IMAGE_MAGIC, &[n, side, side], &pixels)
}

fn labels(digits: &[u8]) -> Vec<u8> {
    harness::idx_file(LABEL_MAGIC, &[digits.len() as u32], digits)
}

/// An adapter as the page would export it, for the harness's base model.
fn exported(config: LoraConfig) -> (String, Vec<u8>) {
    let base = io::import_model(&harness::base_model_bytes()).unwrap();
    let adapter = Adapter::new("seed", config, &base, 7).unwrap();
    let files = io::export_adapter(&adapter, &base).unwrap();
    (files.config.to_json_pretty(), files.safetensors)
}

/// A language model small enough for the fuzzer's inputs (one layer: 3,440 bytes of weights).
fn small_lm(layers: usize) -> LmConfig {
    LmConfig {
        vocab: 16,
        hidden: 8,
        intermediate: 12,
        layers,
        heads: 2,
        head_dim: 4,
        context: 8,
        bos: 13,
        eos: 14,
        pad: 15,
        ..LmConfig::tiny()
    }
}

/// The `lm_model` seeds: exports of small models, and edits of them.
fn lm_seeds(add: &mut dyn FnMut(&'static str, &'static str, Vec<u8>)) {
    let (config, weights) = io::export_lm(&Llama::new(small_lm(1), 1)).unwrap();
    let input = |config: &str, weights: &[u8]| harness::lm_model_input(config.as_bytes(), weights);
    add("lm_model", "ok-one-layer", input(&config, &weights));
    let (config2, weights2) = io::export_lm(&Llama::new(small_lm(2), 2)).unwrap();
    add("lm_model", "ok-two-layers", input(&config2, &weights2));
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut v: Value = serde_json::from_str(&config).unwrap();
        f(v.as_object_mut().unwrap());
        serde_json::to_string_pretty(&v).unwrap()
    };
    let older = edit(&|o| {
        o.remove("rope_parameters");
        o.remove("head_dim");
        o.remove("dtype");
        o.insert("torch_dtype".into(), json!("float32"));
        o.insert("rope_theta".into(), json!(10000.0));
        o.insert("rope_scaling".into(), Value::Null);
        o.insert("transformers_version".into(), json!("4.46.3"));
    });
    add("lm_model", "ok-transformers4-config", input(&older, &weights));
    let extras = edit(&|o| {
        o.insert("pretraining_tp".into(), json!(1));
        o.insert("transformers_version".into(), json!("5.24.0"));
        o.insert("_name_or_path".into(), json!("base"));
        o.insert("quantization_config".into(), Value::Null);
    });
    add("lm_model", "ok-transformers5-extras", input(&extras, &weights));
    add("lm_model", "bad-config-not-json", input(&config[..config.len() / 2], &weights));
    add("lm_model", "bad-missing-field", input(&edit(&|o| drop(o.remove("vocab_size"))), &weights));
    add(
        "lm_model",
        "bad-model-type",
        input(&edit(&|o| drop(o.insert("model_type".into(), json!("mistral")))), &weights),
    );
    add(
        "lm_model",
        "bad-grouped-kv",
        input(&edit(&|o| drop(o.insert("num_key_value_heads".into(), json!(1)))), &weights),
    );
    add("lm_model", "bad-bf16", input(&edit(&|o| drop(o.insert("dtype".into(), json!("bfloat16")))), &weights));
    let quantized = edit(&|o| drop(o.insert("quantization_config".into(), json!({"quant_method": "bitsandbytes"}))));
    add("lm_model", "bad-quantized", input(&quantized, &weights));
    for (name, double_quant) in [("ok-4-bit", false), ("ok-4-bit-double-quant", true)] {
        let mut model = Llama::new(small_lm(2), 3);
        model.quantize_linears(double_quant).unwrap();
        let (config, weights) = io::export_lm(&model).unwrap();
        add("lm_model", name, input(&config, &weights));
    }
    let four_bit = edit(&|o| drop(o.insert("quantization_config".into(), io::quantization_config(true))));
    add("lm_model", "bad-4-bit-config-f32-weights", input(&four_bit, &weights));
    let scaled = json!({"factor": 2.0, "rope_theta": 10000.0, "rope_type": "linear"});
    add(
        "lm_model",
        "bad-rope-scaling",
        input(&edit(&|o| drop(o.insert("rope_parameters".into(), scaled.clone()))), &weights),
    );
    let map = io::read_safetensors(&weights, io::MODEL_FILE).unwrap();
    let rewrite = |f: &dyn Fn(&mut BTreeMap<String, io::Tensor>)| {
        let mut m = map.clone();
        f(&mut m);
        let tensors: Vec<(String, Vec<usize>, &[f32])> =
            m.iter().map(|(n, t)| (n.clone(), t.shape.clone(), t.data.as_slice())).collect();
        write_safetensors(&tensors, Some(HashMap::from([("format".to_string(), "pt".to_string())]))).unwrap()
    };
    let untied = rewrite(&|m| drop(m.remove("lm_head.weight")));
    add("lm_model", "ok-tied", input(&edit(&|o| drop(o.insert("tie_word_embeddings".into(), json!(true)))), &untied));
    add("lm_model", "bad-too-large", input(&edit(&|o| drop(o.insert("vocab_size".into(), json!(300000)))), &weights));
    add("lm_model", "bad-missing-lm-head", input(&config, &untied));
    let inv_freq = io::Tensor { shape: vec![2], data: vec![1.0, 0.01] };
    let extra = rewrite(&|m| drop(m.insert("model.layers.0.self_attn.rotary_emb.inv_freq".into(), inv_freq.clone())));
    add("lm_model", "bad-unexpected-key", input(&config, &extra));
    add("lm_model", "bad-sizes", input(&edit(&|o| drop(o.insert("intermediate_size".into(), json!(16)))), &weights));
    let nan = rewrite(&|m| m.get_mut("model.norm.weight").unwrap().data[3] = f32::NAN);
    add("lm_model", "bad-non-finite", input(&config, &nan));
    add("lm_model", "bad-truncated", input(&config, &weights[..weights.len() - 1]));
    let f16 = raw_safetensors(r#"{"lm_head.weight":{"dtype":"F16","shape":[16,8],"data_offsets":[0,256]}}"#, &[0; 256]);
    add("lm_model", "bad-f16", input(&config, &f16));
}

/// The `nf4` seeds: the harness's two Linears quantised (with biases), and edits of the file.
fn nf4_seeds(add: &mut dyn FnMut(&'static str, &'static str, Vec<u8>)) {
    use lora_lab::io::{read_tensors, write_tensors, AnyTensor, Data, Values};
    use lora_lab::quant::QuantizedWeight;
    let file = |double_quant: bool| {
        let weights: Vec<(String, QuantizedWeight, Vec<f32>)> = harness::NF4_LINEARS
            .iter()
            .map(|&(name, i, o)| {
                let w: Vec<f32> =
                    (0..i * o).map(|k| ((k * 37 % 101) as f32 - 50.0) / (16.0 + (k / 64) as f32)).collect();
                let bias: Vec<f32> = (0..o).map(|k| k as f32 / 8.0).collect();
                (name.to_string(), QuantizedWeight::quantize(&w, o, i, double_quant).unwrap(), bias)
            })
            .collect();
        let q: Vec<(&str, &QuantizedWeight)> = weights.iter().map(|(n, w, _)| (n.as_str(), w)).collect();
        let b: Vec<(String, Vec<usize>, &[f32])> =
            weights.iter().map(|(n, _, b)| (format!("{n}.bias"), vec![b.len()], &b[..])).collect();
        io::write_nf4_safetensors(&q, &b).unwrap()
    };
    let (plain, double) = (file(false), file(true));
    let config = |dq: bool| serde_json::to_string_pretty(&io::quantization_config(dq)).unwrap();
    let input = |config: &str, weights: &[u8]| harness::nf4_input(config.as_bytes(), weights);
    add("nf4", "ok-plain", input(&config(false), &plain));
    add("nf4", "ok-double-quant", input(&config(true), &double));
    add("nf4", "ok-no-config", input("", &plain));
    let short = json!({"quant_method": "bitsandbytes", "load_in_4bit": true, "load_in_8bit": false,
        "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": false, "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_quant_storage": "uint8"});
    add("nf4", "ok-qlora-md-config", input(&short.to_string(), &plain));
    add("nf4", "bad-config-not-json", input("{\"quant_method\": ", &plain));
    let edit_config = |k: &str, v: Value| {
        let mut c = io::quantization_config(false);
        c[k] = v;
        c.to_string()
    };
    add("nf4", "bad-config-fp4", input(&edit_config("bnb_4bit_quant_type", json!("fp4")), &plain));
    add("nf4", "bad-config-8bit", input(&edit_config("load_in_8bit", json!(true)), &plain));

    let map = read_tensors(&plain, io::MODEL_FILE).unwrap();
    let rewrite = |f: &dyn Fn(&mut BTreeMap<String, AnyTensor>)| {
        let mut m = map.clone();
        f(&mut m);
        let tensors: Vec<(String, Vec<usize>, Values)> = m
            .iter()
            .map(|(k, t)| {
                let v = match &t.data {
                    Data::F32(d) => Values::F32(d),
                    Data::U8(d) => Values::U8(d),
                };
                (k.clone(), t.shape.clone(), v)
            })
            .collect();
        let bytes = write_tensors(&tensors, Some(HashMap::from([("format".to_string(), "pt".to_string())]))).unwrap();
        harness::nf4_input(b"", &bytes)
    };
    let u8s = |b: Vec<u8>| AnyTensor { shape: vec![b.len()], data: Data::U8(b) };
    let state1 = "layers.1.weight.quant_state.bitsandbytes__nf4";
    let state3 = "layers.3.weight.quant_state.bitsandbytes__nf4";
    let json_of = |m: &BTreeMap<String, AnyTensor>, k: &str| -> Value {
        let Data::U8(b) = &m[k].data else { unreachable!() };
        serde_json::from_slice(b).unwrap()
    };
    let set_json = |m: &mut BTreeMap<String, AnyTensor>, k: &str, key: &str, v: Value| {
        let mut j = json_of(m, k);
        j[key] = v;
        m.insert(k.to_string(), u8s(j.to_string().into_bytes()));
    };
    add(
        "nf4",
        "bad-packed-size",
        rewrite(&|m| {
            let t = m.get_mut("layers.1.weight").unwrap();
            t.shape = vec![34, 1];
            let Data::U8(d) = &mut t.data else { unreachable!() };
            d.pop();
        }),
    );
    add("nf4", "bad-quant-type", rewrite(&|m| set_json(m, state1, "quant_type", json!("fp4"))));
    add(
        "nf4",
        "bad-fp4-state",
        rewrite(&|m| {
            let t = m.remove(state1).unwrap();
            m.insert("layers.1.weight.quant_state.bitsandbytes__fp4".into(), t);
        }),
    );
    add("nf4", "bad-blocksize", rewrite(&|m| set_json(m, state1, "blocksize", json!(128))));
    add("nf4", "bad-json", rewrite(&|m| drop(m.insert(state3.into(), u8s(b"{\"quant_type\": \"nf4\", ".to_vec())))));
    add("nf4", "bad-shape", rewrite(&|m| set_json(m, state1, "shape", json!([23, 3]))));
    add("nf4", "bad-missing-quant-map", rewrite(&|m| drop(m.remove("layers.3.weight.quant_map"))));
    add(
        "nf4",
        "bad-u8-absmax-without-nested",
        rewrite(&|m| {
            m.insert("layers.1.weight.absmax".into(), u8s(vec![3, 4]));
            set_json(m, state1, "nested_blocksize", json!(256));
            set_json(m, state1, "nested_dtype", json!("float32"));
            set_json(m, state1, "nested_offset", json!(0.25));
        }),
    );
    add(
        "nf4",
        "bad-quant-map",
        rewrite(&|m| {
            let mut q = lora_lab::quant::NF4.to_vec();
            q[15] = 0.5;
            m.insert("layers.1.weight.quant_map".into(), AnyTensor { shape: vec![16], data: Data::F32(q) });
        }),
    );
    add(
        "nf4",
        "bad-unquantised",
        rewrite(&|m| {
            m.insert("layers.3.weight".into(), AnyTensor { shape: vec![4, 48], data: Data::F32(vec![0.5; 192]) });
        }),
    );
    let f16 = raw_safetensors(r#"{"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4]);
    add("nf4", "bad-f16", harness::nf4_input(b"", &f16));
    add("nf4", "bad-truncated", harness::nf4_input(b"", &plain[..plain.len() - 3]));
}

/// The `gguf` seeds: files with every value and tensor type, a miniature of the pretrained model (its
/// metadata with the vocabulary cut to 16 tokens, three tensors cut to their first blocks), the first
/// 8 KiB of the real file, and broken edits. Needs `www/data/SmolLM2-135M-Instruct.Q4_1.gguf`.
fn gguf_seeds(add: &mut dyn FnMut(&'static str, &'static str, Vec<u8>)) {
    use lora_lab::io::{read_gguf, write_gguf, GgufArray, GgufTensorData, GgufValue};
    use lora_lab::quant::ggml::quantize;
    use lora_lab::quant::GgmlType;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/www/data/SmolLM2-135M-Instruct.Q4_1.gguf");
    let real = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}: run ./build.sh setup"));
    let ramp = |n: usize| -> Vec<f32> { (0..n).map(|i| (i % 13) as f32 / 4.0 - 1.5).collect() };
    let q = |ty, n| quantize(ty, &ramp(n)).unwrap();
    let k_quant = |ty: GgmlType| {
        let mut b: Vec<u8> = (0..ty.block_bytes()).map(|i| (i * 37 % 256) as u8).collect();
        let at = if ty == GgmlType::Q6_K { 208 } else { 0 };
        b[at..at + 2].copy_from_slice(&0x2e66u16.to_le_bytes());
        b
    };
    let every: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)> = vec![
        ("f32".into(), vec![3, 2], GgmlType::F32, q(GgmlType::F32, 6)),
        ("f16".into(), vec![5], GgmlType::F16, q(GgmlType::F16, 5)),
        ("bf16".into(), vec![2, 1, 2], GgmlType::BF16, q(GgmlType::BF16, 4)),
        ("q4_0".into(), vec![32], GgmlType::Q4_0, q(GgmlType::Q4_0, 32)),
        ("q4_1".into(), vec![32, 2, 1, 1], GgmlType::Q4_1, q(GgmlType::Q4_1, 64)),
        ("q8_0".into(), vec![32], GgmlType::Q8_0, q(GgmlType::Q8_0, 32)),
        ("scalar".into(), vec![], GgmlType::F32, q(GgmlType::F32, 1)),
        ("empty".into(), vec![0, 4], GgmlType::Q4_0, vec![]),
        ("k.q4_k".into(), vec![256], GgmlType::Q4_K, k_quant(GgmlType::Q4_K)),
        ("k.q6_k".into(), vec![256], GgmlType::Q6_K, k_quant(GgmlType::Q6_K)),
    ];
    let values = vec![
        ("general.architecture".to_string(), GgufValue::String("llama".into())),
        ("u8".into(), GgufValue::U8(7)),
        ("i8".into(), GgufValue::I8(-7)),
        ("u16".into(), GgufValue::U16(700)),
        ("i16".into(), GgufValue::I16(-700)),
        ("u32".into(), GgufValue::U32(70000)),
        ("i32".into(), GgufValue::I32(-70000)),
        ("f32".into(), GgufValue::F32(0.5)),
        ("bool".into(), GgufValue::Bool(true)),
        ("u64".into(), GgufValue::U64(1 << 40)),
        ("i64".into(), GgufValue::I64(-(1 << 40))),
        ("f64".into(), GgufValue::F64(-0.25)),
        ("strings".into(), GgufValue::Array(GgufArray::String(vec!["<|im_start|>".into(), "Ġa".into()]))),
        ("i32s".into(), GgufValue::Array(GgufArray::I32(vec![1, 3, 3]))),
        ("nested".into(), GgufValue::Array(GgufArray::Array(vec![GgufArray::U8(vec![1]), GgufArray::F32(vec![])]))),
    ];
    let write = |meta: &[(String, GgufValue)], tensors: &[(String, Vec<u64>, GgmlType, Vec<u8>)]| {
        let t: Vec<GgufTensorData> =
            tensors.iter().map(|(n, d, ty, b)| GgufTensorData { name: n, dims: d, ty: *ty, data: b }).collect();
        write_gguf(meta, &t).unwrap()
    };
    let every_file = write(&values, &every);
    add("gguf", "ok-every-type", every_file.clone());
    let mut aligned = values.clone();
    aligned.push(("general.alignment".into(), GgufValue::U32(64)));
    add("gguf", "ok-alignment-64", write(&aligned, &every[..4]));
    let mut v2 = write(&values[..3], &[]);
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    add("gguf", "ok-no-tensors-v2", v2);

    // The pretrained model in miniature.
    let g = read_gguf(&real, "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    let meta: Vec<(String, GgufValue)> = g
        .metadata
        .iter()
        .map(|(k, v)| {
            let v = match v {
                GgufValue::Array(GgufArray::String(s)) if s.len() > 16 => {
                    GgufValue::Array(GgufArray::String(s[..16].to_vec()))
                }
                GgufValue::Array(GgufArray::I32(s)) if s.len() > 16 => {
                    GgufValue::Array(GgufArray::I32(s[..16].to_vec()))
                }
                v => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    let cut = |name: &str, dims: Vec<u64>| {
        let (i, t) = g.find_tensor(name).unwrap();
        let n = dims.iter().product::<u64>() as usize;
        let bytes = g.tensor_bytes(&real, i).unwrap()[..t.ty.bytes_for(n).unwrap()].to_vec();
        (name.to_string(), dims, t.ty, bytes)
    };
    let mini = [
        cut("token_embd.weight", vec![32, 2]),
        cut("blk.0.attn_norm.weight", vec![8]),
        cut("blk.0.attn_q.weight", vec![32, 2]),
        cut("output_norm.weight", vec![8]),
    ];
    let mini_file = write(&meta, &mini);
    add("gguf", "ok-smollm2-miniature", mini_file.clone());
    add("gguf", "bad-smollm2-header-truncated", real[..8192].to_vec());

    let mut v1 = every_file.clone();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    add("gguf", "bad-version-1", v1);
    add("gguf", "bad-truncated", every_file[..every_file.len() - 40].to_vec());
    // Edits of the miniature's header, found by searching for the fields' bytes.
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle).unwrap();
    let tokens_key = b"tokenizer.ggml.tokens";
    let mut huge = mini_file.clone();
    let count_at = find(&huge, tokens_key) + tokens_key.len() + 8;
    huge[count_at..count_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    add("gguf", "bad-huge-array", huge);
    // A tensor info ends with u32 type, u64 offset; the one of blk.0.attn_q.weight follows its dims.
    let info = |name: &str, n_dims: usize| find(&mini_file, name.as_bytes()) + name.len() + 4 + 8 * n_dims;
    let mut unknown = mini_file.clone();
    let at = info("blk.0.attn_q.weight", 2);
    unknown[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    add("gguf", "bad-unknown-type", unknown);
    let mut misaligned = mini_file.clone();
    let at = info("output_norm.weight", 1) + 4;
    let offset = u64::from_le_bytes(misaligned[at..at + 8].try_into().unwrap());
    misaligned[at..at + 8].copy_from_slice(&(offset + 16).to_le_bytes());
    add("gguf", "bad-misaligned", misaligned);
    let mut overlap = mini_file.clone();
    let at = info("blk.0.attn_q.weight", 2) + 4;
    overlap[at..at + 8].copy_from_slice(&64u64.to_le_bytes());
    add("gguf", "bad-overlap", overlap);
    let mut alignment = write(&aligned, &every[..4]);
    let at = find(&alignment, b"general.alignment") + 17 + 4;
    alignment[at..at + 4].copy_from_slice(&48u32.to_le_bytes());
    add("gguf", "bad-alignment", alignment);

    // llama.cpp's LoRA adapters for the harness's small Llama: every projection, and one pair cut in half
    use lora_lab::lora::{Adapter, Bias, Init, LoraConfig, Scaling};
    let llama = lora_lab::lm::Llama::new(harness::lora_llama_config(), 1);
    let cfg = &llama.cfg;
    let targets = (0..cfg.lm_head()).collect();
    let lora = LoraConfig { targets, rank: 2, alpha: 4.0, scaling: Scaling::Peft, dropout: 0.0, bias: Bias::None, init: Init::Default };
    let mut adapter = Adapter::new("seed", lora, &llama, 5).unwrap();
    for (i, l) in adapter.layers.iter_mut().enumerate() {
        l.lora_b.iter_mut().enumerate().for_each(|(j, v)| *v = ((i * 7 + j) % 11) as f32 / 20.0 - 0.25);
    }
    let lora_file = lora_lab::io::export_gguf_lora(&adapter, cfg, "seed").unwrap();
    add("gguf", "ok-lora-adapter", lora_file.clone());
    let g = read_gguf(&lora_file, "seed.gguf").unwrap();
    let half: Vec<GgufTensorData> =
        g.tensor_data(&lora_file).unwrap().into_iter().filter(|t| t.name != "blk.1.attn_k.weight.lora_b").collect();
    add("gguf", "ok-lora-missing-half", write_gguf(&g.metadata, &half).unwrap());
}

/// The `hf_tokenizer` seeds: small tokenizer.json files as Hugging Face writes them (SmolLM2's layout:
/// the special tokens both in `model.vocab` and `added_tokens`, Digits then ByteLevel), with and
/// without SmolLM2's chat template, and broken tokenizers and templates.
fn hf_tokenizer_seeds(add: &mut dyn FnMut(&'static str, &'static str, Vec<u8>)) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smol/chat_template_cases.json");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let smollm2 = cases["template"].as_str().unwrap().to_string();
    let special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let added = |first: usize| -> Value {
        special
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({"id": first + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": true})
            })
            .collect()
    };
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let digits_then_bytes = json!({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": true}, byte_level.clone()]});
    // The special tokens, a handful of byte tokens (ĠĊ are space and newline), merges up to "Ġworld".
    let handful = || -> Value {
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"];
        let mut vocab = serde_json::Map::new();
        let bytes =
            ["h", "e", "l", "o", "w", "r", "d", "a", "s", "t", "1", "2", "3", "Ġ", "Ċ", "<", "|", ">", "Ã", "©"];
        let merged = merges.iter().map(|m| m.replace(' ', ""));
        for t in special.iter().map(|t| t.to_string()).chain(bytes.iter().map(|t| t.to_string())).chain(merged) {
            let id = vocab.len();
            vocab.insert(t, json!(id));
        }
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added(0), "normalizer": null,
            "pre_tokenizer": digits_then_bytes.clone(),
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        })
    };
    let input = |template: &str, tokenizer: &Value| {
        harness::hf_tokenizer_input(template.as_bytes(), serde_json::to_string(tokenizer).unwrap().as_bytes())
    };
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = handful();
        f(&mut v);
        v
    };
    add("hf_tokenizer", "ok-smollm2-template", input(&smollm2, &handful()));
    add("hf_tokenizer", "ok-no-template", input("", &handful()));
    // All 256 byte tokens (in byte order), merges as pairs, ignore_merges, the ByteLevel pre-tokenizer alone,
    // the special tokens after the vocabulary.
    let chars: Vec<char> = {
        let mut next = 256u32;
        (0..256u32)
            .map(|b| {
                let cp = if matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) {
                    b
                } else {
                    next += 1;
                    next - 1
                };
                char::from_u32(cp).unwrap()
            })
            .collect()
    };
    let pairs =
        [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"], ["Ġ", "a"], ["e", "r"], ["Ġ", "ĠĠ"], ["Ġ", "Ġ"], ["Ġ", "1"]];
    let mut vocab = serde_json::Map::new();
    for t in chars.iter().map(|c| c.to_string()).chain(pairs.iter().map(|[a, b]| format!("{a}{b}"))) {
        let id = vocab.len();
        vocab.entry(t).or_insert(json!(id));
    }
    let n = vocab.len();
    let all_bytes = json!({
        "added_tokens": added(n), "pre_tokenizer": byte_level.clone(), "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "ignore_merges": true, "vocab": vocab, "merges": pairs}
    });
    add("hf_tokenizer", "ok-all-bytes-pair-merges", input(&smollm2, &all_bytes));
    let unk = edit(&|v| {
        let vocab = v["model"]["vocab"].as_object_mut().unwrap();
        let id = vocab.len();
        vocab.insert("<unk>".into(), json!(id));
        v["model"]["unk_token"] = json!("<unk>");
        v["model"]["fuse_unk"] = json!(true);
    });
    add("hf_tokenizer", "ok-unk-fused", input("", &unk));

    let whole = serde_json::to_string(&handful()).unwrap();
    let not_json = harness::hf_tokenizer_input(smollm2.as_bytes(), &whole.as_bytes()[..whole.len() / 2]);
    add("hf_tokenizer", "bad-not-json", not_json);
    let wordpiece = edit(&|v| {
        v["model"] = json!({"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                            "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "h": 1, "##e": 2}})
    });
    add("hf_tokenizer", "bad-wordpiece", input(&smollm2, &wordpiece));
    let no_merges = edit(&|v| drop(v["model"].as_object_mut().unwrap().remove("merges")));
    add("hf_tokenizer", "bad-merges-missing", input(&smollm2, &no_merges));
    let bad_merge = edit(&|v| v["model"]["merges"][1] = json!("h z"));
    add("hf_tokenizer", "bad-merge-not-in-vocabulary", input("", &bad_merge));
    let metaspace = edit(&|v| {
        v["pre_tokenizer"] =
            json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": false})
    });
    add("hf_tokenizer", "bad-unknown-pre-tokenizer", input(&smollm2, &metaspace));
    let cut = smollm2.replace("{% endfor %}", "{% endfor %");
    add("hf_tokenizer", "bad-template-syntax", input(&cut, &handful()));
    add("hf_tokenizer", "bad-template-range", input("{% for i in range(100000000) %}{% endfor %}", &handful()));
    let forever = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    add("hf_tokenizer", "bad-template-fuel", input(forever, &handful()));
    let raises = format!(
        "{{% if messages[0]['role'] == 'system' %}}{{{{ raise_exception('System role not supported') }}}}{{% endif %}}{smollm2}"
    );
    add("hf_tokenizer", "bad-template-raises", input(&raises, &handful()));
}

/// The `sft_jsonl` seeds: TRL's four row forms (the demo task's conversational prompt-completion rows,
/// strings, text, multi-turn conversations with one opening on the assistant and a byte the fuzz
/// tokenizer lacks), 1,001 rows (two packing batches), and bad files.
fn sft_jsonl_seeds(add: &mut dyn FnMut(&'static str, &'static str, Vec<u8>)) {
    let lines = |rows: &[Value]| rows.iter().map(|r| format!("{r}\n")).collect::<String>().into_bytes();
    let demo = |word: &str, answer: &str| {
        json!({"prompt": [{"role": "user", "content": format!(
                   "Is \"{word}\" a woman's first name or an English word? Answer with one word: name or word.")}],
               "completion": [{"role": "assistant", "content": answer}]})
    };
    add(
        "sft_jsonl",
        "ok-demo-prompt-completion",
        lines(&[demo("Ginelle", "name"), demo("Bab", "word"), demo("Kettle", "word")]),
    );
    add(
        "sft_jsonl",
        "ok-plain-prompt-completion",
        lines(&[
            json!({"prompt": "The capital of France is", "completion": " Paris."}),
            json!({"prompt": "Hel", "completion": "lo world", "id": 2}),
            json!({"prompt": "2+2=", "completion": "4<|im_end|>"}),
        ]),
    );
    let mut text = lines(&[json!({"text": "Hello world"}), json!({"text": "ends with EOS<|im_end|>"})]);
    text.extend_from_slice(b"\n  \t\r\n{\"text\": \"caf\\u00e9 \\ud83e\\udd80 12345\\n\\u0004x\"}\r\n");
    add("sft_jsonl", "ok-text", text);
    let m = |role: &str, content: &str| json!({"role": role, "content": content});
    add(
        "sft_jsonl",
        "ok-messages",
        lines(&[
            json!({"messages": [m("user", "Hi!"), m("assistant", "Hello! How can I help?")]}),
            json!({"messages": [m("system", "Be terse."), m("user", "Capital of France?"), m("assistant", "Paris."),
                                m("user", "And Japan?"), m("assistant", "\n\nTokyo.")]}),
            json!({"messages": [m("assistant", "Welcome\u{4}!"), m("user", "Why?"), m("assistant", "Because.")]}),
        ]),
    );
    let many: Vec<Value> = (0..1_001).map(|i| json!({"text": format!("row {i}")})).collect();
    add("sft_jsonl", "ok-many-rows", lines(&many));
    add(
        "sft_jsonl",
        "bad-completion-missing",
        lines(&[json!({"prompt": "a", "completion": "b"}), json!({"prompt": "a"})]),
    );
    add("sft_jsonl", "bad-not-json", b"{\"text\": \"a\"\n".to_vec());
    add("sft_jsonl", "bad-array-row", b"[{\"text\": \"a\"}]\n".to_vec());
    add("sft_jsonl", "bad-not-utf8", b"{\"text\": \"a\"}\n{\"text\": \"\xff\"}\n".to_vec());
    add(
        "sft_jsonl",
        "bad-mixed-forms",
        lines(&[json!({"messages": [m("user", "a")]}), json!({"messages": [m("user", "b")]}), json!({"text": "c"})]),
    );
    add(
        "sft_jsonl",
        "bad-prompt-string-completion-list",
        lines(&[json!({"prompt": "a", "completion": [m("assistant", "b")]})]),
    );
    add(
        "sft_jsonl",
        "bad-role-not-string",
        lines(&[json!({"messages": [m("user", "a"), {"role": null, "content": "b"}]})]),
    );
    add("sft_jsonl", "bad-no-rows", b"\n \n\r\n".to_vec());
    add("sft_jsonl", "bad-one-token", lines(&[json!({"text": "ab"}), json!({"text": ""})]));
}

fn seed_files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target, name, bytes| out.push((target, name, bytes));

    add("idx", "ok-one-image", harness::idx_input(&labels(&[0]), &images(1, 28)));
    add("idx", "ok-two-images", harness::idx_input(&labels(&[3, 8]), &images(2, 28)));
    add("idx", "bad-count-mismatch", harness::idx_input(&labels(&[1, 2, 3]), &images(2, 28)));
    add("idx", "bad-label-not-a-digit", harness::idx_input(&labels(&[9, 10]), &images(2, 28)));
    add("idx", "bad-files-swapped", harness::idx_input(&labels(&[4]), &labels(&[4])));
    let mut truncated = images(2, 28);
    truncated.truncate(truncated.len() - PIXELS);
    add("idx", "bad-truncated-images", harness::idx_input(&labels(&[5, 6]), &truncated));
    let mut trailing = images(1, 28);
    trailing.extend_from_slice(&[1, 2, 3]);
    add("idx", "bad-trailing-bytes", harness::idx_input(&labels(&[7]), &trailing));
    add("idx", "bad-27x27", harness::idx_input(&labels(&[1]), &images(1, 27)));
    add("idx", "bad-zero-dimension", harness::idx_input(&harness::idx_file(LABEL_MAGIC, &[0], &[]), &images(1, 28)));

    let (article_config, article) = exported(LoraConfig::article());
    add("safetensors", "ok-article-adapter", article.clone());
    let (a, e) = ([1.0f32, -2.5, 0.0, f32::MIN_POSITIVE, 1e30, -0.0], [0.0f32; 0]);
    let small = write_safetensors(
        &[
            ("a".into(), vec![2, 3], &a[..]),
            ("scalar".into(), vec![], &[7.0][..]),
            ("empty".into(), vec![0, 5], &e[..]),
        ],
        Some(HashMap::from([("format".to_string(), "pt".to_string())])),
    )
    .unwrap();
    add("safetensors", "ok-small-with-metadata", small);
    add("safetensors", "ok-no-tensors", write_safetensors(&[], None).unwrap());
    add("safetensors", "bad-truncated", article[..article.len() - 4].to_vec());
    let mut long_header = article.clone();
    long_header[..8].copy_from_slice(&(article.len() as u64).to_le_bytes());
    add("safetensors", "bad-header-length", long_header);
    add(
        "safetensors",
        "bad-f16",
        raw_safetensors(r#"{"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4]),
    );
    let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    add("safetensors", "bad-overlap", raw_safetensors(overlap, &f32_bytes(&[1.0, 2.0, 3.0])));
    add("safetensors", "bad-not-json", raw_safetensors("{\"a\": [1, 2", &[]));
    add("safetensors", "bad-too-short", vec![8, 0, 0]);

    let article_input = |config: &str, weights: &[u8]| harness::adapter_input(config.as_bytes(), weights, false);
    add("adapter", "ok-article", article_input(&article_config, &article));
    let rslora = LoraConfig {
        targets: vec![2],
        rank: 2,
        alpha: 8.0,
        scaling: Scaling::RsLora,
        dropout: 0.1,
        bias: Bias::LoraOnly,
        init: Init::Gaussian,
    };
    let (config, weights) = exported(rslora);
    add("adapter", "ok-rslora-lora-only-bias", article_input(&config, &weights));
    let two = LoraConfig { targets: vec![1, 2], rank: 1, alpha: 2.0, scaling: Scaling::Peft, ..LoraConfig::article() };
    let (config, weights) = exported(two);
    add("adapter", "ok-two-layers-r1", article_input(&config, &weights));
    // As PEFT writes it, with fields the lab ignores and target_modules as one string (a regex).
    let peft = json!({
        "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": null, "bias": "none",
        "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true, "layers_pattern": null,
        "layers_to_transform": null, "lora_alpha": 16, "lora_dropout": 0.05, "modules_to_save": null,
        "peft_type": "LORA", "r": 1, "rank_pattern": {}, "revision": null, "target_modules": "layers\\.[5]",
        "task_type": null, "use_dora": false, "use_rslora": false
    });
    let a: Vec<f32> = (0..256).map(|k| (k as f32 - 128.0) / 1024.0).collect();
    let b: Vec<f32> = (0..10).map(|k| k as f32 / 8.0).collect();
    let r1 = write_safetensors(
        &[
            ("base_model.model.layers.5.lora_A.weight".into(), vec![1, 256], &a[..]),
            ("base_model.model.layers.5.lora_B.weight".into(), vec![10, 1], &b[..]),
        ],
        None,
    )
    .unwrap();
    add("adapter", "ok-peft-handwritten", harness::adapter_input(peft.to_string().as_bytes(), &r1, false));
    add("adapter", "bad-pissa-base-not-a-model", harness::adapter_input(article_config.as_bytes(), &article, true));
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(&article_config).unwrap();
        f(&mut v);
        serde_json::to_string_pretty(&v).unwrap()
    };
    add("adapter", "bad-dora", article_input(&edit(&|v| v["use_dora"] = json!(true)), &article));
    let nan = article_config.replace("\"lora_alpha\": 4.0", "\"lora_alpha\": NaN");
    assert_ne!(nan, article_config);
    add("adapter", "bad-nan-alpha", article_input(&nan, &article));
    add("adapter", "bad-rank-mismatch", article_input(&edit(&|v| v["r"] = json!(8)), &article));
    add(
        "adapter",
        "bad-unknown-target",
        article_input(&edit(&|v| v["target_modules"] = json!(["layers.2"])), &article),
    );
    let inf = write_safetensors(
        &[
            ("base_model.model.layers.5.lora_A.weight".into(), vec![1, 256], &a[..]),
            (
                "base_model.model.layers.5.lora_B.weight".into(),
                vec![10, 1],
                &[b[..9].to_vec(), vec![f32::INFINITY]].concat()[..],
            ),
        ],
        None,
    )
    .unwrap();
    add("adapter", "bad-non-finite", harness::adapter_input(peft.to_string().as_bytes(), &inf, false));
    add("adapter", "bad-missing-bias", article_input(&edit(&|v| v["bias"] = json!("all")), &article));
    lm_seeds(&mut add);
    nf4_seeds(&mut add);
    gguf_seeds(&mut add);
    hf_tokenizer_seeds(&mut add);
    sft_jsonl_seeds(&mut add);
    out
}

/// Writes tests/fuzz/seeds/ afresh (ignored: run it by name when the seeds must change).
#[test]
#[ignore]
fn write_seeds() {
    let seeds = seed_files();
    for target in TARGETS {
        let d = dir("seeds", target);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
    }
    for (target, name, bytes) in &seeds {
        std::fs::write(dir("seeds", target).join(name), bytes).unwrap();
    }
    let total: usize = seeds.iter().map(|(_, _, b)| b.len()).sum();
    println!("{} seeds, {total} bytes", seeds.len());
}
