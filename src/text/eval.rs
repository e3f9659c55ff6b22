//! What the metric scores: each held-out line alone, never packed.

use super::tokenizer::{encode_line, Token};

/// The held-out `lines` as evaluation sequences: each encoded alone as `[BOS] + bytes + [EOS]` and,
/// when longer than `context` tokens (`BLOCK`, 64, the model's positions), truncated to its first
/// `context` tokens, so a line of more than `context − 2` bytes loses its last bytes and its EOS.
///
/// The metric (`evalLoss`) is the mean cross-entropy in nats per predicted token over all these
/// sequences together, each scored alone from BOS: a sequence of n tokens predicts its n − 1 tokens
/// after BOS (the bytes and, unless truncated, EOS). None of the bundled corpora has a line that long
/// (the longest English word is 28 bytes).
pub fn eval_sequences(lines: &[String], context: usize) -> Vec<Vec<Token>> {
    lines
        .iter()
        .map(|line| {
            let mut ids = encode_line(line);
            ids.truncate(context);
            ids
        })
        .collect()
}
