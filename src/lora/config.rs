//! What an adapter is: which layers, rank, alpha and scaling, dropout, bias, init — PEFT's options,
//! with the article's recipe as a preset. Validated before any work starts.

use serde::Deserialize;

use super::modules::Module;
use crate::error::{LabError, Result};

/// How α becomes the factor on lora_B·lora_A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// The article: α.
    Article,
    /// PEFT's default: α / r.
    Peft,
    /// rsLoRA (Kalajdzievski 2023): α / √r, so the update's size does not shrink as r grows.
    RsLora,
}

/// The factor on lora_B·lora_A, computed with the same f64 operations PEFT uses.
pub fn scaling_value(s: Scaling, alpha: f64, r: usize) -> f64 {
    match s {
        Scaling::Article => alpha,
        Scaling::Peft => alpha / r as f64,
        Scaling::RsLora => alpha / (r as f64).sqrt(),
    }
}

/// PEFT's `bias` option: which biases train alongside the adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bias {
    /// No bias trains (PEFT's default).
    #[default]
    None,
    /// Every bias in the model trains.
    All,
    /// Only the biases of the adapted layers train.
    LoraOnly,
}

/// How lora_A and lora_B start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The article: from the SVD of W, lora_B = U_r·√S_r, lora_A = √S_r·V_rᵀ; W is kept.
    Svd,
    /// PEFT's default: Kaiming-uniform lora_A (a = √5), zero lora_B, so the adapter starts as a no-op.
    Default,
    /// PEFT's "gaussian": lora_A ~ N(0, 1/r²), zero lora_B.
    Gaussian,
    /// PiSSA: the SVD factors divided by √scaling, and W replaced by the residual W − scaling·B·A.
    Pissa,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Adapted modules, as ascending indices into the model's `Adaptable::modules`.
    pub targets: Vec<usize>,
    pub rank: usize,
    pub alpha: f64,
    pub scaling: Scaling,
    /// Dropout probability on the adapter's input (training only).
    pub dropout: f32,
    pub bias: Bias,
    pub init: Init,
}

impl LoraConfig {
    /// The article's adapter: layers.5, r 4, α 1, article scaling, SVD init, no dropout, no bias.
    pub fn article() -> Self {
        Self {
            targets: vec![2],
            rank: 4,
            alpha: 1.0,
            scaling: Scaling::Article,
            dropout: 0.0,
            bias: Bias::None,
            init: Init::Svd,
        }
    }

    /// The factor on lora_B·lora_A.
    pub fn scaling_value(&self) -> f32 {
        scaling_value(self.scaling, self.alpha, self.rank) as f32
    }

    /// Full names of the targeted modules among `modules` (the model's, `Adaptable::modules`).
    pub fn target_names(&self, modules: &[Module]) -> Vec<String> {
        self.targets.iter().filter_map(|&i| modules.get(i)).map(|m| m.name.clone()).collect()
    }

    /// Whether PEFT's `bias` option trains the bias of module `i` (where it has one).
    pub fn trains_bias(&self, i: usize) -> bool {
        match self.bias {
            Bias::None => false,
            Bias::All => true,
            Bias::LoraOnly => self.targets.contains(&i),
        }
    }

    /// The parameters an adapter of this config trains on a model of `modules` (lora_A and lora_B of
    /// each target, the biases it trains), counted without making it: what `Adapter::trainable_params`
    /// gives for `Adapter::new(config)`. `modules` must be the ones the config was validated against.
    pub fn trainable_params(&self, modules: &[Module]) -> usize {
        let lora: usize =
            self.targets.iter().map(|&t| self.rank * (modules[t].in_features + modules[t].out_features)).sum();
        let bias: usize = modules
            .iter()
            .enumerate()
            .filter(|&(i, m)| m.has_bias && self.trains_bias(i))
            .map(|(_, m)| m.out_features)
            .sum();
        lora + bias
    }

    /// Checks the settings against the model's `modules`: targets distinct, ascending and among them,
    /// the rank within every target's shape.
    pub fn validate(&self, modules: &[Module]) -> Result<()> {
        let names = || modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
        if self.targets.is_empty() {
            return Err(LabError::setting("targets", format!("choose at least one of {}", names())));
        }
        if self.targets.iter().any(|&t| t >= modules.len()) || self.targets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(LabError::setting("targets", format!("layers must be distinct and among {}", names())));
        }
        for &t in &self.targets {
            let m = &modules[t];
            let max = m.in_features.min(m.out_features);
            if self.rank == 0 || self.rank > max {
                return Err(LabError::setting(
                    "rank",
                    format!("{} is outside 1..={max} for {} ({}×{})", self.rank, m.name, m.out_features, m.in_features),
                ));
            }
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 || self.alpha > 1e6 {
            return Err(LabError::setting("alpha", format!("{} is not a number in (0, 1e6]", self.alpha)));
        }
        if !self.dropout.is_finite() || !(0.0..1.0).contains(&self.dropout) {
            return Err(LabError::setting("dropout", format!("{} is not in [0, 1)", self.dropout)));
        }
        Ok(())
    }
}
