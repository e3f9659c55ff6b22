#![cfg(not(target_arch = "wasm32"))]
//! safetensors and adapter_config.json: round trips, hand-built files, and one test per way a file
//! can be wrong, each checking that the message says what is wrong and where.

use std::collections::{BTreeMap, HashMap};

use lora_lab::io::{
    expect_tensors, from_peft, parse_adapter_config, peft_alpha, read_safetensors, write_safetensors, AdapterConfig,
    Tensor,
};
use lora_lab::lora::targets::TargetModules;
use lora_lab::lora::{scaling_value, Bias, Scaling};

const FILE: &str = "adapter_model.safetensors";

/// A safetensors file from its parts: 8-byte little-endian header length, header, data.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The error message for a file that must be rejected; it must start with the file name.
fn read_err(bytes: &[u8]) -> String {
    let msg = read_safetensors(bytes, FILE).unwrap_err().to_string();
    assert!(msg.starts_with(FILE), "message does not start with the file name: {msg}");
    msg
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in: {msg}");
    }
}

// ---------- safetensors ----------

#[test]
fn round_trip_keeps_bits_and_shapes() {
    let w: Vec<f32> = vec![1.5, -0.0, f32::MIN_POSITIVE / 4.0, f32::MAX, -3.25, f32::NAN];
    let b: Vec<f32> = vec![0.1, 0.2];
    let scalar: Vec<f32> = vec![7.0];
    let empty: Vec<f32> = vec![];
    let tensors = vec![
        ("layers.5.weight".to_string(), vec![2, 3], w.as_slice()),
        ("layers.5.bias".to_string(), vec![2], b.as_slice()),
        ("scalar".to_string(), vec![], scalar.as_slice()),
        ("empty".to_string(), vec![0, 4], empty.as_slice()),
    ];
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = write_safetensors(&tensors, Some(meta)).unwrap();
    let map = read_safetensors(&bytes, FILE).unwrap();
    assert_eq!(map.len(), 4);
    for (name, shape, data) in &tensors {
        let t = &map[name];
        assert_eq!(&t.shape, shape, "{name}");
        let got: Vec<u32> = t.data.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u32> = data.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn write_rejects_data_that_does_not_fit_the_shape() {
    let d = [1.0f32, 2.0, 3.0];
    let msg = write_safetensors(&[("w".to_string(), vec![2, 2], &d[..])], None).unwrap_err().to_string();
    assert_mentions(&msg, &["w", "[2, 2]", "3 values"]);
    let twice = [("w".to_string(), vec![3], &d[..]), ("w".to_string(), vec![3], &d[..])];
    assert!(write_safetensors(&twice, None).unwrap_err().to_string().contains("twice"));
}

#[test]
fn hand_built_file_parses() {
    let header = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#;
    let bytes = raw(header, &f32_bytes(&[1.0, -2.0, 0.5]));
    let map = read_safetensors(&bytes, FILE).unwrap();
    assert_eq!(map["a"], Tensor { shape: vec![1, 2], data: vec![1.0, -2.0] });
    assert_eq!(map["b"], Tensor { shape: vec![1], data: vec![0.5] });
}

#[test]
fn header_padded_with_spaces_parses() {
    // The crate pads headers to 8 bytes with spaces; files from other writers may too.
    let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}     "#;
    let map = read_safetensors(&raw(header, &f32_bytes(&[3.0])), FILE).unwrap();
    assert_eq!(map["a"].data, vec![3.0]);
}

#[test]
fn file_shorter_than_8_bytes() {
    let msg = read_err(&[1, 2, 3]);
    assert_mentions(&msg, &["3 bytes", "too short"]);
}

#[test]
fn header_length_past_the_end_of_the_file() {
    let mut bytes = raw(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]);
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    let msg = read_err(&bytes);
    assert_mentions(&msg, &["header length 1000", "past the end"]);
}

#[test]
fn file_truncated_inside_the_header() {
    let d = [1.0f32; 4];
    let good = write_safetensors(&[("w".to_string(), vec![4], &d[..])], None).unwrap();
    let msg = read_err(&good[..20]);
    assert_mentions(&msg, &["past the end", "truncated"]);
}

