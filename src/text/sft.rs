//! Supervised fine-tuning data as TRL's `SFTTrainer` (TRL 1.16) prepares it: JSONL rows in TRL's
//! dataset formats, tokenized with the model's BPE and chat template, with the loss mask TRL's labels
//! carry (`labels[i] != -100`), truncated to a maximum length, and optionally packed.
//!
//! References are to TRL 1.16.0's `trl/trainer/sft_trainer.py` (`SFTTrainer._prepare_dataset`, from
//! line 1228) and `trl/data_utils.py`, and transformers 5.25's `apply_chat_template`:
//!
//! - **Formats** (`parse_sft_jsonl`): `{"text"}` (language modelling), `{"messages"}` (conversational
//!   language modelling), `{"prompt", "completion"}` as two strings or two message lists
//!   (prompt-completion). A `datasets` dataset has one schema, so the rows of one file share one form.
//!   `tokenize_fn` takes a row with `"prompt"` as prompt-completion before looking at `"messages"` and
//!   then at `"text"` (sft_trainer.py 1314–1394); so does the parser (a `"completion"` without a
//!   `"prompt"` is an extra key of a `"messages"` or `"text"` row, as there). `is_conversational`
//!   (data_utils.py 126) reads the first message of a list, so an empty list fails there: refused here.
//! - **EOS** (`add_eos`, sft_trainer.py 1286–1305): for rows that are not conversational, the EOS *text*
//!   is appended to the `text`, or to the `completion`, unless it already ends with it; the string is
//!   then tokenized (so `text + "<|im_end|>"` gives the text's ids then EOS's). Conversational rows get
//!   what the chat template writes and nothing more.
//! - **Tokenizing** (`_tokenize`, data_utils.py 367): a string goes through the tokenizer with its
//!   special tokens (the BOS of a tokenizer that adds one; SmolLM2's adds none); a message list is
//!   rendered by the chat template and tokenized without them (`add_special_tokens=False`,
//!   transformers' `apply_chat_template`).
//! - **Prompt-completion** (sft_trainer.py 1322–1370): `prompt_ids` = the prompt alone (conversational:
//!   with the generation prompt), `ids` = prompt + completion (strings concatenated, or the two message
//!   lists rendered as one conversation). The completion starts where the two diverge
//!   (`common_prefix_length`, data_utils.py 406): `prompt_ids` is usually a prefix of `ids`, but a word
//!   that the boundary cuts ("Hel" + "lo") merges into other tokens, and TRL then starts the completion
//!   at the first differing token rather than refusing the row. The loss is on the completion only
//!   (`completion_only_loss` defaults to on for prompt-completion data, sft_trainer.py 961–964).
//! - **Assistant-only loss** (`assistant_only_loss=True`): TRL asks transformers for an assistant mask,
//!   which needs `{% generation %}` markers in the template; SmolLM2's has none (and TRL has no
//!   training template for it, `get_training_chat_template` refuses it). Here the assistant's part of
//!   message `i` is what `render(messages[..=i], false)` adds after `render(messages[..i], true)`: for
//!   SmolLM2, the content and `<|im_end|>\n`, which is what markers around them would mark. Tokens are
//!   marked as transformers marks them: every token that overlaps the span (by byte offsets in the
//!   rendered text). With prompt-completion rows both masks apply (`build_labels`, sft_trainer.py 1421).
//!   The option is refused for rows that are not conversational, as TRL does (sft_trainer.py 933).
//! - **Truncation** (sft_trainer.py 1436–1463): the first `max_len` tokens are kept (`keep_start`). TRL
//!   then silently drops an example left with no label; here that is an error naming the line, so a
//!   person learns that a setting leaves rows out. TRL does not truncate when packing (the packed rows
//!   are `max_length` long): call `encode_sft` with `usize::MAX` then.
//! - **Packing**: see `sft_pack.rs` ([`super::pack_sft`], [`super::pack_sft_bfd`]).
//!
//! `SftExample::trained[i]` is TRL's `labels[i] != -100` for `i ≥ 1`; `trained[0]` is always false, as
//! nothing predicts the first token (the model's loss shifts the labels by one).

