#![cfg(not(target_arch = "wasm32"))]
//! The checkpointed adapter pass (`Llama::sft_pass`: layer inputs kept, layers recomputed in the
//! backward with the same dropout draws, the loss only at target rows in chunks) against the plain
//! path (`forward` keeping every activation, the loss over all logits, `backward`): the same loss and
//! the same adapter gradients, with and without dropout, on a grouped-query model with tied
//! embeddings like SmolLM2's.

use lora_lab::lm::{loss, Llama, LmActivations, LmConfig, LmGrads, SftActivations, SftBatch, LOSS_ROWS};
use lora_lab::lora::{Adapter, Bias, Init, LoraConfig, Scaling};
use lora_lab::rng::{Rng, Stream};

fn smol_like(seed: u64, vocab: usize) -> Llama {
    let cfg = LmConfig {
        hidden: 32,
        intermediate: 40,
        layers: 3,
        heads: 4,
        kv_group: 2,
        head_dim: 8,
        context: 64,
        vocab,
        tie_embeddings: true,
        init_std: 0.2,
        ..LmConfig::tiny()
    };
    cfg.validate("test").unwrap();
    let mut m = Llama::new(cfg, seed);
    let mut r = Rng::new(seed, Stream::Replay);
    for n in m.norms.iter_mut().flatten().chain(std::iter::once(&mut m.final_norm)) {
        n.iter_mut().for_each(|v| *v = 1.0 + 0.3 * r.normal());
    }
    m
}

/// LoRA on the q/k/v and down projections of layers 1 and 2 (layer 0 untouched: the backward stops
/// above it), both factors random so every gradient is non-zero.
fn adapter(model: &Llama, dropout: f32) -> Adapter {
    adapter_on(model, dropout, &["q_proj", "k_proj", "v_proj", "down_proj"])
}

/// `adapter` on the named projections.
fn adapter_on(model: &Llama, dropout: f32, modules: &[&str]) -> Adapter {
    let names = model.cfg.linear_modules();
    let targets: Vec<usize> = (0..names.len())
        .filter(|&i| {
            let n = &names[i].0;
            !n.contains("layers.0.") && modules.iter().any(|m| n.ends_with(m))
        })
        .collect();
    let cfg = LoraConfig {
        targets,
        rank: 4,
        alpha: 8.0,
        scaling: Scaling::Peft,
        dropout,
        bias: Bias::None,
        init: Init::Default,
    };
    let mut a = Adapter::new("t", cfg, model, 3).unwrap();
    let mut r = Rng::new(9, Stream::AdapterInit);
    for l in &mut a.layers {
        l.lora_b.iter_mut().for_each(|v| *v = 0.2 * r.normal());
    }
    a
}

/// Two sequences of 20, loss on about half the positions (a completion-only batch), one sequence
/// padded at its end (no targets there).
fn batch(vocab: usize) -> (Vec<u32>, Vec<Option<u32>>) {
    let mut r = Rng::new(5, Stream::Replay);
    let ids: Vec<u32> = (0..40).map(|_| r.below(vocab as u32)).collect();
    let mut targets = vec![None; 40];
    for s in 0..2 {
        let end = if s == 0 { 20 } else { 15 };
        for i in 8..end - 1 {
            targets[s * 20 + i] = Some(ids[s * 20 + i + 1]);
        }
    }
    (ids, targets)
}

/// The plain path: every activation, all logits, `backward` → (summed loss, lora grads).
fn plain(model: &Llama, a: &mut Adapter, ids: &[u32], targets: &[Option<u32>], denom: usize) -> (f64, Vec<Vec<f32>>) {
    let mut acts = LmActivations::default();
    model.forward(ids, 2, 20, &mut acts, Some(a)).unwrap();
    let mut dlogits = vec![0.0; acts.logits.len()];
    let sum = loss::cross_entropy_part(&acts.logits, model.cfg.vocab, targets, &mut dlogits, denom);
    let mut grads = LmGrads::zeros(model);
    model.backward(&acts, &dlogits, &mut grads, false, Some(a));
    (sum, grads_of(a))
}

/// `b` sequences of `t` tokens, each one example from position 0.
fn one<'a>(ids: &'a [u32], b: usize, t: usize, targets: &'a [Option<u32>]) -> SftBatch<'a> {
    SftBatch { ids, b, t, targets, positions: None }
}

fn grads_of(a: &Adapter) -> Vec<Vec<f32>> {
    a.layers.iter().flat_map(|l| [l.grad_a.clone(), l.grad_b.clone()]).collect()
}

