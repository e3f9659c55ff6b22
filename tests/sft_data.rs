#![cfg(not(target_arch = "wasm32"))]
//! TRL's SFT data (`text::sft`): JSONL rows parsed as TRL takes them, encoded with SmolLM2's tokenizer
//! and chat template exactly as TRL 1.16's `SFTTrainer._prepare_dataset` does — the ids and the loss
//! mask of `tests/fixtures/smol/sft.json`, made by `make_sft_fixture.py` beside it with TRL's own code —
//! and packed as its "wrapped" strategy packs; the errors each bad file gets, the limits, truncation.

mod common;

use lora_lab::lab::Pretrained;
use lora_lab::text::{
    encode_sft, pack_sft, pack_sft_bfd, parse_sft_jsonl, Bpe, ChatTemplate, Content, Message, SftExample, SftKind,
    SftRow, SftTokenizer, MAX_ASSISTANT_ONLY_MESSAGES, MAX_SFT_BYTES, MAX_SFT_LINE_BYTES, MAX_SFT_ROWS, PACK_MAP_BATCH,
};
use lora_lab::LabError;
use serde_json::{json, Value};
use std::sync::OnceLock;

const FILE: &str = "train.jsonl";

fn smol() -> &'static Pretrained {
    static MODEL: OnceLock<Pretrained> = OnceLock::new();
    MODEL.get_or_init(|| Pretrained::from_gguf(common::smol_gguf().to_vec(), "smol.gguf", "").unwrap())
}

fn smol_tok() -> SftTokenizer<'static> {
    let p = smol();
    let eos = p.model.cfg.eos;
    SftTokenizer {
        bpe: &p.tokenizer,
        template: p.template.as_ref(),
        bos: p.add_bos.then_some(p.model.cfg.bos),
        eos,
        eos_text: p.tokenizer.token_text(eos).unwrap(),
    }
}

fn parse(text: &str) -> Vec<SftRow> {
    parse_sft_jsonl(text.as_bytes(), FILE).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The error `parse_sft_jsonl` gives, checked to be a file error naming FILE.
fn parse_err(bytes: &[u8]) -> String {
    match parse_sft_jsonl(bytes, FILE) {
        Ok(rows) => panic!("{:?} parsed: {rows:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)])),
        Err(LabError::BadFile { file, reason }) => {
            assert_eq!(file, FILE);
            reason
        }
        Err(other) => panic!("not a file error: {other:?}"),
    }
}

fn assert_parse_err(text: &str, expected: &str) {
    let reason = parse_err(text.as_bytes());
    assert!(reason.contains(expected), "{text:?}\n  gave: {reason}\n  expected: {expected}");
}

// ---------- against TRL ----------

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smol/sft.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

fn labels_of(v: &Value) -> Vec<bool> {
    v.as_str().unwrap().bytes().map(|b| b == b'1').collect()
}

/// Every case of sft.json: the same ids; the same labels but the first token (never predicted);
/// `truncated` when TRL's untruncated example was longer than `max_len`.
#[test]
fn matches_trl_sft_trainer() {
    let fx = fixture();
    let tok = smol_tok();
    assert_eq!(tok.eos_text, fx["eos_text"].as_str().unwrap());
    assert_eq!(tok.bos, None, "SmolLM2's tokenizer adds no BOS");
    let mut names = Vec::new();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rows = parse(case["jsonl"].as_str().unwrap());
        let assistant_only = case["assistant_only"].as_bool().unwrap();
        let expected = case["examples"].as_array().unwrap();
        if let Some(block) = case["pack"].as_u64() {
            match case["strategy"].as_str() {
                Some("bfd") => check_bfd(name, &rows, &tok, assistant_only, block as usize, expected),
                _ => check_packed(name, &rows, &tok, assistant_only, block as usize, expected),
            }
            names.push(name);
            continue;
        }
        let max_len = case["max_len"].as_u64().unwrap() as usize;
        let got = encode_sft(&rows, &tok, max_len, assistant_only).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.len(), expected.len(), "{name}");
        for (k, (g, e)) in got.iter().zip(expected).enumerate() {
            let (ids, labels) = (ids_of(&e["ids"]), labels_of(&e["labels"]));
            assert_eq!(g.line, rows[k].line);
            assert_eq!(g.ids, ids, "{name}, example {k}: ids");
            assert!(!g.trained[0], "{name}, example {k}: trained[0]");
            assert_eq!(g.trained[1..], labels[1..], "{name}, example {k}: loss mask");
            let full_len = e["full_len"].as_u64().unwrap() as usize;
            assert_eq!(g.truncated, full_len > max_len, "{name}, example {k}: truncated");
        }
        names.push(name);
    }
    assert_eq!(
        names,
        [
            "demo",
            "plain",
            "text",
            "text-truncated",
            "messages",
            "messages-truncated",
            "messages-assistant-only",
            "demo-assistant-only",
            "demo-packed",
            "text-packed",
            "demo-bfd",
            "text-bfd",
            "messages-bfd"
        ]
    );
}

