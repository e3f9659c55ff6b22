#![cfg(not(target_arch = "wasm32"))]
//! The language model's files: HF `config.json` ↔ `LmConfig` and `model.safetensors` ↔ `Llama`, on the
//! fixture transformers saved (tests/fixtures/lm/base/), round trips byte for byte, and one test per
//! way the files can be refused, each checking that the message names the file, the field or tensor,
//! and the value.

use std::collections::BTreeMap;

use lora_lab::io::{
    export_lm, import_lm, lm_tensors, parse_lm_config, read_safetensors, write_lm_config, write_safetensors, Tensor,
    LM_CONFIG_FILE, MODEL_FILE,
};
use lora_lab::lm::{Llama, LmConfig};
use lora_lab::rng::{Rng, Stream};
use serde_json::{json, Value};

const BASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lm/base");

fn fixture_config_json() -> String {
    std::fs::read_to_string(format!("{BASE}/config.json")).unwrap()
}

fn fixture_weights() -> Vec<u8> {
    std::fs::read(format!("{BASE}/model.safetensors")).unwrap()
}

/// tests/fixtures/lm/README.md: hidden 32, intermediate 48, 2 layers of 2 heads, 16 positions.
fn fixture_config() -> LmConfig {
    LmConfig { hidden: 32, intermediate: 48, layers: 2, heads: 2, head_dim: 16, context: 16, ..LmConfig::tiny() }
}

fn fixture_tensors() -> BTreeMap<String, Tensor> {
    read_safetensors(&fixture_weights(), MODEL_FILE).unwrap()
}

/// The fixture's config with `f` applied.
fn edited(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut v: Value = serde_json::from_str(&fixture_config_json()).unwrap();
    f(v.as_object_mut().unwrap());
    serde_json::to_string_pretty(&v).unwrap()
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in: {msg}");
    }
}

/// The message for a config that must be refused; it must start with `config.json: `.
fn cfg_err(json: &str) -> String {
    let msg = parse_lm_config(json).unwrap_err().to_string();
    assert!(msg.starts_with("config.json: "), "message does not start with the file name: {msg}");
    // The whole import gives the same answer, before the weights are read.
    assert_eq!(import_lm(json, &fixture_weights()).unwrap_err().to_string(), msg);
    msg
}

/// The message for weights that must be refused with the fixture's config.
fn weights_err(config: &str, bytes: &[u8]) -> String {
    let msg = import_lm(config, bytes).unwrap_err().to_string();
    assert!(msg.starts_with("model.safetensors: "), "message does not start with the file name: {msg}");
    msg
}

fn bits(model: &Llama) -> Vec<(String, Vec<u32>)> {
    model.params().into_iter().map(|(n, p)| (n, p.iter().map(|v| v.to_bits()).collect())).collect()
}

/// The fixture's tensors, edited, written again.
fn fixture_weights_with(f: impl FnOnce(&mut BTreeMap<String, Tensor>)) -> Vec<u8> {
    let mut map = fixture_tensors();
    f(&mut map);
    let tensors: Vec<(String, Vec<usize>, &[f32])> =
        map.iter().map(|(n, t)| (n.clone(), t.shape.clone(), t.data.as_slice())).collect();
    write_safetensors(&tensors, None).unwrap()
}

// ---------- the fixture ----------

#[test]
fn fixture_imports_with_the_files_tensors() {
    let model = import_lm(&fixture_config_json(), &fixture_weights()).unwrap();
    assert_eq!(model.cfg, fixture_config());
    let file = fixture_tensors();
    let params = model.params();
    assert_eq!(params.len(), 21);
    assert_eq!(params.len(), file.len());
    for ((name, p), (key, shape)) in params.iter().zip(lm_tensors(&model.cfg)) {
        assert_eq!(*name, key);
        let t = &file[name];
        assert_eq!(t.shape, shape, "{name}");
        assert_eq!(
            t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            p.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}"
        );
    }
    assert_eq!(model.num_params(), 34_464);
    assert_eq!(model.linears[model.cfg.lm_head()].weight, file["lm_head.weight"].data);
    assert_eq!(model.norms[1][1], file["model.layers.1.post_attention_layernorm.weight"].data);
}

