//! `Linear { weight (out×in), bias (out) }` with PyTorch's layout and default init; forward/backward
//! pairs over a batch, shapes in the signatures. A Linear of a frozen base can be quantised to 4-bit
//! NF4 (QLoRA): its forward and input gradient then compute with the packed codes.

use std::borrow::Cow;

use crate::kernels::{self, QWeight};
use crate::quant::{GgmlWeight, QuantizedWeight};
use crate::rng::Rng;
use crate::Result;

#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    /// out×in, row-major (PyTorch's `weight`).
    pub weight: Vec<f32>,
    /// out, or empty for a Linear without bias (`bias=False`, as in the language model).
    pub bias: Vec<f32>,
    /// The 4-bit weight the forward and the input gradient compute with while the base is quantised
    /// (bitsandbytes' `Linear4bit`). `weight` then holds the f32 weights kept aside, which
    /// [`Linear::dequantize`] brings back: they are not the ones computed with — [`Linear::dense_weight`]
    /// gives those.
    pub nf4: Option<Box<QuantizedWeight>>,
    /// A frozen weight held in the ggml blocks a GGUF file stored it in; `weight` is then empty (no
    /// f32 copy exists) and the forward and the input gradient compute with the blocks.
    pub held: Option<Box<GgmlWeight>>,
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
        Self { in_features, out_features, weight, bias, nf4: None, held: None }
    }

    /// A Linear from its PyTorch tensors (`bias` empty for none).
    pub fn from_parts(in_features: usize, out_features: usize, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "a Linear's weight is out × in");
        Self { in_features, out_features, weight, bias, nf4: None, held: None }
    }

    /// A Linear without bias holding `weight` (out×in).
    pub fn without_bias(in_features: usize, out_features: usize, weight: Vec<f32>) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "a Linear's weight is out × in");
        Self::from_parts(in_features, out_features, weight, Vec::new())
    }

    /// Quantises the weight to NF4 as bitsandbytes does (block 64, double quantisation or not), keeping
    /// the f32 weights aside; a quantised Linear is quantised again from them. Nothing changes on error
    /// (a non-finite weight).
    pub fn quantize(&mut self, double_quant: bool) -> Result<()> {
        let q = QuantizedWeight::quantize(&self.source_weight(), self.out_features, self.in_features, double_quant)?;
        self.nf4 = Some(Box::new(q));
        Ok(())
    }

    /// A Linear read from a 4-bit file: `q` is all there is, so the weights kept aside are its
    /// dequantisation.
    pub fn from_quantized(q: QuantizedWeight, bias: Vec<f32>) -> Self {
        let mut l = Self::from_parts(q.cols(), q.rows(), q.dequantize(), bias);
        l.nf4 = Some(Box::new(q));
        l
    }

    /// A frozen Linear holding `w` as read (out × in), without an f32 copy.
    pub fn from_held(w: GgmlWeight) -> Self {
        Self {
            in_features: w.cols(),
            out_features: w.rows(),
            weight: Vec::new(),
            bias: Vec::new(),
            nf4: None,
            held: Some(Box::new(w)),
        }
    }

    /// The weights NF4 quantisation starts from: the f32 weights kept aside, or those of the blocks a
    /// weight is held in as read (a GGUF's Q4_1 dequantised, as transformers reads such a file).
    pub fn source_weight(&self) -> Cow<'_, [f32]> {
        match &self.held {
            Some(w) => Cow::Owned(w.dequantize()),
            None => Cow::Borrowed(&self.weight),
        }
    }

    /// Back to the f32 weights kept aside (or the blocks held as read).
    pub fn dequantize(&mut self) {
        self.nf4 = None;
    }

    /// Whether the layer computes with quantised blocks (NF4, or a weight held as read).
    pub fn is_quantized(&self) -> bool {
        self.nf4.is_some() || self.held.is_some()
    }

    /// The weights the layer computes with: the dequantised NF4 weight while quantised.
    pub fn dense_weight(&self) -> Cow<'_, [f32]> {
        match (&self.nf4, &self.held) {
            (Some(q), _) => Cow::Owned(q.dequantize()),
            (None, Some(w)) => Cow::Owned(w.dequantize()),
            (None, None) => Cow::Borrowed(&self.weight),
        }
    }

    /// W += `dw` (PEFT's merge); on a quantised Linear, as PEFT merges into `Linear4bit`: the
    /// dequantised weight plus `dw`, quantised again with the same settings.
    pub fn add_to_weight(&mut self, dw: &[f32]) -> Result<()> {
        assert_eq!(dw.len(), self.in_features * self.out_features, "a weight delta is out × in");
        if let Some(w) = &self.held {
            return Err(crate::LabError::state(format!(
                "merging into a {} weight held as the GGUF stores it is not supported: keep the adapter \
                 apart, or export the merged model in f32",
                w.ty()
            )));
        }
        let Some(q) = &self.nf4 else {
            self.weight.iter_mut().zip(dw).for_each(|(w, d)| *w += d);
            return Ok(());
        };
        let mut w = q.dequantize();
        w.iter_mut().zip(dw).for_each(|(w, d)| *w += d);
        let q = QuantizedWeight::quantize(&w, self.out_features, self.in_features, q.double_quant())?;
        self.nf4 = Some(Box::new(q));
        self.weight = w;
        Ok(())
    }

    /// The quantised blocks the layer computes with, if any.
    fn quant_view(&self) -> Option<QWeight<'_>> {
        match (&self.nf4, &self.held) {
            (Some(q), _) => Some(q.kernel_view()),
            (None, Some(w)) => Some(w.kernel_view()),
            (None, None) => None,
        }
    }

    /// Row `r` of the weight the layer computes with (`in_features` values) into `out`: a tied
    /// embedding's lookup.
    pub fn weight_row(&self, r: usize, out: &mut [f32]) {
        let k = self.in_features;
        match self.quant_view() {
            Some(w) => kernels::dequantize_row(w, r, out),
            None => out.copy_from_slice(&self.weight[r * k..(r + 1) * k]),
        }
    }

    fn bias(&self) -> Option<&[f32]> {
        (!self.bias.is_empty()).then_some(&self.bias[..])
    }

    pub fn num_params(&self) -> usize {
        self.in_features * self.out_features + self.bias.len()
    }

    /// y (b×out) = x (b×in) · Wᵀ + bias, then ReLU when `relu`.
    pub fn forward(&self, x: &[f32], y: &mut [f32], b: usize, relu: bool) {
        debug_assert_eq!(x.len(), b * self.in_features);
        debug_assert_eq!(y.len(), b * self.out_features);
        match self.quant_view() {
            Some(w) => kernels::quant_linear_forward(x, w, self.bias(), y, b, relu),
            None => {
                kernels::linear_forward(x, &self.weight, self.bias(), y, b, self.in_features, self.out_features, relu)
            }
        }
    }

    /// y (b×out) = x (b×in) · Wᵀ + bias with x rounded to 8 bits per block of 32 and integer dot
    /// products (`kernels::quant_linear_forward_int8`) where the weight is held in blocks with integer
    /// codes (ggml's Q4_0, Q4_1, Q8_0); `forward` otherwise (NF4, K-quants, f16, f32).
    pub fn forward_int8(&self, x: &[f32], y: &mut [f32], b: usize) {
        match self.held.as_ref().filter(|_| self.nf4.is_none()).and_then(|w| w.int8_view()) {
            Some(w) => kernels::quant_linear_forward_int8(x, w, self.bias(), y, b, false),
            None => self.forward(x, y, b, false),
        }
    }

    /// `forward` for an input that is mostly `c` (layer 1's blank pixels): the same result up to
    /// rounding, skipping what `c` would add (`kernels::linear_forward_offset`).
    pub fn forward_mostly(&self, x: &[f32], c: f32, y: &mut [f32], b: usize, relu: bool) {
        if self.is_quantized() {
            return self.forward(x, y, b, relu);
        }
        debug_assert_eq!(x.len(), b * self.in_features);
        debug_assert_eq!(y.len(), b * self.out_features);
        let (k, n) = (self.in_features, self.out_features);
        kernels::linear_forward_offset(x, c, &self.weight, self.bias(), y, b, k, n, relu);
    }

    /// Given dy (b×out) at this layer's output (before any activation) and its input x (b×in):
    /// grads.weight = dyᵀ·x, grads.bias = Σ_rows dy, and dx (b×in) = dy·W when asked for.
    /// A quantised Linear is frozen: asking it for a weight gradient panics (the lab refuses to train
    /// a quantised base before any step).
    pub fn backward(&self, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, grads: &mut LinearGrads, b: usize) {
        assert!(!self.is_quantized(), "a quantised Linear is frozen");
        let (k, n) = (self.in_features, self.out_features);
        kernels::linear_weight_grad(dy, x, &mut grads.weight, b, k, n, false);
        if !self.bias.is_empty() {
            kernels::bias_grad(dy, b, n, &mut grads.bias);
        }
        if let Some(dx) = dx {
            self.input_grad(dy, dx, b, false);
        }
    }

    /// `dx (b×in) = dy (b×out) · W`, added to `dx` when `accumulate`: through the 4-bit weight while
    /// quantised.
    pub fn input_grad(&self, dy: &[f32], dx: &mut [f32], b: usize, accumulate: bool) {
        let (k, n) = (self.in_features, self.out_features);
        match self.quant_view() {
            Some(w) => kernels::quant_linear_input_grad(dy, w, dx, b, accumulate),
            None => {
                let ep = kernels::Epilogue { accumulate, ..kernels::Epilogue::default() };
                kernels::gemm(
                    kernels::Strided::row_major(&dy[..b * n], b, n),
                    kernels::Strided::row_major(&self.weight, n, k),
                    dx,
                    k,
                    ep,
                );
            }
        }
    }
}
