//! The article's `nn.Sequential(Flatten, Linear(784,512), ReLU, Linear(512,256), ReLU, Linear(256,10))`.
//! Its Linear layers keep PyTorch's names `layers.1`, `layers.3`, `layers.5`.
//!
//! `nn` knows nothing of LoRA: anything added to a layer's output goes through the `LayerDelta` hook.

use super::linear::{Linear, LinearGrads};
use crate::kernels;
use crate::rng::Rng;

pub const INPUT: usize = 784;
pub const CLASSES: usize = 10;
/// (in, out) of each Linear, in order.
pub const LAYER_SHAPES: [(usize, usize); 3] = [(784, 512), (512, 256), (256, 10)];
/// A blank pixel after normalisation, `(0/255 − 0.5)/0.5`: four in five of layer 1's inputs. Layer 1's
/// forward and weight gradient skip what blank pixels add (`kernels::linear_forward_offset`,
/// `kernels::weight_grad_offset`).
pub const BLANK_INPUT: f32 = -1.0;
/// PyTorch's state-dict names of the three Linear layers.
pub const LAYER_NAMES: [&str; 3] = ["layers.1", "layers.3", "layers.5"];

/// Something added to a Linear's output before its activation: `y += delta(x)`.
pub trait LayerDelta: Send {
    /// Whether layer `i` (0, 1, 2) has a delta.
    fn is_active(&self, i: usize) -> bool;
    /// `y (b×out) += delta_i(x (b×in))`, after the base product and bias, before the ReLU.
    fn forward(&mut self, i: usize, x: &[f32], y: &mut [f32], b: usize);
    /// With dy (b×out) at the layer's pre-activation output: store the delta's own gradients, and add
    /// its share of the input gradient to `dx` (b×in) when given.
    fn backward(&mut self, i: usize, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, b: usize);
    /// `y += delta_i(x)` once more, as the last `forward` of layer `i` added it, on the same `x` and
    /// before that forward's `backward` (gradient checkpointing recomputes a layer in the backward pass):
    /// the same numbers, with no new random draws — what the first forward kept (dropout's mask, its
    /// low-rank product) is reused, as PyTorch's `checkpoint(preserve_rng_state=True)` replays the draws.
    fn forward_again(&mut self, i: usize, x: &[f32], y: &mut [f32], b: usize);
    /// Whether `forward` draws random numbers (dropout in training).
    fn draws(&self) -> bool {
        false
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub layers: [Linear; 3],
}

/// A batch's activations: `xs[0]` the input (b×784), `xs[1]`, `xs[2]` the ReLU outputs (b×512, b×256),
/// `xs[3]` the logits (b×10). Layer i reads `xs[i]` and writes `xs[i+1]`.
pub struct Activations {
    pub b: usize,
    pub xs: [Vec<f32>; 4],
}

impl Activations {
    pub fn new(b: usize) -> Self {
        let w = [INPUT, LAYER_SHAPES[0].1, LAYER_SHAPES[1].1, CLASSES];
        Self { b, xs: w.map(|n| vec![0.0; b * n]) }
    }
    /// Resizes for a batch of `b` (the last batch of an epoch may be short).
    pub fn resize(&mut self, b: usize) {
        let w = [INPUT, LAYER_SHAPES[0].1, LAYER_SHAPES[1].1, CLASSES];
        for (x, n) in self.xs.iter_mut().zip(w) {
            x.resize(b * n, 0.0);
        }
        self.b = b;
    }
    pub fn input_mut(&mut self) -> &mut [f32] {
        &mut self.xs[0]
    }
    pub fn logits(&self) -> &[f32] {
        &self.xs[3]
    }
}

/// Which base gradients a backward pass computes (frozen layers compute none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradNeeds {
    pub weight: [bool; 3],
    pub bias: [bool; 3],
}

impl GradNeeds {
    pub const ALL: Self = Self { weight: [true; 3], bias: [true; 3] };
    pub const NONE: Self = Self { weight: [false; 3], bias: [false; 3] };
}

pub struct MlpGrads {
    pub layers: [LinearGrads; 3],
    /// Gradients at each layer's output, scratch for backward: `dys[i]` is b×out of layer i.
    dys: [Vec<f32>; 3],
}

impl MlpGrads {
    pub fn zeros(mlp: &Mlp) -> Self {
        Self { layers: mlp.layers.each_ref().map(LinearGrads::zeros), dys: [vec![], vec![], vec![]] }
    }
    /// In the order of `Mlp::params_mut`.
    pub fn tensors(&self) -> [&[f32]; 6] {
        let [a, b, c] = &self.layers;
        [&a.weight, &a.bias, &b.weight, &b.bias, &c.weight, &c.bias]
    }
}

impl Mlp {
    /// PyTorch's default init, layer by layer from one stream.
    pub fn new(rng: &mut Rng) -> Self {
        Self { layers: LAYER_SHAPES.map(|(i, o)| Linear::new(i, o, rng)) }
    }

