// window.lab: the page's automation interface. Every method returns a promise and goes through the same
// code as the buttons, so the page shows what a script did exactly as if a person had clicked.
import { Request } from './protocol.js';
import { parseNumber } from './fields.js';

const bytesOf = (b) => (b instanceof Uint8Array ? b : new Uint8Array(b));

/** The language model's numeric settings and the names its messages give them (the forms' rule). */
const LM_NUMBERS = {
  epochs: 'epochs', batchSize: 'batch size', lr: 'learning rate', weightDecay: 'weight decay',
  warmupRatio: 'warmup ratio', seed: 'seed', limit: 'limit', r: 'r', loraAlpha: 'lora_alpha',
  loraDropout: 'lora_dropout', n: 'n', temperature: 'temperature', topK: 'top-k',
};

/** The forms' rule on window.lab.lm's settings: numbers (or numeric text) pass, anything else is refused. */
function checkSettings(opts) {
  const out = { ...opts };
  for (const [key, label] of Object.entries(LM_NUMBERS)) {
    if (!(key in out)) continue;
    const r = parseNumber(out[key]);
    if (r.why) throw new Error(`${label}: ${r.why}`);
    if (r.value === undefined) delete out[key];
    else out[key] = r.value;
  }
  return out;
}

/**
 * window.lab.lm: the language model (LANGUAGE_MODEL.md). Requests as in www/protocol.js; what changes the
 * models (training, loading, the adapter list, checkpoints) goes through panel 6's functions, so the page
 * shows it and keeps it in this browser as it does for a click.
 */
function createLm(app, control, panel) {
  const ask = (type, args) => app.request(type, args);
  return {
    /** Resolves to { base, adapters, checkpoints } once the stored language model is loaded (or not). */
    get restored() {
      return panel.restored;
    },
    trainBase: async (opts = {}) => panel.trainBase(checkSettings(opts)),
    trainAdapter: async (opts = {}) => panel.trainAdapter(checkSettings(opts)),
    evaluate: () => ask(Request.LM_EVALUATE),
    generate: (opts = {}) => ask(Request.LM_GENERATE, checkSettings(opts)),
    logits: (textOrIds, { adapted = false } = {}) =>
      ask(Request.LM_LOGITS, typeof textOrIds === 'string' ? { text: textOrIds, adapted } : { ids: Array.from(textOrIds ?? []), adapted }),
    score: (text) => ask(Request.LM_SCORE, { text }),
    exportBase: ({ dequantized = false } = {}) => ask(Request.LM_EXPORT_BASE, { dequantized }),
    exportAdapter: (name) => ask(Request.LM_EXPORT_ADAPTER, { name }),
    importBase: async ({ config, safetensors }) => panel.importBase({ config, safetensors: bytesOf(safetensors) }),
    importAdapter: async ({ config, safetensors, name }) =>
      panel.importAdapter({ config, safetensors: bytesOf(safetensors), name: name ?? 'imported' }),
    adapters: () => ask(Request.LM_ADAPTERS),
    setAdapter: (name) => panel.setAdapter(name ?? null),
    merge: (name) => panel.merge(name),
    unmerge: (name) => panel.unmerge(name),
    deleteAdapter: (name) => panel.deleteAdapter(name),
    quantizeBase: (opts = {}) => panel.qlora.set(true, opts),
    dequantizeBase: () => panel.qlora.set(false),
    checkpoints: () => ask(Request.LM_CHECKPOINTS),
    restoreCheckpoint: (id) => panel.restoreCheckpoint(Number(id)),
    status: () => ask(Request.LM_STATUS),
    pause: () => control(Request.PAUSE),
    resume: () => control(Request.RESUME),
    cancel: () => control(Request.CANCEL),
  };
}

export function createLab(app, panels) {
  const control = async (type) => {
    const value = await app.request(type);
    if (value && (value.state === 'paused' || value.state === 'running')) app.setTrainingState(value.state);
    return value;
  };
  return {
    get info() {
      return app.info;
    },
    /** The live WorkerClient (replaced on restart). */
    get client() {
      return app.client;
    },
    /** Resolves to { model, adapters } once the models stored in this browser are loaded (or not). */
    restored: Promise.resolve({ model: false, adapters: 0 }),

    trainBase: (opts = {}) => panels.base.train(opts),
    trainAdapter: (opts = {}) => panels.adapter.train(opts),
    evaluate: () => app.evaluate(),
    classify: (pixels) => app.request(Request.CLASSIFY, { pixels: Array.from(pixels) }),
    classifyCanvas: () => panels.draw.classifyCanvas(),
    svd: (rows, rank) => panels.svd.compute(rows, rank),
    /** `{ dequantized: true }`: a 4-bit base's dequantised weights in f32 (otherwise as it is held). */
    exportModel: ({ dequantized = false } = {}) => app.request(Request.EXPORT_MODEL, { dequantized }),
    exportAdapter: (name) => app.request(Request.EXPORT_ADAPTER, { name }),
    importModel: (bytes) => panels.base.importModel(bytesOf(bytes), 'the model'),
    importAdapter: ({ safetensors, config, name }) =>
      panels.adapter.importAdapter({ safetensors: bytesOf(safetensors), config, name }),
    adapters: () => app.refreshAdapters(),
    setAdapter: (name) => panels.adapter.act(Request.SET_ADAPTER, { name: name ?? null }, name ? `"${name}" is on` : 'Adapter off'),
    merge: (name) => panels.adapter.act(Request.MERGE, { name }, `"${name}" merged into W`),
    unmerge: (name) => panels.adapter.act(Request.UNMERGE, { name }, `"${name}" unmerged`),
    deleteAdapter: async (name) => {
      const value = await panels.adapter.act(Request.DELETE_ADAPTER, { name }, `Adapter "${name}" deleted`);
      await app.forgetAdapter(name);
      panels.adapter.qlora.forgetAdapter(name);
      return value;
    },
    /** The 4-bit base (QLoRA) toggle of panel 3: `{ type: 'nf4', doubleQuant = true }` → Q. */
    quantizeBase: (opts = {}) => panels.adapter.qlora.set(true, opts),
    dequantizeBase: () => panels.adapter.qlora.set(false),
    sweep: (opts = {}) => panels.sweep.run(opts),
    pause: () => control(Request.PAUSE),
    resume: () => control(Request.RESUME),
    cancel: () => control(Request.CANCEL),
    status: () => app.request(Request.STATUS),
    /** What the banner's Restart button does: a fresh worker, with the stored models loaded again. */
    restart: () => app.restart(),
    lm: createLm(app, control, panels.lm),
    /** The pretrained LLM of part 3: www/llm.js's calls, those that change what panel 7 shows through it. */
    llm: panels.llm.api,
  };
}
