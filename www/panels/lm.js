// Panel 6: LoRA on a language model, the article's last section. Train the tiny Llama on English words,
// watch it fail on Pokémon names, adapt it with the article's LoraConfig (or with lm_head too), compare
// samples and byte probabilities, and take the folders to Python. Every operation is a worker request
// (Request.LM_*), and window.lab.lm's training, loading and adapter calls run through this panel's
// functions, so the page shows what a script did as if a person had clicked. The pieces: lm-config.js (the
// snippet's form and the trainable count), lm-training.js (a run's view), lm-samples.js (samples, scores,
// the q/k/v lesson), lm-lists.js (adapters, checkpoints), lm-files.js (zips), ../lm-keep.js (IndexedDB).
import { Request } from '../protocol.js';
import { $, say, int, num, duration, dropZone } from '../ui.js';
import { numberFields, showRefusal } from '../fields.js';
import { lmKeeper } from '../lm-keep.js';
import { lmTrainingView } from './lm-training.js';
import { loraConfigForm, BASE_DEFAULTS, PRESETS, TINY_CONFIG } from './lm-config.js';
import { samplesView, scoreView, whyView, startsWithCapital, capitalMass } from './lm-samples.js';
import { renderAdapters, renderCheckpoints } from './lm-lists.js';
import { downloadBase, downloadAdapter, readFolder, pythonSnippet, BASE_FOLDER } from './lm-files.js';
import { qloraToggle } from './qlora.js';

/** Held out for evaluation (LANGUAGE_MODEL.md): every 50th English word, every 10th line of the rest. */
const HELD_OUT_EVERY = { words: 50, pokemon: 10, names: 10, user: 10 };
const DATA_NAMES = { pokemon: 'Pokémon names', names: 'first names', user: 'your lines' };
const heldOut = (n, every) => Math.ceil(n / every);

