//! One LoRA-adapted Linear: `y += s · dropout(x) · lora_Aᵀ · lora_Bᵀ`, lora_A r×in, lora_B out×r
//! (PEFT's names; the article calls lora_B "A" and lora_A "B"). For PiSSA the frozen initial factors
//! are subtracted too (`− s · x · A₀ᵀ · B₀ᵀ`), so the frozen base W plus this delta equals PEFT's
//! residual W − s·B₀·A₀ plus the trained s·B·A.

use crate::kernels::{self, par_for, Chunks, Epilogue, Strided};
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct LoraLayer {
    /// Index of the adapted Linear (0, 1, 2 = layers.1, .3, .5).
    pub layer: usize,
    pub in_features: usize,
    pub out_features: usize,
    pub rank: usize,
    pub scaling: f32,
    /// r×in.
    pub lora_a: Vec<f32>,
    /// out×r.
    pub lora_b: Vec<f32>,
    /// PiSSA's initial (lora_A, lora_B), frozen: the part moved out of W.
    pub residual: Option<(Vec<f32>, Vec<f32>)>,
    pub grad_a: Vec<f32>,
    pub grad_b: Vec<f32>,
    scratch: Scratch,
}

/// Per-batch buffers kept for backward: a few values per row, whatever the layer's width (a model
/// with ninety adapted Linears keeps ninety of these).
#[derive(Clone, Debug, Default, PartialEq)]
struct Scratch {
    /// Dropout's kept inputs, one bit per input value (b×in bits; 1 = kept and scaled by 1/(1−p)),
    /// empty without dropout.
    mask: Vec<u64>,
    /// 1/(1−p) of the dropout that drew `mask`.
    keep: f32,
    /// s · x·lora_Aᵀ (b×r).
    u: Vec<f32>,
    /// b×r scratch for the residual path and for dt.
    t: Vec<f32>,
}

/// Values whose dropout draws one parallel task makes (256 words of the mask).
const MASK_CHUNK: usize = 256 * 64;

/// Dropout's mask for `n` values into `mask` (n bits, one word per 64): value i is kept where its draw,
/// `rng.uniform()`, is ≥ p (the same test, made on the draw's integer bits). The draws are made in
/// parallel chunks, each from its place in the stream, so they are those of one `rng.uniform()` per
/// value in order, and `rng` ends past them.
fn draw_mask(rng: &mut Rng, p: f32, n: usize, mask: &mut Vec<u64>) {
    let least = Rng::uniform_at_least(p);
    mask.clear();
    mask.resize(n.div_ceil(64), 0);
    let chunks = Chunks::new(mask, MASK_CHUNK / 64);
    let start = &*rng;
    par_for(chunks.count(), &|c| {
        let first = c * MASK_CHUNK;
        let mut r = start.ahead(first);
        for (w, word) in chunks.take(c).iter_mut().enumerate() {
            let values = (n - first - w * 64).min(64);
            *word = (0..values).fold(0u64, |bits, i| bits | (((r.next_u32() >> 8 >= least) as u64) << i));
        }
    });
    rng.skip(n);
}

/// x after dropout: `x · (kept ? keep : 0)`, as `nn.Dropout` multiplies.
fn masked<'a>(x: &'a [f32], mask: &'a [u64], keep: f32) -> impl Iterator<Item = f32> + 'a {
    x.chunks(64).zip(mask).flat_map(move |(xs, &bits)| {
        xs.iter().enumerate().map(move |(i, &v)| v * if bits >> i & 1 == 1 { keep } else { 0.0 })
    })
}

/// `masked(x)` into a new buffer.
fn apply_mask(x: &[f32], mask: &[u64], keep: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    out.extend(masked(x, mask, keep));
    out
}

impl LoraLayer {
    pub fn new(
        layer: usize,
        (in_features, out_features): (usize, usize),
        rank: usize,
        scaling: f32,
        lora_a: Vec<f32>,
        lora_b: Vec<f32>,
    ) -> Self {
        assert_eq!(lora_a.len(), rank * in_features, "lora_A must be r×in");
        assert_eq!(lora_b.len(), out_features * rank, "lora_B must be out×r");
        Self {
            layer,
            in_features,
            out_features,
            rank,
            scaling,
            grad_a: vec![0.0; lora_a.len()],
            grad_b: vec![0.0; lora_b.len()],
            lora_a,
            lora_b,
            residual: None,
            scratch: Scratch::default(),
        }
    }

    pub fn num_params(&self) -> usize {
        self.lora_a.len() + self.lora_b.len()
    }

