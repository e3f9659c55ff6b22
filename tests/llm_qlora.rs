//! QLoRA on the pretrained model (issue 21: "the frozen base stays in its quantised blocks — the GGUF's
//! own, or NF4 through the existing QLoRA path"): SmolLM2's projections held in bitsandbytes' NF4,
//! quantised from the weights its GGUF gives (Q4_1 dequantised), computing as the same model with those
//! NF4 weights in f32, undone bit for bit; a run on it says so, and its train.py loads the base as
//! `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")` does.

mod common;

use lora_lab::io::{gguf_llama, read_gguf};
use lora_lab::lab::{Lab, LlmAdapterSettings, LlmData, QuantizeSettings};
use lora_lab::lm::LmActivations;
use lora_lab::lora::Adaptable;
use lora_lab::quant::QuantizedWeight;

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const LINEARS: usize = 30 * 7;

fn nf4(double_quant: bool) -> QuantizeSettings {
    QuantizeSettings { quant_type: Some("nf4".into()), double_quant: Some(double_quant) }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const PROSE: &str = "The cat sat on the mat. It was a sunny day, and the children were playing in the park near \
                     the river. Their mother called them home for dinner, and they ran back laughing.";

/// The mean negative log-likelihood of `text`'s tokens after the first, in nats.
fn nll(lab: &mut Lab, text: &str) -> f64 {
    let ids = lab.llm_tokenize(text).unwrap();
    let out = lab.llm_logits(&ids, false).unwrap();
    let v = out.vocab;
    let sum: f64 = (0..ids.len() - 1)
        .map(|t| {
            let row = &out.logits[t * v..(t + 1) * v];
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            lse - row[ids[t + 1] as usize] as f64
        })
        .sum();
    sum / (ids.len() - 1) as f64
}

#[test]
fn the_nf4_base_computes_as_its_weights_in_f32_and_is_undone_bit_for_bit() {
    let mut lab = common::smol_lab();
    let info_read = lab.llm_info().unwrap();
    let ids = lab.llm_tokenize("Is \"Rosalind\" a woman's first name or an English word?").unwrap();
    let as_read = lab.llm_logits(&ids, false).unwrap().logits;
    let prose_read = nll(&mut lab, PROSE);
    assert!(!lab.llm_base_quantization().quantized);

    for double_quant in [true, false] {
        let q = lab.llm_quantize_base(&nf4(double_quant)).unwrap();
        assert!(q.quantized);
        assert_eq!((q.linears, q.double_quant), (LINEARS, double_quant));
        assert_eq!(lab.llm_base_quantization(), q);
        let info = lab.llm_info().unwrap();
        assert_eq!(info.tensor_types.get("NF4"), Some(&LINEARS), "{:?}", info.tensor_types);
        assert_eq!(info.tensor_types.get("Q4_1"), None, "{:?}", info.tensor_types);
        assert!(info.bytes > info_read.bytes + 50_000_000, "the NF4 codes beside the file: {} bytes", info.bytes);
        let held = lab.llm_logits(&ids, false).unwrap().logits;

        // The same model built here: each projection quantised from its Q4_1 weights by the bitsandbytes-exact
        // quantiser, then computed in f32 with the dequantised NF4 weights.
        let mut reference = gguf_llama(&read_gguf(common::smol_gguf(), FILE).unwrap(), common::smol_gguf()).unwrap();
        let l = reference.linear(0);
        let own = QuantizedWeight::quantize(&l.dense_weight(), l.out_features, l.in_features, double_quant).unwrap();
        reference.quantize_linears(double_quant).unwrap();
        assert_eq!(reference.linear(0).nf4.as_deref(), Some(&own));
        let dense = reference.dequantized_copy();
        assert!((0..dense.modules().len()).all(|i| !dense.linear(i).is_quantized() || i == dense.cfg.lm_head()));
        let mut acts = LmActivations::for_inference();
        dense.forward(&ids, 1, ids.len(), &mut acts, None).unwrap();
        let scale = acts.logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&held, &acts.logits);
        assert!(d <= 2e-4 * scale, "NF4 kernels vs the f32 model: {d} (logits up to {scale})");
        // …which is another model than the one read (NF4 moves each weight by ~10 % of the weights' RMS),
        // but as good a one on plain English.
        assert!(max_abs_diff(&held, &as_read) > 1e-2);
        let prose = nll(&mut lab, PROSE);
        assert!((prose - prose_read).abs() < 0.25, "prose: {prose_read} nats a token as read, {prose} in NF4");
    }

    let q = lab.llm_dequantize_base().unwrap();
    assert!(!q.quantized && q.linears == 0);
    assert_eq!(lab.llm_info().unwrap(), info_read);
    let back = lab.llm_logits(&ids, false).unwrap().logits;
    assert!(back.iter().zip(&as_read).all(|(a, b)| a.to_bits() == b.to_bits()), "as read again, bit for bit");
}

