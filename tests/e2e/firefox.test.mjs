// The page in Firefox (Debian's ESR 153+, headless, through puppeteer-core over WebDriver BiDi): the threaded
// build cross-origin isolated on 2 threads, a short base training, the article's adapter, a mouse-drawn digit,
// storage across a reload — and the same losses bit for bit as Chromium for the same seed and settings.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { launchBrowser, offMachine, openLab, waitReady } from '../support/browser.mjs';
import { hungStarts, launchFirefox, openLabFirefox, waitReadyFirefox } from '../support/firefox.mjs';

// 2000 images at batch 64: 32 steps, about a second of training.
const BASE = { seed: 7, epochs: 1, batchSize: 64, lr: 0.001, limit: 2000 };
const SLOW = { timeout: 120_000, polling: 100 };

let firefox;
let lab;
let page;
let trained; // what Firefox's runs gave: { base, adapter, evaluation, drawn }

before(async () => {
  firefox = await launchFirefox();
  lab = await openLabFirefox(firefox, { isolation: true });
  page = lab.page;
});

after(async () => {
  // A known Firefox hang of the threaded start, survived by one reload (see waitReadyFirefox): say so.
  for (const h of hungStarts) console.log(`Firefox: the threaded start hung at "${h.status}" (${h.url}); reloaded once`);
  if (page) {
    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/firefox.png', fullPage: true }).catch(() => {});
  }
  await lab?.close().catch(() => {});
  await firefox?.close();
});

/** Waits until #storage-msg matches `re` (models are saved after the training's promise resolves). */
async function storageSays(p, re) {
  await p.waitForFunction((src) => new RegExp(src).test(document.querySelector('#storage-msg')?.textContent ?? ''), SLOW, re.source);
}

/** Trains the base model and the article's adapter, and evaluates both: what the two browsers compare. */
async function trainBoth(p) {
  const base = await p.evaluate((opts) => window.lab.trainBase(opts), BASE);
  const adapter = await p.evaluate(() => window.lab.trainAdapter({ preset: 'article' }));
  const evaluation = await p.evaluate(() => window.lab.evaluate());
  return { base, adapter, evaluation };
}

/** Draws a "7" on canvas #draw with mouse events, as tests/e2e/page.test.mjs does in Chromium. */
async function drawSeven(p) {
  const canvas = await p.$('#draw');
  await canvas.scrollIntoView();
  const box = await canvas.boundingBox();
  const at = (x, y) => [box.x + (x / 280) * box.width, box.y + (y / 280) * box.height];
  await p.click('#draw-clear');
  await p.mouse.move(...at(70, 60));
  await p.mouse.down();
  for (let i = 1; i <= 12; i++) await p.mouse.move(...at(70 + i * 12, 60));
  for (let i = 1; i <= 16; i++) await p.mouse.move(...at(214 - i * 6, 60 + i * 12));
  await p.mouse.up();
}

test('Firefox: cross-origin isolated, threaded build with 2 threads and relaxed SIMD', async () => {
  const text = await waitReadyFirefox(page);
  assert.match(text, /threaded build, 2 threads/);
  assert.equal(await page.evaluate(() => crossOriginIsolated), true);
  assert.equal(await page.evaluate(() => typeof SharedArrayBuffer), 'function');
  const info = await page.evaluate(() => window.lab.info);
  assert.deepEqual(info, { ...info, build: 'threads', threads: true, relaxedSimd: true, poolThreads: 2 });
  assert.match(await page.evaluate(() => navigator.userAgent), /Firefox\//);
});

test('Firefox: a short base training and the article adapter', async () => {
  trained = await trainBoth(page);
  const { base, adapter, evaluation } = trained;
  assert.equal(base.cancelled, false);
  assert.equal(base.steps, 32, '2000 samples at batch 64');
  assert.match(base.lossHash, /^[0-9a-f]{16}$/);
  assert.equal(adapter.cancelled, false);
  assert.equal(adapter.trainableParams, 1064);
  assert.equal(adapter.totalParams, 535_818);
  assert.ok(evaluation.adapted.acc_8_9 > 0.5, `the adapter learnt 8–9: ${evaluation.adapted.acc_8_9}`);
  assert.ok(evaluation.base.acc_0_7 > 0.5, `the base model learnt 0–7: ${evaluation.base.acc_0_7}`);
  await storageSays(page, /Adapter ".+" saved/);
  assert.match(await page.$eval('#adapter-params', (e) => e.textContent), /trainable params: 1,064 \|\| all params: 535,818/);
});

test('Firefox: a mouse-drawn digit is classified by the base and the adapted model', async () => {
  const before = await page.$eval('#draw-panel', (e) => Number(e.dataset.classified || 0));
  await drawSeven(page);
  await page.waitForFunction((n) => Number(document.querySelector('#draw-panel').dataset.classified || 0) > n, { timeout: 15_000, polling: 100 }, before);
  const r = await page.evaluate(() => window.lab.classifyCanvas());
  assert.equal(r.input.length, 784);
  assert.equal(Math.max(...r.input), 255);
  assert.ok(r.input.filter((v) => v > 0).length > 40, 'the stroke left ink');
  assert.equal(r.base.length, 10);
  assert.ok(Math.abs(r.base.reduce((a, b) => a + b, 0) - 1) < 1e-3);
  assert.ok(Array.isArray(r.adapted) && r.adapted.length === 10, 'the adapted model should answer too');
  const prediction = await page.$eval('#draw-prediction', (e) => e.textContent);
  assert.match(prediction, /Base model: \d .* with adapter "[^"]+": \d/);
  console.log(`drawn 7: ${prediction}`);
  trained.drawn = r;
});

test('Firefox: a reload restores both models from IndexedDB', async () => {
  await page.reload();
  await waitReadyFirefox(page);
  const restored = await page.evaluate(() => window.lab.restored);
  assert.deepEqual(restored, { model: true, adapters: 1, on4Bits: {} });
  const names = await page.evaluate(async () => (await window.lab.adapters()).list.map((a) => a.name));
  assert.deepEqual(names, [trained.adapter.name]);
  // The restored models are the trained ones: the drawn digit gets the same answer.
  const again = await page.evaluate((px) => window.lab.classify(px), trained.drawn.input);
  assert.deepEqual(again, { base: trained.drawn.base, adapted: trained.drawn.adapted });
  assert.deepEqual(lab.errors, []);
  assert.deepEqual(offMachine(lab.requests), [], 'requests left 127.0.0.1');
});

test('Chromium, same seed and settings: the same loss hash, accuracies and answers as Firefox', async () => {
  assert.ok(trained?.drawn, 'the Firefox tests above ran');
  const chromium = await launchBrowser();
  try {
    const other = await openLab(chromium, { isolation: true });
    try {
      assert.match(await waitReady(other.page), /threaded build, 2 threads/);
      const c = await trainBoth(other.page);
      console.log(`loss hash: Firefox ${trained.base.lossHash}, Chromium ${c.base.lossHash}`);
      assert.equal(c.base.steps, trained.base.steps);
      assert.equal(c.base.lossHash, trained.base.lossHash, 'Chromium and Firefox train bit-identically');
      assert.deepEqual(c.evaluation, trained.evaluation);
      // Firefox's drawing, classified in Chromium.
      const r = await other.page.evaluate((px) => window.lab.classify(px), trained.drawn.input);
      assert.deepEqual(r, { base: trained.drawn.base, adapted: trained.drawn.adapted });
      assert.deepEqual(other.errors, []);
    } finally {
      await other.close();
    }
  } finally {
    await chromium.close();
  }
});
