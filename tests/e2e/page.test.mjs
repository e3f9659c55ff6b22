// The page as a reader uses it: panels, preprocessing, SVD, training from the UI, the article's adapter,
// drawing, uploads, storage across reloads, the fatal-error banner. One browser page carries the story
// from test to test (as a reader would), so later tests build on the models earlier ones trained.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { offMachine, openLab, startLab, waitReady } from '../support/browser.mjs';
import { longTasksBetween, watchLongTasks } from '../support/longtasks.mjs';

const ARTICLE_W2 = [
  [0.0374, 0.5079, 0.4906, 0.3878],
  [0.0747, 0.5884, 0.5673, 0.4529],
  [1.0059, 0.2161, 0.1760, 0.2814],
  [0.8896, 0.4589, 0.4149, 0.4510],
];

let browser;
let lab;
let page;

before(async () => {
  ({ browser, lab, page } = await startLab());
});

after(async () => {
  if (page) {
    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/page.png', fullPage: true }).catch(() => {});
  }
  await lab?.close();
  await browser?.close();
});

/** Waits until a panel's message line reports ok or error, and returns { kind, text }. */
async function panelResult(selector, timeout = 120_000) {
  await page.waitForFunction(
    (sel) => ['ok', 'error'].includes(document.querySelector(sel)?.dataset.kind),
    selector,
    { timeout },
  );
  return page.$eval(selector, (e) => ({ kind: e.dataset.kind, text: e.textContent }));
}

/** Draws a "7" on the canvas with the mouse. */
async function drawSeven() {
  const canvas = page.locator('#draw');
  await canvas.scrollIntoViewIfNeeded();
  const box = await canvas.boundingBox();
  const at = (x, y) => [box.x + (x / 280) * box.width, box.y + (y / 280) * box.height];
  await page.click('#draw-clear');
  await page.mouse.move(...at(70, 60));
  await page.mouse.down();
  for (let i = 1; i <= 12; i++) await page.mouse.move(...at(70 + i * 12, 60));
  for (let i = 1; i <= 16; i++) await page.mouse.move(...at(214 - i * 6, 60 + i * 12));
  await page.mouse.up();
}

test('the page loads: seven panels in order, window.lab, touch-ready canvas, no console errors', async () => {
  const ids = await page.$$eval('main > section.panel', (s) => s.map((e) => e.id));
  assert.deepEqual(ids, ['svd', 'base', 'adapter', 'draw-panel', 'sweep', 'lm', 'llm']);
  const methods = await page.evaluate(() => Object.entries(window.lab)
    .filter(([, v]) => typeof v === 'function').map(([k]) => k));
  for (const m of ['trainBase', 'trainAdapter', 'evaluate', 'classify', 'classifyCanvas', 'svd', 'exportModel',
    'exportAdapter', 'importModel', 'importAdapter', 'adapters', 'setAdapter', 'merge', 'unmerge', 'sweep', 'pause',
    'resume', 'cancel']) {
    assert.ok(methods.includes(m), `window.lab.${m} is missing`);
  }
  assert.equal(await page.evaluate(() => typeof window.lab.info.build), 'string');
  assert.equal(await page.$eval('#draw', (c) => getComputedStyle(c).touchAction), 'none');
  // Every input has an accessible name.
  const unlabelled = await page.$$eval('input, select, textarea', (els) => els
    .filter((e) => !(e.labels?.length || e.getAttribute('aria-label'))).map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, []);
  assert.equal(await page.evaluate(() => typeof Chart), 'function', 'Chart.js did not load');
  assert.deepEqual(lab.errors, []);
});

