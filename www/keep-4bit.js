// A base held in 4 bits (QLoRA), kept across reloads — one way for the MLP (panel 3, app.js) and the
// language model (panel 6, lm-keep.js). The storage keeps the f32 weights and, beside them, the setting and
// the 4-bit file as held (storage.js: `quant`); a reload quantises the f32 weights again and loads the held
// file instead where that does not give it back (a base that came as a double-quantised 4-bit file has no f32
// weights of its own).
import { Request } from './protocol.js';

/** How each base is quantised, exported as held and imported: the worker requests and their files. */
export const MLP_BASE = {
  quantize: Request.QUANTIZE_BASE,
  /** The base's file as held now: { bytes } (model.safetensors). */
  held: async (app) => ({ bytes: await app.request(Request.EXPORT_MODEL) }),
  bytes: (file) => file.bytes,
  load: (app, file) => app.request(Request.IMPORT_MODEL, { bytes: file.bytes }),
};

export const LM_BASE = {
  quantize: Request.LM_QUANTIZE_BASE,
  /** The base's folder as held now: { config, safetensors }. */
  held: (app) => app.request(Request.LM_EXPORT_BASE),
  bytes: (file) => file.safetensors,
  load: (app, file) => app.request(Request.LM_IMPORT_BASE, { config: file.config, safetensors: file.safetensors }),
};

/** What the storage keeps of the worker's quantisation state `q`: null when the base is in f32, else its
 *  setting and its file as held ({ doubleQuant, ...file }). */
export async function heldIn4Bits(app, base, q) {
  return q?.quantized ? { doubleQuant: q.doubleQuant, ...(await base.held(app)) } : null;
}

/** Brings the stored 4-bit state `quant` back onto the f32 base just imported. Throws the worker's error
 *  (the f32 base stays). */
export async function restore4Bits(app, base, quant) {
  await app.request(base.quantize, { type: 'nf4', doubleQuant: quant.doubleQuant });
  const stored = base.bytes(quant);
  if (stored && !sameBytes(base.bytes(await base.held(app)), stored)) await base.load(app, quant);
}

/** Whether two byte arrays (typed arrays or ArrayBuffers) hold the same bytes. */
function sameBytes(a, b) {
  if (!a || !b || a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a.buffer ?? a, a.byteOffset ?? 0, a.byteLength);
  const y = new Uint8Array(b.buffer ?? b, b.byteOffset ?? 0, b.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
