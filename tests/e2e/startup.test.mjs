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

test('a static host without headers: the optional service worker turns threads on after one reload, and off again', async () => {
  const lab = await openLab(browser, { isolation: false });
  try {
    const { page } = lab;
    await waitReady(page);
    assert.equal(await page.evaluate(() => crossOriginIsolated), false);
    await page.waitForSelector('#isolation:not([hidden])');
    assert.match(await page.textContent('#isolation-text'), /no cross-origin isolation/);
    assert.equal(await page.evaluate(() => navigator.serviceWorker.controller), null, 'nothing registered unasked');

    await Promise.all([page.waitForEvent('load'), page.click('#isolation-toggle')]);
    const text = await waitReady(page);
    assert.match(text, /threaded build, 2 threads/);
    assert.equal(await page.evaluate(() => crossOriginIsolated), true);
    assert.equal(await page.evaluate(() => window.lab.info.poolThreads), 2);
    await page.waitForSelector('#isolation:not([hidden])');
    assert.match(await page.textContent('#isolation-text'), /through the service worker/);
    // The threaded build computes under the worker's headers like under the server's.
    const svd = await page.evaluate(() => window.lab.svd([[1, 2], [3, 4]], 1));
    assert.ok(Math.abs(svd.S[0] - 5.4649857) < 1e-4, `σ1 = ${svd.S[0]}`);

    await Promise.all([page.waitForEvent('load'), page.click('#isolation-toggle')]);
    assert.match(await waitReady(page), /SIMD-only build, 1 thread/);
    assert.equal(await page.evaluate(() => crossOriginIsolated), false);
    assert.equal(await page.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).length), 0);
    assert.deepEqual(lab.errors, []);
  } finally {
    await lab.close();
  }
});
