//! The lab's state and every operation the page can ask for, in plain Rust: datasets, the base model,
//! the run in progress. `web.rs` only converts arguments and results; native tests drive this directly.

use serde::{Deserialize, Serialize};

use crate::data::{self, mix_replay, Dataset};
use crate::error::{LabError, Result};
use crate::io;
use crate::lora::{Adapter, Bias, Init, LoraConfig, Scaling};
use crate::nn::{softmax, Activations, LayerDelta, Mlp, CLASSES, INPUT, LAYER_NAMES, LAYER_SHAPES};
use crate::rng::{Rng, Stream};
use crate::svd;
use crate::train::{
    self, AdapterObjective, AdapterState, BaseObjective, BaseState, FeatureCache, Metrics, Progress, Schedule,
    TrainConfig, Trainer,
};

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
    /// FNV-1a of every batch loss's bits, as hex: equal runs have equal hashes (determinism checks).
    pub loss_hash: String,
}

fn loss_hash(losses: &[f32]) -> String {
    let h = losses
        .iter()
        .flat_map(|l| l.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{h:016x}")
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
            Some(t) => t.iter().map(|n| LoraConfig::layer_index(n)).collect::<Result<Vec<_>>>()?,
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
        lora.validate()?;
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
            None => format!("r{}-a{}-{}", lora.rank, lora.alpha, lora.target_names().join("+")),
        };
        Ok((name, lora, cfg, replay))
    }
}

