// Issue 21's end-to-end target, in the page: the demo task's 3 epochs of the seed preset in Chromium (threads
// build, 2 threads) — the held-out loss before and after each epoch, then the greedy exact match of base and
// adapter — timed from the click to the answers, beside `../shared/peers/smol_torch.py`'s TRL run on the same
// rows (written to OUT_DIR/train.jsonl and test.jsonl first). Not part of the tests: it ran 15 minutes here
// (BENCHMARKS.md, "Part 3: the demo task end to end in the page").
//
//   node tests/support/sft_demo_page.mjs OUT_DIR [--epochs 3] [--nf4]
//   ~/.cache/peers/bin/python ../shared/peers/smol_torch.py HF_DIR OUT_DIR OUT_DIR/ref.json --epochs 3
import { writeFileSync, mkdirSync } from 'node:fs';
import { launchBrowser, openLab, waitReady } from './browser.mjs';

const args = process.argv.slice(2);
const out = args[0];
if (!out || out.startsWith('--')) throw new Error('usage: node tests/support/sft_demo_page.mjs OUT_DIR [--epochs 3] [--nf4]');
const epochs = Number(args.includes('--epochs') ? args[args.indexOf('--epochs') + 1] : 3);
const nf4 = args.includes('--nf4');

const browser = await launchBrowser();
const lab = await openLab(browser, { isolation: true });
const { page } = lab;
try {
  await waitReady(page, 120_000);
  await page.evaluate(() => window.lab.llm.load({ builtin: 'SmolLM2-135M-Instruct' }));
  const { train, test } = await page.evaluate(() => window.lab.llm.demoData());
  mkdirSync(out, { recursive: true });
  writeFileSync(`${out}/train.jsonl`, train);
  writeFileSync(`${out}/test.jsonl`, test);
  if (nf4) await page.evaluate(() => window.lab.llm.quantizeBase({ doubleQuant: true }));
  const t0 = Date.now();
  const before = await page.evaluate(() => window.lab.llm.evaluate({ data: 'demo' }));
  const t1 = Date.now();
  const run = await page.evaluate((e) => window.lab.llm.trainAdapter({ preset: 'seed', data: 'demo', epochs: e, exactMatchEachEpoch: false }), epochs);
  const secondsTraining = (Date.now() - t1) / 1000;
  const after = await page.evaluate(() => window.lab.llm.evaluate({ data: 'demo' }));
  const seconds = (Date.now() - t0) / 1000;
  const result = {
    base: nf4 ? 'nf4' : 'gguf',
    seconds_end_to_end: seconds,
    // trainAdapter's wall time: the held-out loss before and after each epoch included, as TRL's
    // trainer.train() includes its per-epoch evaluations (smol_torch.py's `seconds`).
    seconds_training: secondsTraining,
    seconds_of_steps: run.seconds,
    tokens_per_s: run.tokensPerSec,
    steps: run.steps,
    eval_loss_before: run.evalLossBefore,
    eval_loss: run.evalLoss,
    exact_match_before: before.base.exactMatch,
    exact_match_after: after.adapted.exactMatch,
    loss_hash: run.lossHash,
  };
  writeFileSync(`${out}/page.json`, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result));
  if (lab.errors.length) throw new Error(lab.errors.join('; '));
} finally {
  await lab.close();
  await browser.close();
}
