// Panel 6's LoraConfig: the article's snippet with live fields, target_modules as checkboxes per
// projection and per layer, the presets of LANGUAGE_MODEL.md, and PEFT's trainable-parameter line,
// counted here from the base's config.json the way the lab counts it (r·(in + out) per adapted Linear;
// the model's Linears have no bias, so `bias` adds nothing; "all params" includes the adapter).
import { $, int, writeValue } from '../ui.js';
import { numberFields } from '../fields.js';
import { LAYER_MODULES, names, targetGrid } from './target-grid.js';

/** The lab's model (LANGUAGE_MODEL.md), until a base with another config.json is loaded. */
export const TINY_CONFIG = Object.freeze({
  vocab_size: 264, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4, num_attention_heads: 4,
});

/** The base preset's training settings (what the base form starts with). */
export const BASE_DEFAULTS = Object.freeze({
  epochs: 1, batchSize: 32, lr: 3e-3, weightDecay: 0.1, warmupRatio: 0.03, seed: 1311, limit: undefined,
});

const SHARED = { loraAlpha: 32, r: 32, loraDropout: 0.05, bias: 'none', batchSize: 3, epochs: 5, weightDecay: 0.1, warmupRatio: 0.03, schedule: 'cosine', seed: 1311, loadBest: false };
/** The design note's presets: `seed` is the article's LoraConfig and TrainingArguments. */
export const PRESETS = Object.freeze({
  seed: Object.freeze({ ...SHARED, name: 'seed', targetModules: ['q_proj', 'v_proj', 'k_proj'], lr: 5e-4 }),
  'new-tokens': Object.freeze({ ...SHARED, name: 'new-tokens', targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'lm_head'], lr: 2e-3 }),
});

/** The numeric fields of the adapter form and what an empty one means (the seed preset's value). */
const ADAPTER_NUMBERS = { r: 32, loraAlpha: 32, loraDropout: 0.05, batchSize: 3, epochs: 5, lr: 5e-4, weightDecay: 0.1, warmupRatio: 0.03, seed: 1311 };

/** Every Linear of a base with config `cfg` as [full name, in, out], in the lab's order (lm_head last). */
export function linearModules(cfg = TINY_CONFIG) {
  const h = cfg.hidden_size;
  const i = cfg.intermediate_size;
  const out = [];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    for (const [short, path] of LAYER_MODULES) {
      const shape = short === 'gate_proj' || short === 'up_proj' ? [h, i] : short === 'down_proj' ? [i, h] : [h, h];
      out.push([`model.layers.${l}.${path}`, ...shape]);
    }
  }
  out.push(['lm_head', h, cfg.vocab_size]);
  return out;
}

/** The base's parameters (embeddings, layers, final norm, lm_head), as the lab counts them. */
export function baseParams(cfg = TINY_CONFIG) {
  const { hidden_size: h, intermediate_size: i, vocab_size: v, num_hidden_layers: layers } = cfg;
  return layers * (4 * h * h + 3 * h * i + 2 * h) + 2 * v * h + h;
}

/** Trainable parameters of LoRA rank `r` on the modules `targets` names (PEFT's list rule). */
export function countTrainable(targets, r, cfg = TINY_CONFIG) {
  let n = 0;
  for (const [name, fanIn, fanOut] of linearModules(cfg)) if (targets.some((t) => names(t, name))) n += r * (fanIn + fanOut);
  return n;
}

/** PEFT's print_trainable_parameters line. */
export function peftLine(trainable, all) {
  return `trainable params: ${int(trainable)} || all params: ${int(all)} || trainable%: ${((100 * trainable) / all).toFixed(4)}`;
}

/** A list of strings as Python writes it. */
export const pyList = (xs) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

/**
 * The adapter form (`#lm-adapter-form`): the snippet's fields, the target grid, name. `baseConfig()`
 * gives the current base's config.json (for the grid's layers and the count).
 */
export function loraConfigForm(root, baseConfig, onChange = () => {}) {
  const fields = numberFields(root, ADAPTER_NUMBERS);
  const targetsText = $('#lm-targets-text', root);
  const countEl = $('#lm-trainable', root.closest('section') || document);
  const grid = targetGrid($('#lm-targets', root), PRESETS.seed.targetModules, () => update());
  const targetModules = () => grid.targetModules();

  /** The settings as the lab takes them; throws a FieldError (fields marked) for a bad number. */
  function read() {
    const f = root.elements;
    return {
      name: f.name.value.trim() || 'adapter',
      targetModules: targetModules(),
      bias: f.bias.value,
      schedule: f.schedule.value,
      loadBest: f.loadBest.value === 'true',
      ...fields.read(),
    };
  }

  /** Writes settings (a preset's, or window.lab.lm's); a bad number refuses them all (FieldError). */
  function write(opts = {}) {
    fields.write(opts);
    const f = root.elements;
    for (const key of ['name', 'bias', 'schedule']) writeValue(f[key], opts[key]);
    if (opts.loadBest !== undefined) f.loadBest.value = opts.loadBest ? 'true' : 'false';
    if (Array.isArray(opts.targetModules)) grid.setTargets(opts.targetModules);
    update();
  }

  /** The snippet's target_modules and PEFT's line for the current settings, before any training. */
  function update() {
    const cfg = baseConfig();
    grid.build({ layers: cfg.num_hidden_layers, lmHead: `lm_head (${cfg.hidden_size} → ${cfg.vocab_size}, the output layer)` });
    const targets = targetModules();
    targetsText.textContent = pyList(targets);
    const r = fields.peek('r');
    let line;
    if (!targets.length) line = 'Choose at least one module to adapt.';
    else if (r === undefined) line = `trainable params: – (${fields.label('r')} is not a number)`;
    else {
      const t = countTrainable(targets, r, cfg);
      line = peftLine(t, baseParams(cfg) + t);
    }
    countEl.textContent = line;
    countEl.dataset.trainable = r === undefined ? '' : String(countTrainable(targets, r, cfg));
    onChange();
  }

  root.addEventListener('input', update);
  root.addEventListener('change', update);
  update();

  return {
    fields,
    read,
    write,
    update,
    targetModules,
    applyPreset(name) {
      write(PRESETS[name]);
    },
  };
}