/// TRL's best-fit-decreasing packing: the same rows, each of the same examples in the same order
/// (`seq_lengths`), and the same labels but at each example's first token, which TRL's padding-free
/// collator masks (position 0) and `encode_sft` never trains.
fn check_bfd(name: &str, rows: &[SftRow], tok: &SftTokenizer, ao: bool, block: usize, expected: &[Value]) {
    let examples = encode_sft(rows, tok, usize::MAX, ao).unwrap();
    let packed = pack_sft_bfd(&examples, block);
    assert_eq!(packed.len(), expected.len(), "{name}: rows");
    let mut cut = 0;
    for (r, (g, e)) in packed.iter().zip(expected).enumerate() {
        let (ids, labels) = (ids_of(&e["ids"]), labels_of(&e["labels"]));
        let lengths: Vec<usize> = ids_of(&e["seq_lengths"]).into_iter().map(|n| n as usize).collect();
        assert_eq!(g.ids, ids, "{name}, row {r}: ids");
        assert_eq!(g.lengths, lengths, "{name}, row {r}: the examples it packs");
        let mut starts = std::collections::HashSet::new();
        lengths.iter().fold(0, |at, n| {
            starts.insert(at);
            at + n
        });
        for (i, &label) in labels.iter().enumerate() {
            assert_eq!(g.trained[i], label && !starts.contains(&i), "{name}, row {r}, token {i}: loss mask");
        }
        cut += usize::from(g.truncated);
    }
    // Every example is in one row, whole or cut to the block.
    let kept: usize = packed.iter().map(|r| r.lengths.len()).sum();
    assert_eq!(kept, examples.len(), "{name}");
    let longer = examples.iter().filter(|e| e.ids.len() > block).count();
    assert_eq!(cut > 0, longer > 0, "{name}: rows with a cut example");
}

/// TRL's wrapped packing: the same rows of ids; the same labels but at each row's first token and at
/// the first token of an example inside a row, which TRL labels when the example trains its first
/// token (text rows) and `pack_sft` never does (see its documentation).
fn check_packed(name: &str, rows: &[SftRow], tok: &SftTokenizer, ao: bool, block: usize, expected: &[Value]) {
    let examples = encode_sft(rows, tok, usize::MAX, ao).unwrap();
    let packed = pack_sft(&examples, block);
    assert_eq!(packed.len(), expected.len(), "{name}: rows");
    // Where each example starts in the stream of its map batch.
    let mut seams = std::collections::HashSet::new();
    let mut batch_row = 0;
    for batch in examples.chunks(PACK_MAP_BATCH) {
        let mut at = 0;
        for e in batch {
            if at % block != 0 {
                seams.insert((batch_row + at / block, at % block));
            }
            at += e.ids.len();
        }
        batch_row += at.div_ceil(block);
    }
    let mut seam_labels = 0;
    for (r, (g, e)) in packed.iter().zip(expected).enumerate() {
        let (ids, labels) = (ids_of(&e["ids"]), labels_of(&e["labels"]));
        assert_eq!(g.ids, ids, "{name}, row {r}: ids");
        assert!(!g.trained[0]);
        for (i, &label) in labels.iter().enumerate().skip(1) {
            if seams.contains(&(r, i)) {
                seam_labels += usize::from(label);
                assert!(!g.trained[i], "{name}, row {r}: a seam at {i} is trained");
            } else {
                assert_eq!(g.trained[i], label, "{name}, row {r}, token {i}: loss mask");
            }
        }
    }
    let text_rows = matches!(rows[0].kind, SftKind::Text(_));
    assert_eq!(seam_labels > 0, text_rows, "{name}: TRL labels the seams of text rows only");
}

