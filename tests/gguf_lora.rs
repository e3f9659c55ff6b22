#![cfg(not(target_arch = "wasm32"))]
//! llama.cpp's LoRA adapter GGUF (`export_gguf_lora`), read back with our GGUF reader: the metadata
//! `convert_lora_to_gguf.py` writes and `llama-adapter.cpp` requires, `blk.N.<name>.weight.lora_a/b`
//! in F32 with ggml's dims, ΔW equal to the adapter's (lora_B's q/k rows put back in HF order), and
//! ΔW as the file holds it equal to ΔW permuted as the base GGUF's q/k rows are, so it adds to the
//! base weight in the file. On SmolLM2's own GGUF: every pair passes llama.cpp's shape checks against
//! the real base tensors. With GGUF_LORA_OUT set, the SmolLM2 adapter is written there (for
//! tests/fixtures/smol/check_gguf_lora.py and llama.cpp's `--lora`); with GGUF_LORA_MERGED set to what
//! `llama-export-lora` merged from it, that model's weights are checked against base + ΔW.

mod common;

use lora_lab::io::gguf_llama::unpermute_rows;
use lora_lab::io::{
    export_gguf_lora, gguf_lora_to_peft, import_adapter, llama_cpp_alpha, read_gguf, write_gguf, Gguf, GgufTensorData,
    GgufValue,
};
use lora_lab::lm::config::{K, LAYER_MODULES, Q};
use lora_lab::lm::{Llama, LmActivations, LmConfig};
use lora_lab::lora::{Adaptable, Adapter, Bias, Init, LoraConfig, LoraLayer, Scaling};
use lora_lab::quant::{Blocks, GgmlType, GgmlWeight};
use lora_lab::rng::{Rng, Stream};
use lora_lab::LabError;

const NAMES: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/// A grouped-query Llama shaped like SmolLM2 in small: 4 query heads over 2 key/value heads of 8.
fn smol_like(tied: bool) -> Llama {
    let cfg = LmConfig {
        hidden: 32,
        intermediate: 40,
        layers: 2,
        heads: 4,
        kv_group: 2,
        head_dim: 8,
        context: 64,
        vocab: 300,
        tie_embeddings: tied,
        init_std: 0.2,
        ..LmConfig::tiny()
    };
    cfg.validate("test").unwrap();
    Llama::new(cfg, 7)
}

/// LoRA on `targets` with both factors random (lora_B drawn after the init, so ΔW is not zero).
fn adapter(model: &Llama, targets: Vec<usize>, rank: usize, alpha: f64, scaling: Scaling) -> Adapter {
    let cfg = LoraConfig { targets, rank, alpha, scaling, dropout: 0.0, bias: Bias::None, init: Init::Default };
    let mut a = Adapter::new("t", cfg, model, 3).unwrap();
    let mut r = Rng::new(9, Stream::AdapterInit);
    for l in &mut a.layers {
        l.lora_b.iter_mut().for_each(|v| *v = 0.2 * r.normal());
    }
    a
}

/// Every projection of every layer (not lm_head).
fn all_projections(cfg: &LmConfig) -> Vec<usize> {
    (0..cfg.layers).flat_map(|l| (0..LAYER_MODULES.len()).map(move |j| cfg.module(l, j))).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn tensor(g: &Gguf, bytes: &[u8], name: &str) -> (Vec<u64>, Vec<f32>) {
    let (i, t) = g.find_tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
    assert_eq!(t.ty, GgmlType::F32, "{name}");
    (t.dims.clone(), f32s(g.tensor_bytes(bytes, i).unwrap()))
}

fn str_of<'a>(g: &'a Gguf, key: &str) -> &'a str {
    g.get_str(key).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Rows of `m` (rows × cols) moved so that row `perm[r]` of the result is row `r` of `m`: the base
/// GGUF's q/k layout from HF's.
fn to_gguf_rows(m: &[f32], cols: usize, perm: &[usize]) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for (r, &p) in perm.iter().enumerate() {
        out[p * cols..(p + 1) * cols].copy_from_slice(&m[r * cols..(r + 1) * cols]);
    }
    out
}

