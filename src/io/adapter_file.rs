//! PEFT's adapter files, for either model: `adapter_model.safetensors` (keys
//! `base_model.model.<module>.lora_A.weight` r×in and `...lora_B.weight` out×r, plus `<module>.bias`
//! where the bias setting trained it) and `adapter_config.json`, with `lora_alpha` chosen so PEFT's
//! scaling equals ours.

use super::adapter_config::{from_peft, parse_adapter_config, AdapterConfig};
use super::model_file::export_model;
use super::tensors::{expect_tensors, read_safetensors, write_safetensors};
use crate::error::{LabError, Result};
use crate::lm::Llama;
use crate::lora::targets::{self, TargetModules};
use crate::lora::{scaling_value, Adaptable, Adapter, Bias, Init, LoraConfig, Scaling};
use crate::nn::Mlp;

pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
pub const CONFIG_FILE: &str = "adapter_config.json";
const PREFIX: &str = "base_model.model.";
/// Our own names for what PEFT's config cannot say (article scaling, the init used), kept in the
/// safetensors header's `__metadata__`, which PEFT ignores.
const META_KEY: &str = "lora_lab";

#[derive(serde::Serialize, serde::Deserialize)]
struct LabMeta {
    scaling: Scaling,
    alpha: f64,
    init: Init,
    /// What the adapter was trained on, as the lab names it (the language model's data), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
}

/// What a person downloads for one adapter.
pub struct AdapterFiles {
    pub safetensors: Vec<u8>,
    pub config: AdapterConfig,
    /// For PiSSA: the base model with W replaced by the residual W − s·B₀·A₀, which PEFT must load
    /// as its base for the adapter to give the page's logits. `None` for every other init.
    pub base_model: Option<Vec<u8>>,
}

/// A base model's own weights file (`model.safetensors`), for a PiSSA adapter's residual base.
pub trait BaseFile {
    fn base_file(&self) -> Result<Vec<u8>>;
}

impl BaseFile for Mlp {
    fn base_file(&self) -> Result<Vec<u8>> {
        export_model(self)
    }
}

impl BaseFile for Llama {
    fn base_file(&self) -> Result<Vec<u8>> {
        Ok(super::lm_file::export_lm(self)?.1)
    }
}

/// Modules whose bias trains under `bias`: all that have one, or the targeted ones.
fn bias_layers(bias: Bias, targets: &[usize], base: &impl Adaptable) -> Vec<usize> {
    let has_bias = |i: &usize| !base.linear(*i).bias.is_empty();
    match bias {
        Bias::None => vec![],
        Bias::All => (0..base.modules().len()).filter(has_bias).collect(),
        Bias::LoraOnly => targets.iter().copied().filter(has_bias).collect(),
    }
}

pub fn export_adapter<M: Adaptable + BaseFile + Clone>(adapter: &Adapter, base: &M) -> Result<AdapterFiles> {
    export_adapter_with_data(adapter, base, None)
}

/// [`export_adapter`], with what the adapter was trained on kept in the file (our metadata, which PEFT
/// ignores), for [`adapter_data`] to read back.
pub fn export_adapter_with_data<M: Adaptable + BaseFile + Clone>(
    adapter: &Adapter,
    base: &M,
    data: Option<serde_json::Value>,
) -> Result<AdapterFiles> {
    let c = &adapter.config;
    let names = &adapter.modules;
    let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for l in &adapter.layers {
        let n = &names[l.layer].name;
        owned.push((format!("{PREFIX}{n}.lora_A.weight"), vec![l.rank, l.in_features], l.lora_a.clone()));
        owned.push((format!("{PREFIX}{n}.lora_B.weight"), vec![l.out_features, l.rank], l.lora_b.clone()));
    }
    for (i, shift) in adapter.bias_shift.iter().enumerate() {
        if let Some(shift) = shift {
            let bias: Vec<f32> = base.linear(i).bias.iter().zip(shift).map(|(b, s)| b + s).collect();
            owned.push((format!("{PREFIX}{}.bias", names[i].name), vec![bias.len()], bias));
        }
    }
    let tensors: Vec<(String, Vec<usize>, &[f32])> =
        owned.iter().map(|(n, s, d)| (n.clone(), s.clone(), &d[..])).collect();
    let meta = serde_json::to_string(&LabMeta { scaling: c.scaling, alpha: c.alpha, init: c.init, data })
        .map_err(|e| LabError::state(format!("cannot describe the adapter: {e}")))?;
    // One key only: safetensors writes the metadata map in hash order, and a second key would make
    // two exports of the same adapter differ byte for byte. PEFT's loader reads no metadata.
    let metadata = std::collections::HashMap::from([(META_KEY.to_string(), meta)]);
    let safetensors = write_safetensors(&tensors, Some(metadata))?;
    let mut config = AdapterConfig::new(c.rank, c.scaling, c.alpha, TargetModules::Names(adapter.target_names()));
    // The f32 as written (0.05, not 0.05000000074505806): the shortest decimal that reads back the same.
    config.lora_dropout = c.dropout.to_string().parse().unwrap_or(c.dropout as f64);
    config.bias = c.bias;
    let base_model = if c.init == Init::Pissa {
        // In f32, from the weights the base computes with (a 4-bit base dequantised): PEFT loads it as a
        // plain base, and the page's import checks it against those weights.
        let mut residual = base.dequantized_copy();
        for l in &adapter.layers {
            if let Some((a0, b0)) = &l.residual {
                // W_res = W − s·B₀·A₀: the frozen part of the delta, moved into the weight.
                let mut frozen = l.clone();
                frozen.lora_a = a0.clone();
                frozen.lora_b = b0.clone();
                frozen.residual = None;
                let dw: Vec<f32> = frozen.delta_weight().iter().map(|d| -d).collect();
                residual.linear_mut(l.layer).add_to_weight(&dw)?;
            }
        }
        Some(residual.base_file()?)
    } else {
        None
    };
    Ok(AdapterFiles { safetensors, config, base_model })
}

