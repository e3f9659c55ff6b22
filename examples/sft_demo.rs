//! The demo task end to end natively, as panel 7 runs it: SmolLM2-135M-Instruct from the page's GGUF,
//! the demo rows (written to OUT_DIR/train.jsonl and test.jsonl, so `../shared/peers/smol_torch.py`
//! runs on exactly these rows), exact match before, the seed preset for `epochs`, the held-out loss
//! before and after each epoch, exact match after, tokens/s.
//!
//! `cargo +stable run --release --example sft_demo -- OUT_DIR [epochs]`

use std::time::Instant;

use lora_lab::lab::LlmAdapterSettings;

mod common;

fn main() {
    let out = std::env::args().nth(1).expect("an output folder for the demo rows");
    let epochs: f64 = std::env::args().nth(2).map_or(3.0, |a| a.parse().expect("a number of epochs"));
    let (mut lab, train, test) = common::smol_demo_lab();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(format!("{out}/train.jsonl"), &train).unwrap();
    std::fs::write(format!("{out}/test.jsonl"), &test).unwrap();

    let t = Instant::now();
    let before = lab.llm_evaluate(None).unwrap();
    println!(
        "before: held-out loss {:.4}, exact match {:.2} ({:.0} s); answers {:?}",
        before.base.loss,
        before.base.exact_match.unwrap(),
        t.elapsed().as_secs_f64(),
        &before.base.answers[..5]
    );
    let s = LlmAdapterSettings { preset: Some("seed".into()), epochs: Some(epochs), ..Default::default() };
    let start = lab.llm_start_adapter(&s).unwrap();
    println!("{} — {} steps, {} training tokens an epoch", start.params.report, start.steps, start.train_tokens);
    let t = Instant::now();
    loop {
        let p = lab.llm_train_step(20).unwrap();
        if let Some(l) = p.eval_loss_before {
            println!("eval_loss before {l:.4}");
        }
        if let Some(l) = p.eval_loss {
            println!(
                "epoch {} step {}: eval_loss {l:.4}, train loss (smoothed) {:.4}, {:.1} tokens/s, {:.0} s",
                p.progress.epoch,
                p.progress.step,
                p.progress.smooth_loss,
                p.tokens_per_sec,
                t.elapsed().as_secs_f64()
            );
        }
        if p.progress.done {
            break;
        }
    }
    let summary = lab.llm_finish(false).unwrap();
    println!(
        "trained {} steps in {:.0} s of steps ({:.0} s wall with evaluations), {:.1} tokens/s; eval_loss {:?}; loss hash {}",
        summary.steps,
        summary.seconds,
        t.elapsed().as_secs_f64(),
        summary.tokens_per_sec,
        summary.eval_loss,
        summary.loss_hash
    );
    let t = Instant::now();
    let after = lab.llm_evaluate(None).unwrap();
    let adapted = after.adapted.unwrap();
    println!(
        "after: held-out loss {:.4}, exact match {:.2} ({:.0} s); answers {:?}",
        adapted.loss,
        adapted.exact_match.unwrap(),
        t.elapsed().as_secs_f64(),
        &adapted.answers[..5]
    );
}
