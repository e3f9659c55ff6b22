//! llama.cpp's LoRA adapter file: a GGUF that `llama-cli --lora FILE` (and `llama-server`,
//! `llama-export-lora`, wllama) load on top of the base model's GGUF, written as llama.cpp's own
//! `convert_lora_to_gguf.py` writes one from a PEFT adapter.
//!
//! What was followed, in llama.cpp's source:
//! - `convert_lora_to_gguf.py`: `LoraModel.set_type` (`general.type = "adapter"`, `adapter.type =
//!   "lora"`), `LoraModel.set_gguf_parameters` (only `adapter.lora.alpha`, an f32, PEFT's
//!   `lora_alpha` as it is: `use_rslora` is not read, so an rsLoRA adapter needs the alpha below),
//!   `LoraModel.modify_tensors` (each base weight `W` becomes `W.lora_a` = PEFT's lora_A, torch
//!   `r × in`, and `W.lora_b` = lora_B, `out × r`; an `lm_head` the base ties to the embedding is
//!   refused: "lm_head is present in adapter, but is ignored in base model"), and
//!   `LoraTorchTensor.reshape`/`.permute`, through which the base model's own tensor rewrites reach
//!   the pair: a row permutation of W moves lora_B's rows and leaves lora_A alone.
//! - `conversion/llama.py` (`convert_hf_to_gguf.py`'s `LlamaModel`): `undo_permute = True`, and
//!   `modify_tensors` applies `LlamaModel.permute(w, n_head, n_head)` to `q_proj` and
//!   `permute(w, n_head, n_kv_head)` to `k_proj` (grouped-query attention: k's rows are in kv heads).
//!   `permute` is `w.reshape(n, 2, rows/n/2, …).swapaxes(1, 2)`: GGUF row `h·d + 2i + j` holds HF
//!   row `h·d + j·d/2 + i`, which is the row [`unpermute_rows`] names for HF row `r` (the base's
//!   loader, `gguf_llama.rs`, takes HF row `r` from GGUF row `unpermute_rows(..)[r]`); so lora_B
//!   is written with `gguf_row[unpermute[r]] = hf_row[r]`.
//! - `conversion/base.py` `ModelBase.prepare_tensors`: names ending `.lora_a`/`.lora_b` take the
//!   output type, F32 by default (`--outtype f32`): F32 here, so nothing is rounded. ggml's dims are
//!   the torch shape reversed: lora_a `ne = [in, r]`, lora_b `ne = [r, out]`.
//!   `ModelBase.prepare_metadata`: after `general.architecture` (the writer's first key) come the
//!   type keys, `general.name`, the alpha, then `general.quantization_version` (2).
//! - `src/llama-adapter.cpp` `llama_adapter_lora_init_impl`: requires `general.type == "adapter"`,
//!   `general.architecture` equal to the model's, `adapter.type == "lora"`; reads
//!   `adapter.lora.alpha` with `gguf_get_val_f32` (0 when absent; an f32 is required when present);
//!   pairs tensors by the `.lora_a`/`.lora_b` suffix and refuses any other suffix (except
//!   `_norm.weight`) or a missing half; refuses a pair whose base tensor `model.get_tensor(name)`
//!   does not exist; and checks shapes: base `ne[0] == lora_a.ne[0]` (in), base `ne[1] ==
//!   lora_b.ne[1]` (out), `lora_a.ne[1] == lora_b.ne[0]` (r). No other `adapter.lora.*` key is read.
//! - `src/llama-adapter.h` `llama_adapter_lora_weight::get_scale`: `scale = adapter_scale · alpha /
//!   rank` with `rank = lora_b.ne[0]` in f32 (and `adapter_scale` alone when alpha is 0), applied by
//!   `llm_graph_context::build_lora_mm` (`src/llama-graph.cpp`) as `y += scale · b·(a·x)`.
//!
//! So `adapter.lora.alpha` is chosen as the f32 whose `alpha / r` (f32 division, as `get_scale`
//! computes it with `adapter_scale` 1) is our scaling bit for bit — whatever [`Scaling`] made it
//! (article α, PEFT α/r, rsLoRA α/√r). For r a power of two that is `scaling · r` exactly; for other
//! ranks the f32s next to `scaling · r` are tried, and where none divides back exactly (about one
//! (scaling, rank) pair in ten, e.g. never for r 3, 5, 6 with the lab's usual alphas) the nearest is
//! kept: llama.cpp's scale is then one f32 step (~6e-8 relative) from ours.
//!
//! Refused with a reason: an adapter made for another model shape, trained bias shifts (the file has
//! no place for them), PiSSA's residual (llama.cpp's base would be the residual model, which its file
//! is not), LoRA on an `lm_head` tied to the embedding (llama.cpp's output layer is then `token_embd`,
//! whose LoRA would change the embedding as well), and adapters whose layers would need different
//! alphas. An untied `lm_head` is `output.weight`, as the converter maps it.
//!
//! [`Scaling`]: crate::lora::Scaling

