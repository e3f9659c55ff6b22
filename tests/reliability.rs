//! Reliability: every bad setting and bad file is refused with a message that says what is wrong,
//! and leaves the lab exactly as it was; a cancelled run leaves a usable model; a non-finite loss
//! ends the run and keeps the last good weights; adapter training is deterministic across thread
//! counts; adapter gradients agree with finite differences for every init and scaling.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;

use lora_lab::io::{self, read_safetensors, write_safetensors, Tensor};
use lora_lab::lab::{AdapterSettings, BaseSettings, Lab};
use lora_lab::lora::{Adapter, Bias, Init, LoraConfig, Scaling};
use lora_lab::nn::{self, Activations, GradNeeds, Mlp, MlpGrads, CLASSES, INPUT, LAYER_NAMES};
use lora_lab::rng::{Rng, Stream};
use lora_lab::train::{BaseObjective, BaseState, Schedule, TrainConfig, Trainer};
use lora_lab::LabError;

mod common;
use common::{lab_with_mnist, mnist, new_lab};

// ---------- helpers ----------

/// Eight normalised inputs in [-1, 1]: enough to see any change of the model in its logits.
fn probe_inputs() -> Vec<f32> {
    let mut r = Rng::new(77, Stream::Replay);
    (0..8 * INPUT).map(|_| r.uniform_in(-1.0, 1.0)).collect()
}

fn random_base(seed: u64) -> Mlp {
    Mlp::new(&mut Rng::new(seed, Stream::BaseInit))
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in: {msg}");
    }
}

fn err<T: std::fmt::Debug>(r: lora_lab::Result<T>, what: &str) -> LabError {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e,
    }
}

fn is_setting(e: &LabError) -> bool {
    matches!(e, LabError::BadSetting { .. })
}

fn is_file(e: &LabError) -> bool {
    matches!(e, LabError::BadFile { .. })
}

/// Everything the page can observe of the lab, to compare before and after a refused request.
#[derive(PartialEq)]
struct Snapshot {
    training: bool,
    base: Option<Mlp>,
    adapters: String,
    /// (safetensors, config json) of every adapter in the list.
    adapter_files: Vec<(Vec<u8>, String)>,
    base_logits: Option<Vec<u32>>,
    adapted_logits: Option<Vec<u32>>,
}

fn snapshot(lab: &mut Lab) -> Snapshot {
    let inputs = probe_inputs();
    let list = lab.adapters();
    let adapter_files = list
        .list
        .iter()
        .map(|a| {
            let f = lab.export_adapter(&a.name).unwrap();
            (f.safetensors, f.config.to_json_pretty())
        })
        .collect();
    Snapshot {
        training: lab.is_training(),
        base: lab.base().cloned(),
        adapters: serde_json::to_string(&list).unwrap(),
        adapter_files,
        base_logits: lab.logits(&inputs, false).ok().map(|l| bits(&l)),
        adapted_logits: lab.logits(&inputs, true).ok().map(|l| bits(&l)),
    }
}

fn assert_unchanged(before: &Snapshot, after: &Snapshot, what: &str) {
    assert_eq!(before.training, after.training, "{what}: is_training changed");
    assert!(before.base == after.base, "{what}: the base model changed");
    assert_eq!(before.adapters, after.adapters, "{what}: the adapter list changed");
    assert!(before.adapter_files == after.adapter_files, "{what}: an adapter's weights or config changed");
    assert!(before.base_logits == after.base_logits, "{what}: the base logits changed");
    assert!(before.adapted_logits == after.adapted_logits, "{what}: the adapted logits changed");
}

/// A lab with a random base model and one imported adapter "keep" (active, non-trivial), no MNIST.
fn lab_with_model_and_adapter() -> (Lab, Mlp) {
    let base = random_base(5);
    let mut lab = new_lab();
    lab.import_model(&io::export_model(&base).unwrap()).unwrap();
    let cfg = LoraConfig {
        targets: vec![1, 2],
        rank: 3,
        alpha: 2.0,
        scaling: Scaling::Peft,
        dropout: 0.0,
        bias: Bias::LoraOnly,
        init: Init::Gaussian,
    };
    let mut a = Adapter::new("keep", cfg, &base, 9).unwrap();
    randomise_adapter(&mut a, 0.1, 4);
    let files = io::export_adapter(&a, &base).unwrap();
    lab.import_adapter("keep", &files.safetensors, &files.config.to_json_pretty(), None).unwrap();
    assert_eq!(lab.adapters().active.as_deref(), Some("keep"));
    (lab, base)
}

/// Small random lora_B and bias shifts, so the adapter changes the logits and its A gradient is not 0.
fn randomise_adapter(a: &mut Adapter, scale: f32, seed: u64) {
    let mut r = Rng::new(seed, Stream::Dropout);
    for l in &mut a.layers {
        l.lora_b.iter_mut().for_each(|v| *v = r.uniform_in(-scale, scale));
    }
    for s in a.bias_shift.iter_mut().flatten() {
        s.iter_mut().for_each(|v| *v = r.uniform_in(-scale, scale));
    }
}

fn run_to_end(lab: &mut Lab) -> Vec<f32> {
    let mut losses = vec![];
    loop {
        let p = lab.train_step(50).unwrap();
        losses.extend(p.losses);
        if p.done {
            return losses;
        }
    }
}

// ---------- bad settings ----------

