#![cfg(not(target_arch = "wasm32"))]
//! The merged model as a Hugging Face folder (`Lab::llm_export_merged`, `io::lm_file::export_lm_f16`):
//! SmolLM2 from its GGUF with a PEFT adapter on all seven projections of three layers, merged and written
//! in F16 — every tensor is f16(W + ΔW) exactly, the file is the `safetensors` crate's layout, and the
//! folder loads again (`llm_load_hf`) computing what the adapted model computes, up to f16 rounding. The
//! base alone in F16 gives the base's log-probabilities within f16 rounding. And the half-precision
//! reader: F16 and BF16 safetensors read exactly, folders saved in either load.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use half::{bf16, f16};
use lora_lab::io::lm_file::{export_lm_f16, import_lm_floats};
use lora_lab::io::tensors::{read_float_safetensors, write_f16_safetensors};
use lora_lab::io::{export_adapter, export_lm, import_lm, lm_tensors, read_safetensors, HfFolder};
use lora_lab::lab::{Lab, Pretrained};
use lora_lab::lm::{Llama, LmActivations, LmConfig};
use lora_lab::lora::{Adapter, Bias, Init, LoraConfig, Scaling};
use lora_lab::nn::LayerDelta;
use lora_lab::rng::{Rng, Stream};
use lora_lab::text::Message;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A kB figure of /proc/self/status (`VmRSS`, `VmHWM`), where there is one.
fn vm_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// log-softmax of each row, in f64.
fn logprobs(logits: &[f32], vocab: usize) -> Vec<f64> {
    logits
        .chunks_exact(vocab)
        .flat_map(|row| {
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            row.iter().map(move |&v| v as f64 - lse).collect::<Vec<_>>()
        })
        .collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn argmaxes(logits: &[f32], vocab: usize) -> Vec<usize> {
    logits
        .chunks_exact(vocab)
        .map(|r| r.iter().enumerate().fold(0, |best, (i, &v)| if v > r[best] { i } else { best }))
        .collect()
}

fn f16_round(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// LoRA (r 8, α 16, PEFT scaling) on all seven projections of `layers`, lora_B drawn at random (seeded)
/// so that every ΔW is non-zero.
fn random_adapter(model: &Llama, layers: &[usize], lm_head: bool, seed: u64) -> Adapter {
    let names = model.cfg.linear_modules();
    let targets: Vec<usize> = (0..names.len())
        .filter(|&i| {
            let n = &names[i].0;
            (lm_head && n == "lm_head") || layers.iter().any(|l| n.starts_with(&format!("model.layers.{l}.")))
        })
        .collect();
    let cfg = LoraConfig {
        targets,
        rank: 8,
        alpha: 16.0,
        scaling: Scaling::Peft,
        dropout: 0.0,
        bias: Bias::None,
        init: Init::Default,
    };
    let mut a = Adapter::new("tuned", cfg, model, seed).unwrap();
    let mut r = Rng::new(seed, Stream::AdapterInit);
    for l in &mut a.layers {
        l.lora_b.iter_mut().for_each(|v| *v = 0.05 * r.normal());
    }
    a
}

/// Every tensor of `file` is F16 and equals f16(W + ΔW) of `model` with `adapter`, bit for bit (tied:
/// the one matrix under `model.embed_tokens.weight`, no `lm_head.weight`). Returns how many values
/// the adapter changed.
fn check_merged_tensors(file: &[u8], model: &Llama, adapter: Option<&Adapter>) -> usize {
    let st = SafeTensors::deserialize(file).unwrap();
    assert!(st.iter().all(|(_, v)| v.dtype() == Dtype::F16), "every tensor is F16");
    let (_, meta) = SafeTensors::read_metadata(file).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let map = read_float_safetensors(file, "model.safetensors").unwrap();
    let layout = lm_tensors(&model.cfg);
    assert_eq!(map.len(), layout.len(), "no other tensors");
    let linear_of: HashMap<String, usize> =
        model.cfg.linear_modules().into_iter().enumerate().map(|(i, (n, _, _))| (format!("{n}.weight"), i)).collect();
    let params: HashMap<String, &[f32]> = model.params().into_iter().collect();
    let mut changed = 0;
    for (key, shape) in &layout {
        let t = &map[key];
        assert_eq!(&t.shape, shape, "{key}");
        let linear = match linear_of.get(key) {
            Some(&i) => Some(i),
            None if key == "model.embed_tokens.weight" && model.cfg.tie_embeddings => Some(model.cfg.lm_head()),
            None => None,
        };
        let want: Vec<f32> = match linear {
            Some(i) => {
                let mut w = model.linears[i].dense_weight().into_owned();
                if let Some(l) = adapter.and_then(|a| a.layer(i)) {
                    let dw = l.delta_weight();
                    let base: Vec<f32> = w.iter().map(|&v| f16_round(v)).collect();
                    w.iter_mut().zip(&dw).for_each(|(w, d)| *w += d);
                    changed += base.iter().zip(&w).filter(|(b, m)| **b != f16_round(**m)).count();
                }
                w
            }
            None => params[key].to_vec(),
        };
        assert_eq!(want.len(), t.data.len(), "{key}");
        for (j, (&got, &w)) in t.data.iter().zip(&want).enumerate() {
            assert_eq!(got.to_bits(), f16_round(w).to_bits(), "{key}[{j}]: {got} for f16({w})");
        }
    }
    changed
}

#[test]
fn smollm2_merged_in_f16_is_the_base_plus_each_delta_and_loads_as_a_folder() {
    let mut lab = common::smol_lab();
    let base = Pretrained::from_gguf(common::smol_gguf().to_vec(), FILE, "").unwrap().model;
    let adapter = random_adapter(&base, &[0, 13, 29], false, 11);
    assert_eq!(adapter.layers.len(), 21);
    let files = export_adapter(&adapter, &base).unwrap();
    lab.llm_import_adapter("tuned", &files.safetensors, &files.config.to_json_pretty()).unwrap();

    let text = lab
        .llm_apply_chat_template(&[Message::new("user", "What is the capital of France? Answer in one word.")], true)
        .unwrap();
    let ids = lab.llm_tokenize(&text).unwrap();
    let vocab = base.cfg.vocab;
    let adapted = lab.llm_logits(&ids, true).unwrap().logits;
    let plain = lab.llm_logits(&ids, false).unwrap().logits;

    // The export, measured: seconds, bytes, and the peak memory it adds (VmHWM reset first, where
    // Linux lets a process do so; run with --test-threads=1 for a clean figure).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss0 = vm_kb("VmRSS:");
    let t0 = Instant::now();
    let (config, st) = lab.llm_export_merged("tuned").unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let (rss1, hwm) = (vm_kb("VmRSS:"), vm_kb("VmHWM:"));
    let params = base.num_params();
    let header = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    assert_eq!(st.len(), 8 + header + 2 * params, "two bytes a parameter, after the header");
    assert_eq!(header % 8, 0);
    eprintln!(
        "llm_export_merged: {secs:.2} s, {} bytes ({params} parameters in F16, header {header} bytes); \
         VmRSS {rss0:?} → {rss1:?} kB, VmHWM {hwm:?} kB (peak above the start: {:?} MB)",
        st.len(),
        rss0.zip(hwm).map(|(a, b)| (b as f64 - a as f64) / 1024.0),
    );

    // config.json is the model's own, tied.
    let cfg: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(cfg["tie_word_embeddings"], true);
    assert_eq!(cfg["num_key_value_heads"], 3);
    assert_eq!(cfg["dtype"], "float32");
    assert!(cfg.get("quantization_config").is_none());
    assert!(!st.windows(14).any(|w| w == b"lm_head.weight"), "a tied lm_head is written once, as the embedding");

    // Every tensor: f16(W + ΔW), bit for bit.
    let changed = check_merged_tensors(&st, &base, Some(&adapter));
    eprintln!("values the adapter changed after f16 rounding: {changed}");
    assert!(changed > 1_000_000, "the adapter shows in the merged weights ({changed} values)");

    // The same file from io, and the adapter off: another file.
    let (config2, st2) = export_lm_f16(&base, Some(&adapter)).unwrap();
    assert!(config2 == config && st2 == st, "the lab's export is io's");

    // Loaded as a folder, it computes the adapted model's log-probabilities, up to f16 rounding.
    let (tokenizer_json, tokenizer_config) = common::smol_tokenizer_files();
    let folder = HfFolder {
        config_json: &config,
        safetensors: &st,
        tokenizer_json: &tokenizer_json,
        tokenizer_config_json: Some(&tokenizer_config),
        chat_template: None,
    };
    let info = lab.llm_load_hf(&folder, "merged").unwrap();
    assert_eq!((info.params, info.vocab, info.kv_heads), (params, vocab, 3));
    assert_eq!(lab.llm_tokenize(&text).unwrap(), ids);
    let merged = lab.llm_logits(&ids, false).unwrap().logits;
    let d_adapted = max_abs_diff(&logprobs(&merged, vocab), &logprobs(&adapted, vocab));
    let d_plain = max_abs_diff(&logprobs(&merged, vocab), &logprobs(&plain, vocab));
    let last = ids.len() - 1;
    let top = |l: &[f32]| argmaxes(l, vocab)[last];
    eprintln!(
        "{} tokens: max |Δ logprob| merged vs adapted {d_adapted:.4}, merged vs base {d_plain:.4}; next token {} / {} / {}",
        ids.len(),
        top(&merged),
        top(&adapted),
        top(&plain)
    );
    assert!(d_adapted < 0.1, "merged vs adapted: {d_adapted}");
    assert!(d_plain > 5.0 * d_adapted, "the adapter's effect ({d_plain}) stands well above f16 rounding ({d_adapted})");
    assert_eq!(top(&merged), top(&adapted));
}

#[test]
fn smollm2_base_alone_in_f16_gives_its_logprobs_within_rounding() {
    let base = Pretrained::from_gguf(common::smol_gguf().to_vec(), FILE, "").unwrap().model;
    let (config, st) = export_lm_f16(&base, None).unwrap();
    assert_eq!(check_merged_tensors(&st, &base, None), 0);
    // An adapter that changes nothing (lora_B zero, PEFT's init) merges into the same bytes.
    let mut zero = random_adapter(&base, &[3], false, 2);
    zero.layers.iter_mut().for_each(|l| l.lora_b.fill(0.0));
    assert!(export_lm_f16(&base, Some(&zero)).unwrap().1 == st, "W + 0 is W");

    let back = import_lm_floats(&config, &st).unwrap();
    assert_eq!(back.cfg, base.cfg);
    let ids: Vec<u32> = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 2, 198, 1, 4093, 198].to_vec();
    let run = |m: &Llama| {
        let mut acts = LmActivations::for_inference();
        m.forward(&ids, 1, ids.len(), &mut acts, None).unwrap();
        acts.logits
    };
    let vocab = base.cfg.vocab;
    let (want, got) = (run(&base), run(&back));
    let d = max_abs_diff(&logprobs(&got, vocab), &logprobs(&want, vocab));
    let agree = argmaxes(&got, vocab).iter().zip(argmaxes(&want, vocab)).filter(|(a, b)| **a == *b).count();
    eprintln!(
        "base in f16 vs the GGUF's weights: max |Δ logprob| {d:.5} over {} tokens; argmax agrees at {agree}",
        ids.len()
    );
    assert!(d < 0.05, "{d}");
    assert!(agree + 1 >= ids.len());
}

#[test]
fn refusals_name_the_adapter_the_state_or_the_tensor() {
    // No model.
    let lab = common::new_lab();
    let msg = lab.llm_export_merged("tuned").unwrap_err().to_string();
    assert!(msg.contains("no pretrained model is loaded"), "{msg}");

    // An unknown adapter.
    let lab = common::smol_lab();
    let msg = lab.llm_export_merged("nope").unwrap_err().to_string();
    assert!(msg.contains("there is no adapter \"nope\""), "{msg}");

    // A non-finite value, or one beyond f16's range, names its tensor and index.
    let mut m = Llama::new(LmConfig::tiny(), 4);
    m.norms[1][0][7] = f32::NAN;
    let msg = export_lm_f16(&m, None).unwrap_err().to_string();
    assert!(msg.contains("model.layers.1.input_layernorm.weight holds a non-finite value (NaN) at index 7"), "{msg}");
    let mut m = Llama::new(LmConfig::tiny(), 4);
    let a = random_adapter(&m, &[2], false, 5);
    let down = m.cfg.module(2, 6);
    m.linears[down].weight[130] = 70000.0;
    let msg = export_lm_f16(&m, Some(&a)).unwrap_err().to_string();
    assert!(
        msg.contains("model.layers.2.mlp.down_proj.weight holds") && msg.contains("at index 130, beyond f16's range"),
        "{msg}"
    );
    m.linears[down].weight[130] = 65504.0 - a.layer(down).unwrap().delta_weight()[130];
    assert!(export_lm_f16(&m, Some(&a)).is_ok(), "f16's largest value is written");

    // A bias shift has no bias to go into.
    let m = Llama::new(LmConfig::tiny(), 4);
    let mut a = random_adapter(&m, &[0], false, 5);
    a.bias_shift[1] = Some(vec![0.5; m.linears[1].out_features]);
    let msg = export_lm_f16(&m, Some(&a)).unwrap_err().to_string();
    assert!(msg.contains("shifts the bias of model.layers.0.self_attn.k_proj"), "{msg}");
}

fn tied_tiny(seed: u64) -> Llama {
    let cfg = LmConfig { tie_embeddings: true, kv_group: 2, ..LmConfig::tiny() };
    Llama::new(cfg, seed)
}

#[test]
fn an_adapted_tied_lm_head_is_written_untied() {
    let model = tied_tiny(3);
    let adapter = random_adapter(&model, &[1], true, 8);
    assert!(adapter.layer(model.cfg.lm_head()).is_some());
    let (config, st) = export_lm_f16(&model, Some(&adapter)).unwrap();
    let cfg: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(cfg["tie_word_embeddings"], false);
    let map = read_float_safetensors(&st, "model.safetensors").unwrap();
    let w = model.linears[model.cfg.lm_head()].dense_weight();
    let dw = adapter.layer(model.cfg.lm_head()).unwrap().delta_weight();
    let embed: Vec<u32> = w.iter().map(|&v| f16_round(v).to_bits()).collect();
    let head: Vec<u32> = w.iter().zip(&dw).map(|(&v, d)| f16_round(v + d).to_bits()).collect();
    assert_eq!(map["model.embed_tokens.weight"].data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), embed);
    assert_eq!(map["lm_head.weight"].data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), head);

    // The untied file computes what the adapted tied model computes, up to f16 rounding.
    let back = import_lm_floats(&config, &st).unwrap();
    let ids: Vec<u32> = (0..40).map(|i| (i * 37 % 256) as u32).collect();
    let mut acts = LmActivations::for_inference();
    let mut a = adapter.clone();
    model.forward(&ids, 1, ids.len(), &mut acts, Some(&mut a as &mut dyn LayerDelta)).unwrap();
    let want = acts.logits.clone();
    back.forward(&ids, 1, ids.len(), &mut acts, None).unwrap();
    let d = max_abs_diff(&logprobs(&acts.logits, 264), &logprobs(&want, 264));
    assert!(d < 0.02, "{d}");

    // Untied from the start: both matrices under their keys, f16(W + ΔW) each.
    let model = Llama::new(LmConfig::tiny(), 6);
    let adapter = random_adapter(&model, &[0, 3], true, 9);
    let (_, st) = export_lm_f16(&model, Some(&adapter)).unwrap();
    assert!(check_merged_tensors(&st, &model, Some(&adapter)) > 0);
}

