// The worker owns the wasm module and does all compute; the page only sends requests (protocol.js).
import { Request, Event, serveRequests, errorMessage } from './protocol.js';
import { zipSync, unzipSync, strToU8 } from './vendor/fflate.js';

const DATA_FILES = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];
/** The language model's corpora (npm packages, checked and gzipped by the build). */
const LM_DATA_FILES = ['english-words.json', 'pokemon.json', 'first-names.txt'];
/** Wall time a training call may take before the worker looks at its messages again. */
const SLICE_MS = 80;

let wasm = null;
let lab = null;
/** The module's WebAssembly.Memory (shared with the pool threads in the threaded build). */
let memory = null;
let dataLoaded = null;
let lmDataLoaded = null;
const run = { state: 'idle', cancel: false, resume: null };

function requireLab() {
  if (!lab) throw new Error('the worker is not initialised');
  return lab;
}

async function init({ build, threads }) {
  if (wasm) throw new Error('the worker is already initialised');
  const mod = await import(build === 'threads' ? './pkg-threads/lora_lab.js' : './pkg-simd/lora_lab.js');
  memory = (await mod.default()).memory;
  if (build === 'threads') {
    await mod.initThreadPool(threads);
  }
  wasm = mod;
  lab = new mod.Lab();
  return { value: { build, ...mod.buildInfo() } };
}

