// Every chart on the page, from the vendored Chart.js 4 UMD (global `Chart`, loaded by a classic <script>)
// and chartjs-chart-matrix (the heatmap). Charts are made once and then only fed data: update('none')
// skips animation, and the loss curve is decimated so thousands of steps stay cheap to draw.

const ChartJs = globalThis.Chart;
export const chartsAvailable = typeof ChartJs === 'function';

const COLORS = {
  base: '#3559d6',
  adapted: '#d6663a',
  faint: 'rgba(53, 89, 214, 0.25)',
  kept: '#3559d6',
  dropped: '#c5cbe0',
  ok: '#1e7b34',
  bad: '#b3261e',
};
export { COLORS };

if (chartsAvailable) {
  ChartJs.defaults.animation = false;
  ChartJs.defaults.responsive = true;
  ChartJs.defaults.maintainAspectRatio = false;
  ChartJs.defaults.font.family = 'system-ui, sans-serif';
  ChartJs.defaults.color = '#5b6475';
}

/** A chart, or a stand-in that does nothing when Chart.js is missing (the numbers are still shown as text). */
function make(canvas, config) {
  if (!chartsAvailable) {
    canvas.replaceWith(Object.assign(document.createElement('p'), {
      className: 'muted',
      textContent: 'Charts are unavailable (www/vendor/chart.umd.min.js did not load).',
    }));
    return null;
  }
  return new ChartJs(canvas, config);
}

const DIGITS = [...Array(10).keys()].map(String);
const pct = (v) => `${(v * 100).toFixed(1)} %`;

/**
 * Loss per step (faint) and its smoothed curve. `add(points)` takes [{ step, loss, smoothLoss }] and redraws
 * at most every `minIntervalMs`, so a fast trainer never costs the page more than a few ms per frame.
 */
export function lossChart(canvas, { minIntervalMs = 200 } = {}) {
  const raw = [];
  const smooth = [];
  const chart = make(canvas, {
    type: 'line',
    data: {
      datasets: [
        { label: 'loss per step', data: raw, borderColor: COLORS.faint, borderWidth: 1, pointRadius: 0, order: 2 },
        { label: 'smoothed', data: smooth, borderColor: COLORS.base, borderWidth: 2, pointRadius: 0, order: 1 },
      ],
    },
    options: {
      parsing: false,
      normalized: true,
      spanGaps: true,
      indexAxis: 'x',
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      plugins: {
        decimation: { enabled: true, algorithm: 'min-max' },
        legend: { position: 'bottom', labels: { boxHeight: 2 } },
        tooltip: { enabled: true },
      },
      scales: {
        x: { type: 'linear', title: { display: true, text: 'step (batch)' }, min: 0, ticks: { maxTicksLimit: 8 } },
        y: { type: 'linear', title: { display: true, text: 'cross-entropy loss' }, min: 0, ticks: { maxTicksLimit: 6 } },
      },
    },
  });
  let last = 0;
  let timer = 0;
  const draw = () => {
    timer = 0;
    last = performance.now();
    chart?.update('none');
  };
  return {
    get points() {
      return raw.length;
    },
    add(points) {
      for (const p of points) {
        // Step 0 took no step (panel 7's first event measures the held-out loss before training).
        if (!(p.step >= 1)) continue;
        // A progress event may carry every batch's loss since the last one (`losses`), or just the last.
        if (Array.isArray(p.losses) && p.losses.length) {
          const first = p.step - p.losses.length + 1;
          p.losses.forEach((y, i) => Number.isFinite(y) && raw.push({ x: first + i, y }));
        } else if (Number.isFinite(p.loss)) raw.push({ x: p.step, y: p.loss });
        if (Number.isFinite(p.smoothLoss)) smooth.push({ x: p.step, y: p.smoothLoss });
      }
      // Drawn in a task of its own, never inside the event that brought the points: a progress batch or a
      // run's end arrives in the worker's message event, and a Chart.js update there made it a 65-ms task
      // on a busy machine (CI, 2026-12-07).
      if (!timer) timer = setTimeout(draw, Math.max(0, minIntervalMs - (performance.now() - last)));
    },
    setSteps(steps) {
      if (chart && steps > 0) chart.options.scales.x.max = steps;
    },
    reset() {
      raw.length = 0;
      smooth.length = 0;
      if (chart) delete chart.options.scales.x.max;
      clearTimeout(timer);
      timer = setTimeout(draw, 0);
    },
    /** Draws what was added as soon as the page is free (a task of its own). */
    flush() {
      clearTimeout(timer);
      timer = setTimeout(draw, 0);
    },
  };
}

