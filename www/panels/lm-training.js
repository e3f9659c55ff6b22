// One language-model run's view (panel 6): pause/resume/cancel, a progress bar with tokens/s and ETA, the
// live loss plot, and the held-out loss after each epoch (for an adapter run with the adapter on and off,
// and the checkpoint that epoch saved). The base and adapter sections each have one, listening to their
// own phase ('lmBase' or 'lmAdapter'), whoever started the run (a click or window.lab.lm).
import { trainingView } from './training.js';
import { el, int, num } from '../ui.js';

export function lmTrainingView(app, root, phase, onError) {
  const withOff = phase === 'lmAdapter';
  return trainingView(app, root, phase, onError, {
    rate: (p) => `${int(p.tokensPerSec)} tokens/s`,
    loss: (v) => num(v, 3),
    epochCells: (ev) => {
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
      return cells;
    },
    ignoreSweeps: false,
    markPaused: true,
  });
}
