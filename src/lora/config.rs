//! What an adapter is: which layers, rank, alpha and scaling, dropout, bias, init — PEFT's options,
//! with the article's recipe as a preset. Validated before any work starts.

use serde::Deserialize;

use super::targets;
use crate::error::{LabError, Result};
use crate::nn::{LAYER_NAMES, LAYER_SHAPES};

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
    /// Adapted layers, as indices 0..3 of `LAYER_NAMES`, ascending.
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

    pub fn target_names(&self) -> Vec<String> {
        self.targets.iter().map(|&i| LAYER_NAMES[i].to_string()).collect()
    }

    /// Layer index of a PEFT module name (`layers.5`, or a suffix of it such as `5`).
    pub fn layer_index(name: &str) -> Result<usize> {
        LAYER_NAMES.iter().position(|n| targets::matches(name, n)).ok_or_else(|| {
            LabError::setting("targets", format!("unknown layer \"{name}\"; the layers are {}", LAYER_NAMES.join(", ")))
        })
    }

    pub fn validate(&self) -> Result<()> {
        if self.targets.is_empty() {
            return Err(LabError::setting("targets", "choose at least one of layers.1, layers.3, layers.5"));
        }
        if self.targets.iter().any(|&t| t >= 3) || self.targets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(LabError::setting("targets", "layers must be distinct and among layers.1, layers.3, layers.5"));
        }
        for &t in &self.targets {
            let (fan_in, fan_out) = LAYER_SHAPES[t];
            let max = fan_in.min(fan_out);
            if self.rank == 0 || self.rank > max {
                return Err(LabError::setting(
                    "rank",
                    format!("{} is outside 1..={max} for {} ({fan_out}×{fan_in})", self.rank, LAYER_NAMES[t]),
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
