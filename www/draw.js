// The drawing canvas: pointer events (mouse, touch and pen alike; CSS sets touch-action: none), round
// strokes, coalesced events for smooth lines. It only draws; preprocess.js turns the pixels into an input.
import { inkFromRGBA } from './preprocess.js';

export class DrawPad {
  /** `onChange(reason)` runs after every stroke segment ('draw') and on clear ('clear'). */
  constructor(canvas, onChange = () => {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { willReadFrequently: true });
    this.onChange = onChange;
    this.last = null;
    this.pointerId = null;
    this.lineWidth = Math.round(canvas.width / 10); // about MNIST's stroke width once scaled to 20 px
    canvas.addEventListener('pointerdown', (e) => this.#down(e));
    canvas.addEventListener('pointermove', (e) => this.#move(e));
    canvas.addEventListener('pointerup', (e) => this.#up(e));
    canvas.addEventListener('pointercancel', (e) => this.#up(e));
    this.clear(false);
  }

  clear(notify = true) {
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (notify) this.onChange('clear');
  }

  /** Ink per canvas pixel, 0–255 (see preprocess.inkFromRGBA). */
  ink() {
    const { width, height } = this.canvas;
    return { ink: inkFromRGBA(this.ctx.getImageData(0, 0, width, height).data, width, height), width, height };
  }

  #point(e) {
    const r = this.canvas.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left) / r.width) * this.canvas.width,
      y: ((e.clientY - r.top) / r.height) * this.canvas.height,
    };
  }

  #down(e) {
    if (this.pointerId !== null) return;
    e.preventDefault();
    this.pointerId = e.pointerId;
    this.canvas.setPointerCapture?.(e.pointerId);
    this.last = this.#point(e);
    this.#segment(this.last, this.last);
    this.onChange('draw');
  }

  #move(e) {
    if (e.pointerId !== this.pointerId) return;
    e.preventDefault();
    const events = e.getCoalescedEvents?.() || [e];
    for (const ev of events.length ? events : [e]) {
      const p = this.#point(ev);
      this.#segment(this.last, p);
      this.last = p;
    }
    this.onChange('draw');
  }

  #up(e) {
    if (e.pointerId !== this.pointerId) return;
    this.pointerId = null;
    this.last = null;
    this.onChange('draw');
  }

  #segment(a, b) {
    const c = this.ctx;
    c.strokeStyle = '#000';
    c.lineWidth = this.lineWidth;
    c.lineCap = 'round';
    c.lineJoin = 'round';
    c.beginPath();
    c.moveTo(a.x, a.y);
    c.lineTo(b.x, b.y);
    c.stroke();
  }
}
