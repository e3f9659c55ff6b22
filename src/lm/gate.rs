//! The gated MLP's middle: `m = silu(g) ⊙ u` (HF: `down_proj(act_fn(gate_proj(x)) * up_proj(x))`),
//! in parallel chunks of the lane loops in `kernels`.

use crate::kernels::{self, par_for, Chunks};

/// Values per parallel chunk (a multiple of 4, so chunking never moves a value into a padded tail).
const CHUNK: usize = 4096;

pub fn forward(g: &[f32], u: &[f32], m: &mut [f32]) {
    let ms = Chunks::new(m, CHUNK);
    par_for(ms.count(), &|c| {
        let m = ms.take(c);
        let r = c * CHUNK..c * CHUNK + m.len();
        kernels::silu_gate(&g[r.clone()], &u[r], m);
    });
}

/// From dm: dg = dm ⊙ u ⊙ silu′(g), du = dm ⊙ silu(g).
pub fn backward(g: &[f32], u: &[f32], dm: &[f32], dg: &mut [f32], du: &mut [f32]) {
    let (dgs, dus) = (Chunks::new(dg, CHUNK), Chunks::new(du, CHUNK));
    par_for(dgs.count(), &|c| {
        let (dg, du) = (dgs.take(c), dus.take(c));
        let r = c * CHUNK..c * CHUNK + dg.len();
        kernels::silu_gate_backward(&g[r.clone()], &u[r.clone()], &dm[r], dg, du);
    });
}
