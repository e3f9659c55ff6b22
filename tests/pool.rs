//! `kernels::pool`: every task of a `par_for` runs once, inside an `on_pool` stretch (the leader
//! publishing, the other threads helping) and outside it; nested calls and chunk hand-outs; a panic
//! in a task reaches the caller; GEMMs inside a stretch give the bits they give outside.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::kernels::{self, on_pool, par_for, Chunks, Epilogue, Strided};
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;
use common::data;

/// Runs `par_for` over `count` tasks, each task adding its index + 1 into a per-task counter.
fn counts(count: usize) -> Vec<usize> {
    let hits: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
    par_for(count, &|i| {
        hits[i].fetch_add(i + 1, Ordering::SeqCst);
    });
    hits.into_iter().map(AtomicUsize::into_inner).collect()
}

#[test]
fn every_task_runs_once_inside_and_outside_a_stretch() {
    for count in [0, 1, 2, 3, 7, 64, 1000] {
        let want: Vec<usize> = (1..=count).collect();
        assert_eq!(counts(count), want, "outside, {count} tasks");
        // Many calls in one stretch: the helpers pick up one job after another.
        let inside = on_pool(|| (0..50).map(|_| counts(count)).collect::<Vec<_>>());
        assert!(inside.iter().all(|c| *c == want), "inside, {count} tasks");
    }
}

#[test]
fn a_par_for_inside_a_task_runs_all_its_tasks() {
    let total = AtomicUsize::new(0);
    on_pool(|| {
        par_for(8, &|_| {
            par_for(5, &|j| {
                total.fetch_add(j, Ordering::SeqCst);
            });
        })
    });
    assert_eq!(total.into_inner(), 8 * (1 + 2 + 3 + 4));
}

#[test]
fn chunks_cover_the_slice_and_are_handed_out_once() {
    let mut v = vec![0u32; 10];
    let c = Chunks::new(&mut v, 4);
    assert_eq!(c.count(), 3);
    on_pool(|| {
        par_for(c.count(), &|i| {
            let piece = c.take(i);
            assert_eq!(piece.len(), if i == 2 { 2 } else { 4 });
            piece.iter_mut().for_each(|x| *x = i as u32 + 1);
        })
    });
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.take(1);
    }));
    assert!(again.is_err(), "a chunk taken twice must panic");
    drop(c);
    assert_eq!(v, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
}

#[test]
fn a_panicking_task_reaches_the_caller_and_the_pool_goes_on() {
    let r = std::panic::catch_unwind(|| {
        on_pool(|| {
            par_for(16, &|i| {
                assert!(i != 11, "task 11 fails");
            })
        })
    });
    assert!(r.is_err());
    let want: Vec<usize> = (1..=16).collect();
    assert_eq!(on_pool(|| counts(16)), want);
}

#[test]
fn gemms_in_a_stretch_give_the_same_bits() {
    for (m, k, n) in [(192, 128, 128), (300, 352, 128), (2048, 128, 264), (5, 33, 17)] {
        let (x, w) = (data(m * k, 1), data(n * k, 2));
        let run = || {
            let mut y = vec![0.0f32; m * n];
            kernels::linear_forward(&x, &w, None, &mut y, m, k, n, false);
            let mut dw = vec![0.0f32; n * k];
            kernels::gemm(Strided::transposed(&y, n, m), Strided::row_major(&x, m, k), &mut dw, k, Epilogue::default());
            (y, dw)
        };
        let outside = run();
        let inside = on_pool(run);
        assert!(outside.0.iter().zip(&inside.0).all(|(a, b)| a.to_bits() == b.to_bits()), "{m}×{k}×{n} forward");
        assert!(outside.1.iter().zip(&inside.1).all(|(a, b)| a.to_bits() == b.to_bits()), "{m}×{k}×{n} weight grad");
    }
}
