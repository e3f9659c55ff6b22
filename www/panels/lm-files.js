// Panel 6's folders: the base as a zip of its Hugging Face folder (config.json, model.safetensors), each
// adapter as a zip of its PEFT folder (adapter_config.json, adapter_model.safetensors), made and read by
// the worker (fflate); uploads as a zip or as the folder's files, each checked by the lab, which names the
// file and the fault (and leaves the loaded models as they are).
import { Request } from '../protocol.js';
import { download, readBytes } from '../download.js';

/** The folder name the base downloads as, and PEFT's base_model_name_or_path in adapter configs. */
export const BASE_FOLDER = 'lora-lab-llama';

/** A name as a folder (and zip) name: what the lab allows, without characters zips and shells mind. */
export const folderName = (name) => String(name).replace(/[^\p{L}\p{N}._-]+/gu, '_') || 'adapter';

/** The three lines of Python that load the downloaded folders. */
export function pythonSnippet(adapter = 'seed') {
  return 'from transformers import LlamaForCausalLM\nfrom peft import PeftModel\n'
    + `model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained("${BASE_FOLDER}"), "${folderName(adapter)}")`;
}

/** A folder's JSON file as text: the object an export gives, written out (text passes as it is). */
export const jsonText = (config) => (typeof config === 'string' ? config : `${JSON.stringify(config, null, 2)}\n`);

export async function downloadBase(app) {
  const { config, safetensors } = await app.request(Request.LM_EXPORT_BASE);
  const size = safetensors.byteLength;
  const zip = await app.request(Request.ZIP, { folder: BASE_FOLDER, files: { 'config.json': jsonText(config), 'model.safetensors': safetensors } }, [safetensors.buffer]);
  download(zip, `${BASE_FOLDER}.zip`);
  return { bytes: zip.byteLength, weights: size };
}

export async function downloadAdapter(app, name) {
  const { config, safetensors } = await app.request(Request.LM_EXPORT_ADAPTER, { name });
  const folder = folderName(name);
  const zip = await app.request(Request.ZIP, { folder, files: { 'adapter_config.json': jsonText(config), 'adapter_model.safetensors': safetensors } }, [safetensors.buffer]);
  download(zip, `${folder}.zip`);
  return { bytes: zip.byteLength, folder };
}

/**
 * The files of a folder chosen as a zip or as separate files → { [file name]: Uint8Array | string }
 * (JSON files as text, so the lab's parser reports what is wrong with them). `want` lists the two
 * names; a missing one is an error saying what to choose.
 */
export async function readFolder(app, fileList, want) {
  const files = [...(fileList || [])];
  if (!files.length) throw new Error(`choose ${want.join(' and ')}, or a zip of the folder`);
  const out = {};
  for (const f of files) {
    if (/\.zip$/i.test(f.name)) {
      const bytes = await readBytes(f);
      const inside = await app.request(Request.UNZIP, { bytes, file: f.name }, [bytes.buffer]);
      for (const [name, content] of Object.entries(inside)) out[name] = content;
    } else {
      out[f.name] = await readBytes(f);
    }
  }
  const missing = want.filter((n) => !(n in out));
  if (missing.length) {
    const got = Object.keys(out);
    throw new Error(`${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} missing (got ${got.length ? got.join(', ') : 'no folder files'}): `
      + `choose ${want.join(' and ')}, or a zip of the folder`);
  }
  for (const n of want.filter((x) => x.endsWith('.json'))) out[n] = new TextDecoder().decode(out[n]);
  return out;
}