/// What an adapter file says it was trained on ([`export_adapter_with_data`]); `None` for a file that does
/// not say (PEFT's own, or ours from before it kept the data).
pub fn adapter_data(safetensors: &[u8]) -> Option<serde_json::Value> {
    lab_meta(safetensors).and_then(|m| m.data)
}

fn lab_meta(safetensors: &[u8]) -> Option<LabMeta> {
    safetensors::SafeTensors::read_metadata(safetensors)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref().and_then(|m| m.get(META_KEY).cloned()))
        .and_then(|m| serde_json::from_str::<LabMeta>(&m).ok())
}

/// Reads an adapter for `base`. On any error — a config naming an unknown layer, a rank too large,
/// a tensor missing, misshapen or non-finite — nothing is created.
pub fn import_adapter(name: &str, safetensors: &[u8], config_json: &str, base: &impl Adaptable) -> Result<Adapter> {
    let modules = base.modules();
    let known: Vec<(&str, usize, usize)> =
        modules.iter().map(|m| (m.name.as_str(), m.in_features, m.out_features)).collect();
    let names: Vec<&str> = known.iter().map(|k| k.0).collect();
    let cfg = parse_adapter_config(config_json, CONFIG_FILE, &known)?;
    // parse_adapter_config returns full module names, each of which names itself.
    let targets: Vec<usize> =
        cfg.target_modules.names().iter().map(|t| targets::find(t, &names).expect("a resolved module name")).collect();
    let (mut scaling, mut alpha) = from_peft(cfg.lora_alpha, cfg.use_rslora, cfg.r);
    let map = read_safetensors(safetensors, ADAPTER_FILE)?;
    let mut init = Init::Default;
    // Our own description, when the file is ours and agrees with the config's scaling.
    if let Some(meta) = lab_meta(safetensors) {
        let ours = scaling_value(meta.scaling, meta.alpha, cfg.r);
        let peft = scaling_value(scaling, alpha, cfg.r);
        if meta.alpha.is_finite() && (ours - peft).abs() <= 1e-12 * peft.abs().max(1.0) {
            (scaling, alpha, init) = (meta.scaling, meta.alpha, meta.init);
        }
    }
    let config = LoraConfig {
        targets: targets.clone(),
        rank: cfg.r,
        alpha,
        scaling,
        dropout: cfg.lora_dropout as f32,
        bias: cfg.bias,
        init,
    };
    config.validate(&modules).map_err(|e| LabError::file(CONFIG_FILE, e.to_string()))?;
    let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
    for &t in &targets {
        let m = &modules[t];
        expected.push((format!("{PREFIX}{}.lora_A.weight", m.name), vec![cfg.r, m.in_features]));
        expected.push((format!("{PREFIX}{}.lora_B.weight", m.name), vec![m.out_features, cfg.r]));
    }
    for t in bias_layers(cfg.bias, &targets, base) {
        expected.push((format!("{PREFIX}{}.bias", modules[t].name), vec![modules[t].out_features]));
    }
    // PEFT also saves the base weight of an adapted output layer (`save_embedding_layers`, e.g.
    // `lm_head.base_layer.weight`); loading it would replace the base's, so it must be the same.
    let mut map = map;
    for &t in &targets {
        let key = format!("{PREFIX}{}.base_layer.weight", modules[t].name);
        if let Some(saved) = map.remove(&key) {
            if saved.data[..] != base.linear(t).dense_weight()[..] {
                return Err(LabError::file(
                    ADAPTER_FILE,
                    format!(
                        "{key} differs from the loaded base model's {}: the adapter was saved with another base",
                        modules[t].name
                    ),
                ));
            }
        }
    }
    let exp: Vec<(&str, &[usize])> = expected.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    expect_tensors(&map, ADAPTER_FILE, &exp, false)?;
    for (n, t) in &map {
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(LabError::file(
                ADAPTER_FILE,
                format!("{n} holds a non-finite value ({}) at index {i}", t.data[i]),
            ));
        }
    }
    // Built with the default init (no SVD needed: the weights come from the file), then labelled.
    let mut adapter = Adapter::new(name, LoraConfig { init: Init::Default, ..config.clone() }, base, 0)?;
    adapter.config = config;
    for l in &mut adapter.layers {
        let n = &modules[l.layer].name;
        l.lora_a = map[&format!("{PREFIX}{n}.lora_A.weight")].data.clone();
        l.lora_b = map[&format!("{PREFIX}{n}.lora_B.weight")].data.clone();
    }
    for (i, shift) in adapter.bias_shift.iter_mut().enumerate() {
        if let Some(shift) = shift {
            let file_bias = &map[&format!("{PREFIX}{}.bias", modules[i].name)].data;
            for ((s, f), b) in shift.iter_mut().zip(file_bias).zip(&base.linear(i).bias) {
                *s = f - b;
            }
        }
    }
    Ok(adapter)
}
