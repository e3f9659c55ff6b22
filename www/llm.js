// window.lab.llm: the pretrained LLM of part 3 (SmolLM2-135M-Instruct, or a person's own Llama-family GGUF),
// through the worker (requests llm* in www/protocol.js). Numeric settings pass the forms' rule
// (www/fields.js) and the other arguments are checked before anything is sent; the worker's refusals
// (the lab's messages) reject the promises as they are.
import { Request } from './protocol.js';
import { parseNumber } from './fields.js';

/** generate()'s numeric settings and the names its messages give them. */
const GENERATE_NUMBERS = { maxNewTokens: 'max new tokens', temperature: 'temperature', topK: 'top-k', topP: 'top-p', seed: 'seed' };

/**
 * The fields of the lab's GenerateRequest (src/lab/llm/generate.rs). The lab refuses others, but the
 * conversion into wasm (serde-wasm-bindgen) reads only the fields it knows, so the page refuses them here.
 */
const GENERATE_FIELDS = ['messages', 'prompt', 'maxNewTokens', 'temperature', 'topK', 'topP', 'seed', 'adapted', 'activations'];

/** A stop can reach a generation in flight only through shared memory (a cross-origin isolated page). */
const canStop = () => typeof SharedArrayBuffer === 'function' && self.crossOriginIsolated === true;

/** `[{ role, content }]` with text in both, as the lab takes it (other fields dropped), or a refusal. */
function checkMessages(messages) {
  if (!Array.isArray(messages)) throw new Error('invalid messages: expected a list of { role, content }');
  return messages.map((m, i) => {
    if (!m || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new Error(`invalid messages: message ${i + 1} is not { role, content } with text in both`);
    }
    return { role: m.role, content: m.content };
  });
}

function checkIds(ids) {
  if (!ids || typeof ids !== 'object' || typeof ids.length !== 'number') throw new Error('invalid ids: expected a list of token ids');
  return Array.from(ids);
}

function checkBool(name, value) {
  if (value !== undefined && typeof value !== 'boolean') throw new Error(`invalid ${name}: expected true or false`);
  return value;
}

/** generate()'s request as the worker takes it: the forms' rule on the numbers, one of messages or prompt. */
function checkGenerate(opts) {
  const out = { ...opts };
  const unknown = Object.keys(out).find((k) => !GENERATE_FIELDS.includes(k));
  if (unknown !== undefined) {
    throw new Error(`invalid llm.generate request: unknown field \`${unknown}\`, expected one of ${GENERATE_FIELDS.map((f) => `\`${f}\``).join(', ')}`);
  }
  for (const [key, label] of Object.entries(GENERATE_NUMBERS)) {
    if (!(key in out)) continue;
    const r = parseNumber(out[key]);
    if (r.why) throw new Error(`${label}: ${r.why}`);
    if (r.value === undefined) delete out[key];
    else out[key] = r.value;
  }
  const has = (k) => out[k] !== undefined && out[k] !== null;
  // The lab's own message for the same fault.
  if (has('messages') === has('prompt')) throw new Error('invalid prompt: give either messages or a prompt');
  if (has('messages')) out.messages = checkMessages(out.messages);
  else if (typeof out.prompt !== 'string') throw new Error('invalid prompt: expected a string');
  delete out[has('messages') ? 'prompt' : 'messages'];
  checkBool('adapted', out.adapted);
  if (out.activations !== undefined && out.activations !== 'f32' && out.activations !== 'int8') {
    throw new Error(`invalid activations: expected 'f32' or 'int8'`);
  }
  return out;
}

/** A file's bytes given as an ArrayBuffer or a typed array (copied to the worker, never detached). */
function fileBytes(what, b) {
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  throw new Error(`invalid ${what}: expected the file's bytes (an ArrayBuffer or Uint8Array)`);
}

/** The files of `load({ hf })` and what each may be: text, or (JSON files) its parsed object. */
const HF_FILES = {
  config: { file: 'config.json', json: true, required: true },
  safetensors: { file: 'model.safetensors', bytes: true, required: true },
  tokenizer: { file: 'tokenizer.json', json: true, required: true },
  tokenizerConfig: { file: 'tokenizer_config.json', json: true },
  chatTemplate: { file: 'chat_template.jinja' },
};