async function fetchGunzip(name) {
  const url = new URL(`./data/${name}.gz`, import.meta.url);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${name}.gz: HTTP ${res.status} — run ./build.sh build to prepare the data`);
  const stream = res.body.pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function loadData() {
  requireLab();
  // Several requests may wait for the same download.
  dataLoaded ??= (async () => {
    const files = await Promise.all(DATA_FILES.map(fetchGunzip));
    return lab.loadData(...files);
  })().catch((e) => {
    dataLoaded = null;
    throw e;
  });
  return { value: await dataLoaded };
}

async function lmLoadData() {
  requireLab();
  lmDataLoaded ??= (async () => {
    const files = await Promise.all(LM_DATA_FILES.map(fetchGunzip));
    const [words, pokemon, names] = lab.lmLoadData(...files);
    return { words, pokemon, names };
  })().catch((e) => {
    lmDataLoaded = null;
    throw e;
  });
  return { value: await lmDataLoaded };
}

/** A zero-delay yield to the event loop, so pause/cancel messages are seen between slices. */
const channel = new MessageChannel();
const yieldQueue = [];
channel.port1.onmessage = () => yieldQueue.shift()?.();
function yieldToEvents() {
  return new Promise((resolve) => {
    yieldQueue.push(resolve);
    channel.port2.postMessage(null);
  });
}

/** Per-epoch report of an MLP run: test-set accuracy. */
function mlpEpoch(phase, p) {
  const m = lab.evaluateCurrent();
  self.postMessage({
    type: Event.EPOCH,
    phase,
    epoch: p.epoch,
    epochs: p.epochs,
    accuracy: { acc_0_7: m.acc_0_7, acc_8_9: m.acc_8_9, acc_all: m.acc_all },
  });
}

/** The MLP's run: its step, its end, its per-epoch report. */
const mlpRun = (finish = (cancelled) => lab.finish(cancelled)) => ({ step: (n) => lab.trainStep(n), finish, onEpoch: mlpEpoch });

/**
 * The language model's run: the lab evaluates and checkpoints each epoch inside the step. With
 * `samples` ({ n, temperature, topK, seed }), each epoch's report also carries samples drawn right then
 * (the model being trained; for an adapter run the base and the adapter so far).
 */
const lmRun = (samples) => ({
  step: (n) => lab.lmTrainStep(n),
  finish: (cancelled) => lab.lmFinish(cancelled),
  onEpoch: (phase, p) => {
    let drawn = null;
    if (samples) {
      const { n = 20, temperature = 0.8, topK = 0, seed = 0 } = samples;
      try {
        drawn = lab.lmRunSamples(Number(n), Number(temperature), Number(topK), Number(seed));
      } catch (e) {
        drawn = { error: errorMessage(e) };
      }
    }
    self.postMessage({
      type: Event.EPOCH, phase, epoch: p.epoch, epochs: p.epochs, evalLoss: p.evalLoss,
      baseEvalLoss: p.baseEvalLoss ?? null, checkpoint: p.checkpoint, samples: drawn,
    });
  },
});

/** Drives the run `lab` has started, slice by slice, streaming progress; resolves with its summary. */
async function driveRun(phase, { step, finish, onEpoch } = mlpRun()) {
  run.state = 'running';
  run.cancel = false;
  let batches = 2;
  try {
    for (;;) {
      if (run.cancel) return finish(true);
      if (run.state === 'paused') {
        await new Promise((resolve) => (run.resume = resolve));
        continue;
      }
      const t0 = performance.now();
      const p = step(batches);
      const ms = performance.now() - t0;
      // Aim each slice at SLICE_MS; grow or shrink gently.
      batches = Math.max(1, Math.min(512, Math.round(batches * Math.min(2, Math.max(0.5, SLICE_MS / Math.max(ms, 1))))));
      self.postMessage({ type: Event.PROGRESS, phase, ...p });
      if (p.epochFinished) onEpoch(phase, p);
      if (p.done) return finish(false);
      wasm.releaseMemoryViews();
      await yieldToEvents();
    }
  } finally {
    run.state = 'idle';
    run.resume = null;
    // A run that failed (a diverging loss) has already been ended by the lab.
  }
}

async function trainBase(settings) {
  await loadData();
  // The lab itself refuses a second run while one is in progress.
  lab.startBase(settings);
  return { value: await driveRun('base') };
}

async function trainAdapter(settings) {
  await loadData();
  // The lab itself refuses a second run while one is in progress.
  lab.startAdapter(settings);
  return { value: await driveRun('adapter', mlpRun((cancelled) => lab.finishAdapter(cancelled))) };
}

async function lmTrainBase({ samples, ...settings }) {
  await lmLoadData();
  lab.lmStartBase(settings);
  return { value: await driveRun('lmBase', lmRun(samples)) };
}

async function lmTrainAdapter({ samples, ...settings }) {
  await lmLoadData();
  lab.lmStartAdapter(settings);
  return { value: await driveRun('lmAdapter', lmRun(samples)) };
}

/** The most a zip may unpack to: a base folder of this lab is 3.5 MB; far larger is not one. */
const UNZIP_MAX_BYTES = 256 * 1024 * 1024;
/** The files a language-model folder holds; anything else in a zip (a README) is skipped. */
const FOLDER_FILES = new Set(['config.json', 'model.safetensors', 'adapter_config.json', 'adapter_model.safetensors']);

/**
 * A folder's files as a zip ({ name: Uint8Array | string | object (written as JSON) }, each under
 * `folder/`). Weights are stored, not deflated: float32 data barely shrinks, and storing keeps the
 * worker's time per download at a few milliseconds.
 */
function zipFolder({ folder, files }) {
  if (!files || typeof files !== 'object') throw new Error('invalid zip request: give files');
  const prefix = folder ? `${String(folder)}/` : '';
  const entries = {};
  for (const [name, data] of Object.entries(files)) {
    const bytes = data instanceof Uint8Array ? data
      : strToU8(typeof data === 'string' ? data : `${JSON.stringify(data, null, 2)}\n`);
    entries[prefix + name] = [bytes, { level: name.endsWith('.safetensors') ? 0 : 6 }];
  }
  const zip = zipSync(entries, { mtime: new Date('2026-01-01T00:00:00Z') });
  return { value: zip, transfer: [zip.buffer] };
}

/** The folder files in a zip (in any sub-folder), by name; refuses what is not a zip, or one too large. */
function unzipFolder({ bytes, file = 'the zip' }) {
  const data = bytesOf(bytes, 'zip');
  if (data.length < 22 || data[0] !== 0x50 || data[1] !== 0x4b) throw new Error(`${file} is not a zip archive`);
  let total = 0;
  let found;
  try {
    found = unzipSync(data, {
      filter: (f) => {
        const base = f.name.split('/').pop();
        if (!FOLDER_FILES.has(base)) return false;
        total += f.originalSize;
        if (total > UNZIP_MAX_BYTES) throw new Error(`it unpacks to more than ${UNZIP_MAX_BYTES / 1024 / 1024} MB`);
        return true;
      },
    });
  } catch (e) {
    throw new Error(`${file} cannot be read as a zip archive: ${errorMessage(e)}`);
  }
  const files = {};
  const transfer = [];
  for (const [path, content] of Object.entries(found)) {
    const base = path.split('/').pop();
    if (files[base]) throw new Error(`${file} holds ${base} twice (${path}); zip one folder at a time`);
    files[base] = content;
    transfer.push(content.buffer);
  }
  return { value: files, transfer };
}

function lmExportCheckpoint({ id }) {
  const out = requireLab().lmExportCheckpoint(Number(id));
  return { value: out, transfer: [out.safetensors.buffer] };
}

async function lmEvaluate() {
  await lmLoadData();
  return { value: requireLab().lmEvaluate() };
}

/** `[BOS] + utf8(text)`, or the ids given. */
function lmIds({ text, ids }) {
  if (typeof text === 'string') return Uint16Array.from([256, ...new TextEncoder().encode(text)]);
  if (ids && typeof ids.length === 'number') {
    const out = Uint16Array.from(ids, Number);
    if (out.some((v, i) => v !== Number(ids[i]))) throw new Error('invalid ids: expected whole numbers from 0 to 263');
    return out;
  }
  throw new Error('invalid logits request: give text (a string) or ids (token ids)');
}

function lmLogits({ adapted = false, ...what }) {
  const ids = lmIds(what);
  const logits = requireLab().lmLogits(ids, Boolean(adapted));
  return { value: { ids: Array.from(ids), vocab: 264, logits }, transfer: [logits.buffer] };
}

/** Trains one adapter per (rank, alpha) with the other settings fixed, and reports each. */
async function sweep({ ranks, alphas, ...settings }) {
  await loadData();
  const list = (xs, what) => {
    if (!Array.isArray(xs) || xs.length === 0 || xs.length > 16) throw new Error(`invalid ${what}: give 1 to 16 values`);
    return xs.map(Number);
  };
  const rs = list(ranks, 'ranks');
  const as = list(alphas, 'alphas');
  delete settings.name;
  const previous = lab.adapters().active;
  const rows = [];
  const total = rs.length * as.length;
  try {
    for (const rank of rs) {
      for (const alpha of as) {
        if (run.cancel) return { value: { rows, cancelled: true } };
        const name = `sweep r${rank} α${alpha}`;
        lab.startAdapter({ ...settings, name, rank, alpha });
        const summary = await driveRun('sweep', mlpRun((cancelled) => lab.finishAdapter(cancelled)));
        const { adapted } = lab.evaluate();
        lab.deleteAdapter(name);
        const row = {
          rank,
          alpha,
          trainableParams: summary.trainableParams,
          acc_8_9: adapted.acc_8_9,
          acc_0_7: adapted.acc_0_7,
          acc_all: adapted.acc_all,
          cancelled: summary.cancelled,
        };
        rows.push(row);
        self.postMessage({ type: Event.SWEEP_ROW, row, index: rows.length - 1, total });
        if (summary.cancelled) return { value: { rows, cancelled: true } };
      }
    }
  } finally {
    if (previous && lab.adapters().list.some((a) => a.name === previous)) lab.setAdapter(previous);
  }
  return { value: { rows, cancelled: false } };
}

function pause() {
  if (run.state === 'running') run.state = 'paused';
  return { value: { state: run.state } };
}

function resume() {
  if (run.state === 'paused') {
    run.state = 'running';
    run.resume?.();
  }
  return { value: { state: run.state } };
}

function cancel() {
  if (run.state !== 'idle') {
    run.cancel = true;
    if (run.state === 'paused') {
      run.state = 'running';
      run.resume?.();
    }
  }
  return { value: { state: run.state } };
}

async function evaluate() {
  await loadData();
  return { value: requireLab().evaluate() };
}

const configText = (config) => (typeof config === 'string' ? config : JSON.stringify(config ?? null));
const bytesOf = (b, what) => {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  throw new Error(`invalid ${what}: expected the file's bytes (Uint8Array)`);
};

