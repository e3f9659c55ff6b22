//! The settings of `lab.llm.trainAdapter` as the page sends them: the article's `LoraConfig` and
//! `SFTConfig`/`TrainingArguments` fields, with the `seed` preset's values for the missing ones,
//! resolved into checked configs before any work starts.

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::lab::settings::{valid_name, whole};
use crate::lora::targets::TargetModules;
use crate::lora::{Bias, Init, LoraConfig, Module, Scaling};
use crate::train::{Schedule, TrainConfig};

/// The seven projections of a decoder layer: what an SFT adapter may target.
pub const PROJECTIONS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// The longest `max_seq_length` (SFTConfig's `max_length`) a run may ask for.
pub const MAX_SEQ_LENGTH: u64 = 2048;

/// What an adapter learns from.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum LlmData {
    /// `"demo"`: is a word a woman's first name or an English word (`demo.rs`).
    Named(String),
    /// TRL's JSONL; the held-out rows from `testJsonl`, or every tenth row of `jsonl`.
    Jsonl {
        jsonl: String,
        #[serde(rename = "testJsonl", default, skip_serializing_if = "Option::is_none")]
        test_jsonl: Option<String>,
    },
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmAdapterSettings {
    /// `"seed"`: the article's recipe (the only preset).
    pub preset: Option<String>,
    pub name: Option<String>,
    pub data: Option<LlmData>,
    pub target_modules: Option<TargetModules>,
    /// PEFT's `layers_to_transform`: only these decoder layers (0-based) get the target modules.
    pub layers_to_transform: Option<Vec<f64>>,
    pub r: Option<f64>,
    pub lora_alpha: Option<f64>,
    pub lora_dropout: Option<f64>,
    pub use_rslora: Option<bool>,
    pub lr: Option<f64>,
    pub epochs: Option<f64>,
    pub batch_size: Option<f64>,
    pub gradient_accumulation_steps: Option<f64>,
    pub max_seq_length: Option<f64>,
    pub packing: Option<bool>,
    /// TRL's `packing_strategy`: `"bfd"` (its default) or `"wrapped"`.
    pub packing_strategy: Option<String>,
    /// For `messages` rows: the loss on the assistant's turns only.
    pub assistant_only_loss: Option<bool>,
    pub weight_decay: Option<f64>,
    /// transformers 5's `warmup_steps`: below 1 a fraction of the run's steps, else a count.
    pub warmup_steps: Option<f64>,
    pub schedule: Option<String>,
    pub seed: Option<f64>,
    /// Train on the first `limit` training rows only (a short run).
    pub limit: Option<f64>,
    /// Greedy exact match of the held-out completions after each epoch, beside the held-out loss (default
    /// on; it answers every held-out prompt-completion row, as `llm_evaluate` does).
    pub exact_match_each_epoch: Option<bool>,
}

/// A run, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmAdapterPlan {
    pub name: String,
    pub data: LlmData,
    /// As given (for adapter_config.json and train.py); `lora.targets` holds them resolved.
    pub target_modules: TargetModules,
    pub layers_to_transform: Option<Vec<usize>>,
    pub lora: LoraConfig,
    /// `batch_size` is the optimizer step's: per-pass batch × accumulation steps.
    pub train: TrainConfig,
    pub micro_batch: usize,
    pub accumulation: usize,
    pub weight_decay: f32,
    /// transformers' `warmup_steps` as given (a fraction below 1, else steps).
    pub warmup_steps: f64,
    pub max_seq_length: usize,
    pub packing: bool,
    pub packing_strategy: PackingStrategy,
    pub assistant_only_loss: bool,
    pub limit: Option<usize>,
}

/// How packing makes its rows (TRL's `packing_strategy`; `text::sft_pack`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PackingStrategy {
    /// Whole examples binned best-fit decreasing, each attending to itself only (TRL's default).
    #[default]
    Bfd,
    /// The examples back to back, cut into rows, attention crossing the seams.
    Wrapped,
}

impl PackingStrategy {
    /// TRL's name of it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bfd => "bfd",
            Self::Wrapped => "wrapped",
        }
    }

    fn parse(name: Option<&str>) -> Result<Self> {
        match name {
            None | Some("bfd") => Ok(Self::Bfd),
            Some("wrapped") => Ok(Self::Wrapped),
            Some(other) => Err(LabError::setting(
                "packing_strategy",
                format!("\"{other}\" is not one of \"bfd\" (TRL's default) and \"wrapped\""),
            )),
        }
    }
}

fn number(name: &str, v: Option<f64>, default: f64, lo: f64, hi: f64) -> Result<f64> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(x),
        Some(x) => Err(LabError::setting(name, format!("{x} is not a number from {lo} to {hi}"))),
    }
}

fn count(name: &str, v: Option<f64>, default: usize, lo: u64, hi: u64) -> Result<usize> {
    v.map(|x| whole(name, x, lo, hi).map(|x| x as usize)).transpose().map(|x| x.unwrap_or(default))
}

