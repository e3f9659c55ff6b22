// The page on a phone: at 390 and 375 px wide nothing makes it scroll sideways — every panel's elements lie
// within the screen, except inside the boxes that scroll on their own (tables, code snippets, <pre>). The
// page as it opens (no model trained: panels 6 and 7 check themselves after a run in their own tests).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startLab } from '../support/browser.mjs';

let browser;
let lab;
let page;

before(async () => {
  ({ browser, lab, page } = await startLab());
});

after(async () => {
  await lab?.close();
  await browser?.close();
});

for (const width of [390, 375]) {
  test(`at ${width} px the page is no wider than the screen, panel by panel`, async () => {
    await page.setViewportSize({ width, height: 844 });
    // the charts resize from a ResizeObserver: let two frames pass, as a person turning a phone would
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    const r = await page.evaluate(() => {
      const screen = document.documentElement.clientWidth;
      const wide = (root) => [...root.querySelectorAll('*')]
        .filter((e) => e.getBoundingClientRect().right > screen + 1 && !e.parentElement?.closest('.table-wrap, .snippet, pre'))
        .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className ? `.${e.className}` : ''}`);
      return {
        scrollWidth: document.documentElement.scrollWidth,
        screen,
        panels: Object.fromEntries([...document.querySelectorAll('main > section.panel')].map((s) => [s.id, wide(s).slice(0, 5)])),
        header: wide(document.querySelector('header')).slice(0, 5),
      };
    });
    assert.equal(r.panels.llm !== undefined && r.panels.svd !== undefined, true, 'every panel is looked at');
    for (const [id, list] of Object.entries(r.panels)) assert.deepEqual(list, [], `panel #${id}: elements wider than ${width} px`);
    assert.deepEqual(r.header, [], 'the header');
    assert.equal(r.scrollWidth, r.screen, 'the page scrolls sideways');
  });
}