#[test]
fn the_f16_file_is_the_safetensors_crates_layout() {
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        ("zeta".into(), vec![2, 3], vec![1.0, -2.0, 0.5, 65504.0, -0.0, 1e-7]),
        ("alpha.weight".into(), vec![5], vec![0.1, 0.2, 0.3, 0.4, 0.5]),
        ("Mid".into(), vec![1], vec![3.25]),
        ("empty".into(), vec![0, 4], vec![]),
    ];
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let layout: Vec<(String, Vec<usize>)> = tensors.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect();
    let ours = write_f16_safetensors(&layout, Some(metadata.clone()), |i, sink| {
        assert_eq!(sink.name(), tensors[i].0);
        sink.push(&tensors[i].2)
    })
    .unwrap();
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect()).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| (n.clone(), TensorView::new(Dtype::F16, s.clone(), b).unwrap()))
        .collect();
    let theirs = safetensors::serialize(views, Some(metadata)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ours[8..]).split('}').next(),
        String::from_utf8_lossy(&theirs[8..]).split('}').next()
    );
    assert!(ours == theirs, "byte for byte the crate's file");

    // Fewer or more values than the shape holds is an error, not a broken file.
    let short = write_f16_safetensors(&layout, None, |i, sink| {
        sink.push(&tensors[i].2[..tensors[i].2.len().saturating_sub(1)])
    });
    assert!(short.unwrap_err().to_string().contains("Mid: 0 values given for the 1 its shape holds"));
    let long = write_f16_safetensors(&layout, None, |i, sink| {
        sink.push(&tensors[i].2)?;
        sink.push(&[1.0])
    });
    assert!(long.unwrap_err().to_string().contains("Mid: 2 values given past the 1"));
    let twice = vec![("a".to_string(), vec![1]), ("a".to_string(), vec![1])];
    assert!(write_f16_safetensors(&twice, None, |_, s| s.push(&[0.0]))
        .unwrap_err()
        .to_string()
        .contains("appears twice"));
}

