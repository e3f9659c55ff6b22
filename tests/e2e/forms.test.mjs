// Forms refuse what is not a number (issue 11): a person types a bad value into a numeric field and
// submits, or a script passes one to window.lab; the field is marked, the message names it and says why,
// and nothing starts (no worker request, no progress, no new adapter). The mark goes once it is fixed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { startLab } from '../support/browser.mjs';

const BAD = ['0.01x', 'abc', '1e999', 'NaN', 'Infinity', '0,5'];
/** What each bad text must be called. */
const WHY = (text) => (/^[+-]?(infinity|\d.*e\d{3,})$/i.test(text) ? 'is not a finite number' : 'is not a number');
/** Worker requests that start something (or would, on the way to it). */
const STARTS = ['loadData', 'trainBase', 'trainAdapter', 'sweep', 'svd'];

let browser;
let lab;
let page;

before(async () => {
  ({ browser, lab, page } = await startLab());
  // The panels must have something to start from: a (tiny) base model, so adapters and sweeps could run.
  await page.evaluate(() => window.lab.trainBase({ epochs: 1, limit: 640 }));
  await page.waitForSelector('#svd-approx td');
  // Every request the page sends from now on.
  await page.evaluate(() => {
    window.__sent = [];
    const client = window.lab.client;
    const request = client.request.bind(client);
    client.request = (type, ...rest) => {
      window.__sent.push(type);
      return request(type, ...rest);
    };
  });
});

after(async () => {
  if (page) {
    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/forms.png', fullPage: true }).catch(() => {});
  }
  await lab?.close();
  await browser?.close();
});

const sentSoFar = () => page.evaluate(() => window.__sent.length);
const startedSince = (n) => page.evaluate(({ n, starts }) => window.__sent.slice(n).filter((t) => starts.includes(t)), { n, starts: STARTS });

/** Types `text` into a field the way a person does: click, select what is there, type over it. */
async function typeInto(selector, text) {
  const field = page.locator(selector);
  await field.click();
  await field.press('ControlOrMeta+a');
  await field.press('Backspace');
  if (text) await field.pressSequentially(text);
}

/** The field's mark: { invalid, cls, note (its visible message), text (what it holds) }. */
function markOf(selector) {
  return page.$eval(selector, (input) => {
    const noteId = input.getAttribute('aria-describedby');
    const note = noteId ? document.getElementById(noteId) : null;
    const visible = note && !note.hidden && note.getClientRects().length > 0;
    return {
      invalid: input.getAttribute('aria-invalid') === 'true',
      cls: input.classList.contains('invalid'),
      note: visible ? note.textContent : '',
      text: input.value,
    };
  });
}

const msgOf = (selector) => page.$eval(selector, (e) => ({ kind: e.dataset.kind, text: e.hidden ? '' : e.textContent }));

/** What shows that something ran: progress text, plotted points, epochs rows, adapters, sweep rows, state. */
async function activity() {
  return {
    ...(await page.evaluate(() => ({
      baseProgress: document.querySelector('#base-training .progress-text').textContent,
      basePoints: document.querySelector('#base-training').dataset.points,
      adapterProgress: document.querySelector('#adapter-training .progress-text').textContent,
      adapterPoints: document.querySelector('#adapter-training').dataset.points ?? '',
      sweepRows: document.querySelectorAll('#sweep-table tbody tr').length,
    }))),
    training: (await page.evaluate(() => window.lab.status())).training,
    adapters: await page.evaluate(async () => JSON.stringify(await window.lab.adapters())),
  };
}

/**
 * For each bad text: types it into `field`, submits with `submit`, and checks the mark, the two messages
 * (next to the field and in the panel's line) and that nothing started; then types `good` and checks the
 * mark is gone.
 */
async function refusesTyped({ field, label, submit, msg, good, bad = BAD }) {
  for (const text of bad) {
    const before = await activity();
    const n = await sentSoFar();
    await typeInto(field, text);
    await page.click(submit);
    const want = `${label}: "${text}" ${WHY(text)}`;
    await page.waitForFunction((sel) => document.querySelector(sel).getAttribute('aria-invalid') === 'true', field, { timeout: 5_000 })
      .catch(() => {});
    const mark = await markOf(field);
    assert.ok(mark.invalid, `${field} holding ${JSON.stringify(text)} is not aria-invalid`);
    assert.ok(mark.cls, `${field} holding ${JSON.stringify(text)} has no "invalid" class`);
    assert.equal(mark.note, want, `the message next to ${field}`);
    const m = await msgOf(msg);
    assert.equal(m.kind, 'error', `${msg}: ${m.text}`);
    assert.ok(m.text.includes(want), `${msg} says "${m.text}", want it to include "${want}"`);
    // Give a wrongly started run the time to show itself.
    await page.waitForTimeout(150);
    assert.deepEqual(await startedSince(n), [], `requests sent after ${JSON.stringify(text)} in ${field}`);
    assert.deepEqual(await activity(), before, `something started after ${JSON.stringify(text)} in ${field}`);
  }
  await typeInto(field, good);
  const mark = await markOf(field);
  assert.deepEqual({ invalid: mark.invalid, cls: mark.cls, note: mark.note }, { invalid: false, cls: false, note: '' },
    `${field} still marked after it was corrected to ${good}`);
  assert.equal((await msgOf(msg)).text, '', `${msg} still shows the refusal after the field was corrected`);
}

