//! What the fine-tuning panel shows before a run (`llm.plan`, `llm.inspectData`) and after it
//! (`llm.evaluate`'s prompts), on SmolLM2-135M-Instruct: the plan is PEFT's count that the run then
//! reports, made without training or changing anything; the data are the run's own, token by token
//! with the loss's targets marked; both refuse what the run refuses, with its messages.

mod common;

use lora_lab::lab::{Lab, LlmAdapterSettings, LlmData, SftFormat, SftPiece};
use lora_lab::lora::{Adapter, Bias, Init, LoraConfig, Scaling};
use lora_lab::nn::Mlp;
use lora_lab::rng::{Rng, Stream};
use lora_lab::text::Message;
use serde_json::{json, Value};

fn settings(v: Value) -> LlmAdapterSettings {
    serde_json::from_value(v).unwrap()
}

fn jsonl(rows: impl IntoIterator<Item = Value>) -> String {
    rows.into_iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n")
}

fn text_of(pieces: &[SftPiece]) -> String {
    pieces.iter().map(|p| p.text.as_str()).collect()
}

fn trained_text(pieces: &[SftPiece]) -> Vec<&str> {
    pieces.iter().filter(|p| p.trained).map(|p| p.text.as_str()).collect()
}

/// Everything a request could change, to see that it changed nothing.
fn state(lab: &Lab) -> String {
    format!(
        "{:?} {:?} {} {:?}",
        lab.llm_info(),
        lab.llm_adapters().list.len(),
        lab.is_training(),
        lab.llm_adapters().active
    )
}

#[test]
fn a_configs_count_is_the_adapters_count() {
    let mlp = Mlp::new(&mut Rng::new(3, Stream::BaseInit));
    let modules = lora_lab::lora::mlp_modules();
    for (targets, rank, bias) in [
        (vec![2], 4, Bias::None),
        (vec![0, 2], 3, Bias::LoraOnly),
        (vec![1], 8, Bias::All),
        (vec![0, 1, 2], 1, Bias::LoraOnly),
    ] {
        let cfg =
            LoraConfig { targets, rank, alpha: 1.0, scaling: Scaling::Peft, dropout: 0.0, bias, init: Init::Default };
        let adapter = Adapter::new("a", cfg.clone(), &mlp, 1).unwrap();
        assert_eq!(cfg.trainable_params(&modules), adapter.trainable_params(), "{cfg:?}");
    }
}

#[test]
fn the_plan_is_what_the_run_reports_and_changes_nothing() {
    assert!(common::new_lab()
        .llm_plan(&LlmAdapterSettings::default())
        .unwrap_err()
        .to_string()
        .contains("no pretrained model is loaded"));

    let (mut lab, _, _) = common::smol_demo_lab();
    let layers = [0, 5, 29];
    let custom = json!({
        "name": "custom", "data": "demo", "r": 16, "loraAlpha": 8, "layersToTransform": layers,
        "targetModules": ["down_proj", "q_proj", "gate_proj", "o_proj"],
    });
    for s in [json!({ "preset": "seed", "data": "demo" }), custom] {
        let s = settings(s);
        let before = state(&lab);
        let plan = lab.llm_plan(&s).unwrap();
        assert_eq!(state(&lab), before, "the plan changes nothing");
        let start = lab.llm_start_adapter(&s).unwrap();
        assert_eq!(plan.params.report, start.params.report);
        assert_eq!(
            (plan.params.trainable_params, plan.params.total_params),
            (start.params.trainable_params, start.params.total_params)
        );
        assert_eq!(plan.params.trainable_percent.to_bits(), start.params.trainable_percent.to_bits());
        lab.llm_finish(true).unwrap();
        if s.preset.is_some() {
            assert_eq!(
                plan.params.report,
                "trainable params: 2,580,480 || all params: 137,095,488 || trainable%: 1.8823"
            );
            assert_eq!(plan.target_modules.len(), 90);
            assert_eq!(
                plan.target_modules[..4],
                [
                    "model.layers.0.self_attn.q_proj",
                    "model.layers.0.self_attn.k_proj",
                    "model.layers.0.self_attn.v_proj",
                    "model.layers.1.self_attn.q_proj"
                ]
            );
        } else {
            // In the model's order, whatever the order given.
            let want: Vec<String> = layers
                .iter()
                .flat_map(|l| {
                    ["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"]
                        .map(|m| format!("model.layers.{l}.{m}"))
                })
                .collect();
            assert_eq!(plan.target_modules, want);
            // r 16 on q (576→576), o (576→576), gate (576→1536), down (1536→576) of three layers.
            assert_eq!(plan.params.trainable_params, 3 * 16 * (1152 + 1152 + 2112 + 2112));
        }
    }

    // `data` is not read; bad settings are refused with the run's own messages, and nothing changes.
    let garbage = json!({ "jsonl": "not json" });
    assert_eq!(
        lab.llm_plan(&settings(json!({ "data": garbage, "r": 4 }))).unwrap().params.trainable_params,
        30 * 4 * (1152 + 768 + 768)
    );
    let before = state(&lab);
    for bad in [
        json!({ "r": 0 }),
        json!({ "r": 500 }),
        json!({ "targetModules": ["lm_head"] }),
        json!({ "layersToTransform": [30] }),
        json!({ "preset": "huge" }),
        json!({ "name": "" }),
    ] {
        let s = settings(bad.clone());
        let plan = lab.llm_plan(&s).unwrap_err().to_string();
        let start = lab.llm_start_adapter(&s).unwrap_err().to_string();
        assert_eq!(plan, start, "{bad}");
        assert_eq!(state(&lab), before, "{bad}: {plan}");
    }
}

