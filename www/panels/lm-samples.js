// Panel 6's views of what the models say: 20 samples from the base and the adapted model side by side
// (after each epoch of a run, and on demand), a word scored byte by byte under both, and the run's numbers
// that show why the article's q/k/v adapter is not enough here.
import { Request } from '../protocol.js';
import { $, el, say, num } from '../ui.js';
import { numberFields, showRefusal } from '../fields.js';

export const SAMPLE_COUNT = 20;
const SAMPLE_DEFAULTS = { temperature: 0.8, topK: 0, seed: 0 };

/** Whether a sample starts with a capital letter (what the base never writes). */
export const startsWithCapital = (s) => /^\p{Lu}/u.test(s);

/** P(the first byte after BOS is A–Z) from one row of 264 logits. */
export function capitalMass(row) {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let z = 0;
  for (const v of row) z += Math.exp(v - max);
  let caps = 0;
  for (let c = 65; c <= 90; c++) caps += Math.exp(row[c] - max);
  return caps / z;
}

/** The samples view: settings form, two columns. */
export function samplesView(app, root) {
  const form = $('#lm-samples-form', root);
  const msg = $('#lm-samples-msg', root);
  const baseList = $('#lm-samples-base', root);
  const adaptedList = $('#lm-samples-adapted', root);
  const adaptedTitle = $('#lm-samples-adapted-title', root);
  const caption = $('#lm-samples-caption', root);
  const fields = numberFields(form, SAMPLE_DEFAULTS);

  /** The sampling settings (n = 20); throws a FieldError with the bad fields marked. */
  function settings() {
    try {
      return { n: SAMPLE_COUNT, ...fields.read() };
    } catch (e) {
      showRefusal(msg, 'Cannot sample: ', e);
      throw e;
    }
  }

  const fill = (list, items) => {
    list.replaceChildren(...(items || []).map((s) => el('li', { className: startsWithCapital(s) ? 'capital' : '' }, s === '' ? '(empty)' : s)));
  };

  /** Shows { base, adapted } with a caption saying where they come from. */
  function show({ base, adapted }, { adapter = null, when = 'on demand', settings: s } = {}) {
    fill(baseList, base);
    fill(adaptedList, adapted);
    adaptedTitle.textContent = adapter ? `with adapter "${adapter}"` : 'with an adapter (none on)';
    const caps = (xs) => (xs ? `${xs.filter(startsWithCapital).length} of ${xs.length} start with a capital` : '');
    caption.textContent = `${when}; temperature ${s?.temperature ?? '–'}, top-k ${s?.topK || 'off'}, seed ${s?.seed ?? '–'}. `
      + `Base: ${caps(base)}.${adapted ? ` Adapted: ${caps(adapted)}.` : ''}`;
    root.dataset.samples = String((base?.length || 0) + (adapted?.length || 0));
  }

  /** 20 from each model with the form's settings (the adapted column from the active adapter). */
  async function generate() {
    const s = settings();
    say(msg, 'Sampling…', 'busy');
    try {
      const base = await app.request(Request.LM_GENERATE, { ...s, adapted: false });
      const { active } = await app.request(Request.LM_ADAPTERS);
      const adapted = active ? await app.request(Request.LM_GENERATE, { ...s, adapted: true }) : null;
      show({ base, adapted }, { adapter: active, settings: s });
      say(msg, `Sampled ${SAMPLE_COUNT} from the base${active ? ` and ${SAMPLE_COUNT} with "${active}"` : ' (no adapter is on)'}.`, 'ok');
      return { base, adapted };
    } catch (e) {
      say(msg, `Could not sample: ${e.message}`, 'error');
      throw e;
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    generate().catch(() => {});
  });

  return {
    settings, show, generate, fields, msg,
    clear() {
      baseList.replaceChildren();
      adaptedList.replaceChildren();
      caption.textContent = '';
    },
  };
}

/** A byte as a cell label: printable ASCII as itself, a space as ␠, other bytes in hex. */
function byteLabel(b) {
  if (b === 32) return '␠';
  if (b > 32 && b < 127) return String.fromCharCode(b);
  return b.toString(16).toUpperCase().padStart(2, '0');
}

/** Colour for a probability, on a log scale: red at 1e-4 and below, green at 1. */
export function probabilityColour(p) {
  const t = Math.max(0, Math.min(1, (Math.log10(Math.max(p, 1e-12)) + 4) / 4));
  return `hsl(${Math.round(120 * t)}, 70%, ${Math.round(82 - 10 * t)}%)`;
}

