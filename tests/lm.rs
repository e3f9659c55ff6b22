#![cfg(not(target_arch = "wasm32"))]
//! The language model against transformers (a committed fixture, tests/fixtures/lm/, made by its
//! make_fixture.py) and against finite differences; bit-identical results for any thread count.

use std::collections::BTreeMap;

use lora_lab::io::{self, read_safetensors, Tensor};
use lora_lab::lm::{loss, pick, Llama, LmActivations, LmConfig, LmGrads, Sampling};
use lora_lab::lora::{Adapter, Bias, Init, LoraConfig, Scaling};
use lora_lab::nn::LayerDelta;
use lora_lab::rng::{Rng, Stream};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lm");

fn fixture(name: &str) -> BTreeMap<String, Tensor> {
    let path = format!("{FIXTURE}/{name}");
    read_safetensors(&std::fs::read(&path).unwrap(), name).unwrap()
}

/// The fixture's config (tests/fixtures/lm/base/config.json).
fn fixture_config() -> LmConfig {
    LmConfig { hidden: 32, intermediate: 48, layers: 2, heads: 2, head_dim: 16, context: 16, ..LmConfig::tiny() }
}

fn fixture_model() -> Llama {
    let mut model = Llama::new(fixture_config(), 0);
    let weights = fixture("base/model.safetensors");
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), weights.len(), "the fixture holds every parameter and nothing else");
    for (name, p) in names.iter().zip(model.params_mut()) {
        p.copy_from_slice(&weights[name].data);
    }
    model
}

fn ids_of(t: &Tensor) -> Vec<u32> {
    t.data.iter().map(|&v| v as u32).collect()
}

/// Loss, dlogits and the targets of a batch.
fn loss_and_grad(model: &Llama, acts: &LmActivations) -> (f32, Vec<f32>) {
    let targets = loss::targets(acts.ids(), acts.t, model.cfg.pad);
    let mut dlogits = vec![0.0; acts.logits.len()];
    // the mean over the batch's targets: the whole batch as one part
    let count = targets.iter().flatten().count();
    let sum = loss::cross_entropy_part(&acts.logits, model.cfg.vocab, &targets, &mut dlogits, count);
    ((sum / count as f64) as f32, dlogits)
}

fn assert_close(what: &str, ours: &[f32], theirs: &[f32], tol: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    let scale = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}[{i}]: ours {a}, transformers {b} (scale {scale})");
    }
}

#[test]
fn parameter_count_of_the_tiny_model() {
    let cfg = LmConfig::tiny();
    assert_eq!(cfg.num_params(), 871_552);
    assert_eq!(Llama::new(cfg.clone(), 1).num_params(), 871_552);
    assert_eq!(cfg.linear_modules().len(), 29);
    assert_eq!(cfg.linear_modules()[3].0, "model.layers.0.self_attn.o_proj");
    assert_eq!(cfg.linear_modules()[28], ("lm_head".to_string(), 128, 264));
}

#[test]
fn logits_loss_and_gradients_match_transformers() {
    let model = fixture_model();
    let out = fixture("base_outputs.safetensors");
    let ids = ids_of(&out["ids"]);
    let mut acts = LmActivations::default();
    model.forward(&ids, 2, 16, &mut acts, None).unwrap();
    assert_close("logits", &acts.logits, &out["logits"].data, 2e-5);
    let (l, dlogits) = loss_and_grad(&model, &acts);
    assert!((l - out["loss"].data[0]).abs() < 1e-5, "loss {l} vs transformers {}", out["loss"].data[0]);
    let mut grads = LmGrads::zeros(&model);
    model.backward(&acts, &dlogits, &mut grads, true, None);
    for ((name, _), g) in model.params().iter().zip(grads.tensors_mut(&model)) {
        assert_close(&format!("grad of {name}"), g, &out[&format!("grad.{name}")].data, 1e-4);
    }
}

#[test]
fn an_evaluation_forward_gives_the_training_forwards_logits_bit_for_bit() {
    let model = fixture_model();
    let ids = ids_of(&fixture("base_outputs.safetensors")["ids"]);
    let mut train = LmActivations::default();
    model.forward(&ids, 2, 16, &mut train, None).unwrap();
    let mut eval = LmActivations::for_inference();
    model.forward(&ids, 2, 16, &mut eval, None).unwrap();
    assert!(train.trainable() && !eval.trainable());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&eval.logits), bits(&train.logits));
}

