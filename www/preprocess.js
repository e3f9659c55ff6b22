// Drawing → MNIST-style input, as pure functions (no DOM), so they can be unit-tested anywhere.
//
// MNIST's recipe (LeCun et al.): crop to the ink's bounding box, scale so the longer side is 20 px keeping
// the aspect ratio (anti-aliased, so edges become grey), then place the 20×20 box in a 28×28 field so that
// the ink's centre of mass sits at the field's centre. Values are 0–255 with ink high.

export const SIZE = 28; // the field
export const BOX = 20; // the longer side of the scaled digit

/**
 * Ink per pixel (0–255, ink high) from canvas RGBA bytes: opaque dark pixels and transparent-background
 * strokes both count, so it works whether the canvas is painted white or left transparent.
 */
export function inkFromRGBA(rgba, width, height) {
  const ink = new Float32Array(width * height);
  for (let i = 0, p = 0; i < ink.length; i++, p += 4) {
    const lum = 0.299 * rgba[p] + 0.587 * rgba[p + 1] + 0.114 * rgba[p + 2];
    ink[i] = (rgba[p + 3] / 255) * (255 - lum);
  }
  return ink;
}

/** The smallest box holding every pixel above `threshold`: { x0, y0, x1, y1 } (x1, y1 exclusive), or null. */
export function boundingBox(ink, width, height, threshold = 0) {
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      if (ink[row + x] > threshold) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x0, y0, x1: x1 + 1, y1: y1 + 1 };
}

/**
 * Area-average resampling of the `src` (sw × sh) into dw × dh: each target pixel is the mean of the source
 * area it covers, counting partly covered pixels by their covered fraction — the anti-aliasing.
 */
export function resampleArea(src, sw, sh, dw, dh) {
  const tmp = new Float32Array(dw * sh); // horizontal pass
  const fx = sw / dw;
  for (let x = 0; x < dw; x++) {
    const a = x * fx, b = (x + 1) * fx;
    for (let y = 0; y < sh; y++) {
      let sum = 0;
      for (let sx = Math.floor(a); sx < Math.min(sw, Math.ceil(b)); sx++) {
        const cover = Math.min(b, sx + 1) - Math.max(a, sx);
        sum += cover * src[y * sw + sx];
      }
      tmp[y * dw + x] = sum / fx;
    }
  }
  const out = new Float32Array(dw * dh); // vertical pass
  const fy = sh / dh;
  for (let y = 0; y < dh; y++) {
    const a = y * fy, b = (y + 1) * fy;
    for (let x = 0; x < dw; x++) {
      let sum = 0;
      for (let sy = Math.floor(a); sy < Math.min(sh, Math.ceil(b)); sy++) {
        const cover = Math.min(b, sy + 1) - Math.max(a, sy);
        sum += cover * tmp[sy * dw + x];
      }
      out[y * dw + x] = sum / fy;
    }
  }
  return out;
}

/** Centre of mass { x, y } in pixel units (pixel i covers [i, i+1)), or null for an empty image. */
export function centreOfMass(img, width, height) {
  let m = 0, mx = 0, my = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = img[y * width + x];
      m += v;
      mx += v * (x + 0.5);
      my += v * (y + 0.5);
    }
  }
  return m > 0 ? { x: mx / m, y: my / m } : null;
}

/**
 * The whole recipe: `ink` (width × height, 0–255 ink high) → 784 values 0–255 (Uint8ClampedArray, row-major
 * 28×28, brightest pixel 255), or null when nothing is drawn.
 */
export function preprocess(ink, width, height) {
  const box = boundingBox(ink, width, height, 8);
  if (!box) return null;
  const bw = box.x1 - box.x0, bh = box.y1 - box.y0;
  const crop = new Float32Array(bw * bh);
  for (let y = 0; y < bh; y++) {
    for (let x = 0; x < bw; x++) crop[y * bw + x] = ink[(box.y0 + y) * width + box.x0 + x];
  }
  const scale = BOX / Math.max(bw, bh);
  const dw = Math.max(1, Math.round(bw * scale)), dh = Math.max(1, Math.round(bh * scale));
  const small = resampleArea(crop, bw, bh, dw, dh);
  let max = 0;
  for (const v of small) if (v > max) max = v;
  if (max <= 0) return null;
  const com = centreOfMass(small, dw, dh);
  // Whole-pixel shift (keeps the grey levels as they are), clamped so the digit stays inside the field.
  const ox = clamp(Math.round(SIZE / 2 - com.x), 0, SIZE - dw);
  const oy = clamp(Math.round(SIZE / 2 - com.y), 0, SIZE - dh);
  const out = new Uint8ClampedArray(SIZE * SIZE);
  for (let y = 0; y < dh; y++) {
    for (let x = 0; x < dw; x++) out[(oy + y) * SIZE + ox + x] = Math.round((small[y * dw + x] * 255) / max);
  }
  return out;
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}
