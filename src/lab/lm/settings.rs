//! The language model's settings as the page sends them (`lab.lm.trainBase`, `lab.lm.trainAdapter`),
//! with the design note's presets, resolved into checked configs before any work starts.

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::lab::settings::{valid_name, whole};
use crate::lora::targets::TargetModules;
use crate::lora::{Bias, Init, LoraConfig, Module, Scaling};
use crate::train::{Schedule, TrainConfig};

/// Which held-out set an adapter learns and is scored on.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum DataChoice {
    /// `"pokemon"` or `"names"` (or `"unknown"`: an adapter loaded from a file that does not say).
    Named(String),
    /// A person's own lines.
    Lines { lines: Vec<String> },
}

impl DataChoice {
    /// What an adapter loaded from a file that does not name its data was trained on.
    pub fn unknown() -> Self {
        DataChoice::Named("unknown".into())
    }

    /// One of the lab's data sets (a file may name anything).
    pub fn is_known(&self) -> bool {
        match self {
            DataChoice::Named(n) => n == "pokemon" || n == "names",
            DataChoice::Lines { lines } => !lines.is_empty(),
        }
    }
}

/// Settings of `lab.lm.trainBase`; missing ones take the base preset's values.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LmBaseSettings {
    pub epochs: Option<f64>,
    pub batch_size: Option<f64>,
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
    pub warmup_ratio: Option<f64>,
    pub schedule: Option<String>,
    pub seed: Option<f64>,
    /// Train on the first `limit` English training words only (a short run).
    pub limit: Option<f64>,
}

/// What every LM run shares: TrainingArguments' optimiser and schedule settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LmTrainConfig {
    pub train: TrainConfig,
    pub weight_decay: f32,
}

/// The schedule names of TrainingArguments' `lr_scheduler_type`, each with its warmup.
fn schedule(name: Option<&str>, warmup_ratio: f64) -> Result<Schedule> {
    let s = match name.unwrap_or("cosine") {
        "cosine" => Schedule::CosineWithWarmup { warmup_ratio },
        "linear" => Schedule::LinearWithWarmup { warmup_ratio },
        "constant" => Schedule::ConstantWithWarmup { warmup_ratio },
        other => {
            return Err(LabError::setting(
                "schedule",
                format!("\"{other}\" is not one of \"cosine\", \"linear\", \"constant\""),
            ))
        }
    };
    s.validate()?;
    Ok(s)
}

fn fraction(name: &str, v: f64, max: f64) -> Result<f64> {
    if !v.is_finite() || v < 0.0 || v > max {
        return Err(LabError::setting(name, format!("{v} is not a number from 0 to {max}")));
    }
    Ok(v)
}

/// The optimiser settings with `d`'s values for the missing ones.
#[allow(clippy::too_many_arguments)]
fn train_config(
    d: &LmTrainConfig,
    d_warmup: f64,
    epochs: Option<f64>,
    batch_size: Option<f64>,
    lr: Option<f64>,
    weight_decay: Option<f64>,
    warmup_ratio: Option<f64>,
    sched: Option<&str>,
    seed: Option<f64>,
) -> Result<LmTrainConfig> {
    let lr = match lr {
        Some(lr) if !lr.is_finite() || lr <= 0.0 || lr > 1.0 => {
            return Err(LabError::setting("learning rate", format!("{lr} is not in (0, 1]")))
        }
        Some(lr) => lr as f32,
        None => d.train.lr,
    };
    let warmup = warmup_ratio.map(|w| fraction("warmup ratio", w, 1.0)).transpose()?.unwrap_or(d_warmup);
    Ok(LmTrainConfig {
        train: TrainConfig {
            seed: seed.map(|v| whole("seed", v, 0, u32::MAX as u64)).transpose()?.unwrap_or(d.train.seed),
            epochs: epochs.map(|v| whole("epochs", v, 1, 100)).transpose()?.map_or(d.train.epochs, |v| v as usize),
            batch_size: batch_size
                .map(|v| whole("batch size", v, 1, 256))
                .transpose()?
                .map_or(d.train.batch_size, |v| v as usize),
            lr,
            schedule: schedule(sched, warmup)?,
        },
        weight_decay: weight_decay
            .map(|w| fraction("weight decay", w, 1.0))
            .transpose()?
            .map_or(d.weight_decay, |w| w as f32),
    })
}

impl LmBaseSettings {
    /// The base preset: 1 epoch, batch 32, lr 3e-3, wd 0.1, cosine with 3 % warmup, seed 1311.
    pub fn preset() -> LmTrainConfig {
        LmTrainConfig {
            train: TrainConfig {
                seed: 1311,
                epochs: 1,
                batch_size: 32,
                lr: 3e-3,
                schedule: Schedule::CosineWithWarmup { warmup_ratio: 0.03 },
            },
            weight_decay: 0.1,
        }
    }