/** The exports' flags as the lab's form of the base (BaseForm in src/lab/qlora.rs). */
const baseForm = ({ dequantized = false, original = false }) => (dequantized ? 'dequantized' : original ? 'original' : 'held');

const simple = {
  [Request.ADAPTERS]: () => requireLab().adapters(),
  [Request.SET_ADAPTER]: ({ name = null }) => requireLab().setAdapter(name ?? undefined),
  [Request.MERGE]: ({ name }) => requireLab().merge(String(name)),
  [Request.UNMERGE]: ({ name }) => requireLab().unmerge(String(name)),
  [Request.DELETE_ADAPTER]: ({ name }) => requireLab().deleteAdapter(String(name)),
  [Request.SVD]: ({ rows, rank }) => wasm.Lab.svd(rows, Number(rank)),
  [Request.LAYER_SVD]: ({ layer, rank }) => requireLab().layerSvd(String(layer), Number(rank)),
  [Request.EXPORT_MODEL]: (flags) => requireLab().exportModel(baseForm(flags)),
  [Request.QUANTIZE_BASE]: (settings) => requireLab().quantizeBase(settings),
  [Request.DEQUANTIZE_BASE]: () => requireLab().dequantizeBase(),
  [Request.IMPORT_MODEL]: ({ bytes }) => ({ params: requireLab().importModel(bytesOf(bytes, 'model file')) }),
  [Request.EXPORT_ADAPTER]: ({ name }) => requireLab().exportAdapter(String(name)),
  [Request.IMPORT_ADAPTER]: ({ safetensors, config, name = 'imported', baseModel = null }) =>
    requireLab().importAdapter(
      String(name),
      bytesOf(safetensors, 'adapter file'),
      configText(config),
      baseModel ? bytesOf(baseModel, 'base model file') : undefined,
    ),
};

