#![cfg(not(target_arch = "wasm32"))]
//! The language model through the lab, as the page drives it: corpora, a short base run, the
//! article's adapter and the output-layer preset, evaluation, samples, scores, checkpoints, files; bad
//! settings and files refused with nothing changed. Small made-up corpora keep it fast.

use lora_lab::lab::{BaseForm, DataChoice, Lab, LmAdapterSettings, LmBaseSettings, QuantizeSettings};
use lora_lab::lm::Sampling;
use lora_lab::rng::{Rng, Stream};

/// `n` lowercase made-up words (the English words' shape), as index.json holds them.
fn words_json(n: usize) -> Vec<u8> {
    let mut r = Rng::new(1, Stream::Replay);
    let syll = ["ra", "to", "ni", "ke", "sa", "mo", "lu", "pe", "di", "ga", "shi", "ber"];
    let words: Vec<String> =
        (0..n).map(|_| (0..2 + r.below(3)).map(|_| syll[r.below(syll.len() as u32) as usize]).collect()).collect();
    serde_json::to_vec(&words).unwrap()
}

/// Capitalised names with a few non-ASCII ones, as pokemon's en.json.
fn names_json() -> Vec<u8> {
    let base = ["Pika", "Bulba", "Chari", "Squir", "Flabé", "Nidoran♀", "Nidoran♂", "Mew", "Eeve", "Snor"];
    let names: Vec<String> = (0..1000)
        .map(|i| format!("{}{}", base[i % base.len()], ["chu", "saur", "zard", "tle", "bé", "lax"][i % 6]))
        .collect();
    serde_json::to_vec(&names).unwrap()
}

fn lab() -> Lab {
    let t0 = std::time::Instant::now();
    let mut lab = Lab::new(move || t0.elapsed().as_secs_f64());
    let names_txt = (0..300).map(|i| format!("Name{i}")).collect::<Vec<_>>().join("\n");
    lab.lm_load_data(&words_json(3000), &names_json(), names_txt.as_bytes()).unwrap();
    lab
}

fn run_base(lab: &mut Lab, s: &LmBaseSettings) -> lora_lab::lab::LmRunSummary {
    lab.lm_start_base(s).unwrap();
    loop {
        let p = lab.lm_train_step(8).unwrap();
        if p.progress.done {
            return lab.lm_finish(false).unwrap();
        }
    }
}

fn run_adapter(lab: &mut Lab, s: &LmAdapterSettings) -> lora_lab::lab::LmRunSummary {
    lab.lm_start_adapter(s).unwrap();
    loop {
        if lab.lm_train_step(16).unwrap().progress.done {
            return lab.lm_finish(false).unwrap();
        }
    }
}

fn short_base() -> LmBaseSettings {
    LmBaseSettings { batch_size: Some(8.0), lr: Some(3e-3), ..Default::default() }
}

