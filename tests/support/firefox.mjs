// Headless Debian Firefox ESR (153+, from bookworm-security: see build.sh setup) through puppeteer-core over
// WebDriver BiDi. puppeteer-core never downloads a browser; playwright-core's Firefox does not work with ESR 153.
import puppeteer from 'puppeteer-core';
import { serveLab } from './browser.mjs';

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
  const errors = [];
  const requests = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('request', (req) => requests.push(req.url()));
  await page.goto(srv.url);
  return {
    page,
    url: srv.url,
    errors,
    requests,
    close: async () => {
      await context.close();
      await srv.close();
    },
  };
}

/**
 * Waits until window.lab exists and then until the status line says ready (or error), and returns its
 * text. One condition at a time: a single combined predicate once timed out in Firefox where two did not.
 */
export async function waitReadyFirefox(page, timeout = 60_000) {
  const opts = { timeout, polling: 100 };
  const status = () => page.$eval('#status', (e) => ({ state: e.dataset.state, text: e.textContent, lab: window.lab !== undefined }));
  const waitFor = async (what, fn) => {
    try {
      await page.waitForFunction(fn, opts);
    } catch (e) {
      const s = await status().catch((err) => ({ text: `(status unreadable: ${err.message})` }));
      throw new Error(`Firefox: waiting for ${what}: ${e.message}; status ${JSON.stringify(s)}`);
    }
  };
  await waitFor('window.lab', () => window.lab !== undefined || document.querySelector('#status')?.dataset.state === 'error');
  await waitFor('the status line', () => ['ready', 'error'].includes(document.querySelector('#status')?.dataset.state));
  const { state, text } = await status();
  if (state !== 'ready') throw new Error(`page did not become ready in Firefox: ${text}`);
  return text;
}
