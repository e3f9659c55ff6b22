// Long tasks on the page's main thread, for the tests that promise the page stays responsive while the worker
// trains. Chromium reports every task over 50 ms ('longtask') and, for frames that ran long, which scripts ran
// and for how long ('long-animation-frame').
//
// What counts against the page: a long task whose scripts ran 50 ms or more, or any task of 150 ms or more,
// whatever filled it. A task under 150 ms in which our scripts ran less than 50 ms is the machine, not the page:
// on two cores shared with two training threads the scheduler stretches a 10-ms click handler to 55 ms (CI,
// 2026-12-07: 'FORM#lm-base-form.onsubmit lm.js: 10 ms' in a 55-ms task). Everything seen is kept in `all`
// so a failure's message shows it.

const LONG_SCRIPT_MS = 50;
const STALL_MS = 150;

/** Starts recording long tasks and long frames on the page (window.__longTasks, window.__frames). */
export async function watchLongTasks(page) {
  await page.evaluate(() => {
    if (window.__longTasks) return;
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask' });
    window.__frames = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        window.__frames.push({
          start: e.startTime,
          duration: e.duration,
          scriptMs: e.scripts.reduce((s, x) => s + x.duration, 0),
          scripts: e.scripts.map((x) => `${x.invoker} ${x.sourceURL.split('/').pop()}:${x.sourceFunctionName} ${Math.round(x.duration)} ms`),
        });
      }
    }).observe({ type: 'long-animation-frame' });
  });
}

/** The page's clock, for the bounds of longTasksBetween. */
export const pageNow = (page) => page.evaluate(() => performance.now());

/**
 * The long tasks that started between two pageNow readings, each with the scripts of its frame:
 * { blocking: those that count against the page (see above), all: every one seen }.
 */
export async function longTasksBetween(page, start, end) {
  const all = await page.evaluate(({ start, end }) => window.__longTasks.filter((t) => t.start >= start && t.start < end).map((t) => {
    const frame = window.__frames.find((f) => f.start <= t.start + 1 && t.start < f.start + f.duration);
    return { ...t, scriptMs: Math.round(frame?.scriptMs ?? 0), frame: frame?.scripts ?? [] };
  }), { start, end });
  const blocking = all.filter((t) => t.scriptMs >= LONG_SCRIPT_MS || t.duration >= STALL_MS);
  return { blocking, all };
}