#[test]
fn a_short_base_run_learns_and_the_presets_adapt_it() {
    let mut lab = lab();
    let base = run_base(&mut lab, &short_base());
    assert_eq!(base.eval_loss.len(), 1, "one evaluation per epoch");
    assert!(base.eval_loss[0] < 3.0, "held-out words after one epoch: {:?} (init ≈ ln 264 = 5.58)", base.eval_loss);
    assert!(base.tokens_per_sec > 0.0);
    let before = lab.lm_evaluate().unwrap();
    assert!(before.adapted.is_none());
    let (words, poke) = (before.base["words"], before.base["pokemon"]);
    assert!((words - base.eval_loss[0]).abs() < 1e-9, "evaluate() scores the same held-out words");
    assert!(poke > words, "the made-up Pokémon names are new to the base: {poke} vs {words}");

    // The article's adapter: q/k/v, r 32, α 32; trainable counts as PEFT prints them.
    let seed = run_adapter(
        &mut lab,
        &LmAdapterSettings { preset: Some("seed".into()), epochs: Some(1.0), ..Default::default() },
    );
    assert_eq!(seed.trainable_params, 98_304);
    // PEFT formats 100·98,304/969,856 = 10.13594 with :.4f (the issue text says 10.1358).
    assert_eq!(seed.report, "trainable params: 98,304 || all params: 969,856 || trainable%: 10.1359");
    assert_eq!(seed.total_params, 969_856);
    assert_eq!(seed.eval_loss.len(), 1);
    let new = run_adapter(
        &mut lab,
        &LmAdapterSettings { preset: Some("new-tokens".into()), epochs: Some(3.0), ..Default::default() },
    );
    assert_eq!(new.trainable_params, 143_616);
    let after = lab.lm_evaluate().unwrap();
    let adapted = after.adapted.clone().expect("new-tokens is on");
    assert!(
        adapted["pokemon"] < poke - 0.15,
        "the adapter lowers held-out name loss: {} → {}",
        poke,
        adapted["pokemon"]
    );
    assert_eq!(lab.lm_adapters().list.len(), 2);
    assert_eq!(lab.lm_checkpoints().len(), 2, "save_total_limit 2");

    // Samples: deterministic per seed, BOS → EOS, at most 63 bytes.
    let s = Sampling { temperature: 0.8, top_k: 0, top_p: 1.0 };
    let a = lab.lm_generate(20, s, 5, true).unwrap();
    assert_eq!(a, lab.lm_generate(20, s, 5, true).unwrap());
    assert_eq!(a.len(), 20);
    assert!(a.iter().all(|x| x.len() <= 63));
    // The first byte after BOS: the base never saw a capital; the output layer's adapter makes them likely.
    let capital_mass = |lab: &mut Lab, adapted: bool| {
        let row = lab.lm_logits(&[256], adapted).unwrap();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = row.iter().map(|v| (v - max).exp()).sum();
        (b'A'..=b'Z').map(|c| (row[c as usize] - max).exp() / z).sum::<f32>()
    };
    let (base_caps, new_caps) = (capital_mass(&mut lab, false), capital_mass(&mut lab, true));
    assert!(base_caps < 0.01 && new_caps > 0.2, "p(capital first) base {base_caps}, new-tokens {new_caps}");

    // Scores: one log-prob per byte and for EOS; the capital is likelier with the adapter.
    let sc = lab.lm_score("Pikachu").unwrap();
    assert_eq!(sc.base.len(), 8);
    let ad = sc.adapted.unwrap();
    assert!(ad[0] > sc.base[0], "P: {} → {}", sc.base[0], ad[0]);
}

#[test]
fn files_round_trip_and_bad_ones_change_nothing() {
    let mut lab = lab();
    run_base(&mut lab, &LmBaseSettings { limit: Some(400.0), ..short_base() });
    run_adapter(&mut lab, &LmAdapterSettings { preset: Some("seed".into()), epochs: Some(1.0), ..Default::default() });
    let (config, st) = lab.lm_export_base().unwrap();
    let files = lab.lm_export_adapter("seed").unwrap();
    let cfg_json = files.config.to_json_pretty();
    assert!(cfg_json.contains("\"task_type\": \"CAUSAL_LM\""), "{cfg_json}");
    assert!(cfg_json.contains("\"q_proj\"") && cfg_json.contains("\"v_proj\"") && cfg_json.contains("\"k_proj\""));
    let ids: Vec<u16> = std::iter::once(256).chain("Mew".bytes().map(u16::from)).collect();
    let logits = lab.lm_logits(&ids, true).unwrap();

    let mut other = crate::lab(); // a second lab with the corpora and no models
    other.lm_import_base(&config, &st).unwrap();
    other.lm_import_adapter("seed", &files.safetensors, &cfg_json).unwrap();
    assert_eq!(other.lm_logits(&ids, true).unwrap(), logits, "export → import gives the same logits bit for bit");
    assert_eq!(other.lm_export_base().unwrap().1, st, "and the same file bytes");

    // A malformed config or adapter is refused, naming the file, and the loaded models keep working.
    let e = other.lm_import_base("{\"model_type\": \"gpt2\"}", &st).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    let e = other.lm_import_adapter("bad", &st, &cfg_json).unwrap_err().to_string();
    assert!(e.contains("adapter_model.safetensors"), "{e}");
    assert_eq!(other.lm_logits(&ids, true).unwrap(), logits);
    assert_eq!(other.lm_adapters().list.len(), 1);
}