// ---------- encoding: SmolLM2 ----------

/// The text of each run of trained tokens.
fn trained_spans(bpe: &Bpe, ex: &SftExample) -> Vec<String> {
    let (mut spans, mut run) = (Vec::new(), Vec::new());
    for (&id, &t) in ex.ids.iter().zip(&ex.trained) {
        if t {
            run.push(id);
        } else if !run.is_empty() {
            spans.push(bpe.decode(&std::mem::take(&mut run)));
        }
    }
    if !run.is_empty() {
        spans.push(bpe.decode(&run));
    }
    spans
}

/// With assistant-only loss, the trained tokens decode to each assistant message's content and
/// `<|im_end|>\n`, in order — also where a byte SmolLM2 has no token for (U+0004) is dropped from the
/// text, so token offsets cannot be read off the tokens and the prefixes are encoded instead.
#[test]
fn assistant_only_trains_the_assistant_turns() {
    let tok = smol_tok();
    for extra in ["", "\u{4}", "\u{4}\u{4} x\u{4}"] {
        let rows = parse(
            &json!({"messages": [
                {"role": "assistant", "content": format!("Hi{extra}!")},
                {"role": "user", "content": format!("Two{extra} words.")},
                {"role": "assistant", "content": "\n\nFirst second."},
                {"role": "user", "content": "Thanks"},
                {"role": "assistant", "content": format!("You're welcome{extra}")},
            ]})
            .to_string(),
        );
        let ex = &encode_sft(&rows, &tok, 4096, true).unwrap()[0];
        let spans = trained_spans(tok.bpe, ex);
        let clean = extra.replace('\u{4}', "");
        // "\n\n" after "assistant\n" is one token "\n\n\n", which overlaps the span: marked, as
        // transformers marks a token that overlaps a {% generation %} span.
        assert_eq!(
            spans,
            [
                format!("Hi{clean}!<|im_end|>\n"),
                "\n\n\nFirst second.<|im_end|>\n".to_string(),
                format!("You're welcome{clean}<|im_end|>\n")
            ],
            "{extra:?}"
        );
    }
}