/// Adapter names are shown and used as file names: 1–64 visible characters.
fn valid_name(n: &str) -> Result<String> {
    let n = n.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(|c| c.is_control() || "/\\".contains(c)) {
        return Err(LabError::setting("name", format!("\"{n}\" must be 1–64 characters, without / or \\")));
    }
    Ok(n.to_string())
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
    fn new(adapter: &Adapter, base_params: usize, run: Option<&RunSummary>) -> Self {
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

/// One adapter in the list the page shows.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterInfo {
    pub name: String,
    pub config: AdapterConfigView,
    pub trainable_params: usize,
    pub report: String,
    pub merged: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterConfigView {
    pub targets: Vec<String>,
    pub rank: usize,
    pub alpha: f64,
    pub scaling: Scaling,
    pub init: Init,
    pub dropout: f32,
    pub bias: Bias,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterList {
    pub active: Option<String>,
    pub list: Vec<AdapterInfo>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SvdResult {
    #[serde(rename = "S")]
    pub s: Vec<f32>,
    #[serde(rename = "A")]
    pub a: Vec<Vec<f32>>,
    #[serde(rename = "B")]
    pub b: Vec<Vec<f32>>,
    pub approx: Vec<Vec<f32>>,
    pub error: f32,
    pub tail_error: f32,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerSvd {
    #[serde(rename = "S")]
    pub s: Vec<f32>,
    pub error: f32,
    pub shape: [usize; 2],
}

enum Run {
    Base { trainer: Trainer, model: Mlp, state: Box<BaseState> },
    Adapter { trainer: Trainer, adapter: Box<Adapter>, state: Box<AdapterState> },
}

pub struct Lab {
    train: Option<Dataset>,
    test: Option<Dataset>,
    /// The base model as trained or loaded: never changed by adapters.
    base: Option<Mlp>,
    adapters: Vec<Adapter>,
    active: Option<String>,
    /// The base with the active adapter merged in, while it is merged.
    merged: Option<Mlp>,
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
        Self {
            train: None,
            test: None,
            base: None,
            adapters: Vec::new(),
            active: None,
            merged: None,
            run: None,
            clock: std::rc::Rc::new(clock),
        }
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
            Some(Run::Adapter { trainer, adapter, state }) => {
                let base = self.base.as_ref().ok_or_else(|| LabError::state("the base model is gone"))?;
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
        let Some(run) = self.run.take() else { return Err(LabError::state("no training run in progress")) };
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
                self.set_base(model);
                Ok((summary(&trainer), None))
            }
            Run::Adapter { trainer, mut adapter, .. } => {
                adapter.set_training(None);
                let run = summary(&trainer);
                let info = AdapterSummary::new(&adapter, self.require_base()?.num_params(), Some(&run));
                self.install_adapter(*adapter);
                Ok((run, Some(info)))
            }
        }
    }

    /// Adds `adapter` (replacing one of its name) and makes it the active one, computed separately:
    /// no earlier merge may shadow it.
    fn install_adapter(&mut self, adapter: Adapter) {
        let name = adapter.name.clone();
        self.adapters.retain(|a| a.name != name);
        self.adapters.push(adapter);
        self.merged = None;
        self.active = Some(name);
    }

    fn set_base(&mut self, model: Mlp) {
        self.base = Some(model);
        self.adapters.clear();
        self.active = None;
        self.merged = None;
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
        let clock = self.clock.clone();
        let trainer = Trainer::new(cfg, indices, Stream::AdapterShuffle, Box::new(move || clock()))?;
        self.run = Some(Run::Adapter { trainer, adapter: Box::new(adapter), state });
        Ok(())
    }

    fn adapter_index(&self, name: &str) -> Result<usize> {
        self.adapters
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| LabError::state(format!("there is no adapter named \"{name}\"")))
    }

    pub fn adapters(&self) -> AdapterList {
        let base_params = self.base.as_ref().map_or(0, Mlp::num_params);
        AdapterList {
            active: self.active.clone(),
            list: self
                .adapters
                .iter()
                .map(|a| AdapterInfo {
                    name: a.name.clone(),
                    config: AdapterConfigView {
                        targets: a.config.target_names(),
                        rank: a.config.rank,
                        alpha: a.config.alpha,
                        scaling: a.config.scaling,
                        init: a.config.init,
                        dropout: a.config.dropout,
                        bias: a.config.bias,
                    },
                    trainable_params: a.trainable_params(),
                    report: a.trainable_report(base_params),
                    merged: self.merged.is_some() && self.active.as_deref() == Some(a.name.as_str()),
                })
                .collect(),
        }
    }

    /// Makes `name` the active adapter, or turns adapters off with `None`. Unmerges first.
    pub fn set_active(&mut self, name: Option<&str>) -> Result<AdapterList> {
        self.ensure_idle()?;
        if let Some(n) = name {
            self.adapter_index(n)?;
        }
        self.merged = None;
        self.active = name.map(str::to_string);
        Ok(self.adapters())
    }

    /// Merges adapter `name` into a copy of the base (PEFT's `merge_and_unload` without unloading):
    /// it becomes active and its logits come from the merged weights alone.
    pub fn merge(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        let i = self.adapter_index(name)?;
        let mut merged = self.require_base()?.clone();
        self.adapters[i].merge_into(&mut merged);
        self.merged = Some(merged);
        self.active = Some(name.to_string());
        Ok(self.adapters())
    }

    /// Back to base + adapter computed separately; the base was never modified, so this is exact.
    pub fn unmerge(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.adapter_index(name)?;
        if self.active.as_deref() != Some(name) || self.merged.is_none() {
            return Err(LabError::state(format!("adapter \"{name}\" is not merged")));
        }
        self.merged = None;
        Ok(self.adapters())
    }

    pub fn delete_adapter(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        let i = self.adapter_index(name)?;
        self.adapters.remove(i);
        if self.active.as_deref() == Some(name) {
            self.active = None;
            self.merged = None;
        }
        Ok(self.adapters())
    }

    /// Runs `f` with the adapted model: (model, delta) — the merged weights alone, or base + adapter.
    fn with_adapted<T>(&mut self, f: impl FnOnce(&Mlp, Option<&mut dyn LayerDelta>) -> T) -> Option<T> {
        let name = self.active.clone()?;
        if let Some(m) = &self.merged {
            return Some(f(m, None));
        }
        let base = self.base.as_ref()?;
        let adapter = self.adapters.iter_mut().find(|a| a.name == name)?;
        Some(f(base, Some(adapter)))
    }

    pub fn export_model(&self) -> Result<Vec<u8>> {
        io::export_model(self.require_base()?)
    }

    /// Loads a base model; on any error the current model and adapters are untouched.
    pub fn import_model(&mut self, bytes: &[u8]) -> Result<usize> {
        self.ensure_idle()?;
        let model = io::import_model(bytes)?;
        let n = model.num_params();
        self.set_base(model);
        Ok(n)
    }

    pub fn export_adapter(&self, name: &str) -> Result<io::AdapterFiles> {
        let i = self.adapter_index(name)?;
        io::export_adapter(&self.adapters[i], self.require_base()?)
    }

    /// Loads an adapter for the current base under `name` (replacing one of that name) and makes it
    /// active. A PiSSA adapter's residual base (`base_model`) is turned back into the frozen factors
    /// relative to the current base. On any error nothing changes.
    pub fn import_adapter(
        &mut self,
        name: &str,
        safetensors: &[u8],
        config_json: &str,
        base_model: Option<&[u8]>,
    ) -> Result<AdapterSummary> {
        self.ensure_idle()?;
        let name = valid_name(name)?;
        let base = self.require_base()?;
        let mut adapter = io::import_adapter(&name, safetensors, config_json, base)?;
        if let Some(bytes) = base_model {
            let residual = io::import_model(bytes)?;
            attach_residual(&mut adapter, base, &residual)?;
        }
        let summary = AdapterSummary::new(&adapter, base.num_params(), None);
        self.install_adapter(adapter);
        Ok(summary)
    }

    /// Low-rank approximation of a matrix given as rows (the page's first panel).
    pub fn svd(rows: &[Vec<f64>], rank: usize) -> Result<SvdResult> {
        let m = rows.len();
        let n = rows.first().map_or(0, Vec::len);
        if m == 0 || n == 0 || m > 64 || n > 64 {
            return Err(LabError::setting("matrix", format!("{m}×{n}: use 1 to 64 rows and columns")));
        }
        if rows.iter().any(|r| r.len() != n) {
            return Err(LabError::setting("matrix", "every row must have the same number of values"));
        }
        let w: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let lr = svd::low_rank(&w, m, n, rank)?;
        let to_rows = |v: &[f32], cols: usize| v.chunks(cols).map(<[f32]>::to_vec).collect::<Vec<_>>();
        Ok(SvdResult {
            tail_error: svd::tail_error(&lr.singular_values, rank),
            s: lr.singular_values.clone(),
            a: to_rows(&lr.a, rank),
            b: to_rows(&lr.b, n),
            approx: to_rows(&lr.approx, n),
            error: lr.error,
        })
    }

    /// Singular values of one of the base model's layers, and the error of keeping `rank` of them.
    pub fn layer_svd(&self, layer: &str, rank: usize) -> Result<LayerSvd> {
        let i = LoraConfig::layer_index(layer)?;
        let (fan_in, fan_out) = LAYER_SHAPES[i];
        let s = svd::singular_values(&self.require_base()?.layers[i].weight, fan_out, fan_in)?;
        if rank == 0 || rank > s.len() {
            return Err(LabError::setting("rank", format!("{rank} is outside 1..={} for {}", s.len(), LAYER_NAMES[i])));
        }
        Ok(LayerSvd { error: svd::tail_error(&s, rank), s, shape: [fan_out, fan_in] })
    }

    /// Accuracy of the model being trained (base, or base + the adapter in training) on the test set.
    pub fn evaluate_current(&mut self) -> Result<Metrics> {
        let test = self.test.as_ref().ok_or_else(|| LabError::state("MNIST is not loaded yet"))?;
        let all: Vec<u32> = (0..test.len() as u32).collect();
        match &mut self.run {
            Some(Run::Base { model, .. }) => train::evaluate(model, None, test, &all),
            Some(Run::Adapter { adapter, .. }) => {
                let base = self.base.as_ref().ok_or_else(|| LabError::state("the base model is gone"))?;
                // Evaluation is deterministic: no dropout while measuring.
                let rng = adapter.take_training();
                let m = train::evaluate(base, Some(&mut **adapter), test, &all);
                adapter.restore_training(rng);
                m
            }
            None => train::evaluate(self.require_base()?, None, test, &all),
        }
    }

    fn require_base(&self) -> Result<&Mlp> {
        self.base.as_ref().ok_or_else(|| LabError::state("there is no base model yet: train or load one first"))
    }

    pub fn evaluate(&mut self) -> Result<Evaluation> {
        self.ensure_idle()?;
        let test = self.test.take().ok_or_else(|| LabError::state("MNIST is not loaded yet"))?;
        let result = (|| {
            let all: Vec<u32> = (0..test.len() as u32).collect();
            let base = train::evaluate(self.require_base()?, None, &test, &all)?;
            let adapted = self.with_adapted(|m, d| train::evaluate(m, d, &test, &all)).transpose()?;
            Ok(Evaluation { base, adapted })
        })();
        self.test = Some(test);
        result
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
        let adapted = self.with_adapted(|m, d| {
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
            if let Some(()) = self.with_adapted(|m, d| m.forward(&mut acts, d)) {
                return Ok(acts.logits().to_vec());
            }
        }
        self.require_base()?.forward(&mut acts, None);
        Ok(acts.logits().to_vec())
    }
}

/// Gives a loaded adapter the frozen factors of a PiSSA residual: `residual − base` must be a change
/// of rank r on each adapted layer (−s·B₀·A₀), recovered by SVD; elsewhere the two must agree.
fn attach_residual(adapter: &mut Adapter, base: &Mlp, residual: &Mlp) -> Result<()> {
    let file = io::MODEL_FILE;
    for (i, (name, (wb, wr))) in LAYER_NAMES.iter().zip(base.layers.iter().zip(&residual.layers)).enumerate() {
        let targeted = adapter.layer(i).is_some();
        if wb.bias != wr.bias || (!targeted && wb.weight != wr.weight) {
            return Err(LabError::file(
                file,
                format!("{name} differs from the current base model; a PiSSA residual may only change the adapted layers' weights"),
            ));
        }
    }
    for l in &mut adapter.layers {
        let (fan_in, fan_out) = LAYER_SHAPES[l.layer];
        let d: Vec<f32> =
            residual.layers[l.layer].weight.iter().zip(&base.layers[l.layer].weight).map(|(r, b)| r - b).collect();
        let norm = d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() as f32;
        if norm == 0.0 {
            continue;
        }
        let lr = svd::low_rank(&d, fan_out, fan_in, l.rank)?;
        if lr.error > 1e-3 * norm + 1e-5 {
            return Err(LabError::file(
                file,
                format!(
                    "{} differs from the current base by more than a rank-{} change: load it as the base model instead",
                    LAYER_NAMES[l.layer], l.rank
                ),
            ));
        }
        // d = −s·B₀·A₀ with lora_B ← A (out×r), lora_A ← B (r×in): B₀ = −A/√s, A₀ = B/√s.
        let k = 1.0 / l.scaling.sqrt();
        let a0 = lr.b.iter().map(|v| v * k).collect();
        let b0 = lr.a.iter().map(|v| -v * k).collect();
        l.residual = Some((a0, b0));
    }
    Ok(())
}
