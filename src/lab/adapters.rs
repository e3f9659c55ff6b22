//! A base model and the named adapters trained or loaded for it: which one is on, and whether it is
//! merged. The list operations of panel 3 (on/off, merge, unmerge, delete) live here, once.

use serde::Serialize;

use crate::error::{LabError, Result};
use crate::lora::{Adaptable, Adapter, Bias, Init, Scaling};
use crate::nn::LayerDelta;

/// One adapter in the list the page shows.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterInfo {
    pub name: String,
    pub config: AdapterConfigView,
    pub trainable_params: usize,
    pub report: String,
    pub merged: bool,
}

impl AdapterInfo {
    /// The list entry of `a` on a base whose parameters, with the adapter's, are `all_params`.
    pub fn of(a: &Adapter, all_params: usize, merged: bool) -> Self {
        AdapterInfo {
            name: a.name.clone(),
            config: AdapterConfigView {
                targets: a.target_names(),
                rank: a.config.rank,
                alpha: a.config.alpha,
                scaling: a.config.scaling,
                init: a.config.init,
                dropout: a.config.dropout,
                bias: a.config.bias,
            },
            trainable_params: a.trainable_params(),
            report: a.trainable_report(all_params),
            merged,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterConfigView {
    pub targets: Vec<String>,
    pub rank: usize,
    pub alpha: f64,
    pub scaling: Scaling,
    pub init: Init,
    pub dropout: f32,
    pub bias: Bias,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterList {
    pub active: Option<String>,
    pub list: Vec<AdapterInfo>,
}

/// One model's base and adapters (the MLP's, the language model's).
pub struct AdaptedModel<M> {
    /// The base model as trained or loaded: never changed by adapters.
    base: Option<M>,
    adapters: Vec<Adapter>,
    active: Option<String>,
    /// The base with the active adapter merged in, while it is merged.
    merged: Option<M>,
}

impl<M> Default for AdaptedModel<M> {
    fn default() -> Self {
        Self { base: None, adapters: Vec::new(), active: None, merged: None }
    }
}

impl<M: Adaptable + Clone> AdaptedModel<M> {
    pub fn base(&self) -> Option<&M> {
        self.base.as_ref()
    }

    /// Puts `new` in place of the base, keeping the adapters: the same model held another way (see
    /// `qlora`). A merged adapter is merged into `new` first, so on an error nothing changes.
    pub(super) fn replace_base(&mut self, new: M) -> Result<()> {
        if let (Some(_), Some(name)) = (&self.merged, &self.active) {
            let mut merged = new.clone();
            self.adapters[self.index(name)?].merge_into(&mut merged)?;
            self.merged = Some(merged);
        }
        self.base = Some(new);
        Ok(())
    }

    pub fn require_base(&self) -> Result<&M> {
        self.base.as_ref().ok_or_else(|| LabError::state("there is no base model yet: train or load one first"))
    }

    /// A new base model drops the adapters, which were trained for the old one.
    pub fn set_base(&mut self, model: M) {
        *self = Self { base: Some(model), ..Self::default() };
    }

    /// Adds `adapter` (replacing one of its name) and makes it the active one, computed separately:
    /// no earlier merge may shadow it.
    pub fn install(&mut self, adapter: Adapter) {
        let name = adapter.name.clone();
        self.adapters.retain(|a| a.name != name);
        self.adapters.push(adapter);
        self.merged = None;
        self.active = Some(name);
    }

    pub fn get(&self, name: &str) -> Result<&Adapter> {
        Ok(&self.adapters[self.index(name)?])
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.adapters
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| LabError::state(format!("there is no adapter named \"{name}\"")))
    }

    /// Whether an adapter is on (merged or not).
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    pub fn list(&self) -> AdapterList {
        AdapterList {
            active: self.active.clone(),
            list: self
                .adapters
                .iter()
                .map(|a| {
                    let all = self.base.as_ref().map_or(0, |b| b.all_params_with(a.trainable_params()));
                    let merged = self.merged.is_some() && self.active.as_deref() == Some(a.name.as_str());
                    AdapterInfo::of(a, all, merged)
                })
                .collect(),
        }
    }

    /// Makes `name` the active adapter, or turns adapters off with `None`. Unmerges first.
    pub fn set_active(&mut self, name: Option<&str>) -> Result<AdapterList> {
        if let Some(n) = name {
            self.index(n)?;
        }
        self.merged = None;
        self.active = name.map(str::to_string);
        Ok(self.list())
    }

    /// Merges adapter `name` into a copy of the base (PEFT's `merge_and_unload` without unloading):
    /// it becomes active and its logits come from the merged weights alone.
    pub fn merge(&mut self, name: &str) -> Result<AdapterList> {
        let i = self.index(name)?;
        let mut merged = self.require_base()?.clone();
        self.adapters[i].merge_into(&mut merged)?;
        self.merged = Some(merged);
        self.active = Some(name.to_string());
        Ok(self.list())
    }

    /// Back to base + adapter computed separately; the base was never modified, so this is exact.
    pub fn unmerge(&mut self, name: &str) -> Result<AdapterList> {
        self.index(name)?;
        if self.active.as_deref() != Some(name) || self.merged.is_none() {
            return Err(LabError::state(format!("adapter \"{name}\" is not merged")));
        }
        self.merged = None;
        Ok(self.list())
    }

    pub fn delete(&mut self, name: &str) -> Result<AdapterList> {
        let i = self.index(name)?;
        self.adapters.remove(i);
        if self.active.as_deref() == Some(name) {
            self.active = None;
            self.merged = None;
        }
        Ok(self.list())
    }

    /// Runs `f` with the adapted model: (model, delta) — the merged weights alone, or base + adapter.
    /// `None` when no adapter is on.
    pub fn with_adapted<T>(&mut self, f: impl FnOnce(&M, Option<&mut dyn LayerDelta>) -> T) -> Option<T> {
        let name = self.active.clone()?;
        if let Some(m) = &self.merged {
            return Some(f(m, None));
        }
        let base = self.base.as_ref()?;
        let adapter = self.adapters.iter_mut().find(|a| a.name == name)?;
        Some(f(base, Some(adapter)))
    }
}
