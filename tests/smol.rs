//! SmolLM2-135M-Instruct from its GGUF (`./build.sh setup` fetches it) against transformers on the Hugging
//! Face folder made from the same file (`../shared/peers/smol_to_hf.py`): log-probabilities within 1e-3 at
//! every position of four prompts (the 8 most probable tokens and the next prompt token), greedy
//! continuations token for token, the batched prefill across chunks. Fixture:
//! `tests/fixtures/smol/logits.json`, made by `make_logits_fixture.py` beside it.

mod common;

use std::sync::OnceLock;

use lora_lab::io::{gguf_llama, read_gguf};
use lora_lab::lm::{GenerateOptions, Llama, LmActivations, Sampling};
use lora_lab::quant::GgmlType;
use lora_lab::rng::{Rng, Stream};
use serde_json::Value;

const TOLERANCE: f64 = 1e-3;

fn model() -> &'static Llama {
    static MODEL: OnceLock<Llama> = OnceLock::new();
    MODEL.get_or_init(|| {
        let bytes = common::smol_gguf();
        let g = read_gguf(bytes, "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
        gguf_llama(&g, bytes).unwrap()
    })
}

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smol/logits.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// log-softmax of one row in f64.
fn log_softmax(row: &[f32]) -> (Vec<f64>, f64) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    (row.iter().map(|&x| x as f64 - lse).collect(), lse)
}

#[test]
fn the_config_is_smollm2s() {
    let c = &model().cfg;
    assert_eq!(
        (c.layers, c.hidden, c.intermediate, c.heads, c.kv_heads(), c.head_dim, c.vocab, c.context),
        (30, 576, 1536, 9, 3, 64, 49152, 8192)
    );
    assert_eq!((c.bos, c.eos, c.pad, c.tie_embeddings, c.rope_theta, c.rms_norm_eps), (1, 2, 2, true, 100000.0, 1e-5));
    assert_eq!(model().num_params(), 134_515_008);
    // Frozen weights held as read: every Linear in its blocks (210 Q4_1 and the tied Q8_0 embedding).
    let held: Vec<GgmlType> = model().linears.iter().map(|l| l.held.as_ref().expect("held as read").ty()).collect();
    assert_eq!(held.iter().filter(|&&t| t == GgmlType::Q4_1).count(), 210);
    assert_eq!(held.last(), Some(&GgmlType::Q8_0));
    assert!(model().linears.iter().all(|l| l.weight.is_empty()), "no f32 copy of a quantised weight");
    assert!(model().embed.is_empty(), "the embedding is lm_head's weight");
}

#[test]
fn log_probabilities_match_transformers() {
    let fx = fixture();
    let m = model();
    let vocab = m.cfg.vocab;
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ids = ids(&case["ids"]);
        let mut acts = LmActivations::for_inference();
        m.forward(&ids, 1, ids.len(), &mut acts, None).unwrap();
        let mut worst = 0.0f64;
        for (t, pos) in case["positions"].as_array().unwrap().iter().enumerate() {
            let (lp, lse) = log_softmax(&acts.logits[t * vocab..(t + 1) * vocab]);
            let mut check = |what: &str, id: usize, want: f64| {
                let d = (lp[id] - want).abs();
                worst = worst.max(d);
                assert!(d < TOLERANCE, "{name}, position {t}, {what} token {id}: {} vs transformers {want}", lp[id]);
            };
            for pair in pos["top"].as_array().unwrap() {
                check("top", pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
            }
            if let Some(next) = pos.get("next") {
                check("next", ids[t + 1] as usize, next.as_f64().unwrap());
            }
            let want_lse = pos["lse"].as_f64().unwrap();
            assert!((lse - want_lse).abs() < TOLERANCE, "{name}, position {t}: log-sum-exp {lse} vs {want_lse}");
        }
        eprintln!("{name}: {} positions, largest log-probability difference {worst:.2e}", ids.len());
    }
}

