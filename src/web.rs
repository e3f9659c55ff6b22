//! The wasm-bindgen facade: the only module that knows JavaScript exists. Thin by design — it converts
//! arguments, calls `Lab`, and turns every `LabError` into a JS `Error` with the same message.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::bench;
use crate::error::LabError;
use crate::io::HfFolder;
use crate::lab::{
    AdapterSettings, BaseForm, BaseSettings, CheckpointInfo, GenerateRequest, Lab, LlmAdapterSettings, LlmData,
    LmAdapterSettings, LmBaseSettings, QuantizeSettings,
};
use crate::lm::Sampling;
use crate::text::Message;

#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

type JsResult<T> = Result<T, JsError>;

fn err(e: LabError) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> JsResult<JsValue> {
    // Maps become plain objects, so the page sees `{ base, adapted }` rather than a Map.
    let ser = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    v.serialize(&ser).map_err(|e| JsError::new(&format!("cannot convert a result for JavaScript: {e}")))
}

fn from_js<T: serde::de::DeserializeOwned>(what: &str, v: JsValue) -> JsResult<T> {
    if v.is_undefined() || v.is_null() {
        return serde_wasm_bindgen::from_value(js_sys::Object::new().into())
            .map_err(|e| JsError::new(&format!("invalid {what}: {e}")));
    }
    serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("invalid {what}: {e}")))
}

/// Seconds from the worker's `performance.now()` (sub-millisecond where the page is isolated).
fn now_seconds() -> f64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("performance")).ok();
    let now = perf
        .as_ref()
        .and_then(|p| js_sys::Reflect::get(p, &JsValue::from_str("now")).ok())
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    match (perf, now) {
        (Some(p), Some(f)) => f.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or(0.0) / 1000.0,
        _ => js_sys::Date::now() / 1000.0,
    }
}

/// What this module was built with: `{ threads, relaxedSimd, poolThreads }`.
#[wasm_bindgen(js_name = buildInfo)]
pub fn build_info() -> JsResult<JsValue> {
    to_js(&crate::lab::BuildInfo::now())
}

/// The lab, owned by the worker.
#[wasm_bindgen(js_name = Lab)]
pub struct LabHandle {
    lab: Lab,
}

#[wasm_bindgen(js_class = Lab)]
impl LabHandle {
    #[wasm_bindgen(constructor)]
    pub fn new() -> LabHandle {
        LabHandle { lab: Lab::new(now_seconds) }
    }

    /// Parses the four MNIST files → `{ train, test }` sample counts.
    #[wasm_bindgen(js_name = loadData)]
    pub fn load_data(
        &mut self,
        train_images: Vec<u8>,
        train_labels: &[u8],
        test_images: Vec<u8>,
        test_labels: &[u8],
    ) -> JsResult<JsValue> {
        let (train, test) = self.lab.load_data(train_images, train_labels, test_images, test_labels).map_err(err)?;
        #[derive(Serialize)]
        struct Counts {
            train: usize,
            test: usize,
        }
        to_js(&Counts { train, test })
    }

    #[wasm_bindgen(js_name = startBase)]
    pub fn start_base(&mut self, settings: JsValue) -> JsResult<()> {
        let s: BaseSettings = from_js("trainBase settings", settings)?;
        self.lab.start_base(&s).map_err(err)
    }

    /// Runs up to `n` batches of the current run → Progress.
    #[wasm_bindgen(js_name = trainStep)]
    pub fn train_step(&mut self, n: usize) -> JsResult<JsValue> {
        to_js(&self.lab.train_step(n).map_err(err)?)
    }

    /// Ends the current run, keeping its model → RunSummary.
    pub fn finish(&mut self, cancelled: bool) -> JsResult<JsValue> {
        to_js(&self.lab.finish(cancelled).map_err(err)?)
    }

    #[wasm_bindgen(js_name = isTraining)]
    pub fn is_training(&self) -> bool {
        self.lab.is_training()
    }

    #[wasm_bindgen(js_name = hasModel)]
    pub fn has_model(&self) -> bool {
        self.lab.base().is_some()
    }