test('panel 2: every numeric field refuses what is not a number, and training does not start', async () => {
  const fields = [
    ['seed', 'seed', '13'], ['epochs', 'epochs', '1'], ['batchSize', 'batch size', '64'],
    ['lr', 'learning rate', '0.001'], ['limit', 'limit', '640'],
  ];
  for (const [name, label, good] of fields) {
    await refusesTyped({ field: `#base-form [name="${name}"]`, label, submit: '#base-train', msg: '#base-msg', good });
  }
});

test('panel 3: every numeric field refuses what is not a number, and no adapter is trained', async () => {
  const fields = [
    ['rank', 'rank r', '4'], ['alpha', 'alpha α', '1'], ['dropout', 'dropout', '0'], ['lr', 'learning rate', '0.005'],
    ['epochs', 'epochs', '3'], ['batchSize', 'batch size', '64'], ['replay', 'replay fraction', '0'], ['seed', 'seed', '13'],
  ];
  for (const [name, label, good] of fields) {
    await refusesTyped({ field: `#adapter-form [name="${name}"]`, label, submit: '#adapter-train', msg: '#adapter-msg', good });
  }
});

test('two bad fields at once: both marked, both named', async () => {
  const n = await sentSoFar();
  await typeInto('#adapter-form [name="lr"]', '0.01x');
  await typeInto('#adapter-form [name="epochs"]', 'three');
  await page.click('#adapter-train');
  assert.ok((await markOf('#adapter-form [name="lr"]')).invalid);
  assert.ok((await markOf('#adapter-form [name="epochs"]')).invalid);
  const m = await msgOf('#adapter-msg');
  assert.match(m.text, /learning rate: "0\.01x" is not a number/);
  assert.match(m.text, /epochs: "three" is not a number/);
  // Fixing one keeps the other marked, and the panel's line with it.
  await typeInto('#adapter-form [name="lr"]', '0.005');
  assert.equal((await markOf('#adapter-form [name="lr"]')).invalid, false);
  assert.equal((await markOf('#adapter-form [name="epochs"]')).invalid, true);
  assert.notEqual((await msgOf('#adapter-msg')).text, '');
  await typeInto('#adapter-form [name="epochs"]', '3');
  assert.equal((await markOf('#adapter-form [name="epochs"]')).invalid, false);
  assert.equal((await msgOf('#adapter-msg')).text, '');
  assert.deepEqual(await startedSince(n), []);
});

test('panel 5: epochs, ranks and alphas refuse what is not a number, and the sweep does not start', async () => {
  await refusesTyped({ field: '#sweep-form [name="epochs"]', label: 'epochs per cell', submit: '#sweep-run', msg: '#sweep-msg', good: '1' });
  for (const [name, label, good] of [['ranks', 'ranks', '1, 2'], ['alphas', 'alphas', '1, 4']]) {
    for (const text of BAD.filter((t) => !t.includes(','))) { // a comma separates numbers in a list
      // One good number before the bad one: the message names the bad one.
      const before = await activity();
      const n = await sentSoFar();
      await typeInto(`#sweep-form [name="${name}"]`, `1, ${text}`);
      await page.click('#sweep-run');
      const want = `${label}: "${text}" ${WHY(text)}`;
      const mark = await markOf(`#sweep-form [name="${name}"]`);
      assert.ok(mark.invalid && mark.cls, `${name} "1, ${text}" not marked`);
      assert.equal(mark.note, want);
      assert.ok((await msgOf('#sweep-msg')).text.includes(want));
      await page.waitForTimeout(150);
      assert.deepEqual(await startedSince(n), []);
      assert.deepEqual(await activity(), before);
    }
    await typeInto(`#sweep-form [name="${name}"]`, good);
    assert.equal((await markOf(`#sweep-form [name="${name}"]`)).invalid, false);
  }
  // A bad value in panel 3's form stops the sweep too (it trains with those settings).
  const n = await sentSoFar();
  await typeInto('#adapter-form [name="lr"]', 'abc');
  await page.click('#sweep-run');
  assert.ok((await markOf('#adapter-form [name="lr"]')).invalid);
  assert.ok((await msgOf('#sweep-msg')).text.includes('learning rate: "abc" is not a number'));
  assert.deepEqual(await startedSince(n), []);
  await typeInto('#adapter-form [name="lr"]', '0.005');
  assert.equal((await markOf('#adapter-form [name="lr"]')).invalid, false);
});