#[test]
fn eos_and_prompt_completion_strings() {
    let tok = smol_tok();
    let bpe = tok.bpe;
    let eos = tok.eos;
    let rows =
        parse(concat!(r#"{"text": "a b"}"#, "\n", r#"{"text": "c<|im_end|>"}"#, "\n", r#"{"text": "d<|im_end|> "}"#));
    let ex = encode_sft(&rows, &tok, 100, false).unwrap();
    assert_eq!(ex[0].ids, [bpe.encode("a b"), vec![eos]].concat());
    assert_eq!(ex[1].ids, [bpe.encode("c"), vec![eos]].concat(), "EOS is not added twice");
    assert_eq!(ex[2].ids, [bpe.encode("d<|im_end|> "), vec![eos]].concat());
    assert!(ex.iter().all(|e| !e.trained[0] && e.trained[1..].iter().all(|&t| t)));
    // A BOS-adding tokenizer: BOS before plain strings.
    let with_bos = SftTokenizer { bos: Some(1), ..tok };
    let ex = encode_sft(&rows[..1], &with_bos, 100, false).unwrap();
    assert_eq!(ex[0].ids, [vec![1], bpe.encode("a b"), vec![eos]].concat());
    let rows = parse(r#"{"prompt": "Q: 1+1?", "completion": " A: 2", "id": 3}"#);
    let ex = &encode_sft(&rows, &with_bos, 100, false).unwrap()[0];
    let prompt = bpe.encode("Q: 1+1?").len();
    assert_eq!(ex.ids, [vec![1], bpe.encode("Q: 1+1? A: 2"), vec![eos]].concat());
    let trained: Vec<usize> = (0..ex.ids.len()).filter(|&i| ex.trained[i]).collect();
    assert_eq!(trained, (1 + prompt..ex.ids.len()).collect::<Vec<_>>());
}

/// Conversational rows need a chat template; assistant-only loss needs conversational rows; the EOS
/// text must encode to the EOS id; max_len at least 2.
#[test]
fn encode_refusals() {
    let tok = smol_tok();
    let conv = parse(r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#);
    let no_template = SftTokenizer { template: None, ..tok };
    let e = encode_sft(&conv, &no_template, 64, false).unwrap_err().to_string();
    assert!(
        e.contains("line 1: conversational rows go through the model's chat template, and this model has none"),
        "{e}"
    );
    let plain = parse("\n\n{\"text\": \"hello\"}");
    assert!(encode_sft(&plain, &no_template, 64, false).is_ok());
    let e = encode_sft(&plain, &tok, 64, true).unwrap_err();
    assert!(matches!(e, LabError::BadSetting { .. }), "{e:?}");
    assert!(e.to_string().contains("line 3: the rows are not conversational"), "{e}");
    let wrong_eos = SftTokenizer { eos: 0, ..tok };
    let e = encode_sft(&plain, &wrong_eos, 64, false).unwrap_err().to_string();
    assert!(e.contains("the EOS text \"<|im_end|>\" encodes to [2], not to the EOS id 0"), "{e}");
    for n in [0, 1] {
        let e = encode_sft(&plain, &tok, n, false).unwrap_err().to_string();
        assert!(e.contains("maximum length") && e.contains("at least 2"), "{e}");
    }
    // A user turn alone trains nothing with assistant-only loss.
    let rows = parse(concat!(
        r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#,
        "\n",
        r#"{"messages": [{"role": "user", "content": "only me"}]}"#
    ));
    let e = encode_sft(&rows, &tok, 64, true).unwrap_err().to_string();
    assert_eq!(e, "line 2: no assistant token to train on (assistant-only loss)");
    let many: Vec<Value> = (0..=MAX_ASSISTANT_ONLY_MESSAGES)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": "x"}))
        .collect();
    let rows = parse(&json!({ "messages": many }).to_string());
    let e = encode_sft(&rows, &tok, 64, true).unwrap_err().to_string();
    assert!(e.contains("line 1: 1001 messages; assistant-only loss takes at most 1000 per row"), "{e}");
    assert!(encode_sft(&rows, &tok, 64, false).is_ok(), "the limit is for assistant-only loss");
    // Exactly the limit: 500 assistant turns of a 1,000-message conversation.
    let most: Vec<Value> = (0..MAX_ASSISTANT_ONLY_MESSAGES)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}")}))
        .collect();
    let rows = parse(&json!({ "messages": most }).to_string());
    let start = std::time::Instant::now();
    let ex = &encode_sft(&rows, &tok, usize::MAX, true).unwrap()[0];
    eprintln!("assistant-only loss on {MAX_ASSISTANT_ONLY_MESSAGES} messages: {:.2} s", start.elapsed().as_secs_f64());
    let all = &encode_sft(&rows, &tok, usize::MAX, false).unwrap()[0];
    assert_eq!(ex.ids, all.ids);
    let expected: Vec<String> =
        (1..MAX_ASSISTANT_ONLY_MESSAGES).step_by(2).map(|i| format!("turn {i}<|im_end|>\n")).collect();
    assert_eq!(trained_spans(tok.bpe, ex), expected);
    // A template that raises: the line and the template's message.
    let strict = ChatTemplate::new(
        "{% if messages[0]['role'] != 'system' %}{{ raise_exception('needs a system message') }}{% endif %}x",
        "",
        "<|im_end|>",
        "tokenizer.chat_template",
    )
    .unwrap();
    let raising = SftTokenizer { template: Some(&strict), ..tok };
    let e = encode_sft(&conv, &raising, 64, false).unwrap_err().to_string();
    assert_eq!(e, "line 1: tokenizer.chat_template: chat template: needs a system message");
}

/// Truncation keeps the first max_len tokens and says so; an example left with nothing to train on,
/// or too short to have a prediction, is an error naming its line.
#[test]
fn truncation() {
    let tok = smol_tok();
    let rows = parse(concat!(r#"{"text": "one two three four five six"}"#, "\n\n", r#"{"text": "seven"}"#));
    let full = encode_sft(&rows, &tok, 1000, false).unwrap();
    let cut = encode_sft(&rows, &tok, 4, false).unwrap();
    assert_eq!((full[0].truncated, cut[0].truncated, cut[1].truncated), (false, true, false));
    assert_eq!(cut[0].ids, full[0].ids[..4]);
    assert_eq!(cut[0].trained, [false, true, true, true]);
    assert_eq!(cut[1], full[1]);
    assert_eq!(cut[1].line, 3);
    let truncated = cut.iter().filter(|e| e.truncated).count();
    assert_eq!(truncated, 1);

    // The demo's prompt alone is ~50 tokens: truncated to 16, nothing of the completion is left.
    let demo = parse(
        &json!({"prompt": [{"role": "user", "content": "Is \"Bab\" a woman's first name or an English word?"}],
                "completion": [{"role": "assistant", "content": "word"}]})
        .to_string(),
    );
    let e = encode_sft(&[demo[0].clone(), SftRow { line: 5, ..demo[0].clone() }], &tok, 16, false);
    assert_eq!(e.unwrap_err().to_string(), "line 1: nothing to train on after truncation to 16 tokens");
    let demo_full = &encode_sft(&demo, &tok, 1024, false).unwrap()[0];
    let first = demo_full.trained.iter().position(|&t| t).unwrap();
    let just = encode_sft(&demo, &tok, first + 1, false).unwrap();
    assert!(just[0].truncated && just[0].trained.iter().filter(|&&t| t).count() == 1);

    // Fewer than 2 tokens: "" + EOS is one token.
    let rows = parse(r#"{"text": ""}"#);
    assert_eq!(encode_sft(&rows, &tok, 64, false).unwrap_err().to_string(), "line 1: 1 token: nothing to train on");
}

// ---------- packing ----------

fn example(line: usize, ids: std::ops::Range<u32>, trained: &[bool], truncated: bool) -> SftExample {
    SftExample { line, ids: ids.collect(), trained: trained.to_vec(), truncated, lengths: Vec::new() }
}

#[test]
fn bfd_packing_puts_whole_examples_where_they_fit_best() {
    let f = false;
    // lengths 5, 3, 3, 2, 1 and a 9 cut to the block of 6; lines say which is which
    let examples = [
        example(1, 0..3, &[f; 3], false),
        example(2, 10..15, &[f; 5], false),
        example(3, 20..22, &[f; 2], false),
        example(4, 30..39, &[f; 9], false),
        example(5, 40..43, &[f; 3], false),
        example(6, 50..51, &[f; 1], false),
    ];
    let rows = pack_sft_bfd(&examples, 6);
    // longest first: 9→6 opens row 0 (full); 5 opens row 1 (1 free); 3 (line 1) opens row 2 (3 free);
    // 3 (line 5) fills row 2; 2 opens row 3 (4 free); 1 takes row 1's last place, the smallest that fits
    let lines: Vec<Vec<u32>> =
        rows.iter().map(|r| r.ids.iter().filter(|&&i| i % 10 == 0).map(|&i| i / 10 + 1).collect()).collect();
    assert_eq!(lines, [vec![4], vec![2, 6], vec![1, 5], vec![3]]);
    let lengths: Vec<Vec<usize>> = rows.iter().map(|r| r.lengths.clone()).collect();
    assert_eq!(lengths, [vec![6], vec![5, 1], vec![3, 3], vec![2]]);
    assert_eq!(rows[0].ids, (30..36).collect::<Vec<_>>());
    assert_eq!(
        rows.iter().map(|r| (r.line, r.truncated)).collect::<Vec<_>>(),
        [(4, true), (2, false), (1, false), (3, false)]
    );
}

#[test]
fn packing_wraps_and_keeps_the_tail() {
    let (t, f) = (true, false);
    let examples = [
        example(1, 0..5, &[f, f, t, t, t], false),
        example(2, 10..13, &[f, t, t], true),
        example(4, 20..24, &[f, f, f, t], false),
    ];
    let rows = pack_sft(&examples, 4);
    let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.ids.clone()).collect();
    assert_eq!(ids, [vec![0, 1, 2, 3], vec![4, 10, 11, 12], vec![20, 21, 22, 23]]);
    let masks: Vec<Vec<bool>> = rows.iter().map(|r| r.trained.clone()).collect();
    assert_eq!(masks, [vec![f, f, t, t], vec![f, f, t, t], vec![f, f, f, t]]);
    let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, [1, 1, 4]);
    let truncated: Vec<bool> = rows.iter().map(|r| r.truncated).collect();
    assert_eq!(truncated, [false, true, false]);

    // The short tail is kept as a shorter last row; every token comes through once, in order.
    let rows = pack_sft(&examples, 5);
    let lens: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
    assert_eq!(lens, [5, 5, 2]);
    assert_eq!(rows[2].ids, [22, 23]);
    assert_eq!(rows[2].trained, [f, t]);
    assert_eq!(rows[1].line, 2);
    let all: Vec<u32> = rows.iter().flat_map(|r| r.ids.clone()).collect();
    assert_eq!(all, examples.iter().flat_map(|e| e.ids.clone()).collect::<Vec<_>>());
    // A block longer than everything: one row. Block 0 is taken as 1.
    assert_eq!(pack_sft(&examples, 1000).len(), 1);
    assert_eq!(pack_sft(&examples, 0).len(), 12);
    assert!(pack_sft(&[], 8).is_empty());

    // Each map batch of 1,000 examples is packed on its own, with its own tail.
    let many: Vec<SftExample> = (0..2_001).map(|i| example(i + 1, 0..3, &[f, t, t], false)).collect();
    let rows = pack_sft(&many, 7);
    let per_batch = (3_000usize).div_ceil(7);
    assert_eq!(rows.len(), 2 * per_batch + 1);
    assert_eq!(rows[per_batch - 1].ids.len(), 3_000 % 7);
    assert_eq!(rows[per_batch].line, 1_001);
    assert_eq!(rows[2 * per_batch].ids.len(), 3);
    assert_eq!(rows.iter().map(|r| r.ids.len()).sum::<usize>(), 2_001 * 3);
}

// ---------- parsing ----------

fn msg(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

#[test]
fn parses_each_form() {
    let rows = parse(concat!(
        "\u{feff}",
        r#"{"messages": [{"role": "user", "content": "hi", "name": "x"}, {"role": "assistant", "content": "yo"}], "id": 1}"#,
        "\r\n",
        "   \t\r\n",
        r#"{"messages": [{"role": "system", "content": ""}]}"#,
        "\n"
    ));
    assert_eq!(
        rows,
        [
            SftRow { line: 1, kind: SftKind::Messages(vec![msg("user", "hi"), msg("assistant", "yo")]) },
            SftRow { line: 3, kind: SftKind::Messages(vec![msg("system", "")]) },
        ]
    );
    let rows =
        parse("{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"completion\": \"d\", \"prompt\": \"c\", \"text\": 5}");
    assert_eq!(
        rows[1],
        SftRow {
            line: 2,
            kind: SftKind::PromptCompletion {
                prompt: Content::Text("c".into()),
                completion: Content::Text("d".into())
            }
        }
    );
    let rows = parse(
        r#"{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}"#,
    );
    assert_eq!(
        rows[0].kind,
        SftKind::PromptCompletion {
            prompt: Content::Messages(vec![msg("user", "q")]),
            completion: Content::Messages(vec![msg("assistant", "a")])
        }
    );
    // "prompt" comes first, then "messages", then "text", as TRL's tokenize_fn reads a row.
    let rows = parse(r#"{"text": "t", "messages": [{"role": "user", "content": "m"}]}"#);
    assert!(matches!(rows[0].kind, SftKind::Messages(_)));
    let rows = parse(r#"{"text": "t", "completion": "c"}"#);
    assert_eq!(rows[0].kind, SftKind::Text("t".into()), "no \"prompt\": not a prompt-completion row");
    assert_eq!(parse(r#"{"text": "é 🦀\n"}"#)[0].kind, SftKind::Text("é 🦀\n".into()));
}

#[test]
fn parse_errors_name_the_line_and_the_fault() {
    let ok = r#"{"text": "fine"}"#;
    let cases: &[(&str, &str)] = &[
        (r#"{"prompt": "p"}"#, r#"line 2: "completion" is missing"#),
        (r#"{"completion": "c"}"#, r#"line 2: "prompt" is missing"#),
        ("{\"text\": \"a\",}", "line 2: not JSON (trailing comma at column 14)"),
        ("{\"text\": ", "line 2: not JSON (EOF while parsing a value at column 9)"),
        ("{\"text\": tru}", "line 2: not JSON (expected ident at column 13)"),
        (r#"{"text": "a"} {"text": "b"}"#, "line 2: not JSON (trailing characters at column 15)"),
        (
            "[1, 2]",
            r#"line 2: a row has "text", "messages" or "prompt"+"completion", as a JSON object; this line is a list"#,
        ),
        ("\"text\"", "this line is a string"),
        (r#"{"messages": "hi"}"#, r#"line 2: "messages" must be a list of {"role", "content"} objects, not a string"#),
        (
            r#"{"messages": ["hi"]}"#,
            r#"line 2: "messages" must be a list of {"role", "content"} objects; message 1 is a string"#,
        ),
        (r#"{"messages": []}"#, r#"line 2: "messages" is an empty list"#),
        (
            r#"{"messages": [{"role": "user", "content": "a"}, {"role": 1, "content": "b"}]}"#,
            r#"line 2: message 2 of "messages": "role" must be a string, not a number"#,
        ),
        (r#"{"messages": [{"content": "b"}]}"#, r#"line 2: message 1 of "messages": "role" is missing"#),
        (
            r#"{"messages": [{"role": "user", "content": null}]}"#,
            r#"line 2: message 1 of "messages": "content" must be a string, not null"#,
        ),
        (
            r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}"#,
            r#""content" must be a string, not a list"#,
        ),
        (
            r#"{"message": [], "txt": "a"}"#,
            r#"line 2: a row has "text", "messages" or "prompt"+"completion"; this one has "message", "txt""#,
        ),
        ("{}", "this one has no key"),
        (
            r#"{"prompt": "p", "completion": [{"role": "assistant", "content": "c"}]}"#,
            "line 2: the prompt is a string and the completion a message list: give both the same form",
        ),
        (
            r#"{"prompt": [{"role": "user", "content": "p"}], "completion": "c"}"#,
            "line 2: the prompt is a message list and the completion a string: give both the same form",
        ),
        (
            r#"{"prompt": 3, "completion": "c"}"#,
            r#"line 2: "prompt" must be a string or a list of {"role", "content"} objects, not a number"#,
        ),
        (
            r#"{"prompt": "p", "completion": null}"#,
            r#""completion" must be a string or a list of {"role", "content"} objects, not null"#,
        ),
        (r#"{"prompt": [], "completion": []}"#, r#"line 2: "prompt" is an empty list"#),
        (r#"{"text": 5}"#, r#"line 2: "text" must be a string, not a number"#),
        (r#"{"text": {"a": 1}}"#, r#""text" must be a string, not an object"#),
    ];
    for (bad, expected) in cases {
        assert_parse_err(&format!("{ok}\n{bad}\n{ok}\n"), expected);
    }
    // Deep nesting is an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_parse_err(&deep, "line 1: not JSON (recursion limit exceeded");
}

#[test]
fn one_form_per_file() {
    let msgs = r#"{"messages": [{"role": "user", "content": "a"}]}"#;
    let conv_pc =
        r#"{"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]}"#;
    assert_parse_err(
        &format!("\n{msgs}\n{msgs}\n\n{{\"text\": \"a\"}}\n"),
        r#"line 5: a {"text": "..."} row, but line 2 is a {"messages": [...]} row: every row must have the same form (TRL's dataset has one schema)"#,
    );
    assert_parse_err(
        &format!("{conv_pc}\n{{\"prompt\": \"a\", \"completion\": \"b\"}}"),
        r#"line 2: a {"prompt": "...", "completion": "..."} row, but line 1 is a {"prompt": [...], "completion": [...]} row"#,
    );
    assert_parse_err(
        &format!("{conv_pc}\n{msgs}"),
        r#"line 2: a {"messages": [...]} row, but line 1 is a {"prompt": [...]"#,
    );
}

#[test]
fn not_utf8_empty_and_all_or_nothing() {
    let mut bytes = b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"caf".to_vec();
    bytes.extend_from_slice(&[0xE9, b'"', b'}', b'\n']);
    assert_eq!(parse_err(&bytes), "line 3: not UTF-8 (byte 14 of the line)");
    // One bad line among good ones: nothing is returned.
    let mut good: String = (0..50).map(|i| format!("{{\"text\": \"row {i}\"}}\n")).collect();
    assert_eq!(parse(&good).len(), 50);
    good.push_str("{\"text\": 1}\n");
    assert!(parse_err(good.as_bytes()).starts_with("line 51: "));
    for empty in ["", "\n", " \n\t\n\r\n", "\u{feff}"] {
        assert_eq!(parse_err(empty.as_bytes()), "no rows");
    }
    // A lone byte order mark inside the file is not JSON whitespace.
    assert!(parse_err("{\"text\": \"a\"}\n\u{feff}{\"text\": \"b\"}".as_bytes()).starts_with("line 2: not JSON"));
}

#[test]
fn limits() {
    // The file: 16 MiB and a byte.
    let mut big = vec![b'\n'; MAX_SFT_BYTES + 1];
    big[..13].copy_from_slice(br#"{"text": "a"}"#);
    assert_eq!(parse_err(&big), "16777217 bytes; the most is 16777216 (16 MiB)");
    big.pop();
    assert_eq!(parse_sft_jsonl(&big, FILE).unwrap().len(), 1);
    // A line: 256 KiB and a byte (counted without its newline).
    let line = |n: usize| format!("{{\"text\": \"{}\"}}", "x".repeat(n - 12));
    assert_eq!(line(MAX_SFT_LINE_BYTES).len(), MAX_SFT_LINE_BYTES);
    assert_eq!(parse(&format!("{}\n", line(MAX_SFT_LINE_BYTES))).len(), 1);
    assert_eq!(
        parse_err(format!("{}\n{}\n", line(20), line(MAX_SFT_LINE_BYTES + 1)).as_bytes()),
        "line 2: 262145 bytes; the most per line is 262144 (256 KiB)"
    );
    // Rows: 100,000, blank lines not counted.
    let mut rows = "{\"text\": \"a\"}\n\n".repeat(MAX_SFT_ROWS);
    assert_eq!(parse(&rows).len(), MAX_SFT_ROWS);
    rows.push_str("{\"text\": \"a\"}\n");
    assert_eq!(parse_err(rows.as_bytes()), "line 200001: more than 100000 rows; the most is 100000");
}

// ---------- a tiny tokenizer, as the fuzz target uses ----------

/// A byte-level BPE of a few merges and ChatML's special tokens, with no token for byte 0x04.
fn tiny_bpe() -> Bpe {
    let chars = lora_lab::text::byte_chars();
    let mut vocab = serde_json::Map::new();
    for (b, c) in chars.iter().enumerate() {
        if b != 4 {
            let id = vocab.len();
            vocab.insert(c.to_string(), json!(id));
        }
    }
    let merges = ["h i", "Ġ t", "Ġt h", "a s", "i s"];
    for m in merges {
        let id = vocab.len();
        vocab.insert(m.replace(' ', ""), json!(id));
    }
    let n = vocab.len();
    let special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let added: Vec<Value> =
        special.iter().enumerate().map(|(i, t)| json!({"id": n + i, "content": t, "special": true})).collect();
    for (i, t) in special.iter().enumerate() {
        vocab.insert(t.to_string(), json!(n + i));
    }
    let tj = json!({
        "added_tokens": added,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": merges}
    });
    Bpe::from_tokenizer_json(&tj.to_string(), "tokenizer.json").unwrap()
}

#[test]
fn tiny_tokenizer_assistant_spans() {
    let bpe = tiny_bpe();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smol/chat_template_cases.json");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let template = ChatTemplate::new(cases["template"].as_str().unwrap(), "", "<|im_end|>", "t").unwrap();
    let eos = bpe.id_of("<|im_end|>").unwrap();
    let tok = SftTokenizer { bpe: &bpe, template: Some(&template), bos: None, eos, eos_text: "<|im_end|>" };
    for user in ["this is", "th\u{4}is\u{4}"] {
        let rows = parse(
            &json!({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "hi\u{4} this"}]})
                .to_string(),
        );
        let ex = &encode_sft(&rows, &tok, 1000, true).unwrap()[0];
        let trained: Vec<u32> = ex.ids.iter().zip(&ex.trained).filter(|(_, &t)| t).map(|(&i, _)| i).collect();
        assert_eq!(bpe.decode(&trained), "hi this<|im_end|>\n", "{user:?}");
        let all = &encode_sft(&rows, &tok, 1000, false).unwrap()[0];
        assert_eq!(all.ids, ex.ids);
    }
}
