//! The wasm-bindgen facade: the only module that knows JavaScript exists. Thin by design — it converts
//! arguments, calls plain Rust, and turns every `LabError` into a JS `Error` with the same message.

use wasm_bindgen::prelude::*;

use crate::kernels;

#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// What this module was built with: `{ threads, relaxedSimd, poolThreads }`.
#[wasm_bindgen(js_name = buildInfo)]
pub fn build_info() -> JsValue {
    let info = js_sys::Object::new();
    let set = |k: &str, v: JsValue| {
        js_sys::Reflect::set(&info, &JsValue::from_str(k), &v).expect("set on a fresh object");
    };
    set("threads", JsValue::from_bool(cfg!(feature = "threads")));
    set("relaxedSimd", JsValue::from_bool(kernels::FUSED_MUL_ADD));
    set("poolThreads", JsValue::from_f64(rayon::current_num_threads() as f64));
    info.into()
}
