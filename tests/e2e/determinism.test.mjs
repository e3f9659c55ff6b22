// Same seed ⇒ the same batch losses bit for bit, on 1 and 2 threads of the threaded build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser } from '../support/browser.mjs';
import { startServer } from '../support/server.mjs';

let browser;
let server;
before(async () => {
  browser = await launchBrowser();
  server = await startServer({ port: 0, isolation: true, quiet: true });
});
after(async () => {
  await browser?.close();
  await server?.close();
});

async function run(threads) {
  const page = await browser.newPage();
  try {
    await page.goto(`${server.url}www/bench.html?build=threads&threads=${threads}&suite=determinism`);
    await page.waitForFunction(() => window.benchResults, null, { timeout: 120_000 });
    const r = await page.evaluate(() => window.benchResults);
    assert.equal(r.error, undefined, r.error);
    assert.equal(r.info.poolThreads, threads);
    return r.determinism;
  } finally {
    await page.close();
  }
}

test('the threaded build trains bit-identically on 1 and 2 threads', async () => {
  const one = await run(1);
  const two = await run(2);
  assert.equal(one.steps, 32, '2000 samples at batch 64');
  assert.match(one.lossHash, /^[0-9a-f]{16}$/);
  assert.equal(two.lossHash, one.lossHash);
});
