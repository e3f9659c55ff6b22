//! A resumable trainer: `step(n_batches)` runs a few batches and returns `Progress`, so the worker can
//! pause, resume and cancel between calls. What a batch does (which parameters, which optimiser) is
//! the `Objective`'s business; the trainer owns epochs, order, learning-rate schedule and timing.

use crate::data::{Dataset, EpochOrder};
use crate::error::{LabError, Result};
use crate::kernels;
use crate::rng::{Rng, Stream};

/// One batch of training: forward, backward, and — only when the loss and gradients are finite — the
/// optimiser update. Returns the batch's mean loss; a non-finite loss means nothing was updated.
/// `D` is the data the batch indices point into: MNIST (`Dataset`) or packed text (`text::Blocks`).
pub trait Objective<D: ?Sized = Dataset>: Send {
    fn train_batch(&mut self, data: &D, batch: &[u32], lr: f32) -> Result<f32>;
}

/// How the learning rate moves over a run. `Constant` and `Cosine` are the MLP's; the `…WithWarmup`
/// schedules are transformers' (`get_cosine_schedule_with_warmup`, `get_linear_schedule_with_warmup`,
/// `get_constant_schedule_with_warmup`), whose warmup lasts `ceil(warmup_ratio × total steps)` steps as
/// `TrainingArguments` computes it. Every schedule is evaluated at the number of optimizer steps taken
/// so far (0 for the first update), as `LambdaLR` is.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The same learning rate throughout (the article).
    Constant,
    /// Cosine decay from `lr` to 0 over the run: ends the last epoch quietly, so the final accuracy
    /// does not depend on where a noisy constant-rate run happens to stop.
    Cosine,
    /// Linear warmup from 0 to `lr`, then half a cosine down to 0.
    #[serde(rename = "cosineWithWarmup", rename_all = "camelCase")]
    CosineWithWarmup { warmup_ratio: f64 },
    /// Linear warmup from 0 to `lr`, then a straight line down to 0.
    #[serde(rename = "linearWithWarmup", rename_all = "camelCase")]
    LinearWithWarmup { warmup_ratio: f64 },
    /// Linear warmup from 0 to `lr`, then `lr`.
    #[serde(rename = "constantWithWarmup", rename_all = "camelCase")]
    ConstantWithWarmup { warmup_ratio: f64 },
}

impl Schedule {
    /// The fraction of the run spent warming up (0 for `Constant` and `Cosine`).
    pub fn warmup_ratio(&self) -> f64 {
        match *self {
            Schedule::Constant | Schedule::Cosine => 0.0,
            Schedule::CosineWithWarmup { warmup_ratio }
            | Schedule::LinearWithWarmup { warmup_ratio }
            | Schedule::ConstantWithWarmup { warmup_ratio } => warmup_ratio,
        }
    }

    /// Warmup steps of a run of `total_steps` optimizer steps: `ceil(total_steps × warmup_ratio)` in
    /// f64, as `TrainingArguments.get_warmup_steps` (so 7 % of 100 steps is 8, as there).
    pub fn warmup_steps(&self, total_steps: usize) -> usize {
        (total_steps as f64 * self.warmup_ratio()).ceil() as usize
    }