const lmSimple = {
  [Request.LM_GENERATE]: ({ n = 20, temperature = 0.8, topK = 0, seed = 0, adapted = true }) =>
    requireLab().lmGenerate(Number(n), Number(temperature), Number(topK), Number(seed), Boolean(adapted)),
  [Request.LM_SCORE]: ({ text }) => {
    if (typeof text !== 'string') throw new Error('invalid text: expected a string');
    return requireLab().lmScore(text);
  },
  [Request.LM_EXPORT_BASE]: (flags) => requireLab().lmExportBase(baseForm(flags)),
  [Request.LM_QUANTIZE_BASE]: (settings) => requireLab().lmQuantizeBase(settings),
  [Request.LM_DEQUANTIZE_BASE]: () => requireLab().lmDequantizeBase(),
  [Request.LM_IMPORT_BASE]: ({ config, safetensors }) =>
    ({ params: requireLab().lmImportBase(configText(config), bytesOf(safetensors, 'model.safetensors')) }),
  [Request.LM_EXPORT_ADAPTER]: ({ name }) => requireLab().lmExportAdapter(String(name)),
  [Request.LM_IMPORT_ADAPTER]: ({ config, safetensors, name = 'imported' }) =>
    requireLab().lmImportAdapter(String(name), bytesOf(safetensors, 'adapter_model.safetensors'), configText(config)),
  [Request.LM_ADAPTERS]: () => requireLab().lmAdapters(),
  [Request.LM_SET_ADAPTER]: ({ name = null }) => requireLab().lmSetAdapter(name ?? undefined),
  [Request.LM_MERGE]: ({ name }) => requireLab().lmMerge(String(name)),
  [Request.LM_UNMERGE]: ({ name }) => requireLab().lmUnmerge(String(name)),
  [Request.LM_DELETE_ADAPTER]: ({ name }) => requireLab().lmDeleteAdapter(String(name)),
  [Request.LM_CHECKPOINTS]: () => requireLab().lmCheckpoints(),
  [Request.LM_IMPORT_CHECKPOINT]: ({ info, config, safetensors }) =>
    requireLab().lmImportCheckpoint(info, configText(config), bytesOf(safetensors, info?.adapter ? 'adapter_model.safetensors' : 'model.safetensors')),
  [Request.LM_USER_DATA]: ({ bytes }) => requireLab().lmUserData(bytesOf(bytes, 'your data')),
  [Request.LM_RESTORE_CHECKPOINT]: ({ id }) => requireLab().lmRestoreCheckpoint(Number(id)),
  [Request.LM_STATUS]: () => {
    const l = requireLab();
    return {
      hasModel: l.lmHasModel(),
      training: l.lmIsTraining() ? run.state : 'idle',
      adapters: l.lmAdapters(),
      checkpoints: l.lmCheckpoints(),
      quantization: l.lmBaseQuantization(),
    };
  },
};

// ── the pretrained LLM (part 3) ──────────────────────────────────────────────────────────────────────

/** The models the page serves itself (./build.sh setup fetches them into www/data/), by name. */
const LLM_BUILTINS = { 'SmolLM2-135M-Instruct': 'SmolLM2-135M-Instruct.Q4_1.gguf' };
/** How often a download reports its progress. */
const FETCH_PROGRESS_MS = 100;

/**
 * A file of www/data/ as one Uint8Array, posting `{ phase: 'fetch', loaded, total }` partials as it comes
 * (total: the Content-Length, null where the server gives none or the body outgrows it).
 */
