// Panel 7: fine-tuning a real, pretrained LLM (SmolLM2-135M-Instruct) in the page, where the article ends.
// Load the model (llm-model.js), talk to it (llm-chat.js), give it examples (llm-data.js), set the
// article's LoraConfig and SFTConfig (llm-config.js) over the base as read or in NF4 (llm-base.js),
// fine-tune it (the run's view below), compare it with the base on the held-out examples, and take the
// files away (llm-files.js); ../llm-keep.js keeps the choice of model and the adapters across reloads.
// Every operation is a worker request (Request.LLM_*, through window.lab.llm's raw calls, www/llm.js),
// and window.lab.llm's loading, training and adapter calls run through this panel's functions, so the
// page shows what a script did as if a person had clicked.
import { Request } from '../protocol.js';
import { $, dropZone, el, int, num, say, duration } from '../ui.js';
import { showRefusal } from '../fields.js';
import { llmKeeper, modelKey } from '../llm-keep.js';
import { trainingView } from './training.js';
import { renderAdapters, renderCheckpoints } from './lm-lists.js';
import { readFolder } from './lm-files.js';
import { BUILTIN, loadProgress, readModelFiles, renderCard } from './llm-model.js';
import { chatView } from './llm-chat.js';
import { dataView } from './llm-data.js';
import { llmConfigForm } from './llm-config.js';
import { argsOf, baseSelect, choiceOf } from './llm-base.js';
import { takeAway, usage } from './llm-files.js';

const mb = (bytes) => `${(bytes / 1e6).toFixed(0)} MB`;
/** An exact match (a fraction of the held-out rows) as the epochs table shows it. */
const exactMatch = (f) => (Number.isFinite(f) ? f.toFixed(2) : '–');