/** `load`'s `hf` as the worker takes it, or a refusal naming the file. */
function checkHf(hf) {
  const usage = `expected { ${Object.entries(HF_FILES).map(([k, f]) => `${k}${f.required ? '' : '?'}`).join(', ')} }`;
  if (typeof hf !== 'object' || Array.isArray(hf)) throw new Error(`invalid hf: ${usage}`);
  const unknown = Object.keys(hf).find((k) => !(k in HF_FILES));
  if (unknown !== undefined) throw new Error(`invalid hf: unknown field \`${unknown}\`, ${usage}`);
  const out = {};
  for (const [key, { file, json, bytes, required }] of Object.entries(HF_FILES)) {
    const v = hf[key];
    if (v === undefined || v === null) {
      if (required) throw new Error(`invalid hf: ${key} (${file}) is missing`);
    } else if (bytes) {
      out[key] = fileBytes(`hf.${key} (${file})`, v);
    } else if (typeof v === 'string' || (json && typeof v === 'object' && !ArrayBuffer.isView(v) && !(v instanceof ArrayBuffer))) {
      out[key] = v;
    } else {
      throw new Error(`invalid hf: ${key} (${file}) is not ${json ? 'text or a JSON object' : 'text'}`);
    }
  }
  return out;
}

/** trainAdapter's settings as the worker takes them (fields left undefined left out), or a refusal. */
function checkSettings(what, settings) {
  if (!settings || typeof settings !== 'object') throw new Error(`invalid ${what} settings: expected an object`);
  return Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
}

