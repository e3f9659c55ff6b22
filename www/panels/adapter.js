// Panel 3: train LoRA adapters (the article's recipe or any PEFT setting), list them, switch, merge,
// delete, download and load them, and compare accuracy with the adapter on and off.
import { Request } from '../protocol.js';
import { download, readBytes, readJson } from '../download.js';
import { perClassChart, COLORS } from '../charts.js';
import { $, $$, el, say, pct, int, duration, writeValue } from '../ui.js';
import { numberFields, showRefusal } from '../fields.js';
import { trainingView } from './training.js';
import { qloraToggle } from './qlora.js';

/** in and out features of the article's Linear layers. */
export const LAYERS = Object.freeze({ 'layers.1': [784, 512], 'layers.3': [512, 256], 'layers.5': [256, 10] });
export const BASE_PARAMS = Object.values(LAYERS).reduce((s, [i, o]) => s + i * o + o, 0); // 535,818

export const ARTICLE_PRESET = Object.freeze({
  targets: ['layers.5'], rank: 4, alpha: 1, scaling: 'article', init: 'svd', dropout: 0, bias: 'none',
  lr: 5e-3, epochs: 3, batchSize: 64, replay: 0,
});

/** PEFT's print_trainable_parameters line. */
export function trainableLine(trainable, all) {
  return `trainable params: ${int(trainable)} || all params: ${int(all)} || trainable%: ${((100 * trainable) / all).toFixed(4)}`;
}

/** Trainable parameters of a setting, counted the way the article and PEFT do (base params as "all"). */
export function countTrainable({ targets, rank, bias }) {
  let n = 0;
  for (const t of targets) {
    const [i, o] = LAYERS[t] || [0, 0];
    n += rank * (i + o);
    if (bias === 'lora_only') n += o;
  }
  if (bias === 'all') n += Object.values(LAYERS).reduce((s, [, o]) => s + o, 0);
  return n;
}

/** A short description of an adapter's config, whether it uses our names or PEFT's adapter_config.json. */
export function describeConfig(c = {}) {
  const targets = c.targets ?? c.target_modules ?? [];
  const rank = c.rank ?? c.r;
  const alpha = c.alpha ?? c.lora_alpha;
  const scaling = c.scaling ?? (c.use_rslora ? 'rslora' : c.peft_type ? 'peft' : undefined);
  const init = c.init ?? c.init_lora_weights;
  const parts = [Array.isArray(targets) ? targets.join(', ') : String(targets)];
  if (rank !== undefined) parts.push(`r ${rank}`);
  if (alpha !== undefined) parts.push(`α ${alpha}`);
  if (scaling !== undefined) parts.push(`${scaling} scaling`);
  if (init !== undefined && init !== true) parts.push(`${init} init`);
  return parts.join(' · ');
}

