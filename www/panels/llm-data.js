// Panel 7's data: the demo task in one click (with the base model's exact match on its held-out rows),
// or TRL's JSONL pasted, typed or dropped — checked by the lab as training will read it, a bad line
// selected in its box with the lab's message under it — and one example shown as the model sees it, the
// tokens the loss trains on highlighted (completion_only_loss, seen).
import { Request } from '../protocol.js';
import { $, dropZone, el, int, say } from '../ui.js';

/** How long typing may pause before the data is checked again. */
const CHECK_AFTER_MS = 400;

/**
 * `settings()` → the form's settings that change how data is read (maxSeqLength, packing,
 * assistantOnlyLoss, limit), or null while a field is bad. → { data(), useDemo(), setJsonl(), check(),
 * showBase(), baseExactMatch() }.
 */
export function dataView(app, root, settings) {
  const train = $('#llm-jsonl', root);
  const test = $('#llm-test-jsonl', root);
  const note = $('#llm-data-note', root);
  const msg = $('#llm-data-msg', root);
  const demoBase = $('#llm-demo-base', root);
  const preview = $('#llm-preview', root);
  const pieces = $('[data-role="pieces"]', preview);
  const which = $('[data-role="which"]', preview);
  let demo = false; // the demo task is chosen (its rows are the worker's)
  let example = 0;
  let timer = 0;
  let checked = null; // the lab's last answer, or null
  let asked = 0;

  /** The data as llm.trainAdapter takes it. */
  const data = () => (demo ? 'demo' : { jsonl: train.value, ...(test.value.trim() ? { testJsonl: test.value } : {}) });

  /** Selects line `n` (1-based) of a box: where the lab says the fault is. */
  function selectLine(box, n) {
    const lines = box.value.split('\n');
    if (n < 1 || n > lines.length) return;
    const start = lines.slice(0, n - 1).reduce((s, l) => s + l.length + 1, 0);
    box.focus({ preventScroll: true });
    box.setSelectionRange(start, start + lines[n - 1].length);
    box.dataset.badLine = String(n);
  }

  function showExample(ex) {
    which.textContent = `example ${ex.index + 1} of ${int(checked.trainSequences)}${ex.line ? ` (line ${ex.line})` : ''}: `
      + `${int(ex.tokens)} tokens, ${int(ex.trainedTokens)} trained`
      + `${ex.lengths?.length > 1 ? `; ${ex.lengths.length} examples packed (${ex.lengths.join(' + ')} tokens), each attending to itself only` : ''}`;
    pieces.replaceChildren(...ex.pieces.map((p) => el('span', p.trained ? { className: 'trained' } : {}, p.text)));
    preview.hidden = false;
  }

  /** Asks the lab to read the data as the run would; shows counts, the example, or the bad line. */
  async function check() {
    clearTimeout(timer);
    const s = settings();
    if (!s) return null;
    if (!demo && !train.value.trim()) {
      checked = null;
      note.textContent = 'No examples yet: paste JSONL, drop a file, or use the demo task.';
      say(msg, '');
      preview.hidden = true;
      return null;
    }
    const mine = ++asked;
    try {
      const out = await app.request(Request.LLM_INSPECT_DATA, { settings: { ...s, data: data() }, example });
      if (mine !== asked) return out;
      checked = out;
      delete train.dataset.badLine;
      delete test.dataset.badLine;
      say(msg, '');
      const held = out.heldOutLines?.length ? `held out: every 10th line from the first (${int(out.heldOutRows)})` : `${int(out.heldOutRows)} held-out rows`;
      note.textContent = `${demo ? 'The demo task' : 'Your data'}: ${int(out.trainRows)} training rows (${out.format}), ${held}; `
        + `${int(out.trainTokens)} tokens, ${int(out.trainedTokens)} of them trained on`
        + `${out.truncated ? `; ${int(out.truncated)} cut at max_length` : ''}.`;
      showExample(out.example);
      return out;
    } catch (e) {
      if (mine !== asked) return null;
      checked = null;
      preview.hidden = true;
      note.textContent = '';
      say(msg, `Your data: ${e.message}.`, 'error');
      // The lab names the file: train.jsonl (the first box) or test.jsonl (the held-out box).
      const m = /\b(train|test)\.jsonl: line (\d+)/.exec(e.message);
      if (m && !demo) selectLine(m[1] === 'test' ? test : train, Number(m[2]));
      throw e;
    }
  }

  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(() => check().catch(() => {}), CHECK_AFTER_MS);
  };

  for (const box of [train, test]) {
    box.addEventListener('input', () => {
      demo = false;
      example = 0;
      later();
    });
  }

  /** A .jsonl file dropped on a box, or chosen with its button, replaces the box's text. */
  async function readInto(box, file) {
    if (file.size > 16 * 1024 * 1024) throw new Error(`${file.name}: ${int(file.size)} bytes, more than the 16 MiB allowed`);
    const bytes = new Uint8Array(await file.arrayBuffer());
    try {
      box.value = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new Error(`${file.name} is not UTF-8 text`);
    }
    demo = false;
    example = 0;
    return check();
  }
  for (const [box, input, zone] of [[train, $('#llm-jsonl-file', root), $('#llm-train-box', root)], [test, $('#llm-test-file', root), $('#llm-test-box', root)]]) {
    input.addEventListener('change', () => {
      const f = input.files[0];
      input.value = '';
      if (f) readInto(box, f).catch((e) => say(msg, `Your data: ${e.message}.`, 'error'));
    });
    dropZone(zone, (files) => readInto(box, files[0]).catch((err) => say(msg, `Your data: ${err.message}.`, 'error')));
  }

  for (const b of preview.querySelectorAll('button[data-step]')) {
    b.addEventListener('click', () => {
      if (!checked) return;
      const n = checked.trainSequences;
      example = (example + Number(b.dataset.step) + n) % n;
      check().catch(() => {});
    });
  }

  /** The base's exact match as last measured, and the boxes' text it was measured on. */
  let baseMeasured = null;

  return {
    data,
    check,
    later,
    isDemo: () => demo,
    /** Chooses the demo task: its rows are shown in the boxes, read only as the demo. */
    async useDemo() {
      const { train: t, test: h } = await app.request(Request.LLM_DEMO_DATA);
      train.value = t;
      test.value = h;
      demo = true;
      example = 0;
      return check();
    },
    /** JSONL given by a script (window.lab.llm) shown as if typed. */
    setJsonl(jsonl, testJsonl = '') {
      train.value = jsonl;
      test.value = testJsonl;
      demo = false;
      example = 0;
    },
    /** The base model's exact match shown by showBase, while the boxes hold the data it was measured on. */
    baseExactMatch: () => (baseMeasured && baseMeasured.train === train.value && baseMeasured.test === test.value ? baseMeasured.em : null),
    /** The base model's exact match on the held-out rows: the task before any training. */
    showBase(ev) {
      const em = ev.base.exactMatch;
      baseMeasured = { em, train: train.value, test: test.value };
      const right = em === null ? null : Math.round(em * ev.expected.length);
      demoBase.textContent = em === null
        ? `The base model's held-out loss: ${ev.base.loss.toFixed(4)} nats per trained token (no prompt-completion rows to score).`
        : `The base model answers ${right} of ${ev.expected.length} held-out examples exactly (exact match ${em.toFixed(2)}); `
          + `held-out loss ${ev.base.loss.toFixed(4)}.`;
      demoBase.hidden = false;
    },
  };
}