/// Each bad adapter setting on a lab with MNIST, a base and an active adapter: refused, nothing changes.
#[test]
fn bad_adapter_settings_are_refused_before_any_work_starts() {
    let (lab0, _) = lab_with_model_and_adapter();
    let mut with_data = lab_with_mnist();
    with_data.import_model(&lab0.export_model().unwrap()).unwrap();
    let files = lab0.export_adapter("keep").unwrap();
    with_data.import_adapter("keep", &files.safetensors, &files.config.to_json_pretty(), None).unwrap();
    let mut lab = with_data;

    let s = |f: fn(&mut AdapterSettings)| {
        let mut s = AdapterSettings { epochs: Some(1.0), ..Default::default() };
        f(&mut s);
        s
    };
    let cases: Vec<(&str, AdapterSettings, Vec<&str>)> = vec![
        ("rank 0", s(|s| s.rank = Some(0.0)), vec!["invalid rank", "0 is not a whole number from 1"]),
        ("rank 11 on layers.5", s(|s| s.rank = Some(11.0)), vec!["invalid rank", "11", "1..=10", "layers.5"]),
        (
            "rank 257 on layers.3",
            s(|s| {
                s.rank = Some(257.0);
                s.targets = Some(vec!["layers.3".into()]);
            }),
            vec!["invalid rank", "257", "1..=256", "layers.3"],
        ),
        ("rank 2.5", s(|s| s.rank = Some(2.5)), vec!["invalid rank", "2.5", "not a whole number"]),
        ("lr 0", s(|s| s.lr = Some(0.0)), vec!["invalid learning rate", "0 is not in (0, 1]"]),
        ("lr -0.01", s(|s| s.lr = Some(-0.01)), vec!["invalid learning rate", "-0.01"]),
        ("lr NaN", s(|s| s.lr = Some(f64::NAN)), vec!["invalid learning rate", "NaN"]),
        ("lr +inf", s(|s| s.lr = Some(f64::INFINITY)), vec!["invalid learning rate", "inf"]),
        ("lr 1.5", s(|s| s.lr = Some(1.5)), vec!["invalid learning rate", "1.5"]),
        // Positive as f64 but 0 as the f32 the trainer uses.
        ("lr 1e-50", s(|s| s.lr = Some(1e-50)), vec!["invalid learning rate"]),
        ("epochs 0", s(|s| s.epochs = Some(0.0)), vec!["invalid epochs", "0 is not a whole number from 1 to 1000"]),
        ("epochs 2.5", s(|s| s.epochs = Some(2.5)), vec!["invalid epochs", "2.5 is not a whole number"]),
        ("epochs NaN", s(|s| s.epochs = Some(f64::NAN)), vec!["invalid epochs", "NaN"]),
        ("epochs 1001", s(|s| s.epochs = Some(1001.0)), vec!["invalid epochs", "1001"]),
        ("batch 0", s(|s| s.batch_size = Some(0.0)), vec!["invalid batch size", "0 is not a whole number from 1"]),
        ("batch -1", s(|s| s.batch_size = Some(-1.0)), vec!["invalid batch size", "-1"]),
        ("batch 64.5", s(|s| s.batch_size = Some(64.5)), vec!["invalid batch size", "64.5"]),
        (
            "batch larger than the 8–9 data",
            s(|s| s.batch_size = Some(60_000.0)),
            vec!["invalid batch size", "60000 is not between 1 and the 11800 training samples"],
        ),
        (
            "unknown target layers.2",
            s(|s| s.targets = Some(vec!["layers.2".into()])),
            vec!["invalid targets", "unknown layer \"layers.2\"", "layers.1, layers.3, layers.5"],
        ),
        (
            "a known and an unknown target",
            s(|s| s.targets = Some(vec!["layers.5".into(), "layers.0".into()])),
            vec!["invalid targets", "\"layers.0\""],
        ),
        ("no targets", s(|s| s.targets = Some(vec![])), vec!["invalid targets", "at least one"]),
        ("dropout 1.0", s(|s| s.dropout = Some(1.0)), vec!["invalid dropout", "1 is not in [0, 1)"]),
        ("dropout NaN", s(|s| s.dropout = Some(f64::NAN)), vec!["invalid dropout", "NaN is not in [0, 1)"]),
        ("dropout -0.1", s(|s| s.dropout = Some(-0.1)), vec!["invalid dropout", "-0.1"]),
        // Below 1 as f64, 1.0 as f32.
        ("dropout 0.99999999", s(|s| s.dropout = Some(0.999_999_99)), vec!["invalid dropout", "[0, 1)"]),
        ("replay 1.5", s(|s| s.replay = Some(1.5)), vec!["invalid replay", "1.5 is not a fraction from 0 to 1"]),
        ("replay NaN", s(|s| s.replay = Some(f64::NAN)), vec!["invalid replay", "NaN"]),
        ("replay -0.5", s(|s| s.replay = Some(-0.5)), vec!["invalid replay", "-0.5"]),
        ("alpha 0", s(|s| s.alpha = Some(0.0)), vec!["invalid alpha", "0 is not a number in (0, 1e6]"]),
        ("alpha NaN", s(|s| s.alpha = Some(f64::NAN)), vec!["invalid alpha", "NaN"]),
        ("alpha -inf", s(|s| s.alpha = Some(f64::NEG_INFINITY)), vec!["invalid alpha", "-inf"]),
        ("seed -1", s(|s| s.seed = Some(-1.0)), vec!["invalid seed", "-1"]),
        ("seed 0.5", s(|s| s.seed = Some(0.5)), vec!["invalid seed", "0.5"]),
        (
            "unknown preset",
            s(|s| s.preset = Some("paper".into())),
            vec!["invalid preset", "unknown preset \"paper\"", "\"article\""],
        ),
        ("empty name", s(|s| s.name = Some(String::new())), vec!["invalid name", "1–64 characters"]),
        ("blank name", s(|s| s.name = Some("   ".into())), vec!["invalid name", "1–64 characters"]),
        ("name with /", s(|s| s.name = Some("a/b".into())), vec!["invalid name", "\"a/b\"", "without / or \\"]),
        ("name with \\", s(|s| s.name = Some("a\\b".into())), vec!["invalid name", "without / or \\"]),
        ("name of 65 characters", s(|s| s.name = Some("x".repeat(65))), vec!["invalid name", "1–64"]),
    ];
    let before = snapshot(&mut lab);
    for (what, settings, parts) in &cases {
        let e = err(lab.start_adapter(settings), what);
        assert!(is_setting(&e), "{what}: expected a BadSetting, got {e:?}");
        assert_mentions(&e.to_string(), parts);
        assert_unchanged(&before, &snapshot(&mut lab), what);
    }
    // And the lab still trains: a good setting starts at once.
    lab.start_adapter(&AdapterSettings { epochs: Some(1.0), name: Some("ok".into()), ..Default::default() }).unwrap();
    assert!(lab.is_training());
    lab.train_step(2).unwrap();
    let (run, summary) = lab.finish_run(true).unwrap();
    assert_eq!((run.steps, summary.unwrap().name.as_str()), (2, "ok"));
}

#[test]
fn bad_base_settings_are_refused_before_any_work_starts() {
    let (lab0, _) = lab_with_model_and_adapter();
    let mut lab = lab_with_mnist();
    lab.import_model(&lab0.export_model().unwrap()).unwrap();
    let files = lab0.export_adapter("keep").unwrap();
    lab.import_adapter("keep", &files.safetensors, &files.config.to_json_pretty(), None).unwrap();

    let s = |f: fn(&mut BaseSettings)| {
        let mut s = BaseSettings { limit: Some(100.0), epochs: Some(1.0), ..Default::default() };
        f(&mut s);
        s
    };
    let cases: Vec<(&str, BaseSettings, Vec<&str>)> = vec![
        ("lr 0", s(|s| s.lr = Some(0.0)), vec!["invalid learning rate", "0 is not in (0, 1]"]),
        ("lr -1", s(|s| s.lr = Some(-1.0)), vec!["invalid learning rate", "-1"]),
        ("lr NaN", s(|s| s.lr = Some(f64::NAN)), vec!["invalid learning rate", "NaN"]),
        ("lr +inf", s(|s| s.lr = Some(f64::INFINITY)), vec!["invalid learning rate", "inf"]),
        ("lr 1e-50", s(|s| s.lr = Some(1e-50)), vec!["invalid learning rate"]),
        ("epochs 0", s(|s| s.epochs = Some(0.0)), vec!["invalid epochs", "0 is not a whole number from 1 to 1000"]),
        ("epochs 2.5", s(|s| s.epochs = Some(2.5)), vec!["invalid epochs", "2.5 is not a whole number"]),
        ("epochs +inf", s(|s| s.epochs = Some(f64::INFINITY)), vec!["invalid epochs", "inf"]),
        ("batch 0", s(|s| s.batch_size = Some(0.0)), vec!["invalid batch size", "0 is not a whole number from 1"]),
        (
            "batch 101 over 100 samples",
            s(|s| s.batch_size = Some(101.0)),
            vec!["invalid batch size", "101 is not between 1 and the 100 training samples"],
        ),
        ("limit 0", s(|s| s.limit = Some(0.0)), vec!["invalid limit", "0 is not a whole number from 1"]),
        ("limit 10.5", s(|s| s.limit = Some(10.5)), vec!["invalid limit", "10.5"]),
        ("limit NaN", s(|s| s.limit = Some(f64::NAN)), vec!["invalid limit", "NaN"]),
        ("seed 2^32", s(|s| s.seed = Some(4_294_967_296.0)), vec!["invalid seed", "4294967296"]),
    ];
    let before = snapshot(&mut lab);
    assert!(before.adapted_logits != before.base_logits, "the adapter must be visible in the logits");
    for (what, settings, parts) in &cases {
        let e = err(lab.start_base(settings), what);
        assert!(is_setting(&e), "{what}: expected a BadSetting, got {e:?}");
        assert_mentions(&e.to_string(), parts);
        assert_unchanged(&before, &snapshot(&mut lab), what);
    }
}