async function fetchWithProgress(file, partial) {
  const res = await fetch(new URL(`./data/${file}`, import.meta.url));
  if (!res.ok) throw new Error(`${file}: HTTP ${res.status} — run ./build.sh setup to fetch the model`);
  let total = Number(res.headers.get('Content-Length')) || null;
  let buf = total ? new Uint8Array(total) : null;
  const chunks = [];
  let loaded = 0;
  let last = 0;
  partial({ phase: 'fetch', loaded, total });
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (buf && loaded + value.length <= buf.length) {
      buf.set(value, loaded);
    } else {
      // More than the header said (a compressed transfer, say): gather the pieces instead.
      if (buf) chunks.push(buf.subarray(0, loaded));
      buf = null;
      total = null;
      chunks.push(value);
    }
    loaded += value.length;
    if (performance.now() - last >= FETCH_PROGRESS_MS) {
      last = performance.now();
      partial({ phase: 'fetch', loaded, total });
    }
  }
  partial({ phase: 'fetch', loaded, total: total ?? loaded });
  if (buf) return loaded === buf.length ? buf : buf.subarray(0, loaded);
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** A Hugging Face folder's text file given as text or as its parsed JSON; `undefined` when absent. */
function hfText(value, file, { json = true, optional = false } = {}) {
  if (value === undefined || value === null) {
    if (optional) return undefined;
    throw new Error(`invalid hf: ${file} is missing`);
  }
  if (typeof value === 'string') return value;
  if (json && typeof value === 'object') return JSON.stringify(value);
  throw new Error(`invalid hf: ${file} is not ${json ? 'text or a JSON object' : 'text'}`);
}

async function llmLoad({ builtin, gguf, hf, name, file }, { partial }) {
  const l = requireLab();
  const has = (v) => v !== undefined && v !== null;
  if ([builtin, gguf, hf].filter(has).length !== 1) {
    throw new Error("invalid llm.load: give one of { builtin: 'SmolLM2-135M-Instruct' }, { gguf: the file's bytes } or { hf: the folder's files }");
  }
  if (has(builtin)) name ??= builtin;
  name = has(name) ? String(name) : '';
  if (has(hf)) {
    if (typeof hf !== 'object') throw new Error('invalid hf: expected { config, safetensors, tokenizer, tokenizerConfig?, chatTemplate? }');
    const config = hfText(hf.config, 'config.json');
    const weights = bytesOf(hf.safetensors, 'model.safetensors');
    const tokenizer = hfText(hf.tokenizer, 'tokenizer.json');
    const tokenizerConfig = hfText(hf.tokenizerConfig, 'tokenizer_config.json', { optional: true });
    const chatTemplate = hfText(hf.chatTemplate, 'chat_template.jinja', { json: false, optional: true });
    partial({ phase: 'load' });
    const sha256 = sha256Hex(weights);
    const info = l.llmLoadHf(config, weights, tokenizer, tokenizerConfig, chatTemplate, name);
    llmSha256 = await sha256;
    return { value: { ...info, sha256: llmSha256 } };
  }
  let bytes;
  if (has(builtin)) {
    file = LLM_BUILTINS[builtin];
    if (!file) throw new Error(`unknown builtin model ${JSON.stringify(String(builtin))}: the page has ${Object.keys(LLM_BUILTINS).join(', ')}`);
    bytes = await fetchWithProgress(file, partial);
  } else {
    bytes = bytesOf(gguf, 'GGUF file');
  }
  partial({ phase: 'load' });
  const sha256 = sha256Hex(bytes);
  const info = l.llmLoadGguf(bytes, String(file ?? 'the GGUF file'), name);
  llmSha256 = await sha256;
  return { value: { ...info, sha256: llmSha256 } };
}

/** The loaded model's file's SHA-256 (sha256Hex), given with its card by load and status. */
let llmSha256 = null;

/** The SHA-256 of a model's weights file in hex — the model's identity for the adapters kept with it (the
 *  page's llm-keep.js) — or null where the browser cannot compute it (no SubtleCrypto: an insecure origin). */
async function sha256Hex(bytes) {
  try {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  } catch {
    return null;
  }
}