use std::collections::{BTreeMap, HashMap};

use super::adapter_config::AdapterConfig;
use super::gguf::{read_gguf, write_gguf, Gguf, GgufTensorData, GgufValue};
use super::gguf_llama::unpermute_rows;
use super::tensors::write_safetensors;
use crate::error::{LabError, Result};
use crate::lm::config::{LmConfig, K, LAYER_MODULES, Q};
use crate::lora::targets::TargetModules;
use crate::lora::{Adapter, LoraLayer, Scaling};
use crate::quant::ggml::dequantize;
use crate::quant::GgmlType;

/// llama.cpp's names of a layer's seven Linears (`blk.N.<name>.weight`), in `LAYER_MODULES`' order.
pub const GGUF_LORA_MODULES: [&str; 7] =
    ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
const _: () = assert!(GGUF_LORA_MODULES.len() == LAYER_MODULES.len());

/// gguf-py's `GGML_QUANT_VERSION`, which the converter writes as `general.quantization_version`.
const QUANTIZATION_VERSION: u32 = 2;

/// The base tensor (`blk.N.attn_q.weight`, `output.weight`) that module `index` of `cfg` is in
/// llama.cpp's model, or why there is none.
pub fn gguf_base_tensor(cfg: &LmConfig, index: usize) -> std::result::Result<String, String> {
    let per = LAYER_MODULES.len();
    if index < cfg.layers * per {
        Ok(format!("blk.{}.{}.weight", index / per, GGUF_LORA_MODULES[index % per]))
    } else if index == cfg.lm_head() {
        if cfg.tie_embeddings {
            Err("lm_head is the token embedding in this model (tied): llama.cpp's output layer is then the \
                 token_embd tensor, whose LoRA would change the embedding too (its converter refuses it: \"lm_head \
                 is present in adapter, but is ignored in base model\")"
                .into())
        } else {
            Ok("output.weight".into())
        }
    } else {
        Err(format!("module #{index} is not one of the model's {} Linears", cfg.lm_head() + 1))
    }
}

/// The f32 alpha whose `alpha / rank` in f32 (llama.cpp's `get_scale`) is `scaling`: exact when one
/// exists among the f32s next to `scaling · rank`, else the nearest.
pub fn llama_cpp_alpha(scaling: f32, rank: usize) -> f32 {
    let r = rank as f32;
    let nearest = (scaling as f64 * rank as f64) as f32;
    let step = |a: f32, up: bool| {
        let bits = a.to_bits();
        // Positive finite values: the next f32 up or down is one bit pattern away.
        f32::from_bits(if up { bits + 1 } else { bits.saturating_sub(1) })
    };
    if !(nearest.is_finite() && nearest > 0.0) {
        return nearest;
    }
    let (mut up, mut down) = (nearest, nearest);
    for _ in 0..=8 {
        if up / r == scaling {
            return up;
        }
        if down / r == scaling {
            return down;
        }
        up = step(up, true);
        down = step(down, false);
    }
    nearest
}

