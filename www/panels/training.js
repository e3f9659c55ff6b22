// One training run's view: pause/resume/cancel, progress bar with the run's rate and ETA, live loss chart,
// a row per epoch. Shared by the MLP's base-model and adapter panels (samples/s, accuracy per epoch) and,
// through lm-training.js, panel 6's runs (tokens/s, held-out loss); each listens to its own phase.
import { Request } from '../protocol.js';
import { lossChart } from '../charts.js';
import { $, el, int, pct, duration } from '../ui.js';

/** The MLP's way of showing a run; `lmTrainingView` passes the language model's. */
const MLP = {
  rate: (p) => (p.samplesPerSec ? `${int(p.samplesPerSec)} samples/s` : ''),
  loss: (v) => Number(v).toFixed(4),
  epochCells: (ev) => {
    const a = ev.accuracy || {};
    return [el('td', {}, `${ev.epoch}/${ev.epochs}`), el('td', {}, pct(a.acc_0_7)), el('td', {}, pct(a.acc_8_9)), el('td', {}, pct(a.acc_all))];
  },
  // A sweep's runs are reported in the sweep panel.
  ignoreSweeps: true,
  // Progress arriving while paused keeps the "Paused — " mark, and the root carries data-state.
  markPaused: false,
};

/**
 * Builds the controls every run shares into `root` (index.html's `.training` div, which says what its
 * progress bar and chart show in `data-progress-label` and `data-chart-label`): pause / resume / cancel, the
 * progress bar and its line at the top, the loss chart before the epochs table.
 */
function buildControls(root) {
  const button = (action, label) => {
    const b = el('button', { type: 'button', disabled: true }, label);
    b.dataset.action = action;
    return b;
  };
  const bar = el('progress', { max: 1, value: 0 });
  bar.setAttribute('aria-label', root.dataset.progressLabel);
  const text = el('p', { className: 'progress-text' });
  text.setAttribute('aria-live', 'off');
  root.prepend(el('div', { className: 'row controls' }, button('pause', 'Pause'), button('resume', 'Resume'), button('cancel', 'Cancel')), bar, text);
  const canvas = el('canvas', { className: 'loss-chart' });
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', root.dataset.chartLabel);
  root.insertBefore(el('div', { className: 'chart' }, canvas), $('table.epochs', root));
}

export function trainingView(app, root, phase, onError, show = MLP) {
  buildControls(root);
  const bar = $('progress', root);
  const text = $('.progress-text', root);
  const tbody = $('table.epochs tbody', root);
  const chart = lossChart($('canvas.loss-chart', root));
  const buttons = Object.fromEntries([...root.querySelectorAll('button[data-action]')].map((b) => [b.dataset.action, b]));

  const setButtons = (state) => {
    buttons.pause.disabled = state !== 'running';
    buttons.resume.disabled = state !== 'paused';
    buttons.cancel.disabled = state === 'idle';
  };
  setButtons('idle');

  for (const [action, type] of [['pause', Request.PAUSE], ['resume', Request.RESUME], ['cancel', Request.CANCEL]]) {
    buttons[action].addEventListener('click', () => control(type));
  }

  async function control(type) {
    try {
      const { state } = await app.request(type);
      if (state === 'paused' || state === 'running') app.setTrainingState(state);
    } catch (e) {
      onError?.(`Could not ${type}: ${e.message}`);
    }
  }

  let lastStep = 0;
  /** What the view shows of the run since reset(): the loss points and the epoch events, kept with an
   *  adapter so a reload can show its run again (panel 7). */
  let record = { points: [], epochs: [] };
  app.on('busy', ({ phase: p, state }) => {
    setButtons(p === phase ? state : 'idle');
    if (show.markPaused) root.dataset.state = p === phase ? state : 'idle';
    if (p === phase && state === 'paused') text.textContent = `Paused — ${text.textContent.replace(/^Paused — /, '')}`;
    if (p === phase && state === 'running') text.textContent = text.textContent.replace(/^Paused — /, '');
  });

  app.on('progress', (batch) => {
    if (show.ignoreSweeps && app.busy === 'sweep') return;
    const mine = batch.filter((p) => p.phase === phase);
    if (!mine.length) return;
    const last = mine[mine.length - 1];
    lastStep = last.step;
    chart.setSteps(last.steps);
    chart.add(mine);
    for (const p of mine) record.points.push({ step: p.step, loss: p.loss, smoothLoss: p.smoothLoss, ...(p.losses ? { losses: p.losses } : {}) });
    bar.max = last.steps || 1;
    bar.value = last.step;
    const paused = show.markPaused && app.busy === phase && root.dataset.state === 'paused' ? 'Paused — ' : '';
    text.textContent = `${paused}epoch ${last.epoch}/${last.epochs} · step ${int(last.step)}/${int(last.steps)} · `
      + `${show.rate(last)} · ETA ${duration(last.etaSeconds)} · `
      + `loss ${show.loss(last.loss)} (smoothed ${show.loss(last.smoothLoss)})`;
    root.dataset.points = String(chart.points);
  });

  app.on('epoch', (ev) => {
    if ((show.ignoreSweeps && app.busy === 'sweep') || ev.phase !== phase) return;
    tbody.append(el('tr', {}, ...show.epochCells(ev)));
    record.epochs.push(ev);
  });

  return {
    reset() {
      chart.reset();
      tbody.replaceChildren();
      bar.value = 0;
      bar.max = 1;
      text.textContent = 'Starting…';
      root.dataset.points = '0';
      lastStep = 0;
      record = { points: [], epochs: [] };
    },
    finish(result) {
      app.flushProgress(); // the last progress events come before the summary: show them first
      chart.flush();
      if (!result.cancelled) bar.value = bar.max;
      text.textContent = `${result.cancelled ? 'Cancelled' : 'Done'} after ${int(result.steps ?? lastStep)} steps`
        + ` in ${duration(result.seconds)}${show.rate(result) ? ` · ${show.rate(result)}` : ''}.`;
    },
    fail(message) {
      text.textContent = message;
    },
    /** The run as shown now: { points, epochs, steps, step, text } (plain data, for IndexedDB). */
    kept() {
      return { points: record.points, epochs: record.epochs, steps: bar.max, step: bar.value, text: text.textContent };
    },
    /** Shows a run kept by kept() again: its loss curve, its epochs and its last line. */
    show(k) {
      this.reset();
      record = { points: [...(k.points ?? [])], epochs: [...(k.epochs ?? [])] };
      chart.setSteps(k.steps);
      chart.add(record.points);
      tbody.replaceChildren(...record.epochs.map((ev) => el('tr', {}, ...show.epochCells(ev))));
      bar.max = k.steps || 1;
      bar.value = k.step ?? 0;
      text.textContent = k.text ?? '';
      root.dataset.points = String(chart.points);
    },
  };
}