#[test]
fn the_demo_data_are_the_runs_with_the_completion_marked() {
    assert!(common::new_lab()
        .llm_inspect_data(&LlmAdapterSettings::default(), 0)
        .unwrap_err()
        .to_string()
        .contains("no pretrained model is loaded"));

    let (mut lab, train, _) = common::smol_demo_lab();
    let s = settings(json!({ "preset": "seed", "data": "demo" }));
    let before = state(&lab);
    let info = lab.llm_inspect_data(&s, 0).unwrap();
    assert_eq!(state(&lab), before);
    assert_eq!(info.format, SftFormat::PromptCompletion);
    assert_eq!((info.train_rows, info.held_out_rows, info.train_sequences, info.truncated), (400, 100, 400, 0));
    assert!(info.held_out_lines.is_empty());
    assert!(info.trained_tokens > 400 && info.trained_tokens < info.train_tokens / 4, "{info:?}");

    // Row 1 as the model sees it: the conversation through the chat template, the loss on the completion.
    let row: Value = serde_json::from_str(train.lines().next().unwrap()).unwrap();
    let messages = |k: &str| -> Vec<Message> { serde_json::from_value(row[k].clone()).unwrap() };
    let whole = [messages("prompt"), messages("completion")].concat();
    let text = lab.llm_apply_chat_template(&whole, false).unwrap();
    let ex = &info.example;
    assert_eq!((ex.index, ex.line), (0, 1));
    assert_eq!(text_of(&ex.pieces), text);
    assert_eq!(ex.tokens, lab.llm_tokenize(&text).unwrap().len());
    let answer = row["completion"][0]["content"].as_str().unwrap();
    assert_eq!(trained_text(&ex.pieces), [format!("{answer}<|im_end|>\n")]);
    assert_eq!(ex.pieces.len(), 2, "the prompt, then the completion: {:?}", ex.pieces);
    assert_eq!(ex.trained_tokens, lab.llm_tokenize(&format!("{answer}<|im_end|>\n")).unwrap().len());

    let last = lab.llm_inspect_data(&s, 399).unwrap().example;
    assert_eq!((last.index, last.line), (399, 400));
    let err = lab.llm_inspect_data(&s, 400).unwrap_err().to_string();
    assert_eq!(err, "invalid example: 400 is past the last training sequence: there are 400, numbered 0 to 399");

    // The counts are the run's.
    let start = lab.llm_start_adapter(&s).unwrap();
    assert_eq!(
        (info.train_rows, info.held_out_rows, info.train_sequences, info.train_tokens, info.truncated),
        (start.train_rows, start.held_out_rows, start.train_sequences, start.train_tokens, start.truncated)
    );
    lab.llm_finish(true).unwrap();
}