test('preprocessing (in the page): an off-centre stroke ends up centred, max 255, 784 values', async () => {
  const r = await page.evaluate(async () => {
    const p = await import(new URL('www/preprocess.js', location.href).href);
    const c = new OffscreenCanvas(280, 280);
    const g = c.getContext('2d');
    g.lineWidth = 24;
    g.lineCap = 'round';
    g.beginPath(); // an "L" in the top-right corner
    g.moveTo(200, 20);
    g.lineTo(200, 110);
    g.lineTo(260, 110);
    g.stroke();
    const ink = p.inkFromRGBA(g.getImageData(0, 0, 280, 280).data, 280, 280);
    const out = p.preprocess(ink, 280, 280);
    const box = p.boundingBox(out, 28, 28);
    const blank = p.preprocess(new Float32Array(280 * 280), 280, 280);
    return {
      length: out.length,
      max: Math.max(...out),
      min: Math.min(...out),
      com: p.centreOfMass(out, 28, 28),
      side: Math.max(box.x1 - box.x0, box.y1 - box.y0),
      grey: out.filter((v) => v > 0 && v < 255).length,
      blank,
    };
  });
  assert.equal(r.length, 784);
  assert.equal(r.max, 255);
  assert.equal(r.min, 0);
  assert.ok(Math.abs(r.com.x - 14) <= 1 && Math.abs(r.com.y - 14) <= 1, `centre of mass ${JSON.stringify(r.com)}`);
  assert.ok(r.side >= 19 && r.side <= 21, `longer side ${r.side} px, want 20`);
  assert.ok(r.grey > 0, 'anti-aliased edges should be grey');
  assert.equal(r.blank, null);
});

test("the SVD panel shows the article's rank-2 numbers", async () => {
  await page.waitForSelector('#svd-approx td, #svd-msg[data-kind="error"]', { timeout: 30_000 });
  const msg = await page.$eval('#svd-msg', (e) => (e.hidden ? '' : e.textContent));
  assert.equal(msg, '', msg);
  const shown = await page.$$eval('#svd-approx tr', (rows) => rows.map((r) => [...r.cells].map((c) => Number(c.textContent))));
  assert.equal(shown.length, 4);
  shown.forEach((row, i) => row.forEach((v, j) => {
    assert.ok(Math.abs(v - ARTICLE_W2[i][j]) <= 2e-4, `W_r[${i}][${j}] = ${v}, the article prints ${ARTICLE_W2[i][j]}`);
  }));
  const error = await page.$eval('#svd-error', (e) => e.textContent);
  const [shownError, tailError] = [...error.matchAll(/= (\d+\.\d+)/g)].map((m) => Number(m[1]));
  assert.ok(Math.abs(shownError - tailError) < 1e-5, error);
  // Full rank gives W back.
  const full = await page.evaluate(() => window.lab.svd(undefined, 4));
  assert.ok(full.error < 1e-4, `rank-4 error ${full.error}`);
  assert.equal(await page.$eval('#svd-rank', (e) => e.value), '4');
});

test('a short training chosen from the UI (limit 2000, 1 epoch) shows progress and a plotted loss', async () => {
  await page.fill('#base-form [name="limit"]', '2000');
  await page.fill('#base-form [name="epochs"]', '1');
  await page.click('#base-train');
  const res = await panelResult('#base-msg');
  assert.equal(res.kind, 'ok', res.text);
  const progress = await page.$eval('#base-training progress', (p) => ({ value: p.value, max: p.max }));
  assert.ok(progress.max > 1 && progress.value === progress.max, JSON.stringify(progress));
  assert.ok(Number(await page.getAttribute('#base-training', 'data-points')) >= 10, 'loss points plotted');
  assert.match(await page.textContent('#base-training .progress-text'), /steps/);
  await page.waitForSelector('#base-eval:not([hidden])');
  assert.match(await page.textContent('#base-acc-0-7'), /^\d+\.\d\d %$/);
  assert.equal(await page.$$eval('#base-training table.epochs tbody tr', (r) => r.length), 1);
});

