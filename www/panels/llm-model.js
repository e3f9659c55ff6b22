// Panel 7's model: the built-in SmolLM2-135M-Instruct in one click (a progress bar over its fetch and
// parse), or a person's own GGUF file or Hugging Face folder, picked or dropped; the model card once it
// is loaded. Which files make a model is decided here; whether they can be run is the lab's to say.
import { $, el, int } from '../ui.js';
import { readBytes } from '../download.js';

export const BUILTIN = 'SmolLM2-135M-Instruct';

/** The files of a Hugging Face folder the lab reads, by the name a person's file has. */
const HF_FILES = { 'config.json': 'config', 'model.safetensors': 'safetensors', 'tokenizer.json': 'tokenizer', 'tokenizer_config.json': 'tokenizerConfig', 'chat_template.jinja': 'chatTemplate' };
const HF_TEXT = new Set(['config', 'tokenizer', 'tokenizerConfig', 'chatTemplate']);

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

/**
 * What a person chose or dropped, as llm.load takes it: `{ gguf, file }` for one .gguf file, `{ hf, file }`
 * for a folder's files (config.json, model.safetensors and tokenizer.json at least), or a refusal saying
 * what to choose.
 */
export async function readModelFiles(fileList) {
  const files = [...(fileList || [])];
  if (!files.length) throw new Error('choose a .gguf file, or a Hugging Face folder\'s config.json, model.safetensors and tokenizer.json');
  const gguf = files.filter((f) => /\.gguf$/i.test(f.name));
  if (gguf.length > 1) throw new Error(`choose one GGUF file, not ${gguf.length}`);
  if (gguf.length === 1) {
    if (files.length > 1) throw new Error('choose a GGUF file alone, or a folder\'s files without a GGUF');
    return { gguf: await readBytes(gguf[0]), file: gguf[0].name, size: gguf[0].size };
  }
  const hf = {};
  for (const f of files) {
    const key = HF_FILES[f.name];
    if (!key) continue;
    hf[key] = HF_TEXT.has(key) ? await f.text() : await readBytes(f);
  }
  const missing = ['config.json', 'model.safetensors', 'tokenizer.json'].filter((n) => !(HF_FILES[n] in hf));
  if (missing.length) {
    throw new Error(`${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} missing (got ${files.map((f) => f.name).join(', ')}): `
      + 'choose a .gguf file, or a Hugging Face folder\'s config.json, model.safetensors and tokenizer.json');
  }
  return { hf, file: 'the folder', size: files.reduce((s, f) => s + f.size, 0) };
}

/** The model card's rows for llm.status's info. */
export function renderCard(table, info) {
  const types = Object.entries(info.tensorTypes || {}).map(([t, n]) => `${t} × ${n}`).join(', ');
  const rows = [
    ['model', info.name],
    ['architecture', info.architecture],
    ['parameters', int(info.params)],
    ['layers', String(info.layers)],
    ['hidden size', String(info.hidden)],
    ['attention heads / KV heads', `${info.heads} / ${info.kvHeads}`],
    ['vocabulary', `${int(info.vocab)} tokens`],
    ['context', `${int(info.context)} tokens`],
    ['tensor types', types || '–'],
    ['bytes in memory', mb(info.bytes)],
    ['file SHA-256', info.sha256 ? `${info.sha256.slice(0, 16)}…` : '–'],
    ['chat template', info.chatTemplate ? 'its own' : 'none (prompts are sent as plain text)'],
  ];
  $('tbody', table).replaceChildren(...rows.map(([k, v]) => el('tr', {}, el('th', { scope: 'row' }, k), el('td', {}, v))));
  table.hidden = false;
}

/** The progress bar over a load: `{ phase: 'fetch', loaded, total } | { phase: 'load' }` → text. */
export function loadProgress(bar, p) {
  bar.hidden = false;
  if (p.phase === 'fetch' && p.total) {
    bar.max = p.total;
    bar.value = p.loaded;
    return `Fetching… ${mb(p.loaded)} of ${mb(p.total)}`;
  }
  if (p.phase === 'fetch') {
    bar.removeAttribute('value');
    return `Fetching… ${mb(p.loaded ?? 0)}`;
  }
  bar.removeAttribute('value');
  return 'Reading the model (tensors, tokenizer, chat template)…';
}