/** Token ids as the lab takes them (whole numbers 0 to 2³²−1), or a refusal. */
function llmIds(ids) {
  if (!ids || typeof ids !== 'object' || typeof ids.length !== 'number') throw new Error('invalid ids: expected a list of token ids');
  const out = Uint32Array.from(ids, Number);
  if (out.some((v, i) => v !== Number(ids[i]))) throw new Error('invalid ids: expected whole numbers from 0 to 4294967295');
  return out;
}

function llmLogits({ ids, adapted = false }) {
  const u = llmIds(ids);
  const { vocab, logits } = requireLab().llmLogits(u, Boolean(adapted));
  return { value: { ids: Array.from(u), vocab, logits }, transfer: [logits.buffer] };
}

/**
 * Generation streams each new piece of text as a partial { text }. The worker stays inside wasm until
 * the generation ends, so a stop cannot come as a message: the page's stopFlag (a SharedArrayBuffer) is
 * read after each piece.
 */
function llmGenerate({ stopFlag = null, ...request }, { partial }) {
  const flag = stopFlag instanceof Int32Array ? stopFlag : null;
  const onText = (text) => {
    partial({ text });
    return flag === null || Atomics.load(flag, 0) === 0;
  };
  // Fields left undefined are left out (the lab refuses unknown fields and undefined values alike).
  const req = Object.fromEntries(Object.entries(request).filter(([, v]) => v !== undefined));
  return { value: requireLab().llmGenerate(req, onText) };
}

/** The demo task's rows ({ train, test } JSONL), made once from the corpora part 2 fetches. */
let llmDemo = null;
function llmDemoData() {
  llmDemo ??= (async () => {
    const [words, , names] = await Promise.all(LM_DATA_FILES.map(fetchGunzip));
    const [train, test] = requireLab().llmDemoData(words, names);
    return { train, test };
  })().catch((e) => {
    llmDemo = null;
    throw e;
  });
  return llmDemo;
}

/** A fine-tuning run: the lab measures the held-out loss before training and after each epoch. */
const llmRun = () => ({
  step: (n) => lab.llmTrainStep(n),
  finish: (cancelled) => lab.llmFinish(cancelled),
  onEpoch: (phase, p) => self.postMessage({ type: Event.EPOCH, phase, epoch: p.epoch, epochs: p.epochs, evalLoss: p.evalLoss,
    exactMatch: p.exactMatch, checkpoint: p.checkpoint }),
});

async function llmTrainAdapter(settings = {}) {
  const data = settings.data ?? 'demo';
  if (data === 'demo') await llmDemoData();
  const start = requireLab().llmStartAdapter(settings);
  self.postMessage({ type: Event.LLM_START, ...start });
  const summary = await driveRun('llmAdapter', llmRun());
  return { value: { ...summary, start } };
}

/** The data of trainAdapter's settings as llmInspectData takes them, and training sequence `example`. */
async function llmInspectData({ settings = {}, example = 0 } = {}) {
  if (!Number.isInteger(example) || example < 0 || example > 0xffffffff) {
    throw new Error(`invalid example ${JSON.stringify(example)}: expected a whole number from 0`);
  }
  if ((settings?.data ?? 'demo') === 'demo') await llmDemoData();
  return { value: requireLab().llmInspectData(settings, example) };
}

/** An adapter's files, their bytes transferred (not copied) to the page. */
function llmExportAdapter({ name, format = 'peft' }) {
  if (format === 'gguf') {
    const gguf = requireLab().llmExportGgufAdapter(String(name));
    return { value: { gguf }, transfer: [gguf.buffer] };
  }
  if (format !== 'peft') throw new Error(`invalid format ${JSON.stringify(String(format))}: 'peft' or 'gguf'`);
  const files = requireLab().llmExportAdapter(String(name));
  return { value: files, transfer: [files.safetensors.buffer] };
}

/** The merged model's folder (f16 safetensors, ~270 MB), its bytes transferred (not copied) to the page. */
function llmExportMerged({ name }) {
  const files = requireLab().llmExportMerged(String(name));
  return { value: files, transfer: [files.safetensors.buffer] };
}

async function llmEvaluate({ data } = {}) {
  if (data === undefined || data === 'demo') await llmDemoData();
  return { value: requireLab().llmEvaluate(data) };
}