export function lmPanel(app) {
  const root = $('#lm');
  const baseForm = $('#lm-base-form', root);
  const baseMsg = $('#lm-base-msg', root);
  const adapterForm = $('#lm-adapter-form', root);
  const adapterMsg = $('#lm-adapter-msg', root);
  const storeMsg = $('#lm-store-msg', root);
  const dataMsg = $('#lm-data-msg', root);
  const dataNote = $('#lm-data-note', root);
  const userText = $('#lm-user-text', root);
  const userFile = $('#lm-user-file', root);
  const userBox = $('#lm-user-box', root);
  const baseTrain = $('#lm-base-train', root);
  const adapterTrain = $('#lm-adapter-train', root);
  const presetButtons = [...root.querySelectorAll('button[data-preset]')];
  const baseDownload = $('#lm-base-download', root);
  const python = $('#lm-python code', root);

  const state = {
    hasBase: false,
    config: TINY_CONFIG, // the base's config.json (its shape decides the grid and the count)
    adapters: { active: null, list: [] },
    counts: null, // { words, pokemon, names } once the corpora are loaded
    user: null, // { source: 'text' | 'file', name, bytes } of the user's data
    userChecked: null, // the lab's answer for state.user: { lines, train, heldOut, heldOutFirst } or { error }
  };

  const keeper = lmKeeper(app, (kind, text) => say(storeMsg, text, kind));
  const baseView = lmTrainingView(app, $('#lm-base-training', root), 'lmBase', (t) => say(baseMsg, t, 'error'));
  const adapterView = lmTrainingView(app, $('#lm-adapter-training', root), 'lmAdapter', (t) => say(adapterMsg, t, 'error'));
  const baseFields = numberFields(baseForm, BASE_DEFAULTS);
  const config = loraConfigForm(adapterForm, () => state.config);
  const samples = samplesView(app, $('#lm-samples', root));
  const scores = scoreView(app, $('#lm-score', root));
  const why = whyView($('#lm-why-box', root));

  const busyError = () => new Error(`already busy (${app.busy}); wait, or cancel it first`);
  const qlora = qloraToggle($('#lm-qlora', root), {
    request: (type, args) => app.request(type, args),
    requests: { quantize: Request.LM_QUANTIZE_BASE, dequantize: Request.LM_DEQUANTIZE_BASE },
    qualityLabel: 'held-out English words (nats per token)',
    quality: async () => {
      await ensureData();
      const ev = await app.request(Request.LM_EVALUATE);
      return { value: ev.base.words, text: num(ev.base.words, 4) };
    },
    blocked: () => (app.busy ? `a ${app.busy} run is in progress` : state.hasBase ? null : 'there is no language model yet'),
    changed: (q) => {
      keeper.saveQuantization(q);
      scores.clear();
    },
  });
  /** The worker's word on the base's quantisation, shown (a new, loaded or restored base). */
  const showQuantization = () => app.request(Request.LM_STATUS).then((st) => qlora.show(st.quantization), () => {});

  // ── the corpora ──────────────────────────────────────────────────────────────────────────────────
  let dataPromise = null;
  function ensureData() {
    dataPromise ??= app.request(Request.LM_LOAD_DATA).then((counts) => {
      state.counts = counts;
      $('#lm-words-note', root).textContent = `${int(counts.words)} words: ${int(heldOut(counts.words, 50))} held out `
        + `(every 50th from the first), ${int(counts.words - heldOut(counts.words, 50))} to train on.`;
      describeData();
      return counts;
    }, (e) => {
      dataPromise = null;
      throw new Error(`could not load the text corpora: ${e.message}`);
    });
    return dataPromise;
  }
  // The corpora (about 1.3 MB gzipped) are fetched once the panel comes into view, not with the page.
  if ('IntersectionObserver' in self) {
    const seen = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      seen.disconnect();
      ensureData().catch((e) => say(baseMsg, e.message, 'error'));
    });
    seen.observe(root);
  }

  // ── adapter data: Pokémon, first names or the user's own lines ──────────────────────────────────
  const dataChoice = () => adapterForm.elements.lmData.value;

  function describeData() {
    const d = dataChoice();
    userBox.hidden = d !== 'user';
    if (d === 'user') {
      const c = state.userChecked;
      if (!state.user) dataNote.textContent = 'Type or paste one entry per line, or drop a .txt file here (at most 1 MB of UTF-8 text). Every 10th line from the first is held out.';
      else if (c?.lines) {
        dataNote.textContent = `${state.user.source === 'file' ? `${state.user.name}: ` : ''}${int(c.lines.length)} lines. Held out for evaluation: every 10th `
          + `from the first, ${int(c.heldOut)} (${c.heldOutFirst.map((s) => `“${s}”`).join(', ')}${c.heldOut > c.heldOutFirst.length ? ', …' : ''}); `
          + `trained on the other ${int(c.train)}.`;
      } else dataNote.textContent = '';
      return;
    }
    const n = state.counts?.[d];
    const what = DATA_NAMES[d];
    dataNote.textContent = n
      ? `${int(n)} ${what}. Held out for evaluation: every 10th from the first, ${int(heldOut(n, 10))}; trained on the other ${int(n - heldOut(n, 10))}.`
      : `Every 10th of the ${what} from the first is held out for evaluation; the rest is trained on.`;
  }

  /** Has the lab check the user's data (a file's bytes or the text box's UTF-8); shows its verdict. */
  async function checkUserData() {
    if (!state.user) {
      state.userChecked = null;
      say(dataMsg, '');
      describeData();
      return null;
    }
    const user = state.user;
    try {
      const r = await app.request(Request.LM_USER_DATA, { bytes: user.bytes.slice() });
      if (state.user !== user) return null; // changed meanwhile
      state.userChecked = r;
      say(dataMsg, '');
      describeData();
      return r;
    } catch (e) {
      if (state.user !== user) return null;
      state.userChecked = { error: e.message };
      say(dataMsg, `Your data cannot be used: ${e.message}.`, 'error');
      describeData();
      throw e;
    }
  }

  let typing = 0;
  userText.addEventListener('input', () => {
    clearTimeout(typing);
    // Only a box left empty is "no data yet"; blank lines alone go to the lab, which says why they are refused.
    state.user = userText.value.length ? { source: 'text', bytes: new TextEncoder().encode(userText.value) } : null;
    state.userChecked = null;
    typing = setTimeout(() => checkUserData().catch(() => {}), 300);
  });
  async function useFile(file) {
    if (!file) return;
    const bytes = new Uint8Array(await file.arrayBuffer());
    state.user = { source: 'file', name: file.name, bytes };
    state.userChecked = null;
    // Show the text where it is UTF-8 (the lab says what is wrong otherwise).
    const text = (() => {
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, 200_000));
      } catch {
        return null;
      }
    })();
    userText.value = text ?? '';
    userText.placeholder = text === null ? `(${file.name} is shown here only if it is UTF-8 text)` : '';
    await checkUserData().catch(() => {});
  }
  userFile.addEventListener('change', () => useFile(userFile.files[0]).finally(() => (userFile.value = '')));
  dropZone(userBox, (files) => useFile(files[0]).catch(() => {}));
  adapterForm.addEventListener('change', (e) => {
    if (e.target.name === 'lmData') {
      describeData();
      if (dataChoice() !== 'user') say(dataMsg, '');
    }
  });
  describeData();

  /** The form's data as the lab takes it: 'pokemon', 'names' or { lines } (checked by the lab first). */
  async function formData() {
    const d = dataChoice();
    if (d !== 'user') return d;
    if (!state.user) throw new Error('your data: no lines yet — type them, or drop or choose a .txt file');
    const r = state.userChecked?.lines ? state.userChecked : await checkUserData();
    if (!r) throw new Error('your data changed while it was being checked; try again');
    return { lines: r.lines };
  }

  // ── the base model ───────────────────────────────────────────────────────────────────────────────
  /** Trains a fresh base with `args` (settings as window.lab.lm takes them; left out: the base preset). */
  async function trainBase(args = {}) {
    if (app.busy) {
      const e = busyError();
      say(baseMsg, e.message, 'error');
      throw e;
    }
    const sampling = samples.settings();
    app.setBusy('lmBase');
    baseView.reset();
    epochs = [];
    runSampling = sampling;
    try {
      say(baseMsg, 'Loading the English words…', 'busy');
      await ensureData();
      say(baseMsg, `Training the base model on ${args.limit ? `the first ${int(args.limit)} English words` : 'the English words'}…`, 'busy');
      const result = await app.request(Request.LM_TRAIN_BASE, { ...args, samples: sampling });
      baseView.finish(result);
      app.setBusy(null);
      state.hasBase = true;
      state.config = TINY_CONFIG;
      config.update();
      why.clear();
      scores.clear();
      await refresh();
      const loss = result.evalLoss.at(-1);
      say(baseMsg, `${result.cancelled ? 'Cancelled — the model keeps what it learnt' : 'Trained'}: ${int(result.steps)} steps in `
        + `${duration(result.seconds)}, ${int(result.tokensPerSec)} tokens/s${Number.isFinite(loss) ? `; held-out words ${num(loss, 3)} nats per token (reference: 2.11 after a full epoch)` : ''}.`, 'ok');
      await showQuantization();
      await keeper.saveBase();
      await keeper.saveCheckpoints();
      return result;
    } catch (e) {
      baseView.fail(`Stopped: ${e.message}`);
      say(baseMsg, `Training the base model failed: ${e.message}`, 'error');
      // A run that failed part-way (a diverging loss) keeps its last good step: show what the worker has.
      afterFailure();
      throw e;
    } finally {
      if (app.busy === 'lmBase') app.setBusy(null);
    }
  }

  baseForm.addEventListener('submit', (e) => {
    e.preventDefault();
    let args;
    try {
      if (app.busy) throw busyError();
      args = { ...baseFields.read(), schedule: baseForm.elements.schedule.value };
    } catch (err) {
      showRefusal(baseMsg, 'Cannot train: ', err);
      return;
    }
    trainBase(args).catch(() => {});
  });

  /** Loads a base folder ({ config: text|object, safetensors }); the loaded models stay if it is refused. */
  async function importBase({ config: cfg, safetensors }, label = 'the base model') {
    if (app.busy) throw busyError();
    try {
      const value = await app.request(Request.LM_IMPORT_BASE, { config: cfg, safetensors });
      state.hasBase = true;
      state.config = typeof cfg === 'string' ? JSON.parse(cfg) : cfg;
      config.update();
      why.clear();
      scores.clear();
      samples.clear();
      await refresh();
      await showQuantization();
      say(baseMsg, `Loaded ${label}: ${int(value.params)} parameters${qlora.quantized ? ', held in 4 bits (its quantization_config)' : ''}.`, 'ok');
      await keeper.saveBase();
      return value;
    } catch (e) {
      say(baseMsg, `${label} cannot be used: ${e.message}. The loaded models are unchanged.`, 'error');
      throw e;
    }
  }

  $('#lm-base-upload', root).addEventListener('change', async (e) => {
    const input = e.target;
    const label = [...input.files].map((f) => f.name).join(' + ');
    let files;
    try {
      files = await readFolder(app, input.files, ['config.json', 'model.safetensors']);
    } catch (err) {
      say(baseMsg, `Cannot load a base model: ${err.message}. The loaded models are unchanged.`, 'error');
      return;
    } finally {
      input.value = '';
    }
    // importBase shows its own verdict.
    importBase({ config: files['config.json'], safetensors: files['model.safetensors'] }, label).catch(() => {});
  });

  baseDownload.addEventListener('click', async () => {
    try {
      const { bytes, weights } = await downloadBase(app);
      say(baseMsg, `${BASE_FOLDER}.zip (${int(bytes)} bytes): config.json and model.safetensors (${int(weights)} bytes); `
        + `LlamaForCausalLM.from_pretrained("${BASE_FOLDER}") loads the unzipped folder.`, 'ok');
    } catch (e) {
      say(baseMsg, `Could not export the base model: ${e.message}`, 'error');
    }
  });

  // ── the adapter ──────────────────────────────────────────────────────────────────────────────────
  for (const b of presetButtons) {
    b.addEventListener('click', () => {
      config.applyPreset(b.dataset.preset);
      say(adapterMsg, `Preset "${b.dataset.preset}": ${PRESETS[b.dataset.preset].targetModules.join(', ')}, r 32, α 32, lr ${PRESETS[b.dataset.preset].lr}.`, 'info');
    });
  }

  /** This run's epochs, for the run's numbers (samples after the last epoch, the loss with it off). */
  let epochs = [];
  let running = null;
  let runSampling = null;
  app.on('epoch', (ev) => {
    if (ev.phase !== 'lmBase' && ev.phase !== 'lmAdapter') return;
    epochs.push(ev);
    // Each checkpoint is kept as it is made, so a reload in the middle of a run offers it.
    if (ev.checkpoint) keeper.saveCheckpoints();
    if (ev.samples?.base) {
      samples.show(ev.samples, {
        adapter: ev.phase === 'lmAdapter' ? running : null,
        when: `After epoch ${ev.epoch} of ${ev.epochs} of ${ev.phase === 'lmAdapter' ? `adapter "${running}"` : 'the base model'}`,
        settings: runSampling,
      });
    }
  });

  /**
   * Trains an adapter: `{ preset }` (with overrides) or settings as window.lab.lm takes them (left out:
   * the seed preset's). The panel's button sends the form's settings.
   */
  async function trainAdapter(args = {}) {
    if (app.busy) {
      const e = busyError();
      say(adapterMsg, e.message, 'error');
      throw e;
    }
    const sampling = samples.settings();
    const preset = PRESETS[args.preset ?? 'seed'];
    const name = args.name ?? preset?.name ?? 'seed';
    const targets = args.targetModules ?? preset?.targetModules ?? [];
    const data = args.data ?? 'pokemon';
    app.setBusy('lmAdapter');
    adapterView.reset();
    epochs = [];
    running = name;
    runSampling = sampling;
    try {
      if (!state.hasBase) throw new Error('there is no language model yet: train or load one above first');
      say(adapterMsg, 'Loading the corpora…', 'busy');
      await ensureData();
      say(adapterMsg, `Training adapter "${name}" on ${typeof data === 'string' ? DATA_NAMES[data] ?? data : 'your lines'}…`, 'busy');
      const result = await app.request(Request.LM_TRAIN_ADAPTER, { ...args, samples: sampling });
      adapterView.finish(result);
      app.setBusy(null);
      $('#lm-trainable', root).textContent = `${result.report}   (adapter "${result.name}", as the run reports it)`;
      await refresh();
      const stats = await runStats(result, { targets, data, loadBest: Boolean(args.loadBest) });
      why.set(result.name, stats);
      python.textContent = pythonSnippet(result.name);
      const last = result.evalLoss.at(-1);
      if (qlora.quantized) {
        // listed in the QLoRA box, and kept with the adapter's numbers
        stats.on4Bits = `held-out ${typeof data === 'string' ? DATA_NAMES[data] ?? data : 'lines'}: ${num(stats.lossOff, 3)} → ${num(last, 3)} nats per token`;
        qlora.noteAdapter(result.name, stats.on4Bits);
      }
      say(adapterMsg, `Adapter "${result.name}" ${result.cancelled ? 'cancelled (kept as far as it got)' : 'trained'} in ${duration(result.seconds)} `
        + `(${int(result.tokensPerSec)} tokens/s)${Number.isFinite(last) ? `: held-out ${num(stats.lossOff, 3)} → ${num(last, 3)} nats per token` : ''}.`, 'ok');
      await keeper.saveAdapter(result.name, stats);
      await keeper.saveCheckpoints();
      await keeper.saveState(state.adapters);
      return result;
    } catch (e) {
      adapterView.fail(`Stopped: ${e.message}`);
      say(adapterMsg, `Training the adapter failed: ${e.message}`, 'error');
      afterFailure();
      throw e;
    } finally {
      running = null;
      if (app.busy === 'lmAdapter') app.setBusy(null);
    }
  }

  /** The numbers "why q/k/v is not enough" shows for a finished run (its adapter is on now). */
  async function runStats(result, { targets, data, loadBest }) {
    const last = epochs.filter((e) => e.phase === 'lmAdapter').at(-1);
    const adapted = last?.samples?.adapted ?? null;
    const caps = async (on) => capitalMass((await app.request(Request.LM_LOGITS, { ids: [256], adapted: on })).logits);
    const best = result.evalLoss.length ? Math.min(...result.evalLoss) : NaN;
    return {
      targetModules: targets,
      data: typeof data === 'string' ? data : 'user',
      trainableParams: result.trainableParams,
      lossOff: last?.baseEvalLoss ?? NaN,
      lossOn: loadBest ? best : result.evalLoss.at(-1) ?? NaN,
      capitals: adapted ? adapted.filter(startsWithCapital).length : 0,
      samples: adapted ? adapted.length : 0,
      temperature: runSampling?.temperature,
      pCapitalOff: await caps(false),
      pCapitalOn: await caps(true),
    };
  }

  adapterForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    let args;
    try {
      if (app.busy) throw busyError();
      args = config.read();
      if (!args.targetModules.length) throw new Error('choose at least one module to adapt');
      args.data = await formData();
    } catch (err) {
      showRefusal(adapterMsg, 'Cannot train: ', err);
      return;
    }
    trainAdapter(args).catch(() => {});
  });

  /** Loads a PEFT folder as adapter `name`; the loaded models stay if it is refused. */
  async function importAdapter({ config: cfg, safetensors, name }, label = `adapter "${name}"`) {
    if (app.busy) throw busyError();
    try {
      const summary = await app.request(Request.LM_IMPORT_ADAPTER, { config: cfg, safetensors, name });
      await refresh();
      const final = summary?.name ?? name;
      why.set(final, null);
      python.textContent = pythonSnippet(final);
      say(adapterMsg, `Loaded ${label} as "${final}": ${int(summary.trainableParams)} trainable parameters; it is on.`, 'ok');
      await keeper.saveAdapter(final);
      await keeper.saveState(state.adapters);
      return summary;
    } catch (e) {
      say(adapterMsg, `${label} cannot be used: ${e.message}. The loaded models are unchanged.`, 'error');
      throw e;
    }
  }

  $('#lm-adapter-upload-form', root).addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('#lm-adapter-upload', root);
    const name = $('#lm-adapter-upload-name', root).value.trim() || 'uploaded';
    let files;
    try {
      if (!state.hasBase) throw new Error('load or train a base model first');
      files = await readFolder(app, input.files, ['adapter_config.json', 'adapter_model.safetensors']);
    } catch (err) {
      say(adapterMsg, `Cannot load the adapter: ${err.message}. The loaded models are unchanged.`, 'error');
      return;
    }
    // importAdapter shows its own verdict.
    importAdapter({ config: files['adapter_config.json'], safetensors: files['adapter_model.safetensors'], name },
      [...input.files].map((f) => f.name).join(' + ')).catch(() => {});
  });

  // ── the lists ────────────────────────────────────────────────────────────────────────────────────
  const listEl = $('#lm-adapter-list', root);
  const checkpointsEl = $('#lm-checkpoints', root);

  /** Runs a list request (set, merge, unmerge, delete, restore); resolves to the adapter list. */
  async function act(type, args, done) {
    if (app.busy) {
      render();
      const e = new Error(`wait until the ${app.busy} run ends`);
      say(adapterMsg, `Cannot do that now: ${e.message}.`, 'error');
      throw e;
    }
    try {
      await app.request(type, args);
      await refresh();
      say(adapterMsg, `${done}.`, 'ok');
      await keeper.saveState(state.adapters);
      return state.adapters;
    } catch (e) {
      say(adapterMsg, `${type} failed: ${e.message}`, 'error');
      render();
      throw e;
    }
  }

  const actions = {
    setActive: (name) => act(Request.LM_SET_ADAPTER, { name }, name ? `"${name}" is on` : 'Adapter off: the base model alone').catch(() => {}),
    merge: (name) => act(Request.LM_MERGE, { name }, `"${name}" merged into the weights (W ← W + scaling·lora_B·lora_A)`).catch(() => {}),
    unmerge: (name) => act(Request.LM_UNMERGE, { name }, `"${name}" unmerged: the base weights are back`).catch(() => {}),
    remove: (name) => removeAdapter(name).catch(() => {}),
    download: async (name) => {
      try {
        const { bytes, folder } = await downloadAdapter(app, name);
        python.textContent = pythonSnippet(name);
        say(adapterMsg, `${folder}.zip (${int(bytes)} bytes): adapter_config.json and adapter_model.safetensors; PeftModel.from_pretrained reads the unzipped folder.`, 'ok');
      } catch (e) {
        say(adapterMsg, `Could not export adapter "${name}": ${e.message}`, 'error');
      }
    },
  };

  async function removeAdapter(name) {
    const value = await act(Request.LM_DELETE_ADAPTER, { name }, `Adapter "${name}" deleted`);
    why.set(name, null);
    qlora.forgetAdapter(name);
    await keeper.forgetAdapter(name);
    return value;
  }

  async function restoreCheckpoint(id) {
    const cp = (await app.request(Request.LM_CHECKPOINTS)).find((c) => c.id === id);
    const value = await act(Request.LM_RESTORE_CHECKPOINT, { id }, cp
      ? `Checkpoint of epoch ${cp.epoch} (held-out ${num(cp.evalLoss, 3)}) restored${cp.adapter ? ` as adapter "${cp.adapter}", now on` : ' as the base model'}`
      : `Checkpoint ${id} restored`);
    if (cp && !cp.adapter) {
      why.clear();
      scores.clear();
      samples.clear();
      await showQuantization();
      await keeper.saveBase();
      await keeper.saveCheckpoints();
    } else if (cp) {
      await keeper.saveAdapter(cp.adapter, why.get(cp.adapter) ?? null);
      await keeper.saveState(state.adapters);
    }
    return value;
  }

  let checkpointList = [];
  function render() {
    renderAdapters(listEl, state.adapters, state.config.num_hidden_layers, actions);
    renderCheckpoints(checkpointsEl, checkpointList, (id) => restoreCheckpoint(id).catch(() => {}));
    $('#lm-active-name', root).textContent = state.adapters.active ?? 'none';
    baseDownload.disabled = !state.hasBase;
    root.dataset.hasBase = String(state.hasBase);
  }

  /** After a failed run: what the worker holds now, shown (nothing is thrown). */
  function afterFailure() {
    app.request(Request.LM_STATUS).then(async (st) => {
      state.hasBase = st.hasModel;
      await refresh();
    }).catch(() => {});
  }

  /** The worker's adapter and checkpoint lists, shown. */
  async function refresh() {
    state.adapters = await app.request(Request.LM_ADAPTERS);
    checkpointList = await app.request(Request.LM_CHECKPOINTS);
    render();
    return state.adapters;
  }
  render();

  app.on('busy', ({ phase }) => {
    for (const b of [baseTrain, adapterTrain, ...presetButtons]) b.disabled = Boolean(phase);
    qlora.setBusy(Boolean(phase));
  });

  // ── storage and restarts ─────────────────────────────────────────────────────────────────────────
  async function restore() {
    const done = await keeper.restore();
    if (done.base) {
      state.hasBase = true;
      state.config = done.config || TINY_CONFIG;
      config.update();
      for (const [name, s] of Object.entries(done.stats)) why.set(name, s);
      await refresh().catch(() => {});
      await showQuantization();
      for (const [name, s] of Object.entries(done.stats)) if (s.on4Bits) qlora.noteAdapter(name, s.on4Bits);
      if (state.adapters.active) python.textContent = pythonSnippet(state.adapters.active);
    }
    return { base: done.base, adapters: done.adapters, checkpoints: done.checkpoints };
  }

  /** The last restore's promise (window.lab.lm.restored). */
  let restored = Promise.resolve({ base: false, adapters: 0, checkpoints: 0 });
  /** Restores once `after` (the MLP's restore) has settled. */
  const restoreAfter = (after) => {
    restored = Promise.resolve(after).catch(() => {}).then(() => restore());
    return restored;
  };

  let restarting = false;
  app.on('restart', () => {
    restarting = true;
    dataPromise = null;
    Object.assign(state, { hasBase: false, config: TINY_CONFIG, adapters: { active: null, list: [] } });
    checkpointList = [];
    why.clear();
    qlora.clear();
    render();
  });
  app.on('restored', () => {
    if (!restarting) return;
    restarting = false;
    restoreAfter(null);
  });

  return {
    trainBase,
    trainAdapter,
    importBase,
    importAdapter,
    setAdapter: (name) => act(Request.LM_SET_ADAPTER, { name: name ?? null }, name ? `"${name}" is on` : 'Adapter off: the base model alone'),
    merge: (name) => act(Request.LM_MERGE, { name }, `"${name}" merged into the weights`),
    unmerge: (name) => act(Request.LM_UNMERGE, { name }, `"${name}" unmerged`),
    deleteAdapter: removeAdapter,
    restoreCheckpoint,
    generate: () => samples.generate(),
    score: (text) => scores.score(text),
    restoreAfter,
    qlora,
    get restored() {
      return restored;
    },
    config,
  };
}
