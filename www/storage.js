// Trained models kept in this browser (IndexedDB), so a reload picks up where the reader left off.
//
// Database "lora-lab", IndexedDB version DB_VERSION, stores:
//   meta      { key: 'schema', version: SCHEMA }            what the records below look like
//   models    { key: 'base', schema, bytes, quant, savedAt }  bytes: model.safetensors from exportModel
//             ({ original: true }: the f32 weights, also while the base is held in 4 bits); quant: null, or
//             { doubleQuant, bytes } when the base is held in 4 bits (QLoRA), bytes its 4-bit file: a reload
//             quantises the f32 weights again, and loads that file instead where they do not give it back
//             (a base that came as a double-quantised 4-bit file has no f32 weights of its own)
//   adapters  { name, schema, safetensors, config, baseModel, on4Bits, savedAt }   from exportAdapter; on4Bits:
//             what it reached when trained on the 4-bit base (panel 3's QLoRA list), or null
// The language model (panel 6), since IndexedDB version 2:
//   lmModels       { key: 'base', schema, config, safetensors, quant, savedAt }  from lmExportBase
//                  ({ original: true }); quant: null or { doubleQuant, config, safetensors }, as for the MLP's
//                  { key: 'state', schema, active, merged }                  which adapter is on
//   lmAdapters     { name, schema, config, safetensors, stats, savedAt }     from lmExportAdapter; stats: the
//                  run's numbers the panel shows (held-out losses, capitals), or null
//   lmCheckpoints  { slot (auto), schema, info, config, safetensors, savedAt }  from lmExportCheckpoint
// The pretrained LLM (panel 7), since IndexedDB version 3:
//   llmModels      { key: 'model', schema, source: { builtin } | { file, kind: 'gguf' | 'hf' }, name, files, savedAt }
//                  the chosen model; files (the GGUF's bytes, or the folder's files) only when the person
//                  asked to keep a model loaded from disk, else null (a reload asks for the file again)
//                  { key: 'state', schema, active }                          which adapter is on
//   llmAdapters    { name, schema, model, config, safetensors, run, savedAt }  from llmExportAdapter; model: the
//                  SHA-256 of the file of the model it was trained on (the same file built in or picked from
//                  disk is the same model; records of before 2026-12-07 hold the model's name, still matched);
//                  run: what the panel shows of its run (numbers, loss curve, epochs, plan), or null
// A database written by a newer page (higher version, or another schema) is left untouched and reported.

export const DB_NAME = 'lora-lab';
export const DB_VERSION = 3;
export const SCHEMA = 1;

export class StorageError extends Error {}

function promisify(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function describe(err) {
  if (err && err.name === 'QuotaExceededError') {
    return 'the browser refused to store it: storage quota exceeded (free some space, or allow this site more)';
  }
  return err?.message || String(err);
}

/** Opens (and if needed creates) the database; throws StorageError with a readable message. */
export async function openStorage() {
  if (!globalThis.indexedDB) throw new StorageError('this browser has no IndexedDB, so models are not kept across reloads');
  let db;
  try {
    db = await new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = () => {
        const d = req.result;
        if (!d.objectStoreNames.contains('meta')) d.createObjectStore('meta', { keyPath: 'key' });
        if (!d.objectStoreNames.contains('models')) d.createObjectStore('models', { keyPath: 'key' });
        if (!d.objectStoreNames.contains('adapters')) d.createObjectStore('adapters', { keyPath: 'name' });
        // Version 2 adds the language model's stores; version 1's records stay as they are.
        if (!d.objectStoreNames.contains('lmModels')) d.createObjectStore('lmModels', { keyPath: 'key' });
        if (!d.objectStoreNames.contains('lmAdapters')) d.createObjectStore('lmAdapters', { keyPath: 'name' });
        if (!d.objectStoreNames.contains('lmCheckpoints')) d.createObjectStore('lmCheckpoints', { keyPath: 'slot', autoIncrement: true });
        // Version 3 adds the pretrained LLM's.
        if (!d.objectStoreNames.contains('llmModels')) d.createObjectStore('llmModels', { keyPath: 'key' });
        if (!d.objectStoreNames.contains('llmAdapters')) d.createObjectStore('llmAdapters', { keyPath: 'name' });
        req.transaction.objectStore('meta').put({ key: 'schema', version: SCHEMA });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error('another tab holds an older version of the database open'));
    });
  } catch (e) {
    if (e?.name === 'VersionError') {
      throw new StorageError('the stored models were saved by a newer version of LoRA Lab; they were left as they are and not loaded');
    }
    throw new StorageError(`cannot open the browser's storage: ${describe(e)}`);
  }
  const storage = new Storage(db);
  const meta = await storage.readMeta().catch(() => null);
  if (!meta || meta.version !== SCHEMA) {
    storage.schemaProblem = `the stored models use storage schema ${meta ? meta.version : 'unknown'}, which this page (schema ${SCHEMA}) cannot read; they were not loaded ("Forget stored models" clears them)`;
  }
  return storage;
}

