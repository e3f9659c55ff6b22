//! Which samples a training step sees: a fresh seeded permutation every epoch, cut into batches
//! (PyTorch's `DataLoader(shuffle=True)`, `drop_last=False`), and replay mixing for adapters.

use crate::rng::Rng;
use crate::{LabError, Result};

/// Per-epoch shuffled orders of a fixed set of samples, from a seeded `Rng`
/// (`Stream::BaseShuffle` or `Stream::AdapterShuffle`): the same seed gives the same epochs.
///
/// Stateful rather than an iterator so that a step-by-step training loop can keep it alongside
/// its position: call `next_epoch`, then take `batch(0)`, `batch(1)`, ... until `None`.
pub struct EpochOrder {
    samples: Vec<u32>,
    /// The current epoch's order; empty until the first `next_epoch`.
    order: Vec<u32>,
    batch_size: usize,
    epoch: usize,
    rng: Rng,
}

impl EpochOrder {
    /// `samples` are dataset indices (an empty list gives epochs with no batches);
    /// `batch_size` must be at least 1.
    pub fn new(samples: Vec<u32>, batch_size: usize, rng: Rng) -> Result<Self> {
        if batch_size == 0 {
            return Err(LabError::setting("batch size", "must be at least 1"));
        }
        Ok(Self { samples, order: Vec::new(), batch_size, epoch: 0, rng })
    }

    /// Starts the next epoch with a new permutation of the samples and returns it.
    /// Each epoch permutes the original list afresh, so its order depends only on the seed
    /// and the epoch number.
    pub fn next_epoch(&mut self) -> &[u32] {
        self.order.clear();
        self.order.extend_from_slice(&self.samples);
        self.rng.shuffle(&mut self.order);
        self.epoch += 1;
        &self.order
    }

    /// Batch `b` of the current epoch (the last one may be short), or `None` past the end
    /// or before the first `next_epoch`.
    pub fn batch(&self, b: usize) -> Option<&[u32]> {
        self.order.chunks(self.batch_size).nth(b)
    }

    /// All batches of the current epoch, in order.
    pub fn batches(&self) -> std::slice::Chunks<'_, u32> {
        self.order.chunks(self.batch_size)
    }

    /// The current epoch's order (empty before the first `next_epoch`).
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Batches per epoch: `ceil(len / batch_size)`.
    pub fn batches_per_epoch(&self) -> usize {
        self.samples.len().div_ceil(self.batch_size)
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Epochs started so far (0 before the first `next_epoch`).
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Samples per epoch.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The adapter's training set with replay: all of `primary`, followed by
/// `round(fraction × primary.len())` distinct entries of `replay_pool` drawn with `rng`
/// (`Stream::Replay`), or the whole pool when it is smaller. Replaying some of the base task's
/// samples is what keeps an adapter from forgetting it. `fraction` must be finite and in [0, 1].
/// The result is not shuffled: `EpochOrder` does that.
pub fn mix_replay(primary: &[u32], replay_pool: &[u32], fraction: f32, rng: &mut Rng) -> Result<Vec<u32>> {
    if !fraction.is_finite() || !(0.0..=1.0).contains(&fraction) {
        return Err(LabError::setting("replay fraction", format!("must be a number from 0 to 1, got {fraction}")));
    }
    let want = (fraction as f64 * primary.len() as f64).round() as usize;
    let take = want.min(replay_pool.len());
    // Partial Fisher–Yates: the first `take` entries of a permutation of the pool.
    let mut pool = replay_pool.to_vec();
    for i in 0..take {
        let j = i + rng.below((pool.len() - i) as u32) as usize;
        pool.swap(i, j);
    }
    let mut out = Vec::with_capacity(primary.len() + take);
    out.extend_from_slice(primary);
    out.extend_from_slice(&pool[..take]);
    Ok(out)
}
