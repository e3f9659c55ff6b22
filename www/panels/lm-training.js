// One language-model run's view (panel 6): pause/resume/cancel, a progress bar with tokens/s and ETA, the
// live loss plot, and the held-out loss after each epoch (for an adapter run with the adapter on and off,
// and the checkpoint that epoch saved). The base and adapter sections each have one, listening to their
// own phase ('lmBase' or 'lmAdapter'), whoever started the run (a click or window.lab.lm).
import { Request } from '../protocol.js';
import { lossChart } from '../charts.js';
import { $, el, int, num, duration } from '../ui.js';

export function lmTrainingView(app, root, phase, onError) {
  const bar = $('progress', root);
  const text = $('.progress-text', root);
  const tbody = $('table.epochs tbody', root);
  const chart = lossChart($('canvas.loss-chart', root));
  const buttons = Object.fromEntries([...root.querySelectorAll('button[data-action]')].map((b) => [b.dataset.action, b]));
  const withOff = phase === 'lmAdapter';

  const setButtons = (state) => {
    buttons.pause.disabled = state !== 'running';
    buttons.resume.disabled = state !== 'paused';
    buttons.cancel.disabled = state === 'idle';
  };
  setButtons('idle');

  for (const [action, type] of [['pause', Request.PAUSE], ['resume', Request.RESUME], ['cancel', Request.CANCEL]]) {
    buttons[action].addEventListener('click', async () => {
      try {
        const { state } = await app.request(type);
        if (state === 'paused' || state === 'running') app.setTrainingState(state);
      } catch (e) {
        onError?.(`Could not ${action}: ${e.message}`);
      }
    });
  }

  app.on('busy', ({ phase: p, state }) => {
    setButtons(p === phase ? state : 'idle');
    root.dataset.state = p === phase ? state : 'idle';
    if (p === phase && state === 'paused') text.textContent = `Paused — ${text.textContent.replace(/^Paused — /, '')}`;
    if (p === phase && state === 'running') text.textContent = text.textContent.replace(/^Paused — /, '');
  });

  let lastStep = 0;
  app.on('progress', (batch) => {
    const mine = batch.filter((p) => p.phase === phase);
    if (!mine.length) return;
    const last = mine[mine.length - 1];
    lastStep = last.step;
    chart.setSteps(last.steps);
    chart.add(mine);
    bar.max = last.steps || 1;
    bar.value = last.step;
    text.textContent = `${app.busy === phase && root.dataset.state === 'paused' ? 'Paused — ' : ''}epoch ${last.epoch}/${last.epochs} · `
      + `step ${int(last.step)}/${int(last.steps)} · ${int(last.tokensPerSec)} tokens/s · ETA ${duration(last.etaSeconds)} · `
      + `loss ${num(last.loss, 3)} (smoothed ${num(last.smoothLoss, 3)})`;
    root.dataset.points = String(chart.points);
  });

  app.on('epoch', (ev) => {
    if (ev.phase !== phase) return;
    const cp = ev.checkpoint;
    const cells = [el('td', {}, `${ev.epoch}/${ev.epochs}`), el('td', {}, num(ev.evalLoss, 3))];
    if (withOff) {
      cells.push(el('td', {}, num(ev.baseEvalLoss, 3)));
      const d = ev.evalLoss - ev.baseEvalLoss;
      cells.push(el('td', {}, Number.isFinite(d) ? `${d <= 0 ? '−' : '+'}${Math.abs(d).toFixed(3)}` : '–'));
    } else {
      cells.push(el('td', {}, Number.isFinite(ev.evalLoss) ? (ev.evalLoss / Math.LN2).toFixed(3) : '–'));
    }
    cells.push(el('td', {}, cp ? `#${cp.id} (step ${int(cp.step)})${cp.best ? ' ★ best so far' : ''}` : '–'));
    tbody.append(el('tr', {}, ...cells));
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
    },
    finish(result) {
      app.flushProgress(); // the last progress events come before the summary: show them first
      chart.flush();
      if (!result.cancelled) bar.value = bar.max;
      text.textContent = `${result.cancelled ? 'Cancelled' : 'Done'} after ${int(result.steps ?? lastStep)} steps`
        + ` in ${duration(result.seconds)} · ${int(result.tokensPerSec)} tokens/s.`;
    },
    fail(message) {
      text.textContent = message;
    },
  };
}
