// Panel 7's snippet: the article's LoraConfig, prepare_model_for_kbit_training and SFTConfig with their
// values as fields, target_modules per projection and layer (the grid of target-grid.js, sized by the
// loaded model), the `seed` preset, and PEFT's trainable-parameter line as the lab counts it for the
// loaded model (llm.plan) before anything trains.
import { Request } from '../protocol.js';
import { $, writeValue } from '../ui.js';
import { numberFields, showRefusal } from '../fields.js';
import { targetGrid } from './target-grid.js';

/** The article's recipe (src/lab/llm/settings.rs: the values a setting left out takes). */
export const SEED_PRESET = Object.freeze({
  name: 'seed', targetModules: ['q_proj', 'v_proj', 'k_proj'], r: 32, loraAlpha: 32, loraDropout: 0.05, useRslora: false,
  batchSize: 3, gradientAccumulationSteps: 1, epochs: 3, lr: 5e-4, weightDecay: 0.1, warmupSteps: 0.03, schedule: 'cosine',
  maxSeqLength: 256, packing: false, packingStrategy: 'bfd', assistantOnlyLoss: false, seed: 1311, limit: null,
});

/** The numeric fields and what an empty one means (the preset's value; limit: all rows). */
const NUMBERS = {
  r: 32, loraAlpha: 32, loraDropout: 0.05, batchSize: 3, gradientAccumulationSteps: 1, epochs: 3, lr: 5e-4,
  weightDecay: 0.1, warmupSteps: 0.03, maxSeqLength: 256, seed: 1311, limit: undefined,
};
const FLAGS = ['useRslora', 'packing', 'assistantOnlyLoss'];
/** The selects whose value is the setting's (strings as TRL writes them). */
const CHOICES = ['schedule', 'packingStrategy'];

/** A list of strings as Python writes it. */
const pyList = (xs) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

/**
 * The form `#llm-config-form`; `model()` gives the loaded model's card (or null). → { read, write,
 * applyPreset, update }.
 */
export function llmConfigForm(app, root, model, msg) {
  const fields = numberFields(root, NUMBERS);
  const targetsText = $('#llm-targets-text', root);
  const countEl = $('#llm-trainable', root);
  const summary = $('#llm-targets-summary', root);
  const grid = targetGrid($('#llm-targets', root), SEED_PRESET.targetModules, () => update());
  let asked = 0;

  function read() {
    const f = root.elements;
    const out = { name: f.name.value.trim() || 'adapter', targetModules: grid.targetModules(), ...fields.read() };
    for (const k of CHOICES) out[k] = f[k].value;
    for (const k of FLAGS) out[k] = f[k].value === 'true';
    out.exactMatchEachEpoch = f.exactMatchEachEpoch.checked;
    return out;
  }

  function write(opts = {}) {
    fields.write(opts);
    const f = root.elements;
    writeValue(f.name, opts.name);
    for (const k of CHOICES) writeValue(f[k], opts[k]);
    for (const k of FLAGS) if (opts[k] !== undefined) f[k].value = opts[k] ? 'true' : 'false';
    if (opts.exactMatchEachEpoch !== undefined) f.exactMatchEachEpoch.checked = Boolean(opts.exactMatchEachEpoch);
    if (Array.isArray(opts.targetModules)) grid.setTargets(opts.targetModules);
    update();
  }

  /** The snippet's target_modules now, and PEFT's line from the lab a moment later (the last asked wins). */
  async function update() {
    const info = model();
    if (info) grid.build({ layers: info.layers, lmHead: null });
    const targets = grid.targetModules();
    targetsText.textContent = pyList(targets);
    summary.textContent = targets.length ? `${targets.length > 6 ? `${targets.length} entries` : targets.join(', ')}${info ? ` in ${info.layers} layers` : ''}` : 'none';
    if (!info) {
      countEl.textContent = 'Load a model to count its parameters.';
      return;
    }
    if (!targets.length) {
      countEl.textContent = 'Choose at least one module to adapt.';
      return;
    }
    const r = fields.peek('r');
    if (r === undefined) {
      countEl.textContent = `trainable params: – (${fields.label('r')} is not a number)`;
      return;
    }
    const mine = ++asked;
    try {
      const plan = await app.request(Request.LLM_PLAN, { targetModules: targets, r, useRslora: root.elements.useRslora.value === 'true' });
      if (mine !== asked) return;
      countEl.textContent = plan.report;
      countEl.dataset.trainable = String(plan.trainableParams);
    } catch (e) {
      if (mine !== asked) return;
      countEl.textContent = `trainable params: – (${e.message})`;
      countEl.dataset.trainable = '';
    }
  }

  root.addEventListener('input', (e) => {
    if (e.target.name !== 'name') update();
  });
  root.addEventListener('change', (e) => {
    if (!e.target.closest('#llm-targets')) update();
  });

  return {
    read,
    write,
    update,
    /** Whether `key` is one of the form's settings. */
    holds: (key) => key in NUMBERS || FLAGS.includes(key) || CHOICES.includes(key) || ['name', 'targetModules', 'exactMatchEachEpoch'].includes(key),
    /** The article's settings in the form (the adapter name too). */
    applyPreset() {
      try {
        write(SEED_PRESET);
      } catch (e) {
        showRefusal(msg, 'Cannot apply the preset: ', e);
      }
    },
  };
}
