//! The language model's data, from bytes to token sequences: `tokenizer` maps text to byte ids and
//! back, `corpus` parses and validates the word lists and a person's own lines and splits them into
//! training and held-out lines, `packing` turns training lines into fixed-size blocks as TRL's
//! `SFTTrainer(packing=True)` does, `eval` turns held-out lines into the sequences the metric scores.
//!
//! Tokens stay `u16` (264 ids) until the model embeds them: the English words' 3 M training tokens
//! are 6 MB so, and would be 12 MB as `u32`.

mod corpus;
mod eval;
mod packing;
mod tokenizer;

pub use corpus::{parse_json_strings, parse_lines, user_lines, Corpus, USER_FILE, USER_MAX_BYTES};
pub use eval::eval_sequences;
pub use packing::{pack, Blocks};
pub use tokenizer::{decode, encode_line, Token, BOS, EOS, PAD, VOCAB};

/// Tokens per training block and per evaluated sequence: the model's `max_position_embeddings`
/// (TRL's `max_seq_length`).
pub const BLOCK: usize = 64;
