//! The lab's state and every operation the page can ask for, in plain Rust. `web.rs` only converts
//! arguments and results; native tests drive this directly.
//!
//! One room per story, each readable alone: `svd` (panel 1), `mlp` (the article's MLP, panels 2–5),
//! `lm` (the language model, part 2), `llm` (a pretrained LLM, part 3), `qlora` (either model's base
//! held in 4 bits),
//! and, shared by the models, `adapters` (a base and its named adapters) and `settings` (reading
//! what the page sends). This file holds what every room shares: the clock and the rule of one
//! training run at a time.

mod adapters;
mod checkpoints;
mod heap;
mod llm;
mod lm;
mod mlp;
mod qlora;
mod settings;
mod svd;

pub use adapters::{AdapterConfigView, AdapterInfo, AdapterList};
pub use llm::{
    GenerateRequest, Generated, LlmAdapterSettings, LlmData, LlmInfo, LlmPlanInfo, Logits, ParamCount, Pretrained,
    Scores, SftDataInfo, SftEvaluation, SftExampleView, SftFormat, SftPiece, SftProgress, SftStart, SftSummary,
    TrainingScript,
};
pub use lm::{
    CheckpointInfo, DataChoice, LmAdapterSettings, LmBaseSettings, LmEvaluation, LmProgress, LmRunSummary, Score,
};
pub use mlp::{
    AdapterSettings, AdapterSummary, BaseSettings, Evaluation, Probabilities, RunSummary, BASE_DIGITS, NEW_DIGITS,
};
pub use qlora::{BaseForm, Quantization, QuantizeSettings};
pub use settings::whole;
pub use svd::{LayerSvd, SvdResult};

use std::rc::Rc;

use serde::Serialize;

use crate::error::{LabError, Result};

pub struct Lab {
    clock: Rc<dyn Fn() -> f64>,
    mlp: mlp::MlpRoom,
    lm: lm::LmRoom,
    llm: llm::LlmRoom,
}

/// What the module was built with (the page's status line and the benchmarks).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    pub threads: bool,
    pub relaxed_simd: bool,
    pub pool_threads: usize,
}

impl BuildInfo {
    pub fn now() -> Self {
        Self {
            threads: cfg!(feature = "threads"),
            relaxed_simd: crate::kernels::FUSED_MUL_ADD,
            pool_threads: rayon::current_num_threads(),
        }
    }
}

impl Lab {
    /// `clock` returns seconds from any origin (the worker passes `performance.now() / 1000`).
    pub fn new(clock: impl Fn() -> f64 + 'static) -> Self {
        Self {
            clock: Rc::new(clock),
            mlp: mlp::MlpRoom::default(),
            lm: lm::LmRoom::default(),
            llm: llm::LlmRoom::default(),
        }
    }

    pub fn is_training(&self) -> bool {
        self.mlp.is_training() || self.lm.is_training() || self.llm.is_training()
    }

    /// One run at a time, whichever model it trains: the two cores are the run's.
    fn ensure_idle(&self) -> Result<()> {
        if self.is_training() {
            return Err(LabError::state("a training run is in progress: cancel it or wait for it to finish"));
        }
        Ok(())
    }

    /// The lab's clock, for a trainer to time its steps with.
    fn trainer_clock(&self) -> Box<dyn Fn() -> f64> {
        let clock = self.clock.clone();
        Box::new(move || clock())
    }
}
