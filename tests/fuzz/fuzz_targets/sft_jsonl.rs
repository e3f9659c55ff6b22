#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lora_lab_fuzz::sft_jsonl(data);
});
