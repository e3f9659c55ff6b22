// Panel 7, fine-tuning SmolLM2-135M-Instruct, as a reader uses it: clicks, typing and Enter only (files
// given to the file inputs as a person picks them), in Chromium and then in Firefox. The same story in
// both: load the built-in model, a chat answer, a bad JSONL line shown where it is, the demo task with the
// base's exact match, a preview of what the loss trains on, the article's count, a short run, the
// comparison on held-out examples, the four files, a reload that keeps the adapter. Chromium also records
// long tasks (Firefox has no longtask entries) and takes the screenshots at desktop width and at 390 px.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { offMachine, startLab, waitReady } from '../support/browser.mjs';
import { launchFirefox, openLabFirefox, waitReadyFirefox } from '../support/firefox.mjs';
import { longTasksBetween, pageNow, watchLongTasks } from '../support/longtasks.mjs';

const SEED_LINE = 'trainable params: 2,580,480 || all params: 137,095,488 || trainable%: 1.8823';
const LOAD_TIMEOUT = 240_000;
const MODEL = new URL('../../www/data/SmolLM2-135M-Instruct.Q4_1.gguf', import.meta.url);

/**
 * The calls the story needs, over Playwright's page (Chromium) or Puppeteer's (Firefox): the two differ in
 * how waitForFunction takes its argument and in typing into a field.
 */
function driver(page, kind) {
  const waitFor = (fn, arg, timeout = 180_000) => (kind === 'playwright'
    ? page.waitForFunction(fn, arg, { timeout, polling: 100 })
    : page.waitForFunction(fn, { timeout, polling: 100 }, arg));
  return {
    page,
    waitFor,
    text: (sel) => page.$eval(sel, (e) => e.textContent),
    /** Waits for a message line's verdict (data-kind ok or error) → { kind, text }. */
    verdict: async (sel, timeout) => {
      await waitFor((s) => ['ok', 'error'].includes(document.querySelector(s)?.dataset.kind), sel, timeout);
      return page.$eval(sel, (e) => ({ kind: e.dataset.kind, text: e.textContent }));
    },
    clear: (sel) => page.$eval(sel, (e) => delete e.dataset.kind),
    /** Types `text` over a field's content, as a person selecting all and typing. */
    typeOver: async (sel, text) => {
      await page.click(sel, { clickCount: 3 });
      await page.$eval(sel, (e) => e.select?.());
      await page.keyboard.press('Backspace');
      if (text) await page.keyboard.type(text);
    },
    /** Pastes text into a box (one input event, as a paste gives). */
    paste: (sel, text) => page.$eval(sel, (e, t) => {
      e.focus();
      e.value = t;
      e.dispatchEvent(new InputEvent('input', { bubbles: true, inputType: 'insertFromPaste' }));
    }, text),
  };
}

/** Records what the page offers as downloads (name and bytes), in the page: window.__downloads. */
const spyDownloads = (page) => page.evaluate(() => {
  if (window.__downloads) return;
  window.__downloads = [];
  window.__downloadBytes = {};
  const blobs = new Map();
  const create = URL.createObjectURL.bind(URL);
  URL.createObjectURL = (b) => {
    const url = create(b);
    blobs.set(url, b);
    return url;
  };
  const click = HTMLAnchorElement.prototype.click;
  HTMLAnchorElement.prototype.click = function () {
    const blob = blobs.get(this.href);
    if (this.download && blob) {
      window.__downloads.push({ name: this.download, bytes: blob.size });
      if (blob.size < 50_000_000) blob.arrayBuffer().then((b) => (window.__downloadBytes[this.download] = Array.from(new Uint8Array(b))));
      return undefined;
    }
    return click.call(this);
  };
});

