//! Part 3's Hugging Face form: a folder (`config.json` with grouped-query attention and tied embeddings,
//! `model.safetensors`, `tokenizer.json`, `tokenizer_config.json` with the chat template) loads as the
//! pretrained model, with SmolLM2's own vocabulary and template written the way transformers writes them.
//! And, where the folder `smol_to_hf.py` makes is at hand (`SMOL_HF_DIR`, not in CI), the GGUF's weights as
//! we hold them, un-permuted, equal transformers' tensors value for value.

mod common;

use lora_lab::io::{export_lm, gguf_llama, read_gguf, read_tensors, Data, HfFolder};
use lora_lab::lab::GenerateRequest;
use lora_lab::lm::LmActivations;
use lora_lab::text::Message;

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";


#[test]
fn a_folder_with_grouped_query_attention_and_tied_embeddings_loads_and_runs() {
    let model = common::small_smol_vocab();
    let (config_json, safetensors) = export_lm(&model).unwrap();
    assert!(config_json.contains("\"num_key_value_heads\": 2") && config_json.contains("\"tie_word_embeddings\": true"));
    let (tokenizer_json, tokenizer_config) = common::smol_tokenizer_files();
    let folder = HfFolder {
        config_json: &config_json,
        safetensors: &safetensors,
        tokenizer_json: &tokenizer_json,
        tokenizer_config_json: Some(&tokenizer_config),
        chat_template: None,
    };
    let mut lab = common::new_lab();
    let info = lab.llm_load_hf(&folder, "tiny").unwrap();
    assert_eq!((info.name.as_str(), info.params, info.kv_heads, info.vocab), ("tiny", model.num_params(), 2, 49152));
    assert_eq!(lab.llm_tokenize("  9").unwrap(), [256, 41]);
    let text = lab.llm_apply_chat_template(&[Message::new("user", "Hello!")], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
    // The lab's logits are the model's.
    let ids = lab.llm_tokenize(&text).unwrap();
    let got = lab.llm_logits(&ids, false).unwrap();
    let mut acts = LmActivations::for_inference();
    model.forward(&ids, 1, ids.len(), &mut acts, None).unwrap();
    assert_eq!(got.logits, acts.logits);
    let req = GenerateRequest { messages: Some(vec![Message::new("user", "Hi")]), max_new_tokens: Some(5.0), ..Default::default() };
    assert!(lab.llm_generate(&req, &mut |_| true).unwrap().ids.len() <= 5);

    // A tokenizer.json that is not one fails with its file's name; the model loaded before stays.
    let bad = HfFolder { tokenizer_json: "{\"model\": {}}", ..folder };
    let msg = lab.llm_load_hf(&bad, "broken").unwrap_err().to_string();
    assert!(msg.starts_with("tokenizer.json: "), "{msg}");
    assert_eq!(lab.llm_info().unwrap().name, "tiny");
    let bad_template = HfFolder { tokenizer_config_json: Some("{\"chat_template\": \"{% if %}\"}"), ..folder };
    let msg = lab.llm_load_hf(&bad_template, "broken").unwrap_err().to_string();
    assert!(msg.starts_with("tokenizer_config.json: chat template"), "{msg}");
}

/// transformers' dequantised, un-permuted tensors (the folder `smol_to_hf.py` writes) against the GGUF's
/// weights as we hold them. Needs `SMOL_HF_DIR` (or /work/scratch/hf); not run in CI, which has no PyTorch.
#[test]
#[ignore = "needs the Hugging Face folder made by ../shared/peers/smol_to_hf.py (SMOL_HF_DIR)"]
fn the_gguf_weights_are_transformers_tensors_value_for_value() {
    let dir = std::env::var("SMOL_HF_DIR").unwrap_or_else(|_| "/work/scratch/hf".into());
    let bytes = std::fs::read(format!("{dir}/model.safetensors")).expect("SMOL_HF_DIR/model.safetensors");
    let hf = read_tensors(&bytes, "model.safetensors").unwrap();
    let g = read_gguf(common::smol_gguf(), FILE).unwrap();
    let model = gguf_llama(&g, common::smol_gguf()).unwrap();
    let params = model.cfg.linear_modules();
    let mut checked = 0;
    for (i, (name, _, _)) in params.iter().enumerate() {
        let key = if name == "lm_head" { "model.embed_tokens.weight".to_string() } else { format!("{name}.weight") };
        let Data::F32(want) = &hf[&key].data else { panic!("{key} is f32") };
        let got = model.linears[i].dense_weight();
        assert!(got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "{key}");
        checked += 1;
    }
    assert_eq!(checked, 211);
}
