//! PEFT's `adapter_config.json`, and the rule that turns our scaling into PEFT's `lora_alpha`.
//!
//! PEFT computes ΔW = scaling · lora_B · lora_A with scaling = lora_alpha / r, or
//! lora_alpha / √r when `use_rslora` is set. The article instead multiplies by α itself. To export
//! an adapter that PEFT runs exactly as the page does, we pick `lora_alpha` so PEFT's formula lands
//! on our scaling value; to import, we read PEFT's two fields back as one of our scalings.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::lora::targets::TargetModules;
use crate::lora::{Bias, Scaling};
use crate::{LabError, Result};

/// (`lora_alpha`, `use_rslora`) for which PEFT's scaling equals `scaling_value(s, alpha, r)`.
///
/// PEFT and rsLoRA are PEFT's own formulas, so α passes through untouched. The article's α needs
/// lora_alpha = α·r: whenever that product is exact in f64 (α = 1, 0.5, 16, ... at any practical r)
/// PEFT's (α·r)/r is exactly α. When it rounds (α = 0.1, r = 3), (α·r)/r is one ulp from α
/// (≈1e-16 relative), and no other double does better (checked over 512,000 random α and
/// r ≤ 512: nudging lora_alpha by an ulp never lands on α), far below the f32 the layers run in.
pub fn peft_alpha(s: Scaling, alpha: f64, r: usize) -> (f64, bool) {
    match s {
        Scaling::Article => (alpha * r as f64, false),
        Scaling::Peft => (alpha, false),
        Scaling::RsLora => (alpha, true),
    }
}

/// Our (scaling, α) for PEFT's (`lora_alpha`, `use_rslora`, r). A PEFT file cannot say whether it
/// came from the article's rule, so plain PEFT scaling is returned with lora_alpha unchanged: the
/// scaling value is the same, and no rounding is introduced by dividing α back out.
pub fn from_peft(lora_alpha: f64, use_rslora: bool, _r: usize) -> (Scaling, f64) {
    if use_rslora {
        (Scaling::RsLora, lora_alpha)
    } else {
        (Scaling::Peft, lora_alpha)
    }
}

/// The fields of PEFT's `LoraConfig` that this lab writes and reads. Missing fields take PEFT's
/// defaults; fields PEFT writes that we do not use (layers_to_transform, megatron_config, ...) are
/// ignored when reading, except those that would change the computation (see
/// [`parse_adapter_config`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    #[serde(default = "lora")]
    pub peft_type: String,
    #[serde(default = "default_r")]
    pub r: usize,
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    /// As PEFT takes it (names or one regex); full module names (`layers.5`) after
    /// [`parse_adapter_config`].
    #[serde(default, deserialize_with = "null_as_empty")]
    pub target_modules: TargetModules,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub bias: Bias,
    #[serde(default)]
    pub use_rslora: bool,
    /// true (Kaiming-uniform A, zero B), false, "gaussian", "pissa", ...: only matters before
    /// training, so it is kept as PEFT wrote it.
    #[serde(default = "default_init")]
    pub init_lora_weights: Value,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub inference_mode: bool,
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    pub revision: Option<String>,
}

fn lora() -> String {
    "LORA".to_string()
}
fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_init() -> Value {
    Value::Bool(true)
}

/// `null` reads as no targets (reported as missing), like an absent field.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<TargetModules, D::Error> {
    Ok(Option::<TargetModules>::deserialize(d)?.unwrap_or_default())
}

impl AdapterConfig {
    /// A config as PEFT saves one for inference, for an adapter trained with `scaling` and `alpha`.
    pub fn new(r: usize, scaling: Scaling, alpha: f64, target_modules: TargetModules) -> Self {
        let (lora_alpha, use_rslora) = peft_alpha(scaling, alpha, r);
        Self {
            peft_type: lora(),
            r,
            lora_alpha,
            target_modules,
            lora_dropout: 0.0,
            bias: Bias::None,
            use_rslora,
            init_lora_weights: default_init(),
            fan_in_fan_out: false,
            task_type: None,
            base_model_name_or_path: None,
            inference_mode: true,
            modules_to_save: None,
            revision: None,
        }
    }

    /// The file's text, indented as PEFT writes it.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("AdapterConfig always serialises")
    }
}

