//! The network's gradients against finite differences; loss and init against their definitions.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::nn::{self, Activations, GradNeeds, Mlp, MlpGrads, CLASSES, INPUT};
use lora_lab::rng::{Rng, Stream};

fn batch(b: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut r = Rng::new(seed, Stream::BaseShuffle);
    let x = (0..b * INPUT).map(|_| r.uniform_in(-1.0, 1.0)).collect();
    let y = (0..b).map(|_| r.below(10) as u8).collect();
    (x, y)
}

/// The loss, and which hidden units are active: a finite difference is only valid where that
/// pattern is the same on both sides (no ReLU kink crossed).
fn loss_of(mlp: &Mlp, x: &[f32], y: &[u8]) -> (f64, Vec<bool>) {
    let mut acts = Activations::new(y.len());
    acts.input_mut().copy_from_slice(x);
    mlp.forward(&mut acts, None);
    let mut d = vec![0.0; y.len() * CLASSES];
    let mask = acts.xs[1].iter().chain(&acts.xs[2]).map(|&v| v > 0.0).collect();
    (nn::softmax_cross_entropy(acts.logits(), y, &mut d, CLASSES) as f64, mask)
}

#[test]
fn mlp_gradients_match_finite_differences() {
    let mut mlp = Mlp::new(&mut Rng::new(3, Stream::BaseInit));
    let (x, y) = batch(4, 9);
    let mut acts = Activations::new(4);
    acts.input_mut().copy_from_slice(&x);
    mlp.forward(&mut acts, None);
    let mut dlogits = vec![0.0; 4 * CLASSES];
    nn::softmax_cross_entropy(acts.logits(), &y, &mut dlogits, CLASSES);
    let mut grads = MlpGrads::zeros(&mlp);
    mlp.backward(&acts, &dlogits, &mut grads, GradNeeds::ALL, None);
    let analytic: Vec<Vec<f32>> = grads.tensors().iter().map(|g| g.to_vec()).collect();

    let eps = 1e-2f32;
    let mut pick = Rng::new(1, Stream::Dropout);
    let mut checked = 0;
    for (t, analytic) in analytic.iter().enumerate() {
        let len = mlp.params()[t].len();
        let mut done = 0;
        while done < 12 {
            let i = pick.below(len as u32) as usize;
            let orig = mlp.params()[t][i];
            mlp.params_mut()[t][i] = orig + eps;
            let (lp, mask_p) = loss_of(&mlp, &x, &y);
            mlp.params_mut()[t][i] = orig - eps;
            let (lm, mask_m) = loss_of(&mlp, &x, &y);
            mlp.params_mut()[t][i] = orig;
            if mask_p != mask_m {
                continue;
            }
            done += 1;
            let fd = (lp - lm) / (2.0 * eps as f64);
            let g = analytic[i] as f64;
            assert!(
                (fd - g).abs() <= 2e-3 * fd.abs().max(g.abs()) + 2e-4,
                "tensor {t} index {i}: finite difference {fd}, backward {g}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 72);
}

#[test]
fn frozen_layers_get_no_gradient_work() {
    let mlp = Mlp::new(&mut Rng::new(3, Stream::BaseInit));
    let (x, y) = batch(3, 2);
    let mut acts = Activations::new(3);
    acts.input_mut().copy_from_slice(&x);
    mlp.forward(&mut acts, None);
    let mut d = vec![0.0; 3 * CLASSES];
    nn::softmax_cross_entropy(acts.logits(), &y, &mut d, CLASSES);
    let mut all = MlpGrads::zeros(&mlp);
    mlp.backward(&acts, &d, &mut all, GradNeeds::ALL, None);
    let mut last = MlpGrads::zeros(&mlp);
    let only_last = GradNeeds { weight: [false, false, true], bias: [false, false, true] };
    mlp.backward(&acts, &d, &mut last, only_last, None);
    assert_eq!(last.tensors()[4], all.tensors()[4]);
    assert_eq!(last.tensors()[5], all.tensors()[5]);
    assert!(last.tensors()[0].iter().all(|&v| v == 0.0), "frozen layers.1 weight got a gradient");
}

#[test]
fn cross_entropy_matches_its_definition() {
    let logits =
        [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1000.0, -1000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let labels = [2u8, 1];
    let mut d = [0.0f32; 20];
    let loss = nn::softmax_cross_entropy(&logits, &labels, &mut d, 10);
    let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp() + 7.0).ln();
    let want = ((lse0 - 3.0) + 2000.0) / 2.0; // the second row is huge but finite: no overflow
    assert!((loss as f64 - want).abs() < 1e-3, "loss {loss}, want {want}");
    assert!(d.iter().all(|v| v.is_finite()));
    // Gradient rows sum to zero.
    assert!(d[..10].iter().sum::<f32>().abs() < 1e-6 && d[10..].iter().sum::<f32>().abs() < 1e-6);
}

#[test]
fn pytorch_default_init_bounds_and_parameter_count() {
    let mlp = Mlp::new(&mut Rng::new(13, Stream::BaseInit));
    assert_eq!(mlp.num_params(), 535_818);
    for l in &mlp.layers {
        let bound = 1.0 / (l.in_features as f32).sqrt();
        assert!(l.weight.iter().chain(&l.bias).all(|v| v.abs() <= bound));
        let mean_abs = l.weight.iter().map(|v| v.abs() as f64).sum::<f64>() / l.weight.len() as f64;
        assert!((mean_abs - bound as f64 / 2.0).abs() < 0.02 * bound as f64, "U(±b) has mean |w| = b/2");
    }
}
