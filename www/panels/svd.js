// Panel 1: low-rank approximation of an editable matrix by SVD (computed by the worker's `svd`).
import { Request } from '../protocol.js';
import { singularChart } from '../charts.js';
import { $, el, say, num, matrixTable } from '../ui.js';
import { FieldError, markField, numberFields, parseNumber, showRefusal, unmarkField } from '../fields.js';

export const ARTICLE_W = [
  [0.0918, 0.4794, 0.8106, 0.0151],
  [0.0153, 0.6036, 0.2318, 0.8633],
  [0.9859, 0.1975, 0.0830, 0.4253],
  [0.9149, 0.4799, 0.5348, 0.2695],
];
/** The rank-2 approximation the article prints. */
export const ARTICLE_W2 = [
  [0.0374, 0.5079, 0.4906, 0.3878],
  [0.0747, 0.5884, 0.5673, 0.4529],
  [1.0059, 0.2161, 0.1760, 0.2814],
  [0.8896, 0.4589, 0.4149, 0.4510],
];

/** The matrix as the textarea shows it; what is not a number is written as is, for parseMatrix to refuse. */
const format = (rows) => rows.map((r) => (Array.isArray(r) ? r : [r])
  .map((v) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(4) : String(v))).join('  ')).join('\n');

/** Parses the textarea: rows of numbers (fields.js's rule); throws a readable error for ragged or non-numeric input. */
export function parseMatrix(text) {
  const rows = text.split('\n').map((l) => l.trim()).filter(Boolean)
    .map((l) => l.replace(/[[\]]/g, ' ').split(/[\s,;]+/).filter(Boolean));
  if (!rows.length) throw new Error('enter at least one row of numbers');
  const out = rows.map((r, i) => r.map((s) => {
    const { value, why } = parseNumber(s);
    if (why) throw new Error(`row ${i + 1}: ${why}`);
    return value;
  }));
  const n = out[0].length;
  const bad = out.findIndex((r) => r.length !== n);
  if (bad >= 0) throw new Error(`row ${bad + 1} has ${out[bad].length} numbers, row 1 has ${n}`);
  if (out.length > 64 || n > 64) throw new Error('keep it to 64 × 64 at most');
  return out;
}

export function svdPanel(app) {
  const root = $('#svd');
  const textarea = $('#svd-matrix', root);
  const slider = $('#svd-rank', root);
  const rankOut = $('#svd-rank-value', root);
  const msg = $('#svd-msg', root);
  const errorEl = $('#svd-error', root);
  const countEl = $('#svd-count', root);
  const matrices = $('#svd-matrices', root);
  const chart = singularChart($('#svd-chart', root));
  let timer = 0;
  let seq = 0;
  const rankField = numberFields(root, { rank: undefined });

  textarea.value = format(ARTICLE_W);

  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => compute().catch(() => {}), 150);
  };
  textarea.addEventListener('input', schedule);
  slider.addEventListener('input', () => {
    rankOut.value = slider.value;
    schedule();
  });
  $('#svd-article', root).addEventListener('click', () => {
    textarea.value = format(ARTICLE_W);
    slider.value = '2';
    rankOut.value = '2';
    schedule();
  });
  $('#svd-random', root).addEventListener('click', () => {
    // A random 6×8 matrix of rank about 3 plus a little noise: the spectrum shows where to cut.
    const u = [...Array(6)].map(() => [...Array(3)].map(() => Math.random() - 0.5));
    const v = [...Array(3)].map(() => [...Array(8)].map(() => Math.random() - 0.5));
    const rows = u.map((ur) => v[0].map((_, j) => ur.reduce((s, x, k) => s + x * v[k][j], 0) + 0.02 * (Math.random() - 0.5)));
    textarea.value = format(rows);
    schedule();
  });

  /** Computes and shows the rank-`rank` approximation; resolves to the worker's answer. */
  async function compute(rows, rank) {
    let W;
    let given;
    try {
      given = rankField.check({ rank }, { mark: true }); // before the slider would sanitise it away
    } catch (e) {
      showRefusal(msg, 'Cannot compute: ', e);
      throw e;
    }
    unmarkField(slider);
    if (rows) textarea.value = Array.isArray(rows) ? format(rows) : String(rows);
    try {
      W = parseMatrix(textarea.value);
    } catch (e) {
      const refusal = new FieldError([{ input: textarea, label: 'matrix W', message: e.message }]);
      markField(textarea, `matrix W: ${e.message}`);
      showRefusal(msg, 'Cannot read the matrix: ', refusal);
      throw e;
    }
    unmarkField(textarea);
    const maxRank = Math.min(W.length, W[0].length);
    slider.max = String(maxRank);
    if (given.rank !== undefined) slider.value = String(given.rank);
    const r = Math.min(Number(slider.value), maxRank);
    slider.value = String(r);
    rankOut.value = String(r);
    const mine = ++seq;
    let res;
    try {
      res = await app.request(Request.SVD, { rows: W, rank: r });
    } catch (e) {
      if (mine === seq) say(msg, `The worker could not compute the SVD: ${e.message}`, 'error');
      throw e;
    }
    if (mine !== seq) return res; // a newer edit is on its way
    say(msg, '');
    show(W, r, res);
    return res;
  }

  function show(W, r, { S, A, B, approx, error }) {
    const m = W.length, n = W[0].length;
    const maxRank = Math.min(m, n);
    chart.set(S, r);
    const tail = S.slice(r);
    const check = Math.sqrt(tail.reduce((s, x) => s + x * x, 0));
    const tailText = tail.length ? tail.map((_, i) => `σ${r + i + 1}²`).join(' + ') : '0';
    errorEl.replaceChildren(
      el('span', {}, '‖W − W'), el('sub', {}, 'r'), el('span', {}, '‖'), el('sub', {}, 'F'),
      el('span', { id: 'svd-error-value' }, ` = ${num(error, 6)}`),
      el('br'),
      el('span', { className: 'muted' }, `√(${tailText}) = ${num(check, 6)}   (the dropped singular values; σ = ${S.map((s) => num(s, 4)).join(', ')})`));
    countEl.textContent = `W holds ${m}·${n} = ${m * n} numbers; A and B together hold r·(${m} + ${n}) = ${r * (m + n)}.`;

    const parts = [
      block(`A = U_r·√S_r  (${m} × ${r})`, 'article: A · PEFT: lora_B', A),
      block(`B = √S_r·V_rᵀ  (${r} × ${n})`, 'article: B · PEFT: lora_A', B),
      block(`W_r = A · B  (rank ${r})`, r === maxRank ? 'full rank: W comes back' : `the best rank-${r} approximation`, approx, 'svd-approx'),
    ];
    const isArticle = m === 4 && n === 4 && W.every((row, i) => row.every((v, j) => Math.abs(v - ARTICLE_W[i][j]) < 1e-9));
    if (isArticle && r === 2) {
      const diff = Math.max(...approx.flatMap((row, i) => row.map((v, j) => Math.abs(v - ARTICLE_W2[i][j]))));
      parts.push(block('The article prints (rank 2)', `largest difference from ours: ${diff.toExponential(1)}`, ARTICLE_W2));
    }
    matrices.replaceChildren(...parts);
  }

  function block(title, note, rows, id) {
    const fig = el('figure', { className: 'matrix-block' });
    if (id) fig.id = id;
    fig.append(el('figcaption', {}, el('strong', {}, title), el('br'), el('span', { className: 'muted' }, note)), matrixTable(rows));
    return fig;
  }

  return { compute };
}
