//! Rotary position embeddings in HF's `rotate_half` layout: within a head, dimension i pairs with
//! i + d/2 (not interleaved); inv_freq_i = θ^(−2i/d); position p rotates pair i by p · inv_freq_i.
//!
//! The projections come out token-major (rows of `heads × d`); attention wants each head's rows
//! together. The same pass that rotates also moves q and k into that head-major layout
//! `(batch, head, position, d)`, and v too, unrotated.

use crate::kernels::{par_for, Chunks};

/// The position of each token of a block of `b` sequences of `t` tokens.
#[derive(Clone, Copy, Debug)]
pub enum Positions<'a> {
    /// Token i of every sequence is at `pos0 + i` (a sequence from its start, or a cache's next tokens).
    From(usize),
    /// Given per token, `b · t` of them: sequences packed with several examples, each from position 0
    /// (TRL's `position_ids` in padding-free packing). Attention stays within each example.
    Each(&'a [u32]),
}

impl Positions<'_> {
    /// The position of token `ti` of sequence `bi`.
    #[inline]
    pub fn of(&self, bi: usize, ti: usize, t: usize) -> usize {
        match self {
            Self::From(p0) => p0 + ti,
            Self::Each(p) => p[bi * t + ti] as usize,
        }
    }

    /// The first key token `ti` of sequence `bi` may attend to: its example's first token.
    #[inline]
    pub fn start(&self, bi: usize, ti: usize, t: usize) -> usize {
        match self {
            Self::From(_) => 0,
            Self::Each(p) => ti - p[bi * t + ti] as usize,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    half: usize,
    /// context × d/2: cos and sin of p · inv_freq_i, as HF computes them in f32.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    pub fn new(head_dim: usize, context: usize, theta: f32) -> Self {
        let half = head_dim / 2;
        // HF: inv_freq = 1 / θ^(arange(0, d, 2) / d) in f32; freqs = position · inv_freq.
        let inv: Vec<f32> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(context * half);
        let mut sin = Vec::with_capacity(context * half);
        for p in 0..context {
            for &f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Self { half, cos, sin }
    }

    /// Positions this table covers.
    pub fn context(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    fn at(&self, p: usize) -> (&[f32], &[f32]) {
        (&self.cos[p * self.half..(p + 1) * self.half], &self.sin[p * self.half..(p + 1) * self.half])
    }

    /// x (b·t rows of heads·d, token-major, at positions `pos`) → out (b, heads, cap, d) at rows
    /// `row0..row0 + t` of each block (a key/value cache holds `cap` positions and stores position p
    /// at row p; queries and a training pass have `row0 = 0`, `cap = t`), rotated when `rotate` (q and
    /// k) or only moved (v).
    #[allow(clippy::too_many_arguments)]
    pub fn to_heads(
        &self,
        x: &[f32],
        out: &mut [f32],
        b: usize,
        t: usize,
        heads: usize,
        d: usize,
        pos: Positions,
        (row0, cap): (usize, usize),
        rotate: bool,
    ) {
        let half = d / 2;
        debug_assert!(row0 + t <= cap);
        debug_assert_eq!(out.len(), b * heads * cap * d);
        let blocks = Chunks::new(out, cap * d);
        par_for(blocks.count(), &|bh| {
            let block = &mut blocks.take(bh)[row0 * d..(row0 + t) * d];
            let (bi, h) = (bh / heads, bh % heads);
            for (ti, o) in block.chunks_exact_mut(d).enumerate() {
                let src = &x[(bi * t + ti) * heads * d + h * d..][..d];
                if !rotate {
                    o.copy_from_slice(src);
                    continue;
                }
                let (cos, sin) = self.at(pos.of(bi, ti, t));
                for i in 0..half {
                    let (x1, x2) = (src[i], src[i + half]);
                    o[i] = x1 * cos[i] - x2 * sin[i];
                    o[i + half] = x2 * cos[i] + x1 * sin[i];
                }
            }
        });
    }

    /// The gradient of `to_heads` for a block of `t` rows at `pos`: `dx` (token-major) = the inverse
    /// rotation of `dout` (head-major), overwriting `dx`.
    #[allow(clippy::too_many_arguments)]
    pub fn back_to_tokens(
        &self,
        dout: &[f32],
        dx: &mut [f32],
        b: usize,
        t: usize,
        heads: usize,
        d: usize,
        pos: Positions,
        rotate: bool,
    ) {
        let half = d / 2;
        let hd = heads * d;
        debug_assert_eq!(dx.len(), b * t * hd);
        let rows = Chunks::new(dx, hd);
        par_for(rows.count(), &|row| {
            let dxr = rows.take(row);
            let (bi, ti) = (row / t, row % t);
            let (cos, sin) = self.at(pos.of(bi, ti, t));
            for (h, dxh) in dxr.chunks_exact_mut(d).enumerate() {
                let g = &dout[((bi * heads + h) * t + ti) * d..][..d];
                if !rotate {
                    dxh.copy_from_slice(g);
                    continue;
                }
                for i in 0..half {
                    let (g1, g2) = (g[i], g[i + half]);
                    dxh[i] = g1 * cos[i] + g2 * sin[i];
                    dxh[i + half] = g2 * cos[i] - g1 * sin[i];
                }
            }
        });
    }
}
