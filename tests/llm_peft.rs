//! Issue 21's interop target: `PeftModel.from_pretrained` on the Hugging Face folder that
//! `../shared/peers/smol_to_hf.py` makes from SmolLM2-135M-Instruct's GGUF reproduces our
//! log-probabilities, for an adapter on all seven projections of all 30 layers (r 8, α 16, seeded
//! lora_A and lora_B), with PEFT's scaling α/r and with rsLoRA's α/√r.
//!
//! Fixture: `tests/fixtures/smol/peft_logprobs.json`, made by `make_peft_fixture.py` beside it from the
//! folders that the ignored test `write_peft_adapter` writes (`SMOL_PEFT_OUT=DIR cargo +stable test
//! --release --test llm_peft -- --ignored write_peft_adapter`, then `~/.cache/peers/bin/python
//! tests/fixtures/smol/make_peft_fixture.py HF_DIR DIR tests/fixtures/smol/peft_logprobs.json`).
//! It holds three texts (a chat-templated prompt and answer, a plain sentence, a sentence with digits
//! and a double space before one), their ids as the folder's tokenizer makes them, and the log-probability
//! of each next token under the base and under each adapter. PyTorch 2.15, transformers 5.25, PEFT 0.21.
//!
//! Measured (x86-64, 2 threads; 96 predicted tokens), max |ours − PyTorch|: base 7.7e-5, adapted with
//! α/r 8.9e-5, adapted with rsLoRA 8.8e-5 — against a tolerance of 2e-3, while the adapter moves a
//! log-probability by up to 0.81 nats (α/r) and 2.06 (rsLoRA).

mod common;

use std::sync::OnceLock;

use lora_lab::io::{export_adapter, import_adapter, ADAPTER_FILE, CONFIG_FILE};
use lora_lab::lab::Pretrained;
use lora_lab::lm::loss::{log_probs, targets};
use lora_lab::lm::LmActivations;
use lora_lab::lora::{scaling_value, Adapter, Bias, Init, LoraConfig, Scaling};
use lora_lab::rng::{Rng, Stream};
use lora_lab::text::Message;
use serde_json::Value;

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const TOLERANCE: f64 = 2e-3;
const SEED: u64 = 21;
/// lora_B's values are uniform in ±B_RANGE (lora_A is PEFT's default init, U(±1/√in)): enough to move
/// log-probabilities by tenths of a nat to a few nats through 210 adapted Linears.
const B_RANGE: f32 = 0.02;
/// The fixture's adapters: (folder, scaling).
const CASES: [(&str, Scaling); 2] = [("peft", Scaling::Peft), ("rslora", Scaling::RsLora)];

fn pretrained() -> &'static Pretrained {
    static P: OnceLock<Pretrained> = OnceLock::new();
    P.get_or_init(|| Pretrained::from_gguf(common::smol_gguf().to_vec(), FILE, "").unwrap())
}

fn fixture() -> &'static Value {
    static FX: OnceLock<Value> = OnceLock::new();
    FX.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smol/peft_logprobs.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{path}: {e} — make it with make_peft_fixture.py (see this file's doc comment)")
        });
        serde_json::from_str(&text).unwrap()
    })
}

/// The deterministic adapter: LoRA on every Linear but lm_head, r 8, α 16, PEFT's default lora_A drawn
/// from `SEED`, lora_B uniform in ±B_RANGE from its own stream.
fn adapter(scaling: Scaling) -> Adapter {
    let model = &pretrained().model;
    let lm_head = model.cfg.lm_head();
    let targets: Vec<usize> = (0..model.cfg.linear_modules().len()).filter(|&i| i != lm_head).collect();
    assert_eq!(targets.len(), 30 * 7);
    let config =
        LoraConfig { targets, rank: 8, alpha: 16.0, scaling, dropout: 0.0, bias: Bias::None, init: Init::Default };
    let mut a = Adapter::new("peft", config, model, SEED).unwrap();
    let mut rng = Rng::new(SEED, Stream::Replay);
    for l in &mut a.layers {
        l.lora_b.iter_mut().for_each(|v| *v = rng.uniform_in(-B_RANGE, B_RANGE));
    }
    a
}

