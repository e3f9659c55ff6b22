// window.lab.lm in the page, as a script would drive it: a short base run, the article's adapter and
// the output-layer preset, evaluation, samples, scores, logits, files out and in, bad settings and
// files refused with nothing changed; the same losses bit for bit on 1 and 2 threads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startLab } from '../support/browser.mjs';
import { startServer } from '../support/server.mjs';

let browser;
let lab;
let page;

before(async () => {
  ({ browser, lab, page } = await startLab());
});

after(async () => {
  await lab?.close();
  await browser?.close();
});

const lm = (fn, arg) => page.evaluate(fn, arg);

test('a short base run, then the two presets', async () => {
  const base = await lm(() => window.lab.lm.trainBase({ limit: 3000 }));
  assert.equal(base.cancelled, false);
  assert.equal(base.evalLoss.length, 1);
  assert.ok(base.evalLoss[0] < 4.5, `held-out words ${base.evalLoss[0]} (init ≈ 5.58)`);
  assert.ok(base.tokensPerSec > 100, `${base.tokensPerSec} tokens/s`);
  const seed = await lm(() => window.lab.lm.trainAdapter({ preset: 'seed', epochs: 1 }));
  assert.equal(seed.trainableParams, 98_304);
  assert.equal(seed.totalParams, 969_856);
  assert.equal(seed.report, 'trainable params: 98,304 || all params: 969,856 || trainable%: 10.1359');
  const news = await lm(() => window.lab.lm.trainAdapter({ preset: 'new-tokens', epochs: 1 }));
  assert.equal(news.trainableParams, 143_616);
  const { list, active } = await lm(() => window.lab.lm.adapters());
  assert.deepEqual(list.map((a) => a.name), ['seed', 'new-tokens']);
  assert.equal(active, 'new-tokens');
  const ev = await lm(() => window.lab.lm.evaluate());
  assert.ok(Number.isFinite(ev.base.words) && Number.isFinite(ev.base.pokemon) && Number.isFinite(ev.adapted.pokemon));
  assert.ok(ev.adapted.pokemon < ev.base.pokemon, `adapter ${ev.adapted.pokemon} vs base ${ev.base.pokemon} on held-out names`);
  const cps = await lm(() => window.lab.lm.checkpoints());
  assert.equal(cps.length, 1, 'one epoch: one checkpoint');
  assert.equal(cps[0].adapter, 'new-tokens');
});

test('samples, scores and logits', async () => {
  const a = await lm(() => window.lab.lm.generate({ n: 6, temperature: 0.8, seed: 3 }));
  const b = await lm(() => window.lab.lm.generate({ n: 6, temperature: 0.8, seed: 3 }));
  assert.equal(a.length, 6);
  assert.deepEqual(a, b, 'the same seed gives the same samples');
  assert.ok(a.every((s) => typeof s === 'string' && new TextEncoder().encode(s).length <= 63));
  const sc = await lm(() => window.lab.lm.score('Pikachu'));
  assert.equal(sc.bytes.length, 7);
  assert.equal(sc.base.length, 8, 'each byte and the closing EOS');
  assert.equal(sc.adapted.length, 8);
  const l = await lm(async () => {
    const r = await window.lab.lm.logits('Mew', { adapted: true });
    return { ids: r.ids, vocab: r.vocab, n: r.logits.length, isF32: r.logits instanceof Float32Array };
  });
  assert.deepEqual(l, { ids: [256, 77, 101, 119], vocab: 264, n: 4 * 264, isF32: true });
});

test('folders out and in give the same logits; bad files and settings change nothing', async () => {
  const r = await lm(async () => {
    const L = window.lab.lm;
    const before = Array.from((await L.logits('Mew', { adapted: true })).logits);
    const base = await L.exportBase();
    const ad = await L.exportAdapter('new-tokens');
    const errors = {};
    const fail = async (what, f) => {
      try {
        await f();
        errors[what] = 'accepted';
      } catch (e) {
        errors[what] = e.message;
      }
    };
    await fail('lr', () => L.trainAdapter({ preset: 'seed', lr: NaN }));
    await fail('epochs', () => L.trainBase({ epochs: 'two' }));
    await fail('config', () => L.importBase({ config: { model_type: 'gpt2' }, safetensors: base.safetensors }));
    await fail('adapter', () => L.importAdapter({ config: ad.config, safetensors: base.safetensors, name: 'x' }));
    const still = Array.from((await L.logits('Mew', { adapted: true })).logits);
    await L.importBase(base);
    await L.importAdapter({ ...ad, name: 'back' });
    const after = Array.from((await L.logits('Mew', { adapted: true })).logits);
    return { before, still, after, errors, task: ad.config.task_type, targets: ad.config.target_modules, keys: Object.keys(base.config) };
  });
  assert.equal(r.errors.lr, 'learning rate: "NaN" is not a number');
  assert.equal(r.errors.epochs, 'epochs: "two" is not a number');
  assert.match(r.errors.config, /config\.json/);
  assert.match(r.errors.adapter, /adapter_model\.safetensors/);
  assert.deepEqual(r.still, r.before, 'refused files leave the models as they were');
  assert.deepEqual(r.after, r.before, 'export → import gives the same logits bit for bit');
  assert.equal(r.task, 'CAUSAL_LM');
  assert.deepEqual(r.targets, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'lm_head']);
  assert.ok(r.keys.includes('rope_parameters') && r.keys.includes('num_key_value_heads'));
});

test('the language model trains bit-identically on 1 and 2 threads', async () => {
  const server = await startServer({ port: 0, isolation: true, quiet: true });
  try {
    const hash = async (threads) => {
      const p = await browser.newPage();
      try {
        await p.goto(`${server.url}www/bench.html?build=threads&threads=${threads}&suite=lmDeterminism`);
        await p.waitForFunction(() => window.benchResults, null, { timeout: 300_000 });
        const res = await p.evaluate(() => window.benchResults);
        assert.equal(res.error, undefined, res.error);
        assert.equal(res.info.poolThreads, threads);
        return res.lmDeterminism.lossHash;
      } finally {
        await p.close();
      }
    };
    const one = await hash(1);
    assert.match(one, /^[0-9a-f]{16}$/);
    assert.equal(await hash(2), one);
  } finally {
    await server.close();
  }
});
