//! Part 3: a real pretrained LLM (SmolLM2-135M-Instruct, or the user's own Llama-family GGUF) with its
//! own tokenizer and chat template — loaded, tokenised, templated, scored and sampled. Operations are
//! the lab's `llm_*` methods; what a model is made of is in `pretrained.rs`, generation requests in
//! `generate.rs`.
//!
//! A load that fails leaves the model loaded before as it was.

mod generate;
mod pretrained;

pub use generate::{GenerateRequest, Generated};
pub use pretrained::{LlmInfo, Pretrained};

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
        self.llm.model = Some(model);
        Ok(info)
    }

    /// Loads a Hugging Face folder (`config.json`, `model.safetensors` in f32, `tokenizer.json`, and the
    /// chat template if any) as the pretrained model, replacing the one before only when it loads.
    pub fn llm_load_hf(&mut self, folder: &HfFolder, name: &str) -> Result<LlmInfo> {
        self.ensure_idle()?;
        let model = Pretrained::from_hf(folder, name)?;
        let info = model.info();
        self.llm.model = Some(model);
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

    /// The logits after every token of `ids` (ids.len() × vocab). `adapted` asks for the model with the
    /// active adapter, which part 3 does not have yet.
    pub fn llm_logits(&self, ids: &[u32], adapted: bool) -> Result<Logits> {
        self.ensure_idle()?;
        let m = self.llm_require()?;
        if adapted {
            return Err(LabError::state("no adapter is trained on this model yet: ask for the base's logits"));
        }
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
        m.model.forward(&ids, 1, ids.len(), &mut acts, None)?;
        Ok(Logits { vocab: m.model.cfg.vocab, logits: acts.logits })
    }

    /// Samples a continuation of a prompt or a conversation; `on_text(piece)` receives the text as it
    /// grows (whole characters only) and stops the generation by returning false.
    pub fn llm_generate(&self, req: &GenerateRequest, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Generated> {
        self.ensure_idle()?;
        let m = self.llm_require()?;
        if req.adapted {
            return Err(LabError::state("no adapter is trained on this model yet: generate with the base"));
        }
        generate::run(m, req, &*self.clock, on_text)
    }
}