/// A safetensors file of (name, dtype, shape, little-endian bytes), through the crate.
fn file_of(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn f16_and_bf16_safetensors_read_exactly() {
    // f16: 1, −2, 65504 (the largest), 2⁻²⁴ (the smallest subnormal), 2⁻¹⁴ (the smallest normal), −0, 1/3 rounded.
    let f16_bits: [u16; 7] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0400, 0x8000, 0x3555];
    let f16_want = [1.0, -2.0, 65504.0, 2f32.powi(-24), 2f32.powi(-14), -0.0, 0.333_251_95];
    // bf16: the top half of an f32, so exact by definition: 1, −3.5, 3.3895314e38 (the largest), π rounded.
    let bf16_bits: [u16; 4] = [0x3F80, 0xC060, 0x7F7F, 0x4049];
    let le = |bits: &[u16]| bits.iter().flat_map(|b| b.to_le_bytes()).collect::<Vec<u8>>();
    let file = file_of(&[
        ("h", Dtype::F16, vec![7], le(&f16_bits)),
        ("b", Dtype::BF16, vec![2, 2], le(&bf16_bits)),
        ("f", Dtype::F32, vec![1], 0.1f32.to_le_bytes().to_vec()),
    ]);
    let map = read_float_safetensors(&file, "x.safetensors").unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&map["h"].data), bits(&f16_want));
    assert_eq!(bits(&map["h"].data), bits(&f16_bits.map(|b| f16::from_bits(b).to_f32())));
    assert_eq!(map["b"].shape, [2, 2]);
    assert_eq!(bits(&map["b"].data), bf16_bits.map(|b| (b as u32) << 16).to_vec());
    assert_eq!(map["b"].data[2], f32::from_bits(0x7F7F_0000));
    assert_eq!(bits(&map["b"].data), bits(&bf16_bits.map(|b| bf16::from_bits(b).to_f32())));
    assert_eq!(map["f"].data, [0.1]);

    // The F32 readers (adapters, the part 1 and 2 models) still refuse them.
    let msg = read_safetensors(&file, "x.safetensors").unwrap_err().to_string();
    assert!(msg.contains("has dtype BF16; only F32 is supported") || msg.contains("has dtype F16; only F32"), "{msg}");
    // Other dtypes are refused by name; a half tensor whose bytes do not fit its shape by its numbers.
    let i32_file = file_of(&[("n", Dtype::I32, vec![1], vec![0; 4])]);
    let msg = read_float_safetensors(&i32_file, "x.safetensors").unwrap_err().to_string();
    assert!(msg.contains("x.safetensors: tensor n has dtype I32; only F32, F16 and BF16 are read"), "{msg}");
    let header = r#"{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}    "#;
    let mut bad = (header.len() as u64).to_le_bytes().to_vec();
    bad.extend_from_slice(header.as_bytes());
    bad.extend_from_slice(&[0; 4]);
    let msg = read_float_safetensors(&bad, "x.safetensors").unwrap_err().to_string();
    assert!(msg.contains("tensor h: shape [3] needs 6 bytes of F16 but data_offsets [0, 4] hold 4"), "{msg}");
}

