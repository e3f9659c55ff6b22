// The "4-bit base (QLoRA)" toggle of panels 3 and 6, as a reader uses it: a short base run, a click on the
// toggle (the numbers it shows: bytes f32 → NF4, the base's quality before and after), base training
// refused, the article's adapter trained on the 4-bit base and listed there, the files in bitsandbytes'
// layout, a reload that keeps the 4-bit base, and a click back that restores the f32 results bit for bit.
// Then the same for the language model, and settings of the wrong kind refused with nothing changed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { clearVerdict, startLab, verdict, waitReady } from '../support/browser.mjs';

let browser;
let lab;
let page;

before(async () => {
  ({ browser, lab, page } = await startLab());
});

after(async () => {
  if (page) {
    await mkdir('test-results', { recursive: true });
    await page.locator('#adapter-qlora').screenshot({ path: 'test-results/qlora-panel3.png' }).catch(() => {});
    await page.locator('#lm-qlora').screenshot({ path: 'test-results/qlora-panel6.png' }).catch(() => {});
  }
  await lab?.close();
  await browser?.close();
});

const clearMsg = (sel) => clearVerdict(page, sel);
const result = (sel, timeout) => verdict(page, sel, timeout);

/** The numbers table of a toggle: { bytes: [f32, nf4], quality: [f32, nf4] } as shown. */
const shown = (root) => page.$eval(root, (r) => {
  const row = (cls) => [...r.querySelectorAll(`tr.${cls} td`)].map((td) => td.textContent);
  return { bytes: row('q-bytes'), quality: row('q-quality'), adapters: r.querySelector('[data-role="adapters"]').textContent };
});

/** The safetensors header's keys. */
function headerKeys(bytes) {
  const b = Uint8Array.from(bytes);
  const n = Number(new DataView(b.buffer).getBigUint64(0, true));
  return Object.keys(JSON.parse(new TextDecoder().decode(b.slice(8, 8 + n))));
}

const evaluation = () => page.evaluate(() => window.lab.evaluate());
const exported = (opts) => page.evaluate(async (o) => Array.from(await window.lab.exportModel(o)), opts);

let f32Eval;
let f32Model;

test('panel 3: the toggle holds the MLP in 4 bits and shows bytes and accuracy before and after', async () => {
  await page.evaluate(() => window.lab.trainBase({ epochs: 1, limit: 6000 }));
  await page.evaluate(() => window.lab.setAdapter(null)).catch(() => {});
  f32Eval = await evaluation();
  f32Model = await exported();

  await clearMsg('#adapter-qlora .msg');
  await page.locator('#adapter-qlora-toggle').check();
  const r = await result('#adapter-qlora .msg');
  assert.equal(r.kind, 'ok', r.text);
  const q = (await page.evaluate(() => window.lab.status())).quantization;
  assert.deepEqual({ quantized: q.quantized, doubleQuant: q.doubleQuant, linears: q.linears, f32Bytes: q.f32Bytes },
    { quantized: true, doubleQuant: true, linears: 3, f32Bytes: 535_818 * 4 });
  assert.ok(q.bytes > 270_000 && q.bytes < 300_000, `NF4 bytes ${q.bytes}`);
  const s = await shown('#adapter-qlora');
  assert.deepEqual(s.bytes, ['2.14 MB', `${(q.bytes / 1e6).toFixed(2)} MB`]);
  const nf4Eval = await evaluation();
  assert.equal(s.quality[0], `${(f32Eval.base.acc_0_7 * 100).toFixed(2)} %`);
  assert.equal(s.quality[1], `${(nf4Eval.base.acc_0_7 * 100).toFixed(2)} %`);
  assert.ok(nf4Eval.base.acc_0_7 > f32Eval.base.acc_0_7 - 0.02, `0–7: ${f32Eval.base.acc_0_7} → ${nf4Eval.base.acc_0_7}`);
  assert.match(r.text, /2\.14 MB → 0\.2\d MB/);

  // Training the base is refused while it is held in 4 bits; nothing changes.
  await assert.rejects(page.evaluate(() => window.lab.trainBase({ epochs: 1, limit: 640 })), /4 bits.*frozen/);
  assert.deepEqual(await evaluation(), nf4Eval);
});

