// The language model kept in this browser (panel 6), as the MLP's models are (app.js): the base, its
// adapters with the run's numbers, the kept checkpoints and which adapter is on. Records are in
// storage.js (stores lmModels, lmAdapters, lmCheckpoints). Nothing here throws: a failure is reported
// through `report(kind, text)` and the models in the worker keep working.
import { Request } from './protocol.js';
import { LM_BASE, heldIn4Bits, restore4Bits } from './keep-4bit.js';

/** The lmModels record that says which adapter is on, and whether it is merged. */
const STATE_KEY = 'state';

export function lmKeeper(app, report) {
  const storage = async () => {
    const s = await app.getStorage();
    return s && !s.schemaProblem ? s : null;
  };
  const fail = (what, e) => {
    report('error', `Could not keep ${what} in this browser: ${e.message}.`);
    return false;
  };

  /** The last saveCheckpoints (they run in turn). */
  let checkpointsSaved = Promise.resolve(true);

  return {
    /** Saves the worker's base (and forgets the stored adapters and checkpoints of the old one). */
    async saveBase() {
      const s = await storage();
      if (!s) return false;
      try {
        // The f32 weights, and whether they are held in 4 bits: a reload quantises them again.
        const { config, safetensors } = await app.request(Request.LM_EXPORT_BASE, { original: true });
        const { quantization: q } = await app.request(Request.LM_STATUS);
        await s.saveLmBase({ config, safetensors, quant: await heldIn4Bits(app, LM_BASE, q) });
        report('ok', `Language model saved in this browser (${(safetensors.byteLength / 1e6).toFixed(1)} MB).`);
        return true;
      } catch (e) {
        return fail('the language model', e);
      }
    },

    /** Records whether the stored base is held in 4 bits (after the QLoRA toggle). */
    async saveQuantization(q) {
      const s = await storage();
      if (!s) return;
      try {
        await s.setLmQuantization(await heldIn4Bits(app, LM_BASE, q));
      } catch (e) {
        fail('the 4-bit setting', e);
      }
    },

    async saveAdapter(name, stats = null) {
      const s = await storage();
      if (!s) return false;
      try {
        const { config, safetensors } = await app.request(Request.LM_EXPORT_ADAPTER, { name });
        await s.saveLmAdapter(name, { config, safetensors, stats });
        report('ok', `Adapter "${name}" saved in this browser.`);
        return true;
      } catch (e) {
        return fail(`adapter "${name}"`, e);
      }
    },

    async forgetAdapter(name) {
      const s = await storage();
      if (!s) return;
      try {
        await s.deleteLmAdapter(name);
      } catch (e) {
        fail(`the removal of adapter "${name}"`, e);
      }
    },

    /**
     * Replaces the stored checkpoints by the worker's kept ones (also during a run, as each is made); calls
     * run one after the other, so the last one's list is what stays.
     */
    saveCheckpoints() {
      checkpointsSaved = checkpointsSaved.then(async () => {
        const s = await storage();
        if (!s) return false;
        try {
          const list = await app.request(Request.LM_CHECKPOINTS);
          const files = [];
          for (const c of list) files.push(await app.request(Request.LM_EXPORT_CHECKPOINT, { id: c.id }));
          await s.saveLmCheckpoints(files);
          return true;
        } catch (e) {
          return fail('the checkpoints', e);
        }
      });
      return checkpointsSaved;
    },

    /** Remembers which adapter is on ({ active, merged }) for the next visit. */
    async saveState(adapters) {
      const s = await storage();
      if (!s) return;
      const merged = adapters.list.some((a) => a.merged);
      try {
        await s.putLmRecord({ key: STATE_KEY, active: adapters.active ?? null, merged });
      } catch (e) {
        fail('which adapter is on', e);
      }
    },

    /**
     * Loads the stored base, adapters and checkpoints into the worker, and turns on the adapter that was
     * on. Resolves to { base, adapters, checkpoints, stats: { name: stats } } (what was restored).
     */
    async restore() {
      const done = { base: false, adapters: 0, checkpoints: 0, stats: {}, config: null };
      const s = await storage();
      if (!s) return done;
      const problems = [];
      try {
        const rec = await s.loadLmBase();
        if (rec) {
          await app.request(Request.LM_IMPORT_BASE, { config: rec.config, safetensors: rec.safetensors });
          done.base = true;
          if (rec.quant) {
            try {
              await restore4Bits(app, LM_BASE, rec.quant);
            } catch (e) {
              problems.push(`the 4-bit base (${e.message})`);
            }
          }
          done.config = rec.config;
        }
      } catch (e) {
        problems.push(`the language model (${e.message})`);
      }
      if (done.base) {
        try {
          for (const rec of await s.loadLmAdapters()) {
            try {
              await app.request(Request.LM_IMPORT_ADAPTER, { config: rec.config, safetensors: rec.safetensors, name: rec.name });
              done.adapters++;
              if (rec.stats) done.stats[rec.name] = rec.stats;
            } catch (e) {
              problems.push(`adapter "${rec.name}" (${e.message})`);
            }
          }
          for (const rec of await s.loadLmCheckpoints()) {
            try {
              await app.request(Request.LM_IMPORT_CHECKPOINT, { info: rec.info, config: rec.config, safetensors: rec.safetensors });
              done.checkpoints++;
            } catch (e) {
              problems.push(`checkpoint of epoch ${rec.info?.epoch} (${e.message})`);
            }
          }
          const state = await s.getLmRecord(STATE_KEY);
          if (done.adapters) {
            await app.request(Request.LM_SET_ADAPTER, { name: state?.active ?? null });
            if (state?.active && state.merged) await app.request(Request.LM_MERGE, { name: state.active });
          }
        } catch (e) {
          problems.push(`the adapters (${e.message})`);
        }
      }
      const parts = [];
      if (done.base) parts.push('the language model');
      if (done.adapters) parts.push(`${done.adapters} adapter${done.adapters === 1 ? '' : 's'}`);
      if (done.checkpoints) parts.push(`${done.checkpoints} checkpoint${done.checkpoints === 1 ? '' : 's'}`);
      if (problems.length) report('error', `Could not restore ${problems.join('; ')}.`);
      else if (parts.length) report('ok', `Restored ${parts.join(', ')} saved in this browser.`);
      return done;
    },
  };
}
