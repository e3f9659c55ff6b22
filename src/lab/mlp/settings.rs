//! The MLP's settings as the page sends them (`trainBase`, `trainAdapter`), resolved into checked
//! configs, and the summaries a run resolves with.

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::lab::settings::{valid_name, whole};
use crate::lora::{mlp_modules, targets, Adapter, Bias, Init, LoraConfig, Scaling};
use crate::nn::LAYER_NAMES;
use crate::train::{Schedule, TrainConfig};

/// Index of one of the MLP's layers by PEFT's rule (`layers.5`, or a suffix of it such as `5`).
pub fn layer_index(name: &str) -> Result<usize> {
    targets::find(name, &LAYER_NAMES).ok_or_else(|| {
        LabError::setting("targets", format!("unknown layer \"{name}\"; the layers are {}", LAYER_NAMES.join(", ")))
    })
}

/// Settings of `trainBase`, as the page sends them; missing ones take the defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseSettings {
    pub seed: Option<f64>,
    pub epochs: Option<f64>,
    pub batch_size: Option<f64>,
    pub lr: Option<f64>,
    pub limit: Option<f64>,
    pub schedule: Option<Schedule>,
}

impl BaseSettings {
    pub fn resolve(&self) -> Result<(TrainConfig, Option<usize>)> {
        let d = TrainConfig::base_default();
        let cfg = TrainConfig {
            seed: self.seed.map(|v| whole("seed", v, 0, u32::MAX as u64)).transpose()?.unwrap_or(d.seed),
            epochs: self.epochs.map(|v| whole("epochs", v, 1, 1000)).transpose()?.map_or(d.epochs, |v| v as usize),
            batch_size: self
                .batch_size
                .map(|v| whole("batch size", v, 1, 60_000))
                .transpose()?
                .map_or(d.batch_size, |v| v as usize),
            lr: match self.lr {
                Some(lr) if !lr.is_finite() || lr <= 0.0 || lr > 1.0 => {
                    return Err(LabError::setting("learning rate", format!("{lr} is not in (0, 1]")))
                }
                Some(lr) => lr as f32,
                None => d.lr,
            },
            schedule: self.schedule.unwrap_or(d.schedule),
        };
        let limit = self.limit.map(|v| whole("limit", v, 1, 60_000)).transpose()?.map(|v| v as usize);
        Ok((cfg, limit))
    }
}

/// What `trainBase` resolves with.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub epochs: usize,
    pub steps: usize,
    pub seconds: f64,
    pub samples_per_sec: f64,
    pub cancelled: bool,
    /// FNV-1a of every batch loss's bits, as hex: equal runs have equal hashes (determinism checks).
    pub loss_hash: String,
}

/// Settings of `trainAdapter`; `preset: "article"` fills in the article's recipe, and any other
/// missing setting takes the article's value too.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdapterSettings {
    pub preset: Option<String>,
    pub name: Option<String>,
    pub targets: Option<Vec<String>>,
    pub rank: Option<f64>,
    pub alpha: Option<f64>,
    pub scaling: Option<Scaling>,
    pub init: Option<Init>,
    pub dropout: Option<f64>,
    pub bias: Option<Bias>,
    pub lr: Option<f64>,
    pub epochs: Option<f64>,
    pub batch_size: Option<f64>,
    pub replay: Option<f64>,
    pub seed: Option<f64>,
    pub schedule: Option<Schedule>,
}

impl AdapterSettings {
    /// (name, adapter config, training config, replay fraction).
    pub fn resolve(&self) -> Result<(String, LoraConfig, TrainConfig, f32)> {
        if let Some(p) = &self.preset {
            if p != "article" {
                return Err(LabError::setting(
                    "preset",
                    format!("unknown preset \"{p}\"; the only one is \"article\""),
                ));
            }
        }
        let article = LoraConfig::article();
        let mut targets = match &self.targets {
            Some(t) => t.iter().map(|n| layer_index(n)).collect::<Result<Vec<_>>>()?,
            None => article.targets.clone(),
        };
        targets.sort_unstable();
        targets.dedup();
        let lora = LoraConfig {
            targets,
            rank: self.rank.map(|v| whole("rank", v, 1, 784)).transpose()?.map_or(article.rank, |v| v as usize),
            alpha: self.alpha.unwrap_or(article.alpha),
            scaling: self.scaling.unwrap_or(article.scaling),
            dropout: self.dropout.map_or(Ok(article.dropout), |d| {
                if d.is_finite() && (0.0..1.0).contains(&d) {
                    Ok(d as f32)
                } else {
                    Err(LabError::setting("dropout", format!("{d} is not in [0, 1)")))
                }
            })?,
            bias: self.bias.unwrap_or(article.bias),
            init: self.init.unwrap_or(article.init),
        };
        lora.validate(&mlp_modules())?;
        let train = BaseSettings {
            seed: self.seed,
            epochs: Some(self.epochs.unwrap_or(3.0)),
            batch_size: self.batch_size,
            lr: Some(self.lr.unwrap_or(5e-3)),
            limit: None,
            schedule: Some(self.schedule.unwrap_or(Schedule::Constant)),
        };
        let (cfg, _) = train.resolve()?;
        let replay = match self.replay {
            Some(r) if !r.is_finite() || !(0.0..=1.0).contains(&r) => {
                return Err(LabError::setting("replay", format!("{r} is not a fraction from 0 to 1")))
            }
            Some(r) => r as f32,
            None => 0.0,
        };
        let name = match &self.name {
            Some(n) => valid_name(n)?,
            None if self.preset.is_some() => "article".to_string(),
            None => format!("r{}-a{}-{}", lora.rank, lora.alpha, lora.target_names(&mlp_modules()).join("+")),
        };
        Ok((name, lora, cfg, replay))
    }
}

/// What `trainAdapter` resolves with.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterSummary {
    pub name: String,
    pub trainable_params: usize,
    pub total_params: usize,
    pub trainable_percent: f64,
    pub report: String,
    pub seconds: f64,
    pub steps: usize,
    pub samples_per_sec: f64,
    pub cancelled: bool,
}

impl AdapterSummary {
    /// The summary of `adapter` over a base of `base_params`, with the numbers of the run that trained
    /// it (`None` for a loaded adapter: no time, no steps).
    pub(crate) fn new(adapter: &Adapter, base_params: usize, run: Option<&RunSummary>) -> Self {
        let t = adapter.trainable_params();
        Self {
            name: adapter.name.clone(),
            trainable_params: t,
            total_params: base_params,
            trainable_percent: 100.0 * t as f64 / base_params as f64,
            report: adapter.trainable_report(base_params),
            seconds: run.map_or(0.0, |r| r.seconds),
            steps: run.map_or(0, |r| r.steps),
            samples_per_sec: run.map_or(0.0, |r| r.samples_per_sec),
            cancelled: run.is_some_and(|r| r.cancelled),
        }
    }
}
