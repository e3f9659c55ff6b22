//! Packing, as TRL's `SFTTrainer(packing=True)` packs the training examples into rows of `max_length`
//! (`pack_dataset`, trl/data_utils.py), inside `Dataset.map(batched=True)`, whose batches are
//! [`PACK_MAP_BATCH`] examples: each batch is packed on its own. Two strategies:
//! - `"bfd"` (TRL's default, [`pack_sft_bfd`]): whole examples, each cut to the block, binned best-fit
//!   decreasing; each keeps its own positions from 0 and attends to itself only (TRL turns on
//!   padding-free mode for it; here the row's `lengths` reach the model as per-token positions).
//! - `"wrapped"` ([`pack_sft`]): the examples back to back, cut into rows, attention crossing the seams.

use std::collections::{BTreeMap, VecDeque};

use super::SftExample;

/// Rows `datasets.Dataset.map(batched=True)` hands TRL's packing function at once (its default
/// `batch_size`): each batch is packed on its own.
pub const PACK_MAP_BATCH: usize = 1_000;

/// TRL's `packing_strategy="bfd"` (`_pack_bfd` with `on_seq_length_overflow="truncate"`, data_utils.py
/// 730): per map batch, each example cut to its first `block` tokens (marked `truncated` when cut), then
/// the examples by length, longest first (ties in their order), each put into the open row whose free
/// space is the smallest that fits it — of rows with the same free space, the one that reached it first
/// — or into a new row. Rows come in the order they were opened, their examples in the order they were
/// put in; `lengths` says where each starts, `line` is the first one's. `block` 0 is taken as 1.
pub fn pack_sft_bfd(examples: &[SftExample], block: usize) -> Vec<SftExample> {
    let block = block.max(1);
    let mut out = Vec::new();
    for batch in examples.chunks(PACK_MAP_BATCH) {
        let len = |e: &SftExample| e.ids.len().min(block);
        let mut order: Vec<usize> = (0..batch.len()).filter(|&i| !batch[i].ids.is_empty()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(len(&batch[i])));
        // The rows (their examples), and the rows with each amount of free space, first come first.
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut by_space: BTreeMap<usize, VecDeque<usize>> = BTreeMap::new();
        for i in order {
            let n = len(&batch[i]);
            let fit = by_space.range(n..).next().map(|(&space, _)| space);
            let (row, space) = match fit {
                Some(space) => {
                    let queue = by_space.get_mut(&space).expect("a space in the map has rows");
                    let row = queue.pop_front().expect("queues in the map are not empty");
                    if queue.is_empty() {
                        by_space.remove(&space);
                    }
                    (row, space)
                }
                None => {
                    rows.push(Vec::new());
                    (rows.len() - 1, block)
                }
            };
            rows[row].push(i);
            if space > n {
                by_space.entry(space - n).or_default().push_back(row);
            }
        }
        for row in rows {
            let mut e = SftExample {
                line: batch[row[0]].line,
                ids: Vec::new(),
                trained: Vec::new(),
                truncated: false,
                lengths: Vec::with_capacity(row.len()),
            };
            for i in row {
                let (x, n) = (&batch[i], len(&batch[i]));
                e.ids.extend_from_slice(&x.ids[..n]);
                e.trained.extend_from_slice(&x.trained[..n]);
                e.truncated |= x.truncated || n < x.ids.len();
                e.lengths.push(n);
            }
            out.push(e);
        }
    }
    out
}

/// TRL's `packing_strategy="wrapped"` (`_pack_wrapped`, data_utils.py 820): the examples' ids and masks
/// concatenated in order and cut into rows of `block` tokens, attention crossing the examples' ends
/// within a row. TRL packs inside `Dataset.map(batched=True)`, whose batches are [`PACK_MAP_BATCH`]
/// (1,000) examples: each batch is concatenated and cut on its own, and its short tail is kept as a
/// shorter row, so a dataset of more than 1,000 examples has a short row after every 1,000th. `line` of
/// a packed row is the line of its first token; `truncated` says one of its examples was; `trained[0]`
/// of every row is false. `block` 0 is taken as 1.
///
/// One difference from TRL: TRL's label on an example's first token is kept where the example trains
/// that token (`text` rows, `messages` without assistant-only loss), so in a packed row the model is
/// also trained to predict the next example's first token from the end of the previous one. That
/// token's `trained` is false here (`SftExample::trained[0]` is always false): one token less per example.
pub fn pack_sft(examples: &[SftExample], block: usize) -> Vec<SftExample> {
    let block = block.max(1);
    let mut out = Vec::new();
    for batch in examples.chunks(PACK_MAP_BATCH) {
        let total: usize = batch.iter().map(|e| e.ids.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut trained = Vec::with_capacity(total);
        // (first token, line, truncated) of each example.
        let mut starts = Vec::with_capacity(batch.len());
        for e in batch {
            starts.push((ids.len(), e.line, e.truncated));
            ids.extend_from_slice(&e.ids);
            trained.extend_from_slice(&e.trained);
        }
        let mut from = 0;
        let mut first = 0; // index into `starts` of the example holding token `from`
        while from < total {
            let to = (from + block).min(total);
            while first + 1 < starts.len() && starts[first + 1].0 <= from {
                first += 1;
            }
            let mut last = first;
            while last + 1 < starts.len() && starts[last + 1].0 < to {
                last += 1;
            }
            let mut row_trained = trained[from..to].to_vec();
            row_trained[0] = false;
            out.push(SftExample {
                line: starts[first].1,
                ids: ids[from..to].to_vec(),
                trained: row_trained,
                truncated: starts[first..=last].iter().any(|s| s.2),
                lengths: Vec::new(),
            });
            from = to;
        }
    }
    out
}