/** "Score your own word": each byte (and the closing EOS) coloured by its probability under both models. */
export function scoreView(app, root) {
  const form = $('#lm-score-form', root);
  const input = $('#lm-score-text', root);
  const out = $('#lm-score-out', root);
  const msg = $('#lm-score-msg', root);

  function row(label, bytes, logps, title) {
    const cells = [];
    // The text under each cell: the character a multi-byte sequence spells sits on its first byte.
    const text = new TextDecoder().decode(new Uint8Array(bytes));
    const chars = [...text];
    const charAt = [];
    let i = 0;
    for (const ch of chars) {
      const n = new TextEncoder().encode(ch).length;
      charAt[i] = ch;
      i += n;
    }
    logps.forEach((lp, k) => {
      const p = Math.exp(lp);
      const isEos = k === bytes.length;
      const b = bytes[k];
      const cell = el('span', { className: `byte${isEos ? ' eos' : ''}` },
        el('span', { className: 'byte-label' }, isEos ? 'EOS' : byteLabel(b)),
        el('span', { className: 'byte-char' }, isEos ? '' : (charAt[k] && b > 127 ? charAt[k] : '')),
        el('span', { className: 'byte-p' }, p >= 0.01 ? p.toFixed(2) : p.toExponential(0)));
      cell.style.backgroundColor = probabilityColour(p);
      cell.dataset.p = String(p);
      cell.title = `${isEos ? 'end of line (EOS)' : `byte 0x${b.toString(16).padStart(2, '0')}`}: p = ${p.toPrecision(3)} (log p ${lp.toFixed(2)})`;
      cells.push(cell);
    });
    const mean = -logps.reduce((a, v) => a + v, 0) / logps.length;
    return el('div', { className: 'score-row' },
      el('div', { className: 'score-who' }, el('strong', {}, label), el('span', { className: 'muted' }, ` ${title}`), el('br'),
        el('span', { className: 'muted' }, `${num(mean, 3)} nats per token`)),
      el('div', { className: 'score-bytes', role: 'img', ariaLabel: `${label}: probability of each byte` }, ...cells));
  }

  async function score(text = input.value) {
    input.value = text;
    say(msg, '', 'info');
    try {
      const r = await app.request(Request.LM_SCORE, { text });
      const { active } = await app.request(Request.LM_ADAPTERS);
      const rows = [row('base', r.bytes, r.base, '(adapter off)')];
      if (r.adapted) rows.push(row('adapted', r.bytes, r.adapted, `("${active}")`));
      else rows.push(el('p', { className: 'muted' }, 'No adapter is on: turn one on to compare.'));
      out.replaceChildren(...rows);
      out.dataset.bytes = String(r.bytes.length);
      return r;
    } catch (e) {
      say(msg, `Cannot score it: ${e.message}`, 'error');
      throw e;
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    score().catch(() => {});
  });
  return {
    score,
    /** Forgets what was shown (the models it came from are gone). */
    clear() {
      out.replaceChildren();
      delete out.dataset.bytes;
    },
  };
}

/**
 * "Why q/k/v alone is not enough here": each adapter's run numbers (held-out loss with it off and on,
 * capitals in its samples, the probability of a capital first letter) and the conclusion they support.
 */
export function whyView(root) {
  const tbody = $('#lm-why tbody', root);
  const text = $('#lm-why-text', root);
  const stats = new Map();

  const hasHead = (s) => (s.targetModules || []).some((t) => t === 'lm_head' || String(t).endsWith('.lm_head'));

  function render() {
    const rows = [...stats.entries()];
    tbody.replaceChildren(...rows.map(([name, s]) => el('tr', { className: hasHead(s) ? 'with-head' : '' },
      el('td', {}, el('strong', {}, name)),
      el('td', {}, (s.targetModules || []).join(', ')),
      el('td', {}, s.data),
      el('td', {}, `${num(s.lossOff, 3)} → ${num(s.lossOn, 3)}`),
      el('td', {}, Number.isFinite(s.lossOn - s.lossOff) ? (s.lossOn - s.lossOff).toFixed(3) : '–'),
      el('td', {}, s.samples ? `${s.capitals} of ${s.samples}` : '–'),
      el('td', {}, Number.isFinite(s.pCapitalOff) ? `${(100 * s.pCapitalOff).toFixed(2)} % → ${(100 * s.pCapitalOn).toFixed(2)} %` : '–'))));
    const onNames = rows.filter(([, s]) => s.data === 'pokemon');
    const qkv = onNames.filter(([, s]) => !hasHead(s)).pop();
    const head = onNames.filter(([, s]) => hasHead(s)).pop();
    if (qkv && head) {
      const [a, sa] = qkv;
      const [b, sb] = head;
      text.textContent = `In this page's runs: "${a}" (${sa.targetModules.join(', ')}) moved the held-out Pokémon loss by `
        + `${(sa.lossOn - sa.lossOff).toFixed(3)} nats (${num(sa.lossOff, 3)} → ${num(sa.lossOn, 3)}), and ${sa.capitals} of its `
        + `${sa.samples} samples start with a capital; "${b}", which also adapts lm_head, reached ${num(sb.lossOn, 3)} `
        + `(${(sb.lossOn - sb.lossOff).toFixed(3)}), and ${sb.capitals} of ${sb.samples} start with a capital. The probability `
        + `of a capital first letter went from ${(100 * sa.pCapitalOff).toFixed(2)} % to ${(100 * sa.pCapitalOn).toFixed(2)} % with "${a}" `
        + `and to ${(100 * sb.pCapitalOn).toFixed(2)} % with "${b}".`;
    } else if (rows.length) {
      text.textContent = `Train ${qkv ? 'the new-tokens preset (with lm_head)' : head ? 'the seed preset (q/k/v only)' : 'both presets'} `
        + 'on the Pokémon names to see the two side by side.';
    } else {
      text.textContent = 'Train the seed preset and then the new-tokens preset on the Pokémon names: the numbers appear here.';
    }
    root.dataset.whyRows = String(rows.length);
  }

  render();
  return {
    set(name, s) {
      if (s) stats.set(name, s);
      else stats.delete(name);
      render();
    },
    get: (name) => stats.get(name),
    clear() {
      stats.clear();
      render();
    },
  };
}
