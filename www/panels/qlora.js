// The "4-bit base (QLoRA)" toggle of panels 3 and 6 (QLORA.md): the frozen base held in NF4 as
// bitsandbytes holds it, adapters training in f32 on top. It shows what that does in numbers: the base's
// bytes in f32 and in NF4, the base's quality before and after quantisation, and the adapters trained
// on the 4-bit base. Turning it off gives the f32 base back bit for bit.
import { $, el, say } from '../ui.js';

const mb = (bytes) => (Number.isFinite(bytes) ? `${(bytes / 1e6).toFixed(2)} MB` : '–');

/**
 * @param {HTMLElement} root  the panel's `.qlora` fieldset (a checkbox `data-role="toggle"`, a checkbox
 *   `data-role="double"`, a table `data-role="numbers"`, a list `data-role="adapters"`, a message line)
 * @param {object} o
 * @param {(type: string, args?: object) => Promise<any>} o.request   app.request
 * @param {{ quantize: string, dequantize: string }} o.requests       the worker requests
 * @param {string} o.qualityLabel   what `quality` measures, e.g. "accuracy on digits 0–7"
 * @param {() => Promise<{ value: number, text: string }>} o.quality   the base's quality now
 * @param {() => string | null} o.blocked   why the toggle cannot act now (a run, no model), or null
 * @param {(q: object) => void} o.changed   after the base changed (storage, the panel's own numbers)
 */
export function qloraToggle(root, o) {
  const toggle = $('input[data-role="toggle"]', root);
  const double = $('input[data-role="double"]', root);
  const table = $('[data-role="numbers"]', root);
  const adaptersEl = $('[data-role="adapters"]', root);
  const msg = $('.msg', root);
  /** The last numbers measured of this base: the quality of the f32 base and of the 4-bit one, the
   *  worker's state now (q), and the last 4-bit state (its bytes stay shown after the click back). */
  const seen = { f32: null, nf4: null, q: null, lastNf4: null };
  /** Adapters trained on the 4-bit base: name → what they reached. */
  const trained = new Map();

  function render() {
    const q = seen.q;
    toggle.checked = Boolean(q?.quantized);
    double.disabled = Boolean(q?.quantized);
    if (q?.quantized) double.checked = q.doubleQuant;
    const cells = (a, b) => [el('td', { className: 'numeric' }, a), el('td', { className: 'numeric' }, b)];
    const nf4Bytes = seen.lastNf4?.bytes ?? null;
    table.replaceChildren(
      el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', { scope: 'col' }, 'f32 base'), el('th', { scope: 'col' }, '4-bit base (NF4)'))),
      el('tbody', {},
        el('tr', { className: 'q-bytes' }, el('th', { scope: 'row' }, 'base weights'), ...cells(mb(q?.f32Bytes), nf4Bytes ? mb(nf4Bytes) : '–')),
        el('tr', { className: 'q-quality' }, el('th', { scope: 'row' }, o.qualityLabel), ...cells(seen.f32?.text ?? '–', seen.nf4?.text ?? '–'))),
    );
    if (!trained.size) {
      adaptersEl.replaceChildren(el('li', { className: 'muted' }, 'None yet: turn the 4-bit base on, then train an adapter.'));
    } else {
      adaptersEl.replaceChildren(...[...trained].map(([name, text]) => el('li', {}, el('strong', {}, name), `: ${text}`)));
    }
  }

  /** Turns the 4-bit base on (`{ type, doubleQuant }`, default nf4 and the checkbox) or off; resolves to
   *  the worker's Q. Settings of the wrong kind are refused before anything changes. */
  async function set(on, { type = 'nf4', doubleQuant } = {}) {
    const why = doubleQuant !== undefined && typeof doubleQuant !== 'boolean'
      ? `doubleQuant: ${JSON.stringify(doubleQuant)} is not true or false`
      : o.blocked();
    if (why) {
      render();
      const e = new Error(why);
      say(msg, `Cannot change the base now: ${why}.`, 'error');
      throw e;
    }
    try {
      if (on) {
        const args = { type, doubleQuant: doubleQuant ?? double.checked };
        say(msg, 'Measuring the f32 base…', 'busy');
        if (!seen.q?.quantized) seen.f32 = await o.quality();
        say(msg, 'Quantising the base to NF4…', 'busy');
        seen.q = await o.request(o.requests.quantize, args);
        seen.lastNf4 = seen.q;
        double.checked = seen.q.doubleQuant;
        o.changed(seen.q);
        say(msg, 'Measuring the 4-bit base…', 'busy');
        seen.nf4 = await o.quality();
        say(msg, `The base is held in 4 bits: ${mb(seen.q.f32Bytes)} → ${mb(seen.q.bytes)}; ${o.qualityLabel} ${seen.f32?.text ?? '–'} → ${seen.nf4.text}. `
          + 'Training the base is off; adapters train in f32 on top.', 'ok');
      } else {
        seen.q = await o.request(o.requests.dequantize);
        o.changed(seen.q);
        seen.f32 = await o.quality();
        say(msg, `The base is back in f32 (the weights kept aside, bit for bit): ${o.qualityLabel} ${seen.f32.text}.`, 'ok');
      }
    } catch (e) {
      say(msg, `${on ? 'Quantising' : 'Dequantising'} the base failed: ${e.message}`, 'error');
      render();
      throw e;
    }
    render();
    return seen.q;
  }

  toggle.addEventListener('change', () => set(toggle.checked).catch(() => {}));

  render();
  return {
    set,
    /** A new base (trained, loaded, restored): its quantisation state, and none of the old numbers. */
    show(q) {
      Object.assign(seen, { f32: null, nf4: null, q, lastNf4: q?.quantized ? q : null });
      trained.clear();
      render();
    },
    /** Whether the base is held in 4 bits now. */
    get quantized() {
      return Boolean(seen.q?.quantized);
    },
    /** An adapter trained on the 4-bit base and what it reached. */
    noteAdapter(name, text) {
      trained.set(name, text);
      render();
    },
    forgetAdapter(name) {
      trained.delete(name);
      render();
    },
    /** Sets the toggle's enabled state (runs). */
    setBusy(busy) {
      toggle.disabled = busy;
    },
    clear() {
      Object.assign(seen, { f32: null, nf4: null, q: null, lastNf4: null });
      trained.clear();
      render();
    },
  };
}