const llmSimple = {
  [Request.LLM_PLAN]: (settings) => requireLab().llmPlan(settings),
  [Request.LLM_STATUS]: () => {
    const info = requireLab().llmStatus();
    return { loaded: info !== null, info: info && { ...info, sha256: llmSha256 }, training: run.state, quantization: requireLab().llmBaseQuantization() };
  },
  [Request.LLM_QUANTIZE_BASE]: (settings) => requireLab().llmQuantizeBase(settings),
  [Request.LLM_DEQUANTIZE_BASE]: () => requireLab().llmDequantizeBase(),
  [Request.LLM_TOKENIZE]: ({ text }) => {
    if (typeof text !== 'string') throw new Error('invalid text: expected a string');
    return Array.from(requireLab().llmTokenize(text));
  },
  [Request.LLM_DETOKENIZE]: ({ ids }) => requireLab().llmDetokenize(llmIds(ids)),
  [Request.LLM_APPLY_CHAT_TEMPLATE]: ({ messages, addGenerationPrompt = false }) =>
    requireLab().llmApplyChatTemplate(messages, Boolean(addGenerationPrompt)),
  [Request.LLM_ADAPTERS]: () => requireLab().llmAdapters(),
  [Request.LLM_SET_ADAPTER]: ({ name }) => requireLab().llmSetAdapter(name ?? undefined),
  [Request.LLM_DELETE_ADAPTER]: ({ name }) => requireLab().llmDeleteAdapter(String(name)),
  [Request.LLM_CHECKPOINTS]: () => requireLab().llmCheckpoints(),
  [Request.LLM_RESTORE_CHECKPOINT]: ({ id }) => requireLab().llmRestoreCheckpoint(Number(id)),
  [Request.LLM_EXPORT_TRAINING_SCRIPT]: ({ name }) => requireLab().llmExportTrainingScript(String(name)),
  [Request.LLM_IMPORT_ADAPTER]: ({ name, config, safetensors, gguf, file }) => (gguf !== undefined && gguf !== null
    ? requireLab().llmImportGgufAdapter(String(name), bytesOf(gguf, 'GGUF adapter'), String(file ?? 'the GGUF adapter'))
    : requireLab().llmImportAdapter(String(name), bytesOf(safetensors, 'adapter_model.safetensors'), configText(config))),
};

function classify({ pixels }) {
  if (!pixels || typeof pixels.length !== 'number') throw new Error('invalid pixels: expected 784 numbers');
  return { value: requireLab().classify(Float64Array.from(pixels)) };
}

function status() {
  const l = requireLab();
  return {
    value: {
      hasModel: l.hasModel(),
      training: run.state,
      adapters: l.adapters(),
      quantization: l.baseQuantization(),
      wasmBytes: memory.buffer.byteLength,
    },
  };
}

// A panic aborts the module: it cannot be used again, so tell the page.
self.addEventListener('error', (e) => {
  self.postMessage({ type: Event.FATAL, message: e.message || 'the worker crashed' });
});
self.addEventListener('unhandledrejection', (e) => {
  self.postMessage({ type: Event.FATAL, message: errorMessage(e.reason) });
});

