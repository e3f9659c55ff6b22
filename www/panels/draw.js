// Panel 4: draw a digit; both models classify the MNIST-style input while you draw (once per frame at
// most, and never more than one request in flight).
import { Request } from '../protocol.js';
import { probabilityChart } from '../charts.js';
import { DrawPad } from '../draw.js';
import { preprocess, SIZE } from '../preprocess.js';
import { $, say, pct } from '../ui.js';

const argmax = (p) => p.reduce((best, v, i) => (v > p[best] ? i : best), 0);

export function drawPanel(app) {
  const root = $('#draw-panel');
  const msg = $('#draw-msg', root);
  const prediction = $('#draw-prediction', root);
  const preview = $('#draw-input', root);
  const previewCtx = preview.getContext('2d');
  const chart = probabilityChart($('#draw-probs', root));
  const pad = new DrawPad($('#draw', root), schedule);
  let frame = 0;
  let dirty = false;
  let inFlight = false;

  $('#draw-clear', root).addEventListener('click', () => pad.clear());

  /** The 28×28 input of what is on the canvas now (Uint8ClampedArray of 784, or null if blank). */
  function currentInput() {
    const { ink, width, height } = pad.ink();
    return preprocess(ink, width, height);
  }

  function showInput(pixels) {
    const img = previewCtx.createImageData(SIZE, SIZE);
    for (let i = 0; i < SIZE * SIZE; i++) {
      const v = pixels ? 255 - pixels[i] : 255; // ink dark on white, as drawn
      img.data[i * 4] = v;
      img.data[i * 4 + 1] = v;
      img.data[i * 4 + 2] = v;
      img.data[i * 4 + 3] = 255;
    }
    previewCtx.putImageData(img, 0, 0);
  }

  function show({ base, adapted }) {
    chart.set(base, adapted);
    const b = argmax(base);
    let text = `Base model: ${b} (${pct(base[b], 1)})`;
    if (adapted) {
      const a = argmax(adapted);
      text += ` · with adapter "${app.adapters.active}": ${a} (${pct(adapted[a], 1)})`;
    } else {
      text += ' · no adapter is on (train one in panel 3)';
    }
    prediction.textContent = text;
    root.dataset.classified = String(Number(root.dataset.classified || 0) + 1);
  }

  function schedule() {
    dirty = true;
    if (!frame) frame = requestAnimationFrame(tick);
  }

  function tick() {
    frame = 0;
    if (inFlight || !dirty) return; // the answer in flight reschedules when it lands
    dirty = false;
    const pixels = currentInput();
    showInput(pixels);
    if (!pixels) {
      chart.set([], []);
      prediction.textContent = 'Draw a digit.';
      say(msg, '');
      return;
    }
    if (!app.hasModel) {
      say(msg, 'Train or load a base model (panel 2) and the models will classify your drawing.', 'info');
      return;
    }
    inFlight = true;
    app.request(Request.CLASSIFY, { pixels: Array.from(pixels) })
      .then((res) => {
        say(msg, '');
        show(res);
      })
      .catch((e) => say(msg, `Could not classify: ${e.message}`, 'error'))
      .finally(() => {
        inFlight = false;
        if (dirty) schedule();
      });
  }

  // A new model or another active adapter changes the answer for the same drawing.
  app.on('model', schedule);
  app.on('adapters', schedule);
  showInput(null);

  /** For window.lab: classifies what is on the canvas now → { base, adapted, input: [784] }. */
  async function classifyCanvas() {
    const pixels = currentInput();
    if (!pixels) throw new Error('nothing is drawn on the canvas');
    showInput(pixels);
    const res = await app.request(Request.CLASSIFY, { pixels: Array.from(pixels) });
    show(res);
    return { base: res.base, adapted: res.adapted, input: Array.from(pixels) };
  }

  return { classifyCanvas, pad, currentInput };
}
