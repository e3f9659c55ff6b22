//! Bytes to model input, exactly as the PyTorch reference does it:
//! `ToTensor()` then `Normalize((0.5,), (0.5,))`, i.e. `x = (p/255 − 0.5)/0.5`, each step in f32,
//! so a model trained here and one trained in PyTorch see bit-identical inputs.

use super::{Dataset, PIXELS};
use crate::{LabError, Result};
use rayon::prelude::*;

/// The 256 possible inputs, computed once, in PyTorch's order of f32 operations.
static TABLE: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut p = 0;
    while p < 256 {
        t[p] = (p as f32 / 255.0 - 0.5) / 0.5;
        p += 1;
    }
    t
};

/// The normalised value of one pixel byte, in [-1, 1].
pub fn normalise(p: u8) -> f32 {
    TABLE[p as usize]
}

/// Normalises a single image (e.g. a digit drawn on the page): `out[i] = normalise(pixels[i])`.
/// The pixels come from outside, so a length mismatch is an error, not a panic.
pub fn normalise_pixels(pixels: &[u8], out: &mut [f32]) -> Result<()> {
    if pixels.len() != out.len() {
        return Err(LabError::state(format!(
            "normalise_pixels: {} pixels but room for {} values",
            pixels.len(),
            out.len()
        )));
    }
    for (o, &p) in out.iter_mut().zip(pixels) {
        *o = TABLE[p as usize];
    }
    Ok(())
}

/// Reads one byte of every cache line of these images, a line of each image in turn. The
/// images lie scattered over the 37 MB of MNIST, so nearly every line is a cache miss: copied one
/// image after another, those misses wait one behind the other; here a few dozen are in flight at once.
fn touch_images(ds: &Dataset, indices: &[u32]) {
    let mut seen = 0u8;
    for at in (0..PIXELS).step_by(64).chain([PIXELS - 1]) {
        for &i in indices {
            seen ^= ds.image(i as usize)[at];
        }
    }
    std::hint::black_box(seen);
}

/// Fills one batch: `x` (`indices.len() × 784`, row-major) with normalised pixels and `y`
/// (`indices.len()`) with labels. Wrong buffer lengths or an index past the dataset are
/// reported as errors rather than panics, so a bug never takes the whole worker down;
/// nothing is written when an error is returned.
pub fn fill_batch(ds: &Dataset, indices: &[u32], x: &mut [f32], y: &mut [u8]) -> Result<()> {
    let b = indices.len();
    if Some(x.len()) != b.checked_mul(PIXELS) || y.len() != b {
        return Err(LabError::state(format!(
            "fill_batch: a batch of {b} needs x of {b}×{PIXELS} and y of {b}, got x of {} and y of {}",
            x.len(),
            y.len()
        )));
    }
    if let Some(&i) = indices.iter().find(|&&i| i as usize >= ds.len()) {
        return Err(LabError::state(format!(
            "fill_batch: sample {i} is past the end of a {}-sample dataset",
            ds.len()
        )));
    }
    // Split across the pool in groups of images: on one thread this was 2–3 % of a training step,
    // the other thread waiting.
    const GROUP: usize = 16;
    x.par_chunks_mut(PIXELS * GROUP).zip(indices.par_chunks(GROUP)).for_each(|(rows, group)| {
        touch_images(ds, group);
        for (row, &i) in rows.chunks_exact_mut(PIXELS).zip(group) {
            for (o, &p) in row.iter_mut().zip(ds.image(i as usize)) {
                *o = TABLE[p as usize];
            }
        }
    });
    for (&i, label) in indices.iter().zip(y.iter_mut()) {
        *label = ds.label(i as usize);
    }
    Ok(())
}