fn assert_close(what: &str, ours: &[Vec<f32>], theirs: &[Vec<f32>]) {
    let scale = theirs.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-4, "{what}: the gradients are all zero");
    let worst = ours.iter().flatten().zip(theirs.iter().flatten()).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-5 * scale, "{what}: gradients differ by {worst} (largest {scale})");
}

#[test]
fn the_checkpointed_pass_gives_the_plain_paths_loss_and_gradients() {
    // A vocabulary over LOSS_ROWS wide rows is not needed; more target rows than one chunk are.
    let model = smol_like(1, 300);
    let (ids, targets) = batch(300);
    let count = targets.iter().flatten().count();
    assert!(count < LOSS_ROWS * 2 && count > 10, "{count} target rows");
    // Without a delta on o_proj the recomputed layers skip the attention's sum of values and o_proj;
    // with one (and on every projection) they run its delta, with the same dropout draws.
    let all = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    // Gate's and up's outputs kept for no layer, the lowest one, and both recomputed ones (of 3).
    let one_layer = 2 * 4 * 40 * model.cfg.intermediate;
    for (budget, kept) in [(0, 0), (one_layer, 1), (2 * one_layer + 1, 2)] {
        for (modules, dropout) in [(&all[..3], 0.0), (&all[..3], 0.1), (&all[..], 0.0), (&all[..], 0.1)] {
            let what = format!("{modules:?}, dropout {dropout}, gate and up kept for {kept}");
            let mut a = adapter_on(&model, dropout, modules);
            a.set_training(Some(7));
            let mut b = a.clone();
            let (sum, g_plain) = plain(&model, &mut a, &ids, &targets, count);
            let mut acts = SftActivations::with_kept_gate_up_bytes(budget);
            let (sum2, rows) =
                model.sft_pass(&one(&ids, 2, 20, &targets), count, &mut acts, Some(&mut b), true).unwrap();
            assert_eq!((rows, acts.kept_gate_up_layers()), (count, kept), "{what}");
            assert!((sum - sum2).abs() <= 1e-5 * sum.abs(), "{what}: loss {sum} vs {sum2}");
            assert_close(&what, &grads_of(&b), &g_plain);
            // The next batch draws fresh masks from where the plain path's stream stands.
            assert_eq!(a.take_training(), b.take_training(), "{what}");
        }
    }
}

#[test]
fn kept_gate_and_up_stay_within_their_budget_at_the_most_rows_seen() {
    let model = smol_like(1, 300);
    let per_row = 2 * 4 * model.cfg.intermediate;
    let mut a = adapter_on(&model, 0.0, &["q_proj", "v_proj"]);
    let mut acts = SftActivations::with_kept_gate_up_bytes(per_row * 60);
    let mut pass = |t: usize, acts: &mut SftActivations| {
        let ids: Vec<u32> = (0..2 * t as u32).map(|i| i * 7 % 300).collect();
        let targets = loss::targets(&ids, t, u32::MAX);
        model.sft_pass(&one(&ids, 2, t, &targets), 1, acts, Some(&mut a), true).unwrap();
        acts.kept_gate_up_layers()
    };
    assert_eq!(pass(15, &mut acts), 2, "30 rows: room for both recomputed layers");
    assert_eq!(pass(30, &mut acts), 1, "60 rows: room for one");
    // Back at 30 rows the buffers may have grown to 60 rows: still one layer's worth.
    assert_eq!(pass(15, &mut acts), 1, "the most rows seen, not the batch's, set how many fit");
    assert_eq!(pass(31, &mut acts), 0, "62 rows: no room");
}

#[test]
fn evaluation_gives_the_training_passs_loss_and_touches_no_gradient() {
    let model = smol_like(2, 300);
    let (ids, targets) = batch(300);
    let count = targets.iter().flatten().count();
    let mut a = adapter(&model, 0.0);
    let mut acts = SftActivations::default();
    let (train, _) = model.sft_pass(&one(&ids, 2, 20, &targets), count, &mut acts, Some(&mut a), true).unwrap();
    let before = grads_of(&a);
    let mut eval = SftActivations::default();
    let (sum, rows) = model.sft_pass(&one(&ids, 2, 20, &targets), count, &mut eval, Some(&mut a), false).unwrap();
    assert_eq!((sum.to_bits(), rows), (train.to_bits(), count));
    assert_eq!(grads_of(&a), before);
    assert!(eval.bytes() < acts.bytes(), "evaluation keeps two layer buffers, training all of them");
}