/// Parses and validates `adapter_config.json` against the model's adaptable modules
/// (`known_modules`: name, in_features, out_features).
///
/// Target names are matched as PEFT does (equal, or a suffix after a dot: "5" targets
/// "layers.5") and returned as full names in `known_modules` order, without repeats. Rejected,
/// besides malformed values: DoRA and per-layer rank/alpha patterns, which PEFT would apply but
/// this lab does not compute, so loading would silently give different logits.
pub fn parse_adapter_config(json: &str, file: &str, known_modules: &[(&str, usize, usize)]) -> Result<AdapterConfig> {
    let bad = |reason: String| LabError::file(file, reason);
    let value: Value = serde_json::from_str(json).map_err(|e| {
        // Python's json module writes non-finite floats as bare NaN/Infinity, which is not JSON.
        let hint = if json.contains("NaN") || json.contains("Infinity") {
            " (NaN/Infinity is not JSON; every number, lora_alpha included, must be finite)"
        } else {
            ""
        };
        bad(format!("not valid JSON: {e}{hint}"))
    })?;
    let Value::Object(obj) = &value else {
        return Err(bad("expected a JSON object of LoRA settings".into()));
    };
    check_raw(obj).map_err(bad)?;
    let mut cfg: AdapterConfig = serde_json::from_value(value).map_err(|e| bad(format!("unreadable setting: {e}")))?;
    cfg.target_modules = TargetModules::Names(resolve_targets(&cfg, known_modules).map_err(bad)?);
    Ok(cfg)
}

/// Checks done on the raw JSON, where we can still say what was found (4.5, "-1", null...).
fn check_raw(obj: &Map<String, Value>) -> std::result::Result<(), String> {
    match obj.get("peft_type") {
        Some(Value::String(t)) if t == "LORA" => {}
        Some(other) => return Err(format!("peft_type is {other}; only \"LORA\" adapters are supported")),
        None => return Err("peft_type is missing; expected \"LORA\"".into()),
    }
    if let Some(r) = obj.get("r") {
        if r.as_u64().is_none_or(|r| r == 0) {
            return Err(format!("r must be a positive integer, found {r}"));
        }
    }
    if let Some(a) = obj.get("lora_alpha") {
        if !a.as_f64().is_some_and(|a| a.is_finite() && a > 0.0) {
            return Err(format!("lora_alpha must be a finite number greater than 0, found {a}"));
        }
    }
    if let Some(p) = obj.get("lora_dropout") {
        if !p.as_f64().is_some_and(|p| (0.0..1.0).contains(&p)) {
            return Err(format!("lora_dropout must be a number in [0, 1), found {p}"));
        }
    }
    if let Some(b) = obj.get("bias") {
        if !matches!(b.as_str(), Some("none" | "all" | "lora_only")) {
            return Err(format!("bias must be \"none\", \"all\" or \"lora_only\", found {b}"));
        }
    }
    if obj.get("fan_in_fan_out") == Some(&Value::Bool(true)) {
        return Err("fan_in_fan_out is true, but this model's layers are nn.Linear (weight out × in); \
                    it applies only to Conv1D-style weights stored in × out"
            .into());
    }
    if obj.get("use_dora") == Some(&Value::Bool(true)) {
        return Err("use_dora is true; DoRA adapters are not supported".into());
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if obj.get(key).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
            return Err(format!("{key} is set; per-layer ranks and alphas are not supported"));
        }
    }
    // Type errors found here name the field; serde's own message would not.
    for key in ["use_rslora", "inference_mode", "fan_in_fan_out"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_boolean()) {
            return Err(format!("{key} must be true or false, found {v}"));
        }
    }
    for key in ["task_type", "base_model_name_or_path", "revision"] {
        if let Some(v) = obj.get(key).filter(|v| !(v.is_null() || v.is_string())) {
            return Err(format!("{key} must be a string or null, found {v}"));
        }
    }
    match obj.get("init_lora_weights") {
        None | Some(Value::Bool(_) | Value::String(_)) => Ok(()),
        Some(other) => Err(format!("init_lora_weights must be true, false or a method name, found {other}")),
    }
}

/// Target names → full module names; also checks r against each targeted layer.
fn resolve_targets(cfg: &AdapterConfig, known: &[(&str, usize, usize)]) -> std::result::Result<Vec<String>, String> {
    if cfg.target_modules.is_empty() {
        return Err("target_modules is missing or empty; name at least one layer".into());
    }
    let names: Vec<&str> = known.iter().map(|(n, _, _)| *n).collect();
    let mut out = Vec::new();
    for i in cfg.target_modules.resolve(&names)? {
        let (name, fan_in, fan_out) = known[i];
        let max = fan_in.min(fan_out);
        if cfg.r > max {
            return Err(format!("r = {} is larger than min(in, out) = {max} of {name} ({fan_in} → {fan_out})", cfg.r));
        }
        out.push(name.to_string());
    }
    Ok(out)
}