/// The data an adapter was trained on travels in its file (our safetensors metadata): uploaded again it
/// is scored on that data — first names, a person's lines — and one from a file that does not say
/// (PEFT's own) on the English words alone, never on Pokémon by default.
#[test]
fn an_uploaded_adapter_is_scored_on_the_data_it_was_trained_on() {
    let mut lab = lab();
    run_base(&mut lab, &LmBaseSettings { limit: Some(400.0), ..short_base() });
    let lines: Vec<String> = (0..60).map(|i| format!("Zorblax{i}")).collect();
    for (name, data) in [("on-names", DataChoice::Named("names".into())), ("on-lines", DataChoice::Lines { lines })] {
        let s =
            LmAdapterSettings { name: Some(name.into()), data: Some(data), epochs: Some(1.0), ..Default::default() };
        run_adapter(&mut lab, &s);
    }
    let (config, st) = lab.lm_export_base().unwrap();
    let mut other = crate::lab();
    other.lm_import_base(&config, &st).unwrap();
    let keys = |lab: &mut Lab| lab.lm_evaluate().unwrap().adapted.unwrap().into_keys().collect::<Vec<_>>();
    for (name, key) in [("on-names", "names"), ("on-lines", "user")] {
        lab.lm_set_active(Some(name)).unwrap();
        let want = lab.lm_evaluate().unwrap();
        let files = lab.lm_export_adapter(name).unwrap();
        let cfg = files.config.to_json_pretty();
        other.lm_import_adapter(name, &files.safetensors, &cfg).unwrap();
        let got = other.lm_evaluate().unwrap();
        assert_eq!(keys(&mut other), [key, "words"], "{name}: scored on its own data (keys in order)");
        assert_eq!(got.adapted, want.adapted, "{name}: the same held-out losses as where it was trained");

        // The same tensors without our metadata, as PEFT writes them: the data is unknown.
        let t = safetensors::SafeTensors::deserialize(&files.safetensors).unwrap();
        let plain = safetensors::serialize(t.tensors(), None).unwrap();
        other.lm_import_adapter("plain", &plain, &cfg).unwrap();
        assert_eq!(keys(&mut other), ["words".to_string()], "{name} without its metadata");
    }
}