#[test]
fn a_batch_in_parts_gives_the_whole_batchs_loss_and_gradients() {
    // 5 sequences of 16, some padded, as one batch and as parts of 2 + 2 + 1 whose gradients add up.
    let model = Llama::new(fixture_config(), 3);
    let (b, t, pad) = (5, 16, model.cfg.pad);
    let mut r = Rng::new(5, Stream::Replay);
    let mut ids: Vec<u32> = (0..b * t).map(|_| r.below(256)).collect();
    ids[t - 3..t].fill(pad);
    ids[3 * t + 9..4 * t].fill(pad);
    let mut acts = LmActivations::default();
    model.forward(&ids, b, t, &mut acts, None).unwrap();
    let (whole_loss, dlogits) = loss_and_grad(&model, &acts);
    let mut whole = LmGrads::zeros(&model);
    model.backward(&acts, &dlogits, &mut whole, true, None);

    let denom = loss::targets(&ids, t, pad).iter().flatten().count();
    let (mut parts, mut sum) = (LmGrads::zeros(&model), 0.0f64);
    for (i, rows) in [0..2, 2..4, 4..5].into_iter().enumerate() {
        let part = &ids[rows.start * t..rows.end * t];
        model.forward(part, rows.len(), t, &mut acts, None).unwrap();
        let mut d = vec![0.0; acts.logits.len()];
        sum += loss::cross_entropy_part(&acts.logits, model.cfg.vocab, &loss::targets(part, t, pad), &mut d, denom);
        model.backward_into(&acts, &d, &mut parts, true, i > 0, None);
    }
    assert!(((sum / denom as f64) as f32 - whole_loss).abs() < 1e-6, "loss {} vs {whole_loss}", sum / denom as f64);
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    for ((name, a), w) in names.iter().zip(parts.tensors_mut(&model)).zip(whole.tensors_mut(&model)) {
        assert_close(&format!("grad of {name} in parts"), a, w, 1e-5);
    }
}

/// The fixture's adapters, as PEFT saved them, read by the lab's own importer.
fn fixture_adapter(model: &Llama, folder: &str) -> Adapter {
    let st = std::fs::read(format!("{FIXTURE}/{folder}/adapter_model.safetensors")).unwrap();
    let config = std::fs::read_to_string(format!("{FIXTURE}/{folder}/adapter_config.json")).unwrap();
    io::import_adapter(folder, &st, &config, model).unwrap()
}

#[test]
fn lora_on_every_module_type_matches_peft() {
    for (folder, outputs, modules) in
        [("adapter", "lora_outputs.safetensors", 15), ("adapter_rslora", "lora_rslora_outputs.safetensors", 4)]
    {
        let model = fixture_model();
        let out = fixture(outputs);
        let mut adapter = fixture_adapter(&model, folder);
        assert_eq!(adapter.layers.len(), modules, "{folder}: adapted modules");
        let ids = ids_of(&out["ids"]);
        let mut acts = LmActivations::default();
        model.forward(&ids, 2, 16, &mut acts, Some(&mut adapter)).unwrap();
        assert_close(&format!("{folder} logits"), &acts.logits, &out["logits"].data, 2e-5);
        let (l, dlogits) = loss_and_grad(&model, &acts);
        assert!((l - out["loss"].data[0]).abs() < 1e-5, "{folder}: loss {l} vs PEFT {}", out["loss"].data[0]);
        let mut grads = LmGrads::zeros(&model);
        model.backward(&acts, &dlogits, &mut grads, false, Some(&mut adapter));
        let names = adapter.target_names();
        for (layer, name) in adapter.layers.iter().zip(&names) {
            let key = |ab: &str| format!("grad.base_model.model.{name}.lora_{ab}.weight");
            assert_close(&key("A"), &layer.grad_a, &out[&key("A")].data, 1e-4);
            assert_close(&key("B"), &layer.grad_b, &out[&key("B")].data, 1e-4);
        }
        // Merged into the weights, the adapter gives the same logits (PEFT's merge_and_unload).
        let mut merged = model.clone();
        adapter.merge_into(&mut merged).unwrap();
        let mut m_acts = LmActivations::default();
        merged.forward(&ids, 2, 16, &mut m_acts, None).unwrap();
        assert_close(&format!("{folder} merged logits"), &m_acts.logits, &out["logits"].data, 2e-5);
    }
}

#[test]
fn a_saved_lm_head_base_layer_must_match_the_base() {
    let mut model = fixture_model();
    let lm_head = model.cfg.lm_head();
    model.linears[lm_head].weight[5] += 0.5;
    let st = std::fs::read(format!("{FIXTURE}/adapter/adapter_model.safetensors")).unwrap();
    let config = std::fs::read_to_string(format!("{FIXTURE}/adapter/adapter_config.json")).unwrap();
    let e = io::import_adapter("x", &st, &config, &model).unwrap_err().to_string();
    assert!(e.contains("adapter_model.safetensors") && e.contains("lm_head.base_layer.weight differs"), "{e}");
}

