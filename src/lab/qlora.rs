//! QLoRA for both models (`../shared/QLORA.md`): the frozen base held in 4-bit NF4 as bitsandbytes
//! holds it, adapters training in f32 on top. Quantising keeps the f32 weights aside, so
//! `dequantize_base` gives back the f32 base bit for bit; while the base is quantised, training it is
//! refused, and everything else — adapters, evaluation, classification, generation, scoring, files —
//! uses the 4-bit weights. The language model keeps `lm_head` in f32, as transformers does. The
//! pretrained model of part 3 is quantised from the blocks it holds as read, which it keeps.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::adapters::AdaptedModel;
use super::Lab;
use crate::error::{LabError, Result};
use crate::lora::Adaptable;

/// `quantizeBase({ type, doubleQuant })`: `type` is `"nf4"` (the default, and the only one), double
/// quantisation is on by default (QLoRA's recipe, `bnb_4bit_use_double_quant=True`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuantizeSettings {
    #[serde(rename = "type")]
    pub quant_type: Option<String>,
    pub double_quant: Option<bool>,
}

impl QuantizeSettings {
    fn double_quant(&self) -> Result<bool> {
        match self.quant_type.as_deref() {
            None | Some("nf4") => Ok(self.double_quant.unwrap_or(true)),
            Some(other) => Err(LabError::setting(
                "type",
                format!("\"{other}\" is not a quantisation this lab computes; only \"nf4\" (bitsandbytes' NF4)"),
            )),
        }
    }
}

/// What `status()` and the panels show of a base's quantisation.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quantization {
    /// Whether the base computes with 4-bit weights.
    pub quantized: bool,
    pub double_quant: bool,
    /// How many Linears are held in 4 bits (all but the language model's lm_head).
    pub linears: usize,
    /// Bytes of the base's tensors in f32 (every parameter, 4 bytes each).
    pub f32_bytes: usize,
    /// Bytes of the base's tensors as held now: the quantised Linears as bitsandbytes stores them
    /// (codes, absmax and their state), everything else in f32. Equal to `f32_bytes` when not quantised.
    pub bytes: usize,
}

fn quantization_of<M: Adaptable>(model: Option<&M>) -> Quantization {
    let Some(m) = model else { return Quantization::default() };
    let f32_bytes = m.num_params() * std::mem::size_of::<f32>();
    let mut q = Quantization { f32_bytes, bytes: f32_bytes, ..Quantization::default() };
    for i in 0..m.modules().len() {
        if let Some(w) = &m.linear(i).nf4 {
            q.quantized = true;
            q.double_quant = w.double_quant();
            q.linears += 1;
            q.bytes = q.bytes - w.f32_byte_size() + w.byte_size();
        }
    }
    q
}

impl<M: Adaptable + Clone> AdaptedModel<M> {
    fn quantize(&mut self, settings: &QuantizeSettings) -> Result<Quantization> {
        let double_quant = settings.double_quant()?;
        let mut base = self.require_base()?.clone();
        base.quantize_linears(double_quant)?;
        self.replace_base(base)?;
        Ok(quantization_of(self.base()))
    }

    fn dequantize(&mut self) -> Result<Quantization> {
        let mut base = self.require_base()?.clone();
        base.dequantize_linears();
        self.replace_base(base)?;
        Ok(quantization_of(self.base()))
    }

    fn refuse_training_if_quantized(&self) -> Result<()> {
        if self.base().and_then(Adaptable::quantization).is_some() {
            return Err(LabError::state(
                "the base is held in 4 bits (QLoRA): it is frozen, so it cannot be trained — adapters train on \
                 top of it; dequantise it first to train a base",
            ));
        }
        Ok(())
    }
}

impl Lab {
    /// Quantises the MLP's base to NF4 (all three Linears; biases stay f32). Quantising a quantised
    /// base again starts from the f32 weights kept aside. Nothing changes on error.
    pub fn quantize_base(&mut self, settings: &QuantizeSettings) -> Result<Quantization> {
        self.ensure_idle()?;
        self.mlp.models.quantize(settings)
    }

    /// The MLP's base back to its f32 weights, bit for bit.
    pub fn dequantize_base(&mut self) -> Result<Quantization> {
        self.ensure_idle()?;
        self.mlp.models.dequantize()
    }