    /// ΔW (out×in) this layer adds to the base weight: s·B·A (− s·B₀·A₀ for PiSSA).
    pub fn delta_weight(&self) -> Vec<f32> {
        let (k, n, r) = (self.in_features, self.out_features, self.rank);
        let mut scaled_b = self.lora_b.clone();
        scaled_b.iter_mut().for_each(|v| *v *= self.scaling);
        let mut dw = vec![0.0; n * k];
        kernels::gemm(
            Strided::row_major(&scaled_b, n, r),
            Strided::row_major(&self.lora_a, r, k),
            &mut dw,
            k,
            Epilogue::default(),
        );
        if let Some((a0, b0)) = &self.residual {
            let neg_b0: Vec<f32> = b0.iter().map(|v| -v * self.scaling).collect();
            kernels::gemm(
                Strided::row_major(&neg_b0, n, r),
                Strided::row_major(a0, r, k),
                &mut dw,
                k,
                Epilogue { accumulate: true, ..Epilogue::default() },
            );
        }
        dw
    }

    /// `y (b×out) += delta(x (b×in))`. With `dropout = Some((rng, p))` the adapter's input is
    /// dropped with probability p and the rest scaled by 1/(1−p), as `nn.Dropout` in training.
    pub fn forward(&mut self, x: &[f32], y: &mut [f32], b: usize, dropout: Option<(&mut Rng, f32)>) {
        let (k, r, s) = (self.in_features, self.rank, self.scaling);
        let sc = &mut self.scratch;
        sc.mask.clear();
        let dropped = match dropout {
            Some((rng, p)) if p > 0.0 => {
                sc.keep = 1.0 / (1.0 - p);
                draw_mask(rng, p, x.len(), &mut sc.mask);
                Some(apply_mask(x, &sc.mask, sc.keep))
            }
            _ => None,
        };
        let input = dropped.as_deref().unwrap_or(x);
        sc.u.resize(b * r, 0.0);
        kernels::linear_forward(input, &self.lora_a, None, &mut sc.u, b, k, r, false);
        sc.u.iter_mut().for_each(|v| *v *= s);
        self.add_output(x, y, b);
    }

    /// `y += delta(x)` as the last `forward` (on this same `x`) added it, from the `u` it kept: no
    /// dropout draws, no product with lora_A. For gradient checkpointing's recomputation.
    pub fn forward_again(&mut self, x: &[f32], y: &mut [f32], b: usize) {
        assert_eq!(self.scratch.u.len(), b * self.rank, "forward_again without a forward on this batch");
        self.add_output(x, y, b);
    }

    /// `y += u · lora_Bᵀ` (u = s · dropout(x) · lora_Aᵀ, kept), and PiSSA's `− s · x · A₀ᵀ · B₀ᵀ`.
    fn add_output(&mut self, x: &[f32], y: &mut [f32], b: usize) {
        let (k, n, r, s) = (self.in_features, self.out_features, self.rank, self.scaling);
        let sc = &mut self.scratch;
        let acc = Epilogue { accumulate: true, ..Epilogue::default() };
        kernels::gemm(Strided::row_major(&sc.u, b, r), Strided::transposed(&self.lora_b, r, n), y, n, acc);
        if let Some((a0, b0)) = &self.residual {
            sc.t.resize(b * r, 0.0);
            kernels::linear_forward(x, a0, None, &mut sc.t, b, k, r, false);
            sc.t.iter_mut().for_each(|v| *v *= -s);
            kernels::gemm(Strided::row_major(&sc.t, b, r), Strided::transposed(b0, r, n), y, n, acc);
        }
    }