export function createLlm(app) {
  const client = () => {
    if (!app.client) throw new Error('the worker is not running (restart it from the banner)');
    return app.client;
  };
  const ask = async (type, args) => client().request(type, args);
  /** Generations in flight: { flag: Int32Array on a SharedArrayBuffer | null }. */
  const running = new Set();
  const stopOne = (gen) => {
    if (gen.flag) Atomics.store(gen.flag, 0, 1);
  };

  return {
    /**
     * One of `{ builtin: 'SmolLM2-135M-Instruct' }` (the page's own file), `{ gguf: ArrayBuffer | Uint8Array,
     * name?, file? }` or `{ hf: { config, safetensors, tokenizer, tokenizerConfig?, chatTemplate? }, name? }`
     * (a Hugging Face folder: config.json as text or its parsed object, model.safetensors's bytes in f32,
     * f16 or bf16, tokenizer.json and tokenizer_config.json as text or objects, chat_template.jinja's text;
     * what `exportMerged` gives, with the base's tokenizer files) → the model's info.
     * `onProgress({ phase: 'fetch', loaded, total } | { phase: 'load' })`. A load that fails rejects with the
     * lab's reason and keeps the model loaded before.
     */
    load: async (src = {}) => {
      const { builtin, gguf, hf, name, file, onProgress } = src ?? {};
      if (onProgress !== undefined && typeof onProgress !== 'function') throw new Error('invalid onProgress: expected a function');
      const has = (v) => v !== undefined && v !== null;
      if ([builtin, gguf, hf].filter(has).length !== 1) {
        throw new Error("invalid llm.load: give one of { builtin: 'SmolLM2-135M-Instruct' }, { gguf: the file's bytes } or { hf: the folder's files }");
      }
      if (has(builtin) && typeof builtin !== 'string') throw new Error('invalid builtin: expected a model name');
      for (const [k, v] of [['name', name], ['file', file]]) {
        if (has(v) && typeof v !== 'string') throw new Error(`invalid ${k}: expected a string`);
      }
      if (has(file) && !has(gguf)) throw new Error('invalid file: it names a gguf file; give it with { gguf } only');
      const args = has(builtin) ? { builtin, name } : has(gguf) ? { gguf: fileBytes('gguf', gguf), name, file } : { hf: checkHf(hf), name };
      return client().request(Request.LLM_LOAD, args, [], { onPartial: onProgress });
    },
    /** → { loaded, info | null, training, quantization: { quantized, doubleQuant, linears, f32Bytes, bytes } }. */
    status: () => ask(Request.LLM_STATUS),
    /**
     * `{ type: 'nf4', doubleQuant: true }` → the quantization: the model's projections held in NF4 as
     * `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")` holds them, quantised from the
     * weights as read (the GGUF's blocks, which stay); adapters train and run on it. Nothing changes on error.
     */
    quantizeBase: async ({ type = 'nf4', doubleQuant = true } = {}) =>
      ask(Request.LLM_QUANTIZE_BASE, { type, doubleQuant: checkBool('doubleQuant', doubleQuant) }),
    /** The model as read again, bit for bit → the quantization. */
    dequantizeBase: () => ask(Request.LLM_DEQUANTIZE_BASE),
    tokenize: async (text) => {
      if (typeof text !== 'string') throw new Error('invalid text: expected a string');
      return ask(Request.LLM_TOKENIZE, { text });
    },
    detokenize: async (ids) => ask(Request.LLM_DETOKENIZE, { ids: checkIds(ids) }),
    applyChatTemplate: async (messages, { addGenerationPrompt = false } = {}) =>
      ask(Request.LLM_APPLY_CHAT_TEMPLATE, { messages: checkMessages(messages), addGenerationPrompt: checkBool('addGenerationPrompt', addGenerationPrompt) }),
    /** → { ids, vocab, logits: Float32Array (ids × vocab) }. */
    logits: async (ids, { adapted = false } = {}) => ask(Request.LLM_LOGITS, { ids: checkIds(ids), adapted: checkBool('adapted', adapted) }),
    /**
     * `{ messages | prompt, maxNewTokens, temperature, topK, topP, seed, adapted, onToken }` → { text, ids,
     * promptTokens, tokensPerSec, prefillTokensPerSec, seconds, finish }. `onToken(piece)` gets the text as
     * it grows (the pieces join to `text`); returning false stops the generation, as `stop()` does.
     */
    generate: async (opts = {}) => {
      const { onToken, ...rest } = opts ?? {};
      if (onToken !== undefined && typeof onToken !== 'function') throw new Error('invalid onToken: expected a function');
      const request = checkGenerate(rest);
      const gen = { flag: canStop() ? new Int32Array(new SharedArrayBuffer(4)) : null, error: null };
      const onPartial = ({ text }) => {
        if (!onToken || gen.error) return;
        try {
          if (onToken(text) === false) stopOne(gen);
        } catch (e) {
          // The generation stops and its promise rejects with this error.
          gen.error = e;
          stopOne(gen);
        }
      };
      running.add(gen);
      try {
        const out = await client().request(Request.LLM_GENERATE, { ...request, stopFlag: gen.flag }, [], { onPartial });
        if (gen.error) throw gen.error;
        return out;
      } finally {
        running.delete(gen);
      }
    },
    /** The demo task's rows: { train, test } as TRL's prompt-completion JSONL (400 and 100 rows). */
    demoData: () => ask(Request.LLM_DEMO_DATA),
    /**
     * Fine-tunes an adapter as TRL's SFTTrainer does: `{ preset: 'seed', name, data }` or `{ name, data,
     * targetModules, layersToTransform, r, loraAlpha, loraDropout, useRslora, lr, epochs, batchSize,
     * gradientAccumulationSteps, maxSeqLength, packing, packingStrategy, assistantOnlyLoss, weightDecay, warmupSteps,
     * schedule, seed, limit, exactMatchEachEpoch }` with `data` = 'demo' or `{ jsonl, testJsonl? }` →
     * { name, trainableParams, totalParams, trainablePercent, report, evalLossBefore, evalLoss, exactMatch,
     * steps, seconds, tokensPerSec, cancelled, lossHash, start }. Progress comes as the worker's events
     * (phase 'llmAdapter').
     */
    trainAdapter: async (settings = {}) => ask(Request.LLM_TRAIN_ADAPTER, checkSettings('llm.trainAdapter', settings)),
    /**
     * What `trainAdapter(settings)` would train, without training or changing anything (`data` is not
     * read) → { trainableParams, totalParams, trainablePercent, report, targetModules }: PEFT's count of
     * the adapter on the loaded model — the numbers trainAdapter then reports — and the full names of the
     * modules it adapts ('model.layers.0.self_attn.q_proj', …). Bad settings reject as trainAdapter's do.
     */
    plan: async (settings = {}) => ask(Request.LLM_PLAN, checkSettings('llm.plan', settings)),
    /**
     * `trainAdapter`'s settings' data as a run would prepare them, without training or changing anything
     * (`data`: 'demo' when left out, or `{ jsonl, testJsonl? }`; maxSeqLength, packing, assistantOnlyLoss
     * and limit apply), and training sequence `example` (0-based) → { trainRows, heldOutRows, heldOutLines,
     * trainSequences, trainTokens, trainedTokens, truncated, format: 'prompt-completion' | 'messages' |
     * 'text', example: { index, line, tokens, trainedTokens, pieces: [{ text, trained }], lengths } }.
     * trainedTokens: tokens with a loss target (TRL's completion-only / assistant-only loss). The example is
     * as training sees it: the chat template applied, cut to maxSeqLength (with packing, a packed block);
     * its pieces are runs of its tokens with the same `trained`, which join to its text; lengths are the tokens
     * of each example it holds (several in a bfd block, each attending to itself only); line is the
     * 1-based line of the training file it starts at. Bad data rejects with trainAdapter's message
     * ('train.jsonl: line 3: …'); an example past the last sequence is refused.
     */
    inspectData: async (settings = {}, { example = 0 } = {}) => {
      if (!Number.isInteger(example) || example < 0) throw new Error(`invalid example ${JSON.stringify(example)}: expected a whole number from 0`);
      return ask(Request.LLM_INSPECT_DATA, { settings: checkSettings('llm.inspectData', settings), example });
    },
    /** `{ data? }` → { base: { loss, exactMatch, answers }, adapted: … | null, expected, prompts }. */
    evaluate: async ({ data } = {}) => ask(Request.LLM_EVALUATE, data === undefined ? {} : { data }),
    adapters: () => ask(Request.LLM_ADAPTERS),
    setAdapter: async (name) => ask(Request.LLM_SET_ADAPTER, { name: name ?? null }),
    deleteAdapter: async (name) => ask(Request.LLM_DELETE_ADAPTER, { name }),
    /** `(name, { format: 'peft' | 'gguf' })` → { config, safetensors } (PEFT's folder) | { gguf } (llama.cpp's). */
    exportAdapter: async (name, { format = 'peft' } = {}) => {
      if (format !== 'peft' && format !== 'gguf') throw new Error(`invalid format ${JSON.stringify(format)}: 'peft' or 'gguf'`);
      return ask(Request.LLM_EXPORT_ADAPTER, { name, format });
    },
    /** → { config, safetensors }: the merged model as a Hugging Face folder (F16; the tokenizer is the Hub model's). */
    exportMerged: async (name) => ask(Request.LLM_EXPORT_MERGED, { name }),
    /** → { trainPy, datasetJsonl, testJsonl }: the script to go on with TRL on a GPU, and its data. */
    exportTrainingScript: async (name) => ask(Request.LLM_EXPORT_TRAINING_SCRIPT, { name }),
    /** An adapter for the loaded model: PEFT's folder `{ name, config, safetensors }`, or llama.cpp's LoRA
     *  GGUF `{ name, gguf, file? }`; checked against the model and made active. */
    importAdapter: async ({ name, config, safetensors, gguf, file }) => ask(Request.LLM_IMPORT_ADAPTER,
      gguf !== undefined ? { name, gguf: fileBytes('gguf', gguf), file } : { name, config, safetensors }),
    checkpoints: () => ask(Request.LLM_CHECKPOINTS),
    restoreCheckpoint: async (id) => ask(Request.LLM_RESTORE_CHECKPOINT, { id }),
    pause: () => ask(Request.PAUSE),
    resume: () => ask(Request.RESUME),
    cancel: () => ask(Request.CANCEL),
    /**
     * Stops the generations in flight at their next piece of text (their promises resolve with finish
     * 'stopped'); → whether there was one to stop. A page that is not cross-origin isolated has no shared
     * memory to signal through: there a generation runs to its end and this returns false.
     */
    stop: async () => {
      let any = false;
      for (const gen of running) {
        if (!gen.flag) continue;
        stopOne(gen);
        any = true;
      }
      return any;
    },
  };
}