/// Rows of `m` back in HF order: row `r` of the result is row `perm[r]` of `m`.
fn to_hf_rows(m: &[f32], cols: usize, perm: &[usize]) -> Vec<f32> {
    perm.iter().flat_map(|&p| m[p * cols..(p + 1) * cols].iter().copied()).collect()
}

fn heads_of(cfg: &LmConfig, j: usize) -> Option<usize> {
    match j {
        Q => Some(cfg.heads),
        K => Some(cfg.kv_heads()),
        _ => None,
    }
}

#[test]
fn exports_llama_cpp_lora_layout_and_delta_weights() {
    let model = smol_like(true);
    let cfg = model.cfg.clone();
    let a = adapter(&model, all_projections(&cfg), 4, 8.0, Scaling::Peft);
    let bytes = export_gguf_lora(&a, &cfg, "my-adapter").unwrap();
    let g = read_gguf(&bytes, "lora.gguf").unwrap();

    // The converter's keys, in its order; nothing else (no llama.* hyperparameters, no file_type).
    let keys: Vec<&str> = g.metadata.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "general.architecture",
            "general.type",
            "adapter.type",
            "general.name",
            "adapter.lora.alpha",
            "general.quantization_version"
        ]
    );
    assert_eq!(str_of(&g, "general.architecture"), "llama");
    assert_eq!(str_of(&g, "general.type"), "adapter");
    assert_eq!(str_of(&g, "adapter.type"), "lora");
    assert_eq!(str_of(&g, "general.name"), "my-adapter");
    assert_eq!(g.get("adapter.lora.alpha"), Some(&GgufValue::F32(8.0)), "PEFT α 8 at r 4: α/r = 2 = our scaling");
    assert_eq!(g.get("general.quantization_version"), Some(&GgufValue::U32(2)));
    assert_eq!(g.alignment, 32);

    // Two tensors per adapted Linear, lora_a then lora_b, in module order.
    assert_eq!(g.tensors.len(), 2 * 7 * cfg.layers);
    let alpha = g.get_f32("adapter.lora.alpha").unwrap();
    for l in &a.layers {
        let (blk, j) = (l.layer / 7, l.layer % 7);
        let base = format!("blk.{blk}.{}.weight", NAMES[j]);
        let i = g.find_tensor(&format!("{base}.lora_a")).unwrap().0;
        assert_eq!(g.tensors[i + 1].name, format!("{base}.lora_b"));
        let (k, n, r) = (l.in_features, l.out_features, l.rank);
        let (a_dims, fa) = tensor(&g, &bytes, &format!("{base}.lora_a"));
        let (b_dims, fb) = tensor(&g, &bytes, &format!("{base}.lora_b"));
        assert_eq!(a_dims, [k as u64, r as u64], "{base}: lora_a ne = [in, r]");
        assert_eq!(b_dims, [r as u64, n as u64], "{base}: lora_b ne = [r, out]");
        assert_eq!(fa, l.lora_a, "{base}: lora_a is PEFT's lora_A as it is");

        // llama.cpp's scale: alpha / rank with rank = lora_b.ne[0], in f32.
        let scale = alpha / b_dims[0] as f32;
        assert_eq!(scale.to_bits(), l.scaling.to_bits(), "{base}");
        let perm = heads_of(&cfg, j).map(|h| unpermute_rows(n, h));
        let hf_b = match &perm {
            Some(p) => {
                assert_ne!(fb, l.lora_b, "{base}: q/k rows are permuted");
                to_hf_rows(&fb, r, p)
            }
            None => fb.clone(),
        };
        assert_eq!(hf_b, l.lora_b, "{base}: lora_b un-permuted is lora_B");
        let dw = l.delta_weight();
        let from_file = LoraLayer::new(l.layer, (k, n), r, scale, fa.clone(), hf_b).delta_weight();
        assert_eq!(from_file, dw, "{base}: ΔW from the file (rows in HF order) is the adapter's ΔW");

        // As llama.cpp adds it: b·a with the file's rows, which must be ΔW's rows moved as the base
        // GGUF's q/k rows were moved (so W_gguf + ΔW_file = permute(W_hf + ΔW)).
        let as_is = LoraLayer::new(l.layer, (k, n), r, scale, fa, fb).delta_weight();
        let expect = match &perm {
            Some(p) => to_gguf_rows(&dw, k, p),
            None => dw,
        };
        assert_eq!(as_is, expect, "{base}: ΔW as the file holds it is ΔW in the base GGUF's row order");
    }

    // The base model in the GGUF's row order: its q/k rows permuted the same way, which is the way
    // `gguf_llama` un-permutes them on load (HF row r = GGUF row unpermute[r]).
    let q = cfg.module(1, Q);
    let (k_in, n_out) = cfg.module_shape(Q);
    let p = unpermute_rows(n_out, cfg.heads);
    let w_hf = model.linear(q).dense_weight().into_owned();
    let mut w_plus = w_hf.clone();
    w_plus.iter_mut().zip(a.layer(q).unwrap().delta_weight()).for_each(|(w, d)| *w += d);
    let w_gguf = to_gguf_rows(&w_hf, k_in, &p);
    let l = a.layer(q).unwrap();
    let (_, fa) = tensor(&g, &bytes, "blk.1.attn_q.weight.lora_a");
    let (_, fb) = tensor(&g, &bytes, "blk.1.attn_q.weight.lora_b");
    let dw_file = LoraLayer::new(q, (k_in, n_out), l.rank, alpha / l.rank as f32, fa, fb).delta_weight();
    let merged_in_gguf: Vec<f32> = w_gguf.iter().zip(&dw_file).map(|(w, d)| w + d).collect();
    assert_eq!(
        to_hf_rows(&merged_in_gguf, k_in, &p),
        w_plus,
        "merging in the GGUF's order, then loading, is merging in ours"
    );
}

