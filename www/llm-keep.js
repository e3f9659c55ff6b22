// Panel 7's work kept in this browser: which model was chosen (the built-in one by name; one loaded from
// disk by name only, unless the person asks to keep its bytes), how its base is held (as read or in NF4),
// the adapters trained or loaded for it with what their runs showed, and which adapter is on. Records are in storage.js (stores llmModels,
// llmAdapters). Nothing here throws: a failure is reported through `report(kind, text)` and the models in
// the worker keep working.
import { Request } from './protocol.js';

const MODEL_KEY = 'model';
const STATE_KEY = 'state';
const BASE_KEY = 'base';

/** The key the adapters of a loaded model are kept under: its file's SHA-256 (the worker's card, `sha256`),
 *  so the same file built in or picked from disk finds the same adapters; its name where there is none. */
export const modelKey = (info) => info.sha256 ?? info.name;

export function llmKeeper(app, report) {
  const storage = async () => {
    const s = await app.getStorage();
    return s && !s.schemaProblem ? s : null;
  };
  const attempt = async (what, fn) => {
    const s = await storage();
    if (!s) return null;
    try {
      return await fn(s);
    } catch (e) {
      report('error', `Could not keep ${what} in this browser: ${e.message}.`);
      return null;
    }
  };

  return {
    /**
     * The model just loaded: `source` { builtin } or { file, kind }, `files` its bytes to keep (null: a
     * reload asks for them again).
     */
    saveModel: (name, source, files = null) =>
      attempt('the model', (s) => s.putLlmRecord({ key: MODEL_KEY, name, source, files })),

    /** { name, source, files } or null. */
    loadModel: () => attempt('the model', (s) => s.getLlmRecord(MODEL_KEY)),

    /** Saves an adapter of the loaded model (`model`: its key, modelKey(info)) as its PEFT folder, with its run. */
    saveAdapter: (model, name, run = null) =>
      attempt(`adapter "${name}"`, async (s) => {
        const { config, safetensors } = await app.request(Request.LLM_EXPORT_ADAPTER, { name, format: 'peft' });
        await s.saveLlmAdapter(name, { model, config, safetensors, run });
        return true;
      }),

    deleteAdapter: (name) => attempt(`the deletion of "${name}"`, (s) => s.deleteLlmAdapter(name)),

    /** How the base is held ('held' as read, 'nf4', 'nf4-single'): panel 7's quantization_config. */
    saveBase: (choice) => attempt('the base\'s setting', (s) => s.putLlmRecord({ key: BASE_KEY, choice })),

    /** The kept base setting, or null. */
    loadBase: async () => (await attempt('the base\'s setting', (s) => s.getLlmRecord(BASE_KEY)))?.choice ?? null,

    saveActive: (active) => attempt('which adapter is on', (s) => s.putLlmRecord({ key: STATE_KEY, active: active ?? null })),

    /**
     * Loads the stored adapters of the model `info` (the worker's card) into the worker and turns the kept
     * one on → [{ name, run }] (those that load); one that is refused is reported and left out.
     */
    restoreAdapters: async (info) =>
      (await attempt('the adapters', async (s) => {
        const out = [];
        for (const rec of await s.loadLlmAdapters([modelKey(info), info.name])) {
          try {
            const config = typeof rec.config === 'string' ? rec.config : JSON.stringify(rec.config);
            await app.request(Request.LLM_IMPORT_ADAPTER, { name: rec.name, config, safetensors: rec.safetensors });
            out.push({ name: rec.name, run: rec.run });
          } catch (e) {
            report('error', `The stored adapter "${rec.name}" was not loaded: ${e.message}.`);
          }
        }
        const state = await s.getLlmRecord(STATE_KEY);
        if (state?.active && out.some((a) => a.name === state.active)) await app.request(Request.LLM_SET_ADAPTER, { name: state.active });
        return out;
      })) ?? [],
  };
}
