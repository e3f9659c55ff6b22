//! SmolLM2's tokenizer and chat template against the references, line for line:
//! `tests/fixtures/smol/tokenizer_cases.jsonl` holds 2,999 texts (edge cases, the corpora's words,
//! names and Pokémon, random mixes, JSONL lines, a 3,000-byte word) with the ids Hugging Face
//! `tokenizers` gives them from the reference `tokenizer.json`, and `chat_template_cases.json` the
//! conversations transformers' `apply_chat_template` renders (made by `make_tokenizer_fixture.py`
//! beside them). The tokenizer is built from the GGUF the lab loads (`www/data/`, put there by
//! `./build.sh setup`; or `SMOL_GGUF`), whose chat template must be the fixture's.
//! `from_tokenizer_json` is checked against the same cases when the HF folder is there
//! (`SMOL_HF_DIR`, default `../scratch/hf`; not in CI), and on refusals and garbage.

use lora_lab::io::read_gguf;
use lora_lab::text::{Bpe, ChatTemplate, Message, PreTokenizer};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smol");
const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/tokenizer_cases.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Case {
                text: v["text"].as_str().unwrap().to_string(),
                ids: v["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect(),
                decoded: v["decoded"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

fn gguf_path() -> PathBuf {
    match std::env::var_os("SMOL_GGUF") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www/data").join(GGUF_NAME),
    }
}

fn gguf_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = gguf_path();
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}: run ./build.sh setup (or set SMOL_GGUF)", path.display()))
    })
}

/// The tokenizer from the GGUF's `tokenizer.ggml.*` arrays, as the lab builds it; read once.
fn smol() -> &'static Bpe {
    static TOKENIZER: OnceLock<Bpe> = OnceLock::new();
    TOKENIZER.get_or_init(from_gguf)
}

fn from_gguf() -> Bpe {
    let g = read_gguf(gguf_bytes(), GGUF_NAME).unwrap();
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    let tokens = g.get_array_str("tokenizer.ggml.tokens").unwrap();
    let merges = g.get_array_str("tokenizer.ggml.merges").unwrap();
    let types = g.get_array_i32("tokenizer.ggml.token_type").unwrap();
    let pre = g.get_str("tokenizer.ggml.pre").unwrap();
    Bpe::from_vocab(tokens, merges, &types, pre, GGUF_NAME).unwrap()
}

/// Encodes every case and compares with the reference; reports the first mismatches by line.
fn check_cases(tok: &Bpe, what: &str) {
    let cases = cases();
    assert!(cases.len() >= 2000, "{} cases", cases.len());
    let mut bad = Vec::new();
    for (line, case) in cases.iter().enumerate() {
        let ids = tok.encode(&case.text);
        let decoded = tok.decode(&case.ids);
        if ids != case.ids || decoded != case.decoded {
            bad.push(format!(
                "line {}: {:?}\n  ids  {ids:?}\n  want {:?}\n  decoded {decoded:?}",
                line + 1,
                case.text,
                case.ids
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} lines differ; first:\n{}",
        bad.len(),
        cases.len(),
        bad[..bad.len().min(8)].join("\n")
    );
}

#[test]
fn smollm2_tokenizer_from_the_gguf_gives_hf_ids_on_every_line() {
    let tok = smol();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.pre_tokenizer(), PreTokenizer::Smollm);
    assert_eq!((tok.token_text(1), tok.token_text(2)), (Some("<|im_start|>"), Some("<|im_end|>")));
    assert_eq!(tok.id_of("<|endoftext|>"), Some(0));
    assert!((0..17).all(|id| tok.is_special(id)) && !tok.is_special(17));
    // The case PRETRAINED.md names: transformers' own GGUF conversion forgets the digit split here.
    assert_eq!(tok.encode("  9"), [256, 41]);
    check_cases(tok, GGUF_NAME);
}

/// Run only where the HF folder of `peers/smol_to_hf.py` exists (not in CI): its tokenizer.json
/// read by `from_tokenizer_json` gives the reference ids, and the same tokenizer as the GGUF.
#[test]
fn hf_folder_tokenizer_json_agrees_with_the_reference_when_present() {
    let dir = std::env::var_os("SMOL_HF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scratch/hf"));
    let Ok(json) = std::fs::read_to_string(dir.join("tokenizer.json")) else {
        eprintln!("skipping: no tokenizer.json in {} (set SMOL_HF_DIR)", dir.display());
        return;
    };
    let tok = Bpe::from_tokenizer_json(&json, "tokenizer.json").unwrap();
    assert_eq!(tok.pre_tokenizer(), PreTokenizer::Smollm);
    check_cases(&tok, "tokenizer.json");
    let g = smol();
    assert_eq!(tok.vocab_size(), g.vocab_size());
    for id in 0..tok.vocab_size() as u32 {
        assert_eq!(tok.token_text(id), g.token_text(id), "token {id}");
        assert_eq!(tok.is_special(id), g.is_special(id), "token {id}");
    }
}