#[test]
fn any_scaling_round_trips_into_alpha() {
    let model = smol_like(true);
    let cfg = model.cfg.clone();
    let targets = vec![cfg.module(0, Q), cfg.module(0, K), cfg.module(1, 6)];
    for (rank, alpha, scaling) in [
        (4, 8.0, Scaling::RsLora),
        (3, 8.0, Scaling::RsLora),
        (5, 7.0, Scaling::RsLora),
        (4, 1.0, Scaling::Article),
        (3, 16.0, Scaling::Peft),
        (6, 0.3, Scaling::Peft),
    ] {
        let a = adapter(&model, targets.clone(), rank, alpha, scaling);
        let s = a.layers[0].scaling;
        let g_bytes = export_gguf_lora(&a, &cfg, "x").unwrap();
        let g = read_gguf(&g_bytes, "x.gguf").unwrap();
        let file_alpha = g.get_f32("adapter.lora.alpha").unwrap();
        assert_eq!((file_alpha / rank as f32).to_bits(), s.to_bits(), "{scaling:?} r {rank} α {alpha}: {file_alpha}");
        if scaling == Scaling::RsLora && rank == 4 {
            assert_eq!(file_alpha, 16.0, "rsLoRA α 8 at r 4: scaling 4, so llama.cpp's alpha is 16");
        }
    }
    // Every power-of-two rank divides back exactly; for other ranks an exact alpha exists for about nine
    // (scaling, rank) pairs in ten, and the nearest is never more than one f32 step off.
    let mut r = Rng::new(1, Stream::Replay);
    let (mut tried, mut inexact) = (0, 0);
    for _ in 0..2000 {
        let s = (r.uniform() * 8.0).exp2() / 16.0;
        for rank in 1..=64usize {
            let a = llama_cpp_alpha(s, rank);
            let back = a / rank as f32;
            tried += 1;
            if back != s {
                inexact += 1;
                assert!(!rank.is_power_of_two(), "s {s} r {rank}");
                assert!((back.to_bits() as i64 - s.to_bits() as i64).abs() <= 1, "s {s} r {rank}: {back}");
            }
        }
    }
    eprintln!("llama_cpp_alpha: {inexact} of {tried} (scaling, rank) pairs have no exact f32 alpha");
    assert!(inexact * 8 < tried, "{inexact} of {tried}");
}