    /// Test-set metrics of the model being trained now (for the per-epoch accuracy).
    #[wasm_bindgen(js_name = evaluateCurrent)]
    pub fn evaluate_current(&mut self) -> JsResult<JsValue> {
        to_js(&self.lab.evaluate_current().map_err(err)?)
    }

    pub fn evaluate(&mut self) -> JsResult<JsValue> {
        to_js(&self.lab.evaluate().map_err(err)?)
    }

    pub fn classify(&mut self, pixels: Vec<f64>) -> JsResult<JsValue> {
        to_js(&self.lab.classify(&pixels).map_err(err)?)
    }

    #[wasm_bindgen(js_name = startAdapter)]
    pub fn start_adapter(&mut self, settings: JsValue) -> JsResult<()> {
        let s: AdapterSettings = from_js("trainAdapter settings", settings)?;
        self.lab.start_adapter(&s).map_err(err)
    }

    /// Ends an adapter run → its AdapterSummary (the run's own numbers included).
    #[wasm_bindgen(js_name = finishAdapter)]
    pub fn finish_adapter(&mut self, cancelled: bool) -> JsResult<JsValue> {
        let (_, summary) = self.lab.finish_run(cancelled).map_err(err)?;
        to_js(&summary)
    }

    pub fn adapters(&self) -> JsResult<JsValue> {
        to_js(&self.lab.adapters())
    }

    #[wasm_bindgen(js_name = setAdapter)]
    pub fn set_adapter(&mut self, name: Option<String>) -> JsResult<JsValue> {
        to_js(&self.lab.set_active(name.as_deref()).map_err(err)?)
    }

    pub fn merge(&mut self, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.merge(name).map_err(err)?)
    }

    pub fn unmerge(&mut self, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.unmerge(name).map_err(err)?)
    }

    #[wasm_bindgen(js_name = deleteAdapter)]
    pub fn delete_adapter(&mut self, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.delete_adapter(name).map_err(err)?)
    }

    /// model.safetensors; `form` (`BaseForm`): "held" (default), "dequantized" or "original".
    #[wasm_bindgen(js_name = exportModel)]
    pub fn export_model(&self, form: Option<String>) -> JsResult<Vec<u8>> {
        let form = BaseForm::parse(form.as_deref().unwrap_or("held")).map_err(err)?;
        self.lab.export_model_as(form).map_err(err)
    }

    /// `{ type: 'nf4', doubleQuant }` → Quantization; on error nothing changes.
    #[wasm_bindgen(js_name = quantizeBase)]
    pub fn quantize_base(&mut self, settings: JsValue) -> JsResult<JsValue> {
        let s: QuantizeSettings = from_js("quantizeBase settings", settings)?;
        to_js(&self.lab.quantize_base(&s).map_err(err)?)
    }

    #[wasm_bindgen(js_name = dequantizeBase)]
    pub fn dequantize_base(&mut self) -> JsResult<JsValue> {
        to_js(&self.lab.dequantize_base().map_err(err)?)
    }

    /// → Quantization `{ quantized, doubleQuant, linears, f32Bytes, bytes }`.
    #[wasm_bindgen(js_name = baseQuantization)]
    pub fn base_quantization(&self) -> JsResult<JsValue> {
        to_js(&self.lab.base_quantization())
    }

    /// Loads `model.safetensors` → its parameter count; on error nothing changes.
    #[wasm_bindgen(js_name = importModel)]
    pub fn import_model(&mut self, bytes: &[u8]) -> JsResult<usize> {
        self.lab.import_model(bytes).map_err(err)
    }

    /// → `{ safetensors: Uint8Array, config: object, baseModel: Uint8Array | null }`.
    #[wasm_bindgen(js_name = exportAdapter)]
    pub fn export_adapter(&self, name: &str) -> JsResult<JsValue> {
        let files = self.lab.export_adapter(name).map_err(err)?;
        let out = files_object(&files.config.to_json_pretty(), &files.safetensors)?;
        let base_model = files.base_model.map_or(JsValue::NULL, |b| js_sys::Uint8Array::from(&b[..]).into());
        js_sys::Reflect::set(&out, &JsValue::from_str("baseModel"), &base_model)
            .map_err(|_| JsError::new("cannot build the export object"))?;
        Ok(out.into())
    }

    /// Loads an adapter (config as JSON text) → AdapterSummary; on error nothing changes.
    #[wasm_bindgen(js_name = importAdapter)]
    pub fn import_adapter(
        &mut self,
        name: &str,
        safetensors: &[u8],
        config_json: &str,
        base_model: Option<Vec<u8>>,
    ) -> JsResult<JsValue> {
        to_js(&self.lab.import_adapter(name, safetensors, config_json, base_model.as_deref()).map_err(err)?)
    }

    /// Low-rank approximation of `rows` (array of arrays) at `rank` → `{ S, A, B, approx, error, tailError }`.
    pub fn svd(rows: JsValue, rank: f64) -> JsResult<JsValue> {
        let rows: Vec<Vec<f64>> = from_js("matrix", rows)?;
        let rank = crate::lab::whole("rank", rank, 1, 64).map_err(err)? as usize;
        to_js(&Lab::svd(&rows, rank).map_err(err)?)
    }

    #[wasm_bindgen(js_name = layerSvd)]
    pub fn layer_svd(&self, layer: &str, rank: f64) -> JsResult<JsValue> {
        let rank = crate::lab::whole("rank", rank, 1, 784).map_err(err)? as usize;
        to_js(&self.lab.layer_svd(layer, rank).map_err(err)?)
    }
}