use super::bpe::byte_chars;
use super::{Bpe, ChatTemplate, Message};
use crate::{LabError, Result};
use serde_json::{Map, Value};

/// The most a JSONL file may be: 16 MiB.
pub const MAX_SFT_BYTES: usize = 16 << 20;
/// The most one line may be: 256 KiB.
pub const MAX_SFT_LINE_BYTES: usize = 256 << 10;
/// The most rows a file may hold.
pub const MAX_SFT_ROWS: usize = 100_000;
/// The most messages a conversation may have for assistant-only loss, which renders the conversation
/// up to each assistant message twice (n² work in the messages: 1,000 take 0.65 s natively, release).
pub const MAX_ASSISTANT_ONLY_MESSAGES: usize = 1_000;

/// One JSONL row as TRL takes it, with its 1-based line number in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftRow {
    pub line: usize,
    pub kind: SftKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SftKind {
    /// {"messages": [{"role", "content"}, ...]} — conversational language modelling.
    Messages(Vec<Message>),
    /// {"prompt": ..., "completion": ...}: both strings, or both message lists (conversational
    /// prompt-completion).
    PromptCompletion { prompt: Content, completion: Content },
    /// {"text": "..."}
    Text(String),
}

/// A prompt or a completion: a string, or a list of messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Messages(Vec<Message>),
}

/// The four forms a row can take; one file holds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Messages,
    PromptCompletionText,
    PromptCompletionMessages,
    Text,
}

impl Form {
    fn of(kind: &SftKind) -> Self {
        match kind {
            SftKind::Messages(_) => Self::Messages,
            SftKind::PromptCompletion { prompt: Content::Text(_), .. } => Self::PromptCompletionText,
            SftKind::PromptCompletion { .. } => Self::PromptCompletionMessages,
            SftKind::Text(_) => Self::Text,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Messages => r#"{"messages": [...]}"#,
            Self::PromptCompletionText => r#"{"prompt": "...", "completion": "..."}"#,
            Self::PromptCompletionMessages => r#"{"prompt": [...], "completion": [...]}"#,
            Self::Text => r#"{"text": "..."}"#,
        }
    }
}

/// Parses JSONL bytes (`file` names it in errors). Blank lines are skipped, a UTF-8 byte order mark at
/// the start is allowed, extra keys are ignored. All or nothing: any bad line is an error naming the
/// file, the line and the fault; every row must have the form of the first (TRL's dataset has one
/// schema); a file with no row is an error.
pub fn parse_sft_jsonl(bytes: &[u8], file: &str) -> Result<Vec<SftRow>> {
    let bad = |reason: String| LabError::file(file, reason);
    if bytes.len() > MAX_SFT_BYTES {
        return Err(bad(format!("{} bytes; the most is {MAX_SFT_BYTES} (16 MiB)", bytes.len())));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rows: Vec<SftRow> = Vec::new();
    let mut first: Option<(usize, Form)> = None;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        if raw.len() > MAX_SFT_LINE_BYTES {
            return Err(bad(format!(
                "line {line}: {} bytes; the most per line is {MAX_SFT_LINE_BYTES} (256 KiB)",
                raw.len()
            )));
        }
        let text = std::str::from_utf8(raw)
            .map_err(|e| bad(format!("line {line}: not UTF-8 (byte {} of the line)", e.valid_up_to() + 1)))?;
        if text.trim_matches([' ', '\t', '\r']).is_empty() {
            continue;
        }
        if rows.len() == MAX_SFT_ROWS {
            return Err(bad(format!("line {line}: more than {MAX_SFT_ROWS} rows; the most is {MAX_SFT_ROWS}")));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("line {line}: not JSON ({})", json_fault(&e))))?;
        let kind = row_kind(value).map_err(|reason| bad(format!("line {line}: {reason}")))?;
        let form = Form::of(&kind);
        match first {
            None => first = Some((line, form)),
            Some((first_line, first_form)) if first_form != form => {
                return Err(bad(format!(
                    "line {line}: a {} row, but line {first_line} is a {} row: every row must have the same form \
                     (TRL's dataset has one schema)",
                    form.describe(),
                    first_form.describe()
                )))
            }
            Some(_) => {}
        }
        rows.push(SftRow { line, kind });
    }
    if rows.is_empty() {
        return Err(bad("no rows".into()));
    }
    Ok(rows)
}

