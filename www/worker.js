// The worker owns the wasm module and does all compute; the page only sends requests (protocol.js).
import { Request, Event, serveRequests, errorMessage } from './protocol.js';

let wasm = null;

async function init({ build, threads }) {
  if (wasm) throw new Error('the worker is already initialised');
  const mod = await import(build === 'threads' ? './pkg-threads/lora_lab.js' : './pkg-simd/lora_lab.js');
  await mod.default();
  if (build === 'threads') {
    await mod.initThreadPool(threads);
  }
  wasm = mod;
  return { value: { build, ...mod.buildInfo() } };
}

// A panic aborts the module (panic = "abort"): it cannot be used again, so tell the page.
self.addEventListener('error', (e) => {
  self.postMessage({ type: Event.FATAL, message: e.message || 'the worker crashed' });
});
self.addEventListener('unhandledrejection', (e) => {
  self.postMessage({ type: Event.FATAL, message: errorMessage(e.reason) });
});

serveRequests({
  [Request.INIT]: init,
});