#[test]
fn export_of_the_fixture_is_the_file_pytorch_wrote() {
    let model = import_lm(&fixture_config_json(), &fixture_weights()).unwrap();
    let (config, weights) = export_lm(&model).unwrap();
    // The safetensors crate under PyTorch's save_file writes the same header and layout as ours.
    assert!(weights == fixture_weights(), "model.safetensors differs from transformers' own");
    assert_eq!(parse_lm_config(&config).unwrap(), model.cfg);
    // The config: transformers' own, less the two fields we do not write, with the same values.
    let ours: Value = serde_json::from_str(&config).unwrap();
    let mut theirs: Value = serde_json::from_str(&fixture_config_json()).unwrap();
    let theirs_obj = theirs.as_object_mut().unwrap();
    assert_eq!(theirs_obj.remove("pretraining_tp"), Some(json!(1)));
    assert_eq!(theirs_obj.remove("transformers_version"), Some(json!("5.24.0")));
    assert_eq!(ours, theirs);
}

#[test]
fn export_import_round_trip_is_byte_for_byte() {
    let model = Llama::new(LmConfig { layers: 2, ..LmConfig::tiny() }, 5);
    let (config, weights) = export_lm(&model).unwrap();
    let again = import_lm(&config, &weights).unwrap();
    assert_eq!(again.cfg, model.cfg);
    assert_eq!(bits(&again), bits(&model));
    let (config2, weights2) = export_lm(&again).unwrap();
    assert_eq!(config2, config);
    assert!(weights2 == weights, "a second export differs");
    let (config3, weights3) = export_lm(&model).unwrap();
    assert_eq!(config3, config);
    assert!(weights3 == weights, "exporting twice differs");
}

#[test]
fn safetensors_carry_pytorchs_metadata_and_hf_keys() {
    let model = Llama::new(LmConfig { layers: 1, ..LmConfig::tiny() }, 1);
    let (_, weights) = export_lm(&model).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&weights).unwrap();
    let m = meta.metadata().as_ref().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m["format"], "pt");
    let map = read_safetensors(&weights, MODEL_FILE).unwrap();
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "lm_head.weight",
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.0.mlp.up_proj.weight",
            "model.layers.0.post_attention_layernorm.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.self_attn.o_proj.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.v_proj.weight",
            "model.norm.weight",
        ]
    );
    assert_eq!(map["model.layers.0.mlp.down_proj.weight"].shape, [128, 352]);
    assert_eq!(map["model.layers.0.mlp.up_proj.weight"].shape, [352, 128]);
    assert_eq!(map["lm_head.weight"].shape, [264, 128]);
    assert_eq!(map["model.embed_tokens.weight"].shape, [264, 128]);
}

// ---------- config.json as written ----------

#[test]
fn exported_config_of_the_tiny_model_has_every_field_of_the_design_note() {
    let text = write_lm_config(&LmConfig::tiny()).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let want = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 264,
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 32,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": false,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "pad_token_id": 258,
        "initializer_range": 0.02,
        "dtype": "float32",
        "attention_dropout": 0.0,
        "use_cache": true,
    });
    assert_eq!(v, want);
    // Written as transformers writes: sorted keys, 2-space indent, a final newline.
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let order: Vec<usize> =
        ["\"architectures\"", "\"attention_bias\"", "\"vocab_size\""].iter().map(|k| text.find(k).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "keys are not in sorted order in the text");
    assert!(text.starts_with("{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n"));
    assert!(text.contains("\"rope_parameters\": {\n    \"rope_theta\": 10000.0,\n    \"rope_type\": \"default\"\n  },"));
    assert!(text.contains("\"rms_norm_eps\": 0.00001,"), "serde_json writes 1e-5 so; Python writes 1e-05");
    assert!(text.ends_with("}\n"));
    assert_eq!(parse_lm_config(&text).unwrap(), LmConfig::tiny());
}

#[test]
fn config_round_trips_any_f32_exactly() {
    let mut rng = Rng::new(3, Stream::LmInit);
    // Any bit pattern in (4.7e-10, 0.5), [2, 2.1e6) and [0, 0.125), subnormals included.
    for _ in 0..5000 {
        let cfg = LmConfig {
            rms_norm_eps: f32::from_bits(0x3000_0001 + rng.below(0x0f00_0000)),
            rope_theta: f32::from_bits(0x4000_0000 + rng.below(0x0a00_0000)),
            init_std: f32::from_bits(rng.below(0x3e00_0000)),
            ..LmConfig::tiny()
        };
        let text = write_lm_config(&cfg).unwrap();
        let back = parse_lm_config(&text).unwrap();
        assert_eq!(
            (back.rms_norm_eps.to_bits(), back.rope_theta.to_bits(), back.init_std.to_bits()),
            (cfg.rms_norm_eps.to_bits(), cfg.rope_theta.to_bits(), cfg.init_std.to_bits()),
            "{text}"
        );
        assert_eq!(write_lm_config(&back).unwrap(), text);
    }
}

