//! Where the parallel kernels run: a thread of the rayon pool, with the pool's other threads polling
//! for work while a whole stretch of them (a slice of training batches, a benchmark's repetitions) runs.

/// Runs `f` on a thread of the rayon pool, with the pool's other threads kept awake until it returns.
///
/// Called from outside the pool (the page's worker), every parallel call would otherwise hand its work
/// to the pool and wake its threads from sleep, a dozen times per batch; from inside, the calling
/// thread does its share. That holds for a pool of one thread too (the threaded build at 1 thread):
/// there, the four hand-overs per batch of the batch fill and the backward's joins cost 8 % (tight
/// A/B). The other threads would still fall asleep between two parallel calls (rayon's idle loop
/// yields 32 times, which costs nothing in wasm, then sleeps) and each call would wait for one to wake
/// (an `Atomics.notify`); so while `f` runs they poll for work instead (`rayon::yield_now`). The
/// SIMD-only build has no pool: rayon runs everything on the calling thread.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = cfg!(feature = "threads") || rayon::current_num_threads() > 1;
    if rayon::current_thread_index().is_some() || !pool {
        return f();
    }
    let f = std::sync::Mutex::new(Some(f));
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut results = rayon::broadcast(|ctx| {
        if ctx.index() == 0 {
            let f = f.lock().expect("taken once").take().expect("run once");
            let r = f();
            done.store(true, std::sync::atomic::Ordering::Release);
            Some(r)
        } else {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                if let Some(rayon::Yield::Idle) = rayon::yield_now() {
                    std::hint::spin_loop();
                }
            }
            None
        }
    });
    results.swap_remove(0).expect("thread 0 runs f")
}