#[test]
fn file_truncated_inside_the_data() {
    let d = [1.0f32; 4];
    let good = write_safetensors(&[("w".to_string(), vec![4], &d[..])], None).unwrap();
    let msg = read_err(&good[..good.len() - 3]);
    assert_mentions(&msg, &["tensor w", "[0, 16]", "out of range", "13 bytes", "truncated"]);
}

#[test]
fn header_that_is_not_json() {
    let msg = read_err(&raw("{not json", &[]));
    assert_mentions(&msg, &["not valid JSON"]);
}

#[test]
fn offsets_out_of_range() {
    let header = r#"{"a":{"dtype":"F32","shape":[200],"data_offsets":[0,800]}}"#;
    let msg = read_err(&raw(header, &[0; 8]));
    assert_mentions(&msg, &["tensor a", "[0, 800]", "out of range", "8 bytes"]);
}

#[test]
fn overlapping_offsets() {
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let msg = read_err(&raw(header, &[0; 12]));
    assert_mentions(&msg, &["a [0, 8]", "b [4, 12]", "overlap"]);
}

#[test]
fn non_contiguous_offsets() {
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#;
    let msg = read_err(&raw(header, &[0; 20]));
    assert_mentions(&msg, &["not contiguous", "4 bytes", "between a", "and b"]);

    let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let msg = read_err(&raw(header, &[0; 8]));
    assert_mentions(&msg, &["not contiguous", "begins at 4"]);

    let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let msg = read_err(&raw(header, &[0; 8]));
    assert_mentions(&msg, &["4 bytes of data after the last tensor"]);
}

#[test]
fn dtype_other_than_f32() {
    let header =
        r#"{"base_model.model.layers.5.lora_A.weight":{"dtype":"F16","shape":[4,256],"data_offsets":[0,2048]}}"#;
    let msg = read_err(&raw(header, &[0; 2048]));
    assert_mentions(&msg, &["base_model.model.layers.5.lora_A.weight", "F16", "only F32"]);
}

#[test]
fn data_length_that_disagrees_with_the_shape() {
    let header = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    let msg = read_err(&raw(header, &[0; 8]));
    assert_mentions(&msg, &["tensor a", "[3]", "12 bytes", "[0, 8]", "hold 8"]);
}

