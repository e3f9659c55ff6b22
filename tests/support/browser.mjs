// Headless Debian Chromium through playwright-core (never a downloaded browser), plus the page server.
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--headless=new',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    headless: true,
  });
}

/** Serves the page on a free port of 127.0.0.1 (isolated or not): { url, close }. Both browsers' helpers use it. */
export function serveLab({ isolation = true } = {}) {
  return startServer({ port: 0, isolation, quiet: true });
}

/**
 * Opens the served page `srv` in `page` of `context` (Playwright's or Puppeteer's: their page events
 * have the same names) and records console errors, page errors and every request's URL, as `requests`
 * (the context in Playwright, the page in Puppeteer) reports them. Returns { page, url, errors,
 * requests, close }.
 */
export async function watchLab(srv, context, page, requests = page) {
  const seen = { errors: [], requests: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error') seen.errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => seen.errors.push(`pageerror: ${err.message}`));
  requests.on('request', (req) => seen.requests.push(req.url()));
  await page.goto(srv.url);
  return {
    page,
    url: srv.url,
    ...seen,
    close: async () => {
      await context.close();
      await srv.close();
    },
  };
}

/** Serves the page (isolated or not) and opens it in a fresh Chromium context (see watchLab). */
export async function openLab(browser, { isolation = true } = {}) {
  const srv = await serveLab({ isolation });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  return watchLab(srv, context, await context.newPage(), context);
}

/** Waits until the status line says ready (or error), and returns its text. */
export async function waitReady(page, timeout = 60_000) {
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout });
  const state = await page.getAttribute('#status', 'data-state');
  const text = await page.textContent('#status');
  if (state !== 'ready') throw new Error(`page did not become ready: ${text}`);
  return text;
}

/** Requests that went over the network to anywhere but 127.0.0.1 (blob: and data: stay in the page). */
export function offMachine(urls) {
  return urls.filter((u) => !/^(blob|data):/.test(u) && new URL(u).hostname !== '127.0.0.1');
}

/** Forgets a panel message line's last verdict, so that the next one can be waited for. */
export const clearVerdict = (page, sel) => page.$eval(sel, (e) => delete e.dataset.kind);

/** Waits until a panel message line reports ok or error, and returns { kind, text }. */
export async function verdict(page, sel, timeout = 180_000) {
  await page.waitForFunction((s) => ['ok', 'error'].includes(document.querySelector(s)?.dataset.kind), sel, { timeout });
  return page.$eval(sel, (e) => ({ kind: e.dataset.kind, text: e.textContent }));
}

/**
 * The setup every Chromium e2e file starts with: a browser, the lab served and opened (isolated unless
 * asked), ready → { browser, lab, page }. A start that fails closes the browser.
 */
export async function startLab({ isolation = true } = {}) {
  const browser = await launchBrowser();
  try {
    const lab = await openLab(browser, { isolation });
    await waitReady(lab.page);
    return { browser, lab, page: lab.page };
  } catch (e) {
    await browser.close();
    throw e;
  }
}