#[test]
fn greedy_continuations_match_transformers() {
    let fx = fixture();
    let m = model();
    for case in fx["cases"].as_array().unwrap() {
        let Some(greedy) = case.get("greedy") else { continue };
        let prompt = ids(&case["ids"]);
        let want = ids(&greedy["ids"]);
        let limits = GenerateOptions { max_new: 32, stop: &[m.cfg.eos], int8: false };
        let mut rng = Rng::new(1, Stream::Sample);
        let mut streamed = Vec::new();
        let out = m
            .generate_with(std::slice::from_ref(&prompt), limits, Sampling::GREEDY, &mut rng, None, &mut |_, t| {
                streamed.push(t);
                true
            })
            .unwrap();
        assert_eq!(&out[0][prompt.len()..], &want[..], "{}: {}", case["name"], greedy["text"]);
        assert_eq!(streamed, want, "tokens are handed over as they come");
    }
}

#[test]
fn a_prompt_longer_than_a_prefill_chunk_continues_as_the_forward_pass_predicts() {
    let fx = fixture();
    let case = fx["cases"].as_array().unwrap().iter().find(|c| c["ids"].as_array().unwrap().len() > 256).unwrap();
    let prompt = ids(&case["ids"]);
    let last = case["positions"].as_array().unwrap().last().unwrap();
    let want = last["top"][0][0].as_u64().unwrap() as u32;
    let limits = GenerateOptions { max_new: 1, stop: &[], int8: false };
    let out = model()
        .generate_with(std::slice::from_ref(&prompt), limits, Sampling::GREEDY, &mut Rng::new(1, Stream::Sample), None, &mut |_, _| true)
        .unwrap();
    assert_eq!(out[0].len(), prompt.len() + 1);
    assert_eq!(out[0][prompt.len()], want);
}

/// Decoding with 8-bit activations (llama.cpp's arithmetic, `GenerateOptions::int8`) parts from the exact
/// forward only where the exact model itself is nearly undecided: teacher-forced on the int8 continuation
/// (32 greedy tokens after each of three prompts), the exact model's own choice at all but a few steps,
/// and never a token more than half a nat below it. (Measured: 1, 2 and 1 steps of 32 differ, the largest gap
/// 0.34 nats; the three continuations equal transformers' for 21 of 21, 5 of 30 and 17 of 32 tokens.)
#[test]
fn int8_decoding_picks_what_the_exact_model_nearly_picks() {
    let fx = fixture();
    let m = model();
    let vocab = m.cfg.vocab;
    for case in fx["cases"].as_array().unwrap() {
        let Some(greedy) = case.get("greedy") else { continue };
        let prompt = ids(&case["ids"]);
        let want = ids(&greedy["ids"]);
        let limits = GenerateOptions { max_new: 32, stop: &[], int8: true };
        let mut rng = Rng::new(1, Stream::Sample);
        let one = std::slice::from_ref(&prompt);
        let out = m.generate_with(one, limits, Sampling::GREEDY, &mut rng, None, &mut |_, _| true).unwrap();
        let seq = &out[0];
        let same = seq[prompt.len()..].iter().zip(&want).take_while(|(a, b)| a == b).count();
        let mut acts = LmActivations::for_inference();
        m.forward(seq, 1, seq.len(), &mut acts, None).unwrap();
        let mut worst = 0.0f64;
        let mut differ = 0;
        for t in prompt.len() - 1..seq.len() - 1 {
            let (lp, _) = log_softmax(&acts.logits[t * vocab..(t + 1) * vocab]);
            let best = lp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let gap = best - lp[seq[t + 1] as usize];
            worst = worst.max(gap);
            differ += (gap > 0.0) as usize;
        }
        eprintln!(
            "{}: int8 greedy equals transformers' for {same} of {} tokens; {differ} picks not the exact argmax, the largest \
             gap {worst:.4} nats",
            case["name"],
            want.len()
        );
        assert!(differ <= 3 && worst < 0.5, "{}: {differ} steps differ, the largest gap {worst} nats", case["name"]);
        assert!(same >= 5, "{}: the first {same} tokens equal transformers'", case["name"]);
    }
}
