// Every message between the page and the worker, in one place.
//
// Page → worker:   { id, type: Request.*, args }
// Worker → page:   { id, type: 'result', value } | { id, type: 'error', message }   (answers, by id)
//                  { id, type: 'partial', value }   (before the answer: a request's stream, handed to the
//                                                    onPartial its request() was given; the llm* ones)
//                  { type: Event.*, ... }                                            (unsolicited)
//
// Requests (args → value). Settings left out take the defaults; bad settings reject with a message.
//   init          { build: 'threads'|'simd', threads }  → { build, threads, relaxedSimd, poolThreads }
//   loadData      {}  → { train: 60000, test: 10000 }   fetches www/data/*.gz, checks and parses them
//   trainBase     { seed=13, epochs=5, batchSize=64, lr=1e-3, limit }  → { epochs, steps, seconds,
//                 samplesPerSec, cancelled }; streams PROGRESS and EPOCH events with phase 'base'
//   trainAdapter  { preset: 'article' } | { name, targets, rank, alpha, scaling, init, dropout, bias, lr,
//                 epochs, batchSize, replay, seed }  → { name, trainableParams, totalParams,
//                 trainablePercent, report, seconds, steps, samplesPerSec, cancelled }; the new adapter
//                 becomes the active one; streams PROGRESS/EPOCH with phase 'adapter'
//   pause | resume | cancel   {}  → { state }   act between training steps
//   evaluate      {}  → { base: M, adapted: M|null },  M = { acc_0_7, acc_8_9, acc_all, perClass[10],
//                 confusion[10][10] } on the official test set (fractions 0–1)
//   classify      { pixels: 784 values 0–255 }  → { base: [10], adapted: [10]|null }  (probabilities)
//   svd           { rows: [[...]], rank }  → { S, A, B, approx, error, tailError }
//                 (A = U_r√S_r, B = √S_r V_rᵀ; error = ‖W − A·B‖_F, tailError = √Σ dropped σ²)
//   layerSvd      { layer: 'layers.1'|'layers.3'|'layers.5', rank }  → { S, error, shape }
//   exportModel   { dequantized=false, original=false }  → Uint8Array (model.safetensors; a 4-bit base in
//                 bitsandbytes' Linear4bit layout; dequantized: its dequantised weights in f32; original: the
//                 f32 weights kept aside while it is quantised, which the page stores)
//   quantizeBase  { type='nf4', doubleQuant=true }  → Q: the base held in 4 bits (QLoRA; QLORA.md),
//                 Q = { quantized, doubleQuant, linears, f32Bytes, bytes }; training the base is then refused
//   dequantizeBase {}  → Q: back to the f32 weights kept aside, bit for bit
//   importModel   { bytes: Uint8Array }  → { params }
//   exportAdapter { name }  → { safetensors: Uint8Array, config: object, baseModel: Uint8Array|null }
//                 (baseModel: the residual base weights a PiSSA adapter needs, else null)
//   importAdapter { safetensors: Uint8Array, config: object|string, name, baseModel?: Uint8Array }
//                 → adapter summary (baseModel: a PiSSA adapter's residual base, as exportAdapter gives)
//   adapters      {}  → { active: name|null, list: [{ name, config, trainableParams, merged }] }
//   setAdapter    { name|null }  → adapters     (null: adapter off)
//   merge | unmerge { name }  → adapters
//   deleteAdapter { name }  → adapters
//   sweep         { ranks: [..], alphas: [..], epochs, ... adapter settings }  → { rows: [{ rank, alpha,
//                 trainableParams, acc_8_9, acc_0_7, acc_all }], cancelled }; streams SWEEP_ROW events
//   status        {}  → { hasModel, training: 'idle'|'running'|'paused', adapters, quantization: Q, wasmBytes }
//                 (wasmBytes: the module's memory, which keeps its high-water mark)
//
// The language model (window.lab.lm; LANGUAGE_MODEL.md). Held-out losses are nats per predicted token.
//   lmLoadData    {}  → { words, pokemon, names } line counts   fetches www/data/{english-words.json,
//                 pokemon.json,first-names.txt}.gz, checks and parses them
//   lmTrainBase   { epochs=1, batchSize=32, lr=3e-3, weightDecay=0.1, warmupRatio=0.03,
//                 schedule='cosine'|'linear'|'constant', seed=1311, limit, samples }  → { epochs, steps,
//                 seconds, tokensPerSec, cancelled, evalLoss: [per epoch], ... }; streams PROGRESS (phase
//                 'lmBase', with tokensPerSec) and EPOCH { evalLoss, checkpoint, samples } events.
//                 samples (optional, both runs): { n=20, temperature=0.8, topK=0, seed=0 }: each EPOCH event
//                 then carries samples drawn right after that epoch (see the event)
//   lmTrainAdapter { preset: 'seed'|'new-tokens' } | { name, data: 'pokemon'|'names'|{ lines }, targetModules
//                 (list or regex string), r, loraAlpha, loraDropout, bias, useRslora, init, lr, epochs,
//                 batchSize, weightDecay, warmupRatio, schedule, seed, loadBest, samples }  → { name,
//                 trainableParams, totalParams, trainablePercent, report, seconds, tokensPerSec, evalLoss,
//                 cancelled }; phase 'lmAdapter'
//   lmUserData    { bytes: Uint8Array (a file's, or a text box's UTF-8) }  → { lines, train, heldOut,
//                 heldOutFirst: [the first 5 held-out lines] }: the lab's checks on a person's own data (at
//                 most 1 MB, UTF-8, 2+ lines, a training block's worth), or a rejection naming "your data"
//   lmEvaluate    {}  → { base: { words, <data> }, adapted: { words, <data> } | null }
//   lmGenerate    { n=20, temperature=0.8, topK=0, seed=0, adapted=true }  → [n strings]
//   lmLogits      { text | ids, adapted }  → { ids, vocab: 264, logits: Float32Array (ids × 264) }
//   lmScore       { text }  → { bytes, base: [log p per predicted token], adapted: [...] | null }
//   lmExportBase  { dequantized=false, original=false }  → { config, safetensors }  (a 4-bit base:
//                 config.json with its quantization_config, Linear4bit layout; the flags as for exportModel)
//   lmImportBase  { config, safetensors }  → { params }
//   lmQuantizeBase { type='nf4', doubleQuant=true } | lmDequantizeBase {}  → Q, as for the MLP (lm_head
//                 stays f32)
//   lmExportAdapter { name }  → { config, safetensors }
//   lmImportAdapter { config, safetensors, name }  → adapter summary
//   lmAdapters | lmSetAdapter { name|null } | lmMerge | lmUnmerge | lmDeleteAdapter { name }  → adapters
//   lmCheckpoints {}  → [{ id, adapter, epoch, step, evalLoss, best }]   (adapter null: a base checkpoint)
//   lmRestoreCheckpoint { id }  → adapters
//   lmExportCheckpoint { id }  → { info, config, safetensors }   its folder (PEFT's for an adapter, HF's for
//                 a base); works during a run too
//   lmImportCheckpoint { info, config, safetensors }  → info   keeps a checkpoint exported earlier (the
//                 page's storage after a reload) under a new id; an adapter's is checked against the base
//
// Folders as zip files (fflate, in the worker):
//   zip           { folder, files: { name: Uint8Array | string | object (→ JSON) } }  → Uint8Array, each file
//                 under folder/ (weights stored, JSON deflated)
//   unzip         { bytes, file }  → { 'config.json' | 'model.safetensors' | 'adapter_config.json' |
//                 'adapter_model.safetensors': Uint8Array } from any folder in the zip (other files skipped);
//                 rejects what is not a zip, or unpacks past 256 MB, naming `file`
//   lmStatus      {}  → { hasModel, training, adapters, checkpoints, quantization: Q }
//
// The pretrained LLM of part 3 (window.lab.llm; ../shared/PRETRAINED.md). One model at a time; a load that
// fails leaves the model loaded before. Refused while a training run is in progress (the lab's message).
//   llmLoad       { builtin: 'SmolLM2-135M-Instruct' } | { gguf: ArrayBuffer|Uint8Array, name?, file? } |
//                 { hf: { config, safetensors, tokenizer, tokenizerConfig?, chatTemplate? }, name? }  → I,
//                 I = { name, architecture, params, layers, hidden, heads, kvHeads, vocab, context,
//                 tensorTypes: { F32: n, Q4_1: n, … }, bytes, chatTemplate, sha256 }; exactly one of the three.
//                 sha256: the weights file's (the GGUF, or model.safetensors), hex, null without SubtleCrypto.
//                 The builtin is fetched from www/data/SmolLM2-135M-Instruct.Q4_1.gguf (./build.sh setup puts
//                 it there), streaming partials { phase: 'fetch', loaded, total } (bytes; total null when the
//                 server does not say) and then { phase: 'load' } while the lab reads it. hf: a Hugging Face
//                 folder's files — config.json (text or its parsed object), model.safetensors (Uint8Array |
//                 ArrayBuffer; f32, f16 or bf16), tokenizer.json (text or object), tokenizer_config.json (text
//                 or object; its chat_template and add_bos_token are read) and chat_template.jinja (text) where
//                 the folder has them; name defaults to 'Hugging Face model'; one partial { phase: 'load' }
//   llmStatus     {}  → { loaded, info: I|null, training, quantization: Q }
//   llmQuantizeBase { type='nf4', doubleQuant=true }  → Q: the model's projections held in NF4 as bitsandbytes
//                 holds them, quantised from the weights as read (a GGUF's blocks, kept beside them); the
//                 embedding and the norms stay as read | llmDequantizeBase {}  → Q: the model as read, bit for bit
//   llmTokenize   { text }  → [ids]   (the model's BPE; a BOS first only if the model asks for one)
//   llmDetokenize { ids }  → text
//   llmApplyChatTemplate { messages: [{ role, content }], addGenerationPrompt=false }  → text
//   llmLogits     { ids, adapted=false }  → { ids, vocab, logits: Float32Array (ids × vocab) }
//   llmGenerate   { messages | prompt, maxNewTokens=256, temperature=0 (greedy), topK=0 (all), topP=1, seed=0,
//                 adapted=false, stopFlag? }  → { text, ids, promptTokens, tokensPerSec, prefillTokensPerSec,
//                 seconds, finish: 'eos'|'length'|'context'|'stopped' }; streams partials { text } with each
//                 new piece of text (whole characters; the pieces join to the final text). messages go
//                 through the model's chat template with the assistant's opening after them. stopFlag: an
//                 Int32Array on a SharedArrayBuffer; a non-zero element 0 stops the generation at its next
//                 piece (the worker is inside wasm until it ends, so no message can reach it). Without
//                 SharedArrayBuffer (a page that is not cross-origin isolated) nothing can stop a generation
//                 once it has started: it runs to EOS or maxNewTokens.
//   llmDemoData   {}  → { train, test }: the demo task's JSONL (400 and 100 rows), made from the corpora
//   llmTrainAdapter { preset: 'seed', name, data } | { name, data: 'demo' | { jsonl, testJsonl? }, targetModules,
//                 layersToTransform, r, loraAlpha, loraDropout, useRslora, lr, epochs, batchSize,
//                 gradientAccumulationSteps, maxSeqLength, packing, packingStrategy, assistantOnlyLoss, weightDecay, warmupSteps,
//                 schedule, seed, limit, exactMatchEachEpoch }  → { name, trainableParams, totalParams,
//                 trainablePercent, report, evalLossBefore, evalLoss: [per epoch], exactMatch: [per epoch, where
//                 measured], steps, seconds, tokensPerSec, cancelled, lossHash, start }; posts LLM_START { … the
//                 data and the run as resolved: trainRows, heldOutRows, heldOutLines, truncated, steps,
//                 warmupSteps, … } first, then PROGRESS (phase 'llmAdapter', with tokensPerSec, evalLossBefore
//                 on the first, activationBytes) and EPOCH { evalLoss, exactMatch, checkpoint }
//   llmPlan       { … llmTrainAdapter's settings (data not read) }  → { trainableParams, totalParams,
//                 trainablePercent, report, targetModules: [full names, 'model.layers.0.self_attn.q_proj', …] }:
//                 PEFT's count of the adapter the settings make on the loaded model (the numbers llmTrainAdapter
//                 then reports), counted without making it; bad settings are refused as llmTrainAdapter refuses
//                 them; changes nothing
//   llmInspectData { settings: llmTrainAdapter's (data 'demo' when left out), example=0 }  → { trainRows,
//                 heldOutRows, heldOutLines, trainSequences, trainTokens, trainedTokens, truncated, format:
//                 'prompt-completion'|'messages'|'text', example: { index, line, tokens, trainedTokens, pieces:
//                 [{ text, trained }], lengths } }: the data prepared as llmTrainAdapter prepares them (its refusals,
//                 'train.jsonl: line 3: …'), trainedTokens counting the tokens the loss trains on (TRL's labels
//                 ≠ -100); example: training sequence `example` (0-based, refused past the last) as the model
//                 sees it in training — chat template applied, cut to maxSeqLength (with packing: a packed
//                 block) — in runs of tokens with the same `trained` (the loss's targets: completion-only or
//                 assistant-only loss), line its first token's 1-based line in the training file; changes nothing
//   llmEvaluate   { data? }  → { base: S, adapted: S | null, expected: [held-out completions], prompts },
//                 S = { loss, exactMatch (fraction, null without prompt-completion rows), answers }; prompts:
//                 the same rows' prompts as a person reads them (a conversation's last user message)
//   llmAdapters | llmSetAdapter { name|null } | llmDeleteAdapter { name }  → { active, list }
//   llmExportAdapter { name, format: 'peft'|'gguf' }  → { config, safetensors } (PEFT's folder) | { gguf }
//                 (llama.cpp's LoRA GGUF: llama-cli --lora, Ollama's ADAPTER)
//   llmExportMerged { name }  → { config, safetensors }: the model with the adapter merged in, as a Hugging
//                 Face folder (F16 weights, 269 MB for SmolLM2; its tokenizer is the Hub model's)
//   llmCheckpoints {}  → [{ id, adapter, epoch, step, evalLoss, best }]   the last run's, kept each epoch (2 at most)
//   llmRestoreCheckpoint { id }  → adapters   the checkpoint becomes its adapter, active
//   llmExportTrainingScript { name }  → { trainPy, datasetJsonl, testJsonl }: TRL's SFTTrainer with the run's
//                 LoraConfig and SFTConfig, going on from ./adapter (the PEFT folder) when it is there
//   llmImportAdapter { name, config, safetensors } | { name, gguf, file? }  → adapter summary (gguf:
//                 llama.cpp's LoRA GGUF, read back as PEFT's folder and checked the same way)
//
//   bench         { kind: 'gemm', layout, reps } → { gflops, peak, ofPeak } | { kind: 'peak'|'peakAllThreads', iters } → { gflops } |
//                 { kind: 'train', limit } → run summary | { kind: 'inference' } → { us }   (bench.html)
//                 | { kind: 'panic' }: a deliberate panic in wasm, for the fault test
//
// Events (worker → page, no id):
//   progress  { phase, epoch, epochs, step, steps, loss, smoothLoss, samplesPerSec, etaSeconds,
//             epochFinished, done, losses: [the loss of every batch since the last event] }
//             (epoch is 1-based; step counts batches over the whole run, steps is their total)
//   epoch     { phase, epoch, epochs, accuracy: { acc_0_7, acc_8_9, acc_all } }   (the MLP's phases)
//             { phase, epoch, epochs, evalLoss, baseEvalLoss, checkpoint, samples }  (phases lmBase, lmAdapter)
//             evalLoss: held-out nats per token (the adapter on); baseEvalLoss: an adapter run's with the
//             adapter off (null for a base run); samples: null, or { base: [n], adapted: [n] | null } as
//             the run's `samples` asked (or { error })
//             { phase: 'llmAdapter', epoch, epochs, evalLoss, checkpoint }
//   sweepRow  { row, index, total }
//   llmStart  SftStart: a fine-tuning run's data and schedule as the lab resolved them (see llmTrainAdapter)
//   fatal     { message }   the worker cannot go on (panic, out of memory); the page offers a restart.