export class Storage {
  constructor(db) {
    this.db = db;
    this.schemaProblem = null;
  }

  #tx(store, mode, fn) {
    return new Promise((resolve, reject) => {
      let result;
      let tx;
      try {
        tx = this.db.transaction(store, mode);
        result = fn(tx.objectStore(store));
      } catch (e) {
        reject(new StorageError(describe(e)));
        return;
      }
      tx.oncomplete = () => resolve(result instanceof IDBRequest ? result.result : result);
      tx.onabort = () => reject(new StorageError(describe(tx.error)));
      tx.onerror = () => reject(new StorageError(describe(tx.error)));
    });
  }

  #get(store, key) {
    return this.#tx(store, 'readonly', (s) => s.get(key));
  }

  readMeta() {
    return this.#get('meta', 'schema');
  }

  #check() {
    if (this.schemaProblem) throw new StorageError(this.schemaProblem);
  }

  async saveModel(bytes, quant = null) {
    this.#check();
    await this.#tx('models', 'readwrite', (s) => s.put({ key: 'base', schema: SCHEMA, bytes, quant, savedAt: Date.now() }));
  }

  /** Records whether the stored base is held in 4 bits (quant: null or { doubleQuant, bytes }). */
  async setModelQuantization(quant) {
    await this.#update('models', 'base', { quant });
  }

  /** Changes fields of a stored record, if it is there. */
  async #update(store, key, fields) {
    this.#check();
    await this.#tx(store, 'readwrite', (s) => {
      const req = s.get(key);
      req.onsuccess = () => {
        if (req.result) s.put({ ...req.result, ...fields });
      };
    });
  }

  /** { bytes, savedAt } or null. Records of another schema are skipped with a StorageError. */
  async loadModel() {
    this.#check();
    const rec = await this.#get('models', 'base');
    if (!rec) return null;
    if (rec.schema !== SCHEMA) throw new StorageError(`the stored base model has schema ${rec.schema}; not loaded`);
    return rec;
  }

  async saveAdapter(name, { safetensors, config, baseModel = null, on4Bits = null }) {
    this.#check();
    await this.#tx('adapters', 'readwrite', (s) =>
      s.put({ name, schema: SCHEMA, safetensors, config, baseModel, on4Bits, savedAt: Date.now() }));
  }

  /** Removes every stored adapter: they were trained for a base model that has been replaced. */
  async clearAdapters() {
    this.#check();
    await this.#tx('adapters', 'readwrite', (s) => s.clear());
  }

  async deleteAdapter(name) {
    this.#check();
    await this.#tx('adapters', 'readwrite', (s) => s.delete(name));
  }

  /** All stored adapters in the order they were saved; records of another schema are left out. */
  async loadAdapters() {
    this.#check();
    const all = await this.#tx('adapters', 'readonly', (s) => s.getAll());
    return all.filter((r) => r.schema === SCHEMA).sort((a, b) => a.savedAt - b.savedAt);
  }

  // ── the language model ──────────────────────────────────────────────────────────────────────────

  /** Saves a new language-model base, and drops the stored adapters and checkpoints of the old one. */
  async saveLmBase({ config, safetensors, quant = null }) {
    this.#check();
    await this.#tx('lmModels', 'readwrite', (s) => {
      s.put({ key: 'base', schema: SCHEMA, config, safetensors, quant, savedAt: Date.now() });
      s.delete('state');
    });
    await this.#tx('lmAdapters', 'readwrite', (s) => s.clear());
    await this.#tx('lmCheckpoints', 'readwrite', (s) => s.clear());
  }

  async loadLmBase() {
    this.#check();
    const rec = await this.#get('lmModels', 'base');
    if (!rec) return null;
    if (rec.schema !== SCHEMA) throw new StorageError(`the stored language model has schema ${rec.schema}; not loaded`);
    return rec;
  }

  async setLmQuantization(quant) {
    await this.#update('lmModels', 'base', { quant });
  }

  /** A small record of the lmModels store other than the base (e.g. { key: 'state', active, merged }). */
  async putLmRecord(rec) {
    this.#check();
    await this.#tx('lmModels', 'readwrite', (s) => s.put({ ...rec, schema: SCHEMA }));
  }

  async getLmRecord(key) {
    this.#check();
    const rec = await this.#get('lmModels', key);
    return rec && rec.schema === SCHEMA ? rec : null;
  }

  async saveLmAdapter(name, { config, safetensors, stats = null }) {
    this.#check();
    await this.#tx('lmAdapters', 'readwrite', (s) => s.put({ name, schema: SCHEMA, config, safetensors, stats, savedAt: Date.now() }));
  }

  /** Updates the stats kept with a stored adapter (if it is stored). */
  async setLmAdapterStats(name, stats) {
    await this.#update('lmAdapters', name, { stats });
  }

  async deleteLmAdapter(name) {
    this.#check();
    await this.#tx('lmAdapters', 'readwrite', (s) => s.delete(name));
  }

  /** The stored adapters in the order they were saved; records of another schema are left out. */
  async loadLmAdapters() {
    this.#check();
    const all = await this.#tx('lmAdapters', 'readonly', (s) => s.getAll());
    return all.filter((r) => r.schema === SCHEMA).sort((a, b) => a.savedAt - b.savedAt);
  }

  /** Replaces the stored checkpoints by `list` ([{ info, config, safetensors }]), in one transaction. */
  async saveLmCheckpoints(list) {
    this.#check();
    await this.#tx('lmCheckpoints', 'readwrite', (s) => {
      s.clear();
      for (const c of list) s.add({ schema: SCHEMA, info: c.info, config: c.config, safetensors: c.safetensors, savedAt: Date.now() });
    });
  }

  async loadLmCheckpoints() {
    this.#check();
    const all = await this.#tx('lmCheckpoints', 'readonly', (s) => s.getAll());
    return all.filter((r) => r.schema === SCHEMA).sort((a, b) => a.slot - b.slot);
  }

  // ── the pretrained LLM ──────────────────────────────────────────────────────────────────────────

  /** A record of the llmModels store ({ key: 'model' | 'state', … }). */
  async putLlmRecord(rec) {
    this.#check();
    await this.#tx('llmModels', 'readwrite', (s) => s.put({ ...rec, schema: SCHEMA, savedAt: Date.now() }));
  }

  async getLlmRecord(key) {
    this.#check();
    const rec = await this.#get('llmModels', key);
    return rec && rec.schema === SCHEMA ? rec : null;
  }

  async saveLlmAdapter(name, { model, config, safetensors, run = null }) {
    this.#check();
    // As a Blob: IndexedDB clones a typed array inside put(), 10 MB for SmolLM2's seed adapter, which held
    // the page for ~40 ms on a busy machine; a Blob's bytes are written apart.
    const bytes = safetensors instanceof Blob ? safetensors : new Blob([safetensors]);
    await this.#tx('llmAdapters', 'readwrite', (s) => s.put({ name, schema: SCHEMA, model, config, safetensors: bytes, run, savedAt: Date.now() }));
  }

  async deleteLlmAdapter(name) {
    this.#check();
    await this.#tx('llmAdapters', 'readwrite', (s) => s.delete(name));
  }

  /** The stored adapters of the model known by any of the keys `models` (its file's SHA-256, its name), in
   *  the order they were saved. */
  async loadLlmAdapters(models) {
    this.#check();
    const all = await this.#tx('llmAdapters', 'readonly', (s) => s.getAll());
    const mine = all.filter((r) => r.schema === SCHEMA && models.includes(r.model)).sort((a, b) => a.savedAt - b.savedAt);
    for (const r of mine) {
      if (r.safetensors instanceof Blob) r.safetensors = new Uint8Array(await r.safetensors.arrayBuffer());
    }
    return mine;
  }

  /** Empties every store and writes the current schema again. */
  async clear() {
    for (const store of ['models', 'adapters', 'lmModels', 'lmAdapters', 'lmCheckpoints', 'llmModels', 'llmAdapters', 'meta']) await this.#tx(store, 'readwrite', (s) => s.clear());
    await this.#tx('meta', 'readwrite', (s) => s.put({ key: 'schema', version: SCHEMA }));
    this.schemaProblem = null;
  }
}

/** For tests and the "forget" button: deletes the database outright. */
export function deleteDatabase() {
  return promisify(indexedDB.deleteDatabase(DB_NAME));
}
