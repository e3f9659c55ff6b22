// target_modules as a grid of checkboxes, one per projection and decoder layer (with a box per column and
// per row, and lm_head below when the model may adapt it), read back the way PEFT's list is written: a
// projection ticked in every layer by its short name (as the article writes "q_proj"), one ticked in some
// layers by those layers' full names. Panel 6's and panel 7's LoraConfig forms share it.
import { $$, el } from '../ui.js';

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

/** PEFT's rule for a list entry: the module's full name, or a suffix of it after a dot. */
export const names = (target, module) => module === target || module.endsWith(`.${target}`);

/**
 * The grid inside `container`; `initial` is the list ticked at first, `onChange()` runs after every
 * click. `build({ layers, lmHead })` (re)draws it for a model (keeping what can be kept); `lmHead` is
 * the label of the output layer's box, or null when the model's adapters may not target it.
 */
export function targetGrid(container, initial, onChange = () => {}) {
  /** Short names in the order the snippet writes them (a preset's, then the rest in HF's order). */
  let order = initial.filter((t) => LAYER_MODULES.some(([s]) => s === t));
  let layers = 0;
  let headLabel = null;

  const boxes = () => $$('input[data-module]', container);
  const typeBoxes = () => $$('input[data-type]', container);
  const layerBoxes = () => $$('input[data-layer]', container);
  const box = (data, label) => {
    const b = el('input', { type: 'checkbox' });
    Object.assign(b.dataset, data);
    b.setAttribute('aria-label', label);
    return b;
  };

  function build({ layers: n, lmHead = null }) {
    if (n === layers && lmHead === headLabel && container.querySelector('table')) return;
    const keep = container.querySelector('table') ? targetModules() : initial;
    layers = n;
    headLabel = lmHead;
    const head = el('tr', {}, el('th', { scope: 'col' }, 'layer'));
    const allRow = el('tr', {}, el('th', { scope: 'row' }, 'every layer'));
    for (const [short] of LAYER_MODULES) {
      head.append(el('th', { scope: 'col' }, short));
      allRow.append(el('td', {}, box({ type: short }, `${short} in every layer`)));
    }
    const body = el('tbody', {}, allRow);
    for (let l = 0; l < layers; l++) {
      const tr = el('tr', {}, el('th', { scope: 'row' }, el('label', {}, box({ layer: String(l) }, `every projection of layer ${l}`), ` ${l}`)));
      for (const [short, path] of LAYER_MODULES) {
        tr.append(el('td', {}, box({ module: `model.layers.${l}.${path}`, short, layerIndex: String(l) }, `${short} of layer ${l}`)));
      }
      body.append(tr);
    }
    if (lmHead) {
      const b = box({ module: 'lm_head', short: 'lm_head' }, 'lm_head (the output layer)');
      body.append(el('tr', {}, el('th', { scope: 'row' }, 'output'),
        el('td', { colSpan: LAYER_MODULES.length, className: 'lm-head-cell' }, el('label', {}, b, ` ${lmHead}`))));
    }
    container.replaceChildren(el('table', { className: 'lm-target-grid' }, el('thead', {}, head), body));
    setTargets(keep);
  }

  /** Ticks the modules a list names (short names, full names, lm_head). */
  function setTargets(list) {
    order = list.filter((t) => LAYER_MODULES.some(([s]) => s === t));
    for (const b of boxes()) b.checked = list.some((t) => names(t, b.dataset.module));
    syncHeads();
  }

  /** The column and row boxes follow their cells: ticked when all are, mixed when some are. */
  function syncHeads() {
    const follow = (head, cells) => {
      const on = cells.filter((b) => b.checked).length;
      head.checked = on === cells.length && on > 0;
      head.indeterminate = on > 0 && on < cells.length;
    };
    const all = boxes();
    for (const t of typeBoxes()) follow(t, all.filter((b) => b.dataset.short === t.dataset.type));
    for (const r of layerBoxes()) follow(r, all.filter((b) => b.dataset.layerIndex === r.dataset.layer));
  }

  /** target_modules for the ticked boxes, lm_head last. */
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

  container.addEventListener('change', (e) => {
    const t = e.target;
    const all = boxes();
    if (t.dataset.type) for (const b of all.filter((x) => x.dataset.short === t.dataset.type)) b.checked = t.checked;
    if (t.dataset.layer) for (const b of all.filter((x) => x.dataset.layerIndex === t.dataset.layer)) b.checked = t.checked;
    syncHeads();
    onChange();
  });

  return { build, setTargets, targetModules };
}
