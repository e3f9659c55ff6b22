// Panel 6's LoraConfig: the article's snippet with live fields, target_modules as checkboxes per
// projection and per layer, the presets of LANGUAGE_MODEL.md, and PEFT's trainable-parameter line,
// counted here from the base's config.json the way the lab counts it (r·(in + out) per adapted Linear;
// the model's Linears have no bias, so `bias` adds nothing; "all params" includes the adapter).
import { $, $$, el, int, writeValue } from '../ui.js';
import { numberFields } from '../fields.js';

/** A decoder layer's seven Linears, in Hugging Face's order: [short name, module path in the layer]. */
export const LAYER_MODULES = Object.freeze([
  ['q_proj', 'self_attn.q_proj'],
  ['k_proj', 'self_attn.k_proj'],
  ['v_proj', 'self_attn.v_proj'],
  ['o_proj', 'self_attn.o_proj'],
  ['gate_proj', 'mlp.gate_proj'],
  ['up_proj', 'mlp.up_proj'],
  ['down_proj', 'mlp.down_proj'],
]);

/** The lab's model (LANGUAGE_MODEL.md), until a base with another config.json is loaded. */
export const TINY_CONFIG = Object.freeze({
  vocab_size: 264, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4, num_attention_heads: 4,
});

/** The base preset's training settings (what the base form starts with). */
export const BASE_DEFAULTS = Object.freeze({
  epochs: 1, batchSize: 32, lr: 3e-3, weightDecay: 0.1, warmupRatio: 0.03, seed: 1311, limit: undefined,
});

const SHARED = { loraAlpha: 32, r: 32, loraDropout: 0.05, bias: 'none', batchSize: 3, epochs: 5, weightDecay: 0.1, warmupRatio: 0.03, schedule: 'cosine', seed: 1311, loadBest: false };
/** The design note's presets: `seed` is the article's LoraConfig and TrainingArguments. */
export const PRESETS = Object.freeze({
  seed: Object.freeze({ ...SHARED, name: 'seed', targetModules: ['q_proj', 'v_proj', 'k_proj'], lr: 5e-4 }),
  'new-tokens': Object.freeze({ ...SHARED, name: 'new-tokens', targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'lm_head'], lr: 2e-3 }),
});

/** The numeric fields of the adapter form and what an empty one means (the seed preset's value). */
const ADAPTER_NUMBERS = { r: 32, loraAlpha: 32, loraDropout: 0.05, batchSize: 3, epochs: 5, lr: 5e-4, weightDecay: 0.1, warmupRatio: 0.03, seed: 1311 };

/** Every Linear of a base with config `cfg` as [full name, in, out], in the lab's order (lm_head last). */
export function linearModules(cfg = TINY_CONFIG) {
  const h = cfg.hidden_size;
  const i = cfg.intermediate_size;
  const out = [];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    for (const [short, path] of LAYER_MODULES) {
      const shape = short === 'gate_proj' || short === 'up_proj' ? [h, i] : short === 'down_proj' ? [i, h] : [h, h];
      out.push([`model.layers.${l}.${path}`, ...shape]);
    }
  }
  out.push(['lm_head', h, cfg.vocab_size]);
  return out;
}

/** The base's parameters (embeddings, layers, final norm, lm_head), as the lab counts them. */
export function baseParams(cfg = TINY_CONFIG) {
  const { hidden_size: h, intermediate_size: i, vocab_size: v, num_hidden_layers: layers } = cfg;
  return layers * (4 * h * h + 3 * h * i + 2 * h) + 2 * v * h + h;
}

/** PEFT's rule for a list entry: the module's full name, or a suffix of it after a dot. */
export const names = (target, module) => module === target || module.endsWith(`.${target}`);

/** Trainable parameters of LoRA rank `r` on the modules `targets` names (PEFT's list rule). */
export function countTrainable(targets, r, cfg = TINY_CONFIG) {
  let n = 0;
  for (const [name, fanIn, fanOut] of linearModules(cfg)) if (targets.some((t) => names(t, name))) n += r * (fanIn + fanOut);
  return n;
}