#[test]
fn refuses_what_llama_cpp_cannot_load() {
    let model = smol_like(true);
    let cfg = model.cfg.clone();
    let setting = |e: LabError| match e {
        LabError::BadSetting { reason, .. } => reason,
        other => panic!("{other:?}"),
    };

    // Trained bias shifts: the file has no place for them.
    let mut a = adapter(&model, vec![cfg.module(0, Q)], 4, 8.0, Scaling::Peft);
    a.bias_shift[cfg.module(0, Q)] = Some(vec![0.1; cfg.q_dim()]);
    let r = setting(export_gguf_lora(&a, &cfg, "x").unwrap_err());
    assert!(r.contains("bias") && r.contains("model.layers.0.self_attn.q_proj"), "{r}");

    // lm_head tied to the embedding (SmolLM2's case): llama.cpp's converter refuses it too.
    let a = adapter(&model, vec![cfg.module(0, Q), cfg.lm_head()], 4, 8.0, Scaling::Peft);
    let r = setting(export_gguf_lora(&a, &cfg, "x").unwrap_err());
    assert!(r.contains("lm_head") && r.contains("tied"), "{r}");

    // PiSSA: the adapter adds to a residual base, not to the GGUF's.
    let cfg_p = LoraConfig { init: Init::Pissa, ..a.config.clone() };
    let cfg_p = LoraConfig { targets: vec![cfg.module(0, 4)], ..cfg_p };
    let p = Adapter::new("p", cfg_p, &model, 1).unwrap();
    let r = setting(export_gguf_lora(&p, &cfg, "x").unwrap_err());
    assert!(r.contains("PiSSA"), "{r}");

    // Layers that would need different alphas (llama.cpp has one per file, the rank per tensor).
    let mut a = adapter(&model, vec![cfg.module(0, Q), cfg.module(0, K)], 4, 8.0, Scaling::Peft);
    a.layers[1].scaling = 3.0;
    let r = setting(export_gguf_lora(&a, &cfg, "x").unwrap_err());
    assert!(r.contains("one alpha per file") && r.contains("k_proj"), "{r}");

    // An adapter made for another shape.
    let other = smol_like(false);
    let a = adapter(&other, vec![other.cfg.module(0, Q)], 4, 8.0, Scaling::Peft);
    let mut cfg2 = cfg.clone();
    cfg2.layers = 3;
    let r = setting(export_gguf_lora(&a, &cfg2, "x").unwrap_err());
    assert!(r.contains("another model"), "{r}");
}

#[test]
fn untied_lm_head_is_llama_cpp_output_weight() {
    let model = smol_like(false);
    let cfg = model.cfg.clone();
    let a = adapter(&model, vec![cfg.module(1, 3), cfg.lm_head()], 2, 4.0, Scaling::Peft);
    let bytes = export_gguf_lora(&a, &cfg, "x").unwrap();
    let g = read_gguf(&bytes, "x.gguf").unwrap();
    let names: Vec<&str> = g.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "blk.1.attn_output.weight.lora_a",
            "blk.1.attn_output.weight.lora_b",
            "output.weight.lora_a",
            "output.weight.lora_b"
        ]
    );
    let (a_dims, _) = tensor(&g, &bytes, "output.weight.lora_a");
    let (b_dims, fb) = tensor(&g, &bytes, "output.weight.lora_b");
    assert_eq!(a_dims, [cfg.hidden as u64, 2]);
    assert_eq!(b_dims, [2, cfg.vocab as u64]);
    assert_eq!(fb, a.layer(cfg.lm_head()).unwrap().lora_b);
}

/// llama-adapter.cpp's checks of one lora_a/lora_b pair against the base model's tensor (dims `ne`).
fn llama_cpp_accepts(base_ne: &[u64], a_ne: &[u64], b_ne: &[u64]) -> Result<(), String> {
    if base_ne[0] != a_ne[0] || base_ne[1] != b_ne[1] {
        return Err("has incorrect shape".into());
    }
    if a_ne[1] != b_ne[0] {
        return Err("lora_a tensor is not transposed".into());
    }
    Ok(())
}

