//! The exponential and what the language model builds on it — softmax rows, their backward, the
//! log-sum-exp of the loss, the SiLU gate — as 4-lane loops (the scalar `expf` of Rust's libm cost
//! V8 about 5 ns a value: a tenth of a training step went to it).
//!
//! `exp4` is Cephes' `expf`: n = round(x·log₂e), r = x − n·ln 2 (ln 2 in two parts), a degree-5
//! polynomial for e^r, times 2ⁿ built in the exponent field; within 2 ulp of the exact value over
//! the clamped range [−87.3, 88], NaN passing through. Every value goes through the same lanes
//! (tails padded), so a result never depends on where a value sits nor on how work is split.

use super::dot::{dot, hsum};
use super::lane::F32x4;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = C1 + C2, C1 exact in 9 bits so n·C1 is exact.
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding and subtracting it rounds to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// e^88 ≈ 1.65e38 is the largest power taken (2¹²⁷ stays normal); below −87.3 the result is about
/// 1.2e-38, where the smallest normal float is.
const HI: f32 = 88.0;
const LO: f32 = -87.3;
const P: [f32; 6] = [1.987_569_1e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];

/// e^x in each lane.
#[inline(always)]
fn exp4(x: F32x4) -> F32x4 {
    let x = x.min(F32x4::splat(HI)).max(F32x4::splat(LO));
    let round = F32x4::splat(ROUND);
    let n = x.mul(F32x4::splat(LOG2E)).add(round).sub(round);
    let r = x.sub(n.mul(F32x4::splat(C1))).sub(n.mul(F32x4::splat(C2)));
    let mut y = F32x4::splat(P[0]);
    for &c in &P[1..] {
        y = F32x4::mul_add(y, r, F32x4::splat(c));
    }
    let y = F32x4::mul_add(y, r.mul(r), r.add(F32x4::splat(1.0)));
    y.mul(n.pow2i())
}

/// `f` over `x` four values at a time; the last, short group padded with `pad` and only its real
/// values written back.
#[inline(always)]
fn map_lanes(x: &mut [f32], pad: f32, mut f: impl FnMut(F32x4) -> F32x4) {
    let n4 = x.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n4 <= len.
        unsafe { f(F32x4::load(x.as_ptr().add(i))).store(x.as_mut_ptr().add(i)) };
    }
    if n4 < x.len() {
        let tail = &mut x[n4..];
        let mut buf = [pad; 4];
        buf[..tail.len()].copy_from_slice(tail);
        // SAFETY: buf holds 4 floats.
        let out = unsafe { f(F32x4::load(buf.as_ptr())) }.to_array();
        tail.copy_from_slice(&out[..tail.len()]);
    }
}

/// e^x of each value, in place.
pub fn exp(x: &mut [f32]) {
    map_lanes(x, 0.0, exp4);
}

/// The largest value (NaNs are passed over, as `f32::max` passes them; −∞ for an empty slice).
pub fn max(x: &[f32]) -> f32 {
    let mut acc = F32x4::splat(f32::NEG_INFINITY);
    let n4 = x.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        // pmax(acc, v) keeps acc where v is NaN. SAFETY: i + 4 <= n4 <= len.
        acc = acc.max(unsafe { F32x4::load(x.as_ptr().add(i)) });
    }
    let a = acc.to_array();
    a.iter().chain(&x[n4..]).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// Σ e^(xᵢ − shift), and with `out` each term written there: lane-wise partial sums over the
/// values in order, added as `hsum` adds them. A NaN among the values makes the sum NaN.
pub fn sum_exp(x: &[f32], shift: f32, mut out: Option<&mut [f32]>) -> f32 {
    if let Some(o) = out.as_deref() {
        assert_eq!(o.len(), x.len(), "sum_exp: out length");
    }
    let s = F32x4::splat(shift);
    let mut acc = F32x4::splat(0.0);
    let n4 = x.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n4 <= len of x (and of out, checked above).
        unsafe {
            let e = exp4(F32x4::load(x.as_ptr().add(i)).sub(s));
            if let Some(o) = out.as_deref_mut() {
                e.store(o.as_mut_ptr().add(i));
            }
            acc = acc.add(e);
        }
    }
    if n4 < x.len() {
        let tail = &x[n4..];
        let mut buf = [0.0f32; 4];
        buf[..tail.len()].copy_from_slice(tail);
        // SAFETY: buf holds 4 floats.
        let mut e = exp4(unsafe { F32x4::load(buf.as_ptr()) }.sub(s)).to_array();
        e[tail.len()..].fill(0.0);
        if let Some(o) = out {
            o[n4..].copy_from_slice(&e[..tail.len()]);
        }
        // SAFETY: e holds 4 floats.
        acc = acc.add(unsafe { F32x4::load(e.as_ptr()) });
    }
    hsum(acc)
}