/// QLoRA on the language model: every Linear of the layers in NF4 (lm_head stays f32), the held-out
/// loss barely moves, base training is refused, the output-layer preset still adapts it, the folder
/// goes out with its quantization_config and comes back the same, and dequantising restores the f32
/// model bit for bit.
#[test]
fn a_4_bit_base_adapts_goes_out_as_bitsandbytes_writes_it_and_dequantises_exactly() {
    let mut lab = lab();
    run_base(&mut lab, &short_base());
    let ids: Vec<u16> = std::iter::once(256).chain("Mew".bytes().map(u16::from)).collect();
    let f32_logits = lab.lm_logits(&ids, false).unwrap();
    let f32_files = lab.lm_export_base().unwrap();
    let f32_eval = lab.lm_evaluate().unwrap().base;

    let q = lab.lm_quantize_base(&QuantizeSettings::default()).unwrap();
    assert!(q.quantized && q.double_quant, "double quantisation by default (QLoRA's recipe)");
    assert_eq!(q.linears, 28, "4 layers × 7 projections; lm_head stays f32");
    assert_eq!(q.f32_bytes, 871_552 * 4);
    let (linear_weights, rest) = (802_816, 871_552 - 802_816);
    eprintln!("LM base: {} → {} bytes", q.f32_bytes, q.bytes);
    // 0.5 B per code, 1/64 B per absmax code, and per Linear the 16 + 256 f32 of its two maps.
    assert!(q.bytes < rest * 4 + linear_weights * 56 / 100, "about 0.55 B per 4-bit weight: {}", q.bytes);
    let q_eval = lab.lm_evaluate().unwrap().base;
    eprintln!("held-out words f32 {:.4} → NF4 {:.4}", f32_eval["words"], q_eval["words"]);
    assert!((q_eval["words"] - f32_eval["words"]).abs() < 0.1, "{f32_eval:?} → {q_eval:?}");
    assert_ne!(lab.lm_logits(&ids, false).unwrap(), f32_logits);
    let e = lab.lm_start_base(&short_base()).unwrap_err().to_string();
    assert!(e.contains("4 bits") && e.contains("frozen"), "{e}");

    let run = run_adapter(
        &mut lab,
        &LmAdapterSettings { preset: Some("new-tokens".into()), epochs: Some(2.0), ..Default::default() },
    );
    assert_eq!(run.trainable_params, 143_616);
    let adapted = lab.lm_evaluate().unwrap().adapted.unwrap();
    eprintln!("new-tokens on the 4-bit base: pokemon {:.4} → {:.4}", q_eval["pokemon"], adapted["pokemon"]);
    assert!(adapted["pokemon"] < q_eval["pokemon"] - 0.15, "{q_eval:?} → {adapted:?}");
    let adapted_logits = lab.lm_logits(&ids, true).unwrap();

    let (config, st) = lab.lm_export_base().unwrap();
    assert!(
        config.contains("\"quantization_config\"") && config.contains("\"bnb_4bit_quant_type\": \"nf4\""),
        "{config}"
    );
    assert!(!f32_files.0.contains("quantization_config"));
    let tensors = lora_lab::io::read_tensors(&st, "model.safetensors").unwrap();
    assert!(tensors.contains_key("model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4"));
    assert!(tensors.contains_key("model.layers.3.mlp.down_proj.weight.nested_absmax"));
    assert!(matches!(tensors["lm_head.weight"].data, lora_lab::io::Data::F32(_)), "lm_head stays f32");
    let files = lab.lm_export_adapter("new-tokens").unwrap();
    let mut other = crate::lab();
    other.lm_import_base(&config, &st).unwrap();
    assert_eq!(other.lm_base_quantization(), q);
    assert_eq!(other.lm_export_base().unwrap(), (config.clone(), st.clone()), "byte for byte");
    other.lm_import_adapter("new-tokens", &files.safetensors, &files.config.to_json_pretty()).unwrap();
    assert_eq!(other.lm_logits(&ids, true).unwrap(), adapted_logits);
    // The f32 folder of the dequantised base: the same logits to rounding, no quantization_config.
    let (dense_config, dense_st) = lab.lm_export_base_as(BaseForm::Dequantized).unwrap();
    assert!(!dense_config.contains("quantization_config"));
    let mut dense = crate::lab();
    dense.lm_import_base(&dense_config, &dense_st).unwrap();
    let (a, b) = (dense.lm_logits(&ids, false).unwrap(), lab.lm_logits(&ids, false).unwrap());
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));

    // A 4-bit folder whose config disagrees with its file is refused, naming the file.
    let flipped = config.replace("\"bnb_4bit_use_double_quant\": true", "\"bnb_4bit_use_double_quant\": false");
    let e = other.lm_import_base(&flipped, &st).unwrap_err().to_string();
    assert!(e.starts_with("model.safetensors") && e.contains("double-quantised"), "{e}");
    let e = other.lm_import_base(&config, &f32_files.1).unwrap_err().to_string();
    assert!(e.starts_with("model.safetensors") && e.contains("not quantised"), "{e}");
    assert_eq!(other.lm_logits(&ids, true).unwrap(), adapted_logits, "the loaded models keep working");

    let back = lab.lm_dequantize_base().unwrap();
    assert!(!back.quantized);
    assert_eq!(lab.lm_logits(&ids, false).unwrap(), f32_logits, "undo is exact");
    assert_eq!(lab.lm_export_base().unwrap(), f32_files);
}

