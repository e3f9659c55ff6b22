//! SmolLM2 natively: load the GGUF (`./build.sh setup` fetches it), prefill a ~40-token chat prompt and
//! decode 128 greedy tokens, timing each part — the browser bench's `llm` numbers, without a browser,
//! for `perf record`.
//!
//! `cargo +stable run --release --example llm_generate [-- new_tokens [int8]]` (`int8`: decode with 8-bit
//! activations).

use std::time::Instant;

use lora_lab::io::{gguf_llama, read_gguf};
use lora_lab::lm::{GenerateOptions, Sampling};
use lora_lab::rng::{Rng, Stream};

fn main() {
    let new: usize = std::env::args().nth(1).map_or(128, |a| a.parse().expect("a number of new tokens"));
    let int8 = std::env::args().nth(2).is_some_and(|a| a == "int8");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/www/data/SmolLM2-135M-Instruct.Q4_1.gguf");
    let t0 = Instant::now();
    let bytes = std::fs::read(path).expect("run ./build.sh setup first");
    let g = read_gguf(&bytes, "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    let model = gguf_llama(&g, &bytes).unwrap();
    drop(bytes);
    println!("load {:.2} s", t0.elapsed().as_secs_f64());
    // "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n
    // <|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n", tokenised.
    let prompt: Vec<u32> = vec![
        1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182,
        2, 198, 1, 4093, 198, 19161, 253, 1488, 25229, 563, 260, 3502, 30, 2, 198, 1, 520, 9531, 198,
    ];
    let t1 = Instant::now();
    let mut first = None;
    let limits = GenerateOptions { max_new: new, stop: &[], int8 };
    let out = model
        .generate_with(std::slice::from_ref(&prompt), limits, Sampling::GREEDY, &mut Rng::new(1, Stream::Sample), None, &mut |_, _| {
            first.get_or_insert_with(Instant::now);
            true
        })
        .unwrap();
    let end = Instant::now();
    let first = first.unwrap();
    let n = out[0].len() - prompt.len();
    println!(
        "prompt {} tokens: prefill + first token {:.3} s ({:.1} tokens/s); then {} tokens in {:.3} s: {:.1} tokens/s",
        prompt.len(),
        (first - t1).as_secs_f64(),
        prompt.len() as f64 / (first - t1).as_secs_f64(),
        n - 1,
        (end - first).as_secs_f64(),
        (n - 1) as f64 / (end - first).as_secs_f64()
    );
}
