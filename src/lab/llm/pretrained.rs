//! [`Pretrained`]: a pretrained model as the lab holds it — the Llama with its frozen weights as read,
//! its tokenizer, its chat template — and the card the page shows ([`LlmInfo`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{LabError, Result};
use crate::io::{
    gguf_adds_bos, gguf_chat_template, gguf_llama_shared, gguf_tokenizer, hf_pretrained, read_gguf, HfFolder,
};
use crate::lm::Llama;
use crate::quant::Blocks;
use crate::text::{Bpe, ChatTemplate, Message};

pub struct Pretrained {
    pub name: String,
    pub model: Llama,
    pub tokenizer: Bpe,
    pub template: Option<ChatTemplate>,
    /// The tokenizer asks for BOS before a text.
    pub add_bos: bool,
}

/// The model card.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmInfo {
    pub name: String,
    pub architecture: String,
    pub params: usize,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub context: usize,
    /// How many tensors of each type hold the weights (`{"Q4_1": 210, "Q8_0": 1, "F32": 61}`).
    pub tensor_types: BTreeMap<String, usize>,
    /// Bytes the weights take in memory, as held (a GGUF kept whole counts whole, with its metadata and
    /// the q/k weights it holds in llama.cpp's row order, which the model holds reordered beside it).
    pub bytes: usize,
    pub chat_template: bool,
}

impl Pretrained {
    /// A model from a GGUF file's bytes (`file` names it in errors), kept whole: its quantised weights
    /// point into them.
    pub fn from_gguf(bytes: Vec<u8>, file: &str, name: &str) -> Result<Self> {
        let bytes = Arc::new(bytes);
        let g = read_gguf(&bytes, file)?;
        let model = gguf_llama_shared(&g, &bytes)?;
        let tokenizer = gguf_tokenizer(&g)?;
        if tokenizer.vocab_size() != model.cfg.vocab {
            return Err(LabError::file(
                file,
                format!("the tokenizer has {} tokens, the model {}", tokenizer.vocab_size(), model.cfg.vocab),
            ));
        }
        let template = gguf_chat_template(&g, &model.cfg, &tokenizer)?;
        let add_bos = gguf_adds_bos(&g)?;
        let name = match (name.trim(), g.optional("general.name", crate::io::Gguf::get_str)?) {
            ("", Some(n)) => n.to_string(),
            ("", None) => file.to_string(),
            (n, _) => n.to_string(),
        };
        Ok(Self { name, model, tokenizer, template, add_bos })
    }

    /// A model from a Hugging Face folder's files; `name` is what the page calls it.
    pub fn from_hf(folder: &HfFolder, name: &str) -> Result<Self> {
        let (model, tokenizer, template, add_bos) = hf_pretrained(folder)?;
        let name = if name.trim().is_empty() { "Hugging Face model".to_string() } else { name.trim().to_string() };
        Ok(Self { name, model, tokenizer, template, add_bos })
    }

    pub fn info(&self) -> LlmInfo {
        let c = &self.model.cfg;
        let mut tensor_types = BTreeMap::new();
        let mut bytes = 4 * (self.model.embed.len() + self.model.final_norm.len());
        bytes += self.model.norms.iter().map(|[a, b]| 4 * (a.len() + b.len())).sum::<usize>();
        *tensor_types.entry("F32".to_string()).or_insert(0) += 1 + 2 * self.model.norms.len();
        // A file kept whole counts once, whatever points into it.
        let mut files: Vec<*const Vec<u8>> = Vec::new();
        for l in &self.model.linears {
            // The blocks as read (kept while the Linear computes in NF4), then what it computes with.
            let (ty, b) = match &l.held {
                Some(w) => match w.blocks() {
                    Blocks::Shared(file, _) if files.contains(&Arc::as_ptr(file)) => (w.ty().name().to_string(), 0),
                    Blocks::Shared(file, _) => {
                        files.push(Arc::as_ptr(file));
                        (w.ty().name().to_string(), file.len())
                    }
                    Blocks::Owned(v) => (w.ty().name().to_string(), v.len()),
                },
                None => ("F32".to_string(), 4 * l.weight.len()),
            };
            let (ty, b) = match &l.nf4 {
                Some(q) => ("NF4".to_string(), b + q.packed().len() + 4 * q.scales().len()),
                None => (ty, b),
            };
            *tensor_types.entry(ty).or_insert(0) += 1;
            bytes += b;
        }
        if !self.model.embed.is_empty() {
            *tensor_types.entry("F32".to_string()).or_insert(0) += 1;
        }
        LlmInfo {
            name: self.name.clone(),
            architecture: "llama".into(),
            params: self.model.num_params(),
            layers: c.layers,
            hidden: c.hidden,
            heads: c.heads,
            kv_heads: c.kv_heads(),
            vocab: c.vocab,
            context: c.context,
            tensor_types,
            bytes,
            chat_template: self.template.is_some(),
        }
    }

    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos {
            ids.push(self.model.cfg.bos);
        }
        ids.extend(self.tokenizer.encode(text));
        ids
    }

    pub fn apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let t = self.template.as_ref().ok_or_else(|| {
            LabError::state(format!("{} has no chat template: give a prompt instead of messages", self.name))
        })?;
        if messages.is_empty() {
            return Err(LabError::setting("messages", "give at least one message"));
        }
        t.render(messages, add_generation_prompt)
    }

    /// Refuses ids outside the vocabulary, naming the first.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab = self.model.cfg.vocab;
        match ids.iter().position(|&id| id as usize >= vocab) {
            Some(i) => Err(LabError::setting(
                "ids",
                format!("id {} at position {i} is outside the vocabulary of {vocab}", ids[i]),
            )),
            None => Ok(()),
        }
    }

    /// `ids` as the model takes them: within the vocabulary and the context, at least one.
    pub fn model_ids(&self, ids: &[u32]) -> Result<Vec<u32>> {
        self.check_ids(ids)?;
        let ctx = self.model.cfg.context;
        if ids.is_empty() || ids.len() > ctx {
            return Err(LabError::setting("ids", format!("{} tokens: give 1 to {ctx}", ids.len())));
        }
        Ok(ids.to_vec())
    }
}
