// Exports from the page what tests/interop/check_lm.py compares with transformers + PEFT: the base folder,
// adapters on several module sets, and the page's next-token logits for a few texts with each.
//
//   node tests/interop/export_lm.mjs OUT_DIR [--words 20000]
// Not part of ./build.sh test (it needs PyTorch): run it by hand after ./build.sh build, then
//   ~/.cache/peers/bin/python tests/interop/check_lm.py OUT_DIR
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser, openLab, waitReady } from '../support/browser.mjs';

const out = process.argv[2];
if (!out) throw new Error('usage: node tests/interop/export_lm.mjs OUT_DIR [--words N]');
const words = Number(process.argv[process.argv.indexOf('--words') + 1] || 20000);
const TEXTS = ['Pikachu', 'Mr. Mime', 'Flabébé', 'Nidoran♀', 'spractich'];
const ADAPTERS = [
  { name: 'seed', preset: 'seed', epochs: 1 },
  { name: 'new-tokens', preset: 'new-tokens', epochs: 1 },
  { name: 'mlp-rslora', targetModules: ['gate_proj', 'up_proj', 'down_proj'], r: 8, loraAlpha: 16, useRslora: true, epochs: 1 },
  { name: 'regex-all', targetModules: '.*', r: 4, loraAlpha: 8, epochs: 1 },
];

const browser = await launchBrowser();
const lab = await openLab(browser, { isolation: true });
try {
  await waitReady(lab.page);
  const r = await lab.page.evaluate(async ({ words, TEXTS, ADAPTERS }) => {
    const L = window.lab.lm;
    const logits = async (adapted) => {
      const rows = {};
      for (const t of TEXTS) rows[t] = Array.from((await L.logits(t, { adapted })).logits);
      return rows;
    };
    await L.trainBase({ limit: words });
    const base = await L.exportBase();
    const result = { base: { config: base.config, safetensors: Array.from(base.safetensors), logits: await logits(false) }, adapters: [] };
    for (const a of ADAPTERS) {
      await L.trainAdapter(a);
      const f = await L.exportAdapter(a.name);
      result.adapters.push({ name: a.name, config: f.config, safetensors: Array.from(f.safetensors), logits: await logits(true) });
    }
    return result;
  }, { words, TEXTS, ADAPTERS });
  const write = (dir, files) => {
    mkdirSync(dir, { recursive: true });
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  };
  write(join(out, 'base'), { 'config.json': JSON.stringify(r.base.config, null, 2), 'model.safetensors': Uint8Array.from(r.base.safetensors) });
  const logits = { texts: TEXTS, vocab: 264, base: r.base.logits, adapters: {} };
  for (const a of r.adapters) {
    write(join(out, a.name), {
      'adapter_config.json': JSON.stringify(a.config, null, 2),
      'adapter_model.safetensors': Uint8Array.from(a.safetensors),
    });
    logits.adapters[a.name] = a.logits;
  }
  writeFileSync(join(out, 'logits.json'), JSON.stringify(logits));
  console.log(`wrote ${out}: base, ${r.adapters.map((a) => a.name).join(', ')}, logits.json`);
} finally {
  await lab.close();
  await browser.close();
}