export function adapterPanel(app) {
  const root = $('#adapter');
  const form = $('#adapter-form', root);
  const msg = $('#adapter-msg', root);
  const paramsEl = $('#adapter-params', root);
  const listEl = $('#adapter-list', root);
  const presetButton = $('#adapter-preset', root);
  const trainButton = $('#adapter-train', root);
  const view = trainingView(app, $('#adapter-training', root), 'adapter', (t) => say(msg, t, 'error'));
  const perClass = perClassChart($('#adapter-perclass', root));
  const qlora = qloraToggle($('#adapter-qlora', root), {
    request: (type, args) => app.request(type, args),
    requests: { quantize: Request.QUANTIZE_BASE, dequantize: Request.DEQUANTIZE_BASE },
    qualityLabel: 'base accuracy on digits 0–7',
    quality: async () => {
      const ev = await app.evaluate();
      return { value: ev.base.acc_0_7, text: pct(ev.base.acc_0_7) };
    },
    blocked: () => (app.busy ? `a ${app.busy} run is in progress` : app.hasModel ? null : 'there is no base model yet (panel 2)'),
    changed: (q) => app.saveQuantization(q),
  });
  /** The worker's word on the base's quantisation, shown (a new, loaded or restored base). */
  const showQuantization = () => app.request(Request.STATUS).then((st) => qlora.show(st.quantization), () => {});
  app.on('model', showQuantization);
  app.on('restart', () => qlora.clear());
  // A restored base: its quantisation shown, then the adapters it had trained in 4 bits
  app.on('restored', ({ on4Bits }) => showQuantization().then(() => {
    for (const [name, text] of Object.entries(on4Bits ?? {})) qlora.noteAdapter(name, text);
  }));

  /** The numeric settings, with what an empty field means. */
  const fields = numberFields(form, { rank: 4, alpha: 1, dropout: 0, lr: 5e-3, epochs: 3, batchSize: 64, replay: 0, seed: 13 });

  /** The form's settings; throws a FieldError (fields marked) for a numeric field that is not a number. */
  function readForm() {
    const f = form.elements;
    return {
      name: f.name.value.trim() || 'adapter',
      targets: $$('input[name="target"]', form).filter((c) => c.checked).map((c) => c.value),
      scaling: f.scaling.value,
      init: f.init.value,
      bias: f.bias.value,
      ...fields.read(),
    };
  }

  /** Writes settings into the form; refuses (FieldError, nothing written) a numeric one that is not a number. */
  function setForm(opts = {}) {
    fields.write(opts);
    const f = form.elements;
    for (const key of ['name', 'scaling', 'init', 'bias']) writeValue(f[key], opts[key]);
    if (Array.isArray(opts.targets)) {
      for (const c of $$('input[name="target"]', form)) c.checked = opts.targets.includes(c.value);
    }
    preview();
  }

  function preview() {
    const targets = $$('input[name="target"]', form).filter((c) => c.checked).map((c) => c.value);
    const rank = fields.peek('rank');
    if (!targets.length) paramsEl.textContent = 'Choose at least one target layer.';
    else if (rank === undefined) paramsEl.textContent = `Trainable parameters: – (${fields.label('rank')} is not a number).`;
    else paramsEl.textContent = `${trainableLine(countTrainable({ targets, rank, bias: form.elements.bias.value }), BASE_PARAMS)}   (these settings, counted here before training)`;
  }
  form.addEventListener('input', preview);
  form.addEventListener('change', preview);
  preview();

  /** Trains an adapter: `{ preset: 'article' }` or settings (missing ones come from the form). */
  async function train(opts = {}) {
    if (app.busy) {
      const e = new Error(`already busy (${app.busy}); wait, or cancel it first`);
      say(msg, e.message, 'error');
      throw e;
    }
    let args;
    try {
      if (opts.preset === 'article') {
        setForm(ARTICLE_PRESET);
        args = { preset: 'article' };
      } else {
        setForm(opts);
        args = readForm();
        if (!args.targets.length) throw new Error('choose at least one target layer');
      }
    } catch (e) {
      showRefusal(msg, 'Cannot train: ', e);
      throw e;
    }
    app.setBusy('adapter');
    view.reset();
    try {
      if (!app.hasModel) throw new Error('there is no base model yet: train or load one in panel 2 first');
      say(msg, 'Loading MNIST…', 'busy');
      await app.ensureData();
      say(msg, `Training adapter${args.name ? ` "${args.name}"` : ''} on digits 8–9…`, 'busy');
      const result = await app.request(Request.TRAIN_ADAPTER, args);
      view.finish(result);
      paramsEl.textContent = `${trainableLine(result.trainableParams, result.totalParams)}   (adapter "${result.name}")`;
      app.setBusy(null);
      await app.refreshAdapters();
      say(msg, `Adapter "${result.name}" ${result.cancelled ? 'cancelled (kept as far as it got)' : 'trained'} in ${duration(result.seconds)}. Evaluating…`, 'busy');
      const ev = await app.evaluate();
      // What an adapter trained on the 4-bit base reached, listed in the QLoRA box and kept with it
      const on4Bits = qlora.quantized && ev.adapted
        ? `digits 8–9 ${pct(ev.adapted.acc_8_9)}, 0–7 ${pct(ev.adapted.acc_0_7)} with it on (base alone: 0–7 ${pct(ev.base.acc_0_7)})`
        : null;
      if (on4Bits) qlora.noteAdapter(result.name, on4Bits);
      say(msg, `Adapter "${result.name}" ${result.cancelled ? 'cancelled (kept as far as it got)' : 'trained'} in ${duration(result.seconds)} and evaluated.`, 'ok');
      app.saveAdapter(result.name, on4Bits);
      bumpName(result.name);
      return result;
    } catch (e) {
      view.fail(`Stopped: ${e.message}`);
      say(msg, `Training the adapter failed: ${e.message}`, 'error');
      throw e;
    } finally {
      if (app.busy === 'adapter') app.setBusy(null);
    }
  }

  function bumpName(used) {
    const f = form.elements.name;
    const taken = new Set(app.adapters.list.map((a) => a.name));
    if (f.value.trim() !== used && !taken.has(f.value.trim())) return;
    let i = app.adapters.list.length + 1;
    while (taken.has(`adapter-${i}`)) i++;
    f.value = `adapter-${i}`;
  }

  presetButton.addEventListener('click', () => train({ preset: 'article' }).catch(() => {}));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    train().catch(() => {});
  });
  $('#adapter-evaluate', root).addEventListener('click', () => {
    say(msg, 'Evaluating…', 'busy');
    app.evaluate().then(() => say(msg, 'Evaluated on the test set.', 'ok'), (e) => say(msg, `Could not evaluate: ${e.message}`, 'error'));
  });

  app.on('busy', ({ phase }) => {
    presetButton.disabled = Boolean(phase);
    trainButton.disabled = Boolean(phase);
    qlora.setBusy(Boolean(phase));
  });

  // ── the adapter list ──────────────────────────────────────────────────────────────────────────────
  function renderList({ active, list }) {
    $('#adapter-active-name', root).textContent = active ?? 'none active';
    if (!list.length) {
      listEl.replaceChildren(el('p', { className: 'muted' }, 'No adapters yet.'));
      return;
    }
    const table = el('table', { className: 'adapters' });
    table.append(el('thead', {}, el('tr', {}, ...['active', 'name', 'settings', 'trainable params', 'merged', ''].map((h) => el('th', { scope: 'col' }, h)))));
    const tbody = el('tbody');
    const radio = (value, checked, label) => {
      const r = el('input', { type: 'radio', name: 'active-adapter', value, checked });
      r.setAttribute('aria-label', label);
      r.addEventListener('change', () => act(Request.SET_ADAPTER, { name: value === '' ? null : value }, value ? `"${value}" is on` : 'Adapter off').catch(() => {}));
      return r;
    };
    tbody.append(el('tr', {}, el('td', {}, radio('', active == null, 'No adapter (base model only)')), el('td', { colSpan: 5 }, 'off — base model only')));
    for (const a of list) {
      const merge = el('button', { type: 'button', textContent: a.merged ? 'Unmerge' : 'Merge' });
      merge.addEventListener('click', () => act(a.merged ? Request.UNMERGE : Request.MERGE, { name: a.name },
        a.merged ? `"${a.name}" unmerged: W is back to the base weights` : `"${a.name}" merged into W: W ← W + scaling·lora_B·lora_A`).catch(() => {}));
      const save = el('button', { type: 'button', textContent: 'Download' });
      save.addEventListener('click', () => exportAdapter(a.name));
      const del = el('button', { type: 'button', textContent: 'Delete', className: 'danger' });
      del.addEventListener('click', async () => {
        try {
          await act(Request.DELETE_ADAPTER, { name: a.name }, `Adapter "${a.name}" deleted`);
          app.forgetAdapter(a.name);
          qlora.forgetAdapter(a.name);
        } catch {
          // shown in the panel
        }
      });
      tbody.append(el('tr', {},
        el('td', {}, radio(a.name, a.name === active, `Use adapter ${a.name}`)),
        el('td', {}, el('strong', {}, a.name)),
        el('td', {}, describeConfig(a.config)),
        el('td', { className: 'numeric' }, Number.isFinite(a.trainableParams) ? int(a.trainableParams) : '–'),
        el('td', {}, a.merged ? 'yes' : 'no'),
        el('td', { className: 'actions' }, merge, save, del)));
    }
    table.append(tbody);
    listEl.replaceChildren(table);
  }

  /** Runs an adapter-list request (setAdapter, merge, unmerge, deleteAdapter); resolves to the new list. */
  async function act(type, args, done) {
    if (app.busy) {
      renderList(app.adapters);
      const e = new Error(`wait until the ${app.busy} run ends`);
      say(msg, `Cannot do that now: ${e.message}.`, 'error');
      throw e;
    }
    let adapters;
    try {
      adapters = await app.refreshAdapters(await app.request(type, args));
    } catch (e) {
      say(msg, `${type} failed: ${e.message}`, 'error');
      renderList(app.adapters);
      throw e;
    }
    say(msg, `${done}. Evaluating…`, 'busy');
    await app.evaluate().then(() => say(msg, `${done}.`, 'ok'), (e) => say(msg, `${done}, but could not evaluate: ${e.message}`, 'error'));
    return adapters;
  }

  async function exportAdapter(name) {
    try {
      const { safetensors, config, baseModel } = await app.request(Request.EXPORT_ADAPTER, { name });
      download(safetensors, 'adapter_model.safetensors');
      download(config, 'adapter_config.json');
      if (baseModel) download(baseModel, 'model.safetensors');
      say(msg, `Adapter "${name}": adapter_model.safetensors and adapter_config.json${baseModel
        ? ', plus model.safetensors (PiSSA changes the base weights to the residual, so PEFT needs those too)' : ''}.`, 'ok');
    } catch (e) {
      say(msg, `Could not export adapter "${name}": ${e.message}`, 'error');
    }
  }

  app.on('adapters', renderList);
  app.on('restart', () => renderList({ active: null, list: [] }));

  // ── accuracy with the adapter on / off ───────────────────────────────────────────────────────────
  app.on('evaluation', (ev) => {
    for (const td of $$('#adapter-acc td[data-key]', root)) {
      const [which, key] = td.dataset.key.split('.');
      td.textContent = ev[which] ? pct(ev[which][key]) : '–';
    }
    const series = [{ label: 'adapter off (base)', values: ev.base?.perClass || [], color: COLORS.base }];
    if (ev.adapted) series.push({ label: `adapter on (${app.adapters.active ?? 'active'})`, values: ev.adapted.perClass, color: COLORS.adapted });
    perClass.set(series);
  });

  // ── upload ───────────────────────────────────────────────────────────────────────────────────────
  $('#adapter-upload', root).addEventListener('click', async () => {
    const weights = $('#adapter-upload-weights', root).files[0];
    const configFile = $('#adapter-upload-config', root).files[0];
    const name = $('#adapter-upload-name', root).value.trim() || 'uploaded';
    if (!weights || !configFile) {
      say(msg, 'Choose both files: adapter_model.safetensors and adapter_config.json.', 'error');
      return;
    }
    say(msg, 'Reading the adapter files…', 'busy');
    try {
      const config = await readJson(configFile);
      await importAdapter({ safetensors: await readBytes(weights), config, name });
    } catch (e) {
      if (!msg.textContent.startsWith('The adapter')) say(msg, `The adapter files cannot be used: ${e.message}. The loaded models are unchanged.`, 'error');
    }
  });

  async function importAdapter({ safetensors, config, name }) {
    try {
      if (!app.hasModel) throw new Error('load or train a base model first (panel 2)');
      const summary = await app.request(Request.IMPORT_ADAPTER, { safetensors, config, name });
      const finalName = summary?.name ?? name;
      await app.refreshAdapters();
      app.saveAdapter(finalName);
      say(msg, `Loaded adapter "${finalName}". Evaluating…`, 'busy');
      await app.evaluate().catch(() => {});
      say(msg, `Loaded adapter "${finalName}".`, 'ok');
      return summary;
    } catch (e) {
      say(msg, `The adapter files cannot be used: ${e.message}. The loaded models are unchanged.`, 'error');
      throw e;
    }
  }

  return { train, importAdapter, readForm, setForm, fields, exportAdapter, act, qlora };
}