#[test]
fn a_pass_with_many_target_rows_runs_the_loss_in_chunks() {
    // 2 × 40 tokens, every one a target: more rows than one chunk.
    let model = smol_like(3, 300);
    let mut r = Rng::new(1, Stream::Replay);
    let ids: Vec<u32> = (0..80).map(|_| r.below(300)).collect();
    let targets: Vec<Option<u32>> = loss::targets(&ids, 40, u32::MAX);
    let count = targets.iter().flatten().count();
    assert!(count > LOSS_ROWS);
    let mut a = adapter(&model, 0.0);
    let mut acts = LmActivations::default();
    model.forward(&ids, 2, 40, &mut acts, Some(&mut a)).unwrap();
    let mut dlogits = vec![0.0; acts.logits.len()];
    let sum = loss::cross_entropy_part(&acts.logits, 300, &targets, &mut dlogits, count);
    model.backward(&acts, &dlogits, &mut LmGrads::zeros(&model), false, Some(&mut a));
    let g_plain = grads_of(&a);
    let mut sacts = SftActivations::default();
    let (sum2, _) = model.sft_pass(&one(&ids, 2, 40, &targets), count, &mut sacts, Some(&mut a), true).unwrap();
    assert!((sum - sum2).abs() <= 1e-5 * sum.abs(), "loss {sum} vs {sum2}");
    assert_close("chunked", &grads_of(&a), &g_plain);
}

#[test]
fn bad_targets_are_refused() {
    let model = smol_like(4, 300);
    let ids = vec![1u32; 10];
    let mut acts = SftActivations::default();
    let err = model.sft_pass(&one(&ids, 1, 10, &[Some(300); 10]), 10, &mut acts, None, false).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    let err = model.sft_pass(&one(&ids, 1, 10, &[None; 9]), 10, &mut acts, None, false).unwrap_err();
    assert!(err.to_string().contains("9 targets for 10"), "{err}");
}

/// Examples of 7, 9 and 5 tokens, each with its loss on its last tokens.
fn three_examples(vocab: u32) -> Vec<(Vec<u32>, Vec<bool>)> {
    let mut r = Rng::new(11, Stream::Replay);
    [7usize, 9, 5]
        .iter()
        .map(|&len| ((0..len).map(|_| r.below(vocab)).collect(), (0..len).map(|i| i >= 2).collect()))
        .collect()
}

/// TRL's padding-free packing: examples packed in one sequence, positions restarting at each, attention
/// within each — the same loss and adapter gradients as each example in a sequence of its own.
#[test]
fn packed_examples_train_as_if_each_were_alone() {
    use lora_lab::train::{Objective, SftData, SftObjective, SftState};
    let model = smol_like(6, 300);
    let ex = three_examples(300);
    let step = |data: &SftData, batch: &[u32], micro: usize| {
        let mut a = adapter(&model, 0.0);
        let mut state = SftState::new(&a, 0.0, micro);
        let mut obj = SftObjective { base: &model, adapter: &mut a, state: &mut state };
        // lr 0: the step leaves the adapter as it was and its gradients in place
        let loss = obj.train_batch(data, batch, 0.0).unwrap();
        (loss, grads_of(&a))
    };
    let alone = SftData::new(ex.iter().map(|(i, t)| (&i[..], &t[..])), 300).unwrap();
    // [A, B] in one sequence, C alone (padded to 16 beside it)
    let ids_ab: Vec<u32> = ex[0].0.iter().chain(&ex[1].0).copied().collect();
    let tr_ab: Vec<bool> = ex[0].1.iter().chain(&ex[1].1).copied().collect();
    let packed =
        SftData::packed([(&ids_ab[..], &tr_ab[..], &[7usize, 9][..]), (&ex[2].0[..], &ex[2].1[..], &[][..])], 300)
            .unwrap();
    assert_eq!((packed.total_targets(), alone.total_targets()), (5 + 7 + 3, 15), "B's first token is not A's target");
    let (l1, g1) = step(&alone, &[0, 1, 2], 3);
    let (l2, g2) = step(&packed, &[0, 1], 2);
    assert!((l1 - l2).abs() <= 1e-6 * l1.abs(), "loss alone {l1}, packed {l2}");
    assert_close("packed", &g2, &g1);

    // Without the positions the same sequence is one long example: B reads A, and the numbers move.
    let wrapped = SftData::new([(&ids_ab[..], &tr_ab[..]), (&ex[2].0[..], &ex[2].1[..])], 300).unwrap();
    let (l3, _) = step(&wrapped, &[0, 1], 2);
    assert!((l3 - l1).abs() > 1e-4 * l1.abs(), "attention across the examples changes the loss: {l1} vs {l3}");
}

