// Files in and out: downloads through a Blob and an object URL, uploads through file inputs.

/** Offers `data` (Uint8Array, string or object → JSON) to the user as a file called `filename`. */
export function download(data, filename) {
  let blob;
  if (data instanceof Uint8Array || data instanceof ArrayBuffer) {
    blob = new Blob([data], { type: 'application/octet-stream' });
  } else if (typeof data === 'string') {
    blob = new Blob([data], { type: 'text/plain' });
  } else {
    blob = new Blob([JSON.stringify(data, null, 2) + '\n'], { type: 'application/json' });
  }
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** The bytes of a File. */
export async function readBytes(file) {
  return new Uint8Array(await file.arrayBuffer());
}

/** A File parsed as JSON, with a readable message when it is not JSON. */
export async function readJson(file) {
  const text = await file.text();
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file.name} is not valid JSON (${e.message})`);
  }
}
