//! Sampling text with a key/value cache sized to the request: the prompts are run through the decoder
//! layers in chunks (a batched prefill), their keys and values kept; then each step runs the model on
//! the newest token of every sequence only, attending to what the cache holds. The layers are
//! `layer.rs`'s, the same code training and evaluation run. Only the last position's logits are
//! computed (the final norm and `lm_head` on one row per sequence).

use super::forward::{project, resize, Run};
use super::layer::{Keys, LayerActs, Output};
use super::model::Llama;
use super::norm;
use super::rope::Rope;
use crate::error::{LabError, Result};
use crate::kernels;
use crate::nn::LayerDelta;
use crate::rng::Rng;

/// How to pick each next token: temperature, then top-k, then top-p (as transformers' warpers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// 0 picks the most probable token (greedy); otherwise logits are divided by it.
    pub temperature: f32,
    /// Only the `top_k` most probable tokens are candidates (0: all).
    pub top_k: usize,
    /// Only the most probable candidates whose probabilities add up to `top_p` (the first to reach it
    /// included; 1: all).
    pub top_p: f32,
}

impl Sampling {
    /// Greedy decoding.
    pub const GREEDY: Self = Self { temperature: 0.0, top_k: 0, top_p: 1.0 };

    /// Refuses settings no sampler has a meaning for, naming the field.
    pub fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(LabError::setting("temperature", format!("{} is not a number ≥ 0", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(LabError::setting("top_p", format!("{} is not in (0, 1]", self.top_p)));
        }
        Ok(())
    }
}

/// Picks a token from one row of logits.
pub fn pick(logits: &[f32], s: Sampling, rng: &mut Rng) -> u32 {
    let argmax =
        || logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
    if s.temperature == 0.0 {
        return argmax() as u32;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Descending by logit, ties by id: the candidates do not depend on the sort's stability.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if s.top_k > 0 {
        order.truncate(s.top_k);
    }
    let max = logits[order[0]];
    let mut weights: Vec<f64> = order.iter().map(|&i| (((logits[i] - max) / s.temperature) as f64).exp()).collect();
    let mut total: f64 = weights.iter().sum();
    if s.top_p < 1.0 {
        let (mut cum, want) = (0.0, s.top_p as f64 * total);
        let keep = weights.iter().position(|w| {
            cum += w;
            cum >= want
        });
        let keep = keep.map_or(weights.len(), |i| i + 1);
        order.truncate(keep);
        weights.truncate(keep);
        total = weights.iter().sum();
    }
    let mut u = rng.uniform() as f64 * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}

/// Positions the prefill runs through the layers at once: bounds its attention weights
/// (heads × chunk × positions) and activations, whatever the prompt's length.
const PREFILL_CHUNK: usize = 128;

/// `len` zeros for a key/value cache of `cap` positions, or the error saying the memory ran out and what
/// to change (a browser tab's memory is bounded; a failed allocation must not end the worker).
fn zeros(len: usize, cap: usize, c: &super::LmConfig) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    if v.try_reserve_exact(len).is_err() {
        let mb = (2 * c.layers * len * 4) as f64 / 1e6;
        return Err(LabError::state(format!(
            "out of memory: the key/value cache for {cap} positions needs {mb:.0} MB; ask for fewer new tokens or \
             give a shorter prompt"
        )));
    }
    v.resize(len, 0.0);
    Ok(v)
}

/// What a generation asks for beyond the sampling.
#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions<'a> {
    /// New tokens at most (the context is the other bound).
    pub max_new: usize,
    /// Tokens that end a sequence (included in it).
    pub stop: &'a [u32],
    /// Each new token's Linears with 8-bit activations (`kernels::quant_linear_forward_int8`, llama.cpp's
    /// arithmetic): several times faster on weights with integer codes, but not the exact forward, so
    /// the text may part from transformers'. The prompt's prefill stays exact.
    pub int8: bool,
}