test('no long task over 50 ms on the main thread while a base model trains', async () => {
  await watchLongTasks(page);
  await page.evaluate(() => {
    window.__trainEnd = null;
    const text = document.querySelector('#base-training .progress-text');
    new MutationObserver(() => {
      if (/^(Done|Cancelled|Stopped)/.test(text.textContent)) window.__trainEnd ??= performance.now();
    }).observe(text, { childList: true, characterData: true, subtree: true });
    window.__trainStart = performance.now();
  });
  await page.fill('#base-form [name="limit"]', '6000');
  await page.fill('#base-form [name="epochs"]', '1');
  await page.click('#base-train');
  const res = await panelResult('#base-msg');
  assert.equal(res.kind, 'ok', res.text);
  const { start, end } = await page.evaluate(() => ({ start: window.__trainStart, end: window.__trainEnd }));
  assert.ok(end > start, 'training end not seen');
  const { blocking, all } = await longTasksBetween(page, start, end);
  assert.deepEqual(blocking, [], `long tasks during training: ${JSON.stringify(all)}`);
});

test('the article preset trains an adapter in one click', async () => {
  await page.click('#adapter-preset');
  const res = await panelResult('#adapter-msg');
  assert.equal(res.kind, 'ok', res.text);
  assert.match(await page.textContent('#adapter-params'), /trainable params: 1,064 \|\| all params: 535,818 \|\| trainable%: 0\.1986/);
  assert.equal(await page.$$eval('#adapter-list table.adapters tbody tr', (r) => r.length), 2); // "off" + the adapter
  assert.match(await page.textContent('#adapter-acc td[data-key="adapted.acc_8_9"]'), /%/);
  const form = await page.evaluate(() => {
    const f = document.querySelector('#adapter-form').elements;
    return { rank: f.rank.value, alpha: f.alpha.value, scaling: f.scaling.value, init: f.init.value, lr: f.lr.value, epochs: f.epochs.value };
  });
  assert.deepEqual(form, { rank: '4', alpha: '1', scaling: 'article', init: 'svd', lr: '0.005', epochs: '3' });
});

test('a mouse-drawn digit yields probability bars from the base and the adapted model', async () => {
  const before = Number((await page.getAttribute('#draw-panel', 'data-classified')) || 0);
  await drawSeven();
  await page.waitForFunction((n) => Number(document.querySelector('#draw-panel').dataset.classified || 0) > n, before, { timeout: 15_000 });
  const r = await page.evaluate(() => window.lab.classifyCanvas());
  assert.equal(r.input.length, 784);
  assert.equal(Math.max(...r.input), 255);
  assert.equal(r.base.length, 10);
  assert.ok(Math.abs(r.base.reduce((a, b) => a + b, 0) - 1) < 1e-3);
  assert.ok(Array.isArray(r.adapted) && r.adapted.length === 10, 'the adapted model should answer too');
  const bars = await page.evaluate(() => Chart.getChart(document.querySelector('#draw-probs')).data.datasets.map((d) => d.data.length));
  assert.deepEqual(bars, [10, 10]);
  assert.match(await page.textContent('#draw-prediction'), /Base model: \d .* with adapter/);
});

test('a malformed adapter upload shows a clear message, and classify still works after', async () => {
  await page.setInputFiles('#adapter-upload-weights', { name: 'adapter_model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('this is not a safetensors file') });
  await page.setInputFiles('#adapter-upload-config', {
    name: 'adapter_config.json',
    mimeType: 'application/json',
    buffer: Buffer.from(JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 4, target_modules: ['layers.5'] })),
  });
  await page.fill('#adapter-upload-name', 'broken');
  // The panel's message still holds the last training's result: clear it so we wait for this one.
  await page.$eval('#adapter-msg', (e) => delete e.dataset.kind);
  await page.click('#adapter-upload');
  const res = await panelResult('#adapter-msg');
  assert.equal(res.kind, 'error');
  assert.match(res.text, /cannot be used: .+\. The loaded models are unchanged\./);
  const names = await page.evaluate(async () => (await window.lab.adapters()).list.map((a) => a.name));
  assert.ok(!names.includes('broken'));
  const pixels = await page.evaluate(() => window.lab.classifyCanvas().then((r) => r.input));
  const r = await page.evaluate((px) => window.lab.classify(px), pixels);
  assert.equal(r.base.length, 10);
  assert.deepEqual(lab.errors, []);
});

