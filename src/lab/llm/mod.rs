//! Part 3: a real pretrained LLM (SmolLM2-135M-Instruct, or the user's own Llama-family GGUF) with its
//! own tokenizer and chat template — loaded, tokenised, templated, scored, sampled and fine-tuned.
//! Operations are the lab's `llm_*` methods; what a model is made of is in `pretrained.rs`, generation
//! requests in `generate.rs`, fine-tuning in `train.rs` (settings in `settings.rs`, the demo task in
//! `demo.rs`), adapter files in `files.rs`, the script to go on with TRL in `script.rs`.
//!
//! A load that fails leaves the model loaded before as it was.

mod demo;
mod files;
mod generate;
mod merged;
mod pretrained;
mod script;
mod settings;
mod train;

pub use generate::{GenerateRequest, Generated};
pub use pretrained::{LlmInfo, Pretrained};
pub use script::TrainingScript;
pub use settings::{LlmAdapterSettings, LlmData};
pub use train::{
    LlmPlanInfo, Nf4Base, ParamCount, Scores, SftDataInfo, SftEvaluation, SftExampleView, SftFormat, SftPiece,
    SftProgress, SftStart, SftSummary,
};

use super::adapters::{AdapterInfo, AdapterList};
use super::checkpoints::Checkpoints;
use crate::lora::{Adaptable, Adapter};
use crate::train::SftData;
use crate::nn::LayerDelta;
use train::{AdapterMeta, LlmRun};

use super::Lab;
use crate::error::{LabError, Result};
use crate::io::HfFolder;
use crate::lm::LmActivations;
use crate::text::Message;

/// The most logits `llm_logits` returns at once (256 MB of f32).
const MAX_LOGITS: usize = 64 << 20;

/// Part 3's share of the lab's state.
#[derive(Default)]
pub(super) struct LlmRoom {
    model: Option<Pretrained>,
    /// The demo task's (train, held-out) JSONL, once made.
    demo: Option<(String, String)>,
    /// Adapters trained or loaded for the model, in the order made.
    adapters: Vec<(Adapter, AdapterMeta)>,
    active: Option<String>,
    run: Option<LlmRun>,
    checkpoints: Checkpoints,
    /// The base's held-out loss on the data it was measured on, until the base changes: evaluating the
    /// base, then training (whose loss before is the base's), measures it once.
    base_loss: Option<(SftData, f64)>,
}

impl LlmRoom {
    /// Keeps `adapter` (replacing one of its name) and makes it active.
    fn install(&mut self, adapter: Adapter, meta: AdapterMeta) {
        let name = adapter.name.clone();
        self.adapters.retain(|(a, _)| a.name != name);
        self.adapters.push((adapter, meta));
        self.active = Some(name);
    }

    /// A new model: the adapters of the old one cannot run on it.
    fn set_model(&mut self, model: Pretrained) {
        self.model = Some(model);
        self.base_loss = None;
        self.adapters.clear();
        self.active = None;
        self.checkpoints.clear();
    }

    fn list(&self) -> AdapterList {
        let base = self.model.as_ref().map(|m| &m.model);
        AdapterList {
            active: self.active.clone(),
            list: self
                .adapters
                .iter()
                .map(|(a, _)| AdapterInfo::of(a, base.map_or(0, |b| b.all_params_with(a.trainable_params())), false))
                .collect(),
        }
    }

    /// Whether the loaded model's base is held in NF4, and how.
    fn base_nf4(&self) -> Option<Nf4Base> {
        self.llama().and_then(Adaptable::quantization).map(|double_quant| Nf4Base { double_quant })
    }

    /// The loaded model's Llama, if any (QLoRA's NF4 base, `lab/qlora.rs`).
    pub(in crate::lab) fn llama(&self) -> Option<&crate::lm::Llama> {
        self.model.as_ref().map(|m| &m.model)
    }

    pub(in crate::lab) fn llama_mut(&mut self) -> Option<&mut crate::lm::Llama> {
        self.base_loss = None;
        self.model.as_mut().map(|m| &mut m.model)
    }

    fn find(&self, name: &str) -> Result<&(Adapter, AdapterMeta)> {
        self.adapters.iter().find(|(a, _)| a.name == name).ok_or_else(|| {
            LabError::setting("adapter", format!("there is no adapter \"{name}\" on the pretrained model"))
        })
    }

    /// The model and the active adapter (in evaluation mode), when `adapted` asks for it: an error
    /// when no adapter is on.
    fn with_delta(&mut self, adapted: bool) -> Result<(&Pretrained, Option<&mut dyn LayerDelta>)> {
        let m = self.model.as_ref().ok_or_else(|| LabError::state("no pretrained model is loaded: load one first"))?;
        if !adapted {
            return Ok((m, None));
        }
        let name = self.active.as_deref().ok_or_else(|| LabError::state("no adapter is on: train or choose one first"))?;
        let (a, _) = self.adapters.iter_mut().find(|(a, _)| a.name == name).expect("the active adapter is kept");
        Ok((m, Some(a as &mut dyn LayerDelta)))
    }
}

