//! The language model's data, from bytes to token sequences: `tokenizer` maps text to byte ids and
//! back, `corpus` parses and validates the word lists and a person's own lines and splits them into
//! training and held-out lines, `packing` turns training lines into fixed-size blocks as TRL's
//! `SFTTrainer(packing=True)` does, `eval` turns held-out lines into the sequences the metric scores.
//! A pretrained model's fine-tuning data: `sft` reads TRL's JSONL forms into examples, `sft_pack`
//! packs them as TRL does.
//!
//! A pretrained model's text: `bpe` is its byte-level BPE (SmolLM2's), built from a GGUF's
//! `tokenizer.ggml.*` arrays or read by `tokenizer_json`, cutting words with `pretokenize` (whose
//! letter class is `letters`); `chat_template` renders its Jinja chat template.
//!
//! The byte tokenizer's tokens stay `u16` (264 ids) in the corpora: the English words' 3 M training
//! tokens are 6 MB so, and would be 12 MB as `u32`; a batch widens them as it is filled. BPE ids and
//! the model's ids are `u32` (vocabularies to 262,144: Llama 3's 128,256 and Qwen's 151,936 fit).

mod bpe;
mod chat_template;
mod corpus;
mod eval;
mod letters;
mod packing;
mod pretokenize;
mod sft;
mod sft_pack;
mod tokenizer;
mod tokenizer_json;

pub use bpe::{byte_chars, Bpe};
pub use chat_template::{ChatTemplate, Message};
pub use corpus::{parse_json_strings, parse_lines, user_lines, Corpus, USER_FILE, USER_MAX_BYTES};
pub use eval::eval_sequences;
pub use packing::{pack, Blocks};
pub use pretokenize::PreTokenizer;
pub use sft::{
    encode_sft, parse_sft_jsonl, Content, SftExample, SftKind, SftRow, SftTokenizer, MAX_ASSISTANT_ONLY_MESSAGES,
    MAX_SFT_BYTES, MAX_SFT_LINE_BYTES, MAX_SFT_ROWS,
};
pub use sft_pack::{pack_sft, pack_sft_bfd, PACK_MAP_BATCH};
pub use tokenizer::{decode, encode_line, Token, BOS, EOS, PAD, VOCAB};

/// Tokens per training block and per evaluated sequence: the model's `max_position_embeddings`
/// (TRL's `max_seq_length`).
pub const BLOCK: usize = 64;
