//! The lab's state and every operation the page can ask for, in plain Rust: datasets, the base model,
//! the run in progress. `web.rs` only converts arguments and results; native tests drive this directly.

use serde::{Deserialize, Serialize};

use crate::data::{self, Dataset};
use crate::error::{LabError, Result};
use crate::nn::{softmax, Activations, Mlp, CLASSES, INPUT};
use crate::rng::{Rng, Stream};
use crate::train::{self, BaseObjective, BaseState, Metrics, Progress, Schedule, TrainConfig, Trainer};

/// Digits the base model learns, and the ones the adapter teaches.
pub const BASE_DIGITS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
pub const NEW_DIGITS: [u8; 2] = [8, 9];

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

/// A whole number from a JS number: finite, integral and in range, or a clear error.
pub fn whole(name: &str, v: f64, min: u64, max: u64) -> Result<u64> {
    if !v.is_finite() || v.fract() != 0.0 || v < min as f64 || v > max as f64 {
        return Err(LabError::setting(name, format!("{v} is not a whole number from {min} to {max}")));
    }
    Ok(v as u64)
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
}

enum Run {
    Base { trainer: Trainer, model: Mlp, state: Box<BaseState> },
}

pub struct Lab {
    train: Option<Dataset>,
    test: Option<Dataset>,
    base: Option<Mlp>,
    run: Option<Run>,
    clock: std::rc::Rc<dyn Fn() -> f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub base: Metrics,
    pub adapted: Option<Metrics>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Probabilities {
    pub base: Vec<f32>,
    pub adapted: Option<Vec<f32>>,
}

impl Lab {
    /// `clock` returns seconds from any origin (the worker passes `performance.now() / 1000`).
    pub fn new(clock: impl Fn() -> f64 + 'static) -> Self {
        Self { train: None, test: None, base: None, run: None, clock: std::rc::Rc::new(clock) }
    }

    /// Parses and checks the four MNIST files; on any error nothing changes.
    pub fn load_data(
        &mut self,
        train_images: &[u8],
        train_labels: &[u8],
        test_images: &[u8],
        test_labels: &[u8],
    ) -> Result<(usize, usize)> {
        let train = Dataset::new(
            data::parse_images(train_images, "train-images-idx3-ubyte")?,
            data::parse_labels(train_labels, "train-labels-idx1-ubyte")?,
            "training set",
        )?;
        let test = Dataset::new(
            data::parse_images(test_images, "t10k-images-idx3-ubyte")?,
            data::parse_labels(test_labels, "t10k-labels-idx1-ubyte")?,
            "test set",
        )?;
        let counts = (train.len(), test.len());
        self.train = Some(train);
        self.test = Some(test);
        Ok(counts)
    }

    fn datasets(&self) -> Result<(&Dataset, &Dataset)> {
        match (&self.train, &self.test) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(LabError::state("MNIST is not loaded yet")),
        }
    }

    pub fn base(&self) -> Option<&Mlp> {
        self.base.as_ref()
    }

    pub fn is_training(&self) -> bool {
        self.run.is_some()
    }

    fn ensure_idle(&self) -> Result<()> {
        if self.run.is_some() {
            return Err(LabError::state("a training run is in progress: cancel it or wait for it to finish"));
        }
        Ok(())
    }

    /// Starts training a fresh base model on digits 0–7 (the first `limit` of them when given).
    /// Nothing changes if a setting is bad.
    pub fn start_base(&mut self, settings: &BaseSettings) -> Result<()> {
        self.ensure_idle()?;
        let (cfg, limit) = settings.resolve()?;
        let (train, _) = self.datasets()?;
        let mut indices = train.indices_of(&BASE_DIGITS);
        if let Some(limit) = limit {
            indices.truncate(limit);
        }
        let model = Mlp::new(&mut Rng::new(cfg.seed, Stream::BaseInit));
        let state = Box::new(BaseState::new(&model, cfg.batch_size));
        let clock = self.clock.clone();
        let trainer = Trainer::new(cfg, indices, Stream::BaseShuffle, Box::new(move || clock()))?;
        self.run = Some(Run::Base { trainer, model, state });
        Ok(())
    }

    /// Runs up to `n_batches` of the current run. On a non-finite loss the run ends with an error and
    /// the model keeps the weights from before that step.
    pub fn train_step(&mut self, n_batches: usize) -> Result<Progress> {
        let train = self.train.as_ref().ok_or_else(|| LabError::state("MNIST is not loaded yet"))?;
        let result = match self.run.as_mut() {
            None => return Err(LabError::state("no training run in progress")),
            Some(Run::Base { trainer, model, state }) => {
                trainer.step(&mut BaseObjective::new(model, state), train, n_batches)
            }
        };
        if result.is_err() {
            self.finish(true)?;
        }
        result
    }

    /// Ends the current run and keeps its model: the whole run, or (`cancelled`) the weights after the
    /// last completed step — a usable, consistent model either way.
    pub fn finish(&mut self, cancelled: bool) -> Result<RunSummary> {
        let Some(run) = self.run.take() else { return Err(LabError::state("no training run in progress")) };
        match run {
            Run::Base { trainer, model, .. } => {
                self.base = Some(model);
                Ok(RunSummary {
                    epochs: trainer.config().epochs,
                    steps: trainer.losses().len(),
                    seconds: trainer.seconds(),
                    samples_per_sec: trainer.samples_per_sec(),
                    cancelled,
                })
            }
        }
    }

    /// Accuracy of the model being trained (or the base model) on the test set.
    pub fn evaluate_current(&self) -> Result<Metrics> {
        let (_, test) = self.datasets()?;
        let all: Vec<u32> = (0..test.len() as u32).collect();
        match &self.run {
            Some(Run::Base { model, .. }) => train::evaluate(model, None, test, &all),
            None => train::evaluate(self.require_base()?, None, test, &all),
        }
    }

    fn require_base(&self) -> Result<&Mlp> {
        self.base.as_ref().ok_or_else(|| LabError::state("there is no base model yet: train or load one first"))
    }

    pub fn evaluate(&self) -> Result<Evaluation> {
        self.ensure_idle()?;
        let (_, test) = self.datasets()?;
        let all: Vec<u32> = (0..test.len() as u32).collect();
        let base = train::evaluate(self.require_base()?, None, test, &all)?;
        Ok(Evaluation { base, adapted: None })
    }

    /// Probabilities for one 28×28 digit (784 values 0–255, ink high).
    pub fn classify(&self, pixels: &[f64]) -> Result<Probabilities> {
        if pixels.len() != INPUT {
            return Err(LabError::setting("pixels", format!("{} values, expected 784 (28×28)", pixels.len())));
        }
        let bytes = pixels
            .iter()
            .map(|&p| if p.is_finite() && (0.0..=255.0).contains(&p) { Ok(p.round() as u8) } else { Err(p) })
            .collect::<std::result::Result<Vec<u8>, f64>>()
            .map_err(|p| LabError::setting("pixels", format!("{p} is not a value from 0 to 255")))?;
        let base = self.require_base()?;
        let mut acts = Activations::new(1);
        data::normalise_pixels(&bytes, acts.input_mut())?;
        base.forward(&mut acts, None);
        Ok(Probabilities { base: softmax(acts.logits(), CLASSES), adapted: None })
    }
}