#[test]
fn training_an_adapter_without_a_base_model_is_refused() {
    let mut lab = lab_with_mnist();
    let before = snapshot(&mut lab);
    let e = err(lab.start_adapter(&AdapterSettings::default()), "adapter without a base");
    assert!(matches!(e, LabError::State(_)), "{e:?}");
    assert_mentions(&e.to_string(), &["no base model", "train or load one first"]);
    assert_unchanged(&before, &snapshot(&mut lab), "adapter without a base");
    assert!(lab.base().is_none() && lab.adapters().list.is_empty());
    // The preset too, and training without MNIST at all.
    err(lab.start_adapter(&AdapterSettings { preset: Some("article".into()), ..Default::default() }), "preset");
    let mut empty = new_lab();
    let e = err(empty.start_base(&BaseSettings::default()), "base without MNIST");
    assert_mentions(&e.to_string(), &["MNIST is not loaded"]);
    assert!(!empty.is_training());
    let e = err(empty.train_step(1), "step without a run");
    assert_mentions(&e.to_string(), &["MNIST is not loaded"]);
    let e = err(lab.train_step(1), "step without a run");
    assert_mentions(&e.to_string(), &["no training run in progress"]);
    let e = err(lab.finish(true), "finish without a run");
    assert_mentions(&e.to_string(), &["no training run in progress"]);
}

/// While a run is in progress every request that would change the model is refused, and the run
/// itself carries on where it was.
#[test]
fn requests_during_a_run_are_refused_and_the_run_carries_on() {
    let (lab0, _) = lab_with_model_and_adapter();
    let model = lab0.export_model().unwrap();
    let files = lab0.export_adapter("keep").unwrap();
    let config = files.config.to_json_pretty();
    let mut lab = lab_with_mnist();
    lab.import_model(&model).unwrap();
    lab.import_adapter("keep", &files.safetensors, &config, None).unwrap();
    let before = snapshot(&mut lab);

    lab.start_base(&BaseSettings { limit: Some(1000.0), epochs: Some(1.0), ..Default::default() }).unwrap();
    assert!(lab.is_training());
    assert_eq!(lab.train_step(2).unwrap().step, 2);
    let busy = |e: LabError, what: &str| {
        assert!(matches!(e, LabError::State(_)), "{what}: {e:?}");
        assert_mentions(&e.to_string(), &["a training run is in progress"]);
    };
    busy(err(lab.start_base(&BaseSettings::default()), "start_base twice"), "start_base twice");
    busy(err(lab.start_adapter(&AdapterSettings::default()), "start_adapter during a run"), "start_adapter");
    busy(err(lab.import_model(&model), "import_model during a run"), "import_model");
    busy(err(lab.import_adapter("x", &files.safetensors, &config, None), "import_adapter"), "import_adapter");
    busy(err(lab.merge("keep"), "merge"), "merge");
    busy(err(lab.unmerge("keep"), "unmerge"), "unmerge");
    busy(err(lab.set_active(None), "set_active"), "set_active");
    busy(err(lab.delete_adapter("keep"), "delete_adapter"), "delete_adapter");
    busy(err(lab.evaluate(), "evaluate"), "evaluate");
    // The page still sees the old model and adapters while the new base trains.
    let during = snapshot(&mut lab);
    assert!(during.training);
    assert!(during.base == before.base && during.adapters == before.adapters);
    assert!(during.adapted_logits == before.adapted_logits);
    // The run was not disturbed: it continues at step 3, and a mid-run evaluation works.
    let p = lab.train_step(1).unwrap();
    assert_eq!((p.step, p.losses.len()), (3, 1));
    assert!(lab.evaluate_current().unwrap().acc_0_7.is_finite());
    let summary = lab.finish(true).unwrap();
    assert_eq!(summary.steps, 3);
    assert!(!lab.is_training());
    assert!(lab.adapters().list.is_empty(), "a new base drops the adapters trained for the old one");
}