/** Singular values as bars; the kept ones (index < rank) dark, the dropped ones light. */
export function singularChart(canvas) {
  const chart = make(canvas, {
    type: 'bar',
    data: { labels: [], datasets: [{ label: 'σ', data: [], backgroundColor: [] }] },
    options: {
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `σ${c.dataIndex + 1} = ${c.raw.toFixed(4)}` } } },
      scales: { y: { beginAtZero: true, title: { display: true, text: 'singular value' } } },
    },
  });
  return {
    set(values, rank) {
      if (!chart) return;
      chart.data.labels = values.map((_, i) => `σ${i + 1}`);
      chart.data.datasets[0].data = values;
      chart.data.datasets[0].backgroundColor = values.map((_, i) => (i < rank ? COLORS.kept : COLORS.dropped));
      chart.update('none');
    },
  };
}

/** Per-class accuracy, one bar per digit, for one or two models. */
export function perClassChart(canvas) {
  const chart = make(canvas, {
    type: 'bar',
    data: { labels: [...Array(10).keys()].map(String), datasets: [] },
    options: {
      plugins: { legend: { position: 'bottom' }, tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${pct(c.raw)}` } } },
      scales: {
        x: { title: { display: true, text: 'digit' } },
        y: { min: 0, max: 1, ticks: { callback: (v) => `${Math.round(v * 100)} %` }, title: { display: true, text: 'test accuracy' } },
      },
    },
  });
  return {
    set(series) {
      if (!chart) return;
      chart.data.datasets = series.map((s) => ({ label: s.label, data: s.values, backgroundColor: s.color }));
      chart.update('none');
    },
  };
}

/** Confusion matrix heatmap: rows true digit, columns predicted digit, colour = fraction of the row. */
export function confusionChart(canvas) {
  const chart = make(canvas, {
    type: 'matrix',
    data: {
      datasets: [{
        label: 'confusion',
        data: [],
        width: ({ chart: c }) => (c.chartArea || {}).width / 10 - 1,
        height: ({ chart: c }) => (c.chartArea || {}).height / 10 - 1,
        backgroundColor: (ctx) => {
          const v = ctx.raw?.f ?? 0;
          return `rgba(53, 89, 214, ${Math.min(1, 0.04 + v).toFixed(3)})`;
        },
      }],
    },
    options: {
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: () => '',
            label: (c) => `true ${c.raw.y}, predicted ${c.raw.x}: ${c.raw.v} (${pct(c.raw.f)} of the ${c.raw.y}s)`,
          },
        },
      },
      scales: {
        x: { type: 'category', labels: DIGITS, offset: true, grid: { display: false }, title: { display: true, text: 'predicted digit' } },
        y: { type: 'category', labels: [...DIGITS].reverse(), offset: true, // true digit 0 on top, as confusion matrices are read
            grid: { display: false }, title: { display: true, text: 'true digit' } },
      },
    },
  });
  return {
    set(confusion) {
      if (!chart) return;
      const data = [];
      confusion.forEach((row, y) => {
        const total = row.reduce((a, b) => a + b, 0) || 1;
        row.forEach((v, x) => data.push({ x: String(x), y: String(y), v, f: v / total }));
      });
      chart.data.datasets[0].data = data;
      chart.update('none');
    },
  };
}

/** Probabilities for digits 0–9 from the base and the adapted model, side by side. */
export function probabilityChart(canvas) {
  const chart = make(canvas, {
    type: 'bar',
    data: {
      labels: [...Array(10).keys()].map(String),
      datasets: [
        { label: 'base model', data: [], backgroundColor: COLORS.base },
        { label: 'with adapter', data: [], backgroundColor: COLORS.adapted },
      ],
    },
    options: {
      plugins: { legend: { position: 'bottom' }, tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${pct(c.raw)}` } } },
      scales: {
        x: { title: { display: true, text: 'digit' } },
        y: { min: 0, max: 1, ticks: { callback: (v) => `${Math.round(v * 100)} %` } },
      },
    },
  });
  return {
    set(base, adapted) {
      if (!chart) return;
      chart.data.datasets[0].data = base || [];
      chart.data.datasets[1].data = adapted || [];
      chart.update('none');
    },
  };
}
