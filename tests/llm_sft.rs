//! Fine-tuning SmolLM2-135M-Instruct through the lab as the page drives it (issue 21): the demo task,
//! the seed preset counted as PEFT counts it, a short run that learns, evaluation, PEFT files out and
//! back, and bad settings or data refused with nothing changed.

mod common;

use std::collections::BTreeSet;

use lora_lab::lab::{LlmAdapterSettings, LlmData};
use lora_lab::lora::targets::TargetModules;
use serde_json::Value;

fn rows(jsonl: &str) -> Vec<Value> {
    jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn settings(v: Value) -> LlmAdapterSettings {
    serde_json::from_value(v).unwrap()
}

#[test]
fn the_demo_task_follows_the_reference_rule() {
    let (_, train, test) = common::smol_demo_lab();
    let (train, test) = (rows(&train), rows(&test));
    assert_eq!((train.len(), test.len()), (400, 100));
    let all: Vec<&Value> = train.iter().chain(&test).collect();
    let answer = |r: &Value| r["completion"][0]["content"].as_str().unwrap().to_string();
    let names = all.iter().filter(|r| answer(r) == "name").count();
    assert_eq!((names, all.len() - names), (250, 250), "balanced");
    let words: BTreeSet<&str> =
        serde_json::from_slice::<Vec<String>>(&common::corpus("an-array-of-english-words/index.json"))
            .unwrap()
            .leak()
            .iter()
            .map(String::as_str)
            .collect();
    let mut seen = BTreeSet::new();
    for r in &all {
        assert_eq!(r["prompt"][0]["role"], "user");
        assert_eq!(r["completion"][0]["role"], "assistant");
        let q = r["prompt"][0]["content"].as_str().unwrap();
        let w = q.split('"').nth(1).unwrap();
        assert!(seen.insert(w.to_string()), "{w} drawn twice");
        assert!(w.chars().next().unwrap().is_uppercase() && w.chars().skip(1).all(|c| c.is_lowercase()), "{w}");
        let lower = w.to_lowercase();
        if answer(r) == "name" {
            assert!(!words.contains(lower.as_str()), "{w} is also an English word");
        } else {
            assert!(words.contains(lower.as_str()) && (4..=9).contains(&w.len()), "{w}");
        }
    }
}

#[test]
fn the_seed_preset_is_the_articles_config_counted_as_peft_counts_it() {
    let (mut lab, train, test) = common::smol_demo_lab();
    let start = lab.llm_start_adapter(&settings(serde_json::json!({ "preset": "seed", "data": "demo" }))).unwrap();
    assert_eq!(start.params.report, "trainable params: 2,580,480 || all params: 137,095,488 || trainable%: 1.8823");
    assert_eq!((start.train_rows, start.held_out_rows, start.truncated), (400, 100, 0));
    // 400 rows at batch 3: 134 steps an epoch, 3 epochs; warmup ceil(0.03 × 402) = 13 steps.
    assert_eq!((start.steps, start.warmup_steps), (402, 13));
    assert!(start.held_out_lines.is_empty(), "the demo has its own held-out file");
    assert!(lab.is_training());
    let summary = lab.llm_finish(true).unwrap();
    assert!(summary.cancelled && summary.steps == 0);
    assert_eq!(lab.llm_adapters().list.len(), 1);

    // exactMatchEachEpoch: false leaves the greedy answers out of the epochs (the loss stays)
    let (train, test) = (rows_of(&train, 3), rows_of(&test, 2));
    let s = serde_json::json!({ "name": "quiet", "epochs": 1, "exactMatchEachEpoch": false,
        "data": { "jsonl": train, "testJsonl": test } });
    lab.llm_start_adapter(&settings(s)).unwrap();
    let mut epoch_ends = 0;
    loop {
        let p = lab.llm_train_step(4).unwrap();
        assert_eq!(p.exact_match, None);
        epoch_ends += p.eval_loss.iter().count();
        if p.progress.done {
            break;
        }
    }
    let summary = lab.llm_finish(false).unwrap();
    assert_eq!((epoch_ends, summary.eval_loss.len(), summary.exact_match.len()), (1, 1, 0));
}

/// The first `n` lines of a JSONL text.
fn rows_of(jsonl: &str, n: usize) -> String {
    jsonl.lines().take(n).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_short_run_learns_the_task_and_its_adapter_goes_to_peft_and_back() {
    let (mut lab, train, test) = common::smol_demo_lab();
    let train: Vec<&str> = train.lines().take(9).collect();
    let test: Vec<&str> = test.lines().take(4).collect();
    let data = LlmData::Jsonl { jsonl: train.join("\n"), test_jsonl: Some(test.join("\n")) };
    let s = LlmAdapterSettings {
        name: Some("short".into()),
        data: Some(data.clone()),
        epochs: Some(2.0),
        lr: Some(2e-3),
        ..Default::default()
    };
    let start = lab.llm_start_adapter(&s).unwrap();
    assert_eq!((start.train_rows, start.steps), (9, 6));
    let first = lab.llm_train_step(10).unwrap();
    let before = first.eval_loss_before.unwrap();
    assert_eq!(first.progress.step, 0, "the first call measures the loss before training");
    assert!(before > 1.0 && before < 8.0, "held-out loss before: {before}");
    assert_eq!(first.exact_match, None);
    let mut evals = Vec::new();
    let mut matches = Vec::new();
    loop {
        let p = lab.llm_train_step(2).unwrap();
        assert_eq!(p.exact_match.is_some(), p.eval_loss.is_some(), "the exact match comes with each epoch's loss");
        evals.extend(p.eval_loss);
        matches.extend(p.exact_match);
        let most = (64 << 20) + lora_lab::lm::KEPT_GATE_UP_BYTES;
        assert!(p.activation_bytes < most, "{} bytes of activations", p.activation_bytes);
        if p.progress.done {
            break;
        }
    }
    let summary = lab.llm_finish(false).unwrap();
    assert_eq!(summary.eval_loss, evals);
    assert_eq!(summary.exact_match, matches);
    assert_eq!((summary.steps, summary.eval_loss.len(), summary.exact_match.len()), (6, 2, 2));
    let after = *summary.eval_loss.last().unwrap();
    assert!(after < 0.5 * before, "held-out loss {before} → {after}");
    assert!(summary.tokens_per_sec > 0.0);

    let ev = lab.llm_evaluate(Some(&data)).unwrap();
    assert!(
        (ev.base.loss - before).abs() < 1e-9,
        "the base's loss is the run's loss before: {} vs {before}",
        ev.base.loss
    );
    let adapted = ev.adapted.unwrap();
    assert!((adapted.loss - after).abs() < 1e-9);
    assert_eq!(ev.expected.len(), 4);
    assert_eq!(ev.prompts.len(), 4);
    assert_eq!(
        ev.prompts[0],
        rows(test[0])[0]["prompt"][0]["content"].as_str().unwrap(),
        "the prompts are the rows' own"
    );
    assert_eq!(ev.base.exact_match, Some(0.0), "the base answers in sentences: {:?}", ev.base.answers);
    assert!(adapted.answers.iter().all(|a| a == "name" || a == "word"), "{:?}", adapted.answers);
    assert_eq!(adapted.exact_match, matches.last().copied(), "the last epoch's exact match is the evaluation's");

    // A checkpoint each epoch (save_total_limit 2), the best marked; restoring one makes it the adapter.
    let cps = lab.llm_checkpoints();
    assert_eq!(cps.iter().map(|c| (c.epoch, c.step)).collect::<Vec<_>>(), [(1, 3), (2, 6)]);
    assert_eq!(cps.iter().map(|c| c.eval_loss).collect::<Vec<_>>(), summary.eval_loss);
    assert_eq!(cps.iter().filter(|c| c.best).count(), 1);

    // train.py: TRL with the same LoraConfig and SFTConfig, resuming from ./adapter, and the rows.
    let script = lab.llm_export_training_script("short").unwrap();
    for line in [
        "BASE = \"HuggingFaceTB/SmolLM2-135M-Instruct\"",
        "r=32,",
        "lora_alpha=32,",
        "lora_dropout=0.05,",
        "target_modules=[\"q_proj\", \"v_proj\", \"k_proj\"],",
        "use_rslora=False,",
        "per_device_train_batch_size=3,",
        "num_train_epochs=2,",
        "learning_rate=0.002,",
        "weight_decay=0.1,",
        "lr_scheduler_type=\"cosine\",",
        "warmup_steps=0.03,",
        "seed=1311,",
        "max_length=256,",
        "packing=False,",
        "packing_strategy=\"bfd\",",
        "eval_packing=False,",
        "save_total_limit=2,",
        "PeftModel.from_pretrained(model, adapter, is_trainable=True)",
        "bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),",
        "use_cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()),",
    ] {
        assert!(script.train_py.contains(line), "train.py lacks {line:?}:\n{}", script.train_py);
    }
    assert_eq!((script.dataset_jsonl.lines().count(), script.test_jsonl.lines().count()), (9, 4));

    // PEFT's folder: its keys and config, and back under another name with the same evaluation.
    let files = lab.llm_export_adapter("short").unwrap();
    assert_eq!(files.config.base_model_name_or_path.as_deref(), Some("HuggingFaceTB/SmolLM2-135M-Instruct"));
    assert_eq!(files.config.task_type.as_deref(), Some("CAUSAL_LM"));
    assert_eq!(
        files.config.target_modules,
        TargetModules::Names(vec!["q_proj".into(), "v_proj".into(), "k_proj".into()])
    );
    assert_eq!((files.config.r, files.config.lora_alpha), (32, 32.0));
    let tensors = lora_lab::io::read_safetensors(&files.safetensors, "adapter").unwrap();
    assert_eq!(tensors.len(), 180);
    let a = &tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"];
    assert_eq!(a.shape, vec![32, 576]);
    assert_eq!(tensors["base_model.model.model.layers.29.self_attn.k_proj.lora_B.weight"].shape, vec![192, 32]);
    // llama.cpp's LoRA GGUF of the same adapter (its layout is tests/gguf_lora.rs's).
    let gguf = lab.llm_export_gguf_adapter("short").unwrap();
    let g = lora_lab::io::read_gguf(&gguf, "short.gguf").unwrap();
    assert_eq!(g.get_str("general.type").unwrap(), "adapter");
    assert_eq!(g.tensors.len(), 180);
    lab.llm_import_adapter("again", &files.safetensors, &files.config.to_json_pretty()).unwrap();
    let ev2 = lab.llm_evaluate(Some(&data)).unwrap();
    assert_eq!(ev2.adapted.unwrap().loss.to_bits(), adapted.loss.to_bits());
    assert_eq!(lab.llm_adapters().active.as_deref(), Some("again"));
    let list = lab.llm_restore_checkpoint(cps[0].id).unwrap();
    assert_eq!(list.active.as_deref(), Some("short"));
    assert_eq!(lab.llm_evaluate(Some(&data)).unwrap().adapted.unwrap().loss.to_bits(), cps[0].eval_loss.to_bits());
}

#[test]
fn bad_settings_and_data_are_refused_and_nothing_changes() {
    let (mut lab, train, test) = common::smol_demo_lab();
    let good = |extra: Value| {
        let mut v = serde_json::json!({ "data": { "jsonl": train.clone(), "testJsonl": test.clone() } });
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        settings(v)
    };
    let cases = [
        (good(serde_json::json!({ "targetModules": ["lm_head"] })), "lm_head is not one of the seven projections"),
        (good(serde_json::json!({ "targetModules": ["foo_proj"] })), "unknown target module \"foo_proj\""),
        (LlmAdapterSettings { lr: Some(f64::NAN), ..good(serde_json::json!({})) }, "learning rate"),
        (good(serde_json::json!({ "r": 0 })), "r"),
        (good(serde_json::json!({ "layersToTransform": [30] })), "layers to transform"),
        (good(serde_json::json!({ "maxSeqLength": 100000 })), "max_seq_length"),
        (good(serde_json::json!({ "preset": "huge" })), "unknown preset"),
        (settings(serde_json::json!({ "data": { "jsonl": "{\"prompt\": \"a\"}\n" } })), "line 1"),
        (
            settings(
                serde_json::json!({ "data": { "jsonl": format!("{}\nnot json\n", train.lines().next().unwrap()) } }),
            ),
            "line 2",
        ),
        (settings(serde_json::json!({ "data": "pokemon" })), "\"pokemon\""),
    ];
    let info = lab.llm_info();
    for (s, why) in cases {
        let err = lab.llm_start_adapter(&s).unwrap_err().to_string();
        assert!(err.contains(why), "expected {why:?} in: {err}");
        assert!(!lab.is_training(), "{err}: no run started");
        assert_eq!(lab.llm_info(), info);
    }
    assert!(lab.llm_adapters().list.is_empty());

    // An adapter made for another base (part 2's tiny Llama: the same module names, other shapes).
    let tiny = lora_lab::lm::Llama::new(lora_lab::lm::LmConfig::tiny(), 1);
    let names = tiny.cfg.linear_modules();
    let targets = (0..names.len()).filter(|&i| names[i].0.ends_with("q_proj")).collect();
    let cfg = lora_lab::lora::LoraConfig { targets, ..lora_lab::lora::LoraConfig::article() };
    let cfg = lora_lab::lora::LoraConfig { init: lora_lab::lora::Init::Default, ..cfg };
    let other = lora_lab::lora::Adapter::new("tiny", cfg, &tiny, 1).unwrap();
    let files = lora_lab::io::export_adapter(&other, &tiny).unwrap();
    let err =
        lab.llm_import_adapter("tiny", &files.safetensors, &files.config.to_json_pretty()).unwrap_err().to_string();
    assert!(err.contains("adapter_model.safetensors") && err.contains("shape"), "{err}");
    assert!(lab.llm_adapters().list.is_empty());
    assert_eq!(lab.llm_info(), info);
}

/// Packing as TRL packs by default ("bfd"): whole rows, two or three to a block, each on its own; the run
/// trains on the blocks and its train.py packs the same way.
#[test]
fn a_packed_run_trains_on_whole_examples() {
    let mut lab = common::smol_lab();
    let jsonl: Vec<String> = (1..=12)
        .map(|i| serde_json::json!({ "text": format!("Item {i}: a short line of text.") }).to_string())
        .collect();
    let s = settings(serde_json::json!({
        "name": "packed", "data": { "jsonl": jsonl.join("\n") }, "packing": true, "maxSeqLength": 40,
        "epochs": 1, "exactMatchEachEpoch": false,
    }));
    let start = lab.llm_start_adapter(&s).unwrap();
    assert_eq!(start.train_rows, 11);
    assert!(start.train_sequences < 6, "{} blocks for 11 rows", start.train_sequences);
    assert_eq!(start.truncated, 0);
    while !lab.llm_train_step(4).unwrap().progress.done {}
    let summary = lab.llm_finish(false).unwrap();
    assert!(summary.eval_loss_before.unwrap() > summary.eval_loss[0], "{summary:?}");
    let script = lab.llm_export_training_script("packed").unwrap().train_py;
    assert!(script.contains("packing=True,\n    packing_strategy=\"bfd\","), "{script}");
}
