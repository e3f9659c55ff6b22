// The page's side of the worker: one place that owns the WorkerClient (and replaces it on restart), fans
// worker events out to the panels, batches progress events per animation frame, and keeps the trained
// models in IndexedDB. Panels talk to the worker only through `app.request`.
import { Request, Event, WorkerClient } from './protocol.js';
import { openStorage } from './storage.js';
import { MLP_BASE, heldIn4Bits, restore4Bits } from './keep-4bit.js';

/** How long a worker may take to start before a fresh one is tried, and how many tries in all. */
const START_TIMEOUT_MS = 15_000;
const START_TRIES = 3;

export class App {
  constructor({ build, threads }) {
    this.build = build;
    this.threads = threads;
    this.client = null;
    this.info = null;
    this.listeners = new Map();
    this.busy = null; // null | 'base' | 'adapter' | 'sweep'
    this.hasModel = false;
    this.adapters = { active: null, list: [] };
    this.evaluation = null;
    this.dataPromise = null;
    this.storage = null;
    this.storagePromise = null;
    this.progressQueue = [];
    this.progressFrame = 0;
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }

  emit(type, payload) {
    for (const fn of this.listeners.get(type) || []) {
      try {
        fn(payload);
      } catch (e) {
        // One panel's bug must not stop the others from hearing the event.
        console.warn(`listener for "${type}" failed:`, e);
      }
    }
  }