/// The language model (`window.lab.lm`): the same thin conversions.
#[wasm_bindgen(js_class = Lab)]
impl LabHandle {
    /// Parses the three corpora → `[words, pokemon, names]` line counts.
    #[wasm_bindgen(js_name = lmLoadData)]
    pub fn lm_load_data(&mut self, words: &[u8], pokemon: &[u8], names: &[u8]) -> JsResult<Vec<f64>> {
        Ok(self.lab.lm_load_data(words, pokemon, names).map_err(err)?.iter().map(|&n| n as f64).collect())
    }

    /// A person's own data checked as an adapter run reads it → `{ lines, train, heldOut, heldOutFirst }`.
    #[wasm_bindgen(js_name = lmUserData)]
    pub fn lm_user_data(&self, bytes: &[u8]) -> JsResult<JsValue> {
        to_js(&self.lab.lm_user_data(bytes).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmStartBase)]
    pub fn lm_start_base(&mut self, settings: JsValue) -> JsResult<()> {
        let s: LmBaseSettings = from_js("lm.trainBase settings", settings)?;
        self.lab.lm_start_base(&s).map_err(err)
    }

    #[wasm_bindgen(js_name = lmStartAdapter)]
    pub fn lm_start_adapter(&mut self, settings: JsValue) -> JsResult<()> {
        let s: LmAdapterSettings = from_js("lm.trainAdapter settings", settings)?;
        self.lab.lm_start_adapter(&s).map_err(err)
    }

    /// Runs up to `n` batches → LmProgress (with the held-out loss and checkpoint when an epoch closed).
    #[wasm_bindgen(js_name = lmTrainStep)]
    pub fn lm_train_step(&mut self, n: usize) -> JsResult<JsValue> {
        to_js(&self.lab.lm_train_step(n).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmFinish)]
    pub fn lm_finish(&mut self, cancelled: bool) -> JsResult<JsValue> {
        to_js(&self.lab.lm_finish(cancelled).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmIsTraining)]
    pub fn lm_is_training(&self) -> bool {
        self.lab.lm_is_training()
    }

    #[wasm_bindgen(js_name = lmHasModel)]
    pub fn lm_has_model(&self) -> bool {
        self.lab.lm_base().is_some()
    }

    #[wasm_bindgen(js_name = lmEvaluate)]
    pub fn lm_evaluate(&mut self) -> JsResult<JsValue> {
        to_js(&self.lab.lm_evaluate().map_err(err)?)
    }