test('a reload restores the trained base model and adapter from IndexedDB', async () => {
  const adaptersBefore = await page.evaluate(async () => (await window.lab.adapters()).list.map((a) => a.name));
  assert.ok(adaptersBefore.length >= 1);
  await page.reload();
  await waitReady(page);
  const restored = await page.evaluate(() => window.lab.restored);
  assert.equal(restored.model, true, 'base model restored');
  assert.equal(restored.adapters, adaptersBefore.length, 'adapters restored');
  assert.match(await page.textContent('#storage-msg'), /Restored the base model/);
  const names = await page.evaluate(async () => (await window.lab.adapters()).list.map((a) => a.name));
  assert.deepEqual(names.sort(), adaptersBefore.sort());
  await page.waitForSelector('#base-eval:not([hidden])', { timeout: 60_000 });
  const r = await page.evaluate(() => window.lab.classify(new Array(784).fill(0).map((_, i) => ((i % 28) > 10 && (i % 28) < 16 ? 255 : 0))));
  assert.equal(r.base.length, 10);
});

test('storage from a newer schema gives a message, not a crash; a fatal worker error offers a restart', async () => {
  const other = await openLab(browser, { isolation: false });
  try {
    await waitReady(other.page);
    // Pretend a newer page stored its models here: another schema in the meta record.
    await other.page.evaluate(() => new Promise((resolve, reject) => {
      const req = indexedDB.open('lora-lab'); // the version the page opened
      req.onsuccess = () => {
        const tx = req.result.transaction('meta', 'readwrite');
        tx.objectStore('meta').put({ key: 'schema', version: 99 });
        tx.oncomplete = () => {
          req.result.close();
          resolve();
        };
        tx.onerror = () => reject(tx.error);
      };
      req.onerror = () => reject(req.error);
    }));
    await other.page.reload();
    await waitReady(other.page);
    await other.page.waitForSelector('#storage-msg[data-kind="error"]');
    assert.match(await other.page.textContent('#storage-msg'), /schema 99/);

    // A crash in the worker: the banner appears; Restart brings back a working worker.
    // A genuine panic inside wasm (the module aborts), not a simulated event.
    await other.page.evaluate(() => window.lab.client.request('bench', { kind: 'panic' }).catch(() => {}));
    await other.page.waitForSelector('#fatal:not([hidden])');
    assert.match(await other.page.textContent('#status'), /The worker stopped: the compute module crashed/);
    await other.page.click('#fatal-restart');
    const text = await waitReady(other.page);
    assert.match(text, /SIMD-only build/);
    assert.equal(await other.page.isHidden('#fatal'), true);
    assert.equal(await other.page.evaluate(() => window.lab.info.build), 'simd');
    // The restarted worker computes again.
    const r = await other.page.evaluate(() => window.lab.svd([[3, 0], [0, 1]], 1));
    assert.deepEqual(r.S.map((v) => Math.round(v * 1e4) / 1e4), [3, 1]);
    // The only console errors are the deliberate panic's own report.
    assert.deepEqual(other.errors.filter((e) => !/deliberate panic|unreachable/.test(e)), []);
  } finally {
    await other.close();
  }
});

test('a rank sweep trains one adapter per cell and fills the table', async () => {
  const res = await page.evaluate(() => window.lab.sweep({ ranks: [1, 2], alphas: [1], epochs: 1 }));
  assert.equal(res.rows.length, 2);
  const [r1, r2] = res.rows;
  assert.deepEqual([r1.rank, r2.rank], [1, 2]);
  assert.equal(r2.trainableParams, 2 * r1.trainableParams, 'parameters grow with r');
  for (const r of res.rows) {
    for (const k of ['acc_8_9', 'acc_0_7', 'acc_all']) assert.ok(r[k] >= 0 && r[k] <= 1, `${k} = ${r[k]}`);
    assert.ok(r.acc_8_9 > 0.5, `rank ${r.rank} learnt 8–9: ${r.acc_8_9}`);
  }
  await page.waitForFunction(() => document.querySelectorAll('#sweep-table tbody tr').length >= 2);
  const names = await page.evaluate(async () => (await window.lab.adapters()).list.map((a) => a.name));
  assert.ok(!names.some((n) => n.startsWith('sweep ')), 'sweep adapters are not left behind');
});

