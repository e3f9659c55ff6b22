// The page's entry: picks the build the browser can run, starts the worker, wires the panels.
import { relaxedSimd, simd } from './vendor/wasm-feature-detect.js';
import { Request, Event, WorkerClient } from './protocol.js';

const statusEl = document.getElementById('status');

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

/** The threaded build needs cross-origin isolation (SharedArrayBuffer) and relaxed SIMD. */
export async function chooseBuild() {
  const hasSimd = await simd();
  if (!hasSimd) return { build: null, reason: 'this browser has no WebAssembly SIMD' };
  const isolated = self.crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined';
  const relaxed = await relaxedSimd();
  if (isolated && relaxed) return { build: 'threads', reason: '' };
  if (!isolated) {
    return { build: 'simd', reason: 'the page is not cross-origin isolated (no COOP/COEP headers), so threads are off' };
  }
  return { build: 'simd', reason: 'this browser has no relaxed SIMD, so the threaded build cannot load' };
}

async function start() {
  const { build, reason } = await chooseBuild();
  if (!build) {
    setStatus('error', `Cannot run: ${reason}.`);
    return;
  }
  const threads = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 16));
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const client = new WorkerClient(worker, (ev) => {
    if (ev.type === Event.FATAL) setStatus('error', `The worker stopped: ${ev.message}`);
  });
  setStatus('loading', `Loading the ${build === 'threads' ? 'threaded' : 'SIMD-only'} build…`);
  try {
    const info = await client.request(Request.INIT, { build, threads });
    const what = info.threads
      ? `threaded build, ${info.poolThreads} threads`
      : `SIMD-only build, 1 thread — ${reason}`;
    setStatus('ready', `Ready: ${what}${info.relaxedSimd ? ', relaxed SIMD' : ''}.`);
    window.lab = { info, client };
  } catch (e) {
    setStatus('error', `Could not start: ${e.message}`);
  }
}

start();