#[test]
fn a_run_on_the_nf4_base_says_so_and_its_train_py_quantises_as_bitsandbytes() {
    let (mut lab, train, test) = common::smol_demo_lab();
    let data = LlmData::Jsonl {
        jsonl: train.lines().take(3).collect::<Vec<_>>().join("\n"),
        test_jsonl: Some(test.lines().take(2).collect::<Vec<_>>().join("\n")),
    };
    let run = |lab: &mut Lab, name: &str| {
        let s = LlmAdapterSettings {
            name: Some(name.into()),
            data: Some(data.clone()),
            epochs: Some(1.0),
            exact_match_each_epoch: Some(false),
            ..Default::default()
        };
        lab.llm_start_adapter(&s).unwrap();
        while !lab.llm_train_step(4).unwrap().progress.done {}
        lab.llm_finish(false).unwrap()
    };

    let plain = run(&mut lab, "as-read");
    assert_eq!(plain.nf4, None);
    lab.llm_quantize_base(&nf4(true)).unwrap();
    // Not while a run is in progress.
    lab.llm_start_adapter(&LlmAdapterSettings {
        name: Some("x".into()),
        data: Some(data.clone()),
        ..Default::default()
    })
    .unwrap();
    let err = lab.llm_dequantize_base().unwrap_err().to_string();
    assert!(err.contains("in progress"), "{err}");
    assert!(lab.llm_base_quantization().quantized);
    lab.llm_finish(true).unwrap();

    let on4 = run(&mut lab, "on-nf4");
    assert!(on4.nf4.is_some_and(|q| q.double_quant));
    assert!(on4.eval_loss_before.is_some_and(f64::is_finite) && on4.eval_loss.iter().all(|l| l.is_finite()));
    // Another base, another loss before (the base's answers in sentences score the one-word completions
    // ~3.5 nats as read, ~5 in NF4; on prose the two are as good: the test above).
    assert_ne!(plain.eval_loss_before, on4.eval_loss_before);
    lab.llm_dequantize_base().unwrap();
    // The base's loss is measured once per base (and data): back on the base as read, it is the first
    // run's again, not the NF4 base's.
    let ev = lab.llm_evaluate(Some(&data)).unwrap();
    assert_eq!(Some(ev.base.loss), plain.eval_loss_before);
    // Its epoch's checkpoint restored over the base as read is still the NF4 run's.
    let id = lab.llm_checkpoints().last().unwrap().id;
    lab.llm_restore_checkpoint(id).unwrap();

    // train.py loads the base as the run had it, whatever the base is now.
    let script = lab.llm_export_training_script("on-nf4").unwrap().train_py;
    for line in [
        "pip install \"trl>=1.16\" \"peft>=0.21\" \"transformers>=5\" datasets bitsandbytes",
        "BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\", bnb_4bit_use_double_quant=True)",
        "model = AutoModelForCausalLM.from_pretrained(BASE, quantization_config=quantization)",
        "model = prepare_model_for_kbit_training(model)",
    ] {
        assert!(script.contains(line), "train.py lacks {line:?}:\n{script}");
    }
    let script = lab.llm_export_training_script("as-read").unwrap().train_py;
    assert!(script.contains("model = AutoModelForCausalLM.from_pretrained(BASE)\n"), "{script}");
    assert!(!script.contains("quantization_config") && !script.contains("datasets bitsandbytes"), "{script}");
}

#[test]
fn quantising_needs_a_model_and_a_known_type() {
    let mut lab = common::new_lab();
    let err = lab.llm_quantize_base(&nf4(true)).unwrap_err().to_string();
    assert!(err.contains("no pretrained model"), "{err}");
    assert!(lab.llm_dequantize_base().unwrap_err().to_string().contains("no pretrained model"));
    assert!(!lab.llm_base_quantization().quantized);

    let mut lab = common::smol_lab();
    let before = lab.llm_info();
    let err = lab
        .llm_quantize_base(&QuantizeSettings { quant_type: Some("int8".into()), double_quant: None })
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"int8\"") && err.contains("nf4"), "{err}");
    assert_eq!(lab.llm_info(), before);
}