test('a failed IndexedDB write (quota) is reported, and the adapter still works', async () => {
  const files = await page.evaluate(async () => {
    const f = await window.lab.exportAdapter('article');
    // From now on every write to the adapter store fails as a full disk would make it.
    const put = IDBObjectStore.prototype.put;
    window.__restorePut = () => (IDBObjectStore.prototype.put = put);
    IDBObjectStore.prototype.put = function (...args) {
      if (this.name === 'adapters') throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      return put.apply(this, args);
    };
    return { safetensors: Array.from(f.safetensors), config: f.config };
  });
  try {
    await page.evaluate((f) => window.lab.importAdapter({ safetensors: new Uint8Array(f.safetensors), config: f.config, name: 'quota' }), files);
    await page.waitForFunction(() => /Could not save adapter "quota"/.test(document.querySelector('#storage-msg')?.textContent ?? ''));
    assert.equal(await page.getAttribute('#storage-msg', 'data-kind'), 'error');
    assert.match(await page.textContent('#storage-msg'), /quota/i);
    const list = await page.evaluate(async () => (await window.lab.adapters()).list.map((a) => a.name));
    assert.ok(list.includes('quota'), 'the adapter is loaded even though it could not be stored');
    const r = await page.evaluate(() => window.lab.classify(new Array(784).fill(0)));
    assert.equal(r.adapted.length, 10);
  } finally {
    await page.evaluate(() => window.__restorePut());
    await page.evaluate(() => window.lab.deleteAdapter('quota'));
  }
});

test('a new base model drops the old adapters, in the worker and in storage', async () => {
  assert.ok((await page.evaluate(async () => (await window.lab.adapters()).list.length)) >= 1);
  await page.evaluate(() => window.lab.trainBase({ epochs: 1, limit: 640 }));
  assert.deepEqual(await page.evaluate(async () => (await window.lab.adapters()).list), []);
  await page.waitForFunction(() => /Base model saved/.test(document.querySelector('#storage-msg')?.textContent ?? ''));
  const stored = await page.evaluate(() => new Promise((resolve, reject) => {
    const req = indexedDB.open('lora-lab');
    req.onsuccess = () => {
      const get = req.result.transaction('adapters').objectStore('adapters').count();
      get.onsuccess = () => {
        req.result.close();
        resolve(get.result);
      };
      get.onerror = () => reject(get.error);
    };
    req.onerror = () => reject(req.error);
  }));
  assert.equal(stored, 0, 'stored adapters of the old base model are gone');
});

test('the whole session made no request off 127.0.0.1, under a CSP that allows nothing else', async () => {
  assert.deepEqual(offMachine(lab.requests), [], 'requests left 127.0.0.1');
  const res = await page.request.get(lab.url);
  const csp = res.headers()['content-security-policy'];
  for (const directive of ["default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "connect-src 'self'", "object-src 'none'"]) {
    assert.ok(csp.includes(directive), `CSP lacks ${directive}: ${csp}`);
  }
  assert.ok(!/unsafe-eval'|unsafe-inline|\*/.test(csp.replace("'wasm-unsafe-eval'", '')), `CSP too loose: ${csp}`);
  const meta = await page.getAttribute('meta[http-equiv="Content-Security-Policy"]', 'content');
  assert.ok(meta.includes("default-src 'self'") && meta.includes("'wasm-unsafe-eval'"), 'the page carries its CSP too');
});
