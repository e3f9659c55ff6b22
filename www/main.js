// The page's entry: picks the build the browser can run, starts the worker, wires the panels.
import { relaxedSimd, simd } from './vendor/wasm-feature-detect.js';
import { App } from './app.js';
import { createLab } from './lab.js';
import { isolationNotice } from './isolation.js';
import { deleteDatabase } from './storage.js';
import { $, say } from './ui.js';
import { svdPanel } from './panels/svd.js';
import { basePanel } from './panels/base.js';
import { adapterPanel } from './panels/adapter.js';
import { drawPanel } from './panels/draw.js';
import { sweepPanel } from './panels/sweep.js';
import { lmPanel } from './panels/lm.js';
import { llmPanel } from './panels/llm.js';
import { createLlm } from './llm.js';

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

function readyText(info, reason) {
  const what = info.threads
    ? `threaded build, ${info.poolThreads} threads`
    : `SIMD-only build, 1 thread — ${reason}`;
  return `Ready: ${what}${info.relaxedSimd ? ', relaxed SIMD' : ''}.`;
}

async function start() {
  const { build, reason } = await chooseBuild();
  isolationNotice(self.crossOriginIsolated === true).catch(() => {});
  if (!build) {
    setStatus('error', `Cannot run: ${reason}.`);
    return;
  }
  const threads = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 16));
  const app = new App({ build, threads });

  const panels = {};
  panels.svd = svdPanel(app);
  panels.base = basePanel(app);
  panels.adapter = adapterPanel(app);
  panels.draw = drawPanel(app);
  panels.sweep = sweepPanel(app, panels.adapter);
  panels.lm = lmPanel(app);
  panels.llm = llmPanel(app, createLlm(app));

  const storageMsg = $('#storage-msg');
  app.on('storage', ({ kind, text }) => say(storageMsg, text, kind));
  $('#storage-forget').addEventListener('click', async () => {
    try {
      const storage = await app.getStorage();
      if (storage) await storage.clear();
      else await deleteDatabase();
      say(storageMsg, 'Stored models forgotten; the ones loaded now stay until you reload.', 'ok');
    } catch (e) {
      say(storageMsg, `Could not clear the stored models: ${e.message}.`, 'error');
    }
  });

  const banner = $('#fatal');
  app.on('fatal', ({ message }) => {
    setStatus('error', `The worker stopped: ${message}`);
    $('#fatal-message').textContent = message;
    banner.hidden = false;
  });
  $('#fatal-restart').addEventListener('click', async () => {
    banner.hidden = true;
    setStatus('loading', 'Restarting the worker…');
    try {
      const restored = app.restart();
      if (window.lab) window.lab.restored = restored;
      await restored;
      panels.llm.restore().catch(() => {});
      setStatus('ready', readyText(app.info, reason));
      panels.svd.compute().catch(() => {});
    } catch (e) {
      setStatus('error', `Could not restart: ${e.message}`);
      banner.hidden = false;
    }
  });

  setStatus('loading', `Loading the ${build === 'threads' ? 'threaded' : 'SIMD-only'} build…`);
  try {
    const info = await app.start();
    const lab = createLab(app, panels);
    window.lab = lab;
    $('#build-info').textContent = `${info.build} build · ${info.poolThreads} thread${info.poolThreads === 1 ? '' : 's'}`
      + `${info.relaxedSimd ? ' · relaxed SIMD' : ''}`;
    setStatus('ready', readyText(info, reason));
    lab.restored = app.restore();
    panels.lm.restoreAfter(lab.restored);
    // The pretrained LLM chosen before a reload loads after the other panels' models.
    lab.llm.restored = lab.restored.catch(() => {}).then(() => panels.llm.restore()).catch((e) => ({ model: null, adapters: 0, error: e.message }));
    panels.svd.compute().catch(() => {});
  } catch (e) {
    setStatus('error', `Could not start: ${e.message}`);
  }
}

start();