/// A small random model whose every weight matters: larger init, norms away from 1.
fn random_model(seed: u64) -> Llama {
    let cfg = LmConfig {
        hidden: 16,
        intermediate: 24,
        layers: 2,
        heads: 2,
        head_dim: 8,
        context: 8,
        init_std: 0.3,
        ..LmConfig::tiny()
    };
    let mut m = Llama::new(cfg, seed);
    let mut r = Rng::new(seed, Stream::Dropout);
    for n in m.norms.iter_mut().flatten().chain(std::iter::once(&mut m.final_norm)) {
        n.iter_mut().for_each(|v| *v = 1.0 + 0.3 * r.normal());
    }
    m
}

/// Two sequences of 8, the second ending in padding (ignored targets).
fn random_ids() -> Vec<u32> {
    let mut r = Rng::new(5, Stream::Replay);
    let mut ids: Vec<u32> = (0..16).map(|_| r.below(256)).collect();
    ids[0] = 256;
    ids[8] = 256;
    ids[12] = 257;
    ids[13..].fill(258);
    ids
}

fn loss_of(model: &Llama, ids: &[u32], delta: Option<&mut dyn LayerDelta>) -> f64 {
    let mut acts = LmActivations::default();
    model.forward(ids, 2, 8, &mut acts, delta).unwrap();
    loss_and_grad(model, &acts).0 as f64
}

fn check_fd(what: &str, analytic: f32, lp: f64, lm: f64, eps: f32) {
    let fd = (lp - lm) / (2.0 * eps as f64);
    let g = analytic as f64;
    assert!((fd - g).abs() <= 2e-2 * fd.abs().max(g.abs()) + 1e-4, "{what}: finite difference {fd}, backward {g}");
}

#[test]
fn model_gradients_match_finite_differences() {
    let mut model = random_model(3);
    let ids = random_ids();
    let mut acts = LmActivations::default();
    model.forward(&ids, 2, 8, &mut acts, None).unwrap();
    let (_, dlogits) = loss_and_grad(&model, &acts);
    let mut grads = LmGrads::zeros(&model);
    model.backward(&acts, &dlogits, &mut grads, true, None);
    let analytic: Vec<Vec<f32>> = grads.tensors_mut(&model).iter().map(|g| g.to_vec()).collect();
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    let eps = 1e-2f32;
    let mut pick = Rng::new(11, Stream::Dropout);
    for (t, name) in names.iter().enumerate() {
        let len = analytic[t].len();
        for _ in 0..6 {
            // Embedding rows of tokens in the batch; anywhere in the other tensors.
            let i = if t == 0 {
                let id = ids[pick.below(ids.len() as u32) as usize] as usize;
                id * 16 + pick.below(16) as usize
            } else {
                pick.below(len as u32) as usize
            };
            let orig = model.params_mut()[t][i];
            model.params_mut()[t][i] = orig + eps;
            let lp = loss_of(&model, &ids, None);
            model.params_mut()[t][i] = orig - eps;
            let lm = loss_of(&model, &ids, None);
            model.params_mut()[t][i] = orig;
            check_fd(&format!("{name}[{i}]"), analytic[t][i], lp, lm, eps);
        }
    }
}

/// lora_A (`which` 0) or lora_B (1) entry `i` of adapter layer `li`.
fn param(a: &mut Adapter, li: usize, which: usize, i: usize) -> &mut f32 {
    if which == 0 {
        &mut a.layers[li].lora_a[i]
    } else {
        &mut a.layers[li].lora_b[i]
    }
}