    /// → array of `n` strings.
    #[wasm_bindgen(js_name = lmGenerate)]
    pub fn lm_generate(&mut self, n: f64, temperature: f64, top_k: f64, seed: f64, adapted: bool) -> JsResult<JsValue> {
        let (n, sampling, seed) = sampling_args(n, temperature, top_k, seed)?;
        to_js(&self.lab.lm_generate(n, sampling, seed, adapted).map_err(err)?)
    }

    /// Samples of the run in progress → `{ base: [n], adapted: [n] | null }`.
    #[wasm_bindgen(js_name = lmRunSamples)]
    pub fn lm_run_samples(&mut self, n: f64, temperature: f64, top_k: f64, seed: f64) -> JsResult<JsValue> {
        let (n, sampling, seed) = sampling_args(n, temperature, top_k, seed)?;
        to_js(&self.lab.lm_run_samples(n, sampling, seed).map_err(err)?)
    }

    /// Logits (ids.length × vocab, row-major) for token ids.
    #[wasm_bindgen(js_name = lmLogits)]
    pub fn lm_logits(&mut self, ids: Vec<u16>, adapted: bool) -> JsResult<Vec<f32>> {
        self.lab.lm_logits(&ids, adapted).map_err(err)
    }

    #[wasm_bindgen(js_name = lmScore)]
    pub fn lm_score(&mut self, text: &str) -> JsResult<JsValue> {
        to_js(&self.lab.lm_score(text).map_err(err)?)
    }

    /// → `{ config: object, safetensors: Uint8Array }`; `form` as for `exportModel`.
    #[wasm_bindgen(js_name = lmExportBase)]
    pub fn lm_export_base(&self, form: Option<String>) -> JsResult<JsValue> {
        let form = BaseForm::parse(form.as_deref().unwrap_or("held")).map_err(err)?;
        let (config, st) = self.lab.lm_export_base_as(form).map_err(err)?;
        files_object(&config, &st).map(Into::into)
    }

    #[wasm_bindgen(js_name = lmQuantizeBase)]
    pub fn lm_quantize_base(&mut self, settings: JsValue) -> JsResult<JsValue> {
        let s: QuantizeSettings = from_js("lm.quantizeBase settings", settings)?;
        to_js(&self.lab.lm_quantize_base(&s).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmDequantizeBase)]
    pub fn lm_dequantize_base(&mut self) -> JsResult<JsValue> {
        to_js(&self.lab.lm_dequantize_base().map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmBaseQuantization)]
    pub fn lm_base_quantization(&self) -> JsResult<JsValue> {
        to_js(&self.lab.lm_base_quantization())
    }

    #[wasm_bindgen(js_name = lmImportBase)]
    pub fn lm_import_base(&mut self, config_json: &str, safetensors: &[u8]) -> JsResult<usize> {
        self.lab.lm_import_base(config_json, safetensors).map_err(err)
    }

    /// → `{ config: object, safetensors: Uint8Array }`.
    #[wasm_bindgen(js_name = lmExportAdapter)]
    pub fn lm_export_adapter(&self, name: &str) -> JsResult<JsValue> {
        let f = self.lab.lm_export_adapter(name).map_err(err)?;
        files_object(&f.config.to_json_pretty(), &f.safetensors).map(Into::into)
    }

    #[wasm_bindgen(js_name = lmImportAdapter)]
    pub fn lm_import_adapter(&mut self, name: &str, safetensors: &[u8], config_json: &str) -> JsResult<JsValue> {
        to_js(&self.lab.lm_import_adapter(name, safetensors, config_json).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmAdapters)]
    pub fn lm_adapters(&self) -> JsResult<JsValue> {
        to_js(&self.lab.lm_adapters())
    }

