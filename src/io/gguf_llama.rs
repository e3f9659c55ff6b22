//! A Llama-family GGUF (llama.cpp's `general.architecture = "llama"`) → [`Llama`], its frozen weights
//! held in the file's own blocks: every Linear as a `GgmlWeight` (no f32 copy), the norms in f32, and
//! a tied `token_embd` as `lm_head`'s weight, which also serves the embedding lookup.
//!
//! Names (GGUF → transformers): `token_embd` → `model.embed_tokens`, `blk.N.attn_{q,k,v,output}` →
//! `self_attn.{q,k,v,o}_proj`, `blk.N.ffn_{gate,up,down}` → `mlp.*_proj`, `blk.N.attn_norm` →
//! `input_layernorm`, `blk.N.ffn_norm` → `post_attention_layernorm`, `output_norm` → `model.norm`,
//! `output` → `lm_head` (absent when tied). ggml's dims are `[in, out]`: row-major `out × in`, as
//! PyTorch's. llama.cpp's converter permutes the rows of q and k within each head for its interleaved
//! rotary embedding; they are put back in HF's order here ([`unpermute_rows`]), so the model's RoPE is
//! HF's `rotate_half` and an exported `lora_B` has HF's rows.
//!
//! Also the file's tokenizer, chat template and BOS rule (`gguf_tokenizer`, `gguf_chat_template`).
//!
//! Refused, naming the key or the tensor: another architecture, rope scaling or frequency factors, a
//! tensor missing, of the wrong shape, or one this model has no place for.

use std::ops::Range;
use std::sync::Arc;

use super::gguf::{Gguf, GgufTensorInfo};
use crate::lm::config::{K, LAYER_MODULES, Q};
use crate::lm::{Llama, LmConfig};
use crate::nn::Linear;
use crate::quant::{Blocks, GgmlType, GgmlWeight};
use crate::text::{Bpe, ChatTemplate};
use crate::{LabError, Result};

/// GGUF's names of a layer's seven Linears, in `LAYER_MODULES`' order.
const GGUF_MODULES: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
const _: () = assert!(GGUF_MODULES.len() == LAYER_MODULES.len());

/// The model's shape from the file's `llama.*` and `tokenizer.ggml.*` keys.
pub fn gguf_llama_config(g: &Gguf) -> Result<LmConfig> {
    let bad = |reason: String| LabError::file(&g.file, reason);
    let arch = g.get_str("general.architecture")?;
    if arch != "llama" {
        return Err(bad(format!(
            "general.architecture is \"{arch}\"; this lab runs Llama-family models (\"llama\": SmolLM, Llama, \
             TinyLlama, …)"
        )));
    }
    let size = |key: &str| -> Result<usize> { Ok(g.get_u64(key)? as usize) };
    let layers = size("llama.block_count")?;
    let hidden = size("llama.embedding_length")?;
    let intermediate = size("llama.feed_forward_length")?;
    let heads = size("llama.attention.head_count")?;
    let kv_heads = g.optional("llama.attention.head_count_kv", Gguf::get_u64)?.map_or(heads, |v| v as usize);
    let head_dim = match g.optional("llama.attention.key_length", Gguf::get_u64)? {
        Some(d) => d as usize,
        None => hidden.checked_div(heads).unwrap_or(0),
    };
    if let Some(rot) = g.optional("llama.rope.dimension_count", Gguf::get_u64)? {
        if rot as usize != head_dim {
            return Err(bad(format!(
                "llama.rope.dimension_count is {rot} but heads are {head_dim} wide: partial rotary embeddings are \
                 not supported"
            )));
        }
    }
    if let Some(kind) = g.optional("llama.rope.scaling.type", Gguf::get_str)? {
        if kind != "none" {
            return Err(bad(format!("llama.rope.scaling.type is \"{kind}\": rope scaling is not supported")));
        }
    }
    let vocab = g.get_array_str("tokenizer.ggml.tokens")?.len();
    if let Some(v) = g.optional("llama.vocab_size", Gguf::get_u64)? {
        if v as usize != vocab {
            return Err(bad(format!("llama.vocab_size is {v} but tokenizer.ggml.tokens holds {vocab} tokens")));
        }
    }
    let token = |key: &str| -> Result<Option<u32>> {
        g.optional(key, Gguf::get_u32)?
            .map(|id| {
                if (id as usize) < vocab {
                    Ok(id)
                } else {
                    Err(bad(format!("{key} {id} is outside the vocabulary of {vocab}")))
                }
            })
            .transpose()
    };
    let bos = token("tokenizer.ggml.bos_token_id")?.unwrap_or(0);
    let eos = token("tokenizer.ggml.eos_token_id")?.ok_or_else(|| bad("tokenizer.ggml.eos_token_id is missing".into()))?;
    let pad = token("tokenizer.ggml.padding_token_id")?.unwrap_or(eos);
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(bad(format!("llama.attention.head_count_kv {kv_heads} does not divide head_count {heads}")));
    }
    let cfg = LmConfig {
        vocab,
        hidden,
        intermediate,
        layers,
        heads,
        kv_group: heads / kv_heads,
        head_dim,
        context: size("llama.context_length")?,
        rms_norm_eps: g.get_f32("llama.attention.layer_norm_rms_epsilon")?,
        rope_theta: g.optional("llama.rope.freq_base", Gguf::get_f32)?.unwrap_or(10000.0),
        bos,
        eos,
        pad,
        tie_embeddings: g.find_tensor("output.weight").is_none(),
        init_std: 0.02,
    };
    cfg.validate(&g.file)?;
    Ok(cfg)
}