test('panel 1: a matrix entry that is not a number is marked and named, and no SVD is asked for', async () => {
  const n = await sentSoFar();
  const shown = await page.$eval('#svd-approx', (e) => e.textContent);
  for (const text of ['abc', '1e999', 'NaN', '0.5x']) {
    await page.fill('#svd-matrix', `1 2\n3 ${text}`); // pasted: one edit, so no half-typed matrix is computed
    const want = `row 2: "${text}" ${WHY(text)}`;
    await page.waitForFunction((w) => document.querySelector('#svd-msg').textContent.includes(w), want, { timeout: 5_000 });
    const mark = await markOf('#svd-matrix');
    assert.ok(mark.cls);
    assert.ok(mark.note.includes(want), `next to the matrix: "${mark.note}"`);
    assert.ok((await msgOf('#svd-msg')).text.includes(want));
  }
  await page.waitForTimeout(300); // the panel recomputes 150 ms after an edit
  assert.deepEqual(await startedSince(n), []);
  assert.equal(await page.$eval('#svd-approx', (e) => e.textContent), shown, 'the matrices shown changed');
  await page.fill('#svd-matrix', '1 2\n3 4');
  await page.waitForFunction(() => document.querySelector('#svd-matrix').getAttribute('aria-invalid') !== 'true', null, { timeout: 5_000 });
  assert.equal((await markOf('#svd-matrix')).note, '');
  await page.waitForFunction(() => document.querySelector('#svd-approx table tr').cells.length === 2);
});

/** Calls window.lab[method](arg) and returns the rejection's message, or throws if it resolved. */
function rejection(method, arg, arg2) {
  return page.evaluate(async ({ method, arg, arg2, kind }) => {
    const decode = (v) => (v && typeof v === 'object' && '__num' in v ? Number(v.__num) : v);
    const revive = (o) => (Array.isArray(o) ? o.map(revive) : o && typeof o === 'object' && !('__num' in o)
      ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k, revive(v)])) : decode(o));
    try {
      await window.lab[method](revive(arg), revive(arg2));
    } catch (e) {
      return e.message;
    }
    throw new Error(`window.lab.${method} accepted ${kind}`);
  }, { method, arg, arg2, kind: JSON.stringify(arg) });
}
/** NaN and ±Infinity do not survive JSON on their way into the page: spell them. */
const NUM = (s) => ({ __num: s });
const VALUES = [
  [NUM('NaN'), '"NaN" is not a number'],
  [NUM('Infinity'), '"Infinity" is not a finite number'],
  [NUM('-Infinity'), '"-Infinity" is not a finite number'],
  ['0.01x', '"0.01x" is not a number'],
  [{ value: 1 }, '{"value":1} is not a number'],
  [true, 'true is not a number'],
];

test('window.lab.trainBase and trainAdapter reject NaN, ±Infinity and non-numbers, marking the field', async () => {
  const calls = [
    ['trainBase', 'lr', 'learning rate', '#base-form', '#base-msg'],
    ['trainBase', 'limit', 'limit', '#base-form', '#base-msg'],
    ['trainBase', 'epochs', 'epochs', '#base-form', '#base-msg'],
    ['trainAdapter', 'lr', 'learning rate', '#adapter-form', '#adapter-msg'],
    ['trainAdapter', 'rank', 'rank r', '#adapter-form', '#adapter-msg'],
    ['trainAdapter', 'dropout', 'dropout', '#adapter-form', '#adapter-msg'],
  ];
  for (const [method, key, label, form, msg] of calls) {
    for (const [value, why] of VALUES) {
      const before = await activity();
      const n = await sentSoFar();
      const message = await rejection(method, { [key]: value, epochs: key === 'epochs' ? value : 1 });
      const want = `${label}: ${why}`;
      assert.equal(message, want, `window.lab.${method}({ ${key}: ${JSON.stringify(value)} })`);
      const mark = await markOf(`${form} [name="${key}"]`);
      assert.ok(mark.invalid && mark.cls, `${form} ${key} not marked after window.lab.${method}`);
      assert.equal(mark.note, want);
      assert.ok((await msgOf(msg)).text.includes(want));
      await page.waitForTimeout(100);
      assert.deepEqual(await startedSince(n), [], `window.lab.${method}({ ${key}: ${JSON.stringify(value)} }) sent requests`);
      assert.deepEqual(await activity(), before);
    }
  }
  // The forms are left as a person would leave them: fix the marked fields.
  for (const [form, key, good] of [['#base-form', 'lr', '0.001'], ['#base-form', 'limit', ''], ['#base-form', 'epochs', '1'],
    ['#adapter-form', 'lr', '0.005'], ['#adapter-form', 'rank', '4'], ['#adapter-form', 'dropout', '0'], ['#adapter-form', 'epochs', '3']]) {
    await typeInto(`${form} [name="${key}"]`, good);
    assert.equal((await markOf(`${form} [name="${key}"]`)).invalid, false, `${form} ${key}`);
  }
});

