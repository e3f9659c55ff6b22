// Panel 7's files to take away, each with the lines that use it: the PEFT adapter (a zip of
// adapter_config.json and adapter_model.safetensors), llama.cpp's LoRA GGUF (llama-cli --lora, Ollama's
// ADAPTER), the merged model (a Hugging Face folder in F16) and train.py with its data to go on with TRL on
// a GPU. All are made by the lab; the zips by the worker (fflate).
import { Request } from '../protocol.js';
import { download } from '../download.js';
import { folderName, jsonText } from './lm-files.js';

const HUB = 'HuggingFaceTB/SmolLM2-135M-Instruct';

/** The lines that use each file, for adapter `name` of the model called `model`. */
export function usage(name, model = HUB) {
  const dir = folderName(name);
  const base = /SmolLM2-135M-Instruct/.test(model) ? HUB : model;
  return {
    peft: `# unzip ${dir}.zip, then:\nfrom transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n`
      + `model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("${base}"), "${dir}")`,
    gguf: `llama-cli -m SmolLM2-135M-Instruct.Q4_1.gguf --lora ${dir}.gguf -cnv\n`
      + `# Ollama: a Modelfile with\nFROM ./SmolLM2-135M-Instruct.Q4_1.gguf\nADAPTER ./${dir}.gguf`,
    merged: `# unzip ${dir}-merged.zip, then:\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n`
      + `model = AutoModelForCausalLM.from_pretrained("${dir}-merged")\ntokenizer = AutoTokenizer.from_pretrained("${base}")`,
    script: `# unzip ${dir}-trl.zip on a machine with a GPU, then, in ${dir}-trl:\n`
      + 'pip install "trl>=1.16" "peft>=0.21" "transformers>=5" datasets\npython train.py   # goes on from ./adapter',
  };
}

/** Zips `files` ({ name: text | bytes }) into `folder`.zip through the worker, and offers it. */
async function zipAndOffer(app, folder, files, filename = `${folder}.zip`) {
  const zip = await app.request(Request.ZIP, { folder, files });
  download(zip, filename);
  return zip.byteLength;
}

/** Makes file `kind` of adapter `name` and offers it → { file, bytes }. */
export async function takeAway(app, kind, name) {
  const dir = folderName(name);
  if (kind === 'peft') {
    const { config, safetensors } = await app.request(Request.LLM_EXPORT_ADAPTER, { name, format: 'peft' });
    return { file: `${dir}.zip`, bytes: await zipAndOffer(app, dir, { 'adapter_config.json': jsonText(config), 'adapter_model.safetensors': safetensors }) };
  }
  if (kind === 'gguf') {
    const { gguf } = await app.request(Request.LLM_EXPORT_ADAPTER, { name, format: 'gguf' });
    download(gguf, `${dir}.gguf`);
    return { file: `${dir}.gguf`, bytes: gguf.byteLength };
  }
  if (kind === 'merged') {
    const { config, safetensors } = await app.request(Request.LLM_EXPORT_MERGED, { name });
    const folder = `${dir}-merged`;
    return { file: `${folder}.zip`, bytes: await zipAndOffer(app, folder, { 'config.json': jsonText(config), 'model.safetensors': safetensors }) };
  }
  if (kind === 'script') {
    // train.py goes on from ./adapter: the PEFT folder comes with it.
    const { trainPy, datasetJsonl, testJsonl } = await app.request(Request.LLM_EXPORT_TRAINING_SCRIPT, { name });
    const { config, safetensors } = await app.request(Request.LLM_EXPORT_ADAPTER, { name, format: 'peft' });
    const folder = `${dir}-trl`;
    return {
      file: `${folder}.zip`,
      bytes: await zipAndOffer(app, folder, {
        'train.py': trainPy, 'dataset.jsonl': datasetJsonl, 'test.jsonl': testJsonl,
        'adapter/adapter_config.json': jsonText(config), 'adapter/adapter_model.safetensors': safetensors,
      }),
    };
  }
  throw new Error(`unknown file ${JSON.stringify(kind)}`);
}