/** Benchmarks for ./build.sh bench (www/bench.html): each warms up before it measures. */
async function bench({ kind, shape = 'mlp_layer1', layout, reps = 20, iters = 20_000_000, limit }) {
  const l = requireLab();
  const timeIt = (f) => {
    const t0 = performance.now();
    const r = f();
    return [r, (performance.now() - t0) / 1000];
  };
  switch (kind) {
    case 'gemm': {
      // Warm-up: lets V8 tier the kernel up. Then 7 samples, each the GEMM and right before it the
      // peak loop (~15 ms), so the share of the peak compares the two at the same moment: this
      // machine's speed changes by a third from one second to the next (other tenants), even for
      // native code. Medians of both.
      for (let i = 0; i < 3; i++) {
        wasm.benchGemm(shape, layout, reps);
        wasm.simdPeak(iters / 4);
      }
      const gflops = [];
      const peak = [];
      const ofPeak = [];
      for (let i = 0; i < 7; i++) {
        const [[peakFlops], ps] = timeIt(() => wasm.simdPeak(iters / 4));
        const [flops, s] = timeIt(() => wasm.benchGemm(shape, layout, reps));
        gflops.push(flops / s / 1e9);
        peak.push(peakFlops / ps / 1e9);
        ofPeak.push(flops / s / (peakFlops / ps));
      }
      return { value: { gflops: median(gflops), peak: median(peak), ofPeak: median(ofPeak) } };
    }
    case 'peak':
    case 'peakAllThreads': {
      const f = kind === 'peak' ? wasm.simdPeak : wasm.simdPeakAllThreads;
      // Warm-up: the first calls run in V8's baseline tier until the optimised code is ready.
      for (let i = 0; i < 3; i++) f(iters / 4);
      const samples = [];
      for (let i = 0; i < 5; i++) {
        const [[flops], s] = timeIt(() => f(iters));
        samples.push(flops / s / 1e9);
      }
      return { value: { gflops: median(samples) } };
    }
    case 'train': {
      await loadData();
      // Warm-up: until V8's optimising compiler has finished with the kernels (in the background, on
      // the same two cores), the first batches run slower.
      l.startBase({ epochs: 1, limit: 8000 });
      await driveRun('bench');
      l.startBase({ epochs: 1, ...(limit ? { limit } : {}) });
      const summary = await driveRun('bench');
      return { value: summary };
    }
    case 'inference': {
      await loadData();
      if (!l.hasModel()) {
        l.startBase({ epochs: 1, limit: 640 });
        await driveRun('bench');
      }
      const pixels = new Float64Array(784).map((_, i) => (i * 37) % 256);
      for (let i = 0; i < 200; i++) l.classify(pixels);
      // Batches of calls, divided: where the page is not cross-origin isolated (the SIMD-only bench),
      // performance.now() has 100 µs steps and one call reads as 0 µs. Median over the batches.
      const perSample = 50;
      const samples = [];
      for (let i = 0; i < 40; i++) {
        const t0 = performance.now();
        for (let j = 0; j < perSample; j++) l.classify(pixels);
        samples.push(((performance.now() - t0) * 1000) / perSample);
      }
      return { value: { us: median(samples) } };
    }
    case 'panic':
      // The fault test: a genuine panic inside wasm (see panicForFaultTest).
      wasm.panicForFaultTest();
      return { value: null };
    default:
      throw new Error(`unknown benchmark "${kind}"`);
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * A trap in wasm (a panic, out of memory) leaves the module unusable: report it as fatal. After each
 * request the glue's views of the wasm memory are dropped: one made before the memory grew would keep
 * the old, shorter buffer object alive beside the new one (build.sh's add_release_views).
 */
function guard(handlers) {
  return Object.fromEntries(
    Object.entries(handlers).map(([type, h]) => [
      type,
      async (args, ctx) => {
        try {
          return await h(args, ctx);
        } catch (e) {
          if (e instanceof WebAssembly.RuntimeError) {
            self.postMessage({ type: Event.FATAL, message: `the compute module crashed (${e.message}); restart the worker` });
          }
          throw e;
        } finally {
          wasm?.releaseMemoryViews();
        }
      },
    ]),
  );
}

serveRequests(guard({
  [Request.INIT]: init,
  [Request.LOAD_DATA]: loadData,
  [Request.TRAIN_BASE]: trainBase,
  [Request.PAUSE]: pause,
  [Request.RESUME]: resume,
  [Request.CANCEL]: cancel,
  [Request.EVALUATE]: evaluate,
  [Request.CLASSIFY]: classify,
  [Request.STATUS]: status,
  [Request.BENCH]: bench,
  [Request.TRAIN_ADAPTER]: trainAdapter,
  [Request.SWEEP]: sweep,
  [Request.LM_LOAD_DATA]: lmLoadData,
  [Request.LM_TRAIN_BASE]: lmTrainBase,
  [Request.LM_TRAIN_ADAPTER]: lmTrainAdapter,
  [Request.LM_EVALUATE]: lmEvaluate,
  [Request.LM_LOGITS]: lmLogits,
  [Request.LM_EXPORT_CHECKPOINT]: lmExportCheckpoint,
  [Request.ZIP]: zipFolder,
  [Request.UNZIP]: unzipFolder,
  [Request.LLM_LOAD]: llmLoad,
  [Request.LLM_LOGITS]: llmLogits,
  [Request.LLM_GENERATE]: llmGenerate,
  [Request.LLM_DEMO_DATA]: async () => ({ value: await llmDemoData() }),
  [Request.LLM_TRAIN_ADAPTER]: llmTrainAdapter,
  [Request.LLM_EXPORT_ADAPTER]: llmExportAdapter,
  [Request.LLM_EXPORT_MERGED]: llmExportMerged,
  [Request.LLM_EVALUATE]: llmEvaluate,
  [Request.LLM_INSPECT_DATA]: llmInspectData,
  ...Object.fromEntries(Object.entries({ ...simple, ...lmSimple, ...llmSimple }).map(([k, f]) => [k, (args) => ({ value: f(args) })])),
}));
