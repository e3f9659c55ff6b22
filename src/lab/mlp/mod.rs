//! The article's MLP, panels 2–5: MNIST, the base model trained on digits 0–7, adapters that teach it
//! 8 and 9, evaluation, classification of a drawn digit. Files are in `files.rs`, settings in
//! `settings.rs`.

mod files;
mod settings;

pub use settings::{layer_index, AdapterSettings, AdapterSummary, BaseSettings, RunSummary};

use std::borrow::Cow;

use serde::Serialize;

use super::adapters::{AdaptedModel, AdapterList};
use super::settings::loss_hash;
use super::Lab;
use crate::data::{self, mix_replay, Dataset};
use crate::error::{LabError, Result};
use crate::lora::Adapter;
use crate::nn::{softmax, Activations, LayerDelta, Mlp, CLASSES, INPUT};
use crate::rng::{Rng, Stream};
use crate::train::{
    self, AdapterObjective, AdapterState, BaseObjective, BaseState, FeatureCache, Metrics, Progress, Trainer,
};

/// Digits the base model learns, and the ones the adapter teaches.
pub const BASE_DIGITS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
pub const NEW_DIGITS: [u8; 2] = [8, 9];

enum Run {
    Base { trainer: Trainer, model: Box<Mlp>, state: Box<BaseState> },
    Adapter { trainer: Trainer, adapter: Box<Adapter>, state: Box<AdapterState> },
}

/// The MLP's part of the lab's state.
#[derive(Default)]
pub(super) struct MlpRoom {
    train: Option<Dataset>,
    test: Option<Dataset>,
    pub(in crate::lab) models: AdaptedModel<Mlp>,
    run: Option<Run>,
}

impl MlpRoom {
    pub(super) fn is_training(&self) -> bool {
        self.run.is_some()
    }
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
    /// Parses and checks the four MNIST files; on any error nothing changes. Image files handed over
    /// as `Vec`s keep their allocation (see `data::parse_images`).
    pub fn load_data<'a, 'b>(
        &mut self,
        train_images: impl Into<Cow<'a, [u8]>>,
        train_labels: &[u8],
        test_images: impl Into<Cow<'b, [u8]>>,
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
        self.mlp.train = Some(train);
        self.mlp.test = Some(test);
        Ok(counts)
    }

