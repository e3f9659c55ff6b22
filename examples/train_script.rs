//! Panel 7's "train.py" download, written to a folder natively, to run it with TRL: a short seed run on
//! the demo task's first `rows` training rows (one epoch), then OUT_DIR/train.py, dataset.jsonl,
//! test.jsonl and adapter/ (the PEFT folder train.py goes on from) as the zip holds them. Prints the
//! adapter's held-out loss, which train.py's "held-out loss before:" (TRL's eval_loss of the same adapter
//! on test.jsonl) should repeat.
//!
//! `cargo +stable run --release --example train_script -- OUT_DIR [rows]`

use lora_lab::lab::{LlmAdapterSettings, LlmData};

mod common;

fn main() {
    let out = std::env::args().nth(1).expect("an output folder");
    let rows: f64 = std::env::args().nth(2).map_or(30.0, |a| a.parse().expect("a number of rows"));
    let (mut lab, _, _) = common::smol_demo_lab();
    let settings = LlmAdapterSettings {
        preset: Some("seed".into()),
        data: Some(LlmData::Named("demo".into())),
        epochs: Some(1.0),
        limit: Some(rows),
        exact_match_each_epoch: Some(false),
        ..Default::default()
    };
    lab.llm_start_adapter(&settings).unwrap();
    while !lab.llm_train_step(8).unwrap().progress.done {}
    let summary = lab.llm_finish(false).unwrap();
    println!(
        "{} steps in {:.1} s; held-out loss {:.6} → {:.6}",
        summary.steps,
        summary.seconds,
        summary.eval_loss_before.unwrap_or(f64::NAN),
        summary.eval_loss.last().copied().unwrap_or(f64::NAN)
    );

    let script = lab.llm_export_training_script("seed").unwrap();
    let files = lab.llm_export_adapter("seed").unwrap();
    std::fs::create_dir_all(format!("{out}/adapter")).unwrap();
    std::fs::write(format!("{out}/train.py"), &script.train_py).unwrap();
    std::fs::write(format!("{out}/dataset.jsonl"), &script.dataset_jsonl).unwrap();
    std::fs::write(format!("{out}/test.jsonl"), &script.test_jsonl).unwrap();
    std::fs::write(format!("{out}/adapter/adapter_config.json"), files.config.to_json_pretty()).unwrap();
    std::fs::write(format!("{out}/adapter/adapter_model.safetensors"), &files.safetensors).unwrap();
    println!("wrote {out}/train.py, dataset.jsonl, test.jsonl and adapter/");
}