/// The texts the fixture script tokenises, rendered here by our chat template.
fn texts() -> Vec<(&'static str, String)> {
    let chat = [
        Message::new("user", "Is 'Marigold' a woman's first name or an English word? Answer in one word."),
        Message::new("assistant", "Name. Marigold is also a flower."),
    ];
    vec![
        ("chat prompt and answer", pretrained().apply_chat_template(&chat, false).unwrap()),
        ("plain sentence", "The quick brown fox jumps over the lazy dog near the river bank.".into()),
        ("digits", "In 2024, 17 of the 365 days  9 were rainy.".into()),
    ]
}

/// log p(ids[t+1] | ids[..=t]) for t < len − 1, under the base and `adapter`.
fn our_log_probs(ids: &[u32], adapter: Option<&mut Adapter>) -> Vec<f32> {
    let model = &pretrained().model;
    let t = ids.len();
    let mut acts = LmActivations::for_inference();
    match adapter {
        Some(a) => model.forward(ids, 1, t, &mut acts, Some(a)).unwrap(),
        None => model.forward(ids, 1, t, &mut acts, None).unwrap(),
    }
    let mut lp = log_probs(&acts.logits, model.cfg.vocab, &targets(ids, t, u32::MAX));
    assert!(lp.pop().unwrap().is_nan(), "the last position predicts nothing");
    lp
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn max_diff(ours: &[f32], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(theirs).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max)
}

/// The adapter's ids, checked against the fixture's tokenisation and texts.
fn fixture_ids() -> Vec<Vec<u32>> {
    let fx = fixture()["texts"].as_array().unwrap();
    let ours = texts();
    assert_eq!(fx.len(), ours.len());
    ours.iter()
        .zip(fx)
        .map(|((name, text), case)| {
            assert_eq!(case["name"], *name);
            assert_eq!(case["text"].as_str().unwrap(), text, "{name}: the chat template renders as transformers'");
            let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            assert_eq!(pretrained().tokenize(text), want, "{name}: our ids are the folder's tokenizer's");
            pretrained().model_ids(&want).unwrap()
        })
        .collect()
}

/// Writes PEFT's folder for each case under `$SMOL_PEFT_OUT` (`peft/`, `rslora/`), for
/// `make_peft_fixture.py`.
#[test]
#[ignore = "writes the adapter folders that make_peft_fixture.py reads; needs SMOL_PEFT_OUT"]
fn write_peft_adapter() {
    let out = std::env::var("SMOL_PEFT_OUT").expect("set SMOL_PEFT_OUT to the folder to write");
    let model = &pretrained().model;
    for (name, scaling) in CASES {
        let mut a = adapter(scaling);
        let mut files = export_adapter(&a, model).unwrap();
        files.config.task_type = Some("CAUSAL_LM".into());
        files.config.base_model_name_or_path = Some("HuggingFaceTB/SmolLM2-135M-Instruct".into());
        let dir = std::path::Path::new(&out).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(ADAPTER_FILE), &files.safetensors).unwrap();
        std::fs::write(dir.join(CONFIG_FILE), files.config.to_json_pretty()).unwrap();
        // How far the adapter moves the log-probabilities, to size B_RANGE.
        let mut moved = 0f32;
        for (_, text) in texts() {
            let ids = pretrained().model_ids(&pretrained().tokenize(&text)).unwrap();
            let (base, adapted) = (our_log_probs(&ids, None), our_log_probs(&ids, Some(&mut a)));
            moved = base.iter().zip(&adapted).map(|(b, a)| (a - b).abs()).fold(moved, f32::max);
        }
        println!("{}: {} bytes, max |adapted − base| {moved}", dir.display(), files.safetensors.len());
    }
}