    #[wasm_bindgen(js_name = lmSetAdapter)]
    pub fn lm_set_adapter(&mut self, name: Option<String>) -> JsResult<JsValue> {
        to_js(&self.lab.lm_set_active(name.as_deref()).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmMerge)]
    pub fn lm_merge(&mut self, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.lm_merge(name).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmUnmerge)]
    pub fn lm_unmerge(&mut self, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.lm_unmerge(name).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmDeleteAdapter)]
    pub fn lm_delete_adapter(&mut self, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.lm_delete_adapter(name).map_err(err)?)
    }

    #[wasm_bindgen(js_name = lmCheckpoints)]
    pub fn lm_checkpoints(&self) -> JsResult<JsValue> {
        to_js(&self.lab.lm_checkpoints())
    }

    #[wasm_bindgen(js_name = lmRestoreCheckpoint)]
    pub fn lm_restore_checkpoint(&mut self, id: f64) -> JsResult<JsValue> {
        let id = crate::lab::whole("checkpoint", id, 0, u32::MAX as u64).map_err(err)? as usize;
        to_js(&self.lab.lm_restore_checkpoint(id).map_err(err)?)
    }
}

/// Sampling settings as the page sends them, checked: (n, sampling, seed).
fn sampling_args(n: f64, temperature: f64, top_k: f64, seed: f64) -> JsResult<(usize, Sampling, u64)> {
    let n = crate::lab::whole("n", n, 1, 256).map_err(err)? as usize;
    let top_k = crate::lab::whole("top-k", top_k, 0, 264).map_err(err)? as usize;
    let seed = crate::lab::whole("seed", seed, 0, u32::MAX as u64).map_err(err)?;
    if !(temperature.is_finite() && (0.0..=10.0).contains(&temperature)) {
        return Err(err(LabError::setting("temperature", format!("{temperature} is not a number from 0 to 10"))));
    }
    Ok((n, Sampling { temperature: temperature as f32, top_k, top_p: 1.0 }, seed))
}

/// The checkpoint folders (`window.lab.lm` keeps them in the browser across reloads).
#[wasm_bindgen(js_class = Lab)]
impl LabHandle {
    /// → `{ info, config: object, safetensors: Uint8Array }`.
    #[wasm_bindgen(js_name = lmExportCheckpoint)]
    pub fn lm_export_checkpoint(&self, id: f64) -> JsResult<JsValue> {
        let id = crate::lab::whole("checkpoint", id, 0, u32::MAX as u64).map_err(err)? as usize;
        let (info, config, st) = self.lab.lm_export_checkpoint(id).map_err(err)?;
        let out = files_object(&config, &st)?;
        js_sys::Reflect::set(&out, &JsValue::from_str("info"), &to_js(&info)?)
            .map_err(|_| JsError::new("cannot build the export object"))?;
        Ok(out.into())
    }

    /// `info` as `lmCheckpoints` lists it (its id is ignored) → the checkpoint's new info.
    #[wasm_bindgen(js_name = lmImportCheckpoint)]
    pub fn lm_import_checkpoint(&mut self, info: JsValue, config_json: &str, safetensors: &[u8]) -> JsResult<JsValue> {
        let info: CheckpointInfo = from_js("checkpoint info", info)?;
        to_js(&self.lab.lm_import_checkpoint(&info, config_json, safetensors).map_err(err)?)
    }
}

