//! A byte-level vocabulary of 264: ids 0–255 are the bytes of UTF-8 text, then three special ids
//! and five unused ones (the embedding has rows for them; nothing ever produces them).
//! Any text has a tokenisation and every byte sequence shows as text, so nothing here can fail.

/// A token id, `0..VOCAB`.
pub type Token = u16;

/// Start of a line (the model's `bos_token_id`).
pub const BOS: Token = 256;
/// End of a line (`eos_token_id`): the model ends a sample by predicting it.
pub const EOS: Token = 257;
/// Padding (`pad_token_id`); the loss ignores it.
pub const PAD: Token = 258;
/// Vocabulary size (`vocab_size`): 256 bytes, BOS, EOS, PAD and the unused ids 259–263.
pub const VOCAB: usize = 264;

/// The formatting function: one line becomes `[BOS] + utf8(line) + [EOS]`.
pub fn encode_line(line: &str) -> Vec<Token> {
    let mut ids = Vec::with_capacity(line.len() + 2);
    ids.push(BOS);
    ids.extend(line.bytes().map(Token::from));
    ids.push(EOS);
    ids
}

/// Shows a sequence (typically a generated sample) as text: the bytes after the first BOS (from the
/// start if there is none) up to the first EOS after it (or the end). Any other id that is not a
/// byte (a stray BOS, PAD, 259–263, or anything past the vocabulary) is dropped, and bytes that are
/// not valid UTF-8 show as U+FFFD, as `String::from_utf8_lossy` does.
/// The ids in any width (the model generates `u32`).
pub fn decode<T: Copy + Into<u32>>(ids: &[T]) -> String {
    let ids: Vec<u32> = ids.iter().map(|&t| t.into()).collect();
    let (bos, eos) = (u32::from(BOS), u32::from(EOS));
    let start = ids.iter().position(|&t| t == bos).map_or(0, |i| i + 1);
    let body = &ids[start..];
    let end = body.iter().position(|&t| t == eos).unwrap_or(body.len());
    let bytes: Vec<u8> = body[..end].iter().filter_map(|&t| u8::try_from(t).ok()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