#[test]
fn malformed_header_entries() {
    let msg = read_err(&raw(r#"{"a":{"dtype":"F32","shape":[1]}}"#, &[0; 4]));
    assert_mentions(&msg, &["tensor a", "data_offsets"]);
    let msg = read_err(&raw(r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, &[0; 4]));
    assert_mentions(&msg, &["tensor a", "shape"]);
    let msg = read_err(&raw(r#"[1, 2]"#, &[]));
    assert_mentions(&msg, &["not a JSON object"]);
    let msg = read_err(&raw(r#"{"__metadata__":{"n":1}}"#, &[]));
    assert_mentions(&msg, &["__metadata__"]);
}

fn tensor(shape: &[usize]) -> Tensor {
    Tensor { shape: shape.to_vec(), data: vec![0.0; shape.iter().product()] }
}

#[test]
fn expect_tensors_accepts_the_right_set() {
    let map = BTreeMap::from([
        ("layers.5.weight".to_string(), tensor(&[10, 256])),
        ("layers.5.bias".to_string(), tensor(&[10])),
    ]);
    let expected: [(&str, &[usize]); 2] = [("layers.5.weight", &[10, 256]), ("layers.5.bias", &[10])];
    expect_tensors(&map, "model.safetensors", &expected, false).unwrap();
    expect_tensors(&map, "model.safetensors", &expected[..1], true).unwrap();
}

#[test]
fn expect_tensors_names_missing_unexpected_and_misshapen() {
    let map = BTreeMap::from([
        ("layers.5.weight".to_string(), tensor(&[10, 200])),
        ("layers.9.weight".to_string(), tensor(&[3])),
    ]);
    let expected: [(&str, &[usize]); 2] = [("layers.5.weight", &[10, 256]), ("layers.5.bias", &[10])];
    let msg = expect_tensors(&map, "model.safetensors", &expected, false).unwrap_err().to_string();
    assert!(msg.starts_with("model.safetensors"), "{msg}");
    assert_mentions(
        &msg,
        &[
            "missing layers.5.bias",
            "unexpected layers.9.weight",
            "layers.5.weight has shape [10, 200], expected [10, 256]",
        ],
    );
    // With extras allowed, only the real problems remain.
    let msg = expect_tensors(&map, "model.safetensors", &expected, true).unwrap_err().to_string();
    assert!(!msg.contains("unexpected"), "{msg}");
    assert_mentions(&msg, &["missing layers.5.bias", "has shape [10, 200]"]);
}

// ---------- adapter_config.json ----------

const CFG: &str = "adapter_config.json";
const MODULES: [(&str, usize, usize); 3] = [("layers.1", 784, 512), ("layers.3", 512, 256), ("layers.5", 256, 10)];

fn cfg_err(json: &str) -> String {
    let msg = parse_adapter_config(json, CFG, &MODULES).unwrap_err().to_string();
    assert!(msg.starts_with(CFG), "message does not start with the file name: {msg}");
    msg
}

/// A valid config with one field replaced by `field_json`.
fn with(key: &str, field_json: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(
        r#"{"peft_type":"LORA","r":4,"lora_alpha":4.0,"target_modules":["layers.5"],"lora_dropout":0.0,"bias":"none"}"#,
    )
    .unwrap();
    v[key] = serde_json::from_str(field_json).unwrap();
    v.to_string()
}

#[test]
fn config_round_trip() {
    let mut cfg =
        AdapterConfig::new(4, Scaling::Article, 1.0, TargetModules::Names(vec!["layers.5".into(), "layers.1".into()]));
    cfg.lora_dropout = 0.1;
    cfg.bias = Bias::LoraOnly;
    cfg.init_lora_weights = serde_json::json!("pissa");
    let text = cfg.to_json_pretty();
    assert_mentions(&text, &["\"peft_type\": \"LORA\"", "\"lora_alpha\": 4.0", "\"bias\": \"lora_only\""]);
    let back = parse_adapter_config(&text, CFG, &MODULES).unwrap();
    // Targets come back as full names in model order.
    cfg.target_modules = TargetModules::Names(vec!["layers.1".into(), "layers.5".into()]);
    assert_eq!(back, cfg);
}

#[test]
fn config_as_peft_writes_it() {
    // Shaped like PEFT 0.13's output, including fields we do not use.
    let json = r#"{
      "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": null, "bias": "none",
      "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
      "layer_replication": null, "layers_pattern": null, "layers_to_transform": null,
      "loftq_config": {}, "lora_alpha": 16, "lora_dropout": 0.05, "megatron_config": null,
      "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA", "r": 8,
      "rank_pattern": {}, "revision": null, "target_modules": ["5", "layers.3"], "task_type": null,
      "use_dora": false, "use_rslora": true
    }"#;
    let cfg = parse_adapter_config(json, CFG, &MODULES).unwrap();
    assert_eq!(cfg.r, 8);
    assert_eq!(cfg.lora_alpha, 16.0);
    assert_eq!(cfg.target_modules.names(), ["layers.3".to_string(), "layers.5".to_string()]);
    assert!(cfg.use_rslora && cfg.inference_mode);
    assert_eq!(cfg.lora_dropout, 0.05);
}

#[test]
fn config_missing_fields_take_peft_defaults() {
    let cfg = parse_adapter_config(r#"{"peft_type":"LORA","target_modules":"layers.5"}"#, CFG, &MODULES).unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha, cfg.lora_dropout), (8, 8.0, 0.0));
    assert_eq!(cfg.bias, Bias::None);
    assert!(!cfg.use_rslora && !cfg.fan_in_fan_out);
    assert_eq!(cfg.init_lora_weights, serde_json::json!(true));
    assert_eq!(cfg.target_modules.names(), ["layers.5".to_string()]);
}

#[test]
fn config_rejects_invalid_json() {
    assert_mentions(&cfg_err("{\"r\": 4,"), &["not valid JSON"]);
    assert_mentions(&cfg_err("[]"), &["JSON object"]);
}

#[test]
fn config_rejects_other_peft_types() {
    assert_mentions(&cfg_err(&with("peft_type", "\"LOHA\"")), &["peft_type", "LOHA", "LORA"]);
    let no_type = r#"{"r":4,"target_modules":["layers.5"]}"#;
    assert_mentions(&cfg_err(no_type), &["peft_type is missing"]);
}

#[test]
fn config_rejects_bad_ranks() {
    assert_mentions(&cfg_err(&with("r", "0")), &["r must be a positive integer", "found 0"]);
    assert_mentions(&cfg_err(&with("r", "-2")), &["positive integer", "-2"]);
    assert_mentions(&cfg_err(&with("r", "4.5")), &["positive integer", "4.5"]);
    assert_mentions(&cfg_err(&with("r", "\"4\"")), &["positive integer", "\"4\""]);
}

#[test]
fn config_rejects_rank_above_a_targeted_layer() {
    assert_mentions(&cfg_err(&with("r", "11")), &["r = 11", "min(in, out) = 10", "layers.5"]);
    // The same r is fine for a wider layer.
    let mut v: serde_json::Value = serde_json::from_str(&with("r", "11")).unwrap();
    v["target_modules"] = serde_json::json!(["layers.3"]);
    assert_eq!(parse_adapter_config(&v.to_string(), CFG, &MODULES).unwrap().r, 11);
}

#[test]
fn config_rejects_bad_alpha() {
    // Python's json module writes NaN for float('nan').
    let msg = cfg_err(&with("lora_alpha", "1").replace("\"lora_alpha\":1", "\"lora_alpha\":NaN"));
    assert_mentions(&msg, &["not valid JSON", "NaN", "finite"]);
    assert_mentions(&cfg_err(&with("lora_alpha", "0")), &["lora_alpha", "greater than 0", "found 0"]);
    assert_mentions(&cfg_err(&with("lora_alpha", "-1.5")), &["lora_alpha", "-1.5"]);
    assert_mentions(&cfg_err(&with("lora_alpha", "\"big\"")), &["lora_alpha", "\"big\""]);
    let huge = with("lora_alpha", "1").replace("\"lora_alpha\":1", "\"lora_alpha\":1e999");
    assert_mentions(&cfg_err(&huge), &["not valid JSON"]);
}

#[test]
fn config_rejects_dropout_outside_0_1() {
    assert_mentions(&cfg_err(&with("lora_dropout", "1.0")), &["lora_dropout", "[0, 1)", "1.0"]);
    assert_mentions(&cfg_err(&with("lora_dropout", "-0.1")), &["lora_dropout", "-0.1"]);
}

#[test]
fn config_rejects_unknown_or_empty_targets() {
    let msg = cfg_err(&with("target_modules", "[\"layers.7\"]"));
    assert_mentions(&msg, &["unknown target module \"layers.7\"", "layers.1, layers.3, layers.5"]);
    assert_mentions(&cfg_err(&with("target_modules", "[\"ayers.5\"]")), &["unknown target module"]);
    assert_mentions(&cfg_err(&with("target_modules", "[]")), &["target_modules", "empty"]);
    assert_mentions(&cfg_err(&with("target_modules", "null")), &["target_modules", "missing"]);
}

#[test]
fn config_rejects_unknown_bias() {
    assert_mentions(&cfg_err(&with("bias", "\"some\"")), &["bias", "none", "lora_only", "\"some\""]);
}

#[test]
fn config_rejects_fan_in_fan_out_and_unsupported_variants() {
    assert_mentions(&cfg_err(&with("fan_in_fan_out", "true")), &["fan_in_fan_out", "nn.Linear"]);
    assert_mentions(&cfg_err(&with("use_dora", "true")), &["DoRA"]);
    assert_mentions(&cfg_err(&with("rank_pattern", "{\"layers.5\": 2}")), &["rank_pattern"]);
    assert_mentions(&cfg_err(&with("use_rslora", "\"yes\"")), &["use_rslora must be true or false", "\"yes\""]);
    assert_mentions(&cfg_err(&with("target_modules", "[5]")), &["unreadable setting"]);
}

// ---------- the lora_alpha rule ----------

#[test]
fn scaling_rule_at_rank_4_alpha_1() {
    let (r, alpha) = (4, 1.0);
    assert_eq!(scaling_value(Scaling::Article, alpha, r), 1.0);
    assert_eq!(scaling_value(Scaling::Peft, alpha, r), 0.25);
    assert_eq!(scaling_value(Scaling::RsLora, alpha, r), 0.5);

    // Article: lora_alpha = α·r, and PEFT's lora_alpha / r gives α back.
    assert_eq!(peft_alpha(Scaling::Article, alpha, r), (4.0, false));
    assert_eq!(4.0 / r as f64, alpha);
    assert_eq!(peft_alpha(Scaling::Peft, alpha, r), (1.0, false));
    assert_eq!(peft_alpha(Scaling::RsLora, alpha, r), (1.0, true));
}

/// PEFT's own formula, written out as peft/tuners/lora/layer.py has it.
fn peft_scaling(lora_alpha: f64, use_rslora: bool, r: usize) -> f64 {
    if use_rslora {
        lora_alpha / (r as f64).sqrt()
    } else {
        lora_alpha / r as f64
    }
}

#[test]
fn peft_reproduces_our_scaling_and_from_peft_inverts_it() {
    for s in [Scaling::Article, Scaling::Peft, Scaling::RsLora] {
        for r in 1..=64 {
            for alpha in [1.0, 0.5, 2.0, 16.0, 32.0, 0.1, 0.3, 1.7, 3.0] {
                let ours = scaling_value(s, alpha, r);
                let (lora_alpha, use_rslora) = peft_alpha(s, alpha, r);
                let theirs = peft_scaling(lora_alpha, use_rslora, r);
                let (s2, alpha2) = from_peft(lora_alpha, use_rslora, r);
                assert_eq!(scaling_value(s2, alpha2, r), theirs);
                // Exact for α with a short binary expansion; within one ulp otherwise.
                let tol =
                    if [1.0, 0.5, 2.0, 16.0, 32.0, 3.0].contains(&alpha) { 0.0 } else { ours.abs() * f64::EPSILON };
                assert!((theirs - ours).abs() <= tol, "{s:?} r={r} α={alpha}: {theirs} vs {ours}");
            }
        }
    }
}

#[test]
fn scaling_names_in_json() {
    assert_eq!(serde_json::to_string(&Scaling::RsLora).unwrap(), "\"rslora\"");
    assert_eq!(serde_json::from_str::<Scaling>("\"article\"").unwrap(), Scaling::Article);
    assert_eq!(serde_json::from_str::<Scaling>("\"peft\"").unwrap(), Scaling::Peft);
}

#[test]
fn target_modules_as_one_string_is_a_regex_as_in_peft() {
    let parse = |t: &str| {
        let json = serde_json::json!({ "peft_type": "LORA", "r": 2, "target_modules": t }).to_string();
        parse_adapter_config(&json, CFG, &MODULES).map(|c| c.target_modules.names().to_vec())
    };
    // re.fullmatch: the whole name must match, so a bare suffix names nothing.
    let e = parse("5").unwrap_err().to_string();
    assert_mentions(&e, &[CFG, "target_modules \"5\" matches none", "layers.1, layers.3, layers.5"]);
    assert_eq!(parse(r"layers\.[35]").unwrap(), ["layers.3", "layers.5"]);
    assert_eq!(parse(".*").unwrap(), ["layers.1", "layers.3", "layers.5"]);
    // PEFT's shorthand: every Linear but the output layer.
    assert_eq!(parse("all-linear").unwrap(), ["layers.1", "layers.3"]);
    assert_mentions(&parse("layers.(").unwrap_err().to_string(), &["not a regular expression"]);
}