#[test]
fn bad_settings_are_refused_before_anything_starts() {
    let mut lab = lab();
    for (s, want) in [
        (LmBaseSettings { lr: Some(f64::NAN), ..Default::default() }, "learning rate"),
        (LmBaseSettings { batch_size: Some(0.0), ..Default::default() }, "batch size"),
        (LmBaseSettings { warmup_ratio: Some(1.5), ..Default::default() }, "warmup ratio"),
        (LmBaseSettings { schedule: Some("cyclic".into()), ..Default::default() }, "schedule"),
        (LmBaseSettings { weight_decay: Some(f64::INFINITY), ..Default::default() }, "weight decay"),
    ] {
        let e = lab.lm_start_base(&s).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
        assert!(!lab.lm_is_training());
    }
    let e = lab.lm_start_adapter(&LmAdapterSettings::default()).unwrap_err().to_string();
    assert!(e.contains("no language model yet"), "{e}");
    run_base(&mut lab, &LmBaseSettings { limit: Some(300.0), ..short_base() });
    for (s, want) in [
        (LmAdapterSettings { preset: Some("huge".into()), ..Default::default() }, "unknown preset"),
        (
            LmAdapterSettings {
                target_modules: Some(lora_lab::lora::targets::TargetModules::Names(vec!["qq_proj".into()])),
                ..Default::default()
            },
            "unknown target module \"qq_proj\"",
        ),
        (LmAdapterSettings { r: Some(200.0), ..Default::default() }, "is outside 1..=128"),
        (LmAdapterSettings { lora_dropout: Some(-0.1), ..Default::default() }, "lora_dropout"),
        (LmAdapterSettings { data: Some(DataChoice::Lines { lines: vec![] }), ..Default::default() }, "no lines"),
        (LmAdapterSettings { data: Some(DataChoice::Named("klingon".into())), ..Default::default() }, "data"),
    ] {
        let e = lab.lm_start_adapter(&s).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
        assert!(!lab.lm_is_training());
    }
    assert!(lab.lm_adapters().list.is_empty());
}

#[test]
fn a_regex_target_and_own_lines_train_too() {
    let mut lab = lab();
    run_base(&mut lab, &LmBaseSettings { limit: Some(300.0), ..short_base() });
    let lines: Vec<String> = (0..60).map(|i| format!("Zorblax {i}")).collect();
    let s = LmAdapterSettings {
        name: Some("mine".into()),
        data: Some(DataChoice::Lines { lines }),
        target_modules: Some(lora_lab::lora::targets::TargetModules::Pattern(r"model\.layers\.[01]\.mlp\..*".into())),
        r: Some(4.0),
        epochs: Some(1.0),
        ..Default::default()
    };
    let run = run_adapter(&mut lab, &s);
    // gate/up/down of layers 0 and 1: 2 × (4·(128+352) · 2 + 4·(352+128)) = 11,520.
    assert_eq!(run.trainable_params, 11_520);
    let ev = lab.lm_evaluate().unwrap();
    assert!(ev.base.contains_key("user") && ev.adapted.unwrap().contains_key("user"));
}

#[test]
fn exports_say_what_peft_reads() {
    let mut lab = lab();
    run_base(&mut lab, &LmBaseSettings { limit: Some(300.0), ..short_base() });
    let regex = LmAdapterSettings {
        name: Some("all".into()),
        target_modules: Some(lora_lab::lora::targets::TargetModules::Pattern(".*".into())),
        r: Some(2.0),
        epochs: Some(1.0),
        ..Default::default()
    };
    run_adapter(&mut lab, &regex);
    let json = lab.lm_export_adapter("all").unwrap().config.to_json_pretty();
    // PEFT's re.fullmatch(".*") would also name non-Linear modules (`model`) and refuse them: the export
    // lists the 29 Linears the pattern chose instead.
    assert!(json.contains("\"model.layers.3.mlp.down_proj\"") && json.contains("\"lm_head\""), "{json}");
    assert!(json.contains("\"lora_dropout\": 0.05,"), "the f32 0.05 as 0.05: {json}");
}

