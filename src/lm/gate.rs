//! The gated MLP's middle: `m = silu(g) ⊙ u` (HF: `down_proj(act_fn(gate_proj(x)) * up_proj(x))`),
//! in parallel chunks of the lane loops in `kernels`.

use rayon::prelude::*;

use crate::kernels;

/// Values per parallel chunk (a multiple of 4, so chunking never moves a value into a padded tail).
const CHUNK: usize = 4096;

pub fn forward(g: &[f32], u: &[f32], m: &mut [f32]) {
    m.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(u.par_chunks(CHUNK))
        .for_each(|((m, g), u)| kernels::silu_gate(g, u, m));
}

/// From dm: dg = dm ⊙ u ⊙ silu′(g), du = dm ⊙ silu(g).
pub fn backward(g: &[f32], u: &[f32], dm: &[f32], dg: &mut [f32], du: &mut [f32]) {
    dg.par_chunks_mut(CHUNK).zip(du.par_chunks_mut(CHUNK)).enumerate().for_each(|(c, (dg, du))| {
        let r = c * CHUNK..c * CHUNK + dg.len();
        kernels::silu_gate_backward(&g[r.clone()], &u[r.clone()], &dm[r], dg, du);
    });
}
