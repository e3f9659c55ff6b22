//! Hugging Face's `tokenizer.json` read into a byte-level [`Bpe`]: `model.vocab`, `model.merges`
//! (`"a b"` strings or `["a", "b"]` pairs), `added_tokens` and the pre-tokenizer.
//!
//! What the lab can tokenize exactly is accepted and the rest refused with the key that says why:
//! a model other than BPE, a BPE without merges or with dropout, subword affixes or byte fallback, a normalizer,
//! a pre-tokenizer other than GPT-2's `ByteLevel` (alone, or after `Digits(individual_digits)` as
//! in SmolLM2), a decoder other than `ByteLevel`, added tokens that strip spaces or match single
//! words. `post_processor` is ignored: it only adds tokens when asked to, and the lab never asks.

use super::bpe::{bad_merge, split_merge, Bpe, Kind, Options};
use super::pretokenize::PreTokenizer;
use crate::{LabError, Result};
use serde_json::{Map, Value};

impl Bpe {
    /// Reads `text`, the contents of a `tokenizer.json`; `file` names it in errors. Never panics,
    /// whatever the text.
    pub fn from_tokenizer_json(text: &str, file: &str) -> Result<Self> {
        let err = |key: &str, reason: String| LabError::file(file, format!("{key}: {reason}"));
        let root: Value =
            serde_json::from_str(text).map_err(|e| LabError::file(file, format!("not valid JSON ({e})")))?;
        let root = root.as_object().ok_or_else(|| LabError::file(file, "not a JSON object"))?;

        if let Some(n) = root.get("normalizer").filter(|v| !v.is_null()) {
            return Err(err("normalizer", format!("{} is not supported (byte-level BPE here has none)", type_of(n))));
        }
        let pre = pre_tokenizer(root.get("pre_tokenizer")).map_err(|reason| err("pre_tokenizer", reason))?;
        match root.get("decoder") {
            Some(d) if d.get("type").and_then(Value::as_str) == Some("ByteLevel") => {}
            Some(d) => return Err(err("decoder", format!("{} is not supported (only ByteLevel)", type_of(d)))),
            None => return Err(err("decoder", "missing (a byte-level BPE needs the ByteLevel decoder)".into())),
        }

        let model = root.get("model").and_then(Value::as_object).ok_or_else(|| err("model", "missing".into()))?;
        match model.get("type") {
            None => {} // Old files have no type; vocab and merges below say it is BPE.
            Some(Value::String(t)) if t == "BPE" => {}
            Some(t) => return Err(err("model.type", format!("{} is not supported (only \"BPE\")", short(t)))),
        }
        if model.get("dropout").is_some_and(|d| !d.is_null()) {
            return Err(err("model.dropout", "BPE dropout is not supported".into()));
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            match model.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(v) => return Err(err(&format!("model.{key}"), format!("{} is not supported", short(v)))),
            }
        }
        let flag = |key: &str| match model.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(err(&format!("model.{key}"), format!("{} is not true or false", short(v)))),
        };
        let (ignore_merges, fuse_unk) = (flag("ignore_merges")?, flag("fuse_unk")?);
        if flag("byte_fallback")? {
            return Err(err("model.byte_fallback", "byte fallback is not supported".into()));
        }
        let unk_token = match model.get("unk_token") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(v) => return Err(err("model.unk_token", format!("{} is not a token", short(v)))),
        };

        let vocab = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| err("model.vocab", "missing or not an object of tokens and ids".into()))?;
        let merges = match model.get("merges") {
            Some(Value::Array(m)) => m,
            Some(_) => return Err(err("model.merges", "not a list".into())),
            None => return Err(err("model.merges", "missing; a BPE tokenizer without merges is not supported".into())),
        };
        let added = match root.get("added_tokens") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => &a[..],
            Some(_) => return Err(err("added_tokens", "not a list".into())),
        };

        // Ids: the vocabulary's, then the added tokens' (which may reuse them or go past them).
        let mut entries: Vec<(u32, &str, Kind)> = Vec::with_capacity(vocab.len() + added.len());
        for (token, id) in vocab {
            let id = as_id(id).ok_or_else(|| {
                err("model.vocab", format!("{}: the id {} is not a u32", short_str(token), short(id)))
            })?;
            entries.push((id, token, Kind::Normal));
        }
        for (i, a) in added.iter().enumerate() {
            entries.push(added_token(a).map_err(|reason| err(&format!("added_tokens[{i}]"), reason))?);
        }
        let max = entries.iter().map(|e| e.0 as usize).max().unwrap_or(0);
        if max >= 2 * entries.len() + 256 {
            return Err(err(
                "model.vocab",
                format!("the id {max} is far past the {} tokens: ids must be dense", entries.len()),
            ));
        }
        let mut tokens: Vec<Option<String>> = vec![None; if entries.is_empty() { 0 } else { max + 1 }];
        let mut kinds = vec![Kind::Normal; tokens.len()];
        for (id, token, kind) in entries {
            let slot = &mut tokens[id as usize];
            // An added token replaces the vocabulary's entry at its id (as tokenizers' added
            // vocabulary does); of two vocabulary entries with one id, the first stays.
            if slot.is_none() || kind != Kind::Normal {
                *slot = Some(token.to_string());
                kinds[id as usize] = kind;
            }
        }

        let pairs = merges
            .iter()
            .enumerate()
            .map(|(rank, m)| match m {
                Value::String(s) => split_merge(s).ok_or_else(|| bad_merge(file, "model.merges", rank, s)),
                Value::Array(p) => match &p[..] {
                    [Value::String(a), Value::String(b)] => Ok((a.as_str(), b.as_str())),
                    _ => Err(err(&format!("model.merges[{rank}]"), format!("{} is not a pair of tokens", short(m)))),
                },
                _ => Err(err(&format!("model.merges[{rank}]"), format!("{} is not a merge", short(m)))),
            })
            .collect::<Result<Vec<_>>>()?;
        Bpe::build(file, tokens, kinds, &pairs, "model.merges", Options { pre, ignore_merges, unk_token, fuse_unk })
    }
}