/** `raw` is window.lab.llm's plain calls (www/llm.js); → the panel, whose `api` becomes window.lab.llm. */
export function llmPanel(app, raw) {
  const root = $('#llm');
  const loadMsg = $('#llm-load-msg', root);
  const loadBar = $('#llm-load-progress', root);
  const card = $('#llm-card', root);
  const keepOwn = $('#llm-keep-own', root);
  const runMsg = $('#llm-run-msg', root);
  const filesMsg = $('#llm-files-msg', root);
  const storeMsg = $('#llm-store-msg', root);
  const trainButton = $('#llm-train', root);
  const demoButton = $('#llm-demo', root);
  const evalButton = $('#llm-evaluate', root);
  const planLine = $('#llm-run-plan', root);
  const configForm = $('#llm-config-form', root);

  const state = {
    info: null, // the loaded model's card
    loading: false,
    adapters: { active: null, list: [] },
    runs: new Map(), // adapter name → what its run showed (kept with it)
  };

  const keeper = llmKeeper(app, (kind, text) => say(storeMsg, text, kind));
  const busyError = () => new Error(`already busy (${app.busy}); wait, or cancel it first`);
  const chat = chatView(root, raw, () => ({ loaded: Boolean(state.info), active: state.adapters.active, busy: app.busy || (state.loading ? 'loading' : null) }));
  const config = llmConfigForm(app, configForm, () => state.info, runMsg);
  const baseFields = [$('#llm-base', root), $('#llm-base-double', root)];
  const base = baseSelect(...baseFields, $('#llm-base-note', root));
  const data = dataView(app, root, () => {
    try {
      const s = config.read();
      return { maxSeqLength: s.maxSeqLength, packing: s.packing, packingStrategy: s.packingStrategy, assistantOnlyLoss: s.assistantOnlyLoss, ...(s.limit ? { limit: s.limit } : {}) };
    } catch {
      return null;
    }
  });
  configForm.addEventListener('change', (e) => {
    if (['maxSeqLength', 'packing', 'packingStrategy', 'assistantOnlyLoss', 'limit'].includes(e.target.name)) data.later();
  });

  // ── the run's view ─────────────────────────────────────────────────────────────────────────────
  const runRoot = $('#llm-training', root);
  const epochs = $('table.epochs tbody', runRoot);
  const view = trainingView(app, runRoot, 'llmAdapter', (t) => say(runMsg, t, 'error'), {
    rate: (p) => (p.tokensPerSec ? `${int(p.tokensPerSec)} tokens/s` : ''),
    loss: (v) => num(v, 4),
    epochCells: (ev) => {
      const cp = ev.checkpoint;
      return [el('td', {}, `${ev.epoch}/${ev.epochs}`), el('td', {}, num(ev.evalLoss, 4)), el('td', {}, exactMatch(ev.exactMatch)),
        el('td', {}, cp ? `#${cp.id} (step ${int(cp.step)})${cp.best ? ' ★ best so far' : ''}` : '–')];
    },
    ignoreSweeps: false,
    markPaused: true,
  });
  let plan = '';
  app.on('llmStart', (s) => {
    plan = `${int(s.trainRows)} training rows → ${int(s.trainSequences)} sequences of ${int(s.trainTokens)} tokens, `
      + `${int(s.heldOutRows)} held out; ${int(s.steps)} optimizer steps (${int(s.warmupSteps)} of warmup)`
      + `${s.truncated ? `; ${int(s.truncated)} cut at max_length` : ''}.\n${s.report}`;
    planLine.textContent = plan;
  });
  /** The epochs table's first row: the held-out loss before training. */
  const beforeRow = (loss, em) => {
    if (!Number.isFinite(loss) || epochs.querySelector('tr[data-before]')) return;
    const tr = el('tr', {}, el('td', {}, 'before'), el('td', {}, num(loss, 4)), el('td', {}, exactMatch(em)), el('td', {}, '–'));
    tr.dataset.before = '';
    epochs.prepend(tr);
  };
  /** Shows adapter `name`'s run as it was kept with it (after a reload, or when it is turned on again). */
  const showRun = (name) => {
    const run = state.runs.get(name);
    if (!run?.view || app.busy === 'llmAdapter') return;
    view.show(run.view);
    beforeRow(run.evalLossBefore, run.exactMatchBefore);
    planLine.textContent = run.plan ?? '';
    runRoot.dataset.run = name;
  };
  app.on('progress', (batch) => {
    for (const p of batch) {
      if (p.phase !== 'llmAdapter') continue;
      // the base's exact match where the data panel measured it on these rows (the demo task's button)
      beforeRow(p.evalLossBefore, data.baseExactMatch());
      if (p.activationBytes) {
        planLine.textContent = `${plan}\nMemory: the model ${mb(state.info?.bytes ?? 0)}, the run's activations ${mb(p.activationBytes)}.`;
      }
    }
  });

  // ── what the panel shows of the worker's lists ─────────────────────────────────────────────────
  const sync = () => {
    const loaded = Boolean(state.info);
    const idle = !app.busy && !state.loading;
    trainButton.disabled = !loaded || !idle;
    demoButton.disabled = !loaded || !idle;
    evalButton.disabled = !loaded || !idle;
    $('#llm-load-builtin', root).disabled = !idle;
    for (const f of baseFields) f.disabled = !idle;
    const named = Boolean(state.adapters.active);
    for (const b of root.querySelectorAll('#llm-files button[data-file]')) b.disabled = !named || !idle;
    chat.sync();
  };
  app.on('busy', sync);

  function showUsage() {
    const name = state.adapters.active ?? 'seed';
    const u = usage(name, state.info?.name);
    for (const code of root.querySelectorAll('#llm-files code[data-use]')) code.textContent = u[code.dataset.use];
  }

  async function refresh(value) {
    state.adapters = value ?? (await raw.adapters());
    $('#llm-active-name', root).textContent = state.adapters.active ?? 'none';
    renderAdapters($('#llm-adapter-list', root), state.adapters, state.info?.layers ?? 0, {
      setActive: (name) => setAdapter(name).catch(() => {}),
      download: (name) => takeFile('peft', name).catch(() => {}),
      remove: (name) => deleteAdapter(name).catch(() => {}),
    }, 'llm-active-adapter');
    renderCheckpoints($('#llm-checkpoints', root), await raw.checkpoints(), (id) => restoreCheckpoint(id).catch(() => {}));
    showUsage();
    sync();
    return state.adapters;
  }

  // ── loading ─────────────────────────────────────────────────────────────────────────────────────
  /**
   * Loads `{ builtin }`, `{ gguf, file }` or `{ hf, file }`; the model loaded before stays if this one is
   * refused. `keep`: store a model from disk in this browser (the box's setting otherwise).
   */
  async function load(src, { keep = keepOwn.checked, restoring = false } = {}) {
    if (app.busy) throw busyError();
    if (state.loading) throw new Error('a model is already loading');
    state.loading = true;
    sync();
    const { onProgress, ...files } = src;
    const label = files.builtin ? files.builtin : files.file ?? 'your model';
    say(loadMsg, `Loading ${label}…`, 'busy');
    try {
      const info = await raw.load({
        ...files,
        onProgress: (p) => {
          say(loadMsg, loadProgress(loadBar, p), 'busy');
          onProgress?.(p);
        },
      });
      state.info = info;
      loadBar.hidden = true;
      await holdBase(argsOf(base.choice()), true).catch((e) => say(runMsg, `The base stays as read: ${e.message}.`, 'error'));
      config.update();
      const own = !files.builtin;
      const nf4 = state.info?.tensorTypes?.NF4 ? `; its ${state.info.tensorTypes.NF4} projections held in NF4 (quantization_config below)` : '';
      say(loadMsg, `Loaded ${info.name}: ${int(info.params)} parameters in ${mb(info.bytes)}${nf4}${own && !keep ? ' (not kept in this browser: a reload asks for it again)' : ''}.`, 'ok');
      if (!restoring) {
        const kept = own && keep ? (files.gguf ? { gguf: files.gguf } : { hf: files.hf }) : null;
        await keeper.saveModel(info.name, own ? { file: files.file ?? 'model', kind: files.gguf ? 'gguf' : 'hf' } : { builtin: files.builtin }, kept);
      }
      const kept = await keeper.restoreAdapters(info);
      for (const a of kept) if (a.run) state.runs.set(a.name, a.run);
      if (kept.length) say(storeMsg, `Kept in this browser: ${kept.map((a) => `“${a.name}”`).join(', ')}.`, 'ok');
      await refresh();
      if (state.adapters.active) showRun(state.adapters.active);
      data.later();
      return state.info ?? info;
    } catch (e) {
      loadBar.hidden = true;
      say(loadMsg, `${label} cannot be used: ${e.message}. ${state.info ? `${state.info.name} stays loaded.` : ''}`.trim(), 'error');
      throw e;
    } finally {
      state.loading = false;
      sync();
    }
  }

  $('#llm-load-builtin', root).addEventListener('click', () => load({ builtin: BUILTIN }).catch(() => {}));
  async function loadFiles(files) {
    let src;
    try {
      src = await readModelFiles(files);
    } catch (e) {
      say(loadMsg, `Cannot load a model: ${e.message}. ${state.info ? `${state.info.name} stays loaded.` : ''}`.trim(), 'error');
      return;
    }
    const { size, ...rest } = src;
    load(rest).catch(() => {});
  }
  $('#llm-load-file', root).addEventListener('change', (e) => {
    const files = [...e.target.files];
    e.target.value = '';
    loadFiles(files);
  });
  dropZone($('#llm-load-drop', root), loadFiles);

  // ── the base: as read, or in NF4 ─────────────────────────────────────────────────────────────────
  /** Asks the worker to hold the loaded model's base as `args` say (argsOf), then shows the card and the
   *  snippet as the worker has them (also when it refuses). `fresh`: a model just loaded, which is held as
   *  read already (nothing to ask when `args` is null). → the quantization. */
  async function holdBase(args, fresh = false) {
    try {
      if (args) return await raw.quantizeBase(args);
      return fresh ? null : await raw.dequantizeBase();
    } finally {
      const st = await raw.status();
      state.info = st.info;
      if (st.info) renderCard(card, st.info);
      base.show(st.quantization, st.info);
    }
  }

  /** window.lab.llm.quantizeBase / dequantizeBase and the snippet's select: `args` null for the weights as read. */
  async function setBase(args) {
    if (app.busy) throw busyError();
    if (state.loading) throw new Error('a model is loading');
    if (!state.info) throw new Error('load a model first');
    app.setBusy('llmBase');
    say(runMsg, args ? 'Quantising the projections to NF4…' : 'Back to the weights as read…', 'busy');
    try {
      const t0 = performance.now();
      const q = await holdBase(args);
      await keeper.saveBase(choiceOf(q));
      say(runMsg, q.quantized
        ? `The base is held in NF4 (${q.linears} projections, ${q.doubleQuant ? 'with' : 'without'} double quantisation) in ${duration((performance.now() - t0) / 1000)}; `
          + `the model now takes ${mb(state.info.bytes)}, the file's blocks kept to go back. Adapters train and answer on it.`
        : 'The base is held as read again, bit for bit.', 'ok');
      return q;
    } catch (e) {
      say(runMsg, `Cannot change the base: ${e.message}.`, 'error');
      throw e;
    } finally {
      if (app.busy === 'llmBase') app.setBusy(null);
      sync();
    }
  }
  for (const f of baseFields) {
    f.addEventListener('change', () => {
      const choice = base.choice();
      if (!state.info || (f.id === 'llm-base-double' && choice === 'held')) {
        // no model yet, or bnb_config changed while unused: the choice is kept, applied when it is used
        base.choose(choice);
        keeper.saveBase(choice);
        return;
      }
      setBase(argsOf(choice)).catch(() => {});
    });
  }

  // ── data, training, evaluation ───────────────────────────────────────────────────────────────────
  demoButton.addEventListener('click', async () => {
    try {
      await data.useDemo();
      say(runMsg, 'Scoring the base model on the demo task’s held-out examples…', 'busy');
      const ev = await evaluate({ data: 'demo', adapted: false });
      data.showBase(ev);
      say(runMsg, '');
    } catch (e) {
      say(runMsg, `The demo task: ${e.message}.`, 'error');
    }
  });
  $('#llm-preset-seed', root).addEventListener('click', () => config.applyPreset());

  /** Fine-tunes an adapter with the form's settings (written first from `opts`, as window.lab.llm gives them). */
  async function train(opts = {}) {
    if (app.busy) throw busyError();
    if (!state.info) throw new Error('load a model first');
    const { data: given, preset, ...rest } = opts;
    if (preset !== undefined && preset !== 'seed') throw new Error(`unknown preset ${JSON.stringify(preset)}; the preset is "seed"`);
    // What the form holds is written into it (and shown); the rest (layersToTransform, or a name the lab
    // refuses) goes to the lab as given.
    const fields = Object.fromEntries(Object.entries(rest).filter(([k]) => config.holds(k)));
    const extra = Object.fromEntries(Object.entries(rest).filter(([k]) => !config.holds(k)));
    if (preset === 'seed') config.applyPreset();
    if (Object.keys(fields).length) config.write(fields);
    if (given !== undefined && given !== 'demo') data.setJsonl(given.jsonl ?? '', given.testJsonl ?? '');
    if (given === 'demo' && !data.isDemo()) await data.useDemo();
    const settings = config.read();
    if (settings.limit === undefined) delete settings.limit;
    const source = data.data();
    if (source !== 'demo' && !source.jsonl.trim()) throw new Error('no examples yet: paste JSONL, drop a file, or use the demo task');
    app.setBusy('llmAdapter');
    view.reset();
    delete runRoot.dataset.run;
    planLine.textContent = '';
    say(runMsg, `Fine-tuning "${settings.name}"…`, 'busy');
    try {
      const result = await raw.trainAdapter({ ...settings, ...extra, data: source });
      view.finish(result);
      // what the run showed, kept with the adapter: its numbers, and the view (loss curve, epochs, plan)
      const run = { evalLossBefore: result.evalLossBefore, evalLoss: result.evalLoss, steps: result.steps, seconds: result.seconds,
        tokensPerSec: result.tokensPerSec, cancelled: result.cancelled, exactMatch: result.exactMatch, exactMatchBefore: data.baseExactMatch(),
        view: view.kept(), plan: planLine.textContent };
      runRoot.dataset.run = result.name;
      state.runs.set(result.name, run);
      say(runMsg, `Adapter "${result.name}" ${result.cancelled ? 'cancelled (kept as far as it got)' : 'trained'}${result.nf4 ? ' on the NF4 base' : ''}: ${int(result.steps)} steps in ${duration(result.seconds)}, `
        + `${int(result.tokensPerSec)} tokens/s; held-out loss ${num(result.evalLossBefore, 4)} → ${num(result.evalLoss.at(-1) ?? result.evalLossBefore, 4)}.`, 'ok');
      await raw.setAdapter(result.name);
      await refresh();
      await keeper.saveAdapter(modelKey(state.info), result.name, run);
      await keeper.saveActive(result.name);
      return result;
    } catch (e) {
      view.fail(`Stopped: ${e.message}`);
      say(runMsg, `Cannot fine-tune: ${e.message}.`, 'error');
      await refresh().catch(() => {});
      throw e;
    } finally {
      if (app.busy === 'llmAdapter') app.setBusy(null);
      sync();
    }
  }
  configForm.addEventListener('submit', (e) => {
    e.preventDefault();
    train().catch((err) => showRefusal(runMsg, 'Cannot fine-tune: ', err));
  });

  /** The held-out examples: greedy answers of the base and (with one on) the adapter, and exact match. */
  async function evaluate({ data: which = data.data(), adapted = true } = {}) {
    if (app.busy) throw busyError();
    const summary = $('#llm-eval-summary', root);
    const table = $('#llm-compare-table', root);
    summary.hidden = true;
    table.hidden = true;
    app.setBusy('llmEvaluate');
    try {
      const ev = await raw.evaluate({ data: which });
      const em = (s) => (s.exactMatch === null || s.exactMatch === undefined ? '–' : s.exactMatch.toFixed(2));
      summary.textContent = `Held-out loss: base ${num(ev.base.loss, 4)}${ev.adapted ? `, adapted ${num(ev.adapted.loss, 4)}` : ''}; `
        + `exact match: base ${em(ev.base)}${ev.adapted ? `, adapted ${em(ev.adapted)}` : ' (no adapter on)'}.`;
      summary.hidden = false;
      const rows = ev.expected.map((want, i) => {
        const cell = (s) => {
          if (!s) return el('td', { className: 'muted' }, '–');
          const got = s.answers[i] ?? '';
          return el('td', { className: got === want ? 'right' : 'wrong' }, got);
        };
        return el('tr', {}, el('td', {}, ev.prompts?.[i] ?? ''), el('td', {}, want), cell(ev.base), cell(adapted ? ev.adapted : null));
      });
      $('tbody', table).replaceChildren(...rows);
      table.hidden = false;
      return ev;
    } finally {
      if (app.busy === 'llmEvaluate') app.setBusy(null);
    }
  }
  evalButton.addEventListener('click', () => {
    say(runMsg, 'Answering the held-out examples with each model…', 'busy');
    evaluate().then(() => say(runMsg, ''), (e) => say(runMsg, `Cannot compare: ${e.message}.`, 'error'));
  });

  // ── adapters, checkpoints, files ────────────────────────────────────────────────────────────────
  async function act(fn, done) {
    if (app.busy) throw busyError();
    try {
      const value = await fn();
      await refresh();
      if (done) say(filesMsg, done, 'ok');
      return value;
    } catch (e) {
      say(filesMsg, `${e.message}.`, 'error');
      await refresh().catch(() => {});
      throw e;
    }
  }
  async function setAdapter(name) {
    const v = await act(() => raw.setAdapter(name ?? null), name ? `“${name}” is on.` : 'Adapter off: the base model only.');
    if (name) showRun(name);
    await keeper.saveActive(name ?? null);
    return v;
  }
  async function deleteAdapter(name) {
    const v = await act(() => raw.deleteAdapter(name), `Adapter “${name}” deleted.`);
    state.runs.delete(name);
    await keeper.deleteAdapter(name);
    return v;
  }
  async function restoreCheckpoint(id) {
    const v = await act(() => raw.restoreCheckpoint(id), `Checkpoint #${id} restored as its adapter.`);
    const name = state.adapters.active;
    if (name) await keeper.saveAdapter(modelKey(state.info), name, state.runs.get(name) ?? null);
    return v;
  }
  async function importAdapter({ name, config: cfg, safetensors, gguf, file }) {
    const v = await act(() => raw.importAdapter({ name, config: cfg, safetensors, gguf, file }), `Adapter “${name}” loaded.`);
    await keeper.saveAdapter(modelKey(state.info), name, null);
    return v;
  }
  async function takeFile(kind, name = state.adapters.active) {
    if (!name) throw new Error('turn an adapter on first');
    try {
      const { file, bytes } = await takeAway(app, kind, name);
      say(filesMsg, `${file} (${int(bytes)} bytes) offered for download.`, 'ok');
      return { file, bytes };
    } catch (e) {
      say(filesMsg, `Cannot make the file: ${e.message}.`, 'error');
      throw e;
    }
  }
  for (const b of root.querySelectorAll('#llm-files button[data-file]')) {
    b.addEventListener('click', () => takeFile(b.dataset.file).catch(() => {}));
  }
  $('#llm-upload-form', root).addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('#llm-upload', root);
    const name = $('#llm-upload-name', root).value.trim() || 'uploaded';
    try {
      if (!state.info) throw new Error('load a model first');
      const gguf = [...(input.files || [])].find((f) => /\.gguf$/i.test(f.name));
      if (gguf) {
        // llama.cpp's LoRA file (what "llama.cpp LoRA" downloads)
        await importAdapter({ name, gguf: new Uint8Array(await gguf.arrayBuffer()), file: gguf.name });
      } else {
        const files = await readFolder(app, input.files, ['adapter_config.json', 'adapter_model.safetensors']);
        await importAdapter({ name, config: files['adapter_config.json'], safetensors: files['adapter_model.safetensors'] });
      }
      input.value = '';
    } catch (err) {
      say(filesMsg, `Cannot load the adapter: ${err.message}.`, 'error');
    }
  });

  // ── a reload ────────────────────────────────────────────────────────────────────────────────────
  /** The model chosen before a reload, loaded again (the built-in one, or one kept from disk). */
  async function restore() {
    base.choose(await keeper.loadBase() ?? 'held');
    const rec = await keeper.loadModel();
    if (!rec) return { model: null, adapters: 0 };
    if (rec.source?.builtin) {
      const info = await load({ builtin: rec.source.builtin }, { restoring: true });
      return { model: info.name, adapters: state.adapters.list.length };
    }
    if (rec.files) {
      const info = await load({ ...rec.files, file: rec.source.file }, { restoring: true, keep: true });
      return { model: info.name, adapters: state.adapters.list.length };
    }
    say(loadMsg, `You were using ${rec.name}, loaded from ${rec.source?.file ?? 'your disk'}: choose it again to go on (its adapters are kept here).`, 'info');
    return { model: null, adapters: 0 };
  }

  // A fresh worker (the banner's Restart) holds no model: the panel says so until restore() loads it again.
  app.on('restart', () => {
    state.info = null;
    state.adapters = { active: null, list: [] };
    card.hidden = true;
    say(loadMsg, '');
    base.choose(base.choice());
    sync();
  });

  base.choose(base.choice());
  sync();
  showUsage();

  const api = {
    ...raw,
    load: async (src = {}) => {
      if (src?.onProgress !== undefined && typeof src.onProgress !== 'function') throw new Error('invalid onProgress: expected a function');
      return load(src ?? {});
    },
    trainAdapter: async (settings = {}) => train(settings ?? {}),
    quantizeBase: async ({ type = 'nf4', doubleQuant = true } = {}) => {
      if (typeof doubleQuant !== 'boolean') throw new Error('invalid doubleQuant: expected true or false');
      return setBase({ type, doubleQuant });
    },
    dequantizeBase: async () => setBase(null),
    evaluate: async ({ data: which } = {}) => evaluate(which === undefined ? {} : { data: which }),
    setAdapter: async (name) => setAdapter(name ?? null),
    deleteAdapter: async (name) => deleteAdapter(name),
    importAdapter: async ({ name, config: cfg, safetensors }) => importAdapter({ name: name ?? 'imported', config: cfg, safetensors }),
    restoreCheckpoint: async (id) => restoreCheckpoint(Number(id)),
    /** The file of the active adapter (or `name`) offered as a download: 'peft' | 'gguf' | 'merged' | 'script'. */
    download: async (kind, name) => takeFile(kind, name),
    chat: async (text) => chat.send(text),
    restored: Promise.resolve({ model: null, adapters: 0 }),
  };
  return { api, restore };
}