test('panel 3: the article\'s adapter trains on the 4-bit base, and the files are bitsandbytes\'', async () => {
  await page.click('#adapter-preset');
  await page.waitForFunction(() => document.querySelector('#adapter-msg')?.dataset.kind === 'ok'
    && /evaluated/.test(document.querySelector('#adapter-msg').textContent), null, { timeout: 120_000 });
  const s = await shown('#adapter-qlora');
  assert.match(s.adapters, /article: digits 8–9 \d+\.\d\d %/);
  const ev = await evaluation();
  assert.ok(ev.adapted.acc_8_9 > 0.85, `8–9 with the adapter on the 4-bit base: ${ev.adapted.acc_8_9}`);

  const keys = headerKeys(await exported());
  for (const k of ['layers.1.weight.quant_state.bitsandbytes__nf4', 'layers.5.weight.absmax', 'layers.3.weight.nested_absmax', 'layers.1.bias']) {
    assert.ok(keys.includes(k), `${k} is not in the 4-bit model.safetensors`);
  }
  const dense = headerKeys(await exported({ dequantized: true }));
  assert.deepEqual(dense.filter((k) => k !== '__metadata__').sort(),
    ['layers.1.bias', 'layers.1.weight', 'layers.3.bias', 'layers.3.weight', 'layers.5.bias', 'layers.5.weight']);
});

test('panel 3: a reload keeps the 4-bit base; the click back gives the f32 results bit for bit', async () => {
  const before = await evaluation();
  await page.reload();
  await waitReady(page);
  await page.evaluate(() => window.lab.restored);
  await page.waitForFunction(() => document.querySelector('#adapter-qlora-toggle')?.checked, null, { timeout: 60_000 });
  assert.equal((await page.evaluate(() => window.lab.status())).quantization.quantized, true);
  assert.deepEqual(await evaluation(), before, 'the same 4-bit base and adapter after the reload');
  await page.waitForFunction(() => /article: digits 8–9 \d+\.\d\d %/.test(document.querySelector('#adapter-qlora [data-role="adapters"]')?.textContent),
    null, { timeout: 30_000 }).catch(() => {});
  assert.match((await shown('#adapter-qlora')).adapters, /article: digits 8–9 \d+\.\d\d %/, 'the adapters trained on the 4-bit base are listed after the reload');

  await page.evaluate(() => window.lab.setAdapter(null));
  await clearMsg('#adapter-qlora .msg');
  await page.locator('#adapter-qlora-toggle').uncheck();
  assert.equal((await result('#adapter-qlora .msg')).kind, 'ok');
  const back = await evaluation();
  assert.deepEqual(back.base, f32Eval.base, 'undo restores the f32 base\'s accuracy, per class and confusion');
  assert.deepEqual(await exported(), f32Model, 'and its model.safetensors byte for byte');
  assert.equal((await page.evaluate(() => window.lab.status())).quantization.quantized, false);
});

test('settings of the wrong kind are refused, naming them, and nothing changes', async () => {
  await assert.rejects(page.evaluate(() => window.lab.quantizeBase({ type: 'fp4' })), /"fp4".*nf4/);
  await assert.rejects(page.evaluate(() => window.lab.quantizeBase({ doubleQuant: 'yes' })), /doubleQuant: "yes" is not true or false/);
  assert.equal((await page.evaluate(() => window.lab.status())).quantization.quantized, false);
  assert.deepEqual(await exported(), f32Model);
  const q = await page.evaluate(() => window.lab.quantizeBase({ doubleQuant: false }));
  assert.equal(q.doubleQuant, false);
  assert.equal(await page.$eval('#adapter-qlora-double', (c) => c.checked), false);
  await page.evaluate(() => window.lab.dequantizeBase());
  assert.deepEqual(await exported(), f32Model);
});