/// The pre-tokenizer: `ByteLevel` (GPT-2) or `Sequence[Digits(individual_digits=true), ByteLevel]`
/// (SmolLM2), `ByteLevel` with `add_prefix_space` false and `use_regex` true.
fn pre_tokenizer(value: Option<&Value>) -> std::result::Result<PreTokenizer, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Err("missing (a byte-level BPE needs the ByteLevel pre-tokenizer)".into());
    };
    let unsupported = || {
        format!(
            "{} is not supported (only ByteLevel, or Digits(individual_digits) then ByteLevel, as GPT-2 and SmolLM2)",
            type_of(value)
        )
    };
    match value.get("type").and_then(Value::as_str) {
        Some("ByteLevel") => byte_level(value).map(|()| PreTokenizer::Gpt2),
        Some("Sequence") => match value.get("pretokenizers").and_then(Value::as_array).map(|v| &v[..]) {
            Some([digits, bytes]) => {
                let individual = digits.get("individual_digits").and_then(Value::as_bool) == Some(true);
                if digits.get("type").and_then(Value::as_str) != Some("Digits") || !individual {
                    return Err(unsupported());
                }
                if bytes.get("type").and_then(Value::as_str) != Some("ByteLevel") {
                    return Err(unsupported());
                }
                byte_level(bytes).map(|()| PreTokenizer::Smollm)
            }
            Some([bytes]) if bytes.get("type").and_then(Value::as_str) == Some("ByteLevel") => {
                byte_level(bytes).map(|()| PreTokenizer::Gpt2)
            }
            _ => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

fn byte_level(value: &Value) -> std::result::Result<(), String> {
    if value.get("add_prefix_space").and_then(Value::as_bool) == Some(true) {
        return Err("ByteLevel with add_prefix_space is not supported".into());
    }
    if value.get("use_regex").and_then(Value::as_bool) == Some(false) {
        return Err("ByteLevel without its regex (use_regex false) is not supported".into());
    }
    Ok(())
}

/// One of `added_tokens`: its id, text and kind.
fn added_token(value: &Value) -> std::result::Result<(u32, &str, Kind), String> {
    let obj: &Map<String, Value> = value.as_object().ok_or("not an object")?;
    let id = obj.get("id").and_then(as_id).ok_or("no id that is a u32")?;
    let content = obj.get("content").and_then(Value::as_str).ok_or("no content string")?;
    for flag in ["lstrip", "rstrip", "single_word"] {
        if obj.get(flag).and_then(Value::as_bool) == Some(true) {
            return Err(format!("{}: {flag} is not supported", short_str(content)));
        }
    }
    let special = obj.get("special").and_then(Value::as_bool).unwrap_or(false);
    Ok((id, content, if special { Kind::Special } else { Kind::Added }))
}

fn as_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// A component's `type` for messages (`"Split"`), or the value itself, shortened.
fn type_of(v: &Value) -> String {
    match v.get("type").and_then(Value::as_str) {
        Some(t) => format!("{t:?}"),
        None => short(v),
    }
}

/// A value in a message, at most 60 characters of it.
fn short(v: &Value) -> String {
    short_str(&v.to_string())
}

fn short_str(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}
