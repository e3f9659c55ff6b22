//! Training and evaluation: the resumable `Trainer`, the base-model objective, and metrics.

mod adapter;
mod base;
mod buffers;
mod eval;
mod lm;
mod sft;
mod trainer;

pub use adapter::{AdapterObjective, AdapterState, FeatureCache};
pub use base::{BaseObjective, BaseState};
pub use eval::{evaluate, Metrics};
pub use lm::{LmAdapterObjective, LmAdapterState, LmBaseObjective, LmBaseState, MAX_GRAD_NORM};
pub use sft::{SftData, SftObjective, SftState};
pub use trainer::{Objective, Progress, Schedule, TrainConfig, Trainer};