#[test]
fn classify_refuses_bad_pixels() {
    let (mut lab, _) = lab_with_model_and_adapter();
    let before = snapshot(&mut lab);
    let good = vec![0.0f64; INPUT];
    let mut cases: Vec<(&str, Vec<f64>, Vec<&str>)> = vec![
        ("783 pixels", vec![0.0; 783], vec!["invalid pixels", "783 values, expected 784"]),
        ("785 pixels", vec![0.0; 785], vec!["invalid pixels", "785 values"]),
        ("no pixels", vec![], vec!["invalid pixels", "0 values"]),
    ];
    for (what, v, msg) in [
        ("pixel 256", 256.0, "256 is not a value from 0 to 255"),
        ("pixel -1", -1.0, "-1 is not a value from 0 to 255"),
        ("pixel NaN", f64::NAN, "NaN is not a value from 0 to 255"),
        ("pixel inf", f64::INFINITY, "inf is not a value from 0 to 255"),
        ("pixel 255.6", 255.6, "255.6 is not a value"),
    ] {
        let mut p = good.clone();
        p[400] = v;
        cases.push((what, p, vec!["invalid pixels", msg]));
    }
    for (what, pixels, parts) in &cases {
        let e = err(lab.classify(pixels), what);
        assert!(is_setting(&e), "{what}: {e:?}");
        assert_mentions(&e.to_string(), parts);
        assert_unchanged(&before, &snapshot(&mut lab), what);
    }
    // The edges are accepted; probabilities are finite and sum to 1.
    let mut edge = good.clone();
    edge[0] = 255.0;
    edge[1] = -0.0;
    edge[2] = 254.5;
    let p = lab.classify(&edge).unwrap();
    for probs in [&p.base, p.adapted.as_ref().expect("an active adapter")] {
        assert!(probs.iter().all(|v| v.is_finite()));
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let e = err(new_lab().classify(&good), "classify without a model");
    assert_mentions(&e.to_string(), &["no base model"]);
}

// ---------- bad files ----------

/// The model file with one change made to its tensors.
fn model_with(base: &Mlp, change: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> Vec<u8> {
    let map = read_safetensors(&io::export_model(base).unwrap(), io::MODEL_FILE).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> =
        map.into_iter().map(|(n, Tensor { shape, data })| (n, shape, data)).collect();
    change(&mut tensors);
    let views: Vec<(String, Vec<usize>, &[f32])> =
        tensors.iter().map(|(n, s, d)| (n.clone(), s.clone(), &d[..])).collect();
    write_safetensors(&views, Some(HashMap::from([("format".to_string(), "pt".to_string())]))).unwrap()
}

/// A safetensors file from its parts: 8-byte little-endian header length, header, data.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn bad_model_files_change_nothing() {
    let (mut lab, base) = lab_with_model_and_adapter();
    let other = random_base(6);
    let good = io::export_model(&other).unwrap();
    let set = |name: &str, shape: Vec<usize>, data: Vec<f32>| {
        let name = name.to_string();
        move |t: &mut Vec<(String, Vec<usize>, Vec<f32>)>| {
            let e = t.iter_mut().find(|e| e.0 == name).unwrap();
            e.1 = shape;
            e.2 = data;
        }
    };
    let mut w3 = other.layers[1].weight.clone();
    w3[17] = f32::NAN;
    let mut b5 = other.layers[2].bias.clone();
    b5[9] = f32::INFINITY;

    // F16: a header naming all six tensors with their right shapes, 2 bytes a value.
    let shapes = [("layers.1", 784, 512), ("layers.3", 512, 256), ("layers.5", 256, 10)];
    let mut entries = vec![];
    let mut offset = 0;
    for (n, i, o) in shapes {
        for (suffix, shape, count) in [("weight", format!("[{o},{i}]"), o * i), ("bias", format!("[{o}]"), o)] {
            entries.push(format!(
                r#""{n}.{suffix}":{{"dtype":"F16","shape":{shape},"data_offsets":[{offset},{}]}}"#,
                offset + 2 * count
            ));
            offset += 2 * count;
        }
    }
    let f16 = raw(&format!("{{{}}}", entries.join(",")), &vec![0u8; offset]);

    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "layers.5.weight of [10, 200]",
            model_with(&other, set("layers.5.weight", vec![10, 200], vec![0.01; 2000])),
            vec!["model.safetensors", "layers.5.weight has shape [10, 200], expected [10, 256]"],
        ),
        (
            "layers.1.weight transposed",
            model_with(&other, set("layers.1.weight", vec![784, 512], other.layers[0].weight.clone())),
            vec!["layers.1.weight has shape [784, 512], expected [512, 784]"],
        ),
        (
            "truncated by 100 bytes",
            good[..good.len() - 100].to_vec(),
            vec!["model.safetensors", "out of range", "truncated"],
        ),
        ("truncated to half", good[..good.len() / 2].to_vec(), vec!["model.safetensors", "truncated"]),
        ("truncated in the header", good[..40].to_vec(), vec!["model.safetensors", "past the end"]),
        ("4 bytes", good[..4].to_vec(), vec!["model.safetensors", "too short"]),
        ("empty", vec![], vec!["model.safetensors", "0 bytes", "too short"]),
        ("not safetensors at all", b"PK\x03\x04 this is a zip file, not weights".to_vec(), vec!["model.safetensors"]),
        (
            "a NaN weight",
            model_with(&other, set("layers.3.weight", vec![256, 512], w3)),
            vec!["layers.3.weight holds a non-finite value (NaN) at index 17"],
        ),
        (
            "an infinite bias",
            model_with(&other, set("layers.5.bias", vec![10], b5)),
            vec!["layers.5.bias holds a non-finite value (inf) at index 9"],
        ),
        ("F16 weights", f16, vec!["model.safetensors", "dtype F16", "only F32 is supported"]),
        ("a missing bias", model_with(&other, |t| t.retain(|e| e.0 != "layers.3.bias")), vec!["missing layers.3.bias"]),
        (
            "an extra layer",
            model_with(&other, |t| t.push(("layers.7.weight".into(), vec![2, 2], vec![0.0; 4]))),
            vec!["unexpected layers.7.weight"],
        ),
        (
            "PEFT prefixes",
            model_with(&other, |t| t.iter_mut().for_each(|e| e.0 = format!("base_model.model.{}", e.0))),
            vec!["missing layers.1.weight", "unexpected ", "base_model.model.layers.1.weight"],
        ),
    ];
    let before = snapshot(&mut lab);
    assert_eq!(lab.base(), Some(&base));
    for (what, bytes, parts) in &cases {
        let e = err(lab.import_model(bytes), what);
        assert!(is_file(&e), "{what}: expected a BadFile, got {e:?}");
        assert_mentions(&e.to_string(), parts);
        assert_unchanged(&before, &snapshot(&mut lab), what);
    }
    // The good file still loads, replaces the base and drops the adapters.
    assert_eq!(lab.import_model(&good).unwrap(), 535_818);
    assert_eq!(lab.base(), Some(&other));
    assert!(lab.adapters().list.is_empty());
}

/// A tensor as a test edits it: name, shape, values.
type NamedTensor = (String, Vec<usize>, Vec<f32>);
/// `adapter_model.safetensors` bytes and `adapter_config.json` text.
type AdapterFiles = (Vec<u8>, String);

/// The adapter files of `adapter`, with its config as a JSON value and its tensors as a list.
struct AdapterParts {
    config: serde_json::Value,
    tensors: Vec<NamedTensor>,
}

impl AdapterParts {
    fn of(adapter: &Adapter, base: &Mlp) -> Self {
        let files = io::export_adapter(adapter, base).unwrap();
        let config = serde_json::from_str(&files.config.to_json_pretty()).unwrap();
        let map = read_safetensors(&files.safetensors, io::ADAPTER_FILE).unwrap();
        let tensors = map.into_iter().map(|(n, Tensor { shape, data })| (n, shape, data)).collect();
        Self { config, tensors }
    }
    fn safetensors(&self) -> Vec<u8> {
        let views: Vec<(String, Vec<usize>, &[f32])> =
            self.tensors.iter().map(|(n, s, d)| (n.clone(), s.clone(), &d[..])).collect();
        write_safetensors(&views, None).unwrap()
    }
    fn config_json(&self) -> String {
        self.config.to_string()
    }
}