#[test]
fn export_refuses_what_import_would_refuse() {
    let bad = LmConfig { kv_group: 3, ..LmConfig::tiny() };
    let msg = write_lm_config(&bad).unwrap_err().to_string();
    assert_mentions(&msg, &["config.json:", "num_key_value_heads must divide num_attention_heads 4"]);
    let msg = write_lm_config(&LmConfig { init_std: -1.0, ..LmConfig::tiny() }).unwrap_err().to_string();
    assert_mentions(&msg, &["config.json: initializer_range must be a finite number ≥ 0, found -1"]);
    let mut model = Llama::new(LmConfig { layers: 1, ..LmConfig::tiny() }, 1);
    model.final_norm[7] = f32::NAN;
    let msg = export_lm(&model).unwrap_err().to_string();
    assert_mentions(&msg, &["model.norm.weight holds a non-finite value (NaN) at index 7"]);
}

// ---------- config.json as read ----------

#[test]
fn transformers_5_and_older_configs_both_load() {
    let t5 = parse_lm_config(&fixture_config_json()).unwrap();
    assert_eq!(t5, fixture_config());
    // transformers 4.x: rope_theta at the top, torch_dtype, rope_scaling null, no head_dim.
    let older = edited(|o| {
        o.remove("rope_parameters");
        o.remove("head_dim");
        let dtype = o.remove("dtype").unwrap();
        o.insert("torch_dtype".into(), dtype);
        o.insert("rope_theta".into(), json!(10000.0));
        o.insert("rope_scaling".into(), Value::Null);
        o.insert("transformers_version".into(), json!("4.46.3"));
    });
    assert!(!older.contains("rope_parameters") && older.contains("torch_dtype"));
    assert_eq!(parse_lm_config(&older).unwrap(), t5);
    assert_eq!(
        import_lm(&older, &fixture_weights()).unwrap(),
        import_lm(&fixture_config_json(), &fixture_weights()).unwrap()
    );
    // Both forms at once, agreeing; rope_type left out; integer θ.
    let both = edited(|o| {
        o.insert("rope_theta".into(), json!(10000));
        o.insert("torch_dtype".into(), json!("float32"));
        o["rope_parameters"] = json!({"rope_theta": 10000});
    });
    assert_eq!(parse_lm_config(&both).unwrap(), t5);
}