/// serde_json's message with the column (every line is line 1 of its own document).
fn json_fault(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let what = match msg.rfind(" at line ") {
        Some(at) => &msg[..at],
        None => &msg,
    };
    format!("{what} at column {}", e.column())
}

/// What a JSON value is, for errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

const ROW_FORMS: &str = r#"a row has "text", "messages" or "prompt"+"completion""#;
const MESSAGE_LIST: &str = r#"a list of {"role", "content"} objects"#;

/// The row a line's JSON value is, or why it is none.
fn row_kind(value: Value) -> std::result::Result<SftKind, String> {
    let mut map = match value {
        Value::Object(map) => map,
        other => return Err(format!("{ROW_FORMS}, as a JSON object; this line is {}", json_type(&other))),
    };
    if let Some(prompt) = map.remove("prompt") {
        let completion = map.remove("completion").ok_or_else(|| r#""completion" is missing"#.to_string())?;
        let must_be =
            |key: &str, v: &Value| format!("\"{key}\" must be a string or {MESSAGE_LIST}, not {}", json_type(v));
        return match (prompt, completion) {
            (Value::String(p), Value::String(c)) => {
                Ok(SftKind::PromptCompletion { prompt: Content::Text(p), completion: Content::Text(c) })
            }
            (p @ Value::Array(_), c @ Value::Array(_)) => Ok(SftKind::PromptCompletion {
                prompt: Content::Messages(messages("prompt", p)?),
                completion: Content::Messages(messages("completion", c)?),
            }),
            (Value::String(_), Value::Array(_)) => {
                Err("the prompt is a string and the completion a message list: give both the same form".into())
            }
            (Value::Array(_), Value::String(_)) => {
                Err("the prompt is a message list and the completion a string: give both the same form".into())
            }
            (Value::String(_) | Value::Array(_), c) => Err(must_be("completion", &c)),
            (p, _) => Err(must_be("prompt", &p)),
        };
    }
    if let Some(m) = map.remove("messages") {
        return Ok(SftKind::Messages(messages("messages", m)?));
    }
    if let Some(t) = map.remove("text") {
        return match t {
            Value::String(s) => Ok(SftKind::Text(s)),
            other => Err(format!("\"text\" must be a string, not {}", json_type(&other))),
        };
    }
    if map.contains_key("completion") {
        return Err(r#""prompt" is missing"#.into());
    }
    Err(format!("{ROW_FORMS}; this one has {}", keys(&map)))
}

/// The keys of an object, for errors: `"a", "b"` (the first 8), or `no key`.
fn keys(map: &Map<String, Value>) -> String {
    if map.is_empty() {
        return "no key".into();
    }
    let mut out: Vec<String> = map.keys().take(8).map(|k| format!("{:?}", truncate_chars(k, 40))).collect();
    if map.len() > 8 {
        out.push(format!("and {} more", map.len() - 8));
    }
    out.join(", ")
}

fn truncate_chars(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// A message list: `[{"role": string, "content": string}, ...]`, not empty; other keys are ignored.
fn messages(key: &str, value: Value) -> std::result::Result<Vec<Message>, String> {
    let items = match value {
        Value::Array(items) => items,
        other => return Err(format!("\"{key}\" must be {MESSAGE_LIST}, not {}", json_type(&other))),
    };
    if items.is_empty() {
        return Err(format!("\"{key}\" is an empty list: a conversation needs at least one message"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.into_iter().enumerate() {
        let n = j + 1;
        let mut m = match item {
            Value::Object(m) => m,
            other => return Err(format!("\"{key}\" must be {MESSAGE_LIST}; message {n} is {}", json_type(&other))),
        };
        let mut field = |name: &str| match m.remove(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => {
                Err(format!("message {n} of \"{key}\": \"{name}\" must be a string, not {}", json_type(&other)))
            }
            None => Err(format!("message {n} of \"{key}\": \"{name}\" is missing")),
        };
        let role = field("role")?;
        let content = field("content")?;
        out.push(Message { role, content });
    }
    Ok(out)
}

/// What encoding needs of the model: its BPE, chat template (None: conversational rows are refused with
/// a clear error), BOS id when the tokenizer adds one before every text (SmolLM2's does not), EOS id and
/// text.
#[derive(Clone, Copy, Debug)]
pub struct SftTokenizer<'a> {
    pub bpe: &'a Bpe,
    pub template: Option<&'a ChatTemplate>,
    pub bos: Option<u32>,
    pub eos: u32,
    pub eos_text: &'a str,
}

/// One example as the trainer takes it: `ids`, and `trained[i]` = token i is a label (the loss is on
/// predicting ids[i] from position i−1; trained[0] is always false). `truncated`: it was cut to max_len
/// (for a packed row: one of the examples it holds was). `lengths`: for a row that packs whole
/// examples apart (TRL's "bfd"), their lengths; else empty (one example, or "wrapped" packing's stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftExample {
    pub line: usize,
    pub ids: Vec<u32>,
    pub trained: Vec<bool>,
    pub truncated: bool,
    pub lengths: Vec<usize>,
}

/// TRL's tokenize step then truncation to `max_len` tokens (the first `max_len` kept); see the module
/// documentation for each row form's ids and loss mask. `assistant_only`: for conversational rows, the
/// loss only on what the assistant's messages add (refused for rows that are not conversational).
///
/// Errors: `max_len` below 2 and `assistant_only` with plain rows (setting errors); conversational rows
/// without a chat template; an EOS text that does not encode to the EOS id (when rows need it); and,
/// naming the line, a template that fails on a row, a row of fewer than 2 tokens, or one with no token
/// to train on ("line 5: nothing to train on after truncation to 16 tokens").
pub fn encode_sft(
    rows: &[SftRow],
    tok: &SftTokenizer,
    max_len: usize,
    assistant_only: bool,
) -> Result<Vec<SftExample>> {
    if max_len < 2 {
        return Err(LabError::setting("maximum length", format!("{max_len} tokens; it must be at least 2")));
    }
    let conversational = |r: &SftRow| {
        matches!(r.kind, SftKind::Messages(_) | SftKind::PromptCompletion { prompt: Content::Messages(_), .. })
    };
    if let Some(r) = rows.iter().find(|r| !conversational(r)) {
        if assistant_only {
            return Err(LabError::setting(
                "assistant-only loss",
                format!(
                    "line {}: the rows are not conversational (no message has a role); assistant-only loss needs \
                     \"messages\", or a prompt and completion as message lists",
                    r.line
                ),
            ));
        }
        let eos = tok.bpe.encode(tok.eos_text);
        if eos != [tok.eos] {
            return Err(LabError::state(format!(
                "the EOS text {:?} encodes to {eos:?}, not to the EOS id {}",
                tok.eos_text, tok.eos
            )));
        }
    }
    if tok.template.is_none() {
        if let Some(r) = rows.iter().find(|r| conversational(r)) {
            return Err(LabError::state(format!(
                "line {}: conversational rows go through the model's chat template, and this model has none; \
                 use {{\"text\": ...}} or string prompt-completion rows",
                r.line
            )));
        }
    }
    let mut enc = Encoder { tok, byte_of: byte_lookup() };
    rows.iter().map(|r| enc.example(r, max_len, assistant_only)).collect()
}

/// The byte each byte-level character stands for (indexed by the character, all below 324).
fn byte_lookup() -> [Option<u8>; 324] {
    let mut out = [None; 324];
    for (b, c) in byte_chars().iter().enumerate() {
        out[*c as usize] = Some(b as u8);
    }
    out
}

struct Encoder<'t, 'a> {
    tok: &'t SftTokenizer<'a>,
    byte_of: [Option<u8>; 324],
}

impl Encoder<'_, '_> {
    fn example(&mut self, row: &SftRow, max_len: usize, assistant_only: bool) -> Result<SftExample> {
        let line = row.line;
        let eos = self.tok.eos_text;
        let with_eos = |s: &str| if s.ends_with(eos) { s.to_string() } else { format!("{s}{eos}") };
        let (mut ids, mut trained) = match &row.kind {
            SftKind::Text(text) => {
                let ids = self.plain(&with_eos(text));
                let n = ids.len();
                (ids, vec![true; n])
            }
            SftKind::PromptCompletion { prompt: Content::Text(p), completion: Content::Text(c) } => {
                let prompt_ids = self.plain(p);
                let ids = self.plain(&format!("{p}{}", with_eos(c)));
                let start = common_prefix(&prompt_ids, &ids);
                let trained = (0..ids.len()).map(|i| i >= start).collect();
                (ids, trained)
            }
            SftKind::PromptCompletion { prompt: Content::Messages(p), completion: Content::Messages(c) } => {
                let prompt_ids = self.tok.bpe.encode(&self.render(p, true, line)?);
                let all = [p.as_slice(), c.as_slice()].concat();
                let full = self.render(&all, false, line)?;
                let ids = self.tok.bpe.encode(&full);
                let start = common_prefix(&prompt_ids, &ids);
                let mut trained: Vec<bool> = (0..ids.len()).map(|i| i >= start).collect();
                if assistant_only {
                    let mask = self.assistant_mask(&all, &full, &ids, line)?;
                    trained.iter_mut().zip(mask).for_each(|(t, a)| *t &= a);
                }
                (ids, trained)
            }
            SftKind::PromptCompletion { .. } => {
                return Err(LabError::state(format!("line {line}: the prompt and the completion have different forms")))
            }
            SftKind::Messages(m) => {
                let full = self.render(m, false, line)?;
                let ids = self.tok.bpe.encode(&full);
                let trained =
                    if assistant_only { self.assistant_mask(m, &full, &ids, line)? } else { vec![true; ids.len()] };
                (ids, trained)
            }
        };
        let truncated = ids.len() > max_len;
        ids.truncate(max_len);
        trained.truncate(max_len);
        if let Some(t) = trained.first_mut() {
            *t = false;
        }
        let untrained = !trained.contains(&true);
        if truncated && untrained {
            return Err(LabError::state(format!(
                "line {line}: nothing to train on after truncation to {max_len} tokens"
            )));
        }
        if ids.len() < 2 {
            let n = ids.len();
            return Err(LabError::state(format!(
                "line {line}: {n} token{}: nothing to train on",
                if n == 1 { "" } else { "s" }
            )));
        }
        if untrained {
            let why = match (&row.kind, assistant_only) {
                (SftKind::Messages(_), _) => "no assistant token to train on (assistant-only loss)",
                (SftKind::PromptCompletion { .. }, true) => "no assistant token in the completion to train on",
                (SftKind::PromptCompletion { .. }, false) => "no completion token to train on",
                (SftKind::Text(_), _) => "no token to train on",
            };
            return Err(LabError::state(format!("line {line}: {why}")));
        }
        Ok(SftExample { line, ids, trained, truncated, lengths: Vec::new() })
    }

    /// A string as the tokenizer encodes it with its special tokens: BOS first when it adds one.
    fn plain(&self, text: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self.tok.bos.into_iter().collect();
        ids.extend(self.tok.bpe.encode(text));
        ids
    }

    fn render(&self, messages: &[Message], generation_prompt: bool, line: usize) -> Result<String> {
        let Some(template) = self.tok.template else {
            return Err(LabError::state(format!("line {line}: no chat template")));
        };
        template.render(messages, generation_prompt).map_err(|e| LabError::state(format!("line {line}: {e}")))
    }

    /// Which of `ids` (the tokens of `full`, the rendering of `messages`) the assistant's messages
    /// write: for assistant message i, the bytes `render(messages[..=i], false)` adds after
    /// `render(messages[..i], true)`, and every token overlapping them (transformers' rule for
    /// `{% generation %}` spans). When the shorter rendering is not where the longer one starts (a
    /// template that writes a default system prompt before a first message only: SmolLM2's, for a
    /// conversation that opens with the assistant), the span starts after its first occurrence in the
    /// longer one.
    fn assistant_mask(&self, messages: &[Message], full: &str, ids: &[u32], line: usize) -> Result<Vec<bool>> {
        if messages.len() > MAX_ASSISTANT_ONLY_MESSAGES {
            return Err(LabError::state(format!(
                "line {line}: {} messages; assistant-only loss takes at most {MAX_ASSISTANT_ONLY_MESSAGES} per row",
                messages.len()
            )));
        }
        let offsets = self.token_offsets(full, ids);
        let mut mask = vec![false; ids.len()];
        for i in (0..messages.len()).filter(|&i| messages[i].role == "assistant") {
            let before = self.render(&messages[..i], true, line)?;
            let through = self.render(&messages[..=i], false, line)?;
            let unclear = || {
                LabError::state(format!(
                    "line {line}: the chat template does not write message {} after the conversation before it: \
                     cannot tell the assistant's tokens",
                    i + 1
                ))
            };
            if !full.starts_with(&through) {
                return Err(unclear());
            }
            let start = if through.starts_with(&before) {
                before.len()
            } else {
                through.find(&before).map(|at| at + before.len()).ok_or_else(unclear)?
            };
            let end = through.len();
            if start >= end {
                continue;
            }
            let (a, b) = match &offsets {
                Some(starts) => {
                    // Token k spans starts[k]..starts[k + 1]; mark those that overlap start..end.
                    let a = starts[1..].partition_point(|&e| e <= start);
                    let b = starts[..ids.len()].partition_point(|&s| s < end);
                    (a, b)
                }
                None => (self.token_at(full, ids, start, false), self.token_at(full, ids, end, true)),
            };
            mask[a..b.max(a)].iter_mut().for_each(|m| *m = true);
        }
        Ok(mask)
    }

    /// Where each token of `ids` starts in `full`, and `full.len()` last, when every token's bytes are
    /// found in `full` one after the other (a byte-level token as its bytes, an added one as its text).
    /// `None` when not: a byte the vocabulary has no token for was dropped, or an unknown token stands
    /// for some.
    fn token_offsets(&self, full: &str, ids: &[u32]) -> Option<Vec<usize>> {
        let (text, bpe) = (full.as_bytes(), self.tok.bpe);
        let mut starts = Vec::with_capacity(ids.len() + 1);
        let mut at = 0;
        let mut buf = Vec::new();
        for &id in ids {
            starts.push(at);
            let token = bpe.token_text(id)?;
            buf.clear();
            let byte_level = !bpe.is_special(id)
                && token.chars().all(|c| match self.byte_of.get(c as usize).copied().flatten() {
                    Some(b) => {
                        buf.push(b);
                        true
                    }
                    None => false,
                });
            let rest = &text[at..];
            if byte_level && rest.starts_with(&buf) {
                at += buf.len();
            } else if rest.starts_with(token.as_bytes()) {
                at += token.len();
            } else {
                return None;
            }
        }
        (at == text.len()).then(|| {
            starts.push(at);
            starts
        })
    }

    /// The token of `ids` (the tokens of `full`) at byte `at`, found by encoding `full[..at]`: the first
    /// token where the two differ, or the end of the prefix's tokens when they agree. With `end`, one
    /// past the token holding the byte before `at`.
    fn token_at(&self, full: &str, ids: &[u32], at: usize, end: bool) -> usize {
        let prefix = self.tok.bpe.encode(&full[..at]);
        let k = common_prefix(&prefix, ids);
        if end && k < prefix.len() {
            (k + 1).min(ids.len())
        } else {
            k
        }
    }
}

/// How many leading ids `a` and `b` share (TRL's `common_prefix_length`).
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