    pub fn num_params(&self) -> usize {
        self.layers.iter().map(Linear::num_params).sum()
    }

    /// [w1, b1, w3, b3, w5, b5].
    pub fn params_mut(&mut self) -> [&mut [f32]; 6] {
        let [a, b, c] = &mut self.layers;
        [&mut a.weight, &mut a.bias, &mut b.weight, &mut b.bias, &mut c.weight, &mut c.bias]
    }

    pub fn params(&self) -> [&[f32]; 6] {
        let [a, b, c] = &self.layers;
        [&a.weight, &a.bias, &b.weight, &b.bias, &c.weight, &c.bias]
    }

    /// Forward from `acts.xs[0]`; logits end in `acts.xs[3]`.
    pub fn forward(&self, acts: &mut Activations, delta: Option<&mut dyn LayerDelta>) {
        self.forward_layers(0..3, acts, delta);
    }

    /// Runs only layers `range` (reading `acts.xs[range.start]`): a prefix computes features once,
    /// a suffix trains on cached features.
    pub fn forward_layers(
        &self,
        range: std::ops::Range<usize>,
        acts: &mut Activations,
        mut delta: Option<&mut dyn LayerDelta>,
    ) {
        let b = acts.b;
        for i in range {
            let layer = &self.layers[i];
            let relu = i < 2;
            let (lo, hi) = acts.xs.split_at_mut(i + 1);
            let (x, y) = (&lo[i][..], &mut hi[0][..]);
            // Layer 1 reads pixels, most of them blank: its kernels skip what those add.
            let base = |y: &mut [f32], relu: bool| match i {
                0 => layer.forward_mostly(x, BLANK_INPUT, y, b, relu),
                _ => layer.forward(x, y, b, relu),
            };
            match delta.as_deref_mut() {
                Some(d) if d.is_active(i) => {
                    base(y, false);
                    d.forward(i, x, y, b);
                    if relu {
                        kernels::relu(y);
                    }
                }
                _ => base(y, relu),
            }
        }
    }

    /// Backward from `dlogits` (b×10) through the activations of the last forward.
    /// Fills the base gradients `needs` asks for and calls the delta's backward where active; input
    /// gradients are propagated only as far down as some layer below still needs them. Returns
    /// whether every base gradient it filled is finite (the delta checks its own).
    pub fn backward(
        &self,
        acts: &Activations,
        dlogits: &[f32],
        grads: &mut MlpGrads,
        needs: GradNeeds,
        mut delta: Option<&mut dyn LayerDelta>,
    ) -> bool {
        let b = acts.b;
        let active = |d: &Option<&mut dyn LayerDelta>, i: usize| d.as_ref().is_some_and(|d| d.is_active(i));
        let wants = |i: usize| needs.weight[i] || needs.bias[i] || active(&delta, i);
        let Some(lowest) = (0..3).find(|&i| wants(i)) else { return true };
        let mut finite = true;

        grads.dys[2].clear();
        grads.dys[2].extend_from_slice(dlogits);
        for i in (lowest..3).rev() {
            let layer = &self.layers[i];
            let (below, here) = grads.dys.split_at_mut(i);
            let dy = &here[0][..];
            let x = &acts.xs[i];
            let g = &mut grads.layers[i];
            let (k, n) = (layer.in_features, layer.out_features);
            // This layer's parameter gradients and the gradient passed down are independent: joined,
            // the pool's threads share both (layer 5's are too small to split on their own).
            let params = || {
                let mut finite = true;
                if needs.weight[i] {
                    // The GEMMs check their output as they store it: no second pass over 400 K values.
                    finite &= if i == 0 {
                        kernels::weight_grad_offset(dy, x, BLANK_INPUT, &mut g.weight, b, k, n)
                    } else {
                        kernels::linear_weight_grad(dy, x, &mut g.weight, b, k, n, false)
                    };
                }
                if needs.bias[i] {
                    kernels::bias_grad(dy, b, n, &mut g.bias);
                    finite &= kernels::all_finite(&g.bias);
                }
                finite
            };
            let input = move || {
                if i == lowest {
                    return None;
                }
                // Moved out of the closure's state (a FnOnce), so the result may borrow from it.
                let below = below;
                let dx = &mut below[i - 1];
                dx.resize(b * k, 0.0);
                layer.input_grad(dy, dx, b, false);
                Some(dx)
            };
            let (params_finite, mut dx) = rayon::join(params, input);
            finite &= params_finite;
            if let Some(d) = delta.as_deref_mut().filter(|d| d.is_active(i)) {
                d.backward(i, x, dy, dx.as_deref_mut().map(|v| &mut v[..]), b);
            }
            if let Some(dx) = dx {
                // ReLU backward: x is the ReLU output of the layer below.
                kernels::relu_backward(dx, x);
            }
        }
        finite
    }
}