    pub fn base_quantization(&self) -> Quantization {
        quantization_of(self.base())
    }

    /// Quantises the language model's base to NF4: every Linear of the layers; `lm_head`, the
    /// embedding and the norms stay f32.
    pub fn lm_quantize_base(&mut self, settings: &QuantizeSettings) -> Result<Quantization> {
        self.ensure_idle()?;
        self.lm.models.quantize(settings)
    }

    pub fn lm_dequantize_base(&mut self) -> Result<Quantization> {
        self.ensure_idle()?;
        self.lm.models.dequantize()
    }

    pub fn lm_base_quantization(&self) -> Quantization {
        quantization_of(self.lm_base())
    }

    /// Holds the pretrained model's projections in NF4, as `BitsAndBytesConfig(load_in_4bit=True,
    /// bnb_4bit_quant_type="nf4")` loads them: each quantised from the weights transformers reads out of
    /// the file (a GGUF's Q4_1 blocks dequantised), every Linear of every layer; the embedding (and the
    /// `lm_head` tied to it) and the norms stay as read. The blocks read from the file stay too, so
    /// `llm_dequantize_base` gives the model back as loaded. Adapters keep working on either base.
    /// Nothing changes on error.
    pub fn llm_quantize_base(&mut self, settings: &QuantizeSettings) -> Result<Quantization> {
        self.ensure_idle()?;
        let double_quant = settings.double_quant()?;
        let m = self.llm.llama_mut().ok_or_else(no_llm)?;
        m.quantize_linears(double_quant)?;
        Ok(quantization_of(Some(&*m)))
    }

    /// The pretrained model back to the weights as loaded, bit for bit.
    pub fn llm_dequantize_base(&mut self) -> Result<Quantization> {
        self.ensure_idle()?;
        let m = self.llm.llama_mut().ok_or_else(no_llm)?;
        m.dequantize_linears();
        Ok(quantization_of(Some(&*m)))
    }

    pub fn llm_base_quantization(&self) -> Quantization {
        quantization_of(self.llm.llama())
    }

    /// Refuses a base run of the MLP while its base is quantised.
    pub(super) fn refuse_quantized_mlp_training(&self) -> Result<()> {
        self.mlp.models.refuse_training_if_quantized()
    }

    pub(super) fn refuse_quantized_lm_training(&self) -> Result<()> {
        self.lm.models.refuse_training_if_quantized()
    }

    /// The MLP's `model.safetensors` in `form`.
    pub fn export_model_as(&self, form: BaseForm) -> Result<Vec<u8>> {
        crate::io::export_model(&form.of(self.require_base()?))
    }

    /// The language model's folder (`config.json`, `model.safetensors`) in `form`.
    pub fn lm_export_base_as(&self, form: BaseForm) -> Result<(String, Vec<u8>)> {
        crate::io::export_lm(&form.of(self.lm_require_base()?))
    }
}

fn no_llm() -> LabError {
    LabError::state("no pretrained model is loaded: load one first")
}

/// Which weights an export of a base writes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum BaseForm {
    /// As the base is held: a 4-bit base in bitsandbytes' layout (with the LM's quantization_config).
    #[default]
    Held,
    /// In f32, the weights the base computes with: a 4-bit base's dequantisation (`dequantize_4bit`).
    Dequantized,
    /// In f32, the weights kept aside while the base is quantised (what the page stores, so that a
    /// reload can quantise again and still undo bit for bit).
    Original,
}

impl BaseForm {
    /// `"held"`, `"dequantized"` or `"original"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "held" => Ok(Self::Held),
            "dequantized" => Ok(Self::Dequantized),
            "original" => Ok(Self::Original),
            other => Err(LabError::setting(
                "form",
                format!("\"{other}\" is not a form of the base; \"held\", \"dequantized\" or \"original\""),
            )),
        }
    }

    fn of<M: Adaptable + Clone>(self, base: &M) -> Cow<'_, M> {
        match self {
            Self::Held => Cow::Borrowed(base),
            Self::Dequantized => Cow::Owned(base.dequantized_copy()),
            Self::Original => Cow::Owned(base.unquantized_copy()),
        }
    }
}
