// The page starts the right build: threaded with 2 threads under COOP/COEP, SIMD-only without.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, offMachine, openLab, waitReady } from '../support/browser.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test('cross-origin isolated: threaded build with 2 threads, no console errors', async () => {
  const lab = await openLab(browser, { isolation: true });
  try {
    const text = await waitReady(lab.page);
    assert.match(text, /threaded build, 2 threads/);
    const info = await lab.page.evaluate(() => window.lab.info);
    assert.equal(info.build, 'threads');
    assert.equal(info.threads, true);
    assert.equal(info.poolThreads, 2);
    assert.equal(await lab.page.evaluate(() => crossOriginIsolated), true);
    assert.deepEqual(lab.errors, []);
    assert.deepEqual(offMachine(lab.requests), [], 'requests left 127.0.0.1');
  } finally {
    await lab.close();
  }
});

test('without isolation: SIMD-only build, the page says why, no console errors', async () => {
  const lab = await openLab(browser, { isolation: false });
  try {
    const text = await waitReady(lab.page);
    assert.match(text, /SIMD-only build, 1 thread/);
    assert.match(text, /not cross-origin isolated/);
    const info = await lab.page.evaluate(() => window.lab.info);
    assert.equal(info.build, 'simd');
    assert.equal(info.threads, false);
    assert.equal(info.poolThreads, 1);
    assert.deepEqual(lab.errors, []);
  } finally {
    await lab.close();
  }
});
