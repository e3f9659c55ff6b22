// Every message between the page and the worker, in one place.
//
// Page → worker:   { id, type: Request.*, args }
// Worker → page:   { id, type: 'result', value } | { id, type: 'error', message }   (answers, by id)
//                  { type: Event.*, ... }                                            (unsolicited)
//
// Requests (args → value):
//   init      { build: 'threads'|'simd', threads }  → { build, threads, relaxedSimd, poolThreads }
//
// Events:
//   fatal     { message }   the worker cannot go on (panic, out of memory); the page offers a restart.

export const Request = Object.freeze({
  INIT: 'init',
});

export const Event = Object.freeze({
  FATAL: 'fatal',
});

/** The page's side: turns requests into promises and hands events to `onEvent`. */
export class WorkerClient {
  constructor(worker, onEvent = () => {}) {
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.onEvent = onEvent;
    worker.addEventListener('message', (e) => this.#receive(e.data));
    worker.addEventListener('error', (e) => this.#fail(e.message || 'the worker failed to start'));
    worker.addEventListener('messageerror', () => this.#fail('a message from the worker could not be read'));
  }

  request(type, args = {}, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, type, args }, transfer);
    });
  }

  #receive(msg) {
    if (msg && msg.id !== undefined && this.pending.has(msg.id)) {
      const { resolve, reject } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === 'error') reject(new Error(msg.message));
      else resolve(msg.value);
      return;
    }
    if (msg && msg.type === Event.FATAL) this.#rejectAll(msg.message);
    this.onEvent(msg);
  }

  #fail(message) {
    this.#rejectAll(message);
    this.onEvent({ type: Event.FATAL, message });
  }

  #rejectAll(message) {
    for (const { reject } of this.pending.values()) reject(new Error(message));
    this.pending.clear();
  }

  terminate() {
    this.#rejectAll('the worker was stopped');
    this.worker.terminate();
  }
}

/** The worker's side: answers each request with its handler's result or error. */
export function serveRequests(handlers) {
  self.addEventListener('message', async (e) => {
    const { id, type, args } = e.data || {};
    const handler = handlers[type];
    if (!handler) {
      self.postMessage({ id, type: 'error', message: `unknown request "${type}"` });
      return;
    }
    try {
      const { value, transfer = [] } = await handler(args || {});
      self.postMessage({ id, type: 'result', value }, transfer);
    } catch (err) {
      self.postMessage({ id, type: 'error', message: errorMessage(err) });
    }
  });
}

export function errorMessage(err) {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  return String(err);
}