/// The model in `bytes` (the buffer `g` was read from), each quantised weight copied out of it.
pub fn gguf_llama(g: &Gguf, bytes: &[u8]) -> Result<Llama> {
    gguf_llama_with(g, bytes, &|range| Blocks::Owned(bytes[range].to_vec()))
}

/// The model in `file` (the buffer `g` was read from), its quantised weights pointing into it: the
/// file is kept whole and nothing is copied.
pub fn gguf_llama_shared(g: &Gguf, file: &Arc<Vec<u8>>) -> Result<Llama> {
    gguf_llama_with(g, file, &|range| Blocks::Shared(file.clone(), range))
}

fn gguf_llama_with(g: &Gguf, bytes: &[u8], blocks: &dyn Fn(Range<usize>) -> Blocks) -> Result<Llama> {
    let cfg = gguf_llama_config(g)?;
    let mut used = vec![false; g.tensors.len()];
    let mut take = |name: &str, shape: &[usize]| -> Result<(&GgufTensorInfo, &[u8])> {
        let (i, t) = g.find_tensor(name).ok_or_else(|| LabError::file(&g.file, format!("tensor \"{name}\" is missing")))?;
        if t.shape() != shape {
            return Err(LabError::file(
                &g.file,
                format!("tensor \"{name}\" has dims {:?}; this model's config needs {shape:?}", t.dims),
            ));
        }
        used[i] = true;
        let data = g.tensor_bytes(bytes, i)?;
        Ok((t, data))
    };
    let f32s = |t: &GgufTensorInfo, data: &[u8]| -> Result<Vec<f32>> {
        if t.ty != GgmlType::F32 {
            return Err(LabError::file(&g.file, format!("tensor \"{}\" is {}; norm weights are F32", t.name, t.ty)));
        }
        Ok(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    };
    // The weight's blocks by range (`take` has checked they lie in the file): copied or pointed into.
    let linear = |t: &GgufTensorInfo, rows: usize, cols: usize, perm: Option<usize>| -> Result<Linear> {
        let w = GgmlWeight::from_blocks(t.ty, rows, cols, blocks(t.offset..t.offset + t.bytes))
            .map_err(|r| LabError::file(&g.file, format!("tensor \"{}\": {r}", t.name)))?;
        let w = match perm {
            Some(heads) => w.permute_rows(&unpermute_rows(rows, heads)),
            None => w,
        };
        Ok(if t.ty == GgmlType::F32 {
            // An f32 weight is held as it is.
            Linear::without_bias(cols, rows, w.dequantize())
        } else {
            Linear::from_held(w)
        })
    };

    let (h, v) = (cfg.hidden, cfg.vocab);
    let mut linears: Vec<Linear> = Vec::with_capacity(cfg.lm_head() + 1);
    let mut norms = Vec::with_capacity(cfg.layers);
    for l in 0..cfg.layers {
        let (ta, a) = take(&format!("blk.{l}.attn_norm.weight"), &[h])?;
        let (tf, f) = take(&format!("blk.{l}.ffn_norm.weight"), &[h])?;
        norms.push([f32s(ta, a)?, f32s(tf, f)?]);
        for (j, gname) in GGUF_MODULES.iter().enumerate() {
            let (cols, rows) = cfg.module_shape(j);
            let (t, _) = take(&format!("blk.{l}.{gname}.weight"), &[rows, cols])?;
            let perm = match j {
                Q => Some(cfg.heads),
                K => Some(cfg.kv_heads()),
                _ => None,
            };
            linears.push(linear(t, rows, cols, perm)?);
        }
    }
    let (tn, n) = take("output_norm.weight", &[h])?;
    let final_norm = f32s(tn, n)?;
    let (te, _) = take("token_embd.weight", &[v, h])?;
    let embed_linear = linear(te, v, h, None)?;
    let embed = if cfg.tie_embeddings {
        linears.push(embed_linear);
        Vec::new()
    } else {
        let (to, _) = take("output.weight", &[v, h])?;
        linears.push(linear(to, v, h, None)?);
        embed_linear.dense_weight().into_owned()
    };
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(LabError::file(
            &g.file,
            format!("tensor \"{}\" has no place in a Llama of this config (rope frequency factors, biases and extra layers are not supported)", g.tensors[i].name),
        ));
    }
    Ok(Llama { cfg, embed, linears, norms, final_norm })
}