    /// (config, limit on training words).
    pub fn resolve(&self) -> Result<(LmTrainConfig, Option<usize>)> {
        let cfg = train_config(
            &Self::preset(),
            0.03,
            self.epochs,
            self.batch_size,
            self.lr,
            self.weight_decay,
            self.warmup_ratio,
            self.schedule.as_deref(),
            self.seed,
        )?;
        let limit = self.limit.map(|v| whole("limit", v, 1, 1_000_000)).transpose()?.map(|v| v as usize);
        Ok((cfg, limit))
    }
}

/// Settings of `lab.lm.trainAdapter`: a preset (`"seed"`, the article's; `"new-tokens"`), or PEFT's
/// LoraConfig fields and TrainingArguments' settings; missing ones take the `seed` preset's values.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LmAdapterSettings {
    pub preset: Option<String>,
    pub name: Option<String>,
    pub data: Option<DataChoice>,
    pub target_modules: Option<TargetModules>,
    pub r: Option<f64>,
    pub lora_alpha: Option<f64>,
    pub lora_dropout: Option<f64>,
    pub bias: Option<Bias>,
    pub use_rslora: Option<bool>,
    pub init: Option<Init>,
    pub lr: Option<f64>,
    pub epochs: Option<f64>,
    pub batch_size: Option<f64>,
    pub weight_decay: Option<f64>,
    pub warmup_ratio: Option<f64>,
    pub schedule: Option<String>,
    pub seed: Option<f64>,
    /// `load_best_model_at_end`: keep the best epoch's adapter (by held-out loss) when the run ends.
    pub load_best: Option<bool>,
}

/// An adapter run, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct LmAdapterPlan {
    pub name: String,
    pub data: DataChoice,
    /// As given (for adapter_config.json); `lora.targets` holds them resolved to module indices.
    pub target_modules: TargetModules,
    pub lora: LoraConfig,
    pub train: LmTrainConfig,
    pub load_best: bool,
}

fn names(list: &[&str]) -> TargetModules {
    TargetModules::Names(list.iter().map(|s| s.to_string()).collect())
}

impl LmAdapterSettings {
    /// `(preset name, its target modules, its learning rate)`.
    fn preset_of(p: Option<&str>) -> Result<(&'static str, TargetModules, f32)> {
        match p.unwrap_or("seed") {
            "seed" => Ok(("seed", names(&["q_proj", "v_proj", "k_proj"]), 5e-4)),
            "new-tokens" => Ok(("new-tokens", names(&["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"]), 2e-3)),
            other => Err(LabError::setting(
                "preset",
                format!("unknown preset \"{other}\"; the presets are \"seed\" and \"new-tokens\""),
            )),
        }
    }

    /// Resolves against the model's `modules`; nothing is trained yet.
    pub fn resolve(&self, modules: &[Module]) -> Result<LmAdapterPlan> {
        let (preset, preset_targets, preset_lr) = Self::preset_of(self.preset.as_deref())?;
        let defaults = LmTrainConfig {
            train: TrainConfig {
                seed: 1311,
                epochs: 5,
                batch_size: 3,
                lr: preset_lr,
                schedule: Schedule::CosineWithWarmup { warmup_ratio: 0.03 },
            },
            weight_decay: 0.1,
        };
        let train = train_config(
            &defaults,
            0.03,
            self.epochs,
            self.batch_size,
            self.lr,
            self.weight_decay,
            self.warmup_ratio,
            self.schedule.as_deref(),
            self.seed,
        )?;
        let target_modules = self.target_modules.clone().unwrap_or(preset_targets);
        if target_modules.is_empty() {
            return Err(LabError::setting("target modules", "choose at least one module"));
        }
        let module_names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
        let targets = target_modules.resolve(&module_names).map_err(|e| LabError::setting("target modules", e))?;
        let rank = self.r.map(|v| whole("r", v, 1, 1024)).transpose()?.map_or(32, |v| v as usize);
        let alpha = match self.lora_alpha {
            Some(a) if !a.is_finite() || a <= 0.0 || a > 1e6 => {
                return Err(LabError::setting("lora_alpha", format!("{a} is not a number in (0, 1e6]")))
            }
            Some(a) => a,
            None => 32.0,
        };
        let dropout =
            self.lora_dropout.map(|d| fraction("lora_dropout", d, 0.99)).transpose()?.map_or(0.05, |d| d as f32);
        let data = self.data.clone().unwrap_or(DataChoice::Named("pokemon".into()));
        if let DataChoice::Named(n) = &data {
            if n != "pokemon" && n != "names" {
                return Err(LabError::setting(
                    "data",
                    format!("\"{n}\" is not \"pokemon\", \"names\" or {{ lines: [...] }}"),
                ));
            }
        }
        let name = match &self.name {
            Some(n) => valid_name(n)?,
            None => preset.to_string(),
        };
        Ok(LmAdapterPlan {
            name,
            data,
            target_modules,
            lora: LoraConfig {
                targets,
                rank,
                alpha,
                scaling: if self.use_rslora.unwrap_or(false) { Scaling::RsLora } else { Scaling::Peft },
                dropout,
                bias: self.bias.unwrap_or(Bias::None),
                init: self.init.unwrap_or(Init::Default),
            },
            train,
            load_best: self.load_best.unwrap_or(false),
        })
    }
}
