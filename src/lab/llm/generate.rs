//! A generation request as the page sends it ([`GenerateRequest`]), checked field by field, and its
//! run: the prompt (a text, or messages through the chat template) tokenised, sampled from until the
//! model's end-of-generation token or the limit, the text handed over as it grows.

use serde::{Deserialize, Serialize};

use super::pretrained::Pretrained;
use crate::error::{LabError, Result};
use crate::lm::{GenerateOptions, Sampling};
use crate::rng::{Rng, Stream};
use crate::text::Message;

/// New tokens when the request does not say.
pub const DEFAULT_NEW_TOKENS: usize = 256;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateRequest {
    /// A conversation, rendered by the model's chat template with the assistant's opening after it.
    pub messages: Option<Vec<Message>>,
    /// Or a plain text, tokenised as it is.
    pub prompt: Option<String>,
    pub max_new_tokens: Option<f64>,
    /// 0 (the default) is greedy.
    pub temperature: Option<f64>,
    pub top_k: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<f64>,
    /// With the active adapter.
    #[serde(default)]
    pub adapted: bool,
    /// How each new token's Linears see their input: "f32" (the default; the exact forward, as
    /// transformers computes it) or "int8" (rounded to 8 bits per block of 32 and multiplied in
    /// integers, as llama.cpp does: faster, and the text may part from transformers').
    pub activations: Option<String>,
}

/// What a generation gave.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Generated {
    /// The new text (the end-of-generation token left out).
    pub text: String,
    /// The new token ids (the end-of-generation token included when met).
    pub ids: Vec<u32>,
    pub prompt_tokens: usize,
    /// Decoding speed: new tokens after the first, per second after it.
    pub tokens_per_sec: f64,
    /// The prompt's tokens per second of the prefill (up to the first new token).
    pub prefill_tokens_per_sec: f64,
    pub seconds: f64,
    /// Why it ended: "eos", "length", "context" or "stopped" (the page asked).
    pub finish: &'static str,
}

/// A whole number in `lo..=hi` from an optional field (default when absent).
fn count(name: &str, v: Option<f64>, default: usize, lo: usize, hi: usize) -> Result<usize> {
    let Some(x) = v else { return Ok(default) };
    if !(x.is_finite() && x.fract() == 0.0 && x >= lo as f64 && x <= hi as f64) {
        return Err(LabError::setting(name, format!("{x} is not a whole number from {lo} to {hi}")));
    }
    Ok(x as usize)
}

impl GenerateRequest {
    fn sampling(&self) -> Result<Sampling> {
        let temperature = self.temperature.unwrap_or(0.0);
        if !(temperature.is_finite() && (0.0..=100.0).contains(&temperature)) {
            return Err(LabError::setting("temperature", format!("{temperature} is not a number from 0 to 100")));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(LabError::setting("topP", format!("{top_p} is not a number in (0, 1]")));
        }
        let s = Sampling {
            temperature: temperature as f32,
            top_k: count("topK", self.top_k, 0, 0, 1 << 20)?,
            top_p: top_p as f32,
        };
        s.check()?;
        Ok(s)
    }
}

pub(super) fn run(
    m: &Pretrained,
    req: &GenerateRequest,
    clock: &dyn Fn() -> f64,
    delta: Option<&mut dyn crate::nn::LayerDelta>,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generated> {
    let cfg = &m.model.cfg;
    let text = match (&req.messages, &req.prompt) {
        (Some(messages), None) => m.apply_chat_template(messages, true)?,
        (None, Some(p)) => p.clone(),
        _ => return Err(LabError::setting("prompt", "give either messages or a prompt")),
    };
    let max_new = count("maxNewTokens", req.max_new_tokens, DEFAULT_NEW_TOKENS, 1, cfg.context)?;
    let sampling = req.sampling()?;
    let seed = count("seed", req.seed, 0, 0, u32::MAX as usize)? as u64;
    let ids = m.tokenize(&text);
    if ids.is_empty() {
        return Err(LabError::setting("prompt", "the prompt is empty"));
    }
    if ids.len() >= cfg.context {
        return Err(LabError::setting(
            "prompt",
            format!("{} tokens leave no room in the context of {}", ids.len(), cfg.context),
        ));
    }
    let int8 = match req.activations.as_deref() {
        None | Some("f32") => false,
        Some("int8") => true,
        Some(other) => {
            return Err(LabError::setting("activations", format!("\"{other}\" is neither \"f32\" nor \"int8\"")))
        }
    };
    let prompt = m.model_ids(&ids)?;
    let stop = [cfg.eos];
    let limits = GenerateOptions { max_new, stop: &stop, int8 };
    let t0 = clock();
    let mut first = None;
    let mut new: Vec<u32> = Vec::new();
    let mut shown = 0;
    let mut stopped = false;
    let mut rng = Rng::new(seed, Stream::Sample);
    m.model.generate_with(&[prompt], limits, sampling, &mut rng, delta, &mut |_, tok| {
        first.get_or_insert_with(clock);
        new.push(tok);
        if tok == cfg.eos {
            return true;
        }
        // Hand over whole characters: a token may end inside one.
        let text = m.tokenizer.decode(&new);
        if text.ends_with('\u{FFFD}') || text.len() <= shown {
            return true;
        }
        let go_on = on_text(&text[shown..]);
        shown = text.len();
        stopped = !go_on;
        go_on
    })?;
    let end = clock();
    let body = if new.last() == Some(&cfg.eos) { &new[..new.len() - 1] } else { &new[..] };
    let text = m.tokenizer.decode(body);
    if text.len() > shown && !stopped {
        on_text(&text[shown..]);
    }
    let first = first.unwrap_or(end);
    let finish = if stopped {
        "stopped"
    } else if new.last() == Some(&cfg.eos) {
        "eos"
    } else if new.len() >= max_new {
        "length"
    } else {
        "context"
    };
    let per_sec = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    Ok(Generated {
        text,
        prompt_tokens: ids.len(),
        tokens_per_sec: per_sec(new.len().saturating_sub(1), end - first),
        prefill_tokens_per_sec: per_sec(ids.len(), first - t0),
        seconds: end - t0,
        ids: new,
        finish,
    })
}
