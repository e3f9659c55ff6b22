// Panel 6, LoRA on a language model, as a reader uses it: clicks and typing only, except where a test reads
// back what the worker holds. One page carries the story from test to test: a short base run (3,000 words),
// the article's adapter and the one with lm_head (1 epoch each), samples, byte scores, own data refused
// and accepted, zips out and in, a reload. Every long task on the main thread is recorded throughout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { unzipSync, zipSync, strToU8 } from 'fflate';
import { clearVerdict, offMachine, startLab, verdict, waitReady } from '../support/browser.mjs';
import { longTasksBetween, pageNow, watchLongTasks } from '../support/longtasks.mjs';

const SEED_LINE = 'trainable params: 98,304 || all params: 969,856 || trainable%: 10.1359';
const NEW_TOKENS_LINE = 'trainable params: 143,616 || all params: 1,015,168 || trainable%: 14.1470';

let browser;
let lab;
let page;

before(async () => {
  ({ browser, lab, page } = await startLab());
  await watchLongTasks(page);
});

after(async () => {
  if (page) {
    await mkdir('test-results', { recursive: true });
    await page.locator('#lm').screenshot({ path: 'test-results/panel6.png' }).catch(() => {});
  }
  await lab?.close();
  await browser?.close();
});

const clearMsg = (sel) => clearVerdict(page, sel);
const result = (sel, timeout) => verdict(page, sel, timeout);

/** Types over a field as a person does. */
async function typeInto(sel, text) {
  const field = page.locator(sel);
  await field.click();
  await field.press('ControlOrMeta+a');
  await field.press('Backspace');
  if (text) await field.pressSequentially(text);
}

const now = () => pageNow(page);
/** Asserts that nothing the page ran between two now() readings blocked its main thread (tests/support/longtasks.mjs). */
async function noLongTask(start, end, what) {
  const { blocking, all } = await longTasksBetween(page, start, end);
  assert.deepEqual(blocking, [], `no long task while ${what} (all seen: ${JSON.stringify(all)})`);
}

const text = (sel) => page.textContent(sel);
const lm = (fn, arg) => page.evaluate(fn, arg);

/** The logits of "Mew" (with the active adapter), as plain numbers. */
const mewLogits = (adapted = true) => lm(async (a) => Array.from((await window.lab.lm.logits('Mew', { adapted: a })).logits), adapted);

/** Every request the page sends to the worker from now on (window.__sent). */
async function spyRequests() {
  await page.evaluate(() => {
    window.__sent = [];
    const client = window.lab.client;
    if (client.__spied) return;
    client.__spied = true;
    const request = client.request.bind(client);
    client.request = (type, ...rest) => {
      window.__sent.push(type);
      return request(type, ...rest);
    };
  });
}

