//! SmolLM2 fine-tuning speed natively: the seed adapter (r 32, α 32, dropout 0.05 on q/k/v) over the
//! GGUF's frozen blocks, batch 3 × 256 random tokens with the loss on every token, gradient
//! checkpointing on — `bench_smol_torch.py`'s setting and the browser bench's `llm.lora_seed_b3_t256`,
//! without a browser, for `perf record`. Also the completion-only case (the loss on 3 tokens of each
//! sequence, as on the demo task).
//!
//! `cargo +stable run --release --example sft_speed [-- steps [nf4|q4] [tokens]]` (`nf4`: the projections
//! held in NF4 with double quantisation, as `llm_quantize_base` holds them; `q4` or anything else: the
//! GGUF's Q4_1 as read; `tokens`: the sequence length, 256 by default — the demo task's rows are 56–60).

use std::time::Instant;

use lora_lab::io::{gguf_llama, read_gguf};
use lora_lab::lora::{Adaptable, Adapter, Bias, Init, LoraConfig, Scaling};
use lora_lab::rng::{Rng, Stream};
use lora_lab::train::{Objective, SftData, SftObjective, SftState};

fn main() {
    let steps: usize = std::env::args().nth(1).map_or(3, |a| a.parse().expect("a number of steps"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/www/data/SmolLM2-135M-Instruct.Q4_1.gguf");
    let bytes = std::fs::read(path).expect("run ./build.sh setup first");
    let g = read_gguf(&bytes, "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    let mut model = gguf_llama(&g, &bytes).unwrap();
    drop(bytes);
    if std::env::args().nth(2).as_deref() == Some("nf4") {
        let t0 = Instant::now();
        model.quantize_linears(true).unwrap();
        println!("NF4 base (double quantisation): quantised in {:.2} s", t0.elapsed().as_secs_f64());
    }
    let names = model.cfg.linear_modules();
    let targets: Vec<usize> =
        (0..names.len()).filter(|&i| ["q_proj", "k_proj", "v_proj"].iter().any(|p| names[i].0.ends_with(p))).collect();
    let cfg = LoraConfig {
        targets,
        rank: 32,
        alpha: 32.0,
        scaling: Scaling::Peft,
        dropout: 0.05,
        bias: Bias::None,
        init: Init::Default,
    };
    let t: usize = std::env::args().nth(3).map_or(256, |a| a.parse().expect("a sequence length"));
    let b = 3usize;
    let mut r = Rng::new(1, Stream::Replay);
    let seqs: Vec<Vec<u32>> = (0..b).map(|_| (0..t).map(|_| r.below(49152)).collect()).collect();
    for (label, trained) in [("every token", t), ("3 per sequence", 3)] {
        let masks: Vec<Vec<bool>> = (0..b).map(|_| (0..t).map(|i| i >= t - trained).collect()).collect();
        let data = SftData::new(seqs.iter().zip(&masks).map(|(s, m)| (&s[..], &m[..])), 49152).unwrap();
        let mut adapter = Adapter::new("seed", cfg.clone(), &model, 1311).unwrap();
        adapter.set_training(Some(1311));
        let mut state = SftState::new(&adapter, 0.1, b);
        let batch: Vec<u32> = (0..b as u32).collect();
        let mut obj = SftObjective { base: &model, adapter: &mut adapter, state: &mut state };
        obj.train_batch(&data, &batch, 5e-4).unwrap(); // warm-up: buffers sized
        let t0 = Instant::now();
        for _ in 0..steps {
            let loss = obj.train_batch(&data, &batch, 5e-4).unwrap();
            assert!(loss.is_finite());
        }
        let s = t0.elapsed().as_secs_f64();
        let tps = (steps * b * t) as f64 / s;
        println!(
            "loss on {label}: {:.2} s per step, {tps:.1} tokens/s, activations {:.1} MB",
            s / steps as f64,
            state.activation_bytes() as f64 / 1e6
        );
    }
}