export const Request = Object.freeze({
  INIT: 'init',
  LOAD_DATA: 'loadData',
  TRAIN_BASE: 'trainBase',
  TRAIN_ADAPTER: 'trainAdapter',
  PAUSE: 'pause',
  RESUME: 'resume',
  CANCEL: 'cancel',
  EVALUATE: 'evaluate',
  CLASSIFY: 'classify',
  SVD: 'svd',
  LAYER_SVD: 'layerSvd',
  EXPORT_MODEL: 'exportModel',
  QUANTIZE_BASE: 'quantizeBase',
  DEQUANTIZE_BASE: 'dequantizeBase',
  IMPORT_MODEL: 'importModel',
  EXPORT_ADAPTER: 'exportAdapter',
  IMPORT_ADAPTER: 'importAdapter',
  ADAPTERS: 'adapters',
  SET_ADAPTER: 'setAdapter',
  MERGE: 'merge',
  UNMERGE: 'unmerge',
  DELETE_ADAPTER: 'deleteAdapter',
  SWEEP: 'sweep',
  STATUS: 'status',
  BENCH: 'bench',
  LM_LOAD_DATA: 'lmLoadData',
  LM_TRAIN_BASE: 'lmTrainBase',
  LM_TRAIN_ADAPTER: 'lmTrainAdapter',
  LM_EVALUATE: 'lmEvaluate',
  LM_GENERATE: 'lmGenerate',
  LM_LOGITS: 'lmLogits',
  LM_SCORE: 'lmScore',
  LM_EXPORT_BASE: 'lmExportBase',
  LM_QUANTIZE_BASE: 'lmQuantizeBase',
  LM_DEQUANTIZE_BASE: 'lmDequantizeBase',
  LM_IMPORT_BASE: 'lmImportBase',
  LM_EXPORT_ADAPTER: 'lmExportAdapter',
  LM_IMPORT_ADAPTER: 'lmImportAdapter',
  LM_ADAPTERS: 'lmAdapters',
  LM_SET_ADAPTER: 'lmSetAdapter',
  LM_MERGE: 'lmMerge',
  LM_UNMERGE: 'lmUnmerge',
  LM_DELETE_ADAPTER: 'lmDeleteAdapter',
  LM_CHECKPOINTS: 'lmCheckpoints',
  LM_RESTORE_CHECKPOINT: 'lmRestoreCheckpoint',
  LM_STATUS: 'lmStatus',
  LM_USER_DATA: 'lmUserData',
  LM_EXPORT_CHECKPOINT: 'lmExportCheckpoint',
  LM_IMPORT_CHECKPOINT: 'lmImportCheckpoint',
  ZIP: 'zip',
  UNZIP: 'unzip',
  LLM_LOAD: 'llmLoad',
  LLM_STATUS: 'llmStatus',
  LLM_QUANTIZE_BASE: 'llmQuantizeBase',
  LLM_DEQUANTIZE_BASE: 'llmDequantizeBase',
  LLM_TOKENIZE: 'llmTokenize',
  LLM_DETOKENIZE: 'llmDetokenize',
  LLM_APPLY_CHAT_TEMPLATE: 'llmApplyChatTemplate',
  LLM_LOGITS: 'llmLogits',
  LLM_GENERATE: 'llmGenerate',
  LLM_DEMO_DATA: 'llmDemoData',
  LLM_TRAIN_ADAPTER: 'llmTrainAdapter',
  LLM_PLAN: 'llmPlan',
  LLM_INSPECT_DATA: 'llmInspectData',
  LLM_EVALUATE: 'llmEvaluate',
  LLM_ADAPTERS: 'llmAdapters',
  LLM_SET_ADAPTER: 'llmSetAdapter',
  LLM_DELETE_ADAPTER: 'llmDeleteAdapter',
  LLM_EXPORT_ADAPTER: 'llmExportAdapter',
  LLM_EXPORT_TRAINING_SCRIPT: 'llmExportTrainingScript',
  LLM_EXPORT_MERGED: 'llmExportMerged',
  LLM_CHECKPOINTS: 'llmCheckpoints',
  LLM_RESTORE_CHECKPOINT: 'llmRestoreCheckpoint',
  LLM_IMPORT_ADAPTER: 'llmImportAdapter',
});