/// SmolLM2's vocabulary has no token for the bytes 04, 06, 13, 14, 16, 1D, nor for F1 and F2 (the
/// lead bytes of U+40000–U+BFFFF): `tokenizers` drops them, and so does `Bpe`.
fn has_no_token(c: char) -> bool {
    matches!(c, '\u{4}' | '\u{6}' | '\u{13}' | '\u{14}' | '\u{16}' | '\u{1d}' | '\u{40000}'..='\u{BFFFF}')
}

/// `decode(encode(s)) == s` for every text whose bytes all have tokens.
#[test]
fn decode_of_encode_is_the_text() {
    let tok = smol();
    let mut texts: Vec<String> = cases().into_iter().map(|c| c.text).collect();
    // Every byte value as text where valid, every char class boundary, specials glued to text.
    texts.push((0u8..128).map(char::from).collect());
    texts.push((0x80u32..0x800).filter_map(char::from_u32).collect());
    texts.push("<|im_start|><|im_start|x<|im_end|>>\u{10FFFF}\u{FFFD}".into());
    for t in &texts {
        if t.chars().any(has_no_token) {
            assert_ne!(&tok.decode(&tok.encode(t)), t, "{t:?} loses a byte");
        } else {
            assert_eq!(&tok.decode(&tok.encode(t)), t);
        }
    }
    // Byte tokens of a cut character show as U+FFFD, as `tokenizers` decodes them: é is C3 A9,
    // GPT-2's byte map writes them Ã and ©.
    let (c3, a9) = (tok.id_of("Ã").unwrap(), tok.id_of("©").unwrap());
    assert_eq!(tok.decode(&[c3, a9]), "é");
    assert_eq!(tok.decode(&[c3]), "\u{FFFD}");
    assert_eq!(tok.decode(&[a9, c3, 2]), "\u{FFFD}\u{FFFD}<|im_end|>");
    assert_eq!(tok.decode(&[u32::MAX, 49152]), "", "ids past the vocabulary are skipped");
}