/** PEFT's print_trainable_parameters line. */
export function peftLine(trainable, all) {
  return `trainable params: ${int(trainable)} || all params: ${int(all)} || trainable%: ${((100 * trainable) / all).toFixed(4)}`;
}

/** A list of strings as Python writes it. */
export const pyList = (xs) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

/**
 * The adapter form (`#lm-adapter-form`): the snippet's fields, the target grid, name. `baseConfig()`
 * gives the current base's config.json (for the grid's layers and the count).
 */
export function loraConfigForm(root, baseConfig, onChange = () => {}) {
  const fields = numberFields(root, ADAPTER_NUMBERS);
  const grid = $('#lm-targets', root);
  const targetsText = $('#lm-targets-text', root);
  const countEl = $('#lm-trainable', root.closest('section') || document);
  /** Short names in the order the snippet writes them (a preset's, then the rest in HF's order). */
  let order = PRESETS.seed.targetModules.slice();
  let layers = 0;

  const boxes = () => $$('input[data-module]', grid);
  const typeBoxes = () => $$('input[data-type]', grid);
  const layerBoxes = () => $$('input[data-layer]', grid);

  /** (Re)builds the grid for a base of `cfg.num_hidden_layers` layers, keeping what can be kept. */
  function build(cfg) {
    if (cfg.num_hidden_layers === layers && grid.querySelector('table')) return;
    const keep = grid.querySelector('table') ? targetModules() : PRESETS.seed.targetModules;
    layers = cfg.num_hidden_layers;
    const table = el('table', { className: 'lm-target-grid' });
    const head = el('tr', {}, el('th', { scope: 'col' }, 'layer'));
    const allRow = el('tr', {}, el('th', { scope: 'row' }, 'every layer'));
    for (const [short] of LAYER_MODULES) {
      head.append(el('th', { scope: 'col' }, short));
      const box = el('input', { type: 'checkbox' });
      box.dataset.type = short;
      box.setAttribute('aria-label', `${short} in every layer`);
      allRow.append(el('td', {}, box));
    }
    table.append(el('thead', {}, head));
    const body = el('tbody', {}, allRow);
    for (let l = 0; l < layers; l++) {
      const layerBox = el('input', { type: 'checkbox' });
      layerBox.dataset.layer = String(l);
      layerBox.setAttribute('aria-label', `every projection of layer ${l}`);
      const tr = el('tr', {}, el('th', { scope: 'row' }, el('label', {}, layerBox, ` ${l}`)));
      for (const [short, path] of LAYER_MODULES) {
        const box = el('input', { type: 'checkbox' });
        box.dataset.module = `model.layers.${l}.${path}`;
        box.dataset.short = short;
        box.dataset.layerIndex = String(l);
        box.setAttribute('aria-label', `${short} of layer ${l}`);
        tr.append(el('td', {}, box));
      }
      body.append(tr);
    }
    const head2 = el('tr', {}, el('th', { scope: 'row' }, 'output'));
    const lmHead = el('input', { type: 'checkbox' });
    lmHead.dataset.module = 'lm_head';
    lmHead.dataset.short = 'lm_head';
    lmHead.setAttribute('aria-label', 'lm_head (the output layer)');
    head2.append(el('td', { colSpan: LAYER_MODULES.length, className: 'lm-head-cell' }, el('label', {}, lmHead, ` lm_head (${cfg.hidden_size} → ${cfg.vocab_size}, the output layer)`)));
    body.append(head2);
    table.append(body);
    grid.replaceChildren(table);
    setTargets(keep);
  }

  /** Ticks the modules a list names (short names, full names, lm_head). */
  function setTargets(list) {
    for (const b of boxes()) b.checked = list.some((t) => names(t, b.dataset.module));
    syncHeads();
  }

  /** The column and row boxes follow their cells: ticked when all are, mixed when some are. */
  function syncHeads() {
    for (const t of typeBoxes()) {
      const cells = boxes().filter((b) => b.dataset.short === t.dataset.type);
      const on = cells.filter((b) => b.checked).length;
      t.checked = on === cells.length && on > 0;
      t.indeterminate = on > 0 && on < cells.length;
    }
    for (const r of layerBoxes()) {
      const cells = boxes().filter((b) => b.dataset.layerIndex === r.dataset.layer);
      const on = cells.filter((b) => b.checked).length;
      r.checked = on === cells.length;
      r.indeterminate = on > 0 && on < cells.length;
    }
  }

  /**
   * target_modules for the ticked boxes: a projection ticked in every layer is its short name (as the
   * article writes "q_proj"), one ticked in some layers is those layers' full names; lm_head last.
   */
  function targetModules() {
    const ticked = boxes().filter((b) => b.checked);
    const byType = new Map();
    for (const b of ticked) {
      if (b.dataset.short === 'lm_head') continue;
      if (!byType.has(b.dataset.short)) byType.set(b.dataset.short, []);
      byType.get(b.dataset.short).push(b.dataset.module);
    }
    const shorts = [...order.filter((s) => byType.has(s)), ...LAYER_MODULES.map(([s]) => s).filter((s) => byType.has(s) && !order.includes(s))];
    const out = [];
    for (const s of shorts) {
      const mods = byType.get(s);
      if (mods.length === layers) out.push(s);
      else out.push(...mods);
    }
    if (ticked.some((b) => b.dataset.short === 'lm_head')) out.push('lm_head');
    return out;
  }

  grid.addEventListener('change', (e) => {
    const t = e.target;
    if (t.dataset.type) for (const b of boxes().filter((x) => x.dataset.short === t.dataset.type)) b.checked = t.checked;
    if (t.dataset.layer) for (const b of boxes().filter((x) => x.dataset.layerIndex === t.dataset.layer)) b.checked = t.checked;
    syncHeads();
    update();
  });

  /** The settings as the lab takes them; throws a FieldError (fields marked) for a bad number. */
  function read() {
    const f = root.elements;
    return {
      name: f.name.value.trim() || 'adapter',
      targetModules: targetModules(),
      bias: f.bias.value,
      schedule: f.schedule.value,
      loadBest: f.loadBest.value === 'true',
      ...fields.read(),
    };
  }

  /** Writes settings (a preset's, or window.lab.lm's); a bad number refuses them all (FieldError). */
  function write(opts = {}) {
    fields.write(opts);
    const f = root.elements;
    for (const key of ['name', 'bias', 'schedule']) writeValue(f[key], opts[key]);
    if (opts.loadBest !== undefined) f.loadBest.value = opts.loadBest ? 'true' : 'false';
    if (Array.isArray(opts.targetModules)) {
      order = opts.targetModules.filter((t) => LAYER_MODULES.some(([s]) => s === t));
      setTargets(opts.targetModules);
    }
    update();
  }

  /** The snippet's target_modules and PEFT's line for the current settings, before any training. */
  function update() {
    const cfg = baseConfig();
    build(cfg);
    const targets = targetModules();
    targetsText.textContent = pyList(targets);
    const r = fields.peek('r');
    let line;
    if (!targets.length) line = 'Choose at least one module to adapt.';
    else if (r === undefined) line = `trainable params: – (${fields.label('r')} is not a number)`;
    else {
      const t = countTrainable(targets, r, cfg);
      line = peftLine(t, baseParams(cfg) + t);
    }
    countEl.textContent = line;
    countEl.dataset.trainable = r === undefined ? '' : String(countTrainable(targets, r, cfg));
    onChange();
  }

  root.addEventListener('input', update);
  root.addEventListener('change', update);
  update();

  return {
    fields,
    read,
    write,
    update,
    targetModules,
    applyPreset(name) {
      write(PRESETS[name]);
    },
  };
}