#[test]
fn bad_adapter_files_change_nothing() {
    let (mut lab, base) = lab_with_model_and_adapter();
    // A second adapter for the same base, on layers.5 (r 4) with its bias: the one we break.
    let cfg = LoraConfig {
        targets: vec![2],
        rank: 4,
        alpha: 1.0,
        scaling: Scaling::Article,
        dropout: 0.0,
        bias: Bias::LoraOnly,
        init: Init::Svd,
    };
    let a = Adapter::new("new", cfg, &base, 3).unwrap();
    let good = AdapterParts::of(&a, &base);
    // The good files load (into a copy), so every failure below is the one change made.
    {
        let (mut copy, _) = lab_with_model_and_adapter();
        copy.import_adapter("new", &good.safetensors(), &good.config_json(), None).unwrap();
    }
    let with_cfg = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good.config.clone();
        f(&mut c);
        (good.safetensors(), c.to_string())
    };
    let with_tensors = |f: &dyn Fn(&mut Vec<NamedTensor>)| {
        let mut t = AdapterParts { config: good.config.clone(), tensors: good.tensors.clone() };
        f(&mut t.tensors);
        (t.safetensors(), good.config_json())
    };
    let lora_a = "base_model.model.layers.5.lora_A.weight";
    let lora_b = "base_model.model.layers.5.lora_B.weight";
    let bias = "base_model.model.layers.5.bias";
    let good_json = good.config_json();
    assert!(good_json.contains("\"lora_alpha\":4.0"), "{good_json}");
    let cases: Vec<(&str, AdapterFiles, Vec<&str>)> = vec![
        (
            "target layers.7",
            with_cfg(&|c: &mut serde_json::Value| c["target_modules"] = serde_json::json!(["layers.7"])),
            vec!["adapter_config.json", "unknown target module \"layers.7\"", "layers.1, layers.3, layers.5"],
        ),
        (
            "r = 0",
            with_cfg(&|c: &mut serde_json::Value| c["r"] = 0.into()),
            vec!["adapter_config.json", "r must be a positive integer, found 0"],
        ),
        (
            "r = -4",
            with_cfg(&|c: &mut serde_json::Value| c["r"] = (-4).into()),
            vec!["adapter_config.json", "r must be a positive integer, found -4"],
        ),
        (
            "r = 11 on layers.5",
            with_cfg(&|c: &mut serde_json::Value| c["r"] = 11.into()),
            vec!["adapter_config.json", "r = 11 is larger than min(in, out) = 10 of layers.5"],
        ),
        (
            "lora_alpha \"NaN\" as a string",
            with_cfg(&|c: &mut serde_json::Value| c["lora_alpha"] = "NaN".into()),
            vec!["adapter_config.json", "lora_alpha must be a finite number greater than 0, found \"NaN\""],
        ),
        (
            // serde_json does not turn 1e400 into inf: it refuses the number as out of range.
            "lora_alpha 1e400",
            (good.safetensors(), good_json.replace("\"lora_alpha\":4.0", "\"lora_alpha\":1e400")),
            vec!["adapter_config.json", "not valid JSON", "out of range"],
        ),
        (
            "lora_alpha bare NaN (Python's json.dump)",
            (good.safetensors(), good_json.replace("\"lora_alpha\":4.0", "\"lora_alpha\":NaN")),
            vec!["adapter_config.json", "not valid JSON", "NaN/Infinity is not JSON"],
        ),
        (
            "lora_alpha Infinity",
            (good.safetensors(), good_json.replace("\"lora_alpha\":4.0", "\"lora_alpha\":Infinity")),
            vec!["adapter_config.json", "not valid JSON", "finite"],
        ),
        (
            "lora_alpha 0",
            with_cfg(&|c: &mut serde_json::Value| c["lora_alpha"] = 0.into()),
            vec!["lora_alpha", "greater than 0", "found 0"],
        ),
        (
            "lora_dropout 1",
            with_cfg(&|c: &mut serde_json::Value| c["lora_dropout"] = 1.0.into()),
            vec!["lora_dropout", "[0, 1)"],
        ),
        (
            "bias \"some\"",
            with_cfg(&|c: &mut serde_json::Value| c["bias"] = "some".into()),
            vec!["bias must be", "\"some\""],
        ),
        (
            "peft_type IA3",
            with_cfg(&|c: &mut serde_json::Value| c["peft_type"] = "IA3".into()),
            vec!["peft_type", "only \"LORA\""],
        ),
        (
            "use_dora",
            with_cfg(&|c: &mut serde_json::Value| c["use_dora"] = true.into()),
            vec!["use_dora", "not supported"],
        ),
        ("not JSON", (good.safetensors(), "{\"r\": 4".into()), vec!["adapter_config.json", "not valid JSON"]),
        (
            "lora_A of the wrong shape",
            with_tensors(&|t| {
                let e = t.iter_mut().find(|e| e.0 == lora_a).unwrap();
                e.1 = vec![4, 200];
                e.2 = vec![0.01; 800];
            }),
            vec!["adapter_model.safetensors", "layers.5.lora_A.weight has shape [4, 200], expected [4, 256]"],
        ),
        (
            "lora_B transposed",
            with_tensors(&|t| t.iter_mut().find(|e| e.0 == lora_b).unwrap().1 = vec![4, 10]),
            vec!["layers.5.lora_B.weight has shape [4, 10], expected [10, 4]"],
        ),
        (
            "lora_B missing",
            with_tensors(&|t| t.retain(|e| e.0 != lora_b)),
            vec!["adapter_model.safetensors", "missing base_model.model.layers.5.lora_B.weight"],
        ),
        (
            "the bias missing",
            with_tensors(&|t| t.retain(|e| e.0 != bias)),
            vec!["missing base_model.model.layers.5.bias"],
        ),
        (
            "an unexpected lora_A for layers.3",
            with_tensors(&|t| {
                t.push(("base_model.model.layers.3.lora_A.weight".into(), vec![4, 512], vec![0.0; 2048]))
            }),
            vec!["unexpected base_model.model.layers.3.lora_A.weight"],
        ),
        (
            "keys without PEFT's prefix",
            with_tensors(&|t| t.iter_mut().for_each(|e| e.0 = e.0.replace("base_model.model.", ""))),
            vec!["missing base_model.model.layers.5.lora_A.weight", "unexpected ", ", layers.5.lora_A.weight"],
        ),
        (
            "a NaN in lora_A",
            with_tensors(&|t| t.iter_mut().find(|e| e.0 == lora_a).unwrap().2[5] = f32::NAN),
            vec!["layers.5.lora_A.weight holds a non-finite value (NaN) at index 5"],
        ),
        (
            "truncated safetensors",
            {
                let b = good.safetensors();
                (b[..b.len() - 8].to_vec(), good_json.clone())
            },
            vec!["adapter_model.safetensors", "truncated"],
        ),
    ];
    let before = snapshot(&mut lab);
    for (what, (st, json), parts) in &cases {
        let e = err(lab.import_adapter("new", st, json, None), what);
        assert!(is_file(&e), "{what}: expected a BadFile, got {e:?}");
        assert_mentions(&e.to_string(), parts);
        assert_unchanged(&before, &snapshot(&mut lab), what);
        // Nor may a failed import replace an adapter of the same name.
        let e2 = err(lab.import_adapter("keep", st, json, None), what);
        assert_eq!(e2, e, "{what}: the message does not depend on the name");
        assert_unchanged(&before, &snapshot(&mut lab), what);
    }
    // Bad names, with good files.
    for name in ["", "  ", "a/b", "..\\x"] {
        let e = err(lab.import_adapter(name, &good.safetensors(), &good_json, None), name);
        assert!(is_setting(&e), "{name:?}: {e:?}");
        assert_mentions(&e.to_string(), &["invalid name"]);
        assert_unchanged(&before, &snapshot(&mut lab), name);
    }
    // No base model: nothing to attach an adapter to.
    let mut empty = new_lab();
    let e = err(empty.import_adapter("new", &good.safetensors(), &good_json, None), "no base");
    assert_mentions(&e.to_string(), &["no base model"]);
    assert!(empty.adapters().list.is_empty());
}

/// A PiSSA adapter comes with its residual base; a residual that is not base − rank-r change is
/// refused after the adapter files themselves were accepted, and still nothing changes.
#[test]
fn bad_pissa_residual_changes_nothing() {
    let (mut lab, base) = lab_with_model_and_adapter();
    let cfg = LoraConfig {
        targets: vec![1],
        rank: 2,
        alpha: 4.0,
        scaling: Scaling::Peft,
        dropout: 0.0,
        bias: Bias::None,
        init: Init::Pissa,
    };
    let a = Adapter::new("pissa", cfg, &base, 3).unwrap();
    let files = io::export_adapter(&a, &base).unwrap();
    let residual = files.base_model.clone().expect("PiSSA exports its residual base");
    let config = files.config.to_json_pretty();
    let res = io::import_model(&residual).unwrap();

    let mut bias_changed = res.clone();
    bias_changed.layers[1].bias[3] += 0.5;
    let mut other_layer = res.clone();
    other_layer.layers[0].weight[10] += 0.5;
    let mut full_rank = res.clone();
    let mut r = Rng::new(1, Stream::Replay);
    full_rank.layers[1].weight.iter_mut().for_each(|w| *w += r.uniform_in(-0.05, 0.05));
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "a changed bias",
            io::export_model(&bias_changed).unwrap(),
            vec!["model.safetensors", "layers.3 differs from the current base model"],
        ),
        (
            "a changed unadapted layer",
            io::export_model(&other_layer).unwrap(),
            vec!["layers.1 differs from the current base model"],
        ),
        (
            "a full-rank change",
            io::export_model(&full_rank).unwrap(),
            vec!["layers.3 differs from the current base by more than a rank-2 change"],
        ),
        ("a truncated residual", residual[..residual.len() - 4].to_vec(), vec!["model.safetensors", "truncated"]),
    ];
    let before = snapshot(&mut lab);
    for (what, bytes, parts) in &cases {
        let e = err(lab.import_adapter("pissa", &files.safetensors, &config, Some(bytes)), what);
        assert!(is_file(&e), "{what}: {e:?}");
        assert_mentions(&e.to_string(), parts);
        assert_unchanged(&before, &snapshot(&mut lab), what);
    }
    // The real residual loads, and the adapter is a no-op at init, as PiSSA promises.
    lab.import_adapter("pissa", &files.safetensors, &config, Some(&residual)).unwrap();
    let inputs = probe_inputs();
    let base_logits = lab.logits(&inputs, false).unwrap();
    let adapted = lab.logits(&inputs, true).unwrap();
    let worst = base_logits.iter().zip(&adapted).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "PiSSA at init changes the logits by {worst}");
}

