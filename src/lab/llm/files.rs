//! The pretrained model's adapters as files: PEFT's folder (`adapter_config.json` with
//! `base_model_name_or_path` naming the Hub model and `task_type: "CAUSAL_LM"`,
//! `adapter_model.safetensors` with PEFT's keys), and back; llama.cpp's LoRA GGUF, and back. On any
//! error while loading, nothing changes.

use super::settings::LlmAdapterSettings;
use super::train::AdapterMeta;
use crate::error::Result;
use crate::io::{self, AdapterFiles};
use crate::lab::mlp::AdapterSummary;
use crate::lab::settings::valid_name;
use crate::lab::Lab;
use crate::lora::targets::TargetModules;
use crate::lora::Adaptable;

/// The Hub model the built-in GGUF is (PEFT's `base_model_name_or_path` for its adapters).
pub const SMOLLM2_HUB: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
const SMOLLM2_PARAMS: usize = 134_515_008;

impl Lab {
    /// What PEFT should load an adapter of the current model onto: the Hub name of SmolLM2-135M (a
    /// model so named, of its size: the GGUF calls itself "Smollm2 135M 8k Lc100K Mix1 Ep2"), else the
    /// model's own name.
    pub(super) fn llm_hub_name(&self) -> Result<String> {
        let m = self.llm_require()?;
        let smol = m.name.to_lowercase().contains("smollm2") && m.model.num_params() == SMOLLM2_PARAMS;
        Ok(if smol { SMOLLM2_HUB.to_string() } else { m.name.clone() })
    }

    /// Adapter `name` as PEFT's folder: `target_modules` as given (a list of module names; with
    /// `layers_to_transform`, the modules it chose, which PEFT matches the same way).
    pub fn llm_export_adapter(&self, name: &str) -> Result<AdapterFiles> {
        let (adapter, meta) = self.llm.find(name)?;
        let mut files = io::export_adapter(adapter, &self.llm_require()?.model)?;
        if let (TargetModules::Names(given), None) = (&meta.plan.target_modules, &meta.plan.layers_to_transform) {
            files.config.target_modules = TargetModules::Names(given.clone());
        }
        files.config.task_type = Some("CAUSAL_LM".into());
        files.config.base_model_name_or_path = Some(self.llm_hub_name()?);
        Ok(files)
    }

    /// Adapter `name` as llama.cpp's LoRA GGUF (`llama-cli --lora`, Ollama's `ADAPTER`).
    pub fn llm_export_gguf_adapter(&self, name: &str) -> Result<Vec<u8>> {
        let (adapter, _) = self.llm.find(name)?;
        let m = self.llm_require()?;
        io::export_gguf_lora(adapter, &m.model.cfg, &format!("{} {name} LoRA", m.name))
    }

    /// Loads a PEFT adapter folder for the current model under `name` and makes it active; its shapes
    /// and modules are checked against the model.
    pub fn llm_import_adapter(&mut self, name: &str, safetensors: &[u8], config_json: &str) -> Result<AdapterSummary> {
        self.ensure_idle()?;
        let name = valid_name(name)?;
        let m = self.llm_require()?;
        let adapter = io::import_adapter(&name, safetensors, config_json, &m.model)?;
        let summary = AdapterSummary::new(&adapter, m.model.all_params_with(adapter.trainable_params()), None);
        let mut plan = LlmAdapterSettings::default().resolve(&m.model.modules(), m.model.cfg.layers)?;
        plan.name = name;
        plan.target_modules = TargetModules::Names(adapter.target_names());
        plan.lora = adapter.config.clone();
        self.llm.install(adapter, AdapterMeta { plan, held_out_lines: Vec::new(), nf4: self.llm.base_nf4() });
        Ok(summary)
    }

    /// Loads llama.cpp's LoRA GGUF (`file` names it in errors) for the current model under `name` and
    /// makes it active: read back as PEFT's folder (`io::gguf_lora_to_peft`), then checked and installed
    /// as `llm_import_adapter` does.
    pub fn llm_import_gguf_adapter(&mut self, name: &str, gguf: &[u8], file: &str) -> Result<AdapterSummary> {
        self.ensure_idle()?;
        let m = self.llm_require()?;
        let (config, safetensors) = io::gguf_lora_to_peft(gguf, file, &m.model.cfg)?;
        self.llm_import_adapter(name, &safetensors, &config.to_json_pretty())
    }
}
