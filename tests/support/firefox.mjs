// Headless Debian Firefox ESR (153+, from bookworm-security: see build.sh setup) through puppeteer-core over
// WebDriver BiDi. puppeteer-core never downloads a browser; playwright-core's Firefox does not work with ESR 153.
import puppeteer from 'puppeteer-core';
import { serveLab, watchLab } from './browser.mjs';

export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

export function launchFirefox() {
  return puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true });
}

/**
 * Serves the page (isolated or not), opens it in a fresh browser context (its own storage) and records
 * console errors, page errors and every request's URL. Returns { page, url, errors, requests, close }.
 */
export async function openLabFirefox(browser, { isolation = true } = {}) {
  const srv = await serveLab({ isolation });
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  return watchLab(srv, context, page);
}

/** Reloads of a page whose threaded start hung (see waitReadyFirefox), for the tests to report. */
export const hungStarts = [];

/**
 * Waits until window.lab exists and then until the status line says ready (or error), and returns its
 * text; one condition at a time, as ../shared/TOOLCHAIN.md advises.
 *
 * Firefox ESR 153 sometimes never finishes starting the threaded build (about 1 in 20 first loads after
 * the browser starts, more under load): inside the page's worker, wasm-bindgen-rayon's `new Worker(...)` for
 * the first pool thread never returns, and the status stays "Loading the threaded build…". A start takes
 * about a second; one still at that status after `hungAfter` ms is reloaded once (and recorded in
 * `hungStarts`). A second hang, or any other failure, fails.
 */
export async function waitReadyFirefox(page, timeout = 60_000, { hungAfter = 20_000 } = {}) {
  const status = () => page.$eval('#status', (e) => ({ state: e.dataset.state, text: e.textContent, lab: window.lab !== undefined }));
  const waitFor = async (what, fn, ms) => {
    try {
      await page.waitForFunction(fn, { timeout: ms, polling: 100 });
    } catch (e) {
      const s = await status().catch((err) => ({ text: `(status unreadable: ${err.message})` }));
      throw Object.assign(new Error(`Firefox: waiting for ${what}: ${e.message}; status ${JSON.stringify(s)}`), { status: s });
    }
  };
  const labOrError = () => window.lab !== undefined || document.querySelector('#status')?.dataset.state === 'error';
  try {
    await waitFor('window.lab', labOrError, Math.min(hungAfter, timeout));
  } catch (e) {
    if (!(hungAfter < timeout && e.status?.state === 'loading' && /^Loading the threaded build/.test(e.status.text))) throw e;
    hungStarts.push({ url: page.url(), status: e.status.text });
    await page.reload();
    await waitFor('window.lab (after reloading a hung threaded start)', labOrError, timeout);
  }
  await waitFor('the status line', () => ['ready', 'error'].includes(document.querySelector('#status')?.dataset.state), timeout);
  const { state, text } = await status();
  if (state !== 'ready') throw new Error(`page did not become ready in Firefox: ${text}`);
  return text;
}