    /// Rejects a warmup ratio that is not a finite number in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let r = self.warmup_ratio();
        if !r.is_finite() || !(0.0..1.0).contains(&r) {
            return Err(LabError::setting("warmup ratio", format!("{r} is not in [0, 1)")));
        }
        Ok(())
    }

    /// The factor of the base learning rate after `step` optimizer steps of `total_steps`, as the
    /// `LambdaLR` lambdas of transformers' schedules compute it (f64).
    pub fn multiplier(&self, step: usize, total_steps: usize) -> f64 {
        let (s, total) = (step as f64, total_steps as f64);
        let warmup = self.warmup_steps(total_steps);
        let w = warmup as f64;
        // After the warmup: `(total − w)` steps, at least 1, as transformers' `max(1, …)`.
        let rest = total_steps.saturating_sub(warmup).max(1) as f64;
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * (s / total)).cos()),
            _ if step < warmup => s / w.max(1.0),
            Schedule::ConstantWithWarmup { .. } => 1.0,
            Schedule::LinearWithWarmup { .. } => ((total - s) / rest).max(0.0),
            Schedule::CosineWithWarmup { .. } => {
                // transformers' `math.pi * num_cycles * 2.0 * progress` with num_cycles 0.5: exactly π·progress.
                let progress = (s - w) / rest;
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }

    /// The learning rate after `step` optimizer steps of `total_steps`, from the base rate `lr`.
    pub fn lr_at(&self, lr: f32, step: usize, total_steps: usize) -> f32 {
        match *self {
            Schedule::Constant => lr,
            Schedule::Cosine => {
                let t = step as f64 / total_steps as f64;
                (lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
            _ => (lr as f64 * self.multiplier(step, total_steps)) as f32,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub schedule: Schedule,
}

impl TrainConfig {
    /// Our base-model defaults: seed 13, 5 epochs, batch 64, Adam 1e-3 with cosine decay.
    pub fn base_default() -> Self {
        Self { seed: 13, epochs: 5, batch_size: 64, lr: 1e-3, schedule: Schedule::Cosine }
    }

    /// Rejects settings that cannot train on `samples` samples, before any work starts.
    pub fn validate(&self, samples: usize) -> Result<()> {
        if self.epochs == 0 {
            return Err(LabError::setting("epochs", "must be at least 1"));
        }
        if self.epochs > 1000 {
            return Err(LabError::setting("epochs", format!("{} is more than the 1000 allowed", self.epochs)));
        }
        if samples == 0 {
            return Err(LabError::setting("training data", "no samples to train on"));
        }
        if self.batch_size == 0 || self.batch_size > samples {
            return Err(LabError::setting(
                "batch size",
                format!("{} is not between 1 and the {samples} training samples", self.batch_size),
            ));
        }
        if !self.lr.is_finite() || self.lr <= 0.0 || self.lr > 1.0 {
            return Err(LabError::setting("learning rate", format!("{} is not in (0, 1]", self.lr)));
        }
        self.schedule.validate()
    }
}

/// What the page shows after each call to `step`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// 1-based epoch of the last batch run.
    pub epoch: usize,
    pub epochs: usize,
    /// Batches run so far, over the whole run.
    pub step: usize,
    pub steps: usize,
    /// Mean loss of the last batch.
    pub loss: f32,
    /// Exponential moving average of the batch losses (bias-corrected, like a TensorBoard smoothing).
    pub smooth_loss: f32,
    pub samples_per_sec: f64,
    pub eta_seconds: f64,
    /// The last batch closed an epoch.
    pub epoch_finished: bool,
    pub done: bool,
    /// The loss of every batch run by this call, in order (for a per-step plot).
    pub losses: Vec<f32>,
}

pub struct Trainer {
    run: RunState,
    busy_seconds: f64,
    clock: Box<dyn Fn() -> f64>,
}

/// Everything about a run but its clock (a JavaScript function, bound to the worker's thread): the
/// part of the trainer that the batches, on a pool thread, move forward.
struct RunState {
    cfg: TrainConfig,
    order: EpochOrder,
    batches_per_epoch: usize,
    samples: usize,
    epoch: usize,
    batch_in_epoch: usize,
    step: usize,
    losses: Vec<f32>,
    smooth: f64,
    samples_done: usize,
}

const SMOOTHING: f64 = 0.98;

impl Trainer {
    /// A run over `indices` of a dataset. `clock` returns seconds (any origin): the worker passes
    /// `performance.now()/1000`, native code `Instant`. Only time inside `step` counts, so a pause
    /// does not lower samples/s.
    pub fn new(cfg: TrainConfig, indices: Vec<u32>, shuffle: Stream, clock: Box<dyn Fn() -> f64>) -> Result<Self> {
        cfg.validate(indices.len())?;
        let samples = indices.len();
        let mut order = EpochOrder::new(indices, cfg.batch_size, Rng::new(cfg.seed, shuffle))?;
        order.next_epoch();
        let run = RunState {
            batches_per_epoch: samples.div_ceil(cfg.batch_size),
            samples,
            cfg,
            order,
            epoch: 0,
            batch_in_epoch: 0,
            step: 0,
            losses: Vec::new(),
            smooth: 0.0,
            samples_done: 0,
        };
        Ok(Self { run, busy_seconds: 0.0, clock })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.run.cfg
    }
    pub fn total_steps(&self) -> usize {
        self.run.total_steps()
    }
    pub fn is_done(&self) -> bool {
        self.run.is_done()
    }
    /// Every batch loss so far.
    pub fn losses(&self) -> &[f32] {
        &self.run.losses
    }
    pub fn seconds(&self) -> f64 {
        self.busy_seconds
    }
    pub fn samples_per_sec(&self) -> f64 {
        if self.busy_seconds > 0.0 {
            self.run.samples_done as f64 / self.busy_seconds
        } else {
            0.0
        }
    }

    /// The learning rate of batch `step` (0-based) under the schedule.
    pub fn lr_at(&self, step: usize) -> f32 {
        self.run.lr_at(step)
    }

    /// Steps of the schedule's linear warmup (0 without one).
    pub fn warmup_steps(&self) -> usize {
        self.run.cfg.schedule.warmup_steps(self.run.total_steps())
    }

    /// Runs up to `n_batches` batches, stopping early at the end of an epoch (so the caller can
    /// evaluate) or of the run. A non-finite loss stops training with an error; the objective has
    /// not applied that batch, so the weights are the last good ones.
    pub fn step<D: Sync + ?Sized>(&mut self, obj: &mut dyn Objective<D>, ds: &D, n_batches: usize) -> Result<Progress> {
        let t0 = (self.clock)();
        let first = self.run.losses.len();
        let run = &mut self.run;
        let outcome = kernels::on_pool(|| run.batches(obj, ds, n_batches));
        self.busy_seconds += (self.clock)() - t0;
        let epoch_finished = outcome?;
        Ok(self.progress(epoch_finished, first))
    }

    fn progress(&self, epoch_finished: bool, first: usize) -> Progress {
        let run = &self.run;
        let sps = self.samples_per_sec();
        let remaining = (run.total_steps() - run.step) as f64 * run.cfg.batch_size as f64;
        let debias = 1.0 - SMOOTHING.powi(run.step.max(1) as i32);
        Progress {
            epoch: if epoch_finished { run.epoch } else { (run.epoch + 1).min(run.cfg.epochs) },
            epochs: run.cfg.epochs,
            step: run.step,
            steps: run.total_steps(),
            loss: run.losses.last().copied().unwrap_or(f32::NAN),
            smooth_loss: (run.smooth / debias) as f32,
            samples_per_sec: sps,
            eta_seconds: if sps > 0.0 { remaining.min((run.samples * run.cfg.epochs) as f64) / sps } else { f64::NAN },
            epoch_finished,
            done: run.is_done(),
            losses: run.losses[first..].to_vec(),
        }
    }
}

impl RunState {
    fn total_steps(&self) -> usize {
        self.batches_per_epoch * self.cfg.epochs
    }
    fn is_done(&self) -> bool {
        self.epoch >= self.cfg.epochs
    }

    fn lr_at(&self, step: usize) -> f32 {
        self.cfg.schedule.lr_at(self.cfg.lr, step, self.total_steps())
    }

    /// The batches of one `step`; `Ok(true)` when the last one closed an epoch.
    fn batches<D: ?Sized>(&mut self, obj: &mut dyn Objective<D>, ds: &D, n_batches: usize) -> Result<bool> {
        for _ in 0..n_batches {
            if self.is_done() {
                break;
            }
            let lr = self.lr_at(self.step);
            let batch = self.order.batch(self.batch_in_epoch).expect("batch index within the epoch");
            let loss = obj.train_batch(ds, batch, lr)?;
            if !loss.is_finite() {
                return Err(LabError::Diverged(format!(
                    "the loss became {loss} at step {} (epoch {}); the weights before that step are kept — try a lower learning rate",
                    self.step + 1,
                    self.epoch + 1
                )));
            }
            self.samples_done += batch.len();
            self.losses.push(loss);
            self.smooth = SMOOTHING * self.smooth + (1.0 - SMOOTHING) * loss as f64;
            self.step += 1;
            self.batch_in_epoch += 1;
            if self.batch_in_epoch == self.batches_per_epoch {
                self.batch_in_epoch = 0;
                self.epoch += 1;
                self.order.next_epoch();
                return Ok(true);
            }
        }
        Ok(false)
    }
}