#[test]
fn optional_fields_take_llamaconfigs_defaults_and_unknown_fields_are_ignored() {
    let minimal = json!({
        "model_type": "llama", "vocab_size": 264, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 16,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 256, "eos_token_id": 257, "pad_token_id": 258,
    });
    assert_eq!(parse_lm_config(&minimal.to_string()).unwrap(), fixture_config());
    let with_nulls = edited(|o| {
        o.insert("num_key_value_heads".into(), Value::Null);
        o.insert("head_dim".into(), Value::Null);
        o.insert("architectures".into(), Value::Null);
        o.insert("quantization_config".into(), Value::Null);
        o.insert("rope_scaling".into(), Value::Null);
        o.insert("_name_or_path".into(), json!("base"));
        o.insert("something_new".into(), json!({"nested": [1, 2, "NaN, but in a string"]}));
        o.insert("attention_dropout".into(), json!(0.1));
        o.insert("use_cache".into(), json!("whatever"));
    });
    assert_eq!(parse_lm_config(&with_nulls).unwrap(), fixture_config());
    let custom = edited(|o| {
        o.insert("initializer_range".into(), json!(0.5));
        o.insert("rms_norm_eps".into(), json!(1e-6));
        o["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 500000.0});
    });
    let cfg = parse_lm_config(&custom).unwrap();
    assert_eq!((cfg.init_std, cfg.rms_norm_eps, cfg.rope_theta), (0.5, 1e-6, 500000.0));
}

#[test]
fn refuses_other_models() {
    let msg = cfg_err(&edited(|o| o["model_type"] = json!("mistral")));
    assert_mentions(&msg, &["model_type is \"mistral\"", "only \"llama\""]);
    let msg = cfg_err(&edited(|o| drop(o.remove("model_type"))));
    assert_mentions(&msg, &["model_type is missing"]);
    let msg = cfg_err(&edited(|o| o["architectures"] = json!(["LlamaModel"])));
    assert_mentions(&msg, &["architectures is [\"LlamaModel\"]", "expected [\"LlamaForCausalLM\"]"]);
    let msg = cfg_err(&edited(|o| o["architectures"] = json!("LlamaForCausalLM")));
    assert_mentions(&msg, &["architectures is \"LlamaForCausalLM\""]);
    let msg = cfg_err(&edited(|o| o["hidden_act"] = json!("gelu")));
    assert_mentions(&msg, &["hidden_act is \"gelu\"", "only \"silu\""]);
}

#[test]
fn refuses_biases() {
    let msg = cfg_err(&edited(|o| o["attention_bias"] = json!(true)));
    assert_mentions(&msg, &["attention_bias is true", "no bias"]);
    let msg = cfg_err(&edited(|o| o["mlp_bias"] = json!(true)));
    assert_mentions(&msg, &["mlp_bias is true", "no bias"]);
    let msg = cfg_err(&edited(|o| o["tie_word_embeddings"] = json!("yes")));
    assert_mentions(&msg, &["tie_word_embeddings must be true or false, found \"yes\""]);
}

#[test]
fn reads_and_writes_grouped_query_attention_and_tied_embeddings() {
    let cfg = parse_lm_config(&edited(|o| {
        o["num_key_value_heads"] = json!(1);
        o["tie_word_embeddings"] = json!(true);
    }))
    .unwrap();
    assert_eq!((cfg.kv_heads(), cfg.kv_group, cfg.tie_embeddings), (1, 2, true));
    assert_eq!((cfg.q_dim(), cfg.kv_dim()), (32, 16));
    assert_eq!(parse_lm_config(&write_lm_config(&cfg).unwrap()).unwrap(), cfg);
    // Tied: one matrix fewer; GQA: k and v are 32 → 16.
    assert_eq!(fixture_config().num_params() - cfg.num_params(), 264 * 32 + 2 * 2 * (32 * 16));
    let msg = cfg_err(&edited(|o| o["num_key_value_heads"] = json!(3)));
    assert_mentions(&msg, &["num_key_value_heads is 3, which does not divide num_attention_heads 2"]);
}

#[test]
fn refuses_rope_scaling() {
    let msg =
        cfg_err(&edited(|o| o["rope_parameters"] = json!({"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0})));
    assert_mentions(&msg, &["rope_parameters.", "rope scaling"]);
    let msg = cfg_err(&edited(|o| o["rope_parameters"] = json!({"rope_type": "llama3", "rope_theta": 1e4})));
    assert_mentions(&msg, &["rope_parameters.rope_type is \"llama3\"", "only \"default\""]);
    let msg =
        cfg_err(&edited(|o| o["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1e4, "factor": 8.0})));
    assert_mentions(&msg, &["rope_parameters.factor is set (8.0): rope scaling is not supported"]);
    let msg = cfg_err(&edited(|o| {
        o.insert("rope_scaling".into(), json!({"type": "dynamic", "factor": 2.0}));
    }));
    assert_mentions(&msg, &["rope_scaling.", "rope scaling"]);
    let msg = cfg_err(&edited(|o| o["rope_parameters"] = json!("default")));
    assert_mentions(&msg, &["rope_parameters must be an object or null, found \"default\""]);
    let msg = cfg_err(&edited(|o| {
        o.insert("rope_theta".into(), json!(500000.0));
    }));
    assert_mentions(&msg, &["rope_parameters.rope_theta 10000 and rope_theta 500000 disagree"]);
    let msg = cfg_err(&edited(|o| o["rope_parameters"] = json!({"rope_type": "default"})));
    assert_mentions(&msg, &["rope_theta is missing"]);
}

#[test]
fn refuses_dtypes_other_than_float32() {
    let msg = cfg_err(&edited(|o| o["dtype"] = json!("bfloat16")));
    assert_mentions(&msg, &["dtype is \"bfloat16\"", "only float32", "bf16/f16", "convert"]);
    let msg = cfg_err(&edited(|o| {
        o.remove("dtype");
        o.insert("torch_dtype".into(), json!("float16"));
    }));
    assert_mentions(&msg, &["torch_dtype is \"float16\"", "bf16/f16 ones first"]);
    let msg = cfg_err(&edited(|o| o["dtype"] = json!(32)));
    assert_mentions(&msg, &["dtype is 32"]);
}

#[test]
fn refuses_quantization_configs_it_cannot_compute() {
    // Incomplete, or 8-bit: refused naming the key, before the weights are read.
    let msg = cfg_err(&edited(|o| {
        o.insert("quantization_config".into(), json!({"quant_method": "bitsandbytes", "load_in_4bit": true}));
    }));
    assert_mentions(&msg, &["quantization_config.", "missing"]);
    let msg = cfg_err(&edited(|o| {
        let mut q = lora_lab::io::quantization_config(true);
        q["bnb_4bit_quant_type"] = json!("fp4");
        o.insert("quantization_config".into(), q);
    }));
    assert_mentions(&msg, &["quantization_config.bnb_4bit_quant_type is \"fp4\""]);
    // A 4-bit config over f32 weights: the weights are refused, naming the first Linear.
    let config = edited(|o| {
        o.insert("quantization_config".into(), lora_lab::io::quantization_config(false));
    });
    assert!(parse_lm_config(&config).is_ok());
    let msg = weights_err(&config, &fixture_weights());
    assert_mentions(&msg, &["model.layers.0.self_attn.q_proj.weight is F32", "not quantised"]);
}

#[test]
fn refuses_missing_required_fields() {
    for key in [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "max_position_embeddings",
        "rms_norm_eps",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ] {
        let msg = cfg_err(&edited(|o| drop(o.remove(key))));
        assert_mentions(&msg, &[&format!("config.json: {key} is missing")]);
    }
    let msg = cfg_err(&edited(|o| drop(o.remove("rope_parameters"))));
    assert_mentions(&msg, &["rope_theta is missing: give rope_parameters.rope_theta (transformers 5) or rope_theta"]);
}

#[test]
fn refuses_wrong_types() {
    let cases: [(&str, Value, &str); 11] = [
        ("hidden_size", json!("32"), "hidden_size must be a non-negative integer, found \"32\""),
        ("hidden_size", json!(32.0), "hidden_size must be a non-negative integer, found 32.0"),
        ("num_hidden_layers", json!(-1), "num_hidden_layers must be a non-negative integer, found -1"),
        ("vocab_size", Value::Null, "vocab_size must be a non-negative integer, found null"),
        ("head_dim", json!([16]), "head_dim must be a non-negative integer, found [16]"),
        ("num_key_value_heads", json!(true), "num_key_value_heads must be a non-negative integer, found true"),
        ("rms_norm_eps", json!("1e-5"), "rms_norm_eps must be a number, found \"1e-5\""),
        ("attention_bias", json!("false"), "attention_bias must be true or false, found \"false\""),
        ("eos_token_id", json!([257, 258]), "eos_token_id must be one non-negative integer, found [257,258]"),
        ("initializer_range", json!("0.02"), "initializer_range must be a number, found \"0.02\""),
        ("attention_dropout", json!(1.0), "attention_dropout must be a number in [0, 1), found 1"),
    ];
    for (key, value, want) in cases {
        let msg = cfg_err(&edited(|o| drop(o.insert(key.into(), value))));
        assert_mentions(&msg, &[want]);
    }
    assert_mentions(&cfg_err("[1, 2]"), &["expected a JSON object of LlamaConfig fields, found an array"]);
    assert_mentions(&cfg_err("{\"model_type\": \"llama\""), &["not valid JSON"]);
}

#[test]
fn refuses_non_finite_numbers() {
    let json = fixture_config_json().replace("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": NaN");
    assert_mentions(&cfg_err(&json), &["not valid JSON", "NaN/Infinity is not JSON"]);
    let json = fixture_config_json().replace("\"initializer_range\": 0.02", "\"initializer_range\": Infinity");
    assert_mentions(&cfg_err(&json), &["NaN/Infinity is not JSON"]);
    let json = fixture_config_json().replace("\"rope_theta\": 10000.0", "\"rope_theta\": 1e400");
    assert_mentions(&cfg_err(&json), &["not valid JSON"]);
    let msg = cfg_err(&edited(|o| o["rope_parameters"]["rope_theta"] = json!(1e39)));
    assert_mentions(&msg, &["rope_parameters.rope_theta is 1e+39, beyond the range of float32"]);
    let msg = cfg_err(&edited(|o| o["initializer_range"] = json!(-0.02)));
    assert_mentions(&msg, &["initializer_range must be a finite number ≥ 0, found -0.02"]);
}

#[test]
fn refuses_what_lmconfig_validate_refuses() {
    let cases: [(&str, Value, &str); 8] = [
        ("head_dim", json!(1), "head_dim is 1; this lab handles 2 to 256"),
        ("vocab_size", json!(300000), "vocab_size is 300000; this lab handles 1 to 262144"),
        ("num_hidden_layers", json!(0), "num_hidden_layers is 0; this lab handles 1 to 64"),
        ("num_attention_heads", json!(0), "num_attention_heads is 0; this lab handles 1 to 64"),
        ("pad_token_id", json!(300), "pad_token_id 300 is outside the vocabulary of 264"),
        ("bos_token_id", json!(70000), "bos_token_id 70000 is outside the vocabulary of 264"),
        ("rms_norm_eps", json!(0), "rms_norm_eps 0 is not in (0, 1)"),
        ("max_position_embeddings", json!(1), "max_position_embeddings is 1; this lab handles 2 to 131072"),
    ];
    for (key, value, want) in cases {
        let msg = cfg_err(&edited(|o| drop(o.insert(key.into(), value))));
        assert_mentions(&msg, &[want]);
    }
    let msg = cfg_err(&edited(|o| o["rope_parameters"]["rope_theta"] = json!(0.5)));
    assert_mentions(&msg, &["rope_theta 0.5 is not a number above 1"]);
    // Without head_dim, HF's hidden_size // num_attention_heads, then the same check.
    let msg = cfg_err(&edited(|o| {
        o.remove("head_dim");
        o["num_attention_heads"] = json!(6);
        o["num_key_value_heads"] = json!(6);
    }));
    assert_mentions(&msg, &["head_dim 5 is odd"]);
    let msg = cfg_err(&edited(|o| {
        o["hidden_size"] = json!(30);
        o["head_dim"] = json!(15);
    }));
    assert_mentions(&msg, &["head_dim 15 is odd"]);
}

// ---------- model.safetensors ----------

#[test]
fn refuses_a_config_whose_sizes_do_not_match_the_tensors() {
    // hidden 64 (4 heads of 16): every tensor but the layer count is off.
    let bigger = edited(|o| {
        o["hidden_size"] = json!(64);
        o["num_attention_heads"] = json!(4);
        o["num_key_value_heads"] = json!(4);
    });
    let msg = weights_err(&bigger, &fixture_weights());
    assert_mentions(
        &msg,
        &[
            "model.embed_tokens.weight has shape [264, 32], expected [264, 64]",
            "model.layers.0.input_layernorm.weight has shape [32], expected [64]",
            "model.layers.0.self_attn.q_proj.weight has shape [32, 32], expected [64, 64]",
            "model.layers.0.mlp.gate_proj.weight has shape [48, 32], expected [48, 64]",
            "and 13 more tensors of the wrong shape",
            "(the shapes follow from config.json)",
        ],
    );
    assert!(!msg.contains("missing") && !msg.contains("unexpected"), "{msg}");
    let msg = weights_err(&edited(|o| o["intermediate_size"] = json!(64)), &fixture_weights());
    assert_mentions(
        &msg,
        &[
            "model.layers.0.mlp.gate_proj.weight has shape [48, 32], expected [64, 32]",
            "model.layers.1.mlp.down_proj.weight has shape [32, 48], expected [32, 64]",
        ],
    );
    let msg = weights_err(&edited(|o| o["vocab_size"] = json!(300)), &fixture_weights());
    assert_mentions(&msg, &["lm_head.weight has shape [264, 32], expected [300, 32]"]);
    // More layers than the file: missing tensors; fewer: unexpected ones, with the config's count.
    let msg = weights_err(&edited(|o| o["num_hidden_layers"] = json!(3)), &fixture_weights());
    assert_mentions(
        &msg,
        &[
            "missing model.layers.2.input_layernorm.weight, model.layers.2.post_attention_layernorm.weight,",
            "and 1 more",
        ],
    );
    let msg = weights_err(&edited(|o| o["num_hidden_layers"] = json!(1)), &fixture_weights());
    assert_mentions(
        &msg,
        &["unexpected model.layers.1.input_layernorm.weight", "and 1 more", "(config.json says num_hidden_layers = 1)"],
    );
}

#[test]
fn refuses_a_missing_lm_head() {
    let bytes = fixture_weights_with(|m| drop(m.remove("lm_head.weight")));
    let msg = weights_err(&fixture_config_json(), &bytes);
    assert_mentions(
        &msg,
        &["missing lm_head.weight (tie_word_embeddings is false, so lm_head.weight must be in the file)"],
    );
    let bytes = fixture_weights_with(|m| drop(m.remove("model.layers.1.self_attn.v_proj.weight")));
    let msg = weights_err(&fixture_config_json(), &bytes);
    assert_eq!(msg, "model.safetensors: missing model.layers.1.self_attn.v_proj.weight");
}

#[test]
fn refuses_unexpected_tensors() {
    let bytes = fixture_weights_with(|m| {
        m.insert("model.layers.0.self_attn.rotary_emb.inv_freq".into(), Tensor { shape: vec![8], data: vec![1.0; 8] });
        m.insert("model.layers.0.self_attn.q_proj.bias".into(), Tensor { shape: vec![32], data: vec![0.0; 32] });
    });
    let msg = weights_err(&fixture_config_json(), &bytes);
    assert_eq!(
        msg,
        "model.safetensors: unexpected model.layers.0.self_attn.q_proj.bias, model.layers.0.self_attn.rotary_emb.inv_freq"
    );
    // Every problem at once.
    let bytes = fixture_weights_with(|m| {
        let t = m.remove("model.norm.weight").unwrap();
        m.insert("norm.weight".into(), t);
        m.get_mut("model.layers.0.self_attn.o_proj.weight").unwrap().shape = vec![16, 64];
    });
    let msg = weights_err(&fixture_config_json(), &bytes);
    assert_mentions(&msg, &["missing model.norm.weight; unexpected norm.weight; model.layers.0.self_attn.o_proj.weight has shape [16, 64], expected [32, 32]"]);
}

#[test]
fn refuses_non_finite_weights() {
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (f32::NEG_INFINITY, "-inf")] {
        let bytes = fixture_weights_with(|m| m.get_mut("model.layers.1.mlp.up_proj.weight").unwrap().data[1234] = bad);
        let msg = weights_err(&fixture_config_json(), &bytes);
        assert_eq!(
            msg,
            format!(
                "model.safetensors: model.layers.1.mlp.up_proj.weight holds a non-finite value ({shown}) at index 1234"
            )
        );
    }
}

#[test]
fn refuses_broken_safetensors_naming_model_safetensors() {
    let good = fixture_weights();
    let msg = weights_err(&fixture_config_json(), &good[..good.len() - 5]);
    assert_mentions(&msg, &["out of range", "truncated"]);
    let msg = weights_err(&fixture_config_json(), &good[..5]);
    assert_mentions(&msg, &["too short"]);
    let header = r#"{"lm_head.weight":{"dtype":"BF16","shape":[264,32],"data_offsets":[0,16896]}}"#;
    let mut f16 = (header.len() as u64).to_le_bytes().to_vec();
    f16.extend_from_slice(header.as_bytes());
    f16.extend(std::iter::repeat_n(0u8, 16896));
    let msg = weights_err(&fixture_config_json(), &f16);
    assert_mentions(&msg, &["tensor lm_head.weight has dtype BF16; only F32 is supported"]);
    // A config error is reported first, naming config.json, even with broken weights.
    let msg = import_lm(&edited(|o| o["dtype"] = json!("bfloat16")), &f16).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{LM_CONFIG_FILE}: dtype")), "{msg}");
}

#[test]
fn tensor_list_matches_the_models_parameters() {
    for cfg in [LmConfig::tiny(), fixture_config()] {
        let model = Llama::new(cfg.clone(), 2);
        let listed = lm_tensors(&cfg);
        assert_eq!(listed.len(), 2 + 9 * cfg.layers + 1);
        for ((name, p), (key, shape)) in model.params().iter().zip(&listed) {
            assert_eq!(name, key);
            assert_eq!(p.len(), shape.iter().product::<usize>(), "{name}");
        }
        assert_eq!(listed.iter().map(|(_, s)| s.iter().product::<usize>()).sum::<usize>(), cfg.num_params());
    }
}