#[test]
fn smollm2_seed_adapter_passes_llama_cpp_checks_against_the_real_base() {
    let file = common::smol_gguf();
    let p = lora_lab::lab::Pretrained::from_gguf(file.to_vec(), "smol.gguf", "").unwrap();
    let cfg = p.model.cfg.clone();
    // The seed recipe: r 32, α 32, PEFT scaling, q/k/v of every layer, dropout 0.05.
    let targets: Vec<usize> =
        (0..cfg.layers).flat_map(|l| [cfg.module(l, Q), cfg.module(l, K), cfg.module(l, 2)]).collect();
    let lc = LoraConfig {
        targets,
        rank: 32,
        alpha: 32.0,
        scaling: Scaling::Peft,
        dropout: 0.05,
        bias: Bias::None,
        init: Init::Default,
    };
    let mut a = Adapter::new("seed", lc, &p.model, 3).unwrap();
    let mut r = Rng::new(11, Stream::AdapterInit);
    for l in &mut a.layers {
        l.lora_b.iter_mut().for_each(|v| *v = 0.01 * r.normal());
    }
    let bytes = export_gguf_lora(&a, &cfg, "SmolLM2-135M-Instruct seed LoRA").unwrap();
    if let Ok(path) = std::env::var("GGUF_LORA_OUT") {
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!("wrote {path} ({} bytes)", bytes.len());
    }
    let g = read_gguf(&bytes, "lora.gguf").unwrap();
    let base = read_gguf(file, "smol.gguf").unwrap();
    assert_eq!(str_of(&g, "general.architecture"), str_of(&base, "general.architecture"), "llama.cpp: arch mismatch");
    assert_eq!(g.get_f32("adapter.lora.alpha").unwrap(), 32.0);
    assert_eq!(g.tensors.len(), 2 * 3 * cfg.layers);

    // Pair the tensors by suffix as llama-adapter.cpp does, and check each pair against the base.
    let mut pairs = 0;
    for t in &g.tensors {
        let Some(name) = t.name.strip_suffix(".lora_a") else {
            assert!(t.name.ends_with(".lora_b"), "llama.cpp refuses the suffix of {}", t.name);
            continue;
        };
        let b = g.tensor(&format!("{name}.lora_b")).unwrap();
        let w = base.tensor(name).unwrap_or_else(|_| panic!("{name} does not exist in the base model"));
        llama_cpp_accepts(&w.dims, &t.dims, &b.dims).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((t.ty, b.ty), (GgmlType::F32, GgmlType::F32));
        assert_eq!(b.dims[0], 32, "{name}: rank from lora_b.ne[0]");
        pairs += 1;
    }
    assert_eq!(pairs, 3 * cfg.layers);
    // SmolLM2's shapes, spelled out: q 576→576, k and v 576→192 (3 kv heads of 64).
    assert_eq!(g.tensor("blk.0.attn_k.weight.lora_a").unwrap().dims, [576, 32]);
    assert_eq!(g.tensor("blk.0.attn_k.weight.lora_b").unwrap().dims, [32, 192]);
    assert_eq!(base.tensor("blk.0.attn_k.weight").unwrap().dims, [576, 192]);
    assert_eq!(g.tensor("blk.29.attn_q.weight.lora_b").unwrap().dims, [32, 576]);

    // The direction of the row permutation on the real file: our q/k weights (HF order) are the
    // GGUF's rows taken at unpermute_rows, and the exported lora_b follows the GGUF's rows.
    for (j, heads) in [(Q, cfg.heads), (K, cfg.kv_heads())] {
        let name = format!("blk.3.{}.weight", NAMES[j]);
        let (i, t) = base.find_tensor(&name).unwrap();
        let (cols, rows) = cfg.module_shape(j);
        let w_gguf =
            GgmlWeight::from_blocks(t.ty, rows, cols, Blocks::Owned(base.tensor_bytes(file, i).unwrap().to_vec()))
                .unwrap()
                .dequantize();
        let perm = unpermute_rows(rows, heads);
        let w_ours = p.model.linear(cfg.module(3, j)).dense_weight().into_owned();
        assert_eq!(to_hf_rows(&w_gguf, cols, &perm), w_ours, "{name}: HF row r is GGUF row unpermute[r]");
        let l = a.layer(cfg.module(3, j)).unwrap();
        let (_, fb) = tensor(&g, &bytes, &format!("{name}.lora_b"));
        assert_eq!(to_hf_rows(&fb, 32, &perm), l.lora_b, "{name}: lora_b rows follow the base's");
    }

    // With GGUF_LORA_MERGED: llama.cpp's `llama-export-lora -m <SmolLM2 GGUF> --lora <GGUF_LORA_OUT>`
    // output (F16 weights), loaded by our GGUF loader (q/k un-permuted), is our base plus our ΔW in
    // every adapted Linear, to an f16 step: llama.cpp reads the file as we mean it.
    if let Ok(path) = std::env::var("GGUF_LORA_MERGED") {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let merged = lora_lab::lab::Pretrained::from_gguf(bytes, &path, "").unwrap().model;
        // How many q/k weights would miss had lora_B been written in HF's row order.
        let (mut unpermuted_misses, mut qk_weights) = (0usize, 0usize);
        for l in &a.layers {
            let (w, dw) = (p.model.linear(l.layer).dense_weight(), l.delta_weight());
            let got = merged.linear(l.layer).dense_weight();
            let tol = |x: f32| x.abs() * 2f32.powi(-10) + 2f32.powi(-24);
            for ((&w, &d), &g) in w.iter().zip(&dw).zip(got.iter()) {
                assert!(
                    (g - (w + d)).abs() <= tol(w + d),
                    "{}: llama.cpp merged {g}, ours {w} + {d}",
                    a.modules[l.layer].name
                );
            }
            if let Some(h) = heads_of(&cfg, l.layer % 7) {
                let wrong = to_hf_rows(&dw, l.in_features, &unpermute_rows(l.out_features, h));
                qk_weights += w.len();
                unpermuted_misses += w
                    .iter()
                    .zip(&wrong)
                    .zip(got.iter())
                    .filter(|((&w, &d), &g)| (g - (w + d)).abs() > tol(w + d))
                    .count();
            }
        }
        assert!(unpermuted_misses * 2 > qk_weights, "the check tells the row orders apart");
        eprintln!(
            "{path}: llama.cpp's merge is base + ΔW in all {} adapted Linears, to an f16 step (lora_B left in HF's row \
             order would miss {unpermuted_misses} of the {qk_weights} q/k weights)",
            a.layers.len()
        );
    } else {
        eprintln!("GGUF_LORA_MERGED not set: llama.cpp's merged model not compared");
    }
}

