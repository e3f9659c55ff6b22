//! The lane exponential and what is built on it (softmax rows and their backward, log-sum-exp, the
//! SiLU gate) against f64 references; NaN passes through; a value's result does not depend on where
//! it sits (full lanes or the padded tail).
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::kernels;

fn data(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Distance in units of the last place of `want` (as f32).
fn ulps(got: f32, want: f64) -> f64 {
    let w = want as f32;
    let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
    (got as f64 - want).abs() / ulp
}

#[test]
fn exp_is_within_two_ulp_over_its_range() {
    // A dense sweep of [-87, 88] and the small arguments softmax sees most.
    let mut xs: Vec<f32> = (0..200_001).map(|i| -87.0 + 175.0 * i as f32 / 200_000.0).collect();
    xs.extend(data(10_001, 3, 1.0));
    xs.extend([0.0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 88.0, -87.3]);
    let mut e = xs.clone();
    kernels::exp(&mut e);
    let worst = xs.iter().zip(&e).map(|(&x, &y)| ulps(y, (x as f64).exp())).fold(0.0, f64::max);
    assert!(worst <= 2.0, "worst error {worst} ulp");
    assert_eq!(e[xs.len() - 8], 1.0, "e^0 is 1 exactly");
}

#[test]
fn exp_clamps_far_arguments_and_keeps_nan() {
    let mut e = vec![-1000.0, f32::NEG_INFINITY, 1000.0, f32::NAN, f32::INFINITY];
    kernels::exp(&mut e);
    assert!(e[0] > 0.0 && e[0] < 2e-38, "e^-1000 → {}", e[0]);
    assert!(e[1] > 0.0 && e[1] < 2e-38, "e^-inf → {}", e[1]);
    assert!(e[2].is_finite() && e[2] > 1e38, "e^1000 → {} (clamped at e^88)", e[2]);
    assert!(e[3].is_nan(), "NaN passes through");
    assert!(e[4].is_finite() && e[4] > 1e38);
}

#[test]
fn a_value_gives_the_same_bits_in_full_lanes_and_in_the_tail() {
    let x = data(11, 5, 20.0);
    let mut all = x.clone();
    kernels::exp(&mut all);
    for (i, &v) in x.iter().enumerate() {
        let mut one = [v];
        kernels::exp(&mut one);
        assert_eq!(one[0].to_bits(), all[i].to_bits(), "value {i}");
    }
}

#[test]
fn row_max_passes_over_nan_like_f32_max() {
    for len in 0..10 {
        let x = data(len, 7, 5.0);
        let want = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(kernels::row_max(&x), want, "length {len}");
    }
    assert_eq!(kernels::row_max(&[1.0, f32::NAN, 3.0, -2.0, f32::NAN]), 3.0);
}

#[test]
fn sum_exp_writes_the_terms_and_sums_them() {
    for len in [0, 1, 3, 4, 5, 8, 263, 264] {
        let x = data(len, len as u64, 6.0);
        let shift = kernels::row_max(&x);
        let mut terms = vec![0.0f32; len];
        let sum = kernels::sum_exp(&x, shift, Some(&mut terms));
        let want: f64 = x.iter().map(|&v| ((v - shift) as f64).exp()).sum();
        assert!((sum as f64 - want).abs() <= 1e-6 * want.max(1.0), "length {len}: {sum} vs {want}");
        assert_eq!(kernels::sum_exp(&x, shift, None).to_bits(), sum.to_bits(), "the same sum without terms");
        for (t, &v) in terms.iter().zip(&x) {
            assert!(ulps(*t, ((v - shift) as f64).exp()) <= 2.0);
        }
    }
    assert!(kernels::sum_exp(&[0.0, f32::NAN, 1.0], 1.0, None).is_nan(), "a NaN logit makes the loss NaN");
}

#[test]
fn softmax_and_its_backward_match_f64() {
    let scale = 1.0 / 32f32.sqrt();
    for len in [1, 2, 3, 4, 5, 17, 64] {
        let x = data(len, 11 + len as u64, 8.0);
        let mut p = x.clone();
        kernels::softmax_scaled(&mut p, scale);
        let m = x.iter().map(|&v| v as f64 * scale as f64).fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = x.iter().map(|&v| (v as f64 * scale as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for (got, want) in p.iter().zip(&e) {
            assert!((*got as f64 - want / s).abs() < 1e-6, "length {len}: {got} vs {}", want / s);
        }
        let g = data(len, 99, 1.0);
        let mut dg = g.clone();
        kernels::softmax_scaled_backward(&p, &mut dg, scale);
        let dot: f64 = g.iter().zip(&p).map(|(&g, &p)| g as f64 * p as f64).sum();
        for ((got, &g), &p) in dg.iter().zip(&g).zip(&p) {
            let want = p as f64 * (g as f64 - dot) * scale as f64;
            assert!((*got as f64 - want).abs() < 1e-6, "length {len}: {got} vs {want}");
        }
    }
}

#[test]
fn silu_gate_and_its_backward_match_f64() {
    for len in [0, 1, 3, 4, 7, 352] {
        let (g, u, dm) = (data(len, 1, 12.0), data(len, 2, 2.0), data(len, 3, 1.0));
        let mut m = vec![0.0f32; len];
        kernels::silu_gate(&g, &u, &mut m);
        let (mut dg, mut du) = (vec![0.0f32; len], vec![0.0f32; len]);
        kernels::silu_gate_backward(&g, &u, &dm, &mut dg, &mut du);
        for i in 0..len {
            let (g, u, dm) = (g[i] as f64, u[i] as f64, dm[i] as f64);
            let s = 1.0 / (1.0 + (-g).exp());
            let close = |got: f32, want: f64| (got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0);
            assert!(close(m[i], g * s * u), "m[{i}] {} vs {}", m[i], g * s * u);
            assert!(close(du[i], dm * g * s), "du[{i}]");
            assert!(close(dg[i], dm * u * s * (1.0 + g * (1.0 - s))), "dg[{i}]");
        }
    }
    let mut m = [0.0f32; 2];
    kernels::silu_gate(&[f32::NAN, 1.0], &[1.0, f32::NAN], &mut m);
    assert!(m[0].is_nan() && m[1].is_nan(), "NaN passes through the gate");
}