#[test]
fn peft_reproduces_our_log_probs() {
    let fx = fixture();
    let ids = fixture_ids();
    let cases = fx["texts"].as_array().unwrap();
    let mut base_diff = 0f64;
    for (seq, case) in ids.iter().zip(cases) {
        base_diff = base_diff.max(max_diff(&our_log_probs(seq, None), &floats(&case["base"])));
    }
    println!("base: max |ours − transformers| {base_diff:.2e}");
    assert!(base_diff <= TOLERANCE, "base: {base_diff}");

    for (name, scaling) in CASES {
        let info = &fx["adapters"][name];
        let mut a = adapter(scaling);
        // The fixture was made from this very adapter: PEFT wrapped all 210 Linears with our scaling,
        // and the file's first values are ours bit for bit.
        assert_eq!(info["lora_layers"], 210, "{name}");
        assert_eq!(info["r"], 8);
        assert_eq!(info["use_rslora"], scaling == Scaling::RsLora, "{name}");
        assert_eq!(info["lora_alpha"].as_f64(), Some(16.0), "{name}");
        assert_eq!(info["scaling"].as_f64(), Some(scaling_value(scaling, 16.0, 8)), "{name}: PEFT's scaling is ours");
        let q0 = &a.layers[0];
        let down29 = a.layers.last().unwrap();
        for (key, values) in [
            ("model.layers.0.self_attn.q_proj.lora_A", &q0.lora_a),
            ("model.layers.0.self_attn.q_proj.lora_B", &q0.lora_b),
            ("model.layers.29.mlp.down_proj.lora_A", &down29.lora_a),
            ("model.layers.29.mlp.down_proj.lora_B", &down29.lora_b),
        ] {
            // As f32: serde_json's default float parsing may miss the f64 by an ulp.
            let file: Vec<f32> = floats(&info["probe"][key]).iter().map(|&v| v as f32).collect();
            assert_eq!(file, values[..4], "{name}: {key}");
        }

        let adapted = info["adapted"].as_array().unwrap();
        let (mut diff, mut moved) = (0f64, 0f64);
        for ((seq, case), theirs) in ids.iter().zip(cases).zip(adapted) {
            let ours = our_log_probs(seq, Some(&mut a));
            diff = diff.max(max_diff(&ours, &floats(theirs)));
            moved = moved.max(max_diff(&ours, &floats(&case["base"])));
        }
        println!("{name}: max |ours − PEFT| {diff:.2e}, max |adapted − base| {moved:.3}");
        assert!(diff <= TOLERANCE, "{name}: {diff}");
        assert!(moved > 0.05, "{name}: the adapter must move the log-probabilities for the test to mean anything");
    }
}

#[test]
fn adapter_files_round_trip_to_the_same_log_probs() {
    let model = &pretrained().model;
    let ids = pretrained().model_ids(&pretrained().tokenize(&texts()[0].1)).unwrap();
    for (name, scaling) in CASES {
        let mut a = adapter(scaling);
        let mut files = export_adapter(&a, model).unwrap();
        files.config.task_type = Some("CAUSAL_LM".into());
        files.config.base_model_name_or_path = Some("HuggingFaceTB/SmolLM2-135M-Instruct".into());
        assert!(files.base_model.is_none());
        assert_eq!(files.config.use_rslora, scaling == Scaling::RsLora, "{name}");
        assert_eq!((files.config.r, files.config.lora_alpha), (8, 16.0), "{name}");
        let mut back = import_adapter(name, &files.safetensors, &files.config.to_json_pretty(), model).unwrap();
        assert_eq!(back.config, a.config, "{name}");
        assert_eq!(back.layers.len(), a.layers.len());
        for (x, y) in back.layers.iter().zip(&a.layers) {
            assert_eq!((x.layer, x.scaling), (y.layer, y.scaling));
            assert!(x.lora_a == y.lora_a && x.lora_b == y.lora_b, "{name}: module {}", x.layer);
        }
        let (ours, theirs) = (our_log_probs(&ids, Some(&mut a)), our_log_probs(&ids, Some(&mut back)));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&ours), bits(&theirs), "{name}: bit for bit");
    }
}