fn load(lab: &mut Lab, config: &str, st: &[u8]) -> lora_lab::Result<Llama> {
    let (tokenizer_json, tokenizer_config) = common::smol_tokenizer_files();
    let folder = HfFolder {
        config_json: config,
        safetensors: st,
        tokenizer_json: &tokenizer_json,
        tokenizer_config_json: Some(&tokenizer_config),
        chat_template: None,
    };
    lab.llm_load_hf(&folder, "half")?;
    // What the lab now holds, through the same reader.
    import_lm_floats(&config.replace("\"float16\"", "\"float32\"").replace("\"bfloat16\"", "\"float32\""), st)
}

#[test]
fn folders_saved_in_f16_or_bf16_load() {
    let model = common::small_smol_vocab();
    let (config32, _) = export_lm(&model).unwrap();
    let params: Vec<(String, Vec<usize>, Vec<f32>)> =
        model.params().into_iter().zip(lm_tensors(&model.cfg)).map(|((n, v), (_, s))| (n, s, v.to_vec())).collect();
    let ids: Vec<u32> = vec![1, 9690, 198, 2683, 359, 253, 2];

    // F16, as `model.half().save_pretrained(..)` writes it (config.json says float16).
    let (_, st16) = export_lm_f16(&model, None).unwrap();
    let config16 = config32.replace("\"dtype\": \"float32\"", "\"dtype\": \"float16\"");
    assert_ne!(config16, config32);
    let mut lab = common::new_lab();
    let held = load(&mut lab, &config16, &st16).unwrap();
    for ((name, p), (_, _, v)) in held.params().into_iter().zip(&params) {
        assert!(p.iter().zip(v).all(|(a, b)| a.to_bits() == f16_round(*b).to_bits()), "{name}");
    }
    let mut acts = LmActivations::for_inference();
    held.forward(&ids, 1, ids.len(), &mut acts, None).unwrap();
    assert_eq!(lab.llm_logits(&ids, false).unwrap().logits, acts.logits, "the lab holds what was read");

    // BF16 with the older `torch_dtype` key, as the Hub's checkpoints are.
    let bf: Vec<Vec<u8>> =
        params.iter().map(|(_, _, v)| v.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect()).collect();
    let st_bf = file_of(
        &params
            .iter()
            .zip(&bf)
            .map(|((n, s, _), b)| (n.as_str(), Dtype::BF16, s.clone(), b.clone()))
            .collect::<Vec<_>>(),
    );
    let mut obj: serde_json::Map<String, Value> = serde_json::from_str(&config32).unwrap();
    obj.remove("dtype");
    obj.insert("torch_dtype".into(), json!("bfloat16"));
    let config_bf = serde_json::to_string_pretty(&obj).unwrap();
    let held = load(&mut lab, &config_bf, &st_bf).unwrap();
    for ((name, p), (_, _, v)) in held.params().into_iter().zip(&params) {
        assert!(p.iter().zip(v).all(|(a, b)| a.to_bits() == bf16::from_f32(*b).to_f32().to_bits()), "{name}");
    }
    held.forward(&ids, 1, ids.len(), &mut acts, None).unwrap();
    assert_eq!(lab.llm_logits(&ids, false).unwrap().logits, acts.logits);

    // The strict readers stay strict: import_lm refuses a half config and half tensors; any other dtype
    // in a folder's config.json is refused as before.
    assert!(import_lm(&config16, &st16).unwrap_err().to_string().starts_with("config.json: dtype"));
    let msg = import_lm(&config32, &st16).unwrap_err().to_string();
    assert!(msg.contains("has dtype F16; only F32 is supported"), "{msg}");
    let config64 = config32.replace("\"dtype\": \"float32\"", "\"dtype\": \"float64\"");
    let msg = load(&mut lab, &config64, &st16).unwrap_err().to_string();
    assert!(msg.starts_with("config.json: dtype is \"float64\""), "{msg}");
    assert_eq!(lab.llm_info().unwrap().name, "half", "a folder that fails leaves the model as it was");
}