/// `x *= s`, in place.
pub fn scale(x: &mut [f32], s: f32) {
    let sv = F32x4::splat(s);
    map_lanes(x, 0.0, |v| v.mul(sv));
}

/// Softmax of `x · scale` in place (softmax(z) = e^(z − max z) / Σ, the sum's reciprocal multiplied).
pub fn softmax_scaled(x: &mut [f32], scale: f32) {
    // scale > 0 keeps the order, so the largest scaled value is the largest value scaled.
    let m = max(x) * scale;
    let (sv, mv) = (F32x4::splat(scale), F32x4::splat(m));
    map_lanes(x, 0.0, |v| exp4(v.mul(sv).sub(mv)));
    let sum = sum_plain(x);
    self::scale(x, 1.0 / sum);
}

/// Σ x in lanes, as `sum_exp` adds.
fn sum_plain(x: &[f32]) -> f32 {
    let mut acc = F32x4::splat(0.0);
    let n4 = x.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n4 <= len.
        acc = acc.add(unsafe { F32x4::load(x.as_ptr().add(i)) });
    }
    hsum(acc) + x[n4..].iter().sum::<f32>()
}

/// The backward of `softmax_scaled` given its output `p`: g ← p ⊙ (g − Σ g ⊙ p) · scale, in place.
pub fn softmax_scaled_backward(p: &[f32], g: &mut [f32], scale: f32) {
    assert_eq!(p.len(), g.len(), "softmax_scaled_backward: lengths differ");
    let d = F32x4::splat(dot(g, p));
    let sv = F32x4::splat(scale);
    let n4 = g.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n4 <= len of both.
        unsafe {
            let pv = F32x4::load(p.as_ptr().add(i));
            let gv = F32x4::load(g.as_ptr().add(i));
            pv.mul(gv.sub(d)).mul(sv).store(g.as_mut_ptr().add(i));
        }
    }
    let (d, s) = (d.to_array()[0], scale);
    for (g, &p) in g[n4..].iter_mut().zip(&p[n4..]) {
        *g = p * (*g - d) * s;
    }
}

/// σ(x) = 1 / (1 + e^−x).
#[inline(always)]
fn sigmoid4(x: F32x4) -> F32x4 {
    let one = F32x4::splat(1.0);
    one.div(one.add(exp4(F32x4::splat(0.0).sub(x))))
}

/// `m = silu(g) ⊙ u` with silu(x) = x·σ(x) (HF's `act_fn(gate_proj(x)) * up_proj(x)`).
pub fn silu_gate(g: &[f32], u: &[f32], m: &mut [f32]) {
    assert!(g.len() == m.len() && u.len() == m.len(), "silu_gate: lengths differ");
    for_lanes(m.len(), [g, u], |i, [gv, uv]| {
        let out = gv.mul(sigmoid4(gv)).mul(uv);
        store_at(m, i, out);
    });
}

/// From dm: dg = dm ⊙ u ⊙ silu′(g), du = dm ⊙ silu(g), with silu′(x) = σ(x)·(1 + x·(1 − σ(x))).
pub fn silu_gate_backward(g: &[f32], u: &[f32], dm: &[f32], dg: &mut [f32], du: &mut [f32]) {
    let n = g.len();
    assert!(u.len() == n && dm.len() == n && dg.len() == n && du.len() == n, "silu_gate_backward: lengths differ");
    let one = F32x4::splat(1.0);
    for_lanes(n, [g, u, dm], |i, [gv, uv, dmv]| {
        let s = sigmoid4(gv);
        store_at(du, i, dmv.mul(gv).mul(s));
        store_at(dg, i, dmv.mul(uv).mul(s).mul(one.add(gv.mul(one.sub(s)))));
    });
}

/// Calls `f(i, lanes of each input at i)` for i = 0, 4, 8, …; the short last group is read padded
/// with zeros.
#[inline(always)]
fn for_lanes<const N: usize>(len: usize, inputs: [&[f32]; N], mut f: impl FnMut(usize, [F32x4; N])) {
    let n4 = len / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n4 <= len of every input (the callers check the lengths).
        f(i, inputs.map(|x| unsafe { F32x4::load(x.as_ptr().add(i)) }));
    }
    if n4 < len {
        f(
            n4,
            inputs.map(|x| {
                let mut buf = [0.0f32; 4];
                buf[..len - n4].copy_from_slice(&x[n4..len]);
                // SAFETY: buf holds 4 floats.
                unsafe { F32x4::load(buf.as_ptr()) }
            }),
        );
    }
}

/// Stores the lanes of `v` at `out[i..]`, as many as fit.
#[inline(always)]
fn store_at(out: &mut [f32], i: usize, v: F32x4) {
    if i + 4 <= out.len() {
        // SAFETY: four floats from i are inside out.
        unsafe { v.store(out.as_mut_ptr().add(i)) };
    } else {
        let a = v.to_array();
        let rest = out.len() - i;
        out[i..].copy_from_slice(&a[..rest]);
    }
}