  /**
   * Starts a worker and initialises it; resolves to the build info. A start that has not finished after
   * START_TIMEOUT_MS is abandoned and tried afresh (up to START_TRIES in all): in Firefox ESR 153 about one
   * first load in twenty never returns from creating the rayon pool's first worker.
   */
  async start() {
    for (let attempt = 1; ; attempt++) {
      const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
      this.client = new WorkerClient(worker, (ev) => this.#onEvent(ev));
      let timer;
      const late = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the ${this.build} build did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      });
      try {
        this.info = await Promise.race([this.client.request(Request.INIT, { build: this.build, threads: this.threads }), late]);
        return this.info;
      } catch (e) {
        if (attempt >= START_TRIES || !/did not start within/.test(e.message)) throw e;
        console.warn(`${e.message}; starting a fresh worker (try ${attempt + 1} of ${START_TRIES})`);
        this.client.terminate();
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Stops the worker, starts a fresh one, restores the stored models into it; resolves like restore(). */
  async restart() {
    this.client?.terminate();
    this.client = null;
    this.dataPromise = null;
    this.hasModel = false;
    this.adapters = { active: null, list: [] };
    this.evaluation = null;
    this.setBusy(null);
    this.emit('restart');
    await this.start();
    return this.restore();
  }

  request(type, args = {}, transfer = []) {
    if (!this.client) return Promise.reject(new Error('the worker is not running (restart it from the banner)'));
    return this.client.request(type, args, transfer);
  }

  /** MNIST is fetched and parsed by the worker once; later calls reuse the answer. */
  ensureData() {
    if (!this.dataPromise) {
      this.dataPromise = this.request(Request.LOAD_DATA).catch((e) => {
        this.dataPromise = null;
        throw new Error(`could not load MNIST: ${e.message}`);
      });
    }
    return this.dataPromise;
  }

  setBusy(phase) {
    this.busy = phase;
    this.emit('busy', { phase, state: phase ? 'running' : 'idle' });
  }

  /** Training state after pause/resume ('running' | 'paused'). */
  setTrainingState(state) {
    if (this.busy) this.emit('busy', { phase: this.busy, state });
  }

  setHasModel(source) {
    this.hasModel = true;
    this.emit('model', { source });
  }

  async refreshAdapters(value) {
    this.adapters = value || (await this.request(Request.ADAPTERS));
    this.emit('adapters', this.adapters);
    return this.adapters;
  }

  async evaluate() {
    await this.ensureData();
    this.evaluation = await this.request(Request.EVALUATE);
    this.emit('evaluation', this.evaluation);
    return this.evaluation;
  }

  /** Hands the queued progress events to the panels now (next frame otherwise; also before a run's summary). */
  flushProgress() {
    if (this.progressFrame) cancelAnimationFrame(this.progressFrame);
    this.progressFrame = 0;
    if (!this.progressQueue.length) return;
    const batch = this.progressQueue;
    this.progressQueue = [];
    this.emit('progress', batch);
  }

  #onEvent(ev) {
    if (!ev) return;
    switch (ev.type) {
      case Event.PROGRESS:
        // Many events may come in one frame; the panels redraw once per frame with all of them.
        this.progressQueue.push(ev);
        if (!this.progressFrame) this.progressFrame = requestAnimationFrame(() => this.flushProgress());
        break;
      case Event.EPOCH:
        this.emit('epoch', ev);
        break;
      case Event.LLM_START:
        this.emit('llmStart', ev);
        break;
      case Event.SWEEP_ROW:
        this.emit('sweepRow', ev);
        break;
      case Event.FATAL:
        this.emit('fatal', ev);
        break;
      default:
        break;
    }
  }

  // ── storage ──────────────────────────────────────────────────────────────────────────────────────

  /** The IndexedDB store, or null (with a message already shown) when there is none. */
  async getStorage() {
    if (!this.storagePromise) {
      this.storagePromise = openStorage().then(
        (s) => {
          this.storage = s;
          if (s.schemaProblem) this.emit('storage', { kind: 'error', text: `Stored models not loaded: ${s.schemaProblem}.` });
          return s;
        },
        (e) => {
          this.emit('storage', { kind: 'error', text: `Models will not be kept across reloads: ${e.message}.` });
          return null;
        },
      );
    }
    return this.storagePromise;
  }

  /** Saves the worker's new base model (and forgets the stored adapters of the old one); a failure is
   *  reported on the page, never thrown. */
  async saveModel() {
    const storage = await this.getStorage();
    if (!storage) return false;
    try {
      // The f32 weights, and whether they are held in 4 bits: a reload quantises them again.
      const bytes = await this.request(Request.EXPORT_MODEL, { original: true });
      const { quantization: q } = await this.request(Request.STATUS);
      await storage.saveModel(bytes, await heldIn4Bits(this, MLP_BASE, q));
      // A new base model drops the worker's adapters (they were trained for the old one): drop the
      // stored ones too, or a reload would bring them back onto a model they do not fit.
      await storage.clearAdapters();
      this.emit('storage', { kind: 'ok', text: `Base model saved in this browser (${(bytes.byteLength / 1e6).toFixed(1)} MB).` });
      return true;
    } catch (e) {
      this.emit('storage', { kind: 'error', text: `Could not save the base model in this browser: ${e.message}.` });
      return false;
    }
  }

  /** Records whether the stored base is held in 4 bits (after the QLoRA toggle). */
  async saveQuantization(q) {
    const storage = await this.getStorage();
    if (!storage) return;
    try {
      await storage.setModelQuantization(await heldIn4Bits(this, MLP_BASE, q));
    } catch (e) {
      this.emit('storage', { kind: 'error', text: `Could not keep the 4-bit setting in this browser: ${e.message}.` });
    }
  }

  /** Saves adapter `name`; `on4Bits`: what it reached when trained on the 4-bit base (panel 3's QLoRA list). */
  async saveAdapter(name, on4Bits = null) {
    const storage = await this.getStorage();
    if (!storage) return false;
    try {
      const { safetensors, config, baseModel } = await this.request(Request.EXPORT_ADAPTER, { name });
      await storage.saveAdapter(name, { safetensors, config, baseModel: baseModel ?? null, on4Bits });
      this.emit('storage', { kind: 'ok', text: `Adapter "${name}" saved in this browser.` });
      return true;
    } catch (e) {
      this.emit('storage', { kind: 'error', text: `Could not save adapter "${name}" in this browser: ${e.message}.` });
      return false;
    }
  }

  async forgetAdapter(name) {
    const storage = await this.getStorage();
    if (!storage) return;
    try {
      await storage.deleteAdapter(name);
    } catch (e) {
      this.emit('storage', { kind: 'error', text: `Could not remove adapter "${name}" from this browser's storage: ${e.message}.` });
    }
  }

  /**
   * Loads the stored base model and adapters into the worker. Never throws: what went wrong is shown.
   * Resolves to { model: bool, adapters: n, on4Bits: { name: what it reached on the 4-bit base } }.
   */
  async restore() {
    const done = { model: false, adapters: 0, on4Bits: {} };
    const storage = await this.getStorage();
    if (!storage || storage.schemaProblem) return done;
    const problems = [];
    try {
      const rec = await storage.loadModel();
      if (rec) {
        await this.request(Request.IMPORT_MODEL, { bytes: rec.bytes });
        done.model = true;
        if (rec.quant) {
          try {
            await restore4Bits(this, MLP_BASE, rec.quant);
          } catch (e) {
            problems.push(`the 4-bit base (${e.message})`);
          }
        }
        this.setHasModel('restored');
      }
    } catch (e) {
      problems.push(`the base model (${e.message})`);
    }
    let stored = [];
    try {
      stored = await storage.loadAdapters();
    } catch (e) {
      problems.push(`the adapters (${e.message})`);
    }
    if (done.model) {
      for (const rec of stored) {
        try {
          await this.request(Request.IMPORT_ADAPTER, { safetensors: rec.safetensors, config: rec.config, name: rec.name, baseModel: rec.baseModel ?? null });
          done.adapters++;
          if (rec.on4Bits) done.on4Bits[rec.name] = rec.on4Bits;
        } catch (e) {
          problems.push(`adapter "${rec.name}" (${e.message})`);
        }
      }
    }
    if (done.model) {
      try {
        await this.refreshAdapters();
      } catch (e) {
        problems.push(`the adapter list (${e.message})`);
      }
    }
    const parts = [];
    if (done.model) parts.push('the base model');
    if (done.adapters) parts.push(`${done.adapters} adapter${done.adapters === 1 ? '' : 's'}`);
    if (problems.length) {
      this.emit('storage', { kind: 'error', text: `Could not restore ${problems.join('; ')}.` });
    } else if (parts.length) {
      this.emit('storage', { kind: 'ok', text: `Restored ${parts.join(' and ')} saved in this browser.` });
    }
    this.emit('restored', done);
    if (done.model) this.evaluate().catch((e) => this.emit('storage', { kind: 'error', text: `Restored, but could not evaluate: ${e.message}.` }));
    return done;
  }
}
