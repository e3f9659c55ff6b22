// Small DOM and formatting helpers shared by the panels. Numeric fields (the rule for what is a number,
// marks, refusals) are in fields.js.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Creates an element: el('td', { className: 'num' }, 'text', child…). */
export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** A panel's message line: kind is 'info' | 'ok' | 'error' | 'busy'; empty text hides it. */
export function say(target, text, kind = 'info') {
  target.textContent = text || '';
  target.dataset.kind = kind;
  target.hidden = !text;
}

export const int = (n) => Math.round(n).toLocaleString('en-US');
export const pct = (f, digits = 2) => (Number.isFinite(f) ? `${(f * 100).toFixed(digits)} %` : '–');
export const num = (v, digits = 4) => (Number.isFinite(v) ? v.toFixed(digits) : String(v));

export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - m * 60)} s`;
}

/** Writes a value into an input/select/checkbox set if it is defined. */
export function writeValue(input, value) {
  if (value === undefined || value === null) return;
  if (input.type === 'checkbox') input.checked = Boolean(value);
  else input.value = String(value);
}

/** A matrix as an HTML table of fixed-width numbers. */
export function matrixTable(rows, { digits = 4, caption = '' } = {}) {
  const table = el('table', { className: 'matrix' });
  if (caption) table.append(el('caption', {}, caption));
  for (const row of rows) {
    const tr = el('tr');
    for (const v of row) tr.append(el('td', {}, num(v, digits)));
    table.append(tr);
  }
  return table;
}

/** Makes `zone` take dropped files: marked with the class `dropping` while files are over it, `onFiles(FileList)`. */
export function dropZone(zone, onFiles) {
  for (const type of ['dragenter', 'dragover']) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add('dropping');
    });
  }
  zone.addEventListener('dragleave', () => zone.classList.remove('dropping'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dropping');
    if (e.dataTransfer?.files?.length) onFiles(e.dataTransfer.files);
  });
}