#[test]
fn conversations_text_and_packing_as_the_run_takes_them() {
    let lab = common::smol_lab();
    // Twelve conversations, no held-out file: line 10 is held out, so the tenth training row is line 11.
    let rows = jsonl((1..=12).map(|i| {
        json!({ "messages": [
            { "role": "user", "content": format!("Count to {i}.") },
            { "role": "assistant", "content": format!("Number {i}.") },
        ] })
    }));
    let data = json!({ "jsonl": rows });
    let info = lab.llm_inspect_data(&settings(json!({ "data": data, "assistantOnlyLoss": true })), 9).unwrap();
    assert_eq!(info.format, SftFormat::Messages);
    assert_eq!((info.train_rows, info.held_out_rows, info.held_out_lines.clone()), (11, 1, vec![10]));
    assert_eq!((info.example.index, info.example.line), (9, 11));
    assert_eq!(trained_text(&info.example.pieces), ["Number 11.<|im_end|>\n"]);
    assert!(text_of(&info.example.pieces).contains("<|im_start|>user\nCount to 11.<|im_end|>"));

    // Without assistant-only loss every token but the first is a target.
    let all = lab.llm_inspect_data(&settings(json!({ "data": data })), 9).unwrap();
    assert_eq!(all.example.pieces.iter().map(|p| p.trained).collect::<Vec<_>>(), [false, true]);
    assert_eq!(all.example.trained_tokens, all.example.tokens - 1);
    assert_eq!(all.trained_tokens, all.train_tokens - all.train_sequences);
    assert_eq!(text_of(&all.example.pieces), text_of(&info.example.pieces));

    // Cut to maxSeqLength as training cuts it: the first tokens kept, counted as truncated.
    let cut = lab.llm_inspect_data(&settings(json!({ "data": data, "maxSeqLength": 24 })), 0).unwrap();
    assert_eq!((cut.example.tokens, cut.truncated), (24, 12));
    assert!(text_of(&all.example.pieces).len() > text_of(&cut.example.pieces).len());

    // Text rows, packed into blocks of 16: the first block starts at line 1; EOS ends each row.
    let text = json!({ "jsonl": jsonl((1..=30).map(|i| json!({ "text": format!("Row {i} of the file.") }))) });
    let wrapped = json!({ "data": text, "packing": true, "packingStrategy": "wrapped", "maxSeqLength": 16 });
    let packed = lab.llm_inspect_data(&settings(wrapped), 0).unwrap();
    assert_eq!(packed.format, SftFormat::Text);
    assert_eq!((packed.train_rows, packed.held_out_lines.clone()), (27, vec![10, 20, 30]));
    assert_eq!(packed.train_sequences, packed.train_tokens.div_ceil(16));
    assert_eq!((packed.example.tokens, packed.example.line), (16, 1));
    assert!(
        text_of(&packed.example.pieces).starts_with("Row 1 of the file.<|im_end|>Row 2"),
        "{:?}",
        packed.example.pieces
    );
    assert_eq!(packed.example.lengths, [16]);
    // That is TRL's "wrapped" strategy; its default, "bfd", keeps the rows whole (7 or 8 tokens here), two
    // in a block of 16, each on its own: the block holds whole rows, each one's first token untrained.
    let default = json!({ "data": text, "packing": true, "maxSeqLength": 16 });
    let named = json!({ "data": text, "packing": true, "packingStrategy": "bfd", "maxSeqLength": 16 });
    let n = lab.llm_inspect_data(&settings(default.clone()), 0).unwrap().train_sequences;
    let all: Vec<_> = (0..n).map(|i| lab.llm_inspect_data(&settings(default.clone()), i).unwrap()).collect();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(lab.llm_inspect_data(&settings(named.clone()), i).unwrap().example.lengths, e.example.lengths);
    }
    // 9-token rows ("Row 10 of the file.<|im_end|>") alone, 8-token ones two to a block of 16
    let lengths: Vec<Vec<usize>> = all.iter().map(|e| e.example.lengths.clone()).collect();
    assert_eq!(lengths.iter().filter(|l| **l == [9]).count(), 18, "{lengths:?}");
    assert_eq!(lengths.iter().filter(|l| **l == [8, 8]).count(), 4, "{lengths:?}");
    assert_eq!(lengths.iter().map(|l| l.len()).sum::<usize>(), 27, "every row once");
    let bfd = all.into_iter().find(|e| e.example.lengths.len() == 2).unwrap();
    assert!(bfd.example.lengths.iter().sum::<usize>() <= 16);
    assert_eq!(bfd.train_tokens, packed.train_tokens, "no token lost");
    assert_eq!(bfd.trained_tokens, bfd.train_tokens - 27, "every token but each row's first");
    let s = text_of(&bfd.example.pieces);
    assert!(
        s.starts_with("Row ") && s.ends_with("of the file.<|im_end|>") && s.matches("<|im_end|>").count() == 2,
        "{s}"
    );
    let err = lab
        .llm_inspect_data(&settings(json!({ "data": text, "packing": true, "packingStrategy": "bfd_split" })), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"bfd_split\" is not one of \"bfd\""), "{err}");
}

