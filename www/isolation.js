// Cross-origin isolation through the optional service worker, for static hosts that cannot send the
// COOP/COEP headers the threaded build needs (see www/sw.js, which build.sh copies to the site root).
// Nothing is registered unless the user asks; the same control removes it again.
import { $ } from './ui.js';

const SW_URL = new URL('sw.js', document.baseURI).href;

const supported = () => 'serviceWorker' in navigator && window.isSecureContext;

/** Our service worker's registration, if it is installed for this page. */
async function registration() {
  if (!supported()) return null;
  const regs = await navigator.serviceWorker.getRegistrations();
  return regs.find((r) => [r.active, r.waiting, r.installing].some((w) => w?.scriptURL === SW_URL)) ?? null;
}

/** Installs the worker, waits until it is active, and reloads so that it serves the page. */
export async function turnThreadsOn() {
  const reg = await navigator.serviceWorker.register(SW_URL);
  const worker = reg.installing || reg.waiting || reg.active;
  if (worker && worker.state !== 'activated') {
    await new Promise((resolve, reject) => {
      worker.addEventListener('statechange', () => {
        if (worker.state === 'activated') resolve();
        if (worker.state === 'redundant') reject(new Error('the service worker could not be installed'));
      });
    });
  }
  location.reload();
}

/** Removes the worker and reloads: the page is served as the host serves it. */
export async function turnThreadsOff() {
  const reg = await registration();
  if (reg) await reg.unregister();
  location.reload();
}

/**
 * Fills the `#isolation` notice: offers the service worker where the page is not isolated and could be,
 * says so where the worker provides isolation, and stays hidden where the host sends the headers.
 */
export async function isolationNotice(isolated) {
  const box = $('#isolation');
  const text = $('#isolation-text');
  const button = $('#isolation-toggle');
  const reg = await registration().catch(() => null);
  const controlled = Boolean(reg && navigator.serviceWorker.controller?.scriptURL === SW_URL);
  let action = null;
  if (isolated && controlled) {
    text.textContent = 'Threads are on through the service worker: this host sends no cross-origin isolation headers, so the worker adds them.';
    button.textContent = 'Turn threads off';
    action = turnThreadsOff;
  } else if (!isolated && reg) {
    text.textContent = 'The service worker is installed but this page is still not cross-origin isolated: the browser does not allow it here.';
    button.textContent = 'Remove the service worker';
    action = turnThreadsOff;
  } else if (!isolated && supported()) {
    text.textContent = 'This host sends no cross-origin isolation (COOP/COEP) headers, so the page runs on one thread. '
      + 'A small service worker can add them; the page then reloads once and trains on every core.';
    button.textContent = 'Turn threads on';
    action = turnThreadsOn;
  }
  box.hidden = !action;
  if (!action) return;
  button.onclick = async () => {
    button.disabled = true;
    try {
      await action();
    } catch (e) {
      text.textContent = `Could not change the service worker: ${e.message}.`;
      button.disabled = false;
    }
  };
}
