//! Training "as TrainingArguments does it": AdamW, transformers' warmup schedules and global-norm
//! gradient clipping against the PyTorch/transformers fixtures (tests/fixtures/lm/optim.json and
//! schedules.json); AdamW without weight decay is the old Adam bit for bit; bad warmup ratios are
//! refused with a message naming the setting.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::nn::{clip_grad_norm, Adam};
use lora_lab::rng::Stream;
use lora_lab::train::{Schedule, TrainConfig, Trainer};
use lora_lab::LabError;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/lm/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A JSON array of numbers (nested arrays flattened, row-major) as f32: the fixture's floats are the
/// exact values of f32 numbers, so the conversion is exact.
fn f32s(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(f32s).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number: {other}"),
    }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Distance in units in the last place between two finite f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    assert_eq!(a.is_sign_negative(), b.is_sign_negative(), "{a} and {b} differ in sign");
    a.to_bits().abs_diff(b.to_bits())
}

/// A small deterministic generator for test data (values in [-scale, scale)).
fn data(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

// ---------------------------------------------------------------------------------------------------
// AdamW

#[test]
fn adamw_matches_torch_optim_adamw_bit_for_bit_on_the_fixture() {
    let f = fixture("optim.json");
    let a = &f["adamw"];
    assert_eq!(f64s(&a["betas"]), [0.9, 0.999]);
    assert_eq!(a["eps"].as_f64(), Some(1e-8));
    let lr = a["lr"].as_f64().unwrap() as f32;
    let wd = a["weight_decay"].as_f64().unwrap() as f32;
    let mut p = f32s(&a["param0"]);
    let mut adam = Adam::with_weight_decay(&[p.len()], wd, &[true]);
    assert_eq!((adam.beta1, adam.beta2, adam.eps, adam.weight_decay), (0.9, 0.999, 1e-8, wd));
    let grads = a["grads"].as_array().unwrap();
    let after = a["params_after_step"].as_array().unwrap();
    assert_eq!(grads.len(), 3);
    for (k, (g, want)) in grads.iter().zip(after).enumerate() {
        let g = f32s(g);
        adam.step(lr, [&mut p[..]], [&g[..]]);
        let want = f32s(want);
        // 5 elements: 4 through the vector loop, 1 through the scalar tail.
        for (i, (&got, &w)) in p.iter().zip(&want).enumerate() {
            assert_eq!(got.to_bits(), w.to_bits(), "step {}: parameter {i}: {got} vs PyTorch's {w}", k + 1);
        }
    }
    assert_eq!(adam.t, 3);
    // The moments: our β are f32 (0.9f32, 0.999f32, and 1 − β in f32), PyTorch's are Python floats
    // (f64), so the moments differ slightly (m by a few ulp, v by ~1.3e-5 relative: 1 − 0.999f32 is
    // 0.00099998713, PyTorch's f32(1 − 0.999) is 0.00100000005); the parameters above come out the same.
    let (m, v) = adam.moments(0);
    for (i, (&got, &w)) in m.iter().zip(&f32s(&a["exp_avg_final"])).enumerate() {
        assert!(ulps(got, w) <= 4, "exp_avg[{i}]: {got} vs PyTorch's {w}");
    }
    for (i, (&got, &w)) in v.iter().zip(&f32s(&a["exp_avg_sq_final"])).enumerate() {
        assert!(((got - w) / w).abs() < 2e-5, "exp_avg_sq[{i}]: {got} vs PyTorch's {w}");
    }
}

/// The Adam update as it was before weight decay existed (the kernel's scalar loop, verbatim), one
/// element at a time: the reference for "AdamW with wd 0 is the old Adam".
fn old_adam_step(lr: f32, t: u64, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let ti = t as i32;
    let step_size = (lr as f64 / (1.0 - (beta1 as f64).powi(ti))) as f32;
    let inv_bc2_sqrt = (1.0 / (1.0 - (beta2 as f64).powi(ti)).sqrt()) as f32;
    for i in 0..p.len() {
        let mut mi = beta1 * m[i] + (1.0 - beta1) * g[i];
        let mut vi = beta2 * v[i] + (1.0 - beta2) * (g[i] * g[i]);
        if mi.abs() < f32::MIN_POSITIVE {
            mi = 0.0;
        }
        if vi.abs() < f32::MIN_POSITIVE {
            vi = 0.0;
        }
        let denom = vi.sqrt() * inv_bc2_sqrt + eps;
        p[i] -= (step_size * mi) / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

/// The old reference with PyTorch's decoupled decay in front (`p *= 1 − lr·wd`, the factor in f32).
fn adamw_reference(lr: f32, wd: f32, t: u64, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let decay = (1.0 - lr as f64 * wd as f64) as f32;
    p.iter_mut().for_each(|x| *x *= decay);
    old_adam_step(lr, t, p, g, m, v);
}

/// Tensor sizes with vector tails, one tensor over the kernel's 16 Ki-element chunk (so it is split)
/// and an empty one.
const SIZES: [usize; 5] = [7, 40_003, 1, 0, 130];

/// Gradients over several magnitudes; the last tensor's are tiny enough for v to flush to zero.
fn grad(n: usize, t: u64, i: usize) -> Vec<f32> {
    let scale = if i == SIZES.len() - 1 { 1e-22 } else { [1.0, 1e-3, 10.0, 0.5][t as usize % 4] };
    data(n, 1000 * t + i as u64, scale)
}

fn random_run(threads: usize, make: impl Fn(&[usize]) -> Adam + Send, steps: u64) -> (Vec<Vec<f32>>, Adam) {
    in_pool(threads, move || {
        let mut params: Vec<Vec<f32>> = SIZES.iter().enumerate().map(|(i, &n)| data(n, 100 + i as u64, 1.0)).collect();
        let mut adam = make(&SIZES);
        for t in 0..steps {
            let grads: Vec<Vec<f32>> = SIZES.iter().enumerate().map(|(i, &n)| grad(n, t, i)).collect();
            let lr = 1e-2 / (t + 1) as f32;
            adam.step(lr, params.iter_mut().map(|p| &mut p[..]), grads.iter().map(|g| &g[..]));
        }
        (params, adam)
    })
}

fn bits(tensors: &[Vec<f32>]) -> Vec<Vec<u32>> {
    tensors.iter().map(|t| t.iter().map(|x| x.to_bits()).collect()).collect()
}

#[test]
fn adamw_without_weight_decay_is_the_old_adam_bit_for_bit() {
    let steps = 6;
    let (plain, plain_adam) = random_run(1, Adam::new, steps);
    // wd 0 with every flag set, and wd 0 with mixed flags: both are plain Adam.
    let (all, _) = random_run(1, |s| Adam::with_weight_decay(s, 0.0, &[true; 5]), steps);
    let (mixed, _) = random_run(1, |s| Adam::with_weight_decay(s, 0.0, &[true, false, true, false, true]), steps);
    assert!(bits(&all) == bits(&plain), "AdamW(wd 0) differs from Adam");
    assert!(bits(&mixed) == bits(&plain), "AdamW(wd 0, mixed flags) differs from Adam");
    // And Adam is the old update, element by element.
    let mut params: Vec<Vec<f32>> = SIZES.iter().enumerate().map(|(i, &n)| data(n, 100 + i as u64, 1.0)).collect();
    let mut ms: Vec<Vec<f32>> = SIZES.iter().map(|&n| vec![0.0; n]).collect();
    let mut vs = ms.clone();
    for t in 0..steps {
        for (i, &n) in SIZES.iter().enumerate() {
            let g = grad(n, t, i);
            old_adam_step(1e-2 / (t + 1) as f32, t + 1, &mut params[i], &g, &mut ms[i], &mut vs[i]);
        }
    }
    assert!(bits(&plain) == bits(&params), "Adam differs from the old update");
    for i in 0..SIZES.len() {
        let (m, v) = plain_adam.moments(i);
        assert!(bits(&[m.to_vec(), v.to_vec()]) == bits(&[ms[i].clone(), vs[i].clone()]), "moments of tensor {i}");
    }
    // The flush to zero happened (the 1e-22 gradients square below the smallest normal float).
    assert!(vs[4].iter().all(|&x| x == 0.0) && ms[4].iter().all(|&x| x != 0.0));
}

#[test]
fn weight_decay_applies_only_to_flagged_tensors_and_is_the_same_on_any_thread_count() {
    let steps = 5;
    let flags = [true, true, false, false, true];
    let wd = 0.1;
    let make = |s: &[usize]| Adam::with_weight_decay(s, wd, &flags);
    let (one, adam) = random_run(1, make, steps);
    assert_eq!(adam.decays(), flags);
    let (three, _) = random_run(3, make, steps);
    assert!(bits(&one) == bits(&three), "AdamW differs between 1 and 3 threads");
    let (plain, _) = random_run(1, Adam::new, steps);
    // The reference, tensor by tensor: decayed where flagged, plain Adam elsewhere.
    for (i, &n) in SIZES.iter().enumerate() {
        let mut p = data(n, 100 + i as u64, 1.0);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        for t in 0..steps {
            let g = grad(n, t, i);
            let lr = 1e-2 / (t + 1) as f32;
            if flags[i] {
                adamw_reference(lr, wd, t + 1, &mut p, &g, &mut m, &mut v);
            } else {
                old_adam_step(lr, t + 1, &mut p, &g, &mut m, &mut v);
            }
        }
        assert!(bits(&[p]) == bits(&[one[i].clone()]), "tensor {i} (decays: {})", flags[i]);
        if !flags[i] {
            assert!(bits(&[plain[i].clone()]) == bits(&[one[i].clone()]), "undecayed tensor {i} differs from Adam");
        } else if n > 0 {
            assert!(bits(&[plain[i].clone()]) != bits(&[one[i].clone()]), "decay did nothing to tensor {i}");
        }
    }
}

#[test]
#[should_panic(expected = "one weight-decay flag per tensor")]
fn adamw_wants_one_flag_per_tensor() {
    Adam::with_weight_decay(&[3, 4], 0.1, &[true]);
}

// ---------------------------------------------------------------------------------------------------
// Schedules

fn warmup(kind: &str, warmup_ratio: f64) -> Schedule {
    match kind {
        "cosine" => Schedule::CosineWithWarmup { warmup_ratio },
        "linear" => Schedule::LinearWithWarmup { warmup_ratio },
        "constant" => Schedule::ConstantWithWarmup { warmup_ratio },
        _ => unreachable!(),
    }
}

/// A trainer of `total` steps (one epoch, batch 1); it needs no dataset until it steps.
fn trainer(lr: f32, schedule: Schedule, total: usize) -> Result<Trainer, LabError> {
    let cfg = TrainConfig { seed: 1, epochs: 1, batch_size: 1, lr, schedule };
    Trainer::new(cfg, (0..total as u32).collect(), Stream::BaseShuffle, Box::new(|| 0.0))
}

#[test]
fn warmup_schedules_match_transformers() {
    let f = fixture("schedules.json");
    let (w, total) = (f["warmup"].as_u64().unwrap() as usize, f["total"].as_u64().unwrap() as usize);
    assert_eq!((w, total), (3, 20));
    // 0.15 × 20 steps = 3 warmup steps, as TrainingArguments(warmup_ratio=0.15) makes them.
    let ratio = 0.15;
    let lr = 3e-3f32;
    for kind in ["cosine", "linear"] {
        let want = f64s(&f[kind]);
        assert_eq!(want.len(), total + 1);
        let sched = warmup(kind, ratio);
        assert_eq!(sched.warmup_steps(total), w);
        for (s, &m) in want.iter().enumerate() {
            let got = sched.multiplier(s, total);
            assert!((got - m).abs() <= 1e-12, "{kind} step {s}: {got} vs transformers' {m}");
        }
        // Through the trainer: batch `s` (0-based, s optimizer steps taken) runs at lr × multiplier.
        let t = trainer(lr, sched, total).unwrap();
        assert_eq!((t.total_steps(), t.warmup_steps()), (total, w));
        for (s, &m) in want.iter().enumerate().take(total) {
            let got = t.lr_at(s);
            let exact = lr as f64 * m;
            assert!((got as f64 - exact).abs() <= exact * 6e-8, "{kind} lr at step {s}: {got} vs {exact}");
        }
        assert_eq!(t.lr_at(0), 0.0, "{kind}: the first update is at lr 0, as in transformers");
    }
    // Constant with warmup: the same ramp, then 1.
    let c = warmup("constant", ratio);
    let want: Vec<f64> = (0..=total).map(|s| if s < w { s as f64 / w as f64 } else { 1.0 }).collect();
    let got: Vec<f64> = (0..=total).map(|s| c.multiplier(s, total)).collect();
    assert_eq!(got, want);
}

#[test]
fn warmup_steps_round_up_as_training_arguments_does() {
    // math.ceil(total × ratio) in f64: 100 × 0.07 = 7.000000000000001 → 8; 100 × 0.14 → 15;
    // 100 × 0.29 = 28.999999999999996 → 29; 9375 × 0.03 = 281.25 → 282; a ratio of a 1-step run → 1.
    for (ratio, total, want) in [
        (0.07, 100, 8),
        (0.14, 100, 15),
        (0.29, 100, 29),
        (0.03, 100, 3),
        (0.03, 9375, 282),
        (0.03, 1, 1),
        (0.0, 50, 0),
    ] {
        assert_eq!(warmup("cosine", ratio).warmup_steps(total), want, "{ratio} of {total}");
    }
    assert_eq!(Schedule::Cosine.warmup_steps(100), 0);
    assert_eq!(Schedule::Constant.warmup_ratio(), 0.0);
    // No warmup: transformers' cosine is the MLP's cosine, linear goes straight down from lr.
    for s in 0..=40 {
        let (a, b) = (warmup("cosine", 0.0).multiplier(s, 40), Schedule::Cosine.multiplier(s, 40));
        assert!((a - b).abs() <= 1e-15, "step {s}: {a} vs {b}");
        assert_eq!(warmup("linear", 0.0).multiplier(s, 40), (40 - s) as f64 / 40.0);
    }
    // The warmup may fill a whole short run (ceil(0.95 × 10) = 10): the ramp, never above 1.
    let all = warmup("cosine", 0.95);
    assert_eq!(all.warmup_steps(10), 10);
    assert!((0..10).all(|s| all.multiplier(s, 10) == s as f64 / 10.0));
}

#[test]
fn constant_and_cosine_are_unchanged() {
    let lr = 1e-3f32;
    let total = 937;
    let cos = trainer(lr, Schedule::Cosine, total).unwrap();
    let flat = trainer(lr, Schedule::Constant, total).unwrap();
    assert_eq!(cos.warmup_steps(), 0);
    for s in 0..total {
        // The MLP's formula, as it was.
        let t = s as f64 / total as f64;
        let want = (lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32;
        assert_eq!(cos.lr_at(s).to_bits(), want.to_bits(), "cosine at step {s}");
        assert_eq!(flat.lr_at(s), lr);
    }
}

#[test]
fn schedules_read_and_write_as_the_page_sends_them() {
    let read = |s: &str| serde_json::from_str::<Schedule>(s).unwrap();
    assert_eq!(read("\"constant\""), Schedule::Constant);
    assert_eq!(read("\"cosine\""), Schedule::Cosine);
    assert_eq!(
        read(r#"{"cosineWithWarmup": {"warmupRatio": 0.03}}"#),
        Schedule::CosineWithWarmup { warmup_ratio: 0.03 }
    );
    assert_eq!(read(r#"{"linearWithWarmup": {"warmupRatio": 0.1}}"#), Schedule::LinearWithWarmup { warmup_ratio: 0.1 });
    let c = Schedule::ConstantWithWarmup { warmup_ratio: 0.5 };
    assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"constantWithWarmup":{"warmupRatio":0.5}}"#);
    assert_eq!(serde_json::to_string(&Schedule::Cosine).unwrap(), "\"cosine\"");
}

#[test]
fn bad_warmup_ratios_are_refused_naming_the_setting() {
    for (ratio, shown) in [
        (f64::NAN, "NaN"),
        (-0.1, "-0.1"),
        (1.0, "1"),
        (1.5, "1.5"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ] {
        for kind in ["cosine", "linear", "constant"] {
            let sched = warmup(kind, ratio);
            let e = sched.validate().unwrap_err();
            assert_eq!(e, LabError::setting("warmup ratio", format!("{shown} is not in [0, 1)")), "{kind} {ratio}");
            assert_eq!(e.to_string(), format!("invalid warmup ratio: {shown} is not in [0, 1)"));
            // Refused before any work starts, by the config and by the trainer.
            let cfg = TrainConfig { seed: 1, epochs: 1, batch_size: 1, lr: 1e-3, schedule: sched };
            assert_eq!(cfg.validate(10).unwrap_err(), e);
            assert_eq!(trainer(1e-3, sched, 10).err(), Some(e));
        }
    }
    for ok in [0.0, 0.03, 0.5, 0.999_999] {
        assert!(trainer(1e-3, warmup("cosine", ok), 10).is_ok(), "{ok}");
    }
    // Other settings are still checked first, as before.
    let e = trainer(0.0, warmup("cosine", f64::NAN), 10).err().unwrap();
    assert!(matches!(&e, LabError::BadSetting { name, .. } if name == "learning rate"), "{e}");
}

// ---------------------------------------------------------------------------------------------------
// Gradient clipping

#[test]
fn clip_grad_norm_matches_torch_on_the_fixture() {
    let f = fixture("optim.json");
    let c = &f["clip_grad_norm"];
    assert_eq!(c["norm_type"].as_f64(), Some(2.0));
    let max_norm = c["max_norm"].as_f64().unwrap() as f32;
    let mut a = f32s(&c["grads"]["a"]);
    let mut b = f32s(&c["grads"]["b"]);
    let total = clip_grad_norm(&mut [&mut a[..], &mut b[..]], max_norm);
    let want = c["total_norm"].as_f64().unwrap() as f32;
    assert_eq!(total.to_bits(), want.to_bits(), "total norm {total} vs PyTorch's {want}");
    for (name, got) in [("a", &a), ("b", &b)] {
        let want = f32s(&c["clipped"][name]);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "clipped {name}[{i}]: {g} vs PyTorch's {w}");
        }
    }
}

#[test]
fn clip_grad_norm_leaves_small_and_non_finite_gradients_alone() {
    // Below the limit: the norm is returned and nothing changes.
    let mut a = vec![0.3f32, -0.4];
    let mut b = [0.0f32; 3];
    assert_eq!(clip_grad_norm(&mut [&mut a[..], &mut b[..]], 1.0), 0.5);
    assert_eq!(a, [0.3, -0.4]);
    // Exactly at the limit the coefficient is 1 / (1 + 1e-6) < 1, as in PyTorch: a tiny scaling.
    let mut unit = [0.6f32, 0.8];
    let n = clip_grad_norm(&mut [&mut unit[..]], 1.0);
    assert_eq!(n, 1.0);
    assert!(unit[0] < 0.6 && unit[0] > 0.599_999);
    // Nothing at all: norm 0.
    assert_eq!(clip_grad_norm(&mut [], 1.0), 0.0);
    assert_eq!(clip_grad_norm(&mut [&mut [][..]], 1.0), 0.0);
    // Non-finite: the norm says so and the gradients stay as they were (the step is skipped).
    for bad in [f32::NAN, f32::INFINITY] {
        let mut g = [1.0f32, bad, 3.0];
        let before: Vec<u32> = g.iter().map(|x| x.to_bits()).collect();
        let n = clip_grad_norm(&mut [&mut g[..]], 1.0);
        assert!(!n.is_finite(), "{bad}: norm {n}");
        assert_eq!(g.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), before);
    }
    // Squares that overflow f32 do not overflow the f64 sums: the norm of [3e20, 4e20] is 5e20.
    let mut big = vec![3e20f32, 4e20];
    assert_eq!(clip_grad_norm(&mut [&mut big[..]], 1.0), 5e20);
    assert!((big[0] - 0.6).abs() < 1e-6 && (big[1] - 0.8).abs() < 1e-6, "{big:?}");
}

#[test]
fn clip_grad_norm_is_accurate_and_the_same_on_any_thread_count() {
    let sizes = [100_003usize, 5, 16_384, 33_000, 0, 7];
    let make = || -> Vec<Vec<f32>> { sizes.iter().enumerate().map(|(i, &n)| data(n, 7 + i as u64, 0.5)).collect() };
    let run = |threads: usize| {
        in_pool(threads, || {
            let mut g = make();
            let n = clip_grad_norm(&mut g.iter_mut().map(|t| &mut t[..]).collect::<Vec<_>>(), 1.0);
            (n, g)
        })
    };
    let (n1, g1) = run(1);
    let (n3, g3) = run(3);
    assert_eq!(n1.to_bits(), n3.to_bits());
    assert!(bits(&g1) == bits(&g3), "clipped gradients differ between 1 and 3 threads");
    // Against the norm in f64 of all the elements at once.
    let orig = make();
    let exact = orig.iter().flatten().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    assert!((n1 as f64 - exact).abs() <= exact * 1e-7, "{n1} vs {exact}");
    assert!(n1 > 1.0);
    let coef = (1.0 / (n1 + 1e-6)) * 1.0;
    for (t, o) in g1.iter().zip(&orig) {
        assert!(t.iter().zip(o).all(|(&c, &x)| c.to_bits() == (x * coef).to_bits()));
    }
    let clipped = g1.iter().flatten().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    assert!((clipped - 1.0).abs() < 1e-5, "norm after clipping {clipped}");
}