/// llama.cpp's LoRA GGUF of `adapter` (LoRA layers on a Llama whose config is `cfg`, module indices
/// as `cfg.linear_modules()` lists them): `general.architecture` "llama", `general.type` "adapter",
/// `adapter.type` "lora", `adapter.lora.alpha` (f32) chosen so llama.cpp's scale alpha/r equals our
/// scaling, `general.name` = `name`; tensors `blk.N.<ggml name>.weight.lora_a` / `.lora_b` in F32
/// with ggml dims lora_a `[in, r]`, lora_b `[r, out]`, the rows of q_proj's and k_proj's lora_b
/// permuted as the converter permutes the base's q/k weights. See the module doc for the refusals.
pub fn export_gguf_lora(adapter: &Adapter, cfg: &LmConfig, name: &str) -> Result<Vec<u8>> {
    let refuse = |reason: String| LabError::setting("llama.cpp LoRA export", reason);
    let modules = cfg.linear_modules();
    let same_model = adapter.modules.len() == modules.len()
        && adapter
            .modules
            .iter()
            .zip(&modules)
            .all(|(m, (n, i, o))| m.name == *n && m.in_features == *i && m.out_features == *o);
    if !same_model {
        return Err(refuse(format!(
            "adapter \"{}\" was made for another model than this {}-layer Llama (hidden {})",
            adapter.name, cfg.layers, cfg.hidden
        )));
    }
    let biased: Vec<&str> = (0..adapter.modules.len())
        .filter(|&i| adapter.bias_shift.get(i).is_some_and(Option::is_some))
        .map(|i| adapter.modules[i].name.as_str())
        .collect();
    if !biased.is_empty() {
        return Err(refuse(format!(
            "adapter \"{}\" trains biases ({}); llama.cpp's LoRA files hold lora_a/lora_b pairs only — train it \
             with bias \"none\"",
            adapter.name,
            biased.join(", ")
        )));
    }
    if adapter.layers.is_empty() {
        return Err(refuse(format!("adapter \"{}\" has no LoRA layer", adapter.name)));
    }

    let mut alpha: Option<(f32, &LoraLayer)> = None;
    let mut tensors: Vec<(String, [u64; 2], Vec<u8>)> = Vec::with_capacity(2 * adapter.layers.len());
    for l in &adapter.layers {
        let module = &adapter.modules[l.layer].name;
        if l.residual.is_some() {
            return Err(refuse(format!(
                "{module} is a PiSSA layer: it adds to the residual W − s·B₀·A₀, while llama.cpp would add it to \
                 the base GGUF's W"
            )));
        }
        let base = gguf_base_tensor(cfg, l.layer).map_err(|r| refuse(format!("{module}: {r}")))?;
        let (k, n, r) = (l.in_features, l.out_features, l.rank);
        if r == 0 || l.lora_a.len() != r * k || l.lora_b.len() != n * r {
            return Err(refuse(format!("{module}: lora_A/lora_B are not {r}×{k} and {n}×{r}")));
        }
        let a = llama_cpp_alpha(l.scaling, r);
        let (a0, l0) = *alpha.get_or_insert((a, l));
        if a0 != a {
            let first = &adapter.modules[l0.layer].name;
            return Err(refuse(format!(
                "llama.cpp has one alpha per file, but {first} (scaling {}, rank {}) needs {a0} and {module} \
                 (scaling {}, rank {r}) needs {a}",
                l0.scaling, l0.rank, l.scaling
            )));
        }
        // The converter's row permutation of q and k, carried to lora_B (its rows are W's rows).
        let b = match permuted_heads(cfg, l.layer) {
            Some(h) => {
                let mut b = vec![0.0f32; n * r];
                for (hf, gguf) in unpermute_rows(n, h).into_iter().enumerate() {
                    b[gguf * r..(gguf + 1) * r].copy_from_slice(&l.lora_b[hf * r..(hf + 1) * r]);
                }
                b
            }
            None => l.lora_b.clone(),
        };
        tensors.push((format!("{base}.lora_a"), [k as u64, r as u64], f32_bytes(&l.lora_a)));
        tensors.push((format!("{base}.lora_b"), [r as u64, n as u64], f32_bytes(&b)));
    }
    let alpha = alpha.map(|(a, _)| a).unwrap_or(0.0);

    let s = |v: &str| GgufValue::String(v.to_string());
    let metadata = vec![
        ("general.architecture".to_string(), s("llama")),
        ("general.type".to_string(), s("adapter")),
        ("adapter.type".to_string(), s("lora")),
        ("general.name".to_string(), s(name)),
        ("adapter.lora.alpha".to_string(), GgufValue::F32(alpha)),
        ("general.quantization_version".to_string(), GgufValue::U32(QUANTIZATION_VERSION)),
    ];
    let data: Vec<GgufTensorData> = tensors
        .iter()
        .map(|(name, dims, bytes)| GgufTensorData { name, dims, ty: GgmlType::F32, data: bytes })
        .collect();
    write_gguf(&metadata, &data)
}

