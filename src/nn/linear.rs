//! `Linear { weight (out×in), bias (out) }` with PyTorch's layout and default init; forward/backward
//! pairs over a batch, shapes in the signatures.

use crate::kernels;
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    /// out×in, row-major (PyTorch's `weight`).
    pub weight: Vec<f32>,
    /// out, or empty for a Linear without bias (`bias=False`, as in the language model).
    pub bias: Vec<f32>,
}

/// Gradients of one Linear, same shapes as its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearGrads {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LinearGrads {
    pub fn zeros(l: &Linear) -> Self {
        Self { weight: vec![0.0; l.weight.len()], bias: vec![0.0; l.bias.len()] }
    }
}

impl Linear {
    /// PyTorch's `nn.Linear` default init: weight kaiming_uniform(a=√5), which is U(±1/√in), and bias
    /// U(±1/√in). Weights are drawn row by row, then the bias, from `rng`.
    pub fn new(in_features: usize, out_features: usize, rng: &mut Rng) -> Self {
        let bound = 1.0 / (in_features as f32).sqrt();
        let weight = (0..in_features * out_features).map(|_| rng.uniform_in(-bound, bound)).collect();
        let bias = (0..out_features).map(|_| rng.uniform_in(-bound, bound)).collect();
        Self { in_features, out_features, weight, bias }
    }

    /// A Linear without bias holding `weight` (out×in).
    pub fn without_bias(in_features: usize, out_features: usize, weight: Vec<f32>) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "a Linear's weight is out × in");
        Self { in_features, out_features, weight, bias: Vec::new() }
    }

    fn bias(&self) -> Option<&[f32]> {
        (!self.bias.is_empty()).then_some(&self.bias[..])
    }

    pub fn num_params(&self) -> usize {
        self.weight.len() + self.bias.len()
    }

    /// y (b×out) = x (b×in) · Wᵀ + bias, then ReLU when `relu`.
    pub fn forward(&self, x: &[f32], y: &mut [f32], b: usize, relu: bool) {
        debug_assert_eq!(x.len(), b * self.in_features);
        debug_assert_eq!(y.len(), b * self.out_features);
        kernels::linear_forward(x, &self.weight, self.bias(), y, b, self.in_features, self.out_features, relu);
    }

    /// `forward` for an input that is mostly `c` (layer 1's blank pixels): the same result up to
    /// rounding, skipping what `c` would add (`kernels::linear_forward_offset`).
    pub fn forward_mostly(&self, x: &[f32], c: f32, y: &mut [f32], b: usize, relu: bool) {
        debug_assert_eq!(x.len(), b * self.in_features);
        debug_assert_eq!(y.len(), b * self.out_features);
        let (k, n) = (self.in_features, self.out_features);
        kernels::linear_forward_offset(x, c, &self.weight, self.bias(), y, b, k, n, relu);
    }

    /// Given dy (b×out) at this layer's output (before any activation) and its input x (b×in):
    /// grads.weight = dyᵀ·x, grads.bias = Σ_rows dy, and dx (b×in) = dy·W when asked for.
    pub fn backward(&self, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, grads: &mut LinearGrads, b: usize) {
        let (k, n) = (self.in_features, self.out_features);
        kernels::linear_weight_grad(dy, x, &mut grads.weight, b, k, n, false);
        if !self.bias.is_empty() {
            kernels::bias_grad(dy, b, n, &mut grads.bias);
        }
        if let Some(dx) = dx {
            kernels::linear_input_grad(dy, &self.weight, dx, b, k, n);
        }
    }
}