// ---------- cancel ----------

#[test]
fn cancelling_mid_epoch_leaves_a_usable_consistent_model() {
    let mut lab = lab_with_mnist();
    lab.start_base(&BaseSettings { limit: Some(3000.0), ..Default::default() }).unwrap();
    let p1 = lab.train_step(5).unwrap();
    let p2 = lab.train_step(5).unwrap();
    assert_eq!((p1.step, p2.step), (5, 10));
    assert!(!p2.epoch_finished && !p2.done, "10 batches of 64 are well inside the 47-batch epoch");
    let summary = lab.finish(true).unwrap();
    assert!(summary.cancelled);
    assert_eq!(summary.steps, 10);
    assert!(!lab.is_training());

    let eval = lab.evaluate().unwrap();
    for acc in [eval.base.acc_0_7, eval.base.acc_8_9, eval.base.acc_all] {
        assert!(acc.is_finite() && (0.0..=1.0).contains(&acc), "accuracy {acc}");
    }
    assert!(eval.base.per_class.iter().all(|a| a.is_finite()));
    assert!(eval.base.acc_0_7 > 0.3, "10 steps of Adam already beat chance: {}", eval.base.acc_0_7);
    assert_eq!(eval.base.confusion.iter().flatten().map(|&c| c as usize).sum::<usize>(), 10_000);
    assert!(lab.base().unwrap().params().iter().all(|p| p.iter().all(|v| v.is_finite())));

    // Export → import gives the same model, bit for bit.
    let inputs = probe_inputs();
    let logits = lab.logits(&inputs, false).unwrap();
    let bytes = lab.export_model().unwrap();
    let mut fresh = new_lab();
    fresh.import_model(&bytes).unwrap();
    assert_eq!(bits(&fresh.logits(&inputs, false).unwrap()), bits(&logits));
    assert_eq!(fresh.export_model().unwrap(), bytes);
    lab.import_model(&bytes).unwrap();
    assert_eq!(bits(&lab.logits(&inputs, false).unwrap()), bits(&logits));

    // The same 10 steps, run again and cancelled, give the same weights: cancel loses nothing.
    let mut again = lab_with_mnist();
    again.start_base(&BaseSettings { limit: Some(3000.0), ..Default::default() }).unwrap();
    again.train_step(10).unwrap();
    again.finish(true).unwrap();
    assert_eq!(again.export_model().unwrap(), bytes);

    // A new run can start, on the base and on an adapter, and finish.
    lab.start_base(&BaseSettings { limit: Some(3000.0), epochs: Some(1.0), ..Default::default() }).unwrap();
    lab.train_step(3).unwrap();
    assert_eq!(lab.finish(false).unwrap().steps, 3);
    lab.start_adapter(&AdapterSettings { preset: Some("article".into()), ..Default::default() }).unwrap();
    lab.train_step(4).unwrap();
    let (run, adapter) = lab.finish_run(true).unwrap();
    assert!(run.cancelled && run.steps == 4);
    assert_eq!(adapter.unwrap().name, "article");
}

/// A cancelled adapter run keeps the adapter with the weights of its last completed step; it
/// evaluates, exports and imports like any other, and its dropout is off outside training.
#[test]
fn cancelling_an_adapter_run_keeps_a_usable_adapter() {
    let (lab0, base) = lab_with_model_and_adapter();
    let mut lab = lab_with_mnist();
    lab.import_model(&lab0.export_model().unwrap()).unwrap();
    let settings = AdapterSettings {
        name: Some("half".into()),
        targets: Some(vec!["layers.3".into(), "layers.5".into()]),
        dropout: Some(0.2),
        bias: Some(Bias::All),
        epochs: Some(1.0),
        ..Default::default()
    };
    lab.start_adapter(&settings).unwrap();
    lab.train_step(3).unwrap();
    lab.train_step(4).unwrap();
    let mid = lab.evaluate_current().unwrap();
    assert!(mid.acc_8_9.is_finite());
    let (run, summary) = lab.finish_run(true).unwrap();
    assert!(run.cancelled && run.steps == 7);
    assert_eq!(summary.unwrap().steps, 7);
    assert_eq!(lab.adapters().active.as_deref(), Some("half"));
    assert_eq!(lab.base(), Some(&base), "the base stays frozen");

    let inputs = probe_inputs();
    let adapted = lab.logits(&inputs, true).unwrap();
    assert_eq!(bits(&lab.logits(&inputs, true).unwrap()), bits(&adapted), "no dropout outside training");
    assert!(adapted.iter().all(|v| v.is_finite()));
    let eval = lab.evaluate().unwrap();
    let a = eval.adapted.unwrap();
    assert!(a.acc_8_9.is_finite() && a.acc_0_7.is_finite() && a.acc_all.is_finite());
    // Evaluating twice gives the same numbers (no dropout, no state).
    assert_eq!(lab.evaluate().unwrap().adapted.unwrap(), a);

    let files = lab.export_adapter("half").unwrap();
    let mut fresh = new_lab();
    fresh.import_model(&lab.export_model().unwrap()).unwrap();
    fresh.import_adapter("half", &files.safetensors, &files.config.to_json_pretty(), None).unwrap();
    let back = fresh.logits(&inputs, true).unwrap();
    let worst = back.iter().zip(&adapted).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let scale = adapted.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    assert!(worst <= 1e-5 * scale, "re-imported adapter differs by {worst}");
}

/// Finishing an adapter run makes the new adapter active; a merge of another adapter made before
/// the run must not stay in place of it.
#[test]
fn a_finished_adapter_run_is_not_shadowed_by_an_earlier_merge() {
    let (lab0, _) = lab_with_model_and_adapter();
    let files = lab0.export_adapter("keep").unwrap();
    let mut lab = lab_with_mnist();
    lab.import_model(&lab0.export_model().unwrap()).unwrap();
    lab.import_adapter("keep", &files.safetensors, &files.config.to_json_pretty(), None).unwrap();
    lab.merge("keep").unwrap();
    let inputs = probe_inputs();
    let keep_merged = lab.logits(&inputs, true).unwrap();

    lab.start_adapter(&AdapterSettings { name: Some("new".into()), epochs: Some(1.0), ..Default::default() }).unwrap();
    lab.train_step(5).unwrap();
    lab.finish_run(true).unwrap();
    let list = lab.adapters();
    assert_eq!(list.active.as_deref(), Some("new"));
    let shown = lab.logits(&inputs, true).unwrap();
    // The same adapter, activated explicitly (which unmerges): what "new" really computes.
    lab.set_active(Some("new")).unwrap();
    let really = lab.logits(&inputs, true).unwrap();
    assert_ne!(bits(&really), bits(&keep_merged));
    assert!(
        bits(&shown) == bits(&really),
        "after training \"new\" the adapted logits are not those of \"new\" (still those of the merged \"keep\": {})",
        bits(&shown) == bits(&keep_merged)
    );
    let new_entry = list.list.iter().find(|a| a.name == "new").unwrap();
    assert!(!new_entry.merged, "the adapter just trained is listed as merged (it never was)");
}

