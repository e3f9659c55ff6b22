// Panel 2: train the base MLP on digits 0–7, watch it, evaluate it, download or load it.
import { Request } from '../protocol.js';
import { perClassChart, confusionChart, COLORS } from '../charts.js';
import { download, readBytes } from '../download.js';
import { $, say, pct, int, duration } from '../ui.js';
import { numberFields, showRefusal } from '../fields.js';
import { trainingView } from './training.js';

export const BASE_DEFAULTS = Object.freeze({ seed: 13, epochs: 5, batchSize: 64, lr: 1e-3, limit: undefined });

export function basePanel(app) {
  const root = $('#base');
  const form = $('#base-form', root);
  const msg = $('#base-msg', root);
  const trainButton = $('#base-train', root);
  const downloadButton = $('#base-download', root);
  const upload = $('#base-upload', root);
  const evalBox = $('#base-eval', root);
  const view = trainingView(app, $('#base-training', root), 'base', (t) => say(msg, t, 'error'));
  const perClass = perClassChart($('#base-perclass', root));
  const confusion = confusionChart($('#base-confusion', root));

  // Every setting is numeric; empty means the default (limit: all images).
  const fields = numberFields(form, BASE_DEFAULTS);
  const readForm = () => fields.read();
  const setForm = (opts = {}) => fields.write(opts);

  /** Trains with the form's settings overridden by `opts`; what a click on "Train" does. */
  async function train(opts = {}) {
    if (app.busy) {
      const e = new Error(`already busy (${app.busy}); wait, or cancel it first`);
      say(msg, e.message, 'error');
      throw e;
    }
    let args;
    try {
      setForm(opts);
      // The schedule has no field: window.lab's `schedule` ("cosine" or "constant") goes as given.
      args = { ...readForm(), ...(opts.schedule === undefined ? {} : { schedule: opts.schedule }) };
    } catch (e) {
      showRefusal(msg, 'Cannot train: ', e);
      throw e;
    }
    app.setBusy('base');
    view.reset();
    try {
      say(msg, 'Loading MNIST (60,000 training and 10,000 test images)…', 'busy');
      await app.ensureData();
      say(msg, `Training on digits 0–7${args.limit ? ` (first ${int(args.limit)} images)` : ''}…`, 'busy');
      const result = await app.request(Request.TRAIN_BASE, args);
      view.finish(result);
      app.setHasModel('trained');
      say(msg, `${result.cancelled ? 'Cancelled — the model keeps what it learnt so far' : 'Trained'}: `
        + `${int(result.steps)} steps in ${duration(result.seconds)}, ${int(result.samplesPerSec)} samples/s. Evaluating…`, 'busy');
      app.setBusy(null);
      await app.refreshAdapters().catch(() => {});
      await app.evaluate();
      say(msg, `${result.cancelled ? 'Cancelled after' : 'Trained for'} ${int(result.steps)} steps in ${duration(result.seconds)} `
        + `(${int(result.samplesPerSec)} samples/s) and evaluated on the test set.`, 'ok');
      app.saveModel();
      return result;
    } catch (e) {
      view.fail(`Stopped: ${e.message}`);
      say(msg, `Training the base model failed: ${e.message}`, 'error');
      throw e;
    } finally {
      if (app.busy === 'base') app.setBusy(null);
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    train().catch(() => {});
  });

  app.on('busy', ({ phase }) => {
    trainButton.disabled = Boolean(phase);
  });
  app.on('model', () => {
    downloadButton.disabled = false;
  });
  app.on('restart', () => {
    downloadButton.disabled = true;
    evalBox.hidden = true;
  });

  app.on('evaluation', ({ base }) => {
    if (!base) return;
    evalBox.hidden = false;
    $('#base-acc-0-7', root).textContent = pct(base.acc_0_7);
    $('#base-acc-8-9', root).textContent = pct(base.acc_8_9);
    $('#base-acc-all', root).textContent = pct(base.acc_all);
    perClass.set([{ label: 'base model', values: base.perClass, color: COLORS.base }]);
    confusion.set(base.confusion);
  });

  downloadButton.addEventListener('click', async () => {
    try {
      const bytes = await app.request(Request.EXPORT_MODEL);
      download(bytes, 'model.safetensors');
      say(msg, `model.safetensors: ${int(bytes.byteLength)} bytes, keys layers.1/3/5.weight and .bias — `
        + 'load_state_dict of the article\'s PyTorch MLP takes it as is.', 'ok');
    } catch (e) {
      say(msg, `Could not export the model: ${e.message}`, 'error');
    }
  });

  upload.addEventListener('change', async () => {
    const file = upload.files[0];
    if (!file) return;
    try {
      await importModel(await readBytes(file), file.name);
    } catch {
      // shown in the panel
    } finally {
      upload.value = '';
    }
  });

  async function importModel(bytes, label = 'the file') {
    try {
      const { params } = await app.request(Request.IMPORT_MODEL, { bytes });
      app.setHasModel('imported');
      say(msg, `Loaded ${label}: ${int(params)} parameters. Evaluating…`, 'busy');
      await app.refreshAdapters().catch(() => {});
      app.saveModel();
      await app.evaluate().then(
        () => say(msg, `Loaded ${label} (${int(params)} parameters) and evaluated it.`, 'ok'),
        (e) => say(msg, `Loaded ${label} (${int(params)} parameters), but could not evaluate: ${e.message}`, 'error'),
      );
      return { params };
    } catch (e) {
      say(msg, `${label} is not a base model this page can use: ${e.message}. The models already loaded are unchanged.`, 'error');
      throw e;
    }
  }

  return { train, importModel, readForm, setForm };
}