/// Logits of a sequence: `rows × vocab`, row-major.
#[derive(Clone, Debug)]
pub struct Logits {
    pub vocab: usize,
    pub logits: Vec<f32>,
}

impl Lab {
    /// Loads a GGUF file (`file` names it in errors) as the pretrained model, replacing the one loaded
    /// before only when this one loads. The bytes are kept: the model's weights are read in place.
    pub fn llm_load_gguf(&mut self, bytes: Vec<u8>, file: &str, name: &str) -> Result<LlmInfo> {
        self.ensure_idle()?;
        let model = Pretrained::from_gguf(bytes, file, name)?;
        let info = model.info();
        self.llm.set_model(model);
        Ok(info)
    }

    /// Loads a Hugging Face folder (`config.json`, `model.safetensors` in f32, f16 or bf16, `tokenizer.json`, and the
    /// chat template if any) as the pretrained model, replacing the one before only when it loads.
    pub fn llm_load_hf(&mut self, folder: &HfFolder, name: &str) -> Result<LlmInfo> {
        self.ensure_idle()?;
        let model = Pretrained::from_hf(folder, name)?;
        let info = model.info();
        self.llm.set_model(model);
        Ok(info)
    }

    /// What is loaded, if anything.
    pub fn llm_info(&self) -> Option<LlmInfo> {
        self.llm.model.as_ref().map(Pretrained::info)
    }

    fn llm_require(&self) -> Result<&Pretrained> {
        self.llm.model.as_ref().ok_or_else(|| LabError::state("no pretrained model is loaded: load one first"))
    }

    /// The token ids of `text` (a BOS first only when the model's tokenizer asks for one).
    pub fn llm_tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.llm_require()?.tokenize(text))
    }

    /// The text of `ids`; an id outside the vocabulary is refused by position.
    pub fn llm_detokenize(&self, ids: &[u32]) -> Result<String> {
        let m = self.llm_require()?;
        m.check_ids(ids)?;
        Ok(m.tokenizer.decode(ids))
    }

    /// The conversation as the model's chat template writes it.
    pub fn llm_apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.llm_require()?.apply_chat_template(messages, add_generation_prompt)
    }

    /// The logits after every token of `ids` (ids.len() × vocab), with the active adapter when
    /// `adapted`.
    pub fn llm_logits(&mut self, ids: &[u32], adapted: bool) -> Result<Logits> {
        self.ensure_idle()?;
        let (m, delta) = self.llm.with_delta(adapted)?;
        let ids = m.model_ids(ids)?;
        let vocab = m.model.cfg.vocab;
        if ids.len() * vocab > MAX_LOGITS {
            return Err(LabError::setting(
                "ids",
                format!(
                    "{} tokens' logits would take {:.0} MB; ask for at most {} tokens at a time",
                    ids.len(),
                    (ids.len() * vocab * 4) as f64 / 1e6,
                    MAX_LOGITS / vocab
                ),
            ));
        }
        let mut acts = LmActivations::for_inference();
        m.model.forward(&ids, 1, ids.len(), &mut acts, delta)?;
        Ok(Logits { vocab: m.model.cfg.vocab, logits: acts.logits })
    }

    /// Samples a continuation of a prompt or a conversation; `on_text(piece)` receives the text as it
    /// grows (whole characters only) and stops the generation by returning false.
    pub fn llm_generate(&mut self, req: &GenerateRequest, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Generated> {
        self.ensure_idle()?;
        let clock = self.clock.clone();
        let (m, delta) = self.llm.with_delta(req.adapted)?;
        generate::run(m, req, &*clock, delta, on_text)
    }

    /// The adapters of the pretrained model.
    pub fn llm_adapters(&self) -> AdapterList {
        self.llm.list()
    }

    /// Turns adapter `name` on, or every adapter off with `None`.
    pub fn llm_set_active(&mut self, name: Option<&str>) -> Result<AdapterList> {
        self.ensure_idle()?;
        if let Some(n) = name {
            self.llm.find(n)?;
        }
        self.llm.active = name.map(String::from);
        Ok(self.llm.list())
    }

    pub fn llm_delete_adapter(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.llm.find(name)?;
        self.llm.adapters.retain(|(a, _)| a.name != name);
        if self.llm.active.as_deref() == Some(name) {
            self.llm.active = None;
        }
        Ok(self.llm.list())
    }
}