// ---------- numerical faults ----------

/// A base whose last layer is so large (finite, f32::MAX) that the logits overflow: +inf for digit
/// 0, −inf for digit 1, so every loss is NaN.
fn overflowing_base() -> Mlp {
    let mut m = random_base(21);
    let w = &mut m.layers[2].weight;
    w[..256].iter_mut().for_each(|v| *v = f32::MAX);
    w[256..512].iter_mut().for_each(|v| *v = -f32::MAX);
    m
}

#[test]
fn a_non_finite_loss_stops_an_adapter_run_and_keeps_the_last_good_weights() {
    let huge = overflowing_base();
    let bytes = io::export_model(&huge).unwrap();
    let mut lab = lab_with_mnist();
    lab.import_model(&bytes).expect("f32::MAX is finite, so the model loads");
    let settings = AdapterSettings {
        name: Some("doomed".into()),
        targets: Some(vec!["layers.3".into()]),
        init: Some(Init::Default),
        epochs: Some(1.0),
        ..Default::default()
    };
    lab.start_adapter(&settings).unwrap();
    let e = err(lab.train_step(10), "overflowing logits");
    assert!(matches!(e, LabError::Diverged(_)), "{e:?}");
    assert_mentions(
        &e.to_string(),
        &["training stopped", "the loss became NaN at step 1 (epoch 1)", "the weights before that step are kept"],
    );
    assert!(!lab.is_training(), "the run has ended");
    assert_eq!(lab.export_model().unwrap(), bytes, "the base is the imported one, bit for bit");
    // The adapter is kept with its weights from before the failing step: its initial ones.
    let (name, lora, cfg, _) = settings.resolve().unwrap();
    let fresh = Adapter::new(&name, lora, &huge, cfg.seed).unwrap();
    let want = io::export_adapter(&fresh, &huge).unwrap();
    assert_eq!(lab.adapters().active.as_deref(), Some("doomed"));
    assert_eq!(lab.export_adapter("doomed").unwrap().safetensors, want.safetensors);
    // The lab carries on: a base run starts and trains.
    lab.start_base(&BaseSettings { limit: Some(500.0), epochs: Some(1.0), ..Default::default() }).unwrap();
    assert!(lab.train_step(2).unwrap().loss.is_finite());
    lab.finish(true).unwrap();
}

/// The base objective never applies a batch whose loss is not finite: driven directly (the lab
/// always starts a base run from a fresh init, so it cannot be given an overflowing base).
#[test]
fn a_non_finite_loss_stops_a_base_run_and_keeps_the_weights() {
    let ds = mnist_test_set();
    let mut mlp = overflowing_base();
    let before = mlp.clone();
    let cfg = TrainConfig { seed: 1, epochs: 1, batch_size: 32, lr: 1e-3, schedule: Schedule::Constant };
    let mut state = BaseState::new(&mlp, cfg.batch_size);
    let indices: Vec<u32> = (0..512).collect();
    let mut trainer = Trainer::new(cfg, indices, Stream::BaseShuffle, Box::new(|| 0.0)).unwrap();
    let e = trainer.step(&mut BaseObjective::new(&mut mlp, &mut state), &ds, 5).unwrap_err();
    assert!(matches!(e, LabError::Diverged(_)), "{e:?}");
    assert_mentions(&e.to_string(), &["the loss became NaN at step 1", "the weights before that step are kept"]);
    assert!(mlp == before, "a diverged batch changed the weights");
    assert!(trainer.losses().is_empty());
}

fn mnist_test_set() -> lora_lab::data::Dataset {
    use lora_lab::data::{parse_images, parse_labels, Dataset};
    Dataset::new(
        parse_images(mnist("t10k-images-idx3-ubyte"), "t10k-images-idx3-ubyte").unwrap(),
        parse_labels(&mnist("t10k-labels-idx1-ubyte"), "t10k-labels-idx1-ubyte").unwrap(),
        "test set",
    )
    .unwrap()
}

// ---------- determinism ----------

#[test]
fn adapter_losses_are_bit_identical_on_1_and_2_threads() {
    // `steps`: stop (cancel) after that many batches instead of running the epoch to the end.
    let run = |threads: usize, dropout: f64, steps: Option<usize>| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let mut lab = lab_with_mnist();
            lab.start_base(&BaseSettings { limit: Some(2000.0), epochs: Some(1.0), ..Default::default() }).unwrap();
            run_to_end(&mut lab);
            lab.finish(false).unwrap();
            lab.start_adapter(&AdapterSettings {
                name: Some("det".into()),
                targets: Some(vec!["layers.3".into(), "layers.5".into()]),
                dropout: Some(dropout),
                epochs: Some(1.0),
                seed: Some(7.0),
                ..Default::default()
            })
            .unwrap();
            let losses = match steps {
                None => run_to_end(&mut lab),
                Some(n) => lab.train_step(n).unwrap().losses,
            };
            lab.finish(steps.is_some()).unwrap();
            let weights = lab.export_adapter("det").unwrap().safetensors;
            (losses.iter().map(|l| l.to_bits()).collect::<Vec<u32>>(), weights)
        })
    };
    let (one, w1) = run(1, 0.1, None);
    assert_eq!(one.len(), 185, "11,800 samples of 8 and 9 in batches of 64");
    let (two, w2) = run(2, 0.1, None);
    assert_eq!(two, one, "adapter losses differ between 1 and 2 threads");
    assert!(w1 == w2, "adapter weights differ between 1 and 2 threads");
    // The dropout path really ran: without it the same seed gives other losses.
    let (plain, _) = run(1, 0.0, Some(20));
    assert_eq!(plain.len(), 20);
    assert_ne!(plain, one[..20], "dropout 0.1 changed nothing: was it applied?");
}

// ---------- gradients ----------

fn batch(b: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut r = Rng::new(seed, Stream::BaseShuffle);
    let x = (0..b * INPUT).map(|_| r.uniform_in(-1.0, 1.0)).collect();
    let y = (0..b).map(|_| r.below(10) as u8).collect();
    (x, y)
}

/// Loss of base + adapter, and the hidden units' on/off pattern.
fn adapted_loss(base: &Mlp, adapter: &mut Adapter, x: &[f32], y: &[u8]) -> (f64, Vec<bool>) {
    let mut acts = Activations::new(y.len());
    acts.input_mut().copy_from_slice(x);
    base.forward(&mut acts, Some(adapter));
    let mut d = vec![0.0; y.len() * CLASSES];
    let mask = acts.xs[1].iter().chain(&acts.xs[2]).map(|&v| v > 0.0).collect();
    (nn::softmax_cross_entropy(acts.logits(), y, &mut d, CLASSES) as f64, mask)
}

