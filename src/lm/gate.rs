//! The gated MLP's middle: `m = silu(g) ⊙ u` (HF: `down_proj(act_fn(gate_proj(x)) * up_proj(x))`).

use rayon::prelude::*;

const CHUNK: usize = 4096;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn forward(g: &[f32], u: &[f32], m: &mut [f32]) {
    m.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(u.par_chunks(CHUNK)).for_each(|((m, g), u)| {
        for ((m, &g), &u) in m.iter_mut().zip(g).zip(u) {
            *m = g * sigmoid(g) * u;
        }
    });
}

/// From dm: dg = dm ⊙ u ⊙ silu′(g), du = dm ⊙ silu(g), with silu′(x) = σ(x)·(1 + x·(1 − σ(x))).
pub fn backward(g: &[f32], u: &[f32], dm: &[f32], dg: &mut [f32], du: &mut [f32]) {
    dg.par_chunks_mut(CHUNK).zip(du.par_chunks_mut(CHUNK)).enumerate().for_each(|(c, (dg, du))| {
        let o = c * CHUNK;
        for (i, (dg, du)) in dg.iter_mut().zip(du).enumerate() {
            let (g, u, dm) = (g[o + i], u[o + i], dm[o + i]);
            let s = sigmoid(g);
            *du = dm * g * s;
            *dg = dm * u * s * (1.0 + g * (1.0 - s));
        }
    });
}
