// Panel 7's `quantization_config`: how the frozen base is held while adapters train and run on it — the
// file's own 4-bit blocks as read (None), or NF4 as bitsandbytes holds it (`bnb_config`, QLORA.md),
// quantised from them, with or without double quantisation. The snippet's two selects ask the worker at
// once and say what it did; what was chosen is kept (../llm-keep.js) and applied to each model loaded.

/** The choices, as kept: the worker's request for each (null: the weights as read). */
const CHOICES = {
  held: null,
  nf4: { type: 'nf4', doubleQuant: true },
  'nf4-single': { type: 'nf4', doubleQuant: false },
};

/** The choice that `quantizeBase({ doubleQuant })` / `dequantizeBase()` make. */
export const choiceOf = (q) => (!q?.quantized ? 'held' : q.doubleQuant ? 'nf4' : 'nf4-single');

/** The worker's request for a choice (null: the weights as read), or a refusal. */
export function argsOf(choice) {
  if (!(choice in CHOICES)) throw new Error(`unknown base ${JSON.stringify(choice)}: 'held', 'nf4' or 'nf4-single'`);
  return CHOICES[choice];
}

/**
 * @param {HTMLSelectElement} config  the snippet's quantization_config: 'none' or 'bnb'
 * @param {HTMLSelectElement} double  bnb_config's bnb_4bit_use_double_quant: 'true' or 'false'
 * @param {HTMLElement} note          the line's comment
 * → { choice, choose, show }
 */
export function baseSelect(config, double, note) {
  const set = (choice) => {
    config.value = choice === 'held' ? 'none' : 'bnb';
    if (choice !== 'held') double.value = choice === 'nf4' ? 'true' : 'false';
  };
  return {
    /** What the selects say now ('held', 'nf4', 'nf4-single'). */
    choice: () => (config.value === 'none' ? 'held' : double.value === 'true' ? 'nf4' : 'nf4-single'),
    /** Sets the selects (a kept choice, before any model is loaded). */
    choose: (choice) => {
      if (choice in CHOICES) set(choice);
      note.textContent = config.value === 'none' ? '# the file\'s blocks, as read' : '# applied to the model when it loads';
    },
    /** Shows the worker's quantization `q` of the model `info`. */
    show: (q, info) => {
      if (info) set(choiceOf(q));
      if (q?.quantized) {
        note.textContent = `# ${q.linears} projections in NF4, from the file's weights`;
      } else {
        const read = Object.keys(info?.tensorTypes ?? {}).filter((t) => t !== 'F32').join(' and ') || 'f32';
        note.textContent = `# as read (${read})`;
      }
    },
  };
}