test('panel 6 follows the sweeps in the page and its table of contents; the article\'s snippet and PEFT\'s line before training', async () => {
  const ids = await page.$$eval('main > section.panel', (s) => s.map((e) => e.id));
  assert.equal(ids.at(-2), 'lm');
  assert.equal(ids.at(-3), 'sweep');
  assert.equal(ids.at(-1), 'llm', 'panel 7 after it');
  assert.equal(await page.$eval('.toc li:nth-last-child(2) a', (a) => a.getAttribute('href')), '#lm');
  await page.locator('#lm').scrollIntoViewIfNeeded();
  assert.equal(await text('#lm-trainable'), SEED_LINE);
  assert.equal(await text('#lm-targets-text'), '["q_proj", "v_proj", "k_proj"]');
  const snippet = await text('#lm-adapter-form .snippet');
  assert.match(snippet, /LoraConfig\(/);
  assert.match(snippet, /TrainingArguments\(/);

  // r 8: the count follows at once (8·256 per projection and layer, 12 of them).
  await typeInto('#lm-adapter-form [name="r"]', '8');
  assert.equal(await text('#lm-trainable'), 'trainable params: 24,576 || all params: 896,128 || trainable%: 2.7425');
  // Not a number: the field is marked with its message, and the line says why it has no count.
  await typeInto('#lm-adapter-form [name="r"]', '8x');
  assert.equal(await page.getAttribute('#lm-adapter-form [name="r"]', 'aria-invalid'), null, 'marked only when used');
  await page.click('#lm-adapter-train');
  await page.waitForSelector('#lm-adapter-form [name="r"][aria-invalid="true"]');
  assert.match(await text('#lm-adapter-msg'), /Cannot train: r: "8x" is not a number/);
  assert.match(await text('#lm-trainable'), /trainable params: – \(r is not a number\)/);
  await typeInto('#lm-adapter-form [name="r"]', '32');
  assert.equal(await page.getAttribute('#lm-adapter-form [name="r"]', 'aria-invalid'), null);

  // Per layer: k_proj off in layer 3 names the layers that keep it; lm_head adds 32·(128 + 264).
  await page.click('input[aria-label="k_proj of layer 3"]');
  assert.equal(await text('#lm-targets-text'),
    '["q_proj", "v_proj", "model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.k_proj", "model.layers.2.self_attn.k_proj"]');
  assert.equal(await page.$eval('input[aria-label="k_proj in every layer"]', (b) => b.indeterminate), true);
  assert.match(await text('#lm-trainable'), /^trainable params: 90,112 \|\|/);
  await page.click('input[aria-label="lm_head (the output layer)"]');
  assert.match(await text('#lm-trainable'), /^trainable params: 102,656 \|\| all params: 974,208 \|\|/);
  // A whole layer's row, then a whole column.
  await page.click('input[aria-label="every projection of layer 0"]');
  assert.equal(await page.$$eval('#lm-targets input[data-module^="model.layers.0."]', (bs) => bs.every((b) => b.checked)), true);
  await page.click('input[aria-label="o_proj in every layer"]');
  assert.match(await text('#lm-targets-text'), /"o_proj"/);
});

test("the presets fill the form with the design note's values", async () => {
  const form = () => page.evaluate(() => {
    const f = document.querySelector('#lm-adapter-form').elements;
    const keys = ['r', 'loraAlpha', 'loraDropout', 'bias', 'batchSize', 'epochs', 'lr', 'weightDecay', 'warmupRatio', 'schedule', 'seed', 'loadBest', 'name'];
    return Object.fromEntries(keys.map((k) => [k, f[k].value]));
  });
  const shared = { r: '32', loraAlpha: '32', loraDropout: '0.05', bias: 'none', batchSize: '3', epochs: '5', weightDecay: '0.1', warmupRatio: '0.03', schedule: 'cosine', seed: '1311', loadBest: 'false' };
  await page.click('#lm-preset-new-tokens');
  assert.deepEqual(await form(), { ...shared, lr: '0.002', name: 'new-tokens' });
  assert.equal(await text('#lm-targets-text'), '["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"]');
  assert.equal(await text('#lm-trainable'), NEW_TOKENS_LINE);
  await page.click('#lm-preset-seed');
  assert.deepEqual(await form(), { ...shared, lr: '0.0005', name: 'seed' });
  assert.equal(await text('#lm-targets-text'), '["q_proj", "v_proj", "k_proj"]');
  assert.equal(await text('#lm-trainable'), SEED_LINE);
  const ticked = await page.$$eval('#lm-targets input[data-module]:checked', (bs) => bs.map((b) => b.dataset.module));
  assert.equal(ticked.length, 12);
  assert.ok(ticked.every((m) => /self_attn\.[qkv]_proj$/.test(m)));
});

test('a short base run from the form: progress, tokens/s, a loss plot, held-out loss, samples, pause and resume, no long task', async () => {
  await page.fill('#lm-base-form [name="limit"]', '3000');
  await clearMsg('#lm-base-msg');
  const start = await now();
  await page.click('#lm-base-train');
  // Pause once it is under way: nothing moves, then resume.
  await page.waitForFunction(() => /tokens\/s/.test(document.querySelector('#lm-base-training .progress-text').textContent));
  await page.click('#lm-base-training button[data-action="pause"]');
  await page.waitForFunction(() => /^Paused/.test(document.querySelector('#lm-base-training .progress-text').textContent));
  assert.equal(await page.isEnabled('#lm-base-training button[data-action="resume"]'), true);
  const held = await page.$eval('#lm-base-training progress', (p) => p.value);
  await page.waitForTimeout(700);
  assert.equal(await page.$eval('#lm-base-training progress', (p) => p.value), held, 'a paused run takes no step');
  assert.equal((await lm(() => window.lab.lm.status())).training, 'paused');
  await page.click('#lm-base-training button[data-action="resume"]');
  const res = await result('#lm-base-msg');
  const end = await now();
  assert.equal(res.kind, 'ok', res.text);
  assert.match(res.text, /Trained: \d+ steps .* tokens\/s; held-out words \d\.\d{3} nats per token/);
  const bar = await page.$eval('#lm-base-training progress', (p) => ({ value: p.value, max: p.max }));
  assert.ok(bar.max > 5 && bar.value === bar.max, JSON.stringify(bar));
  assert.ok(Number(await page.getAttribute('#lm-base-training', 'data-points')) >= 10, 'loss points plotted');
  assert.equal(await page.evaluate(() => Chart.getChart(document.querySelector('#lm-base-training canvas')).data.datasets[0].data.length) >= 10, true);
  assert.match(await text('#lm-base-training .progress-text'), /^Done after \d+ steps in .* tokens\/s\.$/);
  const rows = await page.$$eval('#lm-base-training table.epochs tbody tr', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.equal(rows.length, 1);
  const loss = Number(rows[0][1]);
  assert.ok(loss > 1 && loss < 4.5, `held-out words ${loss} (init ≈ 5.58)`);
  // Samples after the epoch: 20 from the model just trained.
  assert.equal(await page.$$eval('#lm-samples-base li', (l) => l.length), 20);
  assert.match(await text('#lm-samples-caption'), /After epoch 1 of 1 of the base model; temperature 0\.8/);
  assert.equal(await page.$$eval('#lm-checkpoints tbody tr', (r) => r.length), 1);
  assert.equal(await page.isEnabled('#lm-base-download'), true);
  await noLongTask(start, end, 'the base trained');
});

test('own data that is empty, not UTF-8 or over 1 MB is refused with the lab\'s message; good lines say what is held out; cancel', async () => {
  await page.click('#lm-preset-seed');
  await page.check('input[name="lmData"][value="user"]');
  await spyRequests();
  await clearMsg('#lm-adapter-msg');
  await page.click('#lm-adapter-train');
  assert.match((await result('#lm-adapter-msg')).text, /Cannot train: your data: no lines yet/);

  const refused = async (bytes, name, want) => {
    await page.setInputFiles('#lm-user-file', { name, mimeType: 'text/plain', buffer: bytes });
    await page.waitForFunction(() => document.querySelector('#lm-data-msg').dataset.kind === 'error');
    const msg = await text('#lm-data-msg');
    assert.match(msg, want);
    await clearMsg('#lm-adapter-msg');
    await page.click('#lm-adapter-train');
    const r = await result('#lm-adapter-msg');
    assert.equal(r.kind, 'error');
    assert.match(r.text, want);
    await page.$eval('#lm-data-msg', (e) => delete e.dataset.kind);
  };
  await refused(Buffer.from('  \n\n \n'), 'blank.txt', /your data: no lines/);
  await refused(Buffer.from([0x50, 0x69, 0x6b, 0x61, 0x0a, 0xff, 0xfe, 0x0a, 0x4d, 0x65, 0x77]), 'latin.txt', /your data: not UTF-8 text: invalid byte 0xff at byte offset 5 \(line 2\)/);
  await refused(Buffer.from('Mew\n'.repeat(275_000)), 'big.txt', /your data: 1,100,000 bytes, more than the 1,000,000 allowed \(1 MB\)/);
  const sent = await page.evaluate(() => window.__sent);
  assert.ok(!sent.includes('lmTrainAdapter'), `nothing trained: ${sent}`);

  // Good lines typed in: what is held out is said; the run can be cancelled and keeps what it learnt.
  const lines = Array.from({ length: 400 }, (_, i) => `Zorblax ${i}`).join('\n');
  await page.fill('#lm-user-text', lines);
  await page.waitForFunction(() => /Held out for evaluation: every 10th from the first, 40 \(“Zorblax 0”, “Zorblax 10”/.test(document.querySelector('#lm-data-note').textContent));
  assert.match(await text('#lm-data-note'), /400 lines\. .* trained on the other 360\./);
  await typeInto('#lm-adapter-form [name="name"]', 'mine');
  await typeInto('#lm-adapter-form [name="epochs"]', '20');
  await clearMsg('#lm-adapter-msg');
  await page.click('#lm-adapter-train');
  await page.waitForFunction(() => /tokens\/s/.test(document.querySelector('#lm-adapter-training .progress-text').textContent));
  await page.click('#lm-adapter-training button[data-action="cancel"]');
  const r = await result('#lm-adapter-msg');
  assert.equal(r.kind, 'ok', r.text);
  assert.match(r.text, /Adapter "mine" cancelled \(kept as far as it got\)/);
  assert.match(await text('#lm-adapter-training .progress-text'), /^Cancelled after/);
  assert.deepEqual((await lm(() => window.lab.lm.adapters())).list.map((a) => a.name), ['mine']);
  // The adapter list's switch: off, then on again.
  await clearMsg('#lm-adapter-msg');
  await page.click('#lm-adapter-list input[aria-label="No adapter (the base model only)"]');
  assert.equal((await result('#lm-adapter-msg')).kind, 'ok');
  assert.equal((await lm(() => window.lab.lm.adapters())).active ?? null, null);
  await clearMsg('#lm-adapter-msg');
  await page.click('#lm-adapter-list tr[data-adapter="mine"] input[type="radio"]');
  assert.equal((await result('#lm-adapter-msg')).kind, 'ok');
  assert.equal((await lm(() => window.lab.lm.adapters())).active, 'mine');
  // Back to the Pokémon names for what follows.
  await page.check('input[name="lmData"][value="pokemon"]');
});

/** Trains the adapter the form describes (after `preset`), 1 epoch; returns what the panel shows. */
async function trainPreset(preset) {
  await page.click(`#lm-preset-${preset}`);
  await typeInto('#lm-adapter-form [name="epochs"]', '1');
  const before = await text('#lm-trainable');
  await clearMsg('#lm-adapter-msg');
  await page.click('#lm-adapter-train');
  const res = await result('#lm-adapter-msg');
  assert.equal(res.kind, 'ok', res.text);
  const row = await page.$$eval('#lm-adapter-training table.epochs tbody tr', (rs) => [...rs.at(-1).cells].map((c) => c.textContent));
  return { before, row, res };
}

test('the seed preset and then new-tokens, trained from the UI: the trainable line is what training reports, loss on and off, samples side by side, the q/k/v lesson', async (t) => {
  const start = await now();
  const seed = await trainPreset('seed');
  assert.equal(seed.before, SEED_LINE);
  const seedOn = Number(seed.row[1]);
  const seedOff = Number(seed.row[2]);
  assert.ok(seedOn > 0 && seedOff > 0 && seedOn < seedOff, `seed: on ${seedOn}, off ${seedOff}`);
  assert.equal(await page.$$eval('#lm-samples-base li', (l) => l.length), 20);
  assert.equal(await page.$$eval('#lm-samples-adapted li', (l) => l.length), 20);
  assert.match(await text('#lm-samples-adapted-title'), /"seed"/);

  const news = await trainPreset('new-tokens');
  const end = await now();
  assert.equal(news.before, NEW_TOKENS_LINE);
  const newOn = Number(news.row[1]);
  assert.ok(newOn < seedOn, `with lm_head the loss falls further: ${newOn} vs ${seedOn}`);
  assert.equal(Number(news.row[2]), seedOff, 'the same frozen base under both');

  // What training reports equals the line counted before it.
  const list = await lm(() => window.lab.lm.adapters());
  assert.deepEqual(list.list.map((a) => a.name), ['mine', 'seed', 'new-tokens']);
  assert.equal(list.active, 'new-tokens');
  assert.equal(list.list[1].report, SEED_LINE);
  assert.equal(list.list[2].report, NEW_TOKENS_LINE);
  assert.ok((await text('#lm-trainable')).startsWith(NEW_TOKENS_LINE));
  assert.equal(await page.$$eval('#lm-adapter-list tbody tr[data-adapter]', (r) => r.length), 3);
  const cps = await page.$$eval('#lm-checkpoints tbody tr', (rs) => rs.map((r) => r.textContent));
  assert.equal(cps.length, 1, 'one epoch, one checkpoint');
  assert.match(cps[0], /adapter "new-tokens".*★ best/);

  // The lesson, in this run's numbers.
  const why = (await page.$$eval('#lm-why tbody tr', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent))))
    .filter((r) => r[2] === 'pokemon');
  assert.deepEqual(why.map((r) => r[0]), ['seed', 'new-tokens']);
  const pOn = (cell) => Number(cell.split('→')[1].replace('%', ''));
  assert.ok(pOn(why[1][6]) > 5 * pOn(why[0][6]), `P(capital first): new-tokens ${why[1][6]}, seed ${why[0][6]}`);
  const whyText = await text('#lm-why-text');
  t.diagnostic(whyText);
  assert.match(whyText, /"seed" \(q_proj, v_proj, k_proj\) moved the held-out Pokémon loss by -0\.\d{3}/);
  assert.match(whyText, /"new-tokens", which also adapts lm_head, reached \d\.\d{3}/);
  await noLongTask(start, end, 'the adapters trained');
});

test('samples on demand: 20 from each model side by side, the same seed the same samples; no long task', async () => {
  await typeInto('#lm-samples-form [name="temperature"]', '0.8');
  await typeInto('#lm-samples-form [name="seed"]', '3');
  const start = await now();
  const shown = [];
  for (let i = 0; i < 2; i++) {
    await clearMsg('#lm-samples-msg');
    await page.click('#lm-generate');
    assert.equal((await result('#lm-samples-msg')).kind, 'ok');
    shown.push(await page.$$eval('#lm-samples ol li', (l) => l.map((x) => x.textContent)));
  }
  const end = await now();
  assert.equal(shown[0].length, 40);
  assert.deepEqual(shown[1], shown[0], 'the same seed gives the same samples');
  assert.match(await text('#lm-samples-adapted-title'), /"new-tokens"/);
  await noLongTask(start, end, 'sampling');
  // A bad setting is refused before anything is asked of the worker.
  await typeInto('#lm-samples-form [name="topK"]', 'many');
  await page.click('#lm-generate');
  await page.waitForSelector('#lm-samples-form [name="topK"][aria-invalid="true"]');
  assert.match(await text('#lm-samples-msg'), /top-k: "many" is not a number/);
  await typeInto('#lm-samples-form [name="topK"]', '0');
});

test('the score box colours each byte under the base and the adapted model', async () => {
  await typeInto('#lm-score-text', 'Pikachu');
  await page.click('#lm-score-go');
  await page.waitForFunction(() => document.querySelectorAll('#lm-score-out .score-row').length === 2);
  const rows = await page.$$eval('#lm-score-out .score-row', (rs) => rs.map((r) => [...r.querySelectorAll('.byte')].map((b) => ({
    label: b.querySelector('.byte-label').textContent, p: Number(b.dataset.p), colour: b.style.backgroundColor,
  }))));
  assert.equal(rows.length, 2);
  for (const row of rows) {
    assert.deepEqual(row.map((c) => c.label), ['P', 'i', 'k', 'a', 'c', 'h', 'u', 'EOS']);
    assert.ok(row.every((c) => c.p > 0 && c.p <= 1 && /^rgb/.test(c.colour)), JSON.stringify(row));
  }
  const [base, adapted] = rows;
  assert.ok(adapted[0].p > 10 * base[0].p, `the capital P: ${base[0].p} → ${adapted[0].p}`);
  assert.notEqual(base[0].colour, adapted[0].colour, 'a different colour for a different probability');
  // Multi-byte characters: one cell per byte.
  await typeInto('#lm-score-text', 'Flabébé');
  await page.click('#lm-score-go');
  await page.waitForFunction(() => document.querySelector('#lm-score-out').dataset.bytes === '9');
  const cells = await page.$$eval('#lm-score-out .score-row:first-child .byte-label', (l) => l.map((x) => x.textContent));
  assert.deepEqual(cells, ['F', 'l', 'a', 'b', 'C3', 'A9', 'b', 'C3', 'A9', 'EOS']);
});

let baseZip;
let adapterZip;
/** "Mew"'s logits with new-tokens on, not merged. */
let unmergedLogits;

/** The names of the adapters stored in this browser (IndexedDB, as the page keeps them). */
const storedAdapters = () => page.evaluate(() => new Promise((resolve, reject) => {
  const req = indexedDB.open('lora-lab');
  req.onsuccess = () => {
    const all = req.result.transaction('lmAdapters').objectStore('lmAdapters').getAllKeys();
    all.onsuccess = () => {
      req.result.close();
      resolve(all.result);
    };
    all.onerror = () => reject(all.error);
  };
  req.onerror = () => reject(req.error);
}));

test('the adapter list: merge and unmerge keep the model, delete removes an adapter here and in storage', async () => {
  const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  unmergedLogits = await mewLogits(true);
  const click = async (sel) => {
    await clearMsg('#lm-adapter-msg');
    await page.click(sel);
    const r = await result('#lm-adapter-msg');
    assert.equal(r.kind, 'ok', r.text);
    return r.text;
  };
  assert.match(await click('#lm-adapter-list tr[data-adapter="new-tokens"] button:text("Merge")'), /"new-tokens" merged into the weights/);
  assert.equal(await page.textContent('#lm-adapter-list tr[data-adapter="new-tokens"] td:nth-child(7)'), 'yes');
  const merged = await mewLogits(true);
  assert.ok(maxDiff(merged, unmergedLogits) < 1e-4, `merged weights give the same logits: ${maxDiff(merged, unmergedLogits)}`);
  assert.match(await click('#lm-adapter-list tr[data-adapter="new-tokens"] button:text("Unmerge")'), /unmerged/);
  assert.deepEqual(await mewLogits(true), unmergedLogits, 'unmerged: exactly the adapter again');
  assert.deepEqual((await storedAdapters()).sort(), ['mine', 'new-tokens', 'seed']);
  assert.match(await click('#lm-adapter-list tr[data-adapter="mine"] button:text("Delete")'), /Adapter "mine" deleted/);
  assert.deepEqual((await lm(() => window.lab.lm.adapters())).list.map((a) => a.name), ['seed', 'new-tokens']);
  await page.waitForFunction(() => !document.querySelector('#lm-adapter-list tr[data-adapter="mine"]'));
  assert.deepEqual((await storedAdapters()).sort(), ['new-tokens', 'seed']);
  assert.deepEqual(await page.$$eval('#lm-why tbody tr td:first-child', (c) => c.map((x) => x.textContent)), ['seed', 'new-tokens']);
  // Left merged, for the reload to bring back.
  await click('#lm-adapter-list tr[data-adapter="new-tokens"] button:text("Merge")');
});

test('downloads: the base and an adapter as zips of their folders, and the three lines of Python', async () => {
  const fetchDownload = async (click) => {
    const [dl] = await Promise.all([page.waitForEvent('download'), click()]);
    return { name: dl.suggestedFilename(), bytes: new Uint8Array(await readFile(await dl.path())) };
  };
  const base = await fetchDownload(() => page.click('#lm-base-download'));
  assert.equal(base.name, 'lora-lab-llama.zip');
  const files = unzipSync(base.bytes);
  assert.deepEqual(Object.keys(files).sort(), ['lora-lab-llama/config.json', 'lora-lab-llama/model.safetensors']);
  const config = JSON.parse(new TextDecoder().decode(files['lora-lab-llama/config.json']));
  assert.equal(config.model_type, 'llama');
  assert.deepEqual(config.architectures, ['LlamaForCausalLM']);
  const st = files['lora-lab-llama/model.safetensors'];
  const headerLen = Number(new DataView(st.buffer, st.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(st.subarray(8, 8 + headerLen)));
  assert.ok('lm_head.weight' in header && 'model.layers.3.mlp.down_proj.weight' in header);
  baseZip = base.bytes;

  const ad = await fetchDownload(() => page.click('#lm-adapter-list tr[data-adapter="new-tokens"] button:text("Download zip")'));
  assert.equal(ad.name, 'new-tokens.zip');
  const afiles = unzipSync(ad.bytes);
  assert.deepEqual(Object.keys(afiles).sort(), ['new-tokens/adapter_config.json', 'new-tokens/adapter_model.safetensors']);
  const acfg = JSON.parse(new TextDecoder().decode(afiles['new-tokens/adapter_config.json']));
  assert.equal(acfg.peft_type, 'LORA');
  assert.equal(acfg.task_type, 'CAUSAL_LM');
  assert.equal(acfg.base_model_name_or_path, 'lora-lab-llama');
  assert.deepEqual(acfg.target_modules, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'lm_head']);
  adapterZip = ad.bytes;
  assert.equal(await text('#lm-python'),
    'from transformers import LlamaForCausalLM\nfrom peft import PeftModel\nmodel = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained("lora-lab-llama"), "new-tokens")');
});

test('a reload restores the base, the adapters (the one on, on) and the checkpoints, from IndexedDB', async () => {
  const before = {
    adapters: await lm(() => window.lab.lm.adapters()),
    checkpoints: await lm(() => window.lab.lm.checkpoints()),
    logits: await mewLogits(true),
    why: await page.$$eval('#lm-why tbody tr', (r) => r.length),
  };
  await page.reload();
  await waitReady(page);
  const restored = await lm(() => window.lab.lm.restored);
  assert.deepEqual(restored, { base: true, adapters: 2, checkpoints: before.checkpoints.length });
  assert.match(await text('#lm-store-msg'), /Restored the language model, 2 adapters, 1 checkpoint saved in this browser/);
  const after = await lm(() => window.lab.lm.adapters());
  assert.deepEqual(after.list.map((a) => a.name), before.adapters.list.map((a) => a.name));
  assert.equal(after.active, 'new-tokens');
  assert.deepEqual(after.list.map((a) => a.merged), [false, true], 'merged as it was left');
  assert.deepEqual(await mewLogits(true), before.logits, 'the same model, bit for bit');
  const cps = await lm(() => window.lab.lm.checkpoints());
  const strip = (c) => ({ adapter: c.adapter, epoch: c.epoch, step: c.step, evalLoss: c.evalLoss, best: c.best });
  assert.deepEqual(cps.map(strip), before.checkpoints.map(strip));
  assert.equal(await page.$$eval('#lm-adapter-list tbody tr[data-adapter]', (r) => r.length), 2);
  assert.equal(await page.$$eval('#lm-why tbody tr', (r) => r.length), before.why, 'the run numbers come back too');
  // A checkpoint restored from the list, by a click.
  await page.locator('#lm').scrollIntoViewIfNeeded();
  await clearMsg('#lm-adapter-msg');
  await page.click('#lm-checkpoints tbody tr button');
  const r = await result('#lm-adapter-msg');
  assert.equal(r.kind, 'ok', r.text);
  assert.match(r.text, /Checkpoint of epoch 1 .* restored as adapter "new-tokens", now on/);
  assert.deepEqual(await mewLogits(true), unmergedLogits, 'its only epoch is the adapter as trained (not merged)');
});

test('uploads: a malformed config.json or adapter gets a clear message and the loaded models keep working; good zips load back', async () => {
  const logits = await mewLogits(true);
  const names = (await lm(() => window.lab.lm.adapters())).list.map((a) => a.name);
  const base = unzipSync(baseZip);
  const weights = Buffer.from(base['lora-lab-llama/model.safetensors']);
  const upload = async (sel, msg, files, go) => {
    await clearMsg(msg);
    await page.setInputFiles(sel, files);
    if (go) await page.click(go);
    return result(msg);
  };
  const file = (name, data, mimeType = 'application/octet-stream') => ({ name, mimeType, buffer: Buffer.from(data) });

  let r = await upload('#lm-base-upload', '#lm-base-msg', [file('config.json', '{"model_type": "gpt2"}', 'application/json'), file('model.safetensors', weights)]);
  assert.equal(r.kind, 'error');
  assert.match(r.text, /config\.json.*model_type is "gpt2"; only "llama".*The loaded models are unchanged\./);
  r = await upload('#lm-base-upload', '#lm-base-msg', [file('config.json', '{"model_type": "llama", ', 'application/json'), file('model.safetensors', weights)]);
  assert.match(r.text, /config\.json: not valid JSON/);
  r = await upload('#lm-base-upload', '#lm-base-msg', [file('config.json', base['lora-lab-llama/config.json'])]);
  assert.match(r.text, /model\.safetensors is missing .*choose config\.json and model\.safetensors, or a zip of the folder/);
  r = await upload('#lm-base-upload', '#lm-base-msg', [file('model.zip', 'not a zip at all, just text')]);
  assert.match(r.text, /model\.zip is not a zip archive/);

  const acfg = unzipSync(adapterZip)['new-tokens/adapter_config.json'];
  const broken = zipSync({ 'x/adapter_config.json': acfg, 'x/adapter_model.safetensors': strToU8('garbage') });
  await page.fill('#lm-adapter-upload-name', 'broken');
  r = await upload('#lm-adapter-upload', '#lm-adapter-msg', [file('broken.zip', broken, 'application/zip')], '#lm-adapter-upload-go');
  assert.equal(r.kind, 'error');
  assert.match(r.text, /adapter_model\.safetensors.*The loaded models are unchanged\./);
  assert.deepEqual((await lm(() => window.lab.lm.adapters())).list.map((a) => a.name), names);
  assert.deepEqual(await mewLogits(true), logits, 'refused files change nothing');
  // The models still work for the panel: a score.
  await page.click('#lm-score-go');
  await page.waitForSelector('#lm-score-out .score-row');

  // The downloaded zips load back and give the same logits.
  await page.fill('#lm-adapter-upload-name', 'again');
  r = await upload('#lm-adapter-upload', '#lm-adapter-msg', [file('new-tokens.zip', adapterZip, 'application/zip')], '#lm-adapter-upload-go');
  assert.equal(r.kind, 'ok', r.text);
  assert.equal((await lm(() => window.lab.lm.adapters())).active, 'again');
  assert.deepEqual(await mewLogits(true), logits);
  const baseLogits = await mewLogits(false);
  r = await upload('#lm-base-upload', '#lm-base-msg', [file('lora-lab-llama.zip', baseZip, 'application/zip')]);
  assert.equal(r.kind, 'ok', r.text);
  assert.match(r.text, /Loaded lora-lab-llama\.zip: 871,552 parameters/);
  assert.deepEqual(await mewLogits(false), baseLogits);
  assert.deepEqual((await lm(() => window.lab.lm.adapters())).list, [], 'a new base drops the old adapters');
  assert.deepEqual(lab.errors, []);
});

test('a reload in the middle of an adapter run offers the checkpoints it made before it', async () => {
  await page.locator('#lm').scrollIntoViewIfNeeded();
  await page.click('#lm-preset-seed');
  await page.check('input[name="lmData"][value="pokemon"]');
  await typeInto('#lm-adapter-form [name="name"]', 'mid');
  await typeInto('#lm-adapter-form [name="epochs"]', '50');
  await clearMsg('#lm-adapter-msg');
  await page.click('#lm-adapter-train');
  await page.waitForFunction(() => /tokens\/s/.test(document.querySelector('#lm-adapter-training .progress-text').textContent));
  // The first epoch's checkpoint, in this browser's storage while the run goes on.
  const storedMid = () => page.evaluate(() => new Promise((res) => {
    const r = indexedDB.open('lora-lab');
    r.onerror = () => res(false);
    r.onsuccess = () => {
      const db = r.result;
      const q = db.transaction('lmCheckpoints').objectStore('lmCheckpoints').getAll();
      q.onsuccess = () => {
        db.close();
        res(q.result.some((c) => c.info?.adapter === 'mid'));
      };
      q.onerror = () => res(false);
    };
  }));
  const deadline = Date.now() + 180_000;
  while (!(await storedMid())) {
    assert.ok(Date.now() < deadline, 'no checkpoint of "mid" stored within 180 s');
    await page.waitForTimeout(250);
  }
  assert.equal((await lm(() => window.lab.lm.status())).training, 'running', 'the run is still going');
  await page.reload();
  await waitReady(page);
  const restored = await lm(() => window.lab.lm.restored);
  assert.ok(restored.checkpoints >= 1, JSON.stringify(restored));
  const cps = await lm(() => window.lab.lm.checkpoints());
  assert.ok(cps.some((c) => c.adapter === 'mid' && c.epoch === 1), JSON.stringify(cps));
  const rows = await page.$$eval('#lm-checkpoints tbody tr', (rs) => rs.map((r) => r.textContent));
  assert.ok(rows.some((r) => r.includes('adapter "mid"')), JSON.stringify(rows));
});

test('the whole session made no request off 127.0.0.1', async () => {
  const off = offMachine(lab.requests);
  assert.deepEqual(off, [], 'requests left 127.0.0.1');
  assert.ok(lab.requests.some((u) => u.endsWith('/www/data/english-words.json.gz')), 'the corpora came from the page\'s own server');
});