#[test]
fn load_best_keeps_the_best_and_the_newest_checkpoint_and_ends_on_the_best() {
    let mut lab = lab();
    run_base(&mut lab, &LmBaseSettings { limit: Some(300.0), ..short_base() });
    // (Which epoch is best here depends on the run; the rotation itself is unit-tested in checkpoints.rs.)
    let lines: Vec<String> = (0..60).map(|i| format!("Zorblax {i}")).collect();
    let s = LmAdapterSettings {
        name: Some("best".into()),
        data: Some(DataChoice::Lines { lines }),
        r: Some(4.0),
        epochs: Some(4.0),
        load_best: Some(true),
        ..Default::default()
    };
    let run = run_adapter(&mut lab, &s);
    let losses = &run.eval_loss;
    assert_eq!(losses.len(), 4);
    let cps = lab.lm_checkpoints();
    assert_eq!(cps.len(), 2, "save_total_limit 2 with the best protected: {cps:?}");
    assert_eq!(cps.last().unwrap().epoch, 4, "the newest is kept");
    let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(cps.iter().any(|c| c.best && c.eval_loss == best), "the best is kept and marked: {cps:?} {losses:?}");
    let now = lab.lm_evaluate().unwrap().adapted.unwrap()["user"];
    assert!((now - best).abs() < 1e-9, "the run ends on the best epoch's adapter: {now} vs {losses:?}");
}

#[test]
fn checkpoints_go_out_as_folders_and_come_back_restorable() {
    let mut lab = lab();
    run_base(&mut lab, &LmBaseSettings { limit: Some(300.0), ..short_base() });
    let base_cp = lab.lm_checkpoints();
    assert_eq!(base_cp.len(), 1);
    assert_eq!(base_cp[0].adapter, None);
    let (info, config, st) = lab.lm_export_checkpoint(base_cp[0].id).unwrap();
    assert_eq!(info, base_cp[0]);
    assert!(config.contains("LlamaForCausalLM"), "a base checkpoint is an HF folder: {config}");
    let (base_config, base_st) = lab.lm_export_base().unwrap();
    assert_eq!(st, base_st, "the one epoch's checkpoint is the model");

    // An adapter run: each epoch's report carries the loss with the adapter off (the frozen base's).
    lab.lm_start_adapter(&LmAdapterSettings { preset: Some("seed".into()), epochs: Some(2.0), ..Default::default() })
        .unwrap();
    let mut off = Vec::new();
    loop {
        let p = lab.lm_train_step(16).unwrap();
        assert_eq!(p.base_eval_loss.is_some(), p.eval_loss.is_some(), "both losses at an epoch's end only");
        off.extend(p.base_eval_loss);
        if p.progress.done {
            break;
        }
    }
    lab.lm_finish(false).unwrap();
    assert_eq!(off.len(), 2);
    assert_eq!(off[0], off[1], "the base is frozen");
    let ev = lab.lm_evaluate().unwrap();
    assert!(
        (ev.base["pokemon"] - off[0]).abs() < 1e-9,
        "the same held-out names as evaluate(): {} {}",
        ev.base["pokemon"],
        off[0]
    );

    let kept = lab.lm_checkpoints();
    assert_eq!(kept.len(), 2);
    let saved: Vec<_> = kept.iter().map(|c| lab.lm_export_checkpoint(c.id).unwrap()).collect();
    assert!(saved[0].1.contains("\"task_type\": \"CAUSAL_LM\""), "an adapter checkpoint is a PEFT folder");
    let ids: Vec<u16> = std::iter::once(256).chain("Mew".bytes().map(u16::from)).collect();
    lab.lm_restore_checkpoint(kept[0].id).unwrap();
    let epoch1 = lab.lm_logits(&ids, true).unwrap();

    // A fresh lab (a reload): the base, then the saved checkpoints put back; each restores as before.
    let mut other = crate::lab();
    other.lm_import_base(&base_config, &base_st).unwrap();
    let back: Vec<_> =
        saved.iter().map(|(info, config, st)| other.lm_import_checkpoint(info, config, st).unwrap()).collect();
    assert_eq!(other.lm_checkpoints(), back);
    for (b, k) in back.iter().zip(&kept) {
        assert_eq!(
            (b.epoch, b.step, b.eval_loss, b.best, &b.adapter),
            (k.epoch, k.step, k.eval_loss, k.best, &k.adapter)
        );
    }
    let list = other.lm_restore_checkpoint(back[0].id).unwrap();
    assert_eq!(list.active.as_deref(), Some("seed"));
    assert_eq!(other.lm_logits(&ids, true).unwrap(), epoch1, "the restored checkpoint gives its logits bit for bit");

    // A broken file is refused naming it, and nothing is added.
    let e = other.lm_import_checkpoint(&saved[0].0, &saved[0].1, b"not safetensors").unwrap_err().to_string();
    assert!(e.contains("adapter_model.safetensors"), "{e}");
    assert_eq!(other.lm_checkpoints().len(), 2);
    assert!(other.lm_export_checkpoint(99).unwrap_err().to_string().contains("no checkpoint 99"));
}

