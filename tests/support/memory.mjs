// ./build.sh bench (after bench.mjs): the page's memory with everything loaded, as the language-model
// issue's target reads it — MNIST and both base models trained, the article's MLP adapter and three LM
// adapters — by performance.measureUserAgentSpecificMemory() (the whole page: every realm, JS heaps
// with whatever garbage V8 has not collected yet, and the wasm memory) and by the wasm memory alone
// (it never shrinks: its size is the high-water mark). Adds `page_memory` to bench/results.json.
//
// Then part 3: SmolLM2-135M-Instruct loaded, and during and after a seed fine-tuning run at batch 3 × 256
// tokens (issue 21's memory target: the page ≤ 600 MB during it). `--llm` measures only part 3.
//
//   node tests/support/memory.mjs [--words 6000] [--llm]
import { readFileSync, writeFileSync } from 'node:fs';
import { launchBrowser, openLab, waitReady } from './browser.mjs';

const args = process.argv.slice(2);
const words = Number(args.includes('--words') ? args[args.indexOf('--words') + 1] : 6000);
const llmOnly = args.includes('--llm');
const ROOT = new URL('../../', import.meta.url);

const browser = await launchBrowser();
const lab = await openLab(browser, { isolation: true });
const { page } = lab;
const stages = [];
try {
  await waitReady(page, 120_000);
  const measure = async (stage) => {
    const m = await page.evaluate(async () => {
      const r = await performance.measureUserAgentSpecificMemory();
      const status = await window.lab.status();
      // Where it is: bytes by realm (Window, the lab's worker, rayon's workers) and kind (JS, DOM, shared).
      const parts = {};
      for (const b of r.breakdown) {
        const scope = b.attribution.map((a) => a.scope).join('+') || 'shared';
        const key = `${scope}:${b.types.join('+') || '-'}`;
        parts[key] = (parts[key] ?? 0) + b.bytes;
      }
      return { total: r.bytes, wasm: status.wasmBytes, parts };
    });
    const parts = Object.fromEntries(Object.entries(m.parts).filter(([, b]) => b > 0).map(([k, b]) => [k, +(b / 1e6).toFixed(1)]));
    stages.push({ stage, page_mb: m.total / 1e6, wasm_mb: m.wasm / 1e6, parts_mb: parts });
    console.log(`${stage.padEnd(40)} page ${(m.total / 1e6).toFixed(1)} MB, wasm memory ${(m.wasm / 1e6).toFixed(1)} MB`);
    console.log(`${''.padEnd(40)} ${Object.entries(parts).map(([k, b]) => `${k} ${b}`).join(', ')}`);
  };
  await measure('ready');
  if (!llmOnly) {
    await page.evaluate(() => window.lab.trainBase({ epochs: 1 }));
    await page.evaluate(() => window.lab.trainAdapter({}));
    await measure('MLP base and adapter');
    await page.evaluate((limit) => window.lab.lm.trainBase({ limit }), words);
    for (const [preset, name, data] of [['seed', 'seed', 'pokemon'], ['new-tokens', 'new-tokens', 'pokemon'], ['seed', 'names', 'names']]) {
      await page.evaluate((s) => window.lab.lm.trainAdapter(s), { preset, name, data, epochs: 1 });
    }
    await measure(`+ LM base (${words} words) and 3 adapters`);
  }
  await page.evaluate(() => window.lab.llm.load({ builtin: 'SmolLM2-135M-Instruct' }));
  await measure('+ SmolLM2-135M-Instruct loaded');
  // Text rows of 400 words cut to 256 tokens: every step a batch of 3 × 256 with the loss on every token.
  await page.evaluate(() => {
    const words = 'the of and to in is was for on with as by at from that this which it are be an or have has'.split(' ');
    const row = (i) => JSON.stringify({ text: Array.from({ length: 400 }, (_, j) => words[(i * 7 + j * 13) % words.length]).join(' ') });
    const jsonl = Array.from({ length: 15 }, (_, i) => row(i)).join('\n');
    window.memoryRun = window.lab.llm.trainAdapter({
      preset: 'seed', name: 'memory', data: { jsonl, testJsonl: row(99) }, epochs: 1, maxSeqLength: 256,
    });
  });
  // Past the held-out loss before and the first steps (~15 s each): the activations are at their largest.
  await new Promise((r) => setTimeout(r, 40_000));
  await measure('+ during a seed run, batch 3 × 256');
  await page.evaluate(() => window.memoryRun);
  await measure('+ after it (its adapter kept)');
  if (lab.errors.length) throw new Error(lab.errors.join('; '));
} finally {
  await lab.close();
  await browser.close();
}
const file = new URL('bench/results.json', ROOT);
let results = {};
try {
  results = JSON.parse(readFileSync(file, 'utf8'));
} catch {
  results = {};
}
results.page_memory = { target_mb: 256, stages };
writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
console.log('added page_memory to bench/results.json');
