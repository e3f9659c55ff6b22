//! Byte-level BPE's pre-tokenizers: how text is cut into the words that merges never cross.
//!
//! `gpt2` is GPT-2's regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` (Hugging Face's
//! `ByteLevel(use_regex=true)`), and `smollm` first splits every numeric character into a word of
//! its own (`Digits(individual_digits=true)`) and then applies the same regex to what lies between,
//! as SmolLM2's `tokenizer.json` and llama.cpp's `smollm` do.
//!
//! The regex is a hand-written scanner rather than a regex engine: its alternatives are runs of one
//! character class with an optional leading space, so a scanner is short, linear, and costs the wasm
//! a 5 KB letter table instead of a regex crate's Unicode tables. The classes: `\s` is Unicode's
//! `White_Space` (`char::is_whitespace`, as Oniguruma's and the `regex` crate's `\s`), `\p{N}` is
//! general category N (`char::is_numeric`: Nd, Nl, No; the same test `Digits` uses) and `\p{L}` is
//! general category L ([`super::letters`]). The lookahead `\s+(?!\S)` is the known trick: a
//! whitespace run followed by a non-space gives its last character back to the word after it.

use super::letters::is_letter;
use crate::{LabError, Result};

/// The pre-tokenizer of a byte-level BPE tokenizer (`tokenizer.ggml.pre` in a GGUF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's regex alone.
    Gpt2,
    /// Each numeric character alone, then GPT-2's regex (SmolLM2).
    Smollm,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp names `name` (`tokenizer.ggml.pre`); `key` names where the name
    /// was read, for the error.
    pub fn from_name(name: &str, file: &str, key: &str) -> Result<Self> {
        match name {
            "gpt2" => Ok(Self::Gpt2),
            "smollm" => Ok(Self::Smollm),
            other => Err(LabError::file(
                file,
                format!("{key}: the pre-tokenizer {other:?} is not supported (only \"smollm\" and \"gpt2\" are)"),
            )),
        }
    }

    /// The name llama.cpp gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::Smollm => "smollm",
        }
    }

    /// Calls `word` with each word of `text` in order; the words concatenate to `text`.
    pub fn split(self, text: &str, mut word: impl FnMut(&str)) {
        match self {
            Self::Gpt2 => split_gpt2(text, &mut word),
            Self::Smollm => {
                let mut start = 0;
                for (i, c) in text.char_indices() {
                    if c.is_numeric() {
                        split_gpt2(&text[start..i], &mut word);
                        let end = i + c.len_utf8();
                        word(&text[i..end]);
                        start = end;
                    }
                }
                split_gpt2(&text[start..], &mut word);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Space,
    Letter,
    Number,
    Other,
}

fn class(c: char) -> Class {
    if c.is_whitespace() {
        Class::Space
    } else if is_letter(c) {
        Class::Letter
    } else if c.is_numeric() {
        Class::Number
    } else {
        Class::Other
    }
}

/// The byte length of the run of `class` characters at the start of `s`.
fn run(s: &str, class_of_run: Class) -> usize {
    s.char_indices().find(|&(_, c)| class(c) != class_of_run).map_or(s.len(), |(i, _)| i)
}

/// GPT-2's regex, alternative by alternative, leftmost first as a backtracking engine tries them.
fn split_gpt2(text: &str, word: &mut impl FnMut(&str)) {
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let mut chars = rest.chars();
        let Some(c) = chars.next() else { break };
        let next = chars.next();
        let len = if let Some(n) = contraction(rest) {
            n
        } else {
            match class(c) {
                Class::Space => {
                    let after = &rest[c.len_utf8()..];
                    match next.map(class) {
                        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` with their space.
                        Some(k) if c == ' ' && k != Class::Space => 1 + run(after, k),
                        _ => {
                            let n = run(rest, Class::Space);
                            if n == rest.len() {
                                n // `\s+(?!\S)` at the end of the text
                            } else {
                                // Followed by a non-space: `\s+(?!\S)` leaves the last character
                                // to the next word, and a single character is `\s+`'s.
                                let last = rest[..n].chars().next_back().map_or(0, char::len_utf8);
                                if n > last {
                                    n - last
                                } else {
                                    n
                                }
                            }
                        }
                    }
                }
                k => run(rest, k),
            }
        };
        word(&rest[..len]);
        i += len;
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d` at the start of `s`: its byte length.
fn contraction(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'\'') {
        return None;
    }
    match b.get(1) {
        Some(b's' | b't' | b'm' | b'd') => Some(2),
        Some(b'r') if b.get(2) == Some(&b'e') => Some(3),
        Some(b'v') if b.get(2) == Some(&b'e') => Some(3),
        Some(b'l') if b.get(2) == Some(&b'l') => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreTokenizer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pre.split(text, |w| out.push(w.to_string()));
        out
    }

    #[test]
    fn gpt2_regex_cases() {
        let g = PreTokenizer::Gpt2;
        assert_eq!(words(g, "Hello world"), ["Hello", " world"]);
        assert_eq!(words(g, "don't  stop"), ["don", "'t", " ", " stop"]);
        assert_eq!(words(g, "  9"), [" ", " 9"]);
        assert_eq!(words(g, "a \nb"), ["a", " ", "\n", "b"]);
        assert_eq!(words(g, "x  "), ["x", "  "]);
        assert_eq!(words(g, "''s ?!"), ["''", "s", " ?!"]);
        assert_eq!(words(g, "é1½"), ["é", "1½"]);
        assert_eq!(words(g, ""), Vec::<String>::new());
    }

    #[test]
    fn smollm_splits_digits_first() {
        let s = PreTokenizer::Smollm;
        assert_eq!(words(s, "  9"), ["  ", "9"]);
        assert_eq!(words(s, "a1b22"), ["a", "1", "b", "2", "2"]);
        assert_eq!(words(s, "x 12 y"), ["x", " ", "1", "2", " y"]);
    }
}