/** The story, in one browser; `extra(step)` adds what only one browser can check. */
async function story(d, { longTasks = false } = {}) {
  const { page, waitFor, text, verdict, clear, typeOver, paste } = d;
  const steps = {};
  const timed = async (name, fn) => {
    const start = longTasks ? await pageNow(page) : 0;
    const t0 = Date.now();
    const out = await fn();
    steps[name] = { seconds: (Date.now() - t0) / 1000, start, end: longTasks ? await pageNow(page) : 0 };
    return out;
  };

  // Load: one click, a progress bar, the card.
  await timed('load', async () => {
    await page.click('#llm-load-builtin');
    const v = await verdict('#llm-load-msg', LOAD_TIMEOUT);
    assert.equal(v.kind, 'ok', v.text);
    assert.match(v.text, /Loaded SmolLM2-135M-Instruct: 134,515,008 parameters/);
  });
  const card = await page.$$eval('#llm-card tr', (rs) => Object.fromEntries(rs.map((r) => [r.cells[0].textContent, r.cells[1].textContent])));
  assert.equal(card.layers, '30');
  assert.equal(card['attention heads / KV heads'], '9 / 3');
  assert.equal(card.vocabulary, '49,152 tokens');
  assert.equal(card['tensor types'], 'F32 × 61, Q4_1 × 210, Q8_0 × 1');
  assert.equal(await text('#llm-trainable'), SEED_LINE, "PEFT's line, counted from the loaded model");

  // Chat: Enter sends; the answer streams in with tokens/s.
  await timed('chat', async () => {
    await typeOver('#llm-message', 'What is the capital of France? One word.');
    await page.keyboard.press('Enter');
    await waitFor(() => document.querySelector('#llm-chat-base li.assistant .meta') !== null, undefined, 120_000);
  });
  const said = await page.$eval('#llm-chat-base li.assistant', (li) => ({ text: li.querySelector('.text').textContent, meta: li.querySelector('.meta').textContent }));
  assert.ok(said.text.trim().length > 0, 'an answer');
  assert.match(said.meta, /^\d+ tokens · \d+\.\d tokens\/s/);
  assert.equal(await page.$eval('#llm-message', (e) => e.value), '', 'the box is cleared once sent');
  // The same with 8-bit activations (llama.cpp's arithmetic), said beside the speed.
  await timed('chat, 8-bit activations', async () => {
    await page.click('#llm-int8');
    await typeOver('#llm-message', 'What is the capital of France? One word.');
    await page.keyboard.press('Enter');
    await waitFor(() => document.querySelectorAll('#llm-chat-base li.assistant .meta').length === 2, undefined, 120_000);
    await page.click('#llm-int8');
  });
  const said8 = await page.$$eval('#llm-chat-base li.assistant', (lis) => ({ text: lis[1].querySelector('.text').textContent, meta: lis[1].querySelector('.meta').textContent }));
  assert.ok(said8.text.trim().length > 0, 'an answer');
  assert.match(said8.meta, /^\d+ tokens · \d+\.\d tokens\/s · 8-bit activations/);

  // A bad line is shown where it is; nothing else breaks.
  await paste('#llm-jsonl', '{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n{"prompt": "x"}');
  await waitFor(() => document.querySelector('#llm-data-msg').dataset.kind === 'error');
  assert.match(await text('#llm-data-msg'), /line 3: "completion" is missing/);
  assert.equal(await page.$eval('#llm-jsonl', (e) => e.dataset.badLine), '3', 'the bad line is selected in its box');
  assert.equal(await page.$eval('#llm-jsonl', (e) => e.value.slice(e.selectionStart, e.selectionEnd)), '{"prompt": "x"}');

  // The demo task: the base's exact match on its 100 held-out rows, and a preview.
  await timed('demo', async () => {
    await page.click('#llm-demo');
    await waitFor(() => !document.querySelector('#llm-demo-base').hidden, undefined, 300_000);
  });
  assert.match(await text('#llm-demo-base'), /^The base model answers \d+ of 100 held-out examples exactly \(exact match 0\.\d\d\)/);
  assert.match(await text('#llm-data-note'), /The demo task: 400 training rows \(prompt-completion\), 100 held-out rows/);
  const preview = await page.$$eval('#llm-preview pre.tokens span', (s) => s.map((x) => ({ text: x.textContent, trained: x.classList.contains('trained') })));
  assert.ok(preview.some((p) => p.trained) && preview.some((p) => !p.trained), 'trained and untrained tokens');
  assert.match(preview.filter((p) => p.trained).map((p) => p.text).join(''), /^(name|word)<\|im_end\|>/, 'the completion (and its end) is what is trained');
  assert.ok(preview.filter((p) => !p.trained).map((p) => p.text).join('').includes('<|im_start|>user'), 'the chat template around the prompt');

  // A short run on 6 examples with 3 held out, by clicks.
  const demoLines = await page.$eval('#llm-jsonl', (e) => e.value.split('\n').filter((l) => l.trim()));
  const testLines = await page.$eval('#llm-test-jsonl', (e) => e.value.split('\n').filter((l) => l.trim()));
  await paste('#llm-jsonl', demoLines.slice(0, 6).join('\n'));
  await paste('#llm-test-jsonl', testLines.slice(0, 3).join('\n'));
  await page.click('#llm-preset-seed');
  await typeOver('#llm-config-form [name="epochs"]', '1');
  await waitFor(() => /Your data: 6 training rows/.test(document.querySelector('#llm-data-note').textContent));
  await timed('train', async () => {
    await clear('#llm-run-msg');
    await page.click('#llm-train');
    const v = await verdict('#llm-run-msg', 300_000);
    assert.equal(v.kind, 'ok', v.text);
    assert.match(v.text, /^Adapter "seed" trained: 2 steps in .* tokens\/s; held-out loss \d\.\d{4} → \d\.\d{4}\.$/);
  });
  const epochs = await page.$$eval('#llm-training table.epochs tbody tr', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.deepEqual(epochs.map((r) => r[0]), ['before', '1/1']);
  assert.match(epochs[1][2], /^\d\.\d\d$/, "the epoch's exact match");
  assert.match(await text('#llm-run-plan'), /6 training rows → 6 sequences .* 3 held out; 2 optimizer steps .*Memory: the model \d+ MB, the run's activations \d+ MB/s);
  assert.match(await text('#llm-training .progress-text'), /^Done after 2 steps/);
  assert.equal(await page.$$eval('#llm-checkpoints tbody tr', (r) => r.length), 1);
  assert.equal(await text('#llm-active-name'), 'seed');

  // The comparison on the held-out examples.
  await timed('compare', async () => {
    await page.click('#llm-evaluate');
    await waitFor(() => !document.querySelector('#llm-compare-table').hidden, undefined, 120_000);
  });
  const rows = await page.$$eval('#llm-compare-table tbody tr', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.equal(rows.length, 3);
  assert.ok(rows.every((r) => r[0].length > 0 && /^(name|word)$/.test(r[1])), JSON.stringify(rows));
  assert.match(await text('#llm-eval-summary'), /exact match: base \d\.\d\d, adapted \d\.\d\d/);
  assert.equal((await text('#llm-eval-summary')).match(/adapted (\d\.\d\d)\.$/)?.[1], epochs[1][2], 'the last epoch measured the adapter the comparison measures');

  // The four files.
  await spyDownloads(page);
  for (const kind of ['peft', 'gguf', 'merged', 'script']) {
    await clear('#llm-files-msg');
    await page.click(`#llm-files button[data-file="${kind}"]`);
    const v = await verdict('#llm-files-msg', 120_000);
    assert.equal(v.kind, 'ok', `${kind}: ${v.text}`);
  }
  const files = await page.evaluate(() => window.__downloads);
  assert.deepEqual(files.map((f) => f.name), ['seed.zip', 'seed.gguf', 'seed-merged.zip', 'seed-trl.zip']);
  assert.ok(files[0].bytes > 10_000_000 && files[2].bytes > 269_000_000, JSON.stringify(files));
  assert.match(await text('#llm-files code[data-use="gguf"]'), /llama-cli .* --lora seed\.gguf/);
  assert.match(await text('#llm-files code[data-use="gguf"]'), /ADAPTER \.\/seed\.gguf/);
  return steps;
}

/** After a reload the model loads again and the adapter is there, on. */
async function afterReload(d, ready) {
  const { page, waitFor, text } = d;
  await page.reload();
  await ready(page);
  const restored = await page.evaluate(() => window.lab.llm.restored);
  assert.deepEqual(restored, { model: 'SmolLM2-135M-Instruct', adapters: 1 });
  await waitFor(() => document.querySelector('#llm-adapter-list tr[data-adapter="seed"]') !== null);
  assert.equal(await text('#llm-active-name'), 'seed');
  // the run of the adapter on, as it was shown: its last line, the epochs table with the loss before, the plan
  await waitFor(() => document.querySelector('#llm-training')?.dataset.run === 'seed');
  assert.match(await text('#llm-training .progress-text'), /^Done after 2 steps/);
  assert.match(await text('#llm-training table.epochs tbody tr[data-before]'), /^before\d\.\d{4}/);
  assert.match(await text('#llm-run-plan'), /optimizer steps/);
  assert.equal(await page.$eval('#llm-card', (t) => t.hidden), false);
}

describe('panel 7 in Chromium', () => {
  let browser;
  let lab;
  let page;
  let steps;
  before(async () => {
    ({ browser, lab, page } = await startLab());
    await watchLongTasks(page);
  });
  after(async () => {
    await lab?.close();
    await browser?.close();
  });

  test('load, chat, bad data, the demo task, a short run, the comparison, the files', { timeout: 900_000 }, async () => {
    steps = await story(driver(page, 'playwright'), { longTasks: true });
    console.log(`panel 7 in Chromium: ${Object.entries(steps).map(([k, v]) => `${k} ${v.seconds.toFixed(1)} s`).join(', ')}`);
  });

  test('no long task while loading, chatting or training; nothing off the page\'s origin', async () => {
    for (const name of ['load', 'chat', 'train']) {
      const { blocking, all } = await longTasksBetween(page, steps[name].start, steps[name].end);
      assert.deepEqual(blocking, [], `no long task while ${name} (all seen: ${JSON.stringify(all)})`);
    }
    assert.deepEqual(offMachine(lab.requests), []);
    assert.deepEqual(lab.errors, []);
  });

  test('the panel at desktop width and at 390 px: nothing wider than the screen', async () => {
    await mkdir('test-results', { recursive: true });
    await page.locator('#llm').screenshot({ path: 'test-results/panel7.png' });
    await page.setViewportSize({ width: 390, height: 844 });
    const wide = await page.$$eval('#llm *', (els) => els.filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1 && !e.parentElement?.closest('.table-wrap, .snippet, pre'))
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}.${e.className}`).slice(0, 5));
    await page.locator('#llm').screenshot({ path: 'test-results/panel7-390.png' });
    assert.deepEqual(wide, [], 'elements wider than 390 px');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('the PEFT zip loads back as an adapter, and can be deleted', async () => {
    const zip = await page.evaluate(() => window.__downloadBytes['seed.zip']);
    assert.ok(zip?.length > 10_000_000, 'the PEFT zip was kept by the spy');
    const d = driver(page, 'playwright');
    await page.setInputFiles('#llm-upload', { name: 'seed.zip', mimeType: 'application/zip', buffer: Buffer.from(zip) });
    await d.typeOver('#llm-upload-name', 'back');
    await d.clear('#llm-files-msg');
    await page.click('#llm-upload-go');
    const v = await d.verdict('#llm-files-msg');
    assert.equal(v.kind, 'ok', v.text);
    assert.deepEqual(await page.$$eval('#llm-adapter-list tr[data-adapter]', (rs) => rs.map((r) => r.dataset.adapter)), ['seed', 'back']);
    await d.clear('#llm-files-msg');
    await page.click('#llm-adapter-list tr[data-adapter="back"] button.danger');
    assert.equal((await d.verdict('#llm-files-msg')).kind, 'ok');
    assert.deepEqual(await page.$$eval('#llm-adapter-list tr[data-adapter]', (rs) => rs.map((r) => r.dataset.adapter)), ['seed']);
  });

  test("llama.cpp's LoRA GGUF loads back as the same adapter", async () => {
    const gguf = await page.evaluate(() => window.__downloadBytes['seed.gguf']);
    assert.ok(gguf?.length > 10_000_000, 'the GGUF was kept by the spy');
    const d = driver(page, 'playwright');
    await page.setInputFiles('#llm-upload', { name: 'seed.gguf', mimeType: 'application/octet-stream', buffer: Buffer.from(gguf) });
    await d.typeOver('#llm-upload-name', 'from-gguf');
    await d.clear('#llm-files-msg');
    await page.click('#llm-upload-go');
    const v = await d.verdict('#llm-files-msg');
    assert.equal(v.kind, 'ok', v.text);
    assert.equal(await d.text('#llm-active-name'), 'from-gguf');
    const logits = (name) => page.evaluate(async (n) => {
      await window.lab.llm.setAdapter(n);
      return Array.from((await window.lab.llm.logits([1, 9690, 198, 2683], { adapted: true })).logits.slice(0, 4000));
    }, name);
    assert.deepEqual(await logits('from-gguf'), await logits('seed'), 'the same logits as the adapter it was written from');
    await page.evaluate(() => window.lab.llm.deleteAdapter('from-gguf'));
    assert.deepEqual(await page.$$eval('#llm-adapter-list tr[data-adapter]', (rs) => rs.map((r) => r.dataset.adapter)), ['seed']);
    assert.equal(await d.text('#llm-active-name'), 'seed');
  });

  test('a reload keeps the model chosen and the adapter, on', { timeout: LOAD_TIMEOUT }, async () => {
    await afterReload(driver(page, 'playwright'), waitReady);
  });

  test('QLoRA: the NF4 base by the snippet\'s quantization_config, trained on, kept across a reload, undone', { timeout: LOAD_TIMEOUT + 120_000 }, async () => {
    const d = driver(page, 'playwright');
    const IDS = [1, 9690, 198, 2683];
    const logits = () => page.evaluate(async (ids) => Array.from((await window.lab.llm.logits(ids)).logits.slice(0, 4000)), IDS);
    const cardTypes = () => page.$$eval('#llm-card tr', (rs) => rs.find((r) => r.querySelector('th').textContent === 'tensor types').querySelector('td').textContent);
    const asRead = await logits();
    assert.match(await cardTypes(), /Q4_1 × 210/);
    assert.equal(await d.text('#llm-base-note'), '# as read (Q4_1 and Q8_0)');

    await d.clear('#llm-run-msg');
    await page.selectOption('#llm-base', 'bnb');
    const v = await d.verdict('#llm-run-msg');
    assert.equal(v.kind, 'ok', v.text);
    assert.match(v.text, /^The base is held in NF4 \(210 projections, with double quantisation\)/);
    assert.match(await cardTypes(), /NF4 × 210/);
    assert.doesNotMatch(await cardTypes(), /Q4_1/);
    assert.match(await d.text('#llm-base-note'), /210 projections in NF4/);
    const q = (await page.evaluate(() => window.lab.llm.status())).quantization;
    assert.deepEqual([q.quantized, q.doubleQuant, q.linears], [true, true, 210]);
    const nf4 = await logits();
    assert.notDeepEqual(nf4, asRead, 'NF4 is another base');
    // bnb_4bit_use_double_quant=False quantises again, and True gives the same codes back
    await d.clear('#llm-run-msg');
    await page.selectOption('#llm-base-double', 'false');
    assert.match((await d.verdict('#llm-run-msg')).text, /without double quantisation/);
    assert.equal((await page.evaluate(() => window.lab.llm.status())).quantization.doubleQuant, false);
    await d.clear('#llm-run-msg');
    await page.selectOption('#llm-base-double', 'true');
    assert.equal((await d.verdict('#llm-run-msg')).kind, 'ok');
    assert.deepEqual(await logits(), nf4);

    // a run on it says so
    const r = await page.evaluate(() => window.lab.llm.trainAdapter({ name: 'on-nf4', data: 'demo', limit: 3, epochs: 1, exactMatchEachEpoch: false }));
    assert.deepEqual(r.nf4, { doubleQuant: true });
    assert.match(await d.text('#llm-run-msg'), /^Adapter "on-nf4" trained on the NF4 base/);
    await page.evaluate(() => window.lab.llm.deleteAdapter('on-nf4'));

    // kept: after a reload the model comes back in NF4, the same codes bit for bit
    await page.reload();
    await waitReady(page);
    assert.deepEqual(await page.evaluate(() => window.lab.llm.restored), { model: 'SmolLM2-135M-Instruct', adapters: 1 });
    assert.deepEqual(await page.$$eval('#llm-base, #llm-base-double', (s) => s.map((x) => x.value)), ['true', 'bnb'], 'bnb_4bit_use_double_quant, quantization_config');
    assert.match(await cardTypes(), /NF4 × 210/);
    assert.deepEqual(await logits(), nf4);

    // and undone: the weights as read, bit for bit
    await d.clear('#llm-run-msg');
    await page.selectOption('#llm-base', 'none');
    assert.equal((await d.verdict('#llm-run-msg')).kind, 'ok');
    assert.match(await cardTypes(), /Q4_1 × 210/);
    assert.deepEqual(await logits(), asRead);
    assert.equal((await page.evaluate(() => window.lab.llm.dequantizeBase())).quantized, false);
  });

  test('packing_strategy in the snippet: the preview shows "bfd" blocks of whole examples', async () => {
    const d = driver(page, 'playwright');
    const rows = Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: `Row ${i + 1} of the file.` })).join('\n');
    await d.paste('#llm-jsonl', rows);
    await page.selectOption('#llm-config-form select[name="packing"]', 'true');
    await d.typeOver('#llm-config-form input[name="maxSeqLength"]', '16');
    const which = () => d.text('#llm-preview [data-role="which"]');
    // 11 rows (line 10 held out): the two of 9 tokens alone, the nine of 8 in pairs and one alone
    await d.waitFor(() => /^example 1 of 7 /.test(document.querySelector('#llm-preview [data-role="which"]')?.textContent ?? ''), undefined, 30_000);
    // the longest rows come first, alone; step to a block that holds two
    for (let i = 0; i < 12 && !/examples packed/.test(await which()); i++) {
      const before = await which();
      await page.click('#llm-preview button[data-step="1"]');
      await d.waitFor((b) => document.querySelector('#llm-preview [data-role="which"]').textContent !== b, before, 30_000);
    }
    assert.match(await which(), /; 2 examples packed \(8 \+ 8 tokens\), each attending to itself only$/);
    await page.selectOption('#llm-config-form select[name="packingStrategy"]', 'wrapped');
    await d.waitFor(() => !/examples packed/.test(document.querySelector('#llm-preview [data-role="which"]').textContent), undefined, 30_000);
    assert.match(await which(), /^example \d+ of \d+ \(line \d+\): 16 tokens/);
    await page.selectOption('#llm-config-form select[name="packingStrategy"]', 'bfd');
    await page.selectOption('#llm-config-form select[name="packing"]', 'false');
    await d.typeOver('#llm-config-form input[name="maxSeqLength"]', '256');
  });

  test('a model picked from disk is asked for again after a reload, not kept unasked', { timeout: LOAD_TIMEOUT }, async () => {
    const d = driver(page, 'playwright');
    await d.clear('#llm-load-msg');
    await page.setInputFiles('#llm-load-file', fileURLToPath(MODEL));
    const v = await d.verdict('#llm-load-msg', LOAD_TIMEOUT);
    assert.equal(v.kind, 'ok', v.text);
    assert.match(v.text, /not kept in this browser: a reload asks for it again/);
    // the same file as the built-in model (its SHA-256): the adapter trained on that one is there
    await d.waitFor(() => document.querySelector('#llm-adapter-list tr[data-adapter="seed"]') !== null);
    await page.reload();
    await waitReady(page);
    assert.deepEqual(await page.evaluate(() => window.lab.llm.restored), { model: null, adapters: 0 });
    assert.match(await d.text('#llm-load-msg'), /^You were using Smollm2 135M 8k Lc100K Mix1 Ep2, loaded from SmolLM2-135M-Instruct\.Q4_1\.gguf: choose it again/);
    assert.equal((await page.evaluate(() => window.lab.llm.status())).loaded, false);
    // (The name is the file's own general.name: the built-in model goes by its Hub name, a file by what it says.)
  });
});

describe('panel 7 in Firefox', () => {
  let firefox;
  let lab;
  let page;
  before(async () => {
    firefox = await launchFirefox();
    lab = await openLabFirefox(firefox, { isolation: true });
    page = lab.page;
    await waitReadyFirefox(page);
  });
  after(async () => {
    await lab?.close().catch(() => {});
    await firefox?.close();
  });

  test('the same story by clicks, and a reload', { timeout: 1_200_000 }, async () => {
    const d = driver(page, 'puppeteer');
    const steps = await story(d);
    console.log(`panel 7 in Firefox: ${Object.entries(steps).map(([k, v]) => `${k} ${v.seconds.toFixed(1)} s`).join(', ')}`);
    await afterReload(d, (p) => waitReadyFirefox(p));
    assert.deepEqual(offMachine(lab.requests), []);
  });
});