/// The heads whose rows llama.cpp's converter permutes in module `index`'s weight (q_proj: the query
/// heads, k_proj: the key/value heads), or `None` for a module it leaves in Hugging Face's order.
fn permuted_heads(cfg: &LmConfig, index: usize) -> Option<usize> {
    match index % LAYER_MODULES.len() {
        _ if index >= cfg.lm_head() => None,
        Q => Some(cfg.heads),
        K => Some(cfg.kv_heads()),
        _ => None,
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A llama.cpp LoRA GGUF (as [`export_gguf_lora`] or llama.cpp's `convert_lora_to_gguf.py` writes one)
/// for the Llama `cfg`, read back as PEFT's folder: `adapter_config.json` and `adapter_model.safetensors`
/// (so it is validated as any PEFT adapter is when imported). The reverse of the writer: `.lora_a`
/// `[in, r]` is lora_A (r × in), `.lora_b` `[r, out]` lora_B (out × r) with q_proj's and k_proj's rows
/// put back in Hugging Face's order, `adapter.lora.alpha` PEFT's `lora_alpha` (llama.cpp's scale is
/// alpha / r, as PEFT's is; absent or 0 means a scale of 1, so `lora_alpha = r`). Any tensor type the
/// GGUF reader reads is taken (F32 as the converter writes by default, F16, BF16, Q8_0, …).
///
/// Refused, naming the file and what is wrong: a GGUF that is not a LoRA adapter (`general.type`,
/// `adapter.type`), another architecture, a tensor that is not half of a `.lora_a`/`.lora_b` pair of one
/// of the model's Linears, a missing half, shapes that do not fit the model, pairs of different ranks
/// (PEFT's config holds one `r`; llama.cpp's files allow more), a non-finite value.
pub fn gguf_lora_to_peft(bytes: &[u8], file: &str, cfg: &LmConfig) -> Result<(AdapterConfig, Vec<u8>)> {
    let bad = |reason: String| LabError::file(file, reason);
    let g = read_gguf(bytes, file)?;
    let kind = g.optional("general.type", Gguf::get_str)?.unwrap_or("model");
    if kind != "adapter" {
        return Err(bad(format!(
            "general.type is \"{kind}\", not \"adapter\": this is a model, not a LoRA adapter (load it above as the model)"
        )));
    }
    let lora = g.optional("adapter.type", Gguf::get_str)?.unwrap_or("(none)");
    if lora != "lora" {
        return Err(bad(format!("adapter.type is \"{lora}\"; this lab reads LoRA adapters (\"lora\")")));
    }
    let arch = g.optional("general.architecture", Gguf::get_str)?.unwrap_or("(none)");
    if arch != "llama" {
        return Err(bad(format!("general.architecture is \"{arch}\"; the loaded model is a Llama")));
    }
    let alpha = g.optional("adapter.lora.alpha", Gguf::get_f32)?.unwrap_or(0.0);
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(bad(format!("adapter.lora.alpha is {alpha}: expected a finite, non-negative number")));
    }

    // The model's Linears by llama.cpp's name of their weight.
    let modules = cfg.linear_modules();
    let by_base: HashMap<String, usize> =
        (0..modules.len()).filter_map(|i| gguf_base_tensor(cfg, i).ok().map(|n| (n, i))).collect();
    let mut pairs: BTreeMap<usize, [Option<usize>; 2]> = BTreeMap::new();
    for (t, info) in g.tensors.iter().enumerate() {
        let (base, half) = match (info.name.strip_suffix(".lora_a"), info.name.strip_suffix(".lora_b")) {
            (Some(b), _) => (b, 0),
            (_, Some(b)) => (b, 1),
            _ => return Err(bad(format!("tensor \"{}\" is not a .lora_a or .lora_b half of a LoRA pair", info.name))),
        };
        let &m = by_base
            .get(base)
            .ok_or_else(|| bad(format!("tensor \"{}\": the loaded model has no Linear \"{base}\"", info.name)))?;
        let slot = &mut pairs.entry(m).or_default()[half];
        if slot.replace(t).is_some() {
            return Err(bad(format!("tensor \"{}\" appears twice", info.name)));
        }
    }
    if pairs.is_empty() {
        return Err(bad("the adapter holds no LoRA tensors".into()));
    }

    let mut rank = None;
    let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::with_capacity(2 * pairs.len());
    for (&m, halves) in &pairs {
        let base = gguf_base_tensor(cfg, m).expect("named above");
        let [Some(ia), Some(ib)] = *halves else {
            let missing = if halves[0].is_none() { "lora_a" } else { "lora_b" };
            return Err(bad(format!("{base}.{missing} is missing: llama.cpp's LoRA tensors come in pairs")));
        };
        let (name, k, n) = &modules[m];
        let (a, b) = (&g.tensors[ia], &g.tensors[ib]);
        let r = match (a.dims.as_slice(), b.dims.as_slice()) {
            (&[ak, ar], &[br, bn]) if ak as usize == *k && bn as usize == *n && ar == br && ar > 0 => ar as usize,
            _ => {
                return Err(bad(format!(
                    "{base}: lora_a is {:?} and lora_b {:?}, but {name} ({k} in, {n} out) needs [{k}, r] and [r, {n}]",
                    a.dims, b.dims
                )))
            }
        };
        if *rank.get_or_insert(r) != r {
            return Err(bad(format!(
                "{base} has rank {r} but others have rank {}: this lab holds one rank per adapter (PEFT's r)",
                rank.unwrap_or(r)
            )));
        }
        let values = |i: usize| -> Result<Vec<f32>> {
            let t = &g.tensors[i];
            let v = dequantize(t.ty, g.tensor_bytes(bytes, i)?, t.n_elements());
            match v.iter().position(|x| !x.is_finite()) {
                Some(at) => Err(bad(format!("{} holds {} at element {at}", t.name, v[at]))),
                None => Ok(v),
            }
        };
        let lora_a = values(ia)?;
        let gguf_b = values(ib)?;
        // The writer's row permutation of q and k, undone: HF row `hf` is GGUF row `unpermute[hf]`.
        let lora_b = match permuted_heads(cfg, m) {
            Some(h) => {
                let mut out = vec![0.0f32; n * r];
                for (hf, gguf) in unpermute_rows(*n, h).into_iter().enumerate() {
                    out[hf * r..(hf + 1) * r].copy_from_slice(&gguf_b[gguf * r..(gguf + 1) * r]);
                }
                out
            }
            None => gguf_b,
        };
        owned.push((format!("base_model.model.{name}.lora_A.weight"), vec![r, *k], lora_a));
        owned.push((format!("base_model.model.{name}.lora_B.weight"), vec![*n, r], lora_b));
    }
    let rank = rank.expect("one pair at least");
    let tensors: Vec<(String, Vec<usize>, &[f32])> =
        owned.iter().map(|(n, s, d)| (n.clone(), s.clone(), &d[..])).collect();
    let safetensors = write_safetensors(&tensors, None)?;
    let targets: Vec<String> = pairs.keys().map(|&m| modules[m].0.clone()).collect();
    // llama.cpp's scale is alpha / r, PEFT's lora_alpha / r; without an alpha llama.cpp scales by 1.
    let lora_alpha = if alpha > 0.0 { alpha as f64 } else { rank as f64 };
    let mut config = AdapterConfig::new(rank, Scaling::Peft, lora_alpha, TargetModules::Names(targets));
    config.task_type = Some("CAUSAL_LM".into());
    Ok((config, safetensors))
}