impl Llama {
    /// Continues each of `prompts` (all of one length) until EOS or the context is full, and returns
    /// the whole sequences (prompt included, EOS included when met).
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        s: Sampling,
        rng: &mut Rng,
        delta: Option<&mut dyn LayerDelta>,
    ) -> Result<Vec<Vec<u32>>> {
        let limits = GenerateOptions { max_new: self.cfg.context, stop: &[self.cfg.eos], int8: false };
        self.generate_with(prompts, limits, s, rng, delta, &mut |_, _| true)
    }

    /// `generate` with a limit of new tokens and the stop tokens; `on_token(sequence, token)` sees each
    /// token as it is picked and ends the generation by returning false.
    pub fn generate_with(
        &self,
        prompts: &[Vec<u32>],
        limits: GenerateOptions,
        s: Sampling,
        rng: &mut Rng,
        mut delta: Option<&mut dyn LayerDelta>,
        on_token: &mut dyn FnMut(usize, u32) -> bool,
    ) -> Result<Vec<Vec<u32>>> {
        let c = &self.cfg;
        let n = prompts.len();
        let p = prompts.first().map_or(0, Vec::len);
        if n == 0 || p == 0 || prompts.iter().any(|q| q.len() != p) {
            return Err(LabError::setting("prompts", "give at least one prompt, all of the same non-zero length"));
        }
        s.check()?;
        let flat: Vec<u32> = prompts.concat();
        self.check_ids(&flat, n, p)?;
        // The cache holds the prompt and what may follow it, never more than the context.
        let cap = (p + limits.max_new).min(c.context);
        let (h, d) = (c.hidden, c.head_dim);
        let rope = Rope::new(d, cap, c.rope_theta);
        let cache_len = n * c.kv_dim() * cap;
        let (mut cache_k, mut cache_v) = (Vec::with_capacity(c.layers), Vec::with_capacity(c.layers));
        for _ in 0..c.layers {
            cache_k.push(zeros(cache_len, cap, c)?);
            cache_v.push(zeros(cache_len, cap, c)?);
        }
        let mut la = LayerActs::default();
        let (mut x, mut x_next, mut sc) = (Vec::new(), Vec::new(), Vec::new());
        let (mut last, mut f, mut rstd, mut logits) =
            (vec![0.0; n * h], vec![0.0; n * h], vec![0.0; n], vec![0.0; n * c.vocab]);
        let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
        let mut done = vec![false; n];
        let mut pos = 0;
        while pos < cap && !done.iter().all(|&d| d) {
            // The prompt in chunks, then one new token per step.
            let t = if pos < p { PREFILL_CHUNK.min(p - pos) } else { 1 };
            // A finished sequence goes on being fed its last token (its results are not used).
            let ids: Vec<u32> =
                seqs.iter().flat_map(|q| (pos..pos + t).map(|i| q.get(i).copied().unwrap_or(q[q.len() - 1]))).collect();
            // Sampling starts after the prompt's last token.
            let sample = pos + t >= p && pos + t < cap;
            let int8 = limits.int8 && pos >= p;
            // One pool stretch per step: its threads poll between the step's parallel calls.
            kernels::on_pool(|| {
                resize(&mut x, n * t * h);
                resize(&mut x_next, n * t * h);
                self.embed_rows(&ids, &mut x);
                for l in 0..c.layers {
                    let keys = Keys::Cache { k: &mut cache_k[l], v: &mut cache_v[l], cap, pos0: pos, int8 };
                    let out = Output::Next(&mut x_next);
                    self.layer_forward(l, &x, out, &mut la, &mut sc, &rope, n, t, keys, &mut delta);
                    std::mem::swap(&mut x, &mut x_next);
                }
                if sample {
                    for (dst, src) in last.chunks_exact_mut(h).zip(x.chunks_exact(t * h)) {
                        dst.copy_from_slice(&src[(t - 1) * h..]);
                    }
                    norm::forward(&last, &self.final_norm, c.rms_norm_eps, &mut f, &mut rstd);
                    project(self, c.lm_head(), &f, &mut logits, n, Run::int8(int8), &mut delta);
                }
            });
            pos += t;
            if !sample {
                continue;
            }
            for (i, ((seq, fin), row)) in seqs.iter_mut().zip(&mut done).zip(logits.chunks_exact(c.vocab)).enumerate() {
                if *fin {
                    continue;
                }
                let tok = pick(row, s, rng);
                seq.push(tok);
                *fin = limits.stop.contains(&tok) || seq.len() >= cap || seq.len() - p >= limits.max_new;
                if !on_token(i, tok) {
                    return Ok(seqs);
                }
            }
        }
        Ok(seqs)
    }
}
