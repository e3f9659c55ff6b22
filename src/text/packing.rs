//! Training sequences as TRL's `SFTTrainer(packing=True)` makes them ("wrapped" packing): every
//! training line encoded (`[BOS] + bytes + [EOS]`), the encodings concatenated back to back in
//! order, and the stream cut into blocks of `block` tokens. A line may span two blocks (or more,
//! when it is longer than a block), and attention within a block crosses line boundaries.
//!
//! The short tail is dropped, as TRL's older `ConstantLengthDataset` did. Current TRL
//! (`pack_dataset(strategy="wrapped")`) keeps each map batch's tail as a shorter last sample; on the
//! English words that is under 64 of 3 M tokens, and fixed-size blocks keep every batch rectangular.

use super::tokenizer::{encode_line, Token};
use crate::{LabError, Result};

/// `len()` blocks of `block_len()` tokens, row-major; block indices are `u32`, like sample indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocks {
    block: usize,
    /// `len() × block` tokens.
    tokens: Vec<Token>,
    /// Tokens in the stream before the tail was dropped.
    total_tokens: usize,
}

/// Packs `lines` into blocks of `block` tokens (`BLOCK`, 64, for the model), dropping the short
/// tail; fewer tokens than one block give no blocks. `block` must be at least 1.
pub fn pack(lines: &[String], block: usize) -> Result<Blocks> {
    if block == 0 {
        return Err(LabError::setting("block length", "must be at least 1 token"));
    }
    let total_tokens: usize = lines.iter().map(|l| l.len() + 2).sum();
    let kept = total_tokens / block * block;
    if u32::try_from(kept / block).is_err() {
        return Err(LabError::state(format!("{} blocks: more than u32 indices can address", kept / block)));
    }
    let mut tokens = Vec::with_capacity(kept);
    for line in lines {
        if tokens.len() >= kept {
            break;
        }
        tokens.extend(encode_line(line));
    }
    tokens.truncate(kept);
    Ok(Blocks { block, tokens, total_tokens })
}

impl Blocks {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.tokens.len() / self.block
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Tokens per block.
    pub fn block_len(&self) -> usize {
        self.block
    }

    /// Tokens the lines made before the tail was dropped (`len() × block_len()` were kept).
    pub fn total_tokens(&self) -> usize {
        self.total_tokens
    }

    /// All kept tokens, block after block.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The tokens of block `i`. Panics if `i >= len()` (a programmer error: use `fill` for indices
    /// that come from elsewhere).
    pub fn block(&self, i: usize) -> &[Token] {
        &self.tokens[i * self.block..(i + 1) * self.block]
    }

    /// Copies the blocks named by `batch` into `out` (`batch.len() × block_len()`, row-major), the
    /// batch's input ids. A wrong buffer length or an index past the last block is an error, not a
    /// panic, and nothing is written then.
    pub fn fill(&self, batch: &[u32], out: &mut [u32]) -> Result<()> {
        let b = batch.len();
        if Some(out.len()) != b.checked_mul(self.block) {
            return Err(LabError::state(format!(
                "Blocks::fill: a batch of {b} blocks of {} tokens needs {b}×{} ids, got room for {}",
                self.block,
                self.block,
                out.len()
            )));
        }
        if let Some(&i) = batch.iter().find(|&&i| i as usize >= self.len()) {
            return Err(LabError::state(format!("Blocks::fill: block {i} is past the end of {} blocks", self.len())));
        }
        for (row, &i) in out.chunks_exact_mut(self.block).zip(batch) {
            for (id, &t) in row.iter_mut().zip(self.block(i as usize)) {
                *id = t.into();
            }
        }
        Ok(())
    }
}
