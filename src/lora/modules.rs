//! What LoRA needs of a model: its Linear modules by full name, in a fixed order, and access to their
//! weights. Both of the lab's models offer theirs here, so one adapter type serves both; module
//! indices are positions in `Adaptable::modules`.

use crate::lm::Llama;
use crate::nn::{Linear, Mlp, LAYER_NAMES};

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
}

/// The MLP's modules without a model at hand: its shapes are fixed.
pub fn mlp_modules() -> Vec<Module> {
    crate::nn::LAYER_SHAPES
        .iter()
        .zip(LAYER_NAMES)
        .map(|(&(i, o), n)| Module { name: n.to_string(), in_features: i, out_features: o, has_bias: true })
        .collect()
}