export const Event = Object.freeze({
  PROGRESS: 'progress',
  EPOCH: 'epoch',
  SWEEP_ROW: 'sweepRow',
  LLM_START: 'llmStart',
  FATAL: 'fatal',
});

/** The page's side: turns requests into promises and hands events to `onEvent`. */
export class WorkerClient {
  constructor(worker, onEvent = () => {}) {
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.onEvent = onEvent;
    worker.addEventListener('message', (e) => this.#receive(e.data));
    worker.addEventListener('error', (e) => this.#fail(e.message || 'the worker failed to start'));
    worker.addEventListener('messageerror', () => this.#fail('a message from the worker could not be read'));
  }

  /** `onPartial(value)`: the request's partial messages (a stream), each before the answer. */
  request(type, args = {}, transfer = [], { onPartial } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onPartial });
      this.worker.postMessage({ id, type, args }, transfer);
    });
  }

  #receive(msg) {
    if (msg && msg.id !== undefined && this.pending.has(msg.id)) {
      if (msg.type === 'partial') {
        try {
          this.pending.get(msg.id).onPartial?.(msg.value);
        } catch (e) {
          console.warn(`a partial answer's handler failed:`, e);
        }
        return;
      }
      const { resolve, reject } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === 'error') reject(new Error(msg.message));
      else resolve(msg.value);
      return;
    }
    if (msg && msg.type === Event.FATAL) this.#rejectAll(msg.message);
    this.onEvent(msg);
  }

  #fail(message) {
    this.#rejectAll(message);
    this.onEvent({ type: Event.FATAL, message });
  }

  #rejectAll(message) {
    for (const { reject } of this.pending.values()) reject(new Error(message));
    this.pending.clear();
  }

  terminate() {
    this.#rejectAll('the worker was stopped');
    this.worker.terminate();
  }
}

/**
 * The worker's side: answers each request with its handler's result or error. A handler is called with
 * (args, { partial }): `partial(value, transfer)` posts a partial message of its request's stream.
 */
export function serveRequests(handlers) {
  self.addEventListener('message', async (e) => {
    const { id, type, args } = e.data || {};
    const handler = handlers[type];
    if (!handler) {
      self.postMessage({ id, type: 'error', message: `unknown request "${type}"` });
      return;
    }
    const partial = (value, transfer = []) => self.postMessage({ id, type: 'partial', value }, transfer);
    try {
      const { value, transfer = [] } = await handler(args || {}, { partial });
      self.postMessage({ id, type: 'result', value }, transfer);
    } catch (err) {
      self.postMessage({ id, type: 'error', message: errorMessage(err) });
    }
  });
}

export function errorMessage(err) {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  return String(err);
}