    fn datasets(&self) -> Result<(&Dataset, &Dataset)> {
        match (&self.mlp.train, &self.mlp.test) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(LabError::state("MNIST is not loaded yet")),
        }
    }

    pub fn base(&self) -> Option<&Mlp> {
        self.mlp.models.base()
    }

    pub(super) fn require_base(&self) -> Result<&Mlp> {
        self.mlp.models.require_base()
    }

    /// Starts training a fresh base model on digits 0–7 (the first `limit` of them when given).
    /// Nothing changes if a setting is bad.
    pub fn start_base(&mut self, settings: &BaseSettings) -> Result<()> {
        self.ensure_idle()?;
        self.refuse_quantized_mlp_training()?;
        let (cfg, limit) = settings.resolve()?;
        let (train, _) = self.datasets()?;
        let mut indices = train.indices_of(&BASE_DIGITS);
        if let Some(limit) = limit {
            indices.truncate(limit);
        }
        let model = Mlp::new(&mut Rng::new(cfg.seed, Stream::BaseInit));
        let state = Box::new(BaseState::new(&model, cfg.batch_size));
        let trainer = Trainer::new(cfg, indices, Stream::BaseShuffle, self.trainer_clock())?;
        self.mlp.run = Some(Run::Base { trainer, model: Box::new(model), state });
        Ok(())
    }

    /// Runs up to `n_batches` of the current run. On a non-finite loss the run ends with an error and
    /// the model keeps the weights from before that step.
    pub fn train_step(&mut self, n_batches: usize) -> Result<Progress> {
        let room = &mut self.mlp;
        let train = room.train.as_ref().ok_or_else(|| LabError::state("MNIST is not loaded yet"))?;
        let result = match room.run.as_mut() {
            None => return Err(LabError::state("no training run in progress")),
            Some(Run::Base { trainer, model, state }) => {
                trainer.step(&mut BaseObjective::new(model, state), train, n_batches)
            }
            Some(Run::Adapter { trainer, adapter, state }) => {
                let base = room.models.base().ok_or_else(|| LabError::state("the base model is gone"))?;
                trainer.step(&mut AdapterObjective { base, adapter, state }, train, n_batches)
            }
        };
        if result.is_err() {
            self.finish(true)?;
        }
        result
    }

    /// Ends the current run and keeps its model: the whole run, or (`cancelled`) the weights after the
    /// last completed step — a usable, consistent model either way. A new base model drops the
    /// adapters, which were trained for the old one.
    pub fn finish(&mut self, cancelled: bool) -> Result<RunSummary> {
        Ok(self.finish_run(cancelled)?.0)
    }

    /// Like `finish`, plus the adapter summary when the run trained an adapter.
    pub fn finish_run(&mut self, cancelled: bool) -> Result<(RunSummary, Option<AdapterSummary>)> {
        let Some(run) = self.mlp.run.take() else { return Err(LabError::state("no training run in progress")) };
        let summary = |t: &Trainer| RunSummary {
            epochs: t.config().epochs,
            steps: t.losses().len(),
            seconds: t.seconds(),
            samples_per_sec: t.samples_per_sec(),
            cancelled,
            loss_hash: loss_hash(t.losses()),
        };
        match run {
            Run::Base { trainer, model, .. } => {
                self.mlp.models.set_base(*model);
                Ok((summary(&trainer), None))
            }
            Run::Adapter { trainer, mut adapter, .. } => {
                adapter.set_training(None);
                let run = summary(&trainer);
                let info = AdapterSummary::new(&adapter, self.require_base()?.num_params(), Some(&run));
                self.mlp.models.install(*adapter);
                Ok((run, Some(info)))
            }
        }
    }

    /// Starts training an adapter on digits 8–9 (plus `replay` × as many 0–7 samples) over the
    /// frozen base. Nothing changes if a setting is bad.
    pub fn start_adapter(&mut self, settings: &AdapterSettings) -> Result<()> {
        self.ensure_idle()?;
        let (name, lora, cfg, replay) = settings.resolve()?;
        let base = self.require_base()?;
        let (train, _) = self.datasets()?;
        let primary = train.indices_of(&NEW_DIGITS);
        let pool = train.indices_of(&BASE_DIGITS);
        let indices = mix_replay(&primary, &pool, replay, &mut Rng::new(cfg.seed, Stream::Replay))?;
        cfg.validate(indices.len())?;
        let mut adapter = Adapter::new(&name, lora, base, cfg.seed)?;
        adapter.set_training(Some(cfg.seed));
        let lowest = (0..3).find(|&i| adapter.is_active(i)).expect("validated: an adapter has a target layer");
        let features = if lowest > 0 { Some(FeatureCache::build(base, train, &indices, lowest)?) } else { None };
        let state = Box::new(AdapterState::new(base, &adapter, cfg.batch_size, features));
        let trainer = Trainer::new(cfg, indices, Stream::AdapterShuffle, self.trainer_clock())?;
        self.mlp.run = Some(Run::Adapter { trainer, adapter: Box::new(adapter), state });
        Ok(())
    }

    pub fn adapters(&self) -> AdapterList {
        self.mlp.models.list()
    }

    /// Makes `name` the active adapter, or turns adapters off with `None`. Unmerges first.
    pub fn set_active(&mut self, name: Option<&str>) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.mlp.models.set_active(name)
    }

    /// Merges adapter `name` into a copy of the base (PEFT's `merge_and_unload` without unloading):
    /// it becomes active and its logits come from the merged weights alone.
    pub fn merge(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.mlp.models.merge(name)
    }

    /// Back to base + adapter computed separately; the base was never modified, so this is exact.
    pub fn unmerge(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.mlp.models.unmerge(name)
    }

    pub fn delete_adapter(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.mlp.models.delete(name)
    }

    /// Accuracy of the model being trained (base, or base + the adapter in training) on the test set.
    pub fn evaluate_current(&mut self) -> Result<Metrics> {
        let room = &mut self.mlp;
        let test = room.test.as_ref().ok_or_else(|| LabError::state("MNIST is not loaded yet"))?;
        let all: Vec<u32> = (0..test.len() as u32).collect();
        match &mut room.run {
            Some(Run::Base { model, .. }) => train::evaluate(model, None, test, &all),
            Some(Run::Adapter { adapter, .. }) => {
                let base = room.models.base().ok_or_else(|| LabError::state("the base model is gone"))?;
                // Evaluation is deterministic: no dropout while measuring.
                let rng = adapter.take_training();
                let m = train::evaluate(base, Some(&mut **adapter), test, &all);
                adapter.restore_training(rng);
                m
            }
            None => train::evaluate(room.models.require_base()?, None, test, &all),
        }
    }

    pub fn evaluate(&mut self) -> Result<Evaluation> {
        self.ensure_idle()?;
        let room = &mut self.mlp;
        let test = room.test.as_ref().ok_or_else(|| LabError::state("MNIST is not loaded yet"))?;
        let all: Vec<u32> = (0..test.len() as u32).collect();
        let base = train::evaluate(room.models.require_base()?, None, test, &all)?;
        let adapted = room.models.with_adapted(|m, d| train::evaluate(m, d, test, &all)).transpose()?;
        Ok(Evaluation { base, adapted })
    }

    /// Probabilities for one 28×28 digit (784 values 0–255, ink high).
    pub fn classify(&mut self, pixels: &[f64]) -> Result<Probabilities> {
        if pixels.len() != INPUT {
            return Err(LabError::setting("pixels", format!("{} values, expected 784 (28×28)", pixels.len())));
        }
        let bytes = pixels
            .iter()
            .map(|&p| if p.is_finite() && (0.0..=255.0).contains(&p) { Ok(p.round() as u8) } else { Err(p) })
            .collect::<std::result::Result<Vec<u8>, f64>>()
            .map_err(|p| LabError::setting("pixels", format!("{p} is not a value from 0 to 255")))?;
        let mut acts = Activations::new(1);
        data::normalise_pixels(&bytes, acts.input_mut())?;
        let input = acts.xs[0].clone();
        self.require_base()?.forward(&mut acts, None);
        let base = softmax(acts.logits(), CLASSES);
        let adapted = self.mlp.models.with_adapted(|m, d| {
            acts.xs[0].copy_from_slice(&input);
            m.forward(&mut acts, d);
            softmax(acts.logits(), CLASSES)
        });
        Ok(Probabilities { base, adapted })
    }

    /// Logits of the adapted model (or the base when no adapter is active) for normalised inputs
    /// (b×784): for checks against PyTorch/PEFT and merge tests.
    pub fn logits(&mut self, inputs: &[f32], adapted: bool) -> Result<Vec<f32>> {
        if !inputs.len().is_multiple_of(INPUT) {
            return Err(LabError::setting("inputs", "length is not a multiple of 784"));
        }
        let mut acts = Activations::new(inputs.len() / INPUT);
        acts.input_mut().copy_from_slice(inputs);
        if adapted {
            if let Some(()) = self.mlp.models.with_adapted(|m, d| m.forward(&mut acts, d)) {
                return Ok(acts.logits().to_vec());
            }
        }
        self.require_base()?.forward(&mut acts, None);
        Ok(acts.logits().to_vec())
    }
}