test('panel 3: a double-quantised 4-bit file loaded as the base is held the same after a reload', async () => {
  await page.evaluate(() => window.lab.quantizeBase({ doubleQuant: true }));
  const held = await exported();
  await page.evaluate((b) => window.lab.importModel(new Uint8Array(b)), held);
  assert.equal((await page.evaluate(() => window.lab.status())).quantization.quantized, true, 'a 4-bit file loads as a 4-bit base');
  assert.deepEqual(await exported(), held, 'and exports the same bytes');
  await page.waitForFunction(() => document.querySelector('#adapter-qlora-toggle')?.checked, null, { timeout: 30_000 });
  // Kept in IndexedDB before the reload: its only f32 weights are the dequantised ones, which quantised
  // again do not give the file back (double quantisation's offset moves), so the file itself is kept.
  const deq = await exported({ dequantized: true });
  await page.waitForFunction(async (want) => {
    const db = await new Promise((res, rej) => { const r = indexedDB.open('lora-lab'); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    const rec = await new Promise((res) => { const r = db.transaction('models').objectStore('models').get('base'); r.onsuccess = () => res(r.result); });
    db.close();
    return rec?.bytes?.length === want.length && rec.bytes.every((b, i) => b === want[i]) && Boolean(rec.quant?.bytes);
  }, deq, { timeout: 30_000, polling: 250 });
  await page.reload();
  await waitReady(page);
  await page.evaluate(() => window.lab.restored);
  assert.deepEqual(await exported(), held, 'the same 4-bit base after a reload');
});

test('panel 6: the language model in 4 bits — numbers, an adapter on top, its folder, and the click back', async () => {
  await page.evaluate(() => window.lab.lm.trainBase({ limit: 3000 }));
  const mew = (adapted) => page.evaluate(async (a) => Array.from((await window.lab.lm.logits('Mew', { adapted: a })).logits), adapted);
  const f32Logits = await mew(false);
  const f32Folder = await page.evaluate(async () => {
    const { config, safetensors } = await window.lab.lm.exportBase();
    return { config, safetensors: Array.from(safetensors) };
  });

  await clearMsg('#lm-qlora .msg');
  await page.locator('#lm-qlora-toggle').check();
  const r = await result('#lm-qlora .msg');
  assert.equal(r.kind, 'ok', r.text);
  const q = (await page.evaluate(() => window.lab.lm.status())).quantization;
  assert.equal(q.linears, 28, 'every projection of the 4 layers; lm_head stays f32');
  const s = await shown('#lm-qlora');
  assert.equal(s.bytes[0], '3.49 MB');
  assert.ok(s.quality.every((v) => /^\d\.\d{4}$/.test(v)), `held-out losses shown: ${s.quality}`);
  assert.ok(Math.abs(Number(s.quality[1]) - Number(s.quality[0])) < 0.1, `held-out words ${s.quality}`);
  assert.notDeepEqual(await mew(false), f32Logits);
  await assert.rejects(page.evaluate(() => window.lab.lm.trainBase({ limit: 500 })), /4 bits/);

  const run = await page.evaluate(() => window.lab.lm.trainAdapter({ preset: 'new-tokens', epochs: 1 }));
  assert.equal(run.trainableParams, 143_616);
  assert.match((await shown('#lm-qlora')).adapters, /new-tokens: held-out Pokémon names: \d\.\d{3} → \d\.\d{3}/);
  const folder = await page.evaluate(async () => {
    const { config, safetensors } = await window.lab.lm.exportBase();
    return { config, safetensors: Array.from(safetensors) };
  });
  const config = typeof folder.config === 'string' ? JSON.parse(folder.config) : folder.config;
  assert.equal(config.quantization_config.bnb_4bit_quant_type, 'nf4');
  assert.ok(headerKeys(folder.safetensors).includes('model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4'));

  // A reload keeps the 4-bit base and its list of adapters trained on it
  const listed = (await shown('#lm-qlora')).adapters;
  const adaptedLogits = await mew(true);
  await page.reload();
  await waitReady(page);
  await page.evaluate(() => window.lab.lm.restored);
  assert.equal(await page.$eval('#lm-qlora-toggle', (c) => c.checked), true, 'the toggle is on after the reload');
  assert.equal((await shown('#lm-qlora')).adapters, listed, 'the adapters trained on the 4-bit base are listed after the reload');
  assert.deepEqual(await mew(true), adaptedLogits, 'the same 4-bit base and adapter after the reload');

  await page.evaluate(() => window.lab.lm.setAdapter(null));
  await clearMsg('#lm-qlora .msg');
  await page.locator('#lm-qlora-toggle').uncheck();
  assert.equal((await result('#lm-qlora .msg')).kind, 'ok');
  assert.deepEqual(await mew(false), f32Logits, 'undo gives the f32 logits bit for bit');
  const back = await page.evaluate(async () => Array.from((await window.lab.lm.exportBase()).safetensors));
  assert.deepEqual(back, f32Folder.safetensors);
  assert.deepEqual(lab.errors, []);
});