/// llama.cpp's LoRA GGUF read back (panel 7's upload of a `.gguf` adapter): the same factors, the q/k
/// rows in Hugging Face's order again, the same scaling, hence the same logits bit for bit.
#[test]
fn a_llama_cpp_lora_file_reads_back_as_the_same_adapter() {
    for (tied, scaling, alpha, rank) in
        [(true, Scaling::Peft, 8.0, 4), (false, Scaling::RsLora, 6.0, 4), (true, Scaling::Article, 0.75, 8)]
    {
        let model = smol_like(tied);
        let cfg = model.cfg.clone();
        let mut targets = all_projections(&cfg);
        if !tied {
            targets.push(cfg.lm_head());
        }
        let a = adapter(&model, targets, rank, alpha, scaling);
        let bytes = export_gguf_lora(&a, &cfg, "x").unwrap();
        let (config, safetensors) = gguf_lora_to_peft(&bytes, "x.gguf", &cfg).unwrap();
        let back = import_adapter("back", &safetensors, &config.to_json_pretty(), &model).unwrap();
        assert_eq!(back.layers.len(), a.layers.len());
        for (x, y) in a.layers.iter().zip(&back.layers) {
            assert_eq!(x.layer, y.layer);
            assert_eq!(x.lora_a, y.lora_a, "lora_A of module {}", x.layer);
            assert_eq!(x.lora_b, y.lora_b, "lora_B of module {} (q/k rows back in HF order)", x.layer);
            assert_eq!(x.scaling.to_bits(), y.scaling.to_bits(), "{scaling:?} α {alpha} r {rank}");
        }
        let ids: Vec<u32> = (0..12).map(|i| (i * 37 % 300) as u32).collect();
        let logits = |d: &mut Adapter| {
            let mut acts = LmActivations::for_inference();
            model.forward(&ids, 1, ids.len(), &mut acts, Some(d)).unwrap();
            acts.logits
        };
        let (mut a, mut back) = (a, back);
        assert_eq!(logits(&mut a), logits(&mut back));
    }
}