test('window.lab.sweep and svd reject NaN, ±Infinity and non-numbers', async () => {
  for (const [value, why] of VALUES) {
    const n = await sentSoFar();
    const before = await activity();
    assert.equal(await rejection('sweep', { ranks: [1], alphas: [1], epochs: value }), `epochs per cell: ${why}`);
    assert.ok((await markOf('#sweep-form [name="epochs"]')).invalid);
    assert.equal(await rejection('sweep', { ranks: [1, value], alphas: [1], epochs: 1 }), `ranks: ${why}`);
    assert.ok((await markOf('#sweep-form [name="ranks"]')).invalid);
    assert.equal(await rejection('sweep', { ranks: [1], alphas: [value], epochs: 1 }), `alphas: ${why}`);
    assert.ok((await markOf('#sweep-form [name="alphas"]')).invalid);
    // A panel-3 setting given to the sweep (it has no field here): the same message.
    assert.equal(await rejection('sweep', { ranks: [1], alphas: [1], epochs: 1, lr: value }), `learning rate: ${why}`);
    assert.equal(await rejection('svd', undefined, value), `rank r: ${why}`);
    assert.ok((await markOf('#svd-rank')).invalid);
    await page.waitForTimeout(100);
    assert.deepEqual(await startedSince(n), []);
    assert.deepEqual(await activity(), before);
  }
  assert.equal(await rejection('sweep', { ranks: 4, alphas: [1] }), 'ranks: "4" is not a list of numbers');
  for (const [value, why] of VALUES.slice(0, 4)) {
    const n = await sentSoFar();
    assert.equal(await rejection('svd', [[1, 2], [3, value]], 1), `row 2: ${why}`);
    assert.ok((await markOf('#svd-matrix')).invalid);
    assert.deepEqual(await startedSince(n), []);
  }
  // Fixed: the sweep form's marks go, and an SVD computes again (clearing the slider's mark).
  await typeInto('#sweep-form [name="epochs"]', '1');
  await typeInto('#sweep-form [name="ranks"]', '1, 2');
  await typeInto('#sweep-form [name="alphas"]', '1');
  for (const name of ['epochs', 'ranks', 'alphas']) assert.equal((await markOf(`#sweep-form [name="${name}"]`)).invalid, false, name);
  const r = await page.evaluate(() => window.lab.svd([[3, 0], [0, 1]], 1));
  assert.deepEqual(r.S.map((v) => Math.round(v * 1e4) / 1e4), [3, 1]);
  assert.equal((await markOf('#svd-rank')).invalid, false);
});

test('numbers as strings are taken as typed; empty fields keep their defaults; runs start once fixed', async () => {
  const before = (await page.evaluate(() => window.lab.adapters())).list.length;
  const run = await page.evaluate(() => window.lab.trainAdapter({ name: 'typed', lr: '0.005', epochs: '1', rank: ' 2 ' }));
  assert.equal(run.name, 'typed');
  assert.equal(run.trainableParams, 2 * (256 + 10));
  // Panel 3 with its learning rate emptied: trains with the default, from the button.
  await typeInto('#adapter-form [name="name"]', 'empty-lr');
  await typeInto('#adapter-form [name="lr"]', '');
  await page.$eval('#adapter-msg', (e) => delete e.dataset.kind);
  await page.click('#adapter-train');
  await page.waitForFunction(() => ['ok', 'error'].includes(document.querySelector('#adapter-msg').dataset.kind), null, { timeout: 60_000 });
  const m = await msgOf('#adapter-msg');
  assert.equal(m.kind, 'ok', m.text);
  assert.equal((await markOf('#adapter-form [name="lr"]')).invalid, false);
  const names = (await page.evaluate(() => window.lab.adapters())).list.map((a) => a.name);
  assert.equal(names.length, before + 2);
  assert.ok(names.includes('typed') && names.includes('empty-lr'), names.join(', '));
  assert.deepEqual(lab.errors, []);
});
