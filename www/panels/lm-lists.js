// Panel 6's lists: the language model's adapters (on/off, merge/unmerge, download, delete, as panel 3's)
// and the checkpoints the last run kept (save_total_limit), the best marked, each restorable. Rendering
// only: what a button does is the panel's (`actions`).
import { el, int, num } from '../ui.js';
import { LAYER_MODULES } from './target-grid.js';

/** Full module names as short ones where a projection is adapted in every layer ("q_proj"). */
export function shortTargets(names, layers) {
  const out = [];
  const rest = new Set(names);
  for (const [short, path] of LAYER_MODULES) {
    const all = Array.from({ length: layers }, (_, l) => `model.layers.${l}.${path}`);
    if (layers > 0 && all.every((n) => rest.has(n))) {
      out.push(short);
      all.forEach((n) => rest.delete(n));
    }
  }
  return [...out, ...names.filter((n) => rest.has(n))];
}

/**
 * { active, list } → the adapter table; actions: { setActive(name|null), download(name), remove(name) },
 * and merge(name)/unmerge(name) where the panel merges (panel 6); `group` names the radio buttons.
 */
export function renderAdapters(container, { active, list }, layers, actions, group = 'lm-active-adapter') {
  if (!list.length) {
    container.replaceChildren(el('p', { className: 'muted' }, 'No adapters yet.'));
    return;
  }
  const merges = typeof actions.merge === 'function';
  const heads = ['on', 'name', 'target_modules', 'r', 'lora_alpha', 'trainable params', ...(merges ? ['merged'] : []), ''];
  const table = el('table', { className: 'adapters' });
  table.append(el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { scope: 'col' }, h)))));
  const tbody = el('tbody');
  const radio = (value, checked, label) => {
    const r = el('input', { type: 'radio', name: group, value, checked });
    r.setAttribute('aria-label', label);
    r.addEventListener('change', () => actions.setActive(value === '' ? null : value));
    return r;
  };
  tbody.append(el('tr', {}, el('td', {}, radio('', active == null, 'No adapter (the base model only)')), el('td', { colSpan: heads.length - 1 }, 'off — the base model only')));
  for (const a of list) {
    const button = (text, fn, cls = '') => {
      const b = el('button', { type: 'button', textContent: text, className: cls });
      b.addEventListener('click', fn);
      return b;
    };
    const row = el('tr', {},
      el('td', {}, radio(a.name, a.name === active, `Use adapter ${a.name}`)),
      el('td', {}, el('strong', {}, a.name)),
      el('td', {}, shortTargets(a.config.targets, layers).join(', ')),
      el('td', { className: 'numeric' }, String(a.config.rank)),
      el('td', { className: 'numeric' }, String(a.config.alpha)),
      el('td', { className: 'numeric' }, int(a.trainableParams)),
      merges ? el('td', {}, a.merged ? 'yes' : 'no') : null,
      el('td', { className: 'actions' },
        merges ? button(a.merged ? 'Unmerge' : 'Merge', () => (a.merged ? actions.unmerge(a.name) : actions.merge(a.name))) : null,
        button('Download zip', () => actions.download(a.name)),
        button('Delete', () => actions.remove(a.name), 'danger')));
    row.dataset.adapter = a.name;
    tbody.append(row);
  }
  table.append(tbody);
  container.replaceChildren(table);
}

/** The kept checkpoints → a table; `restore(id)` puts one back. */
export function renderCheckpoints(container, list, restore) {
  if (!list.length) {
    container.replaceChildren(el('p', { className: 'muted' }, 'No checkpoints: each epoch of a run saves one.'));
    return;
  }
  const table = el('table', { className: 'adapters checkpoints' });
  table.append(el('thead', {}, el('tr', {}, ...['checkpoint', 'of', 'epoch', 'step', 'held-out loss', 'best', '']
    .map((h) => el('th', { scope: 'col' }, h)))));
  const tbody = el('tbody');
  for (const c of list) {
    const b = el('button', { type: 'button', textContent: 'Restore' });
    b.addEventListener('click', () => restore(c.id));
    const row = el('tr', { className: c.best ? 'best' : '' },
      el('td', {}, `checkpoint-${c.step}`),
      el('td', {}, c.adapter ? `adapter "${c.adapter}"` : 'the base model'),
      el('td', { className: 'numeric' }, String(c.epoch)),
      el('td', { className: 'numeric' }, int(c.step)),
      el('td', { className: 'numeric' }, num(c.evalLoss, 4)),
      el('td', {}, c.best ? '★ best' : ''),
      el('td', { className: 'actions' }, b));
    row.dataset.checkpoint = String(c.id);
    tbody.append(row);
  }
  table.append(tbody);
  container.replaceChildren(table);
}