/// The row order that undoes llama.cpp's q/k permutation for `heads` heads of `rows / heads` rows:
/// HF row `h·d + j·d/2 + i` (half j of pair i) is GGUF row `h·d + 2i + j`.
pub fn unpermute_rows(rows: usize, heads: usize) -> Vec<usize> {
    let d = rows / heads;
    let half = d / 2;
    (0..rows)
        .map(|r| {
            let (h, within) = (r / d, r % d);
            let (j, i) = (within / half, within % half);
            h * d + 2 * i + j
        })
        .collect()
}

/// The tokenizer a GGUF describes (`tokenizer.ggml.*`): byte-level BPE (`tokenizer.ggml.model =
/// "gpt2"`) with its pre-tokenizer (`smollm` or `gpt2`).
pub fn gguf_tokenizer(g: &Gguf) -> Result<Bpe> {
    let model = g.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(LabError::file(
            &g.file,
            format!("tokenizer.ggml.model is \"{model}\"; this lab reads byte-level BPE tokenizers (\"gpt2\")"),
        ));
    }
    let tokens = g.get_array_str("tokenizer.ggml.tokens")?;
    let merges = g.get_array_str("tokenizer.ggml.merges")?;
    let types = g.optional("tokenizer.ggml.token_type", Gguf::get_array_i32)?.unwrap_or_default();
    let pre = g.optional("tokenizer.ggml.pre", Gguf::get_str)?.unwrap_or("gpt2");
    Bpe::from_vocab(tokens, merges, &types, pre, &g.file)
}

/// The model's chat template (`tokenizer.chat_template`), compiled, with its BOS and EOS texts; `None`
/// when the file has none.
pub fn gguf_chat_template(g: &Gguf, cfg: &LmConfig, tok: &Bpe) -> Result<Option<ChatTemplate>> {
    let Some(source) = g.optional("tokenizer.chat_template", Gguf::get_str)? else { return Ok(None) };
    let text = |id: u32| tok.token_text(id).unwrap_or("").to_string();
    ChatTemplate::new(source, &text(cfg.bos), &text(cfg.eos), &g.file).map(Some)
}

/// Whether the tokenizer asks for BOS before a text (`tokenizer.ggml.add_bos_token`, false when absent).
pub fn gguf_adds_bos(g: &Gguf) -> Result<bool> {
    Ok(g.optional("tokenizer.ggml.add_bos_token", Gguf::get_bool)?.unwrap_or(false))
}
