// Numeric settings: one rule for every form and for window.lab.
//
// A numeric setting is a finite number. A field holds it as text, written the usual decimal way
// ("0.001", "1e-3", "-2", " 5 "); an empty field means what it always meant there (the setting's default,
// or "left out" where the setting is optional). Anything else — "0.01x", "abc", "0,5", "NaN", "Infinity",
// "1e999" (beyond a double), an input the browser flagged as badInput — is refused: the field is marked
// (aria-invalid="true", class "invalid", and a message right after it), the caller gets a FieldError
// whose message names the field and says why (`learning rate: "0.01x" is not a number`), and nothing is
// sent to the worker. The mark goes as soon as the field holds a number again.
//
// window.lab's settings pass the same rule before anything is written into a form: a finite number, or a
// string the field would take as typed ("0.01"), is taken; NaN, ±Infinity, other strings, objects and
// booleans are refused with the message the field gives, and the field shows what was refused.
//
// Ranges are not checked here: the Rust lab checks them, and its messages are shown.
import { say } from './ui.js';

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;

/** How a refused value is quoted in messages: what a field would show for it. */
function shown(value) {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number') return `"${value}"`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function' || typeof value === 'symbol') return String(typeof value);
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json.length > 40 ? `${json.slice(0, 40)}…` : json;
  } catch {
    // cyclic: fall through
  }
  return Object.prototype.toString.call(value);
}

/**
 * The rule, for one value: a number, a field's text, or undefined/null (empty).
 * Returns { value } (value undefined for empty) or { why } (e.g. `"0.01x" is not a number`).
 */
export function parseNumber(raw) {
  if (raw === undefined || raw === null) return { value: undefined };
  if (typeof raw === 'number') {
    if (Number.isFinite(raw)) return { value: raw };
    return { why: `${shown(raw)} ${Number.isNaN(raw) ? 'is not a number' : 'is not a finite number'}` };
  }
  if (typeof raw !== 'string') return { why: `${shown(raw)} is not a number` };
  const text = raw.trim();
  if (text === '') return { value: undefined };
  if (DECIMAL.test(text)) {
    const value = Number(text);
    return Number.isFinite(value) ? { value } : { why: `${shown(raw)} is not a finite number` };
  }
  if (/^[+-]?infinity$/i.test(text)) return { why: `${shown(raw)} is not a finite number` };
  return { why: `${shown(raw)} is not a number` };
}

/** The rule for a list of numbers: "1, 2 4" (commas, semicolons or spaces between) or an array. */
export function parseNumberList(raw) {
  if (raw === undefined || raw === null) return { value: undefined };
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(/[\s,;]+/).filter(Boolean) : null;
  if (!items) return { why: `${shown(typeof raw === 'number' ? String(raw) : raw)} is not a list of numbers` };
  const values = [];
  for (const item of items) {
    const r = parseNumber(item);
    if (r.why) return r;
    if (r.value !== undefined) values.push(r.value);
  }
  return { value: values };
}

/** A refusal: `problems` are { input (or null: no field), label, message }; message joins theirs. */
export class FieldError extends Error {
  constructor(problems) {
    super(problems.map((p) => p.message).join('; '));
    this.name = 'FieldError';
    this.problems = problems;
  }
}

/** The name a field goes by in messages: data-label, else its label's own words ("Learning rate (Adam)" → "learning rate"). */
export function fieldLabel(input) {
  if (input.dataset.label) return input.dataset.label;
  const label = input.labels?.[0];
  let text = input.name || input.id || 'value';
  if (label) {
    const copy = label.cloneNode(true);
    for (const e of copy.querySelectorAll('input, select, textarea, output, .field-error')) e.remove();
    text = copy.textContent.replace(/\([^)]*\)/g, ' ').replace(/[:\s]+$/, '').replace(/\s+/g, ' ').trim() || text;
  }
  text = text.charAt(0).toLowerCase() + text.slice(1);
  input.dataset.label = text;
  return text;
}

// ── marks ───────────────────────────────────────────────────────────────────────────────────────────
let noteIds = 0;
const refusals = new Set(); // { msg, text, inputs }: a panel's line showing a refusal, until its fields are fixed

/** Marks a field as holding a bad value, with `message` shown right after it. */
export function markField(input, message) {
  let note = input.nextElementSibling?.classList.contains('field-error') ? input.nextElementSibling : null;
  if (!note) {
    note = document.createElement('span');
    note.className = 'field-error';
    note.id = `${input.id || input.form?.id || 'field'}-${input.name || 'value'}-error-${++noteIds}`;
    note.setAttribute('aria-hidden', 'true'); // read out as the field's description, not as part of its label
    input.after(note);
  }
  note.textContent = message;
  note.hidden = false;
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', note.id);
  input.classList.add('invalid');
}

/** Takes the mark off a field; a panel line that showed the refusal goes when all its fields are fixed. */
export function unmarkField(input) {
  if (!input.classList.contains('invalid') && input.getAttribute('aria-invalid') !== 'true') return;
  input.removeAttribute('aria-invalid');
  input.classList.remove('invalid');
  const note = input.nextElementSibling?.classList.contains('field-error') ? input.nextElementSibling : null;
  if (note) {
    note.hidden = true;
    note.textContent = '';
    input.removeAttribute('aria-describedby');
  }
  for (const r of refusals) {
    if (r.inputs.some((i) => i.classList.contains('invalid'))) continue;
    refusals.delete(r);
    if (!r.msg.hidden && r.msg.textContent === r.text) say(r.msg, '');
  }
}