#[test]
fn chat_templates_render_as_transformers_does() {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/chat_template_cases.json")).unwrap())
            .unwrap();
    let source = fixture["template"].as_str().unwrap();
    let (bos, eos) = (fixture["bos_token"].as_str().unwrap(), fixture["eos_token"].as_str().unwrap());
    let g = read_gguf(gguf_bytes(), GGUF_NAME).unwrap();
    assert_eq!(g.get_str("tokenizer.chat_template").unwrap(), source, "the GGUF's template is the fixture's");
    let mut checked = 0;
    let mut templates = vec![(source, &fixture["cases"])];
    for other in fixture["other_templates"].as_array().unwrap() {
        templates.push((other["template"].as_str().unwrap(), &other["cases"]));
    }
    for (t, (source, cases)) in templates.into_iter().enumerate() {
        let template = ChatTemplate::new(source, bos, eos, "chat_template_cases.json").unwrap();
        for (i, case) in cases.as_array().unwrap().iter().enumerate() {
            let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            let gen = case["add_generation_prompt"].as_bool().unwrap();
            let got = template.render(&messages, gen);
            match (case["text"].as_str(), case["error"].as_str()) {
                (Some(want), _) => assert_eq!(got.as_deref().ok(), Some(want), "template {t} case {i}: {got:?}"),
                (None, Some(message)) => {
                    let err = got.expect_err(&format!("template {t} case {i} is refused"));
                    assert_eq!(err.to_string(), format!("chat_template_cases.json: chat template: {message}"));
                }
                _ => panic!("template {t} case {i}: neither text nor error"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "{checked} cases");
}

#[test]
fn tokenizer_json_refusals_name_the_key() {
    let refuse = |json: &str| Bpe::from_tokenizer_json(json, "tokenizer.json").unwrap_err().to_string();
    let base = |model: &str, pre: &str| {
        format!(
            r#"{{"normalizer": null, "pre_tokenizer": {pre}, "decoder": {{"type": "ByteLevel"}}, "added_tokens": [], "model": {model}}}"#
        )
    };
    let byte_level = r#"{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}"#;
    let e = refuse(&base(r#"{"type": "Unigram", "vocab": []}"#, byte_level));
    assert!(e.starts_with("tokenizer.json: model.type: \"Unigram\" is not supported"), "{e}");
    let e = refuse(&base(r#"{"type": "BPE", "vocab": {"a": 0}}"#, byte_level));
    assert!(e.contains("model.merges: missing; a BPE tokenizer without merges"), "{e}");
    let e = refuse(&base(r#"{"type": "BPE", "vocab": {"a": 0}, "merges": []}"#, byte_level));
    assert!(e.contains("model.merges: no merges"), "{e}");
    let split = r#"{"type": "Split", "pattern": {"Regex": "\\d"}, "behavior": "Isolated"}"#;
    let e = refuse(&base(r#"{"type": "BPE", "vocab": {}, "merges": []}"#, split));
    assert!(e.starts_with("tokenizer.json: pre_tokenizer: \"Split\" is not supported"), "{e}");
    let e = refuse(r#"{"normalizer": {"type": "NFC"}}"#);
    assert!(e.starts_with("tokenizer.json: normalizer: \"NFC\""), "{e}");
    let e = refuse("{\"model\": ");
    assert!(e.starts_with("tokenizer.json: not valid JSON"), "{e}");
}

/// `from_tokenizer_json` refuses, and never panics on, cut and garbled files.
#[test]
fn tokenizer_json_never_panics_on_garbage() {
    let good = r#"{"version": "1.0", "added_tokens": [{"id": 3, "content": "<|x|>", "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": null, "vocab": {"a": 0, "b": 1, "ab": 2, "<|x|>": 3}, "merges": [["a", "b"]]}}"#;
    // Bytes without a token are dropped (here all but a and b), as `tokenizers` drops them.
    let tok = Bpe::from_tokenizer_json(good, "t.json").unwrap();
    assert_eq!(tok.encode("ab<|x|>"), [2, 3]);
    assert_eq!(tok.encode("a1b"), [0, 1]);
    assert!(tok.is_special(3) && !tok.is_special(2));
    let mut variants: Vec<String> =
        (0..good.len()).filter(|&i| good.is_char_boundary(i)).map(|i| good[..i].to_string()).collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2000 {
        let mut bytes = good.as_bytes().to_vec();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % bytes.len() as u64) as usize;
            bytes[at] = b"{}[]\",:0123456789 -aAbB\\nulltrue"[(seed >> 40) as usize % 32];
        }
        variants.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for v in [
        r#"{"model": {"vocab": {"a": 4294967296}, "merges": ["a b"]}}"#,
        r#"{"decoder": {"type": "ByteLevel"}, "pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {"a": 4000000000}, "merges": ["a b"]}}"#,
        r#"{"decoder": {"type": "ByteLevel"}, "pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {}, "merges": ["a b c", ["a"], 7]}}"#,
        r#"{"decoder": {"type": "ByteLevel"}, "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": [{"id": -1}], "model": {"vocab": {}, "merges": ["a b"]}}"#,
        "[]",
        "null",
        "",
    ] {
        variants.push(v.to_string());
    }
    for v in &variants {
        let got = std::panic::catch_unwind(|| Bpe::from_tokenizer_json(v, "t.json"));
        assert!(got.is_ok(), "panicked on {v:?}");
    }
}