fn logits_of(base: &Mlp, adapter: Option<&mut Adapter>, x: &[f32]) -> Vec<f32> {
    let mut acts = Activations::new(x.len() / INPUT);
    acts.input_mut().copy_from_slice(x);
    base.forward(&mut acts, adapter.map(|a| a as &mut dyn nn::LayerDelta));
    acts.logits().to_vec()
}

/// Which trainable tensor of the adapter: (LoRA layer, A or B) or a bias shift.
#[derive(Clone, Copy, Debug)]
enum Param {
    A(usize),
    B(usize),
    Bias(usize),
}

fn param(a: &mut Adapter, p: Param) -> &mut Vec<f32> {
    match p {
        Param::A(l) => &mut a.layers[l].lora_a,
        Param::B(l) => &mut a.layers[l].lora_b,
        Param::Bias(i) => a.bias_shift[i].as_mut().unwrap(),
    }
}

fn grad(a: &Adapter, p: Param) -> &[f32] {
    match p {
        Param::A(l) => &a.layers[l].grad_a,
        Param::B(l) => &a.layers[l].grad_b,
        Param::Bias(i) => a.bias_grad[i].as_ref().unwrap(),
    }
}

#[test]
fn adapter_gradients_match_finite_differences_for_every_init_and_scaling() {
    let base = random_base(3);
    let (x, y) = batch(4, 9);
    let mut report = vec![];
    // Largest |fd − g| as a fraction of the tolerance, to see the margin.
    let mut worst = 0.0f64;
    for init in [Init::Svd, Init::Default, Init::Gaussian, Init::Pissa] {
        for scaling in [Scaling::Article, Scaling::Peft, Scaling::RsLora] {
            let cfg = LoraConfig {
                targets: vec![1, 2],
                rank: 2,
                alpha: 2.0,
                scaling,
                dropout: 0.0,
                bias: Bias::LoraOnly,
                init,
            };
            let what = format!("{init:?}/{scaling:?}");
            let mut adapter = Adapter::new("g", cfg, &base, 11).unwrap();
            if matches!(init, Init::Default | Init::Gaussian) {
                assert!(
                    adapter.layers.iter().all(|l| l.lora_b.iter().all(|&v| v == 0.0)),
                    "{what}: lora_B starts at 0"
                );
                randomise_adapter(&mut adapter, 0.05, 12);
            } else {
                // Bias shifts start at 0 for every init; give them values so they are no special case.
                let mut r = Rng::new(13, Stream::Dropout);
                adapter.bias_shift.iter_mut().flatten().flatten().for_each(|v| *v = r.uniform_in(-0.05, 0.05));
            }
            assert!(
                adapter.bias_shift[0].is_none() && adapter.bias_shift[1].is_some() && adapter.bias_shift[2].is_some()
            );

            let mut acts = Activations::new(4);
            acts.input_mut().copy_from_slice(&x);
            base.forward(&mut acts, Some(&mut adapter));
            let mut dlogits = vec![0.0; 4 * CLASSES];
            nn::softmax_cross_entropy(acts.logits(), &y, &mut dlogits, CLASSES);
            let mut grads = MlpGrads::zeros(&base);
            base.backward(&acts, &dlogits, &mut grads, GradNeeds::NONE, Some(&mut adapter));
            assert!(
                grads.tensors().iter().all(|g| g.iter().all(|&v| v == 0.0)),
                "{what}: the frozen base got gradients"
            );

            let eps = 1e-2f32;
            let mut pick = Rng::new(1, Stream::Dropout);
            let params = [Param::A(0), Param::B(0), Param::A(1), Param::B(1), Param::Bias(1), Param::Bias(2)];
            let mut probe = adapter.clone();
            for p in params {
                let analytic = grad(&adapter, p).to_vec();
                assert!(analytic.iter().any(|&g| g != 0.0), "{what} {p:?}: gradient is all zero");
                let len = analytic.len();
                let (mut done, mut tries) = (0, 0);
                while done < 10 && tries < 200 {
                    tries += 1;
                    let i = pick.below(len as u32) as usize;
                    let orig = param(&mut probe, p)[i];
                    param(&mut probe, p)[i] = orig + eps;
                    let (lp, mp) = adapted_loss(&base, &mut probe, &x, &y);
                    param(&mut probe, p)[i] = orig - eps;
                    let (lm, mm) = adapted_loss(&base, &mut probe, &x, &y);
                    param(&mut probe, p)[i] = orig;
                    if mp != mm {
                        continue;
                    }
                    done += 1;
                    let fd = (lp - lm) / (2.0 * eps as f64);
                    let g = analytic[i] as f64;
                    let tolerance = 2e-3 * fd.abs().max(g.abs()) + 2e-4;
                    assert!((fd - g).abs() <= tolerance, "{what} {p:?}[{i}]: finite difference {fd}, backward {g}");
                    worst = worst.max((fd - g).abs() / tolerance);
                }
                assert_eq!(done, 10, "{what} {p:?}: too many probes crossed a ReLU kink");
            }
            report.push(what);
        }
    }
    assert_eq!(report.len(), 12);
    eprintln!("adapter gradients: {} cases, worst error {:.2} of the tolerance", report.len(), worst);
}

#[test]
fn pissa_starts_as_the_base_and_the_article_svd_init_does_not() {
    let base = random_base(3);
    let (x, _) = batch(6, 4);
    let base_logits = logits_of(&base, None, &x);
    for scaling in [Scaling::Article, Scaling::Peft, Scaling::RsLora] {
        let cfg = |init| LoraConfig {
            targets: vec![0, 1, 2],
            rank: 3,
            alpha: 2.0,
            scaling,
            dropout: 0.0,
            bias: Bias::None,
            init,
        };

        let mut pissa = Adapter::new("p", cfg(Init::Pissa), &base, 1).unwrap();
        let logits = logits_of(&base, Some(&mut pissa), &x);
        let worst = logits.iter().zip(&base_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "{scaling:?}: PiSSA at init moves the logits by {worst}");

        // W_res + s·B·A = W, with W_res the exported residual base.
        let residual = io::import_model(&io::export_adapter(&pissa, &base).unwrap().base_model.unwrap()).unwrap();
        for l in &pissa.layers {
            let mut trainable = l.clone();
            trainable.residual = None;
            let dw = trainable.delta_weight();
            let w = &base.layers[l.layer].weight;
            let wr = &residual.layers[l.layer].weight;
            assert!(wr != w, "{scaling:?} {}: the residual must differ from W", LAYER_NAMES[l.layer]);
            let worst = w.iter().zip(wr).zip(&dw).map(|((w, r), d)| (r + d - w).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "{scaling:?} {}: W_res + s·B·A differs from W by {worst}", LAYER_NAMES[l.layer]);
        }

        let mut svd = Adapter::new("s", cfg(Init::Svd), &base, 1).unwrap();
        let logits = logits_of(&base, Some(&mut svd), &x);
        let moved = logits.iter().zip(&base_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(
            moved > 1e-2,
            "{scaling:?}: the article's SVD init (W + s·A·B) should change the logits, moved {moved}"
        );
        assert!(io::export_adapter(&svd, &base).unwrap().base_model.is_none());

        for init in [Init::Default, Init::Gaussian] {
            let mut a = Adapter::new("z", cfg(init), &base, 1).unwrap();
            assert_eq!(
                bits(&logits_of(&base, Some(&mut a), &x)),
                bits(&base_logits),
                "{init:?}: zero lora_B is a no-op"
            );
        }
    }
}