/**
 * Shows a refusal in a panel's message line (`${prefix}${message}.`); for a FieldError the line clears
 * itself once every field it names is fixed. Other errors are shown the same way, without that.
 */
export function showRefusal(msg, prefix, error) {
  const text = `${prefix}${error.message}.`;
  say(msg, text, 'error');
  for (const r of refusals) if (r.msg === msg) refusals.delete(r);
  const inputs = (error.problems || []).map((p) => p.input).filter(Boolean);
  if (inputs.length) refusals.add({ msg, text, inputs });
}

/** A field's text checked by the rule: { value } or { why }. */
function readField(input) {
  if (input.validity?.badInput) return { why: 'what was typed is not a number' };
  return input.dataset.numbers === 'list' ? parseNumberList(input.value) : parseNumber(input.value);
}

// A marked field is checked again on every edit: fixed, the mark goes; still bad, its message follows.
let watching = false;
function watch() {
  if (watching) return;
  watching = true;
  const recheck = (e) => {
    const input = e.target;
    if (!(input instanceof HTMLElement) || !input.dataset.numbers || !input.classList.contains('invalid')) return;
    const r = readField(input);
    if (r.why) markField(input, `${fieldLabel(input)}: ${r.why}`);
    else unmarkField(input);
  };
  document.addEventListener('input', recheck, true);
  document.addEventListener('change', recheck, true);
}

/** Marks for `problems` that have a field; a FieldError for all of them. */
function refuse(problems) {
  for (const p of problems) if (p.input) markField(p.input, p.message);
  return new FieldError(problems);
}

/** The text a value is written into a field as. */
function asText(value, list) {
  if (value === undefined || value === null) return '';
  if (list && Array.isArray(value)) return value.map((v) => String(v)).join(', ');
  return typeof value === 'string' ? value : String(value);
}

export const LIST = Symbol('a list of numbers');

/**
 * The numeric fields of a form (or any element holding fields by name). `specs` maps a field's name to
 * what its empty field means: a default number, undefined (the setting is left out), or LIST (a list of
 * numbers; empty gives []).
 *
 *   write(opts)   the rule on opts' values for these fields; all good: writes them (as text), else marks
 *                 the bad ones (showing what was refused where the field can hold it) and throws a
 *                 FieldError, writing nothing. undefined leaves a field as it is; null empties an
 *                 optional one (and leaves any other as it is).
 *   read()        the fields' values ({ name: number | [numbers] }; empty gives the default, and an
 *                 optional empty field is left out); throws a FieldError with every bad field marked.
 *   check(opts, { mark })  the rule on opts' values for these names, writing nothing: for settings that go
 *                 past this form, or that must wait (a slider's max); returns { name: value } for those
 *                 given (undefined and null are not given), or throws a FieldError (marking the fields
 *                 only with mark: true).
 *   peek(name)    the value of one field as read() would give it, undefined if bad; marks nothing.
 */
export function numberFields(root, specs) {
  watch();
  const inputs = {};
  for (const name of Object.keys(specs)) {
    const input = root.querySelector(`[name="${name}"]`);
    if (!input) throw new Error(`numberFields: no field named "${name}"`);
    input.dataset.numbers = specs[name] === LIST ? 'list' : 'one';
    fieldLabel(input);
    inputs[name] = input;
  }
  const isList = (name) => specs[name] === LIST;
  const parse = (name, raw) => (isList(name) ? parseNumberList(raw) : parseNumber(raw));
  const problem = (name, why, input = inputs[name]) => ({ input, name, label: fieldLabel(inputs[name]), message: `${fieldLabel(inputs[name])}: ${why}` });

  return {
    inputs,
    label: (name) => fieldLabel(inputs[name]),

    write(opts = {}) {
      const problems = [];
      const texts = [];
      for (const name of Object.keys(specs)) {
        const raw = opts[name];
        if (raw === undefined || (raw === null && specs[name] !== undefined)) continue;
        const r = parse(name, raw);
        if (r.why) problems.push({ ...problem(name, r.why), raw });
        else texts.push([name, asText(raw, isList(name))]);
      }
      if (problems.length) {
        // Where the field can hold it (not an <input type=number|range>, which would sanitise it away),
        // it shows what was refused, as if typed.
        for (const p of problems) if (!['number', 'range'].includes(p.input.type)) p.input.value = asText(p.raw, isList(p.name));
        throw refuse(problems);
      }
      for (const [name, text] of texts) {
        inputs[name].value = text;
        unmarkField(inputs[name]);
      }
    },

    read() {
      const values = {};
      const problems = [];
      for (const [name, input] of Object.entries(inputs)) {
        const r = readField(input);
        if (r.why) {
          problems.push(problem(name, r.why));
          continue;
        }
        unmarkField(input);
        if (r.value !== undefined) values[name] = r.value;
        else if (isList(name)) values[name] = [];
        else if (specs[name] !== undefined) values[name] = specs[name];
      }
      if (problems.length) throw refuse(problems);
      return values;
    },

    check(opts = {}, { mark = false } = {}) {
      const values = {};
      const problems = [];
      for (const name of Object.keys(specs)) {
        if (opts[name] === undefined || opts[name] === null) continue;
        const r = parse(name, opts[name]);
        if (r.why) problems.push(problem(name, r.why, mark ? inputs[name] : null));
        else values[name] = r.value;
      }
      if (problems.length) throw refuse(problems);
      return values;
    },

    peek(name) {
      const r = readField(inputs[name]);
      if (r.why) return undefined;
      return r.value ?? (isList(name) ? [] : specs[name]);
    },
  };
}
