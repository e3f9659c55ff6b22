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
 * Serves the page (isolated or not), opens it in a fresh context and records console errors, page
 * errors and every request's URL. Returns { page, url, errors, requests, close }.
 */
export async function openLab(browser, { isolation = true } = {}) {
  const srv = await serveLab({ isolation });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  const requests = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  context.on('request', (req) => requests.push(req.url()));
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
