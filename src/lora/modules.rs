//! What LoRA needs of a model: its Linear modules by full name, in a fixed order, and access to their
//! weights. Both of the lab's models offer theirs here, so one adapter type serves both; module
//! indices are positions in `Adaptable::modules`.

use crate::error::Result;
use crate::lm::Llama;
use crate::nn::{Linear, Mlp, LAYER_NAMES};
use crate::quant::QuantizedWeight;

/// One Linear a model offers to adapters.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    /// The full module name (`layers.5`, `model.layers.0.self_attn.q_proj`, `lm_head`).
    pub name: String,
    pub in_features: usize,
    pub out_features: usize,
    /// Whether the Linear has a bias (which PEFT's `bias` option can train).
    pub has_bias: bool,
}

pub trait Adaptable {
    fn modules(&self) -> Vec<Module>;
    fn linear(&self, i: usize) -> &Linear;
    fn linear_mut(&mut self, i: usize) -> &mut Linear;
    /// Parameters of the whole base model.
    fn num_params(&self) -> usize;
    /// "all params" of the trainable-parameter line with an adapter of `trainable` parameters: the
    /// base's alone in the article's convention (the MLP: 1,064 of 535,818), which this default gives.
    fn all_params_with(&self, _trainable: usize) -> usize {
        self.num_params()
    }

    /// Whether module `i` is held in 4 bits when the base is quantised (QLoRA). Every Linear by
    /// default; the language model keeps `lm_head` in f32, as transformers' 4-bit loading does.
    fn quantizable(&self, _i: usize) -> bool {
        true
    }

    /// Quantises every quantizable Linear to NF4 (double quantisation or not), keeping the f32 weights
    /// (or the blocks held as read) aside. All or nothing: on an error (a non-finite weight) no Linear
    /// changes.
    fn quantize_linears(&mut self, double_quant: bool) -> Result<()> {
        let mut done = Vec::new();
        for i in (0..self.modules().len()).filter(|&i| self.quantizable(i)) {
            let l = self.linear(i);
            done.push((i, QuantizedWeight::quantize(&l.source_weight(), l.out_features, l.in_features, double_quant)?));
        }
        for (i, q) in done {
            self.linear_mut(i).nf4 = Some(Box::new(q));
        }
        Ok(())
    }

    /// Every Linear back to the f32 weights kept aside.
    fn dequantize_linears(&mut self) {
        for i in 0..self.modules().len() {
            self.linear_mut(i).dequantize();
        }
    }

    /// `Some(double_quant)` while the base is quantised.
    fn quantization(&self) -> Option<bool> {
        (0..self.modules().len()).find_map(|i| self.linear(i).nf4.as_ref().map(|q| q.double_quant()))
    }

    /// A copy with the f32 weights kept aside and nothing quantised (what the page stores, so that a
    /// reload can quantise again and still undo bit for bit).
    fn unquantized_copy(&self) -> Self
    where
        Self: Clone,
    {
        let mut copy = self.clone();
        copy.dequantize_linears();
        copy
    }

    /// A copy computing with the same weights in f32: the 4-bit Linears dequantised (what "an f32
    /// export of the dequantised base" writes).
    fn dequantized_copy(&self) -> Self
    where
        Self: Clone,
    {
        let mut copy = self.clone();
        for i in 0..copy.modules().len() {
            let l = copy.linear_mut(i);
            if l.is_quantized() {
                l.weight = l.dense_weight().into_owned();
                l.dequantize();
                l.held = None;
            }
        }
        copy
    }
}

fn modules_of<'a>(names: impl Iterator<Item = String>, linears: impl Iterator<Item = &'a Linear>) -> Vec<Module> {
    names
        .zip(linears)
        .map(|(name, l)| Module {
            name,
            in_features: l.in_features,
            out_features: l.out_features,
            has_bias: !l.bias.is_empty(),
        })
        .collect()
}

impl Adaptable for Mlp {
    fn modules(&self) -> Vec<Module> {
        modules_of(LAYER_NAMES.iter().map(|n| n.to_string()), self.layers.iter())
    }
    fn linear(&self, i: usize) -> &Linear {
        &self.layers[i]
    }
    fn linear_mut(&mut self, i: usize) -> &mut Linear {
        &mut self.layers[i]
    }
    fn num_params(&self) -> usize {
        Mlp::num_params(self)
    }
}

impl Adaptable for Llama {
    fn modules(&self) -> Vec<Module> {
        modules_of(self.cfg.linear_modules().into_iter().map(|(n, _, _)| n), self.linears.iter())
    }
    fn linear(&self, i: usize) -> &Linear {
        &self.linears[i]
    }
    fn linear_mut(&mut self, i: usize) -> &mut Linear {
        &mut self.linears[i]
    }
    fn num_params(&self) -> usize {
        Llama::num_params(self)
    }
    /// PEFT's `print_trainable_parameters` counts the adapter in (98,304 of 969,856).
    fn all_params_with(&self, trainable: usize) -> usize {
        Llama::num_params(self) + trainable
    }
    fn quantizable(&self, i: usize) -> bool {
        i != self.cfg.lm_head()
    }
}

/// The MLP's modules without a model at hand: its shapes are fixed.
pub fn mlp_modules() -> Vec<Module> {
    crate::nn::LAYER_SHAPES
        .iter()
        .zip(LAYER_NAMES)
        .map(|(&(i, o), n)| Module { name: n.to_string(), in_features: i, out_features: o, has_bias: true })
        .collect()
}