impl LlmAdapterSettings {
    /// Resolves against the model's `modules` (its `Adaptable::modules`, the output layer last) and its
    /// `layers`; nothing is trained yet.
    pub fn resolve(&self, modules: &[Module], layers: usize) -> Result<LlmAdapterPlan> {
        if let Some(p) = self.preset.as_deref().filter(|p| *p != "seed") {
            return Err(LabError::setting("preset", format!("unknown preset \"{p}\"; the preset is \"seed\"")));
        }
        let target_modules = self
            .target_modules
            .clone()
            .unwrap_or_else(|| TargetModules::Names(["q_proj", "v_proj", "k_proj"].map(String::from).to_vec()));
        if target_modules.is_empty() {
            return Err(LabError::setting("target modules", "choose at least one module"));
        }
        let names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
        let mut targets = target_modules.resolve(&names).map_err(|e| LabError::setting("target modules", e))?;
        if let Some(&i) = targets.iter().find(|&&i| !PROJECTIONS.iter().any(|p| names[i].ends_with(&format!(".{p}")))) {
            return Err(LabError::setting(
                "target modules",
                format!("{} is not one of the seven projections ({})", names[i], PROJECTIONS.join(", ")),
            ));
        }
        let layers_to_transform = match &self.layers_to_transform {
            None => None,
            Some(v) if v.is_empty() => return Err(LabError::setting("layers to transform", "name at least one layer")),
            Some(v) => {
                let mut ls = v
                    .iter()
                    .map(|&l| whole("layers to transform", l, 0, layers as u64 - 1).map(|l| l as usize))
                    .collect::<Result<Vec<_>>>()?;
                ls.sort_unstable();
                ls.dedup();
                targets.retain(|&i| ls.iter().any(|l| names[i].contains(&format!("layers.{l}."))));
                Some(ls)
            }
        };
        if targets.is_empty() {
            return Err(LabError::setting("target modules", "no module of the layers to transform is targeted"));
        }
        let rank = count("r", self.r, 32, 1, 1024)?;
        let alpha = number("lora_alpha", self.lora_alpha, 32.0, f64::MIN_POSITIVE, 1e6)?;
        let dropout = number("lora_dropout", self.lora_dropout, 0.05, 0.0, 0.99)? as f32;
        let lr = number("learning rate", self.lr, 5e-4, f64::MIN_POSITIVE, 1.0)? as f32;
        let warmup_steps = number("warmup steps", self.warmup_steps, 0.03, 0.0, 1e6)?;
        let schedule = match self.schedule.as_deref().unwrap_or("cosine") {
            "cosine" => Schedule::CosineWithWarmup { warmup_ratio: 0.0 },
            "linear" => Schedule::LinearWithWarmup { warmup_ratio: 0.0 },
            "constant" => Schedule::ConstantWithWarmup { warmup_ratio: 0.0 },
            other => {
                return Err(LabError::setting(
                    "schedule",
                    format!("\"{other}\" is not one of \"cosine\", \"linear\", \"constant\""),
                ))
            }
        };
        let micro_batch = count("batch size", self.batch_size, 3, 1, 64)?;
        let accumulation = count("gradient accumulation steps", self.gradient_accumulation_steps, 1, 1, 64)?;
        let name = match &self.name {
            Some(n) => valid_name(n)?,
            None => "seed".to_string(),
        };
        Ok(LlmAdapterPlan {
            name,
            data: self.data.clone().unwrap_or(LlmData::Named("demo".into())),
            target_modules,
            layers_to_transform,
            lora: LoraConfig {
                targets,
                rank,
                alpha,
                scaling: if self.use_rslora.unwrap_or(false) { Scaling::RsLora } else { Scaling::Peft },
                dropout,
                bias: Bias::None,
                init: Init::Default,
            },
            train: TrainConfig {
                seed: count("seed", self.seed, 1311, 0, u32::MAX as u64)? as u64,
                epochs: count("epochs", self.epochs, 3, 1, 100)?,
                batch_size: micro_batch * accumulation,
                lr,
                schedule,
            },
            micro_batch,
            accumulation,
            weight_decay: number("weight decay", self.weight_decay, 0.1, 0.0, 1.0)? as f32,
            warmup_steps,
            max_seq_length: count("max_seq_length", self.max_seq_length, 256, 2, MAX_SEQ_LENGTH)?,
            packing: self.packing.unwrap_or(false),
            packing_strategy: PackingStrategy::parse(self.packing_strategy.as_deref())?,
            assistant_only_loss: self.assistant_only_loss.unwrap_or(false),
            limit: self.limit.map(|l| whole("limit", l, 1, 1_000_000).map(|l| l as usize)).transpose()?,
        })
    }
}

impl LlmAdapterPlan {
    /// The schedule with its warmup for a run of `total_steps` optimizer steps: `warmup_steps` below 1
    /// is a fraction of them (transformers 5), else a count, given as the fraction whose
    /// `ceil(total × fraction)` is that count.
    pub fn schedule_for(&self, total_steps: usize) -> Result<Schedule> {
        let ratio = if self.warmup_steps < 1.0 {
            self.warmup_steps
        } else {
            let steps = self.warmup_steps.floor();
            if steps >= total_steps as f64 {
                return Err(LabError::setting(
                    "warmup steps",
                    format!("{steps} warmup steps is not less than the run's {total_steps} steps"),
                ));
            }
            (steps - 0.5) / total_steps as f64
        };
        let s = match self.train.schedule {
            Schedule::LinearWithWarmup { .. } => Schedule::LinearWithWarmup { warmup_ratio: ratio },
            Schedule::ConstantWithWarmup { .. } => Schedule::ConstantWithWarmup { warmup_ratio: ratio },
            _ => Schedule::CosineWithWarmup { warmup_ratio: ratio },
        };
        s.validate()?;
        Ok(s)
    }
}