/// The pretrained model of part 3 (`window.lab.llm`): the same thin conversions.
#[wasm_bindgen(js_class = Lab)]
impl LabHandle {
    /// Loads a GGUF file's bytes (`file` names it in errors; an empty `name` takes the file's own) → LlmInfo;
    /// on error the model loaded before stays.
    #[wasm_bindgen(js_name = llmLoadGguf)]
    pub fn llm_load_gguf(&mut self, bytes: Vec<u8>, file: &str, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.llm_load_gguf(bytes, file, name).map_err(err)?)
    }

    /// Loads a Hugging Face folder's files (config.json's text, model.safetensors's bytes in f32, f16 or
    /// bf16, tokenizer.json's text, tokenizer_config.json's and chat_template.jinja's text where the folder
    /// has them; an empty `name` is "Hugging Face model") → LlmInfo; on error the model loaded before stays.
    #[wasm_bindgen(js_name = llmLoadHf)]
    pub fn llm_load_hf(
        &mut self,
        config_json: &str,
        safetensors: &[u8],
        tokenizer_json: &str,
        tokenizer_config_json: Option<String>,
        chat_template: Option<String>,
        name: &str,
    ) -> JsResult<JsValue> {
        let folder = HfFolder {
            config_json,
            safetensors,
            tokenizer_json,
            tokenizer_config_json: tokenizer_config_json.as_deref(),
            chat_template: chat_template.as_deref(),
        };
        to_js(&self.lab.llm_load_hf(&folder, name).map_err(err)?)
    }

    /// `{ type: 'nf4', doubleQuant }` → Quantization: the model's projections held in NF4, quantised from
    /// the weights as read (which stay); on error nothing changes.
    #[wasm_bindgen(js_name = llmQuantizeBase)]
    pub fn llm_quantize_base(&mut self, settings: JsValue) -> JsResult<JsValue> {
        let s: QuantizeSettings = from_js("llm.quantizeBase settings", settings)?;
        to_js(&self.lab.llm_quantize_base(&s).map_err(err)?)
    }

    /// The model back to its weights as read, bit for bit → Quantization.
    #[wasm_bindgen(js_name = llmDequantizeBase)]
    pub fn llm_dequantize_base(&mut self) -> JsResult<JsValue> {
        to_js(&self.lab.llm_dequantize_base().map_err(err)?)
    }

    #[wasm_bindgen(js_name = llmBaseQuantization)]
    pub fn llm_base_quantization(&self) -> JsResult<JsValue> {
        to_js(&self.lab.llm_base_quantization())
    }

    /// → LlmInfo, or null when no model is loaded.
    #[wasm_bindgen(js_name = llmStatus)]
    pub fn llm_status(&self) -> JsResult<JsValue> {
        self.lab.llm_info().map_or(Ok(JsValue::NULL), |info| to_js(&info))
    }

    #[wasm_bindgen(js_name = llmTokenize)]
    pub fn llm_tokenize(&self, text: &str) -> JsResult<Vec<u32>> {
        self.lab.llm_tokenize(text).map_err(err)
    }

    #[wasm_bindgen(js_name = llmDetokenize)]
    pub fn llm_detokenize(&self, ids: Vec<u32>) -> JsResult<String> {
        self.lab.llm_detokenize(&ids).map_err(err)
    }

    /// `messages`: `[{ role, content }]` → the text the model's chat template writes.
    #[wasm_bindgen(js_name = llmApplyChatTemplate)]
    pub fn llm_apply_chat_template(&self, messages: JsValue, add_generation_prompt: bool) -> JsResult<String> {
        let messages: Vec<Message> = from_js("messages", messages)?;
        self.lab.llm_apply_chat_template(&messages, add_generation_prompt).map_err(err)
    }

    /// → `{ vocab, logits: Float32Array (ids.length × vocab, row-major) }`.
    #[wasm_bindgen(js_name = llmLogits)]
    pub fn llm_logits(&mut self, ids: Vec<u32>, adapted: bool) -> JsResult<JsValue> {
        let l = self.lab.llm_logits(&ids, adapted).map_err(err)?;
        let out = js_sys::Object::new();
        let logits = js_sys::Float32Array::from(&l.logits[..]);
        js_sys::Reflect::set(&out, &JsValue::from_str("vocab"), &JsValue::from_f64(l.vocab as f64))
            .and_then(|_| js_sys::Reflect::set(&out, &JsValue::from_str("logits"), &logits))
            .map_err(|_| JsError::new("cannot build the logits object"))?;
        Ok(out.into())
    }

    /// A GenerateRequest → Generated; `on_text(piece)` is called with the text as it grows, and a
    /// returned `false` (or a throw) stops the generation.
    #[wasm_bindgen(js_name = llmGenerate)]
    pub fn llm_generate(&mut self, request: JsValue, on_text: &js_sys::Function) -> JsResult<JsValue> {
        let req: GenerateRequest = from_js("llm.generate request", request)?;
        let mut call = |piece: &str| {
            on_text.call1(&JsValue::NULL, &JsValue::from_str(piece)).is_ok_and(|v| v.as_bool() != Some(false))
        };
        to_js(&self.lab.llm_generate(&req, &mut call).map_err(err)?)
    }
    /// The demo task's rows from the corpora's bytes → `[trainJsonl, testJsonl]` (kept for `data: 'demo'`).
    #[wasm_bindgen(js_name = llmDemoData)]
    pub fn llm_demo_data(&mut self, words_json: &[u8], names_txt: &[u8]) -> JsResult<Vec<String>> {
        let (train, test) = self.lab.llm_demo_data(words_json, names_txt).map_err(err)?;
        Ok(vec![train, test])
    }

    /// LlmAdapterSettings → SftStart; nothing changes when a setting or the data is bad.
    #[wasm_bindgen(js_name = llmStartAdapter)]
    pub fn llm_start_adapter(&mut self, settings: JsValue) -> JsResult<JsValue> {
        let s: LlmAdapterSettings = from_js("llm.trainAdapter settings", settings)?;
        to_js(&self.lab.llm_start_adapter(&s).map_err(err)?)
    }

    /// LlmAdapterSettings (`data` not read) → LlmPlanInfo: PEFT's count of the adapter they make.
    #[wasm_bindgen(js_name = llmPlan)]
    pub fn llm_plan(&self, settings: JsValue) -> JsResult<JsValue> {
        let s: LlmAdapterSettings = from_js("llm.plan settings", settings)?;
        to_js(&self.lab.llm_plan(&s).map_err(err)?)
    }

    /// LlmAdapterSettings and a training sequence's index → SftDataInfo: the data as a run takes them.
    #[wasm_bindgen(js_name = llmInspectData)]
    pub fn llm_inspect_data(&self, settings: JsValue, example: usize) -> JsResult<JsValue> {
        let s: LlmAdapterSettings = from_js("llm.inspectData settings", settings)?;
        to_js(&self.lab.llm_inspect_data(&s, example).map_err(err)?)
    }

    /// Up to `n` optimizer steps → SftProgress (the first call measures the held-out loss instead).
    #[wasm_bindgen(js_name = llmTrainStep)]
    pub fn llm_train_step(&mut self, n: usize) -> JsResult<JsValue> {
        to_js(&self.lab.llm_train_step(n).map_err(err)?)
    }

    #[wasm_bindgen(js_name = llmFinish)]
    pub fn llm_finish(&mut self, cancelled: bool) -> JsResult<JsValue> {
        to_js(&self.lab.llm_finish(cancelled).map_err(err)?)
    }

    /// `data`: undefined (the active adapter's data, else the demo) or LlmData → SftEvaluation.
    #[wasm_bindgen(js_name = llmEvaluate)]
    pub fn llm_evaluate(&mut self, data: JsValue) -> JsResult<JsValue> {
        let data: Option<LlmData> =
            if data.is_undefined() || data.is_null() { None } else { Some(from_js("llm.evaluate data", data)?) };
        to_js(&self.lab.llm_evaluate(data.as_ref()).map_err(err)?)
    }

    #[wasm_bindgen(js_name = llmAdapters)]
    pub fn llm_adapters(&self) -> JsResult<JsValue> {
        to_js(&self.lab.llm_adapters())
    }

    #[wasm_bindgen(js_name = llmSetAdapter)]
    pub fn llm_set_adapter(&mut self, name: Option<String>) -> JsResult<JsValue> {
        to_js(&self.lab.llm_set_active(name.as_deref()).map_err(err)?)
    }

    #[wasm_bindgen(js_name = llmDeleteAdapter)]
    pub fn llm_delete_adapter(&mut self, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.llm_delete_adapter(name).map_err(err)?)
    }

    /// PEFT's folder → `{ config: object, safetensors: Uint8Array }`.
    #[wasm_bindgen(js_name = llmExportAdapter)]
    pub fn llm_export_adapter(&self, name: &str) -> JsResult<JsValue> {
        let f = self.lab.llm_export_adapter(name).map_err(err)?;
        files_object(&f.config.to_json_pretty(), &f.safetensors).map(Into::into)
    }

    #[wasm_bindgen(js_name = llmCheckpoints)]
    pub fn llm_checkpoints(&self) -> JsResult<JsValue> {
        to_js(&self.lab.llm_checkpoints())
    }

    #[wasm_bindgen(js_name = llmRestoreCheckpoint)]
    pub fn llm_restore_checkpoint(&mut self, id: usize) -> JsResult<JsValue> {
        to_js(&self.lab.llm_restore_checkpoint(id).map_err(err)?)
    }

    /// → `{ trainPy, datasetJsonl, testJsonl }`.
    #[wasm_bindgen(js_name = llmExportTrainingScript)]
    pub fn llm_export_training_script(&self, name: &str) -> JsResult<JsValue> {
        to_js(&self.lab.llm_export_training_script(name).map_err(err)?)
    }

    /// The model with adapter `name` merged in, as a Hugging Face folder → `{ config: object,
    /// safetensors: Uint8Array }` (F16 weights).
    #[wasm_bindgen(js_name = llmExportMerged)]
    pub fn llm_export_merged(&self, name: &str) -> JsResult<JsValue> {
        let (config, safetensors) = self.lab.llm_export_merged(name).map_err(err)?;
        files_object(&config, &safetensors).map(Into::into)
    }

    /// llama.cpp's LoRA GGUF → its bytes.
    #[wasm_bindgen(js_name = llmExportGgufAdapter)]
    pub fn llm_export_gguf_adapter(&self, name: &str) -> JsResult<Vec<u8>> {
        self.lab.llm_export_gguf_adapter(name).map_err(err)
    }

    #[wasm_bindgen(js_name = llmImportAdapter)]
    pub fn llm_import_adapter(&mut self, name: &str, safetensors: &[u8], config_json: &str) -> JsResult<JsValue> {
        to_js(&self.lab.llm_import_adapter(name, safetensors, config_json).map_err(err)?)
    }

    #[wasm_bindgen(js_name = llmImportGgufAdapter)]
    pub fn llm_import_gguf_adapter(&mut self, name: &str, gguf: &[u8], file: &str) -> JsResult<JsValue> {
        to_js(&self.lab.llm_import_gguf_adapter(name, gguf, file).map_err(err)?)
    }
}

