//! Training an adapter over a frozen base the way `prepare_model_for_kbit_training` sets PEFT up, in
//! the memory a browser tab has: gradient checkpointing — each decoder layer's input kept, and its
//! x + attention (one more row of hidden per token), the rest recomputed layer by layer in the backward
//! pass, the deltas reusing what their first forward kept (dropout masks too); but not the top layer,
//! whose activations the forward pass has just made, and not what the backward never reads: the
//! layer's output (down_proj's product, a quarter of a layer's work) and, x + attention being kept,
//! o_proj's product and the attention's weighted sum of the values; nor, for the lowest layers, gate's
//! and up's products, whose outputs are kept as far as `KEPT_GATE_UP_BYTES` allows (selective
//! checkpointing: they are three quarters of what a recomputation multiplies). The output layer and
//! its 49,152-way softmax are computed only at the rows that have a target, `LOSS_ROWS` rows at a time
//! (never all logits of a batch). The base's weights get no gradient buffers. Evaluation runs the same
//! pass without the backward, keeping two layer buffers (or, for rows that begin alike,
//! `shared_prefix`'s).
//!
//! The numbers are those of `forward` + `loss::cross_entropy_part` + `backward` on the same batch:
//! every row's arithmetic is the same (tests/sft.rs checks it).

use super::backward::Scratch;
use super::forward::resize;
use super::layer::{Keys, LayerActs, Output};
use super::model::Llama;
use super::norm;
use super::rope::{Positions, Rope};
use super::shared_prefix::{shared_positions, SharedPrefix};
use crate::error::{LabError, Result};
use crate::lm::loss;
use crate::nn::LayerDelta;

/// Rows of logits computed at once: 64 × 49,152 f32 is 12.6 MB, and as much for their gradient.
pub const LOSS_ROWS: usize = 64;

/// Memory for gate's and up's outputs kept from the forward pass, so that the recomputation of as many
/// layers as it holds (from the lowest up) skips those two products, half of a layer's forward work.
/// 64 MB keeps them for every layer at the demo task's batches (3 × 59 rows at most), 6 at 3 × 256.
pub const KEPT_GATE_UP_BYTES: usize = 64 << 20;

/// One checkpointed pass's input: `b` sequences of `t` tokens (`ids`, b·t), the token each row is trained
/// to predict (`targets`, b·t; None: no loss there), and, for sequences that pack several examples, each
/// token's position in its example (`positions`, b·t, 0 at each example's first token: TRL's
/// `position_ids` in padding-free packing); without, every sequence is one example from position 0.
#[derive(Clone, Copy, Debug)]
pub struct SftBatch<'a> {
    pub ids: &'a [u32],
    pub b: usize,
    pub t: usize,
    pub targets: &'a [Option<u32>],
    pub positions: Option<&'a [u32]>,
}

