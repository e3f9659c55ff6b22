//! The language model's files: the base as a Hugging Face folder (`config.json`, `model.safetensors`)
//! and adapters as PEFT folders (`adapter_config.json` with `task_type: "CAUSAL_LM"`,
//! `adapter_model.safetensors`); checkpoints listed, restored, and written out and put back as the
//! same folders (so the page can keep them across a reload). On any error while loading, nothing
//! changes.

use super::{AdapterMeta, DataChoice};
use crate::error::Result;
use crate::io::{self, AdapterFiles};
use crate::lab::adapters::AdapterList;
use crate::lab::checkpoints::{CheckpointInfo, Saved};
use crate::lab::mlp::AdapterSummary;
use crate::lab::settings::valid_name;
use crate::lab::Lab;
use crate::lora::targets::TargetModules;
use crate::lora::Adaptable;

/// What PEFT's `base_model_name_or_path` says: the folder the base is downloaded as.
pub const BASE_FOLDER: &str = "lora-lab-llama";

impl Lab {
    /// → (config.json text, model.safetensors bytes).
    pub fn lm_export_base(&self) -> Result<(String, Vec<u8>)> {
        self.lm_export_base_as(crate::lab::BaseForm::Held)
    }

    /// Loads a base model folder; on any error the current models are untouched. A new base drops
    /// the adapters of the old one.
    pub fn lm_import_base(&mut self, config_json: &str, safetensors: &[u8]) -> Result<usize> {
        self.ensure_idle()?;
        let model = io::import_lm(config_json, safetensors)?;
        let n = model.num_params();
        self.lm.models.set_base(model);
        self.lm.meta.clear();
        self.lm.checkpoints.clear();
        Ok(n)
    }

    /// The adapter's PEFT folder, with `target_modules` as it was given and `task_type: "CAUSAL_LM"`.
    pub fn lm_export_adapter(&self, name: &str) -> Result<AdapterFiles> {
        let adapter = self.lm.models.get(name)?;
        // What it was trained on goes with it (our metadata in the safetensors header; PEFT ignores it).
        let data = self.lm.meta.get(name).and_then(|m| serde_json::to_value(&m.data).ok());
        let mut files = io::export_adapter_with_data(adapter, self.lm_require_base()?, data)?;
        // A list as it was given; a regex as the modules it chose, since PEFT would also match
        // modules that are not Linears (".*" names `model` itself) and refuse them.
        if let Some(TargetModules::Names(given)) = self.lm.meta.get(name).map(|m| &m.target_modules) {
            files.config.target_modules = TargetModules::Names(given.clone());
        }
        files.config.task_type = Some("CAUSAL_LM".into());
        files.config.base_model_name_or_path = Some(BASE_FOLDER.into());
        Ok(files)
    }

    /// Loads a PEFT adapter folder for the current base under `name`, and makes it active. The data it
    /// was trained on is what its file says ([`io::adapter_data`]), or unknown (`DataChoice::unknown()`:
    /// evaluated on the English words only) for a file that does not say.
    pub fn lm_import_adapter(&mut self, name: &str, safetensors: &[u8], config_json: &str) -> Result<AdapterSummary> {
        self.ensure_idle()?;
        let name = valid_name(name)?;
        let base = self.lm_require_base()?;
        let adapter = io::import_adapter(&name, safetensors, config_json, base)?;
        let summary = AdapterSummary::new(&adapter, base.all_params_with(adapter.trainable_params()), None);
        let target_modules = TargetModules::Names(adapter.target_names());
        let data = io::adapter_data(safetensors)
            .and_then(|v| serde_json::from_value::<DataChoice>(v).ok())
            .filter(DataChoice::is_known)
            .unwrap_or_else(DataChoice::unknown);
        self.lm.meta.insert(name, AdapterMeta { data, target_modules });
        self.lm.models.install(adapter);
        Ok(summary)
    }

    pub fn lm_checkpoints(&self) -> Vec<CheckpointInfo> {
        self.lm.checkpoints.list()
    }

    /// A kept checkpoint as its folder: an adapter's PEFT folder (adapter_config.json text,
    /// adapter_model.safetensors), or a base's Hugging Face folder (config.json text, model.safetensors).
    /// Works during a run too (the page saves each epoch's checkpoint as it comes).
    pub fn lm_export_checkpoint(&self, id: usize) -> Result<(CheckpointInfo, String, Vec<u8>)> {
        let (info, saved) = self.lm.checkpoints.find(id)?;
        match saved {
            Saved::Adapter(a) => {
                let mut files = io::export_adapter(a, self.lm_require_base()?)?;
                files.config.task_type = Some("CAUSAL_LM".into());
                files.config.base_model_name_or_path = Some(BASE_FOLDER.into());
                Ok((info.clone(), files.config.to_json_pretty(), files.safetensors))
            }
            Saved::Base(m) => {
                let (config, safetensors) = io::export_lm(m)?;
                Ok((info.clone(), config, safetensors))
            }
        }
    }

    /// Keeps a checkpoint written by `lm_export_checkpoint` again (after a reload), under a new id:
    /// `info.adapter` names the adapter it belongs to (its files are checked against the current
    /// base), or is `None` for a base checkpoint. On any error nothing changes.
    pub fn lm_import_checkpoint(
        &mut self,
        info: &CheckpointInfo,
        config_json: &str,
        safetensors: &[u8],
    ) -> Result<CheckpointInfo> {
        self.ensure_idle()?;
        let saved = match &info.adapter {
            Some(name) => {
                let name = valid_name(name)?;
                Saved::Adapter(Box::new(io::import_adapter(&name, safetensors, config_json, self.lm_require_base()?)?))
            }
            None => Saved::Base(Box::new(io::import_lm(config_json, safetensors)?)),
        };
        Ok(self.lm.checkpoints.put_back(info, saved))
    }

    /// Makes a kept checkpoint current: an adapter's replaces the adapter of its name (and is made
    /// active); a base model's replaces the base (dropping its adapters, as any new base does).
    pub fn lm_restore_checkpoint(&mut self, id: usize) -> Result<AdapterList> {
        self.ensure_idle()?;
        match self.lm.checkpoints.get(id)? {
            Saved::Adapter(a) => self.lm.models.install(*a),
            Saved::Base(m) => {
                self.lm.models.set_base(*m);
                self.lm.meta.clear();
            }
        }
        Ok(self.lm.models.list())
    }
}
