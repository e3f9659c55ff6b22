// Panel 7's `quantization_config`: how the frozen base is held while adapters train and run on it — the
// GGUF's own 4-bit blocks as read, or NF4 as bitsandbytes holds it (QLORA.md), quantised from them. The
// select of the snippet asks the worker at once and says what it did; what was chosen is kept
// (../llm-keep.js) and applied again to each model loaded.
import { Request } from '../protocol.js';

/** The select's values and the worker's requests for them. */
const CHOICES = {
  held: null,
  nf4: { type: 'nf4', doubleQuant: true },
  'nf4-single': { type: 'nf4', doubleQuant: false },
};

/** The choice that `quantizeBase({ doubleQuant })` / `dequantizeBase()` make. */
export const choiceOf = (q) => (!q?.quantized ? 'held' : q.doubleQuant ? 'nf4' : 'nf4-single');

/** The worker's request for a select value (null: the weights as read), or a refusal. */
export function argsOf(choice) {
  if (!(choice in CHOICES)) throw new Error(`unknown base ${JSON.stringify(choice)}: 'held', 'nf4' or 'nf4-single'`);
  return CHOICES[choice];
}

/**
 * @param {HTMLSelectElement} select  the snippet's quantization_config
 * @param {HTMLElement} note          its comment
 * → { choice, choose, show, apply }
 */
export function baseSelect(select, note) {
  return {
    /** What the select says now ('held', 'nf4', 'nf4-single'). */
    choice: () => select.value,
    /** Sets the select (a kept choice, before any model is loaded). */
    choose: (choice) => {
      if (choice in CHOICES) select.value = choice;
      note.textContent = state(null, null);
    },
    /** Shows the worker's quantization `q` of the model `info` (null: none loaded). */
    show: (q, info) => {
      if (info) select.value = choiceOf(q);
      note.textContent = state(q, info);
    },
    /** Holds the loaded model's base as `args` say (argsOf; null: as read) → the worker's quantization. */
    apply: (app, args) => (args ? app.request(Request.LLM_QUANTIZE_BASE, args) : app.request(Request.LLM_DEQUANTIZE_BASE)),
  };

  function state(q, info) {
    if (!info) return select.value === 'held' ? '# the file\'s own blocks, as read' : '# applied to the model when it loads';
    if (q?.quantized) return `# ${q.linears} projections in NF4, quantised from the file's weights (kept to go back)`;
    const read = Object.keys(info.tensorTypes ?? {}).filter((t) => t !== 'F32').join(' and ') || 'f32';
    return `# here: the file's own ${read} blocks as read, no second quantisation`;
  }
}