#[test]
fn lora_gradients_match_finite_differences_on_every_module_type() {
    let model = random_model(4);
    let ids = random_ids();
    let mut r = Rng::new(2, Stream::AdapterInit);
    // Every module, PEFT's default init, then both factors random so each gets a gradient.
    let all: Vec<usize> = (0..model.cfg.linear_modules().len()).collect();
    let cfg = LoraConfig {
        targets: all,
        rank: 2,
        alpha: 3.0,
        scaling: Scaling::Peft,
        dropout: 0.0,
        bias: Bias::None,
        init: Init::Default,
    };
    let mut loras = Adapter::new("all", cfg, &model, 1).unwrap();
    for l in &mut loras.layers {
        l.lora_a.iter_mut().chain(l.lora_b.iter_mut()).for_each(|v| *v = 0.3 * r.normal());
    }
    let mut acts = LmActivations::default();
    model.forward(&ids, 2, 8, &mut acts, Some(&mut loras)).unwrap();
    let (_, dlogits) = loss_and_grad(&model, &acts);
    let mut grads = LmGrads::zeros(&model);
    model.backward(&acts, &dlogits, &mut grads, false, Some(&mut loras));
    let analytic: Vec<(Vec<f32>, Vec<f32>)> =
        loras.layers.iter().map(|l| (l.grad_a.clone(), l.grad_b.clone())).collect();
    let eps = 1e-2f32;
    let mut pick = Rng::new(12, Stream::Dropout);
    let names = model.cfg.linear_modules();
    for (li, (ga, gb)) in analytic.iter().enumerate() {
        for which in 0..2 {
            for _ in 0..3 {
                let len = if which == 0 { ga.len() } else { gb.len() };
                let i = pick.below(len as u32) as usize;
                *param(&mut loras, li, which, i) += eps;
                let lp = loss_of(&model, &ids, Some(&mut loras));
                *param(&mut loras, li, which, i) -= 2.0 * eps;
                let lm = loss_of(&model, &ids, Some(&mut loras));
                *param(&mut loras, li, which, i) += eps;
                let g = if which == 0 { ga[i] } else { gb[i] };
                check_fd(&format!("{} lora_{}[{i}]", names[li].0, ["A", "B"][which]), g, lp, lm, eps);
            }
        }
    }
}

#[test]
fn forward_and_backward_are_bit_identical_for_any_thread_count() {
    let model = Llama::new(LmConfig::tiny(), 9);
    let mut r = Rng::new(1, Stream::Replay);
    let ids: Vec<u32> = (0..4 * 64).map(|_| r.below(259)).collect();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let mut acts = LmActivations::default();
            model.forward(&ids, 4, 64, &mut acts, None).unwrap();
            let (l, dlogits) = loss_and_grad(&model, &acts);
            let mut grads = LmGrads::zeros(&model);
            model.backward(&acts, &dlogits, &mut grads, true, None);
            let bits: Vec<u32> = grads.tensors_mut(&model).iter().flat_map(|g| g.iter().map(|v| v.to_bits())).collect();
            (l.to_bits(), acts.logits.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), bits)
        })
    };
    assert!(run(1) == run(2), "1 and 2 threads differ");
}

#[test]
fn bad_token_ids_are_refused() {
    let model = random_model(1);
    let mut acts = LmActivations::default();
    let e = model.forward(&[256, 300, 1, 2], 1, 4, &mut acts, None).unwrap_err().to_string();
    assert!(e.contains("300 is outside the vocabulary of 264"), "{e}");
    let e = model.forward(&[1; 18], 2, 9, &mut acts, None).unwrap_err().to_string();
    assert!(e.contains("longer than the context of 8"), "{e}");
    let e = model.forward(&[1; 5], 2, 3, &mut acts, None).unwrap_err().to_string();
    assert!(e.contains("do not make 2 sequences of 3"), "{e}");
}

#[test]
fn greedy_generation_with_the_kv_cache_matches_transformers() {
    let model = fixture_model();
    let out = fixture("base_outputs.safetensors");
    let greedy = ids_of(&out["greedy"]);
    let s = Sampling { temperature: 0.0, top_k: 0, top_p: 1.0 };
    let seqs = model.generate(&[vec![256]], s, &mut Rng::new(1, Stream::Sample), None).unwrap();
    assert_eq!(seqs[0].len(), 16, "no EOS: runs to the context");
    assert_eq!(&seqs[0][..greedy.len()], &greedy[..], "HF generate(do_sample=False, max_new_tokens=8)");
}

#[test]
fn cached_steps_agree_with_the_full_forward_with_an_adapter() {
    let model = fixture_model();
    let mut adapter = fixture_adapter(&model, "adapter");
    let s = Sampling { temperature: 0.0, top_k: 0, top_p: 1.0 };
    let prompts = vec![vec![256, b'P' as u32], vec![256, b'a' as u32], vec![256, 0xc3]];
    let seqs = model.generate(&prompts, s, &mut Rng::new(1, Stream::Sample), Some(&mut adapter)).unwrap();
    for seq in &seqs {
        // Greedy: each generated token is the argmax of the full forward's logits before it.
        let mut acts = LmActivations::default();
        model.forward(seq, 1, seq.len(), &mut acts, Some(&mut adapter)).unwrap();
        for (i, row) in acts.logits.chunks_exact(264).enumerate().take(seq.len() - 1).skip(1) {
            let best = pick(row, s, &mut Rng::new(0, Stream::Sample));
            assert_eq!(best, seq[i + 1], "position {i} of {seq:?}");
        }
    }
}