/// `{ config: <parsed JSON>, safetensors: Uint8Array }` for a folder's two files.
fn files_object(config_json: &str, safetensors: &[u8]) -> JsResult<js_sys::Object> {
    let out = js_sys::Object::new();
    let config =
        js_sys::JSON::parse(config_json).map_err(|_| JsError::new("the exported config did not parse back"))?;
    js_sys::Reflect::set(&out, &JsValue::from_str("config"), &config)
        .and_then(|_| {
            js_sys::Reflect::set(&out, &JsValue::from_str("safetensors"), &js_sys::Uint8Array::from(safetensors).into())
        })
        .map_err(|_| JsError::new("cannot build the export object"))?;
    Ok(out)
}

impl Default for LabHandle {
    fn default() -> Self {
        Self::new()
    }
}

/// For the fault test only (bench request `panic`): a real panic, which aborts the module, so the test
/// sees the page's crash banner and restart work on the genuine path.
#[wasm_bindgen(js_name = panicForFaultTest)]
pub fn panic_for_fault_test() {
    panic!("a deliberate panic for the fault test");
}

/// Benchmarks (`crate::bench`): `reps` GEMMs of a shape in one layout → the FLOPs done.
#[wasm_bindgen(js_name = benchGemm)]
pub fn bench_gemm(shape: &str, layout: &str, reps: u32) -> JsResult<f64> {
    bench::gemm(shape, layout, reps).map_err(err)
}

/// Benchmarks: the SIMD loop on every thread of the pool at once → `[flops of all threads, checksum]`.
#[wasm_bindgen(js_name = simdPeakAllThreads)]
pub fn simd_peak_all_threads(iters: u32) -> Vec<f64> {
    let (flops, check) = bench::simd_peak_all_threads(iters);
    vec![flops, check as f64]
}

/// Benchmarks: the SIMD loop on the calling thread → `[flops, checksum]`.
#[wasm_bindgen(js_name = simdPeak)]
pub fn simd_peak(iters: u32) -> Vec<f64> {
    let (flops, check) = bench::simd_peak(iters);
    vec![flops, check as f64]
}