    /// Backward for the last forward: grad_b = dyᵀ·u, dt = s·dy·B, grad_a = dtᵀ·x_in, and
    /// `dx += (dt·A) ⊙ dropout mask` (plus the residual path's −s·dy·B₀·A₀) when asked.
    pub fn backward(&mut self, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, b: usize) {
        let (k, n, r, s) = (self.in_features, self.out_features, self.rank, self.scaling);
        let sc = &mut self.scratch;
        let dropped = (!sc.mask.is_empty()).then(|| apply_mask(x, &sc.mask, sc.keep));
        let input = dropped.as_deref().unwrap_or(x);
        kernels::linear_weight_grad(dy, &sc.u, &mut self.grad_b, b, r, n, false);
        sc.t.resize(b * r, 0.0);
        kernels::linear_input_grad(dy, &self.lora_b, &mut sc.t, b, r, n);
        sc.t.iter_mut().for_each(|v| *v *= s);
        kernels::linear_weight_grad(&sc.t, input, &mut self.grad_a, b, k, r, false);
        let Some(dx) = dx else { return };
        let acc = Epilogue { accumulate: true, ..Epilogue::default() };
        if let Some(mut through) = dropped {
            // dt·A into the dropped input's buffer, read for the last time above.
            kernels::gemm(
                Strided::row_major(&sc.t, b, r),
                Strided::row_major(&self.lora_a, r, k),
                &mut through,
                k,
                Epilogue::default(),
            );
            dx.iter_mut().zip(masked(&through, &sc.mask, sc.keep)).for_each(|(d, g)| *d += g);
        } else {
            kernels::gemm(Strided::row_major(&sc.t, b, r), Strided::row_major(&self.lora_a, r, k), dx, k, acc);
        }
        if let Some((a0, b0)) = &self.residual {
            kernels::linear_input_grad(dy, b0, &mut sc.t, b, r, n);
            sc.t.iter_mut().for_each(|v| *v *= -s);
            kernels::gemm(Strided::row_major(&sc.t, b, r), Strided::row_major(a0, r, k), dx, k, acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn the_mask_keeps_what_a_uniform_draw_at_or_above_p_keeps() {
        // p·2²⁴ whole and not: the test on integer bits must match `uniform() >= p` at the boundary too.
        for p in [0.05, 0.1, 0.5, 0.25, 1.0 / 3.0, 0.999] {
            // One word, several, and several parallel chunks (the last one short).
            for n in [1, 63, 64, 65, 200, 2 * MASK_CHUNK + 100] {
                let mut rng = Rng::new(7, Stream::Dropout);
                rng.next_u32(); // not at the start of a ChaCha block
                let (mut drawn, mut mask) = (rng.clone(), Vec::new());
                draw_mask(&mut drawn, p, n, &mut mask);
                assert_eq!(mask.len(), n.div_ceil(64));
                for i in 0..n {
                    assert_eq!(mask[i / 64] >> (i % 64) & 1 == 1, rng.uniform() >= p, "p {p}, n {n}, value {i}");
                }
                assert_eq!(drawn.next_u32(), rng.next_u32(), "the stream goes on after the mask's draws");
                assert_eq!(mask.last().unwrap() >> ((n - 1) % 64) >> 1, 0, "no bits past the last value");
            }
        }
    }

    #[test]
    fn gradients_with_dropout_match_finite_differences_of_the_same_mask() {
        let (k, n, r, b, p) = (70, 5, 3, 2, 0.3);
        let mut init = Rng::new(1, Stream::AdapterInit);
        let mut vals = |len: usize| (0..len).map(|_| init.normal()).collect::<Vec<f32>>();
        let (x, a, bm, g) = (vals(b * k), vals(r * k), vals(n * r), vals(b * n));
        let mut layer = LoraLayer::new(0, (k, n), r, 0.7, a, bm);
        let drops = Rng::new(2, Stream::Dropout);
        // Σ y ⊙ g after a forward with the same draws: linear in each of x, lora_A, lora_B.
        let loss = |layer: &mut LoraLayer, x: &[f32]| {
            let mut y = vec![0.0; b * n];
            layer.forward(x, &mut y, b, Some((&mut drops.clone(), p)));
            y.iter().zip(&g).map(|(y, g)| (y * g) as f64).sum::<f64>()
        };
        loss(&mut layer, &x);
        let mut dx = vec![0.0; b * k];
        layer.backward(&x, &g, Some(&mut dx), b);
        assert!(dx.iter().filter(|&&d| d == 0.0).count() >= 10, "some inputs were dropped");
        let fd = |f: &mut dyn FnMut(f32) -> f64| ((f(1.0) - f(-1.0)) / 2.0) as f32;
        for i in 0..b * k {
            let d = fd(&mut |e| {
                let mut xe = x.clone();
                xe[i] += e;
                loss(&mut layer.clone(), &xe)
            });
            assert!((d - dx[i]).abs() < 1e-3 * (1.0 + d.abs()), "dx[{i}]: {} against {d}", dx[i]);
        }
        type Field = for<'l> fn(&'l mut LoraLayer) -> &'l mut Vec<f32>;
        let factors: [(&str, Field, Field); 2] =
            [("lora_A", |l| &mut l.lora_a, |l| &mut l.grad_a), ("lora_B", |l| &mut l.lora_b, |l| &mut l.grad_b)];
        for (name, param, grad) in factors {
            let grads = grad(&mut layer).clone();
            for (i, &g) in grads.iter().enumerate() {
                let d = fd(&mut |e| {
                    let mut l = layer.clone();
                    param(&mut l)[i] += e;
                    loss(&mut l, &x)
                });
                assert!((d - g).abs() < 1e-3 * (1.0 + d.abs()), "{name}[{i}]: {g} against {d}");
            }
        }
    }

    #[test]
    fn a_kept_value_is_scaled_and_a_dropped_one_zeroed_nan_included() {
        let x: Vec<f32> = (0..70).map(|i| i as f32).chain([f32::NAN]).collect();
        let mask = vec![0xAAAA_AAAA_AAAA_AAAA, 0];
        let y = apply_mask(&x, &mask, 2.0);
        for (i, (&v, &d)) in x.iter().zip(&y).enumerate().take(70) {
            assert_eq!(d, if i % 2 == 1 && i < 64 { 2.0 * v } else { 0.0 * v }, "value {i}");
        }
        assert!(y[70].is_nan(), "a dropped NaN stays NaN, as nn.Dropout multiplies");
    }
}