#[test]
fn packed_lengths_and_positions_that_do_not_fit_are_refused() {
    use lora_lab::train::SftData;
    let ids = [1u32, 2, 3, 4];
    let tr = [false, true, true, true];
    let err = SftData::packed([(&ids[..], &tr[..], &[3usize, 2][..])], 300).unwrap_err().to_string();
    assert!(err.contains("[3, 2]") && err.contains("4 ids"), "{err}");
    assert!(SftData::packed([(&ids[..], &tr[..], &[4usize, 0][..])], 300).is_err());
    let model = smol_like(7, 300);
    let mut acts = SftActivations::default();
    let targets = [None, Some(2), Some(3), None];
    for (positions, why) in [
        (&[0u32, 1, 3, 0][..], "token 2: position 3"),
        (&[1, 2, 3, 4][..], "token 0: position 1"),
        (&[0, 1, 2][..], "3 positions for 4"),
    ] {
        let b = SftBatch { ids: &ids, b: 1, t: 4, targets: &targets, positions: Some(positions) };
        let err = model.sft_pass(&b, 2, &mut acts, None, false).unwrap_err().to_string();
        assert!(err.contains(why), "{positions:?}: {err}");
    }
}

#[test]
fn gradient_accumulation_gives_the_whole_batchs_step() {
    use lora_lab::train::{Objective, SftData, SftObjective, SftState};
    let model = smol_like(5, 300);
    let (ids, targets) = batch(300);
    let seqs: Vec<Vec<u32>> = ids.chunks(20).map(|s| s.to_vec()).collect();
    // trained[i]: the loss predicts ids[i], i.e. targets[i - 1] is set.
    let masks: Vec<Vec<bool>> =
        targets.chunks(20).map(|t| (0..20).map(|i| i > 0 && t[i - 1].is_some()).collect()).collect();
    let data = SftData::new(seqs.iter().zip(&masks).map(|(s, m)| (&s[..], &m[..])), 300).unwrap();
    let step = |micro: usize| {
        let mut a = adapter(&model, 0.0);
        let mut state = SftState::new(&a, 0.1, micro);
        let loss = SftObjective { base: &model, adapter: &mut a, state: &mut state }
            .train_batch(&data, &[0, 1], 1e-3)
            .unwrap();
        (loss, a.layers.iter().flat_map(|l| [l.lora_a.clone(), l.lora_b.clone()]).collect::<Vec<_>>())
    };
    let (whole, w) = step(2);
    let (accumulated, a) = step(1);
    assert!((whole - accumulated).abs() <= 1e-6 * whole.abs(), "loss {whole} vs {accumulated}");
    let moved = w
        .iter()
        .flatten()
        .zip(adapter(&model, 0.0).layers.iter().flat_map(|l| [l.lora_a.clone(), l.lora_b.clone()]).flatten())
        .any(|(x, y)| x != &y);
    assert!(moved, "the step changed the adapter");
    let worst = w.iter().flatten().zip(a.iter().flatten()).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst <= 1e-6, "accumulated step differs by {worst}");
}

/// Positions after a sequence's last target reach no loss (attention is causal): `SftData` cuts them
/// off before the pass, and the step's loss and gradients are those of the whole sequences.
#[test]
fn positions_past_the_last_target_are_cut_and_change_nothing() {
    use lora_lab::train::{Objective, SftData, SftObjective, SftState};
    let model = smol_like(8, 300);
    let (ids, targets) = batch(300);
    // Each sequence of 20 gets 6 more tokens outside the loss: 2 × 26, of which 2 × 19 are needed.
    let mut r = Rng::new(12, Stream::Replay);
    let seqs: Vec<Vec<u32>> =
        ids.chunks(20).map(|s| s.iter().copied().chain((0..6).map(|_| r.below(300))).collect()).collect();
    let masks: Vec<Vec<bool>> =
        targets.chunks(20).map(|t| (0..26).map(|i| (1..=20).contains(&i) && t[i - 1].is_some()).collect()).collect();
    let long_ids: Vec<u32> = seqs.concat();
    let long_targets: Vec<Option<u32>> = targets.chunks(20).flat_map(|t| t.iter().copied().chain([None; 6])).collect();
    let count = targets.iter().flatten().count();

    let mut whole = adapter(&model, 0.0);
    let mut acts = SftActivations::default();
    let (sum, _) =
        model.sft_pass(&one(&long_ids, 2, 26, &long_targets), count, &mut acts, Some(&mut whole), true).unwrap();
    let (_, g_plain) = plain(&model, &mut adapter(&model, 0.0), &ids, &targets, count);
    // The step clips its gradients to a norm of 1, as TRL's does.
    let clipped = |mut g: Vec<Vec<f32>>| {
        lora_lab::nn::clip_grad_norm(&mut g.iter_mut().map(|v| &mut v[..]).collect::<Vec<_>>(), 1.0);
        g
    };

    let data = SftData::new(seqs.iter().zip(&masks).map(|(s, m)| (&s[..], &m[..])), 300).unwrap();
    assert_eq!(data.total_targets(), count);
    let mut a = adapter(&model, 0.0);
    let mut state = SftState::new(&a, 0.0, 2);
    // lr 0: the step leaves the adapter as it was and its gradients in place
    let loss =
        SftObjective { base: &model, adapter: &mut a, state: &mut state }.train_batch(&data, &[0, 1], 0.0).unwrap();
    let mean = (sum / count as f64) as f32;
    assert!((loss - mean).abs() <= 1e-6 * mean.abs(), "loss {loss} vs the whole sequences' {mean}");
    assert_close("cut", &grads_of(&a), &clipped(grads_of(&whole)));
    assert_close("cut against the plain path", &grads_of(&a), &clipped(g_plain));
    assert!(
        state.activation_bytes() * 26 < acts.bytes() * 20,
        "{} bytes kept for 2 × 19 positions, {} for 2 × 26",
        state.activation_bytes(),
        acts.bytes()
    );
}