#[test]
fn sampling_follows_temperature_and_top_k() {
    let logits = [0.0f32, 2.0, 1.0, -1.0];
    let mut r = Rng::new(3, Stream::Sample);
    let draw = |s: Sampling, r: &mut Rng| {
        (0..4000).fold([0usize; 4], |mut c, _| {
            c[pick(&logits, s, r) as usize] += 1;
            c
        })
    };
    assert_eq!(pick(&logits, Sampling { temperature: 0.0, top_k: 0, top_p: 1.0 }, &mut r), 1);
    assert_eq!(draw(Sampling { temperature: 1.0, top_k: 1, top_p: 1.0 }, &mut r), [0, 4000, 0, 0]);
    let two = draw(Sampling { temperature: 1.0, top_k: 2, top_p: 1.0 }, &mut r);
    assert_eq!(two[0] + two[3], 0, "only the two best are candidates");
    // p(1)/p(2) = e under T = 1: 2,924 / 1,076 expected of 4,000.
    assert!((2800..3050).contains(&two[1]), "{two:?}");
    let all = draw(Sampling { temperature: 1.0, top_k: 0, top_p: 1.0 }, &mut r);
    assert!(all.iter().all(|&c| c > 0), "every token is possible without top-k: {all:?}");
}

/// A vocabulary wider than 16 bits (Llama 3's 128,256, Qwen's 151,936): ids past 65,535 are read as
/// themselves in the embedding, the loss and generation, never cut to 16 bits.
#[test]
fn ids_past_65535_are_embedded_scored_and_generated_as_themselves() {
    let cfg = LmConfig {
        vocab: 70_000,
        hidden: 8,
        intermediate: 8,
        layers: 1,
        heads: 1,
        head_dim: 8,
        context: 8,
        bos: 69_990,
        eos: 69_999,
        pad: 0,
        ..LmConfig::tiny()
    };
    cfg.validate("wide").unwrap();
    let mut model = Llama::new(cfg, 4);
    // lm_head: zero but rows 68,000 and 69,000, opposite, so one of the two is every greedy pick
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    let head = names.iter().position(|n| n == "lm_head.weight").unwrap();
    let mut params = model.params_mut();
    let w = &mut params[head];
    w.fill(0.0);
    for (c, v) in [0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5, -2.0, 1.0].into_iter().enumerate() {
        w[69_000 * 8 + c] = v;
        w[68_000 * 8 + c] = -v;
    }
    drop(params);

    // 65,537 is not 1: its own embedding row gives other logits (a 16-bit id would read row 1)
    let logits = |ids: &[u32]| {
        let mut acts = LmActivations::for_inference();
        model.forward(ids, 1, ids.len(), &mut acts, None).unwrap();
        acts.logits
    };
    let (wide, narrow) = (logits(&[69_990, 65_537]), logits(&[69_990, 1]));
    assert_eq!(wide[..70_000], narrow[..70_000], "the same first position");
    assert_ne!(wide[70_000..], narrow[70_000..], "row 65,537 read, not row 1");

    // the loss of a target past 65,535 is its own log-probability
    let targets = loss::targets(&[69_990, 65_537], 2, 0);
    assert_eq!(targets, [Some(65_537), None]);
    let lp = loss::log_probs(&wide, 70_000, &targets)[0];
    let row = &wide[..70_000];
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let want = row[65_537] - max - row.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32;
    assert!((lp - want).abs() < 1e-3, "{lp} vs {want} (an f32 sum of 70,000 terms against f64)");

    // generation picks and feeds back ids past 65,535: each new token the full forward's argmax
    let s = Sampling { temperature: 0.0, top_k: 0, top_p: 1.0 };
    let seq = &model.generate(&[vec![69_990, 65_537]], s, &mut Rng::new(1, Stream::Sample), None).unwrap()[0];
    assert_eq!(seq.len(), 8, "no EOS: runs to the context");
    let all = logits(&seq[..7]);
    for i in 1..7 {
        assert!(seq[i + 1] == 68_000 || seq[i + 1] == 69_000, "{seq:?}");
        assert_eq!(
            pick(&all[i * 70_000..(i + 1) * 70_000], s, &mut Rng::new(0, Stream::Sample)),
            seq[i + 1],
            "{seq:?}"
        );
    }
}