#[test]
fn own_data_is_checked_as_training_reads_it() {
    let lab = lab();
    let text = (0..30).map(|i| format!("Zorblax {i}")).collect::<Vec<_>>().join("\n");
    let u = lab.lm_user_data(text.as_bytes()).unwrap();
    assert_eq!((u.lines.len(), u.train, u.held_out), (30, 27, 3), "every 10th from the first is held out");
    assert_eq!(u.held_out_first, ["Zorblax 0", "Zorblax 10", "Zorblax 20"]);
    for (bytes, want) in [
        (b"  \n\n".to_vec(), "no lines"),
        (vec![b'a', b'\n', 0xff, b'\n', b'b'], "not UTF-8"),
        (vec![b'a'; 1_000_001], "more than the 1,000,000 allowed"),
    ] {
        let e = lab.lm_user_data(&bytes).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("your data"), "{want}: {e}");
    }
}

#[test]
fn samples_between_steps_leave_the_run_as_it_was() {
    let mut lab = lab();
    run_base(&mut lab, &LmBaseSettings { limit: Some(300.0), ..short_base() });
    let lines: Vec<String> = (0..60).map(|i| format!("Zorblax {i}")).collect();
    let s = LmAdapterSettings {
        name: Some("z".into()),
        data: Some(DataChoice::Lines { lines }),
        r: Some(4.0),
        epochs: Some(2.0),
        ..Default::default()
    };
    let plain = run_adapter(&mut lab, &s);
    let sampling = Sampling { temperature: 0.8, top_k: 0, top_p: 1.0 };
    assert!(lab.lm_run_samples(4, sampling, 1).unwrap_err().to_string().contains("no language-model run"));

    lab.lm_start_adapter(&s).unwrap();
    let mut last = None;
    loop {
        let p = lab.lm_train_step(16).unwrap();
        if p.progress.epoch_finished {
            let r = lab.lm_run_samples(4, sampling, 7).unwrap();
            assert_eq!(r.base.len(), 4);
            assert_eq!(r.adapted.as_ref().map(Vec::len), Some(4));
            last = Some(r);
        }
        if p.progress.done {
            break;
        }
    }
    let sampled = lab.lm_finish(false).unwrap();
    assert_eq!(sampled.loss_hash, plain.loss_hash, "sampling between steps changes nothing in the run");
    let last = last.unwrap();
    assert_eq!(last.base, lab.lm_generate(4, sampling, 7, false).unwrap(), "from the frozen base");
    assert_eq!(last.adapted.unwrap(), lab.lm_generate(4, sampling, 7, true).unwrap(), "from the adapter as it ended");
}