#[test]
fn a_gguf_that_is_not_a_fitting_lora_adapter_is_refused_by_name() {
    let model = smol_like(true);
    let cfg = model.cfg.clone();
    let a = adapter(&model, vec![cfg.module(0, Q), cfg.module(1, 6)], 4, 8.0, Scaling::Peft);
    let good = export_gguf_lora(&a, &cfg, "x").unwrap();
    let g = read_gguf(&good, "x.gguf").unwrap();
    // The file rewritten with one change: metadata `edit`, tensors kept or dropped by `keep`.
    type Metadata = Vec<(String, GgufValue)>;
    let rewrite = |edit: &dyn Fn(&mut Metadata), keep: &dyn Fn(&str) -> bool| {
        let mut meta = g.metadata.clone();
        edit(&mut meta);
        let data: Vec<GgufTensorData> = g.tensor_data(&good).unwrap().into_iter().filter(|t| keep(t.name)).collect();
        write_gguf(&meta, &data).unwrap()
    };
    let refused = |bytes: &[u8], cfg: &LmConfig| match gguf_lora_to_peft(bytes, "up.gguf", cfg).unwrap_err() {
        LabError::BadFile { file, reason } => {
            assert_eq!(file, "up.gguf");
            reason
        }
        other => panic!("{other:?}"),
    };
    let set = |key: &'static str, v: GgufValue| {
        move |m: &mut Metadata| m.iter_mut().filter(|(k, _)| k == key).for_each(|(_, x)| *x = v.clone())
    };
    let all = |_: &str| true;
    let r = refused(&rewrite(&set("general.type", GgufValue::String("model".into())), &all), &cfg);
    assert!(r.contains("general.type is \"model\""), "{r}");
    let r = refused(&rewrite(&set("adapter.type", GgufValue::String("control_vector".into())), &all), &cfg);
    assert!(r.contains("adapter.type is \"control_vector\""), "{r}");
    let r = refused(&rewrite(&set("general.architecture", GgufValue::String("qwen2".into())), &all), &cfg);
    assert!(r.contains("qwen2"), "{r}");
    let r = refused(&rewrite(&set("adapter.lora.alpha", GgufValue::F32(f32::NAN)), &all), &cfg);
    assert!(r.contains("adapter.lora.alpha"), "{r}");
    let r = refused(&rewrite(&|_| {}, &|n| n != "blk.1.ffn_down.weight.lora_b"), &cfg);
    assert!(r.contains("blk.1.ffn_down.weight.lora_b is missing"), "{r}");
    let r = refused(&rewrite(&|_| {}, &|n| !n.starts_with("blk.")), &cfg);
    assert!(r.contains("no LoRA tensors"), "{r}");
    // another model: fewer layers, or another width
    let small = LmConfig { layers: 1, ..cfg.clone() };
    let r = refused(&good, &small);
    assert!(r.contains("no Linear \"blk.1.ffn_down.weight\""), "{r}");
    let wide = LmConfig { intermediate: 48, ..cfg.clone() };
    let r = refused(&good, &wide);
    assert!(r.contains("blk.1.ffn_down.weight") && r.contains("needs [48, r]"), "{r}");
    // a model, not an adapter
    let r =
        refused(&write_gguf(&[("general.architecture".into(), GgufValue::String("llama".into()))], &[]).unwrap(), &cfg);
    assert!(r.contains("general.type is \"model\""), "{r}");
    // two ranks in one file
    let mut b = adapter(&model, vec![cfg.module(0, Q)], 2, 4.0, Scaling::Peft);
    b.name = "b".into();
    let other = export_gguf_lora(&b, &cfg, "y").unwrap();
    let go = read_gguf(&other, "y.gguf").unwrap();
    let mut data: Vec<GgufTensorData> =
        g.tensor_data(&good).unwrap().into_iter().filter(|t| !t.name.starts_with("blk.0.")).collect();
    data.extend(go.tensor_data(&other).unwrap());
    let r = refused(&write_gguf(&g.metadata, &data).unwrap(), &cfg);
    assert!(r.contains("rank") && r.contains("one rank per adapter"), "{r}");
}