#[test]
fn bad_data_are_refused_with_the_runs_messages() {
    let (mut lab, train, _) = common::smol_demo_lab();
    let first = train.lines().next().unwrap();
    let before = state(&lab);
    for data in [
        json!({ "jsonl": "{\"prompt\": \"a\"}\n" }),
        json!({ "jsonl": format!("{first}\nnot json\n") }),
        json!({ "jsonl": first }),
        json!({ "jsonl": "{\"text\": \"a b c\"}\n{\"text\": \"d\"}", "testJsonl": "{\"text\": \"e\"}" }),
        json!("pokemon"),
    ] {
        let s = settings(json!({ "data": data, "assistantOnlyLoss": data.get("testJsonl").is_some() }));
        let inspect = lab.llm_inspect_data(&s, 0).unwrap_err().to_string();
        let start = lab.llm_start_adapter(&s).unwrap_err().to_string();
        assert_eq!(inspect, start, "{data}");
        assert_eq!(state(&lab), before, "{inspect}");
    }
    let err = lab.llm_inspect_data(&settings(json!({ "data": { "jsonl": "{\"prompt\": \"a\"}" } })), 0).unwrap_err();
    assert_eq!(err.to_string(), "train.jsonl: line 1: \"completion\" is missing");
}

#[test]
fn the_evaluation_gives_each_question_its_prompt() {
    let mut lab = common::smol_lab();
    // A conversation's prompt reads as its last user message, after a system message.
    let conv = |q: &str, a: &str| {
        json!({
            "prompt": [{ "role": "system", "content": "Answer in one word." }, { "role": "user", "content": q }],
            "completion": [{ "role": "assistant", "content": a }],
        })
    };
    let data = LlmData::Jsonl {
        jsonl: jsonl([conv("Capital of France?", "Paris"), conv("Capital of Italy?", "Rome")]),
        test_jsonl: Some(jsonl([conv("Capital of Spain?", "Madrid"), conv("Capital of Japan?", "Tokyo")])),
    };
    let ev = lab.llm_evaluate(Some(&data)).unwrap();
    assert_eq!(ev.prompts, ["Capital of Spain?", "Capital of Japan?"]);
    assert_eq!(ev.expected, ["Madrid", "Tokyo"]);
    // A string prompt reads as itself.
    let text = |p: &str, c: &str| json!({ "prompt": p, "completion": c });
    let data =
        LlmData::Jsonl { jsonl: jsonl([text("2 + 2 =", " 4")]), test_jsonl: Some(jsonl([text("3 + 3 =", " 6")])) };
    let ev = lab.llm_evaluate(Some(&data)).unwrap();
    assert_eq!((ev.prompts, ev.expected), (vec!["3 + 3 =".to_string()], vec!["6".to_string()]));
}