impl SftBatch<'_> {
    /// Refuses targets or positions that do not fit the batch: counts, ids outside the vocabulary,
    /// positions that do not count up from 0 within each example.
    fn check(&self, vocab: usize) -> Result<()> {
        let n = self.b * self.t;
        if self.targets.len() != n {
            return Err(LabError::setting("targets", format!("{} targets for {n} tokens", self.targets.len())));
        }
        if let Some(&bad) = self.targets.iter().flatten().find(|&&id| id as usize >= vocab) {
            return Err(LabError::setting("targets", format!("{bad} is outside the vocabulary of {vocab}")));
        }
        let Some(p) = self.positions else { return Ok(()) };
        if p.len() != n {
            return Err(LabError::setting("positions", format!("{} positions for {n} tokens", p.len())));
        }
        for (r, row) in p.chunks_exact(self.t.max(1)).enumerate() {
            if let Some(i) = (0..row.len()).find(|&i| row[i] != 0 && (i == 0 || row[i] != row[i - 1] + 1)) {
                return Err(LabError::setting(
                    "positions",
                    format!(
                        "sequence {r}, token {i}: position {} neither starts an example (0) nor follows the one before",
                        row[i]
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What a checkpointed pass keeps, reused across batches.
#[derive(Default)]
pub struct SftActivations {
    b: usize,
    t: usize,
    /// Training: `xs[l]` is layer l's input, `xs[layers]` the last layer's output (n × hidden each).
    /// Evaluation: two buffers, layer l reading `xs[l % 2]`.
    xs: Vec<Vec<f32>>,
    /// Training: `h2s[l]` is layer l's x + attention (n × hidden), below the top layer: its
    /// recomputation starts the MLP from it instead of making it again through o_proj. The buffers are
    /// swapped with the layer's, not copied.
    h2s: Vec<Vec<f32>>,
    /// Training: gate's and up's outputs of the lowest layers, as many as `KEPT_GATE_UP_BYTES` holds
    /// at the most rows a batch has had (swapped, as `h2s`).
    gate_up: Vec<[Vec<f32>; 2]>,
    most_rows: usize,
    /// `KEPT_GATE_UP_BYTES` unless set.
    gate_up_bytes: Option<usize>,
    /// One layer's activations, recomputed for each layer in turn.
    layer: LayerActs,
    scratch: Vec<f32>,
    rope: Option<Rope>,
    /// The rows with a target, their last hidden state, the final norm of it and its statistics.
    rows: Vec<usize>,
    hidden: Vec<f32>,
    normed: Vec<f32>,
    rstd: Vec<f32>,
    /// One chunk's logits and their gradient (LOSS_ROWS × vocab at most).
    logits: Vec<f32>,
    dlogits: Vec<f32>,
    /// The gradient at `normed`, then at `hidden` (rows × hidden).
    dnormed: Vec<f32>,
    dhidden: Vec<f32>,
    grads: Scratch,
    /// Evaluation's buffers for the positions every sequence shares, and how many the last pass shared.
    shared: SharedPrefix,
    shared_last: usize,
}

impl SftActivations {
    /// Bytes the buffers hold now (the page reports it beside the model's).
    pub fn bytes(&self) -> usize {
        let f = |v: &Vec<f32>| v.capacity() * 4;
        self.xs.iter().chain(&self.h2s).chain(self.gate_up.iter().flatten()).map(f).sum::<usize>()
            + [&self.scratch, &self.hidden, &self.normed, &self.logits, &self.dlogits].into_iter().map(f).sum::<usize>()
            + f(&self.dnormed)
            + f(&self.dhidden)
            + self.layer.bytes()
            + self.grads.bytes()
            + self.shared.bytes()
    }

    /// Activations whose gate's and up's outputs kept from the forward pass take at most `bytes`
    /// (`KEPT_GATE_UP_BYTES` by default; 0: every layer recomputes them).
    pub fn with_kept_gate_up_bytes(bytes: usize) -> Self {
        Self { gate_up_bytes: Some(bytes), ..Self::default() }
    }

    /// How many layers kept gate's and up's outputs in the last training pass.
    pub fn kept_gate_up_layers(&self) -> usize {
        self.gate_up.len()
    }

    /// How many first positions the last pass ran once for all its sequences (0: none).
    pub fn shared_positions(&self) -> usize {
        self.shared_last
    }
}

impl Llama {
    /// One pass over `batch` (its sequences of packed examples, or each from position 0) with the loss
    /// at the rows whose `targets` entry is set: → (summed cross-entropy, rows).
    /// With `train` the gradient of (sum / `denom`) flows back through every layer down to the lowest
    /// one `delta` adapts, recomputing each below the top from its saved input, and `delta`'s gradients are written
    /// (the base's weights get none). `delta` must not adapt the output layer.
    #[allow(clippy::too_many_arguments)]
    pub fn sft_pass(
        &self,
        batch: &SftBatch,
        denom: usize,
        acts: &mut SftActivations,
        mut delta: Option<&mut dyn LayerDelta>,
        train: bool,
    ) -> Result<(f64, usize)> {
        let &SftBatch { ids, b, t, targets, positions } = batch;
        self.check_ids(ids, b, t)?;
        let c = &self.cfg;
        let (h, n) = (c.hidden, b * t);
        batch.check(c.vocab)?;
        if delta.as_ref().is_some_and(|d| d.is_active(c.lm_head())) {
            return Err(LabError::setting("targets", "the output layer cannot be adapted in a checkpointed pass"));
        }
        acts.b = b;
        acts.t = t;
        if acts.rope.as_ref().is_none_or(|r| r.context() < c.context) {
            acts.rope = Some(Rope::new(c.head_dim, c.context, c.rope_theta));
        }
        let kept = if train { c.layers + 1 } else { 2 };
        acts.xs.truncate(kept);
        acts.xs.resize_with(kept, Vec::new);
        for x in &mut acts.xs {
            resize(x, n * h);
        }
        let h2s = if train { c.layers - 1 } else { 0 };
        acts.h2s.truncate(h2s);
        acts.h2s.resize_with(h2s, Vec::new);
        acts.most_rows = acts.most_rows.max(n);
        let budget = acts.gate_up_bytes.unwrap_or(KEPT_GATE_UP_BYTES);
        let gate_up = (budget / (2 * 4 * acts.most_rows * c.intermediate)).min(h2s);
        acts.gate_up.truncate(gate_up);
        acts.gate_up.resize_with(gate_up, Default::default);
        let shared = if train { 0 } else { shared_positions(batch, &delta) };
        acts.shared_last = shared;
        if shared > 0 {
            let rope = acts.rope.as_ref().expect("set above");
            let (la, out) = (&mut acts.layer, &mut acts.xs[c.layers % 2]);
            self.forward_shared_prefix(batch, shared, &mut acts.shared, la, &mut acts.scratch, rope, &mut delta, out);
        } else {
            let rope = acts.rope.as_ref().expect("set above");
            self.embed_rows(ids, &mut acts.xs[0]);
            for l in 0..c.layers {
                let (i, o) = if train { (l, l + 1) } else { (l % 2, (l + 1) % 2) };
                let (x, out) = two(&mut acts.xs, i, o);
                let la = &mut acts.layer;
                let keys = Keys::Own(positions);
                self.layer_forward(l, x, Output::Next(out), la, &mut acts.scratch, rope, b, t, keys, &mut delta);
                if train && l + 1 < c.layers {
                    keep(la, &mut acts.h2s[l], acts.gate_up.get_mut(l));
                }
            }
        }
        let last = if train { c.layers } else { c.layers % 2 };

        // The output layer at the rows with a target only, LOSS_ROWS at a time.
        acts.rows.clear();
        acts.rows.extend((0..n).filter(|&i| targets[i].is_some()));
        let m = acts.rows.len();
        resize(&mut acts.hidden, m * h);
        resize(&mut acts.normed, m * h);
        resize(&mut acts.rstd, m);
        for (dst, &r) in acts.hidden.chunks_exact_mut(h).zip(&acts.rows) {
            dst.copy_from_slice(&acts.xs[last][r * h..][..h]);
        }
        norm::forward(&acts.hidden, &self.final_norm, c.rms_norm_eps, &mut acts.normed, &mut acts.rstd);
        if train {
            resize(&mut acts.dnormed, m * h);
        }
        let head = &self.linears[c.lm_head()];
        let v = c.vocab;
        let mut sum = 0.0f64;
        let mut picked: Vec<Option<u32>> = Vec::with_capacity(LOSS_ROWS);
        for (k, rows) in acts.rows.chunks(LOSS_ROWS).enumerate() {
            let r = rows.len();
            resize(&mut acts.logits, r * v);
            resize(&mut acts.dlogits, r * v);
            let x = &acts.normed[k * LOSS_ROWS * h..][..r * h];
            head.forward(x, &mut acts.logits[..r * v], r, false);
            picked.clear();
            picked.extend(rows.iter().map(|&i| targets[i]));
            sum +=
                loss::cross_entropy_part(&acts.logits[..r * v], v, &picked, &mut acts.dlogits[..r * v], denom.max(1));
            if train {
                head.input_grad(&acts.dlogits[..r * v], &mut acts.dnormed[k * LOSS_ROWS * h..][..r * h], r, false);
            }
        }
        if !train || !sum.is_finite() {
            return Ok((sum, m));
        }
        let Some(lowest) = self.lowest_trained_layer(false, &delta) else { return Ok((sum, m)) };

        // The final norm's backward at those rows, scattered into the gradient at the last layer's output.
        resize(&mut acts.dhidden, m * h);
        acts.dhidden.fill(0.0);
        norm::backward(&acts.hidden, &self.final_norm, &acts.rstd, &acts.dnormed, &mut acts.dhidden, None);
        let s = &mut acts.grads;
        s.resize(c, n);
        s.dx.fill(0.0);
        for (g, &r) in acts.dhidden.chunks_exact(h).zip(&acts.rows) {
            s.dx[r * h..][..h].copy_from_slice(g);
        }
        let rope = acts.rope.as_ref().expect("set above");
        for l in (lowest..c.layers).rev() {
            // The layer again (the deltas reuse what their first forward kept, dropout masks included) —
            // but for the top one, whose activations the forward has just left in place.
            if l + 1 < c.layers {
                let la = &mut acts.layer;
                let gate_up = acts.gate_up.get_mut(l);
                let out = Output::Recompute { gate_up: gate_up.is_some() };
                keep(la, &mut acts.h2s[l], gate_up);
                let keys = Keys::Own(positions);
                self.layer_forward(l, &acts.xs[l], out, la, &mut acts.scratch, rope, b, t, keys, &mut delta);
            }
            let la = &mut acts.layer;
            let pos = positions.map_or(Positions::From(0), Positions::Each);
            self.layer_backward(l, &acts.xs[l], la, rope, (b, t, pos), s, None, l > lowest, &mut delta);
        }
        Ok((sum, m))
    }
}

/// Swaps the layer's x + attention (and gate's and up's outputs) with the kept buffers: after a forward,
/// keeps them; before a recomputation, puts them back.
fn keep(la: &mut LayerActs, h2: &mut Vec<f32>, gate_up: Option<&mut [Vec<f32>; 2]>) {
    std::mem::swap(&mut la.h2, h2);
    if let Some([g, u]) = gate_up {
        std::mem::swap(&mut la.g, g);
        std::mem::swap(&mut la.u, u);
    }
}

/// `xs[i]` to read and `xs[o]` to write (i ≠ o).
fn two(xs: &mut [Vec<f32>], i: usize, o: usize) -> (&[f32], &mut [f32]) {
    if i < o {
        let (lo, hi) = xs.split_at_mut(o);
        (&lo[i], &mut hi[0])
    } else {
        let (lo, hi) = xs.split_at_mut(i);
        (&hi[0], &mut lo[o])
    }
}