/// Sequences that begin alike (a chat template's system prompt): evaluation runs their common first
/// positions once and reads their keys and values from a cache — the loss the full pass gives. The
/// shared part stops at the first target and at the first id that differs; training never shares.
#[test]
fn evaluation_runs_a_shared_beginning_once_with_the_same_loss() {
    let model = smol_like(9, 300);
    let mut r = Rng::new(13, Stream::Replay);
    let common: Vec<u32> = (0..12).map(|_| r.below(300)).collect();
    let ids: Vec<u32> =
        (0..3).flat_map(|_| common.iter().copied().chain((0..12).map(|_| r.below(300))).collect::<Vec<_>>()).collect();
    let mut a = adapter(&model, 0.0);
    for (first_target, want) in [(14, 12), (10, 10), (5, 0)] {
        let targets: Vec<Option<u32>> =
            (0..72).map(|i| (i % 24 >= first_target && i % 24 < 23).then(|| ids[i + 1])).collect();
        let count = targets.iter().flatten().count();
        let mut train = SftActivations::default();
        let (full, _) = model.sft_pass(&one(&ids, 3, 24, &targets), count, &mut train, Some(&mut a), true).unwrap();
        assert_eq!(train.shared_positions(), 0, "training shares nothing");
        let mut eval = SftActivations::default();
        let (sum, rows) = model.sft_pass(&one(&ids, 3, 24, &targets), count, &mut eval, Some(&mut a), false).unwrap();
        assert_eq!((eval.shared_positions(), rows), (want, count), "targets from {first_target}");
        assert!((sum - full).abs() <= 1e-6 * full.abs(), "targets from {first_target}: loss {sum} vs {full}");
    }
    // One differing id at position 9 leaves 9 shared positions.
    let mut ids2 = ids.clone();
    ids2[24 + 9] = (ids2[24 + 9] + 1) % 300;
    let targets: Vec<Option<u32>> = (0..72).map(|i| (i % 24 >= 14 && i % 24 < 23).then(|| ids2[i + 1])).collect();
    let count = targets.iter().flatten().count();
    let mut train = SftActivations::default();
    let (full, _) = model.sft_pass(&one(&ids2, 3, 24, &targets), count, &mut train, Some(&mut a), true).unwrap();
    let mut eval = SftActivations::default();
    let (sum, _) = model.sft_pass(&one(&ids2, 3, 24, &targets), count, &mut eval, Some(&mut a), false).unwrap();
    assert_eq!(eval.shared_positions(), 9);
    assert!((sum - full).abs() <= 1e-6 * full.abs(), "loss {sum} vs {full}");
    // Alike sequences without a target still keep a position of their own.
    let same: Vec<u32> = common.iter().copied().cycle().take(36).collect();
    let (sum, rows) = model.sft_pass(&one(&same, 3, 12, &[None; 36]), 1, &mut eval, Some(&mut a), false).unwrap();
    assert_eq!((sum, rows, eval.shared_positions()), (0.0, 0, 11));
    // With dropout the sequences' masks differ: nothing is shared.
    let mut dropped = adapter(&model, 0.1);
    dropped.set_training(Some(3));
    model.sft_pass(&one(&ids2, 3, 24, &targets), count, &mut eval, Some(&mut dropped), false).unwrap();
    assert_eq!(eval.shared_positions(), 0);
}
