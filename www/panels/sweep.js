// Panel 5: a rank × alpha grid of adapters, trained one after another by the worker's `sweep`.
import { Request } from '../protocol.js';
import { $, el, say, pct, int } from '../ui.js';
import { numberFields, showRefusal, LIST } from '../fields.js';

export function sweepPanel(app, adapterPanel) {
  const root = $('#sweep');
  const form = $('#sweep-form', root);
  const msg = $('#sweep-msg', root);
  const tbody = $('#sweep-table tbody', root);
  const runButton = $('#sweep-run', root);
  const cancelButton = $('#sweep-cancel', root);
  let rows = [];
  const fields = numberFields(form, { ranks: LIST, alphas: LIST, epochs: 1 });
  const OWN = new Set(['ranks', 'alphas', 'epochs']);

  function render() {
    tbody.replaceChildren(...rows.filter(Boolean).map((r) => el('tr', {},
      el('td', {}, String(r.rank)),
      el('td', {}, String(r.alpha)),
      el('td', { className: 'numeric' }, int(r.trainableParams)),
      el('td', {}, pct(r.acc_8_9)),
      el('td', {}, pct(r.acc_0_7)),
      el('td', {}, pct(r.acc_all)))));
  }

  app.on('sweepRow', ({ row, index, total }) => {
    if (app.busy !== 'sweep') return;
    rows[index] = row;
    render();
    say(msg, `Trained ${index + 1} of ${total} adapters…`, 'busy');
  });

  /** Runs a sweep; settings not given come from this form (ranks, alphas, epochs) and panel 3's form. */
  async function run(opts = {}) {
    if (app.busy) {
      const e = new Error(`already busy (${app.busy}); wait, or cancel it first`);
      say(msg, e.message, 'error');
      throw e;
    }
    let args;
    try {
      fields.write(opts);
      // Panel 3's settings given here override that form without being written into it: the same rule.
      const given = Object.fromEntries(Object.entries(opts).filter(([k, v]) => !OWN.has(k) && v !== undefined && v !== null));
      const overrides = adapterPanel.fields.check(given);
      const { name, ...adapterSettings } = adapterPanel.readForm();
      args = { ...adapterSettings, ...given, ...overrides, ...fields.read() };
      if (!args.ranks.length || !args.alphas.length) throw new Error('give at least one rank and one alpha');
      if (!app.hasModel) throw new Error('there is no base model yet: train or load one in panel 2 first');
    } catch (e) {
      showRefusal(msg, 'Cannot run the sweep: ', e);
      throw e;
    }
    app.setBusy('sweep');
    rows = [];
    render();
    try {
      say(msg, `Training ${args.ranks.length * args.alphas.length} adapters…`, 'busy');
      await app.ensureData();
      const result = await app.request(Request.SWEEP, args);
      rows = result.rows.slice();
      render();
      say(msg, `Done: ${rows.length} adapters, ${args.epochs} epoch${args.epochs === 1 ? '' : 's'} each, on digits 8–9.`, 'ok');
      return result;
    } catch (e) {
      say(msg, `The sweep failed: ${e.message}`, 'error');
      throw e;
    } finally {
      app.setBusy(null);
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run().catch(() => {});
  });
  cancelButton.addEventListener('click', () => {
    app.request(Request.CANCEL).catch((e) => say(msg, `Could not cancel: ${e.message}`, 'error'));
  });
  app.on('busy', ({ phase }) => {
    runButton.disabled = Boolean(phase);
    cancelButton.disabled = phase !== 'sweep';
  });

  return { run };
}
