// One training run's view: pause/resume/cancel, progress bar with samples/s and ETA, live loss chart,
// accuracy per epoch. Shared by the base-model and adapter panels; each listens to its own phase.
import { Request } from '../protocol.js';
import { lossChart } from '../charts.js';
import { $, el, int, pct, duration } from '../ui.js';

export function trainingView(app, root, phase, onError) {
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
  app.on('busy', ({ phase: p, state }) => {
    setButtons(p === phase ? state : 'idle');
    if (p === phase && state === 'paused') text.textContent = `Paused — ${text.textContent.replace(/^Paused — /, '')}`;
    if (p === phase && state === 'running') text.textContent = text.textContent.replace(/^Paused — /, '');
  });

  app.on('progress', (batch) => {
    if (app.busy === 'sweep') return; // a sweep's runs are reported in the sweep panel
    const mine = batch.filter((p) => p.phase === phase);
    if (!mine.length) return;
    const last = mine[mine.length - 1];
    lastStep = last.step;
    chart.setSteps(last.steps);
    chart.add(mine);
    bar.max = last.steps || 1;
    bar.value = last.step;
    text.textContent = `epoch ${last.epoch}/${last.epochs} · step ${int(last.step)}/${int(last.steps)} · `
      + `${int(last.samplesPerSec)} samples/s · ETA ${duration(last.etaSeconds)} · `
      + `loss ${Number(last.loss).toFixed(4)} (smoothed ${Number(last.smoothLoss).toFixed(4)})`;
    root.dataset.points = String(chart.points);
  });

  app.on('epoch', (ev) => {
    if (app.busy === 'sweep' || ev.phase !== phase) return;
    const a = ev.accuracy || {};
    tbody.append(el('tr', {},
      el('td', {}, `${ev.epoch}/${ev.epochs}`),
      el('td', {}, pct(a.acc_0_7)),
      el('td', {}, pct(a.acc_8_9)),
      el('td', {}, pct(a.acc_all))));
  });

  return {
    reset() {
      chart.reset();
      tbody.replaceChildren();
      bar.value = 0;
      text.textContent = 'Starting…';
      root.dataset.points = '0';
      lastStep = 0;
    },
    finish(result) {
      app.flushProgress(); // the last progress events come before the summary: show them first
      chart.flush();
      if (!result.cancelled) bar.value = bar.max;
      text.textContent = `${result.cancelled ? 'Cancelled' : 'Done'} after ${int(result.steps ?? lastStep)} steps`
        + ` in ${duration(result.seconds)}${result.samplesPerSec ? ` · ${int(result.samplesPerSec)} samples/s` : ''}.`;
    },
    fail(message) {
      text.textContent = message;
    },
  };
}
