//! Part 3 through the lab, as the page drives it: SmolLM2-135M-Instruct loaded from its GGUF with its own
//! tokenizer and chat template, the model card, the chat answer transformers gives, and bad input refused
//! with the loaded model still working.

mod common;

use std::sync::OnceLock;

use lora_lab::lab::GenerateRequest;
use lora_lab::text::Message;
use serde_json::Value;

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const QUESTION: &str = "Is 'Marigold' a woman's first name or an English word? Answer in one word.";

fn fixture_case(name: &str) -> Value {
    static FX: OnceLock<Value> = OnceLock::new();
    let fx = FX.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smol/logits.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    });
    fx["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

fn chat(content: &str) -> Vec<Message> {
    vec![Message::new("user", content)]
}

#[test]
fn the_model_card() {
    let info = common::smol_lab().llm_info().unwrap();
    assert_eq!(info.name, "Smollm2 135M 8k Lc100K Mix1 Ep2", "general.name");
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.params, 134_515_008);
    assert_eq!((info.layers, info.hidden, info.heads, info.kv_heads), (30, 576, 9, 3));
    assert_eq!((info.vocab, info.context), (49152, 8192));
    let types: Vec<(&str, usize)> = info.tensor_types.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(types, [("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]);
    // The file kept whole (its weights are read in place), the q/k weights reordered beside it (30 ×
    // (576 + 192) rows of 18 Q4_1 blocks of 20 bytes), the norms in f32.
    assert_eq!(info.bytes, 98_362_432 + 30 * 768 * 18 * 20 + 4 * 61 * 576);
    assert!(info.chat_template);
}

#[test]
fn the_chat_prompt_and_answer_are_transformers() {
    let mut lab = common::smol_lab();
    let case = fixture_case("chat prompt");
    let text = lab.llm_apply_chat_template(&chat(QUESTION), true).unwrap();
    assert_eq!(text, case["text"].as_str().unwrap());
    let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(lab.llm_tokenize(&text).unwrap(), ids, "no BOS added: the template has it");
    assert_eq!(lab.llm_detokenize(&ids).unwrap(), text);

    let req = GenerateRequest { messages: Some(chat(QUESTION)), max_new_tokens: Some(32.0), ..Default::default() };
    let mut pieces = String::new();
    let out = lab
        .llm_generate(&req, &mut |p| {
            pieces.push_str(p);
            true
        })
        .unwrap();
    let want = case["greedy"]["text"].as_str().unwrap();
    assert_eq!(format!("{}<|im_end|>", out.text), want);
    assert_eq!(pieces, out.text, "the pieces handed over make the text");
    assert_eq!((out.finish, out.prompt_tokens, out.ids.last()), ("eos", ids.len(), Some(&2)));
    assert!(out.tokens_per_sec > 0.0 && out.prefill_tokens_per_sec > 0.0);
}

#[test]
fn sampling_is_seeded_and_can_be_stopped() {
    let mut lab = common::smol_lab();
    let req = GenerateRequest {
        prompt: Some("Once upon a time".into()),
        max_new_tokens: Some(12.0),
        temperature: Some(0.8),
        top_k: Some(40.0),
        top_p: Some(0.9),
        seed: Some(7.0),
        ..Default::default()
    };
    let a = lab.llm_generate(&req, &mut |_| true).unwrap();
    let b = lab.llm_generate(&req, &mut |_| true).unwrap();
    assert_eq!(a.ids, b.ids, "one seed, one sample");
    assert_eq!((a.ids.len(), a.finish), (12, "length"));
    let other = lab.llm_generate(&GenerateRequest { seed: Some(8.0), ..req.clone() }, &mut |_| true).unwrap();
    assert_ne!(a.ids, other.ids, "another seed, another sample");
    let mut calls = 0;
    let stopped = lab
        .llm_generate(&req, &mut |_| {
            calls += 1;
            calls < 3
        })
        .unwrap();
    assert_eq!((stopped.finish, calls), ("stopped", 3));
    assert!(stopped.ids.len() < 12);
}

#[test]
fn logits_are_those_of_the_forward_pass() {
    let mut lab = common::smol_lab();
    let ids = lab.llm_tokenize("The capital of France is").unwrap();
    let l = lab.llm_logits(&ids, false).unwrap();
    assert_eq!((l.vocab, l.logits.len()), (49152, ids.len() * 49152));
    let last = &l.logits[(ids.len() - 1) * 49152..];
    let best = last.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
    assert_eq!(lab.llm_detokenize(&[best]).unwrap(), " Paris");
}

#[test]
fn bad_requests_are_refused_by_field() {
    let mut lab = common::smol_lab();
    let mut refuse = |req: GenerateRequest| lab.llm_generate(&req, &mut |_| true).unwrap_err().to_string();
    let both = GenerateRequest { messages: Some(chat("hi")), prompt: Some("hi".into()), ..Default::default() };
    assert_eq!(refuse(both), "invalid prompt: give either messages or a prompt");
    let req = |f: fn(&mut GenerateRequest)| {
        let mut r = GenerateRequest { prompt: Some("hi".into()), ..Default::default() };
        f(&mut r);
        r
    };
    assert_eq!(
        refuse(req(|r| r.temperature = Some(f64::NAN))),
        "invalid temperature: NaN is not a number from 0 to 100"
    );
    assert_eq!(refuse(req(|r| r.top_p = Some(0.0))), "invalid topP: 0 is not a number in (0, 1]");
    assert_eq!(refuse(req(|r| r.top_k = Some(2.5))), "invalid topK: 2.5 is not a whole number from 0 to 1048576");
    assert_eq!(
        refuse(req(|r| r.max_new_tokens = Some(0.0))),
        "invalid maxNewTokens: 0 is not a whole number from 1 to 8192"
    );
    assert_eq!(refuse(req(|r| r.prompt = Some(String::new()))), "invalid prompt: the prompt is empty");
    assert!(refuse(req(|r| r.adapted = true)).contains("no adapter is on: train or choose one first"));
    let msg = lab.llm_detokenize(&[5, 49152]).unwrap_err().to_string();
    assert_eq!(msg, "invalid ids: id 49152 at position 1 is outside the vocabulary of 49152");
    assert!(lab.llm_apply_chat_template(&[], true).unwrap_err().to_string().contains("at least one message"));
}

#[test]
fn a_file_that_cannot_be_used_is_refused_and_the_loaded_model_kept() {
    let mut lab = common::smol_lab();
    let bytes = common::smol_gguf();
    let truncated = lab.llm_load_gguf(bytes[..1000].to_vec(), "cut.gguf", "").unwrap_err().to_string();
    assert!(truncated.starts_with("cut.gguf: "), "{truncated}");
    let cut_data = lab.llm_load_gguf(bytes[..bytes.len() - 10].to_vec(), "short.gguf", "").unwrap_err().to_string();
    assert!(cut_data.starts_with("short.gguf: ") && cut_data.contains("past the end"), "{cut_data}");
    // Another architecture: the same file with general.architecture renamed.
    let g = lora_lab::io::read_gguf(bytes, FILE).unwrap();
    let mut meta = g.metadata.clone();
    for (k, v) in meta.iter_mut() {
        if k == "general.architecture" {
            *v = lora_lab::io::GgufValue::String("gpt2".into());
        }
    }
    let other = lora_lab::io::write_gguf(&meta, &g.tensor_data(bytes).unwrap()).unwrap();
    let msg = lab.llm_load_gguf(other, "gpt2.gguf", "").unwrap_err().to_string();
    assert!(msg.starts_with("gpt2.gguf: general.architecture is \"gpt2\""), "{msg}");
    // The model loaded first still answers.
    let req = GenerateRequest {
        prompt: Some("The capital of France is".into()),
        max_new_tokens: Some(2.0),
        ..Default::default()
    };
    assert_eq!(lab.llm_generate(&req, &mut |_| true).unwrap().text, " Paris.");
}

#[test]
fn requests_too_big_for_memory_are_refused_before_allocating() {
    let mut lab = common::smol_lab();
    let ids = vec![5u32; 2000];
    let msg = lab.llm_logits(&ids, false).unwrap_err().to_string();
    assert_eq!(msg, "invalid ids: 2000 tokens' logits would take 393 MB; ask for at most 1365 tokens at a time");
    let too_long = vec![5u32; 8193];
    assert!(lab.llm_logits(&too_long, false).unwrap_err().to_string().contains("8193 tokens: give 1 to 8192"));
}
