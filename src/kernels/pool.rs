//! Where the parallel kernels run, and how they share their tasks.
//!
//! `on_pool` runs a whole stretch of parallel calls (a slice of training batches, an evaluation, a
//! benchmark's repetitions) on a thread of the rayon pool — the leader — while the pool's other
//! threads stay awake, polling. `par_for` splits a kernel's tasks: inside such a stretch, the leader
//! publishes them and every thread takes the next index until none is left, spinning, never sleeping;
//! elsewhere it is rayon's parallel loop. Rayon alone made each of the ~150 parallel calls of a batch
//! of 3 sequences wait for a sleeping thread to wake (an `Atomics.notify` in wasm) and, at the end, for
//! the calling thread to wake again. Which thread runs a task never changes its result.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use rayon::prelude::*;

/// The tasks of one `par_for` call, on the leader's stack while it is published.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    count: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Takes tasks until none is left; returns how many it ran.
    fn work(&self) -> usize {
        let mut ran = 0;
        loop {
            let i = self.next.fetch_add(1, SeqCst);
            if i >= self.count {
                return ran;
            }
            if catch_unwind(AssertUnwindSafe(|| (self.f)(i))).is_err() {
                self.panicked.store(true, SeqCst);
            }
            self.done.fetch_add(1, SeqCst);
            ran += 1;
        }
    }
}

/// The published job (null when none) and how many helpers are looking at it.
static JOB: AtomicPtr<Job<'static>> = AtomicPtr::new(ptr::null_mut());
static USERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread runs an `on_pool` stretch and may publish jobs.
    static LEADER: Cell<bool> = const { Cell::new(false) };
    /// This thread is running a task of a published job: a `par_for` inside it runs serially.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// A helper's look at the published job: runs its remaining tasks, if any. Returns whether it ran one.
fn help() -> bool {
    if JOB.load(SeqCst).is_null() {
        return false;
    }
    USERS.fetch_add(1, SeqCst);
    // Read again after announcing ourselves: the leader frees a job only once it is unpublished and
    // no helper is looking (SeqCst orders this load after the increment, for the leader too).
    let job = JOB.load(SeqCst);
    let mut ran = 0;
    if !job.is_null() {
        IN_TASK.set(true);
        // SAFETY: the job stays alive while USERS counts us (see `par_for`).
        ran = unsafe { &*job }.work();
        IN_TASK.set(false);
    }
    USERS.fetch_sub(1, SeqCst);
    ran > 0
}

/// A waiting thread's pause: spinning at first, then also giving its core to the OS scheduler, so a
/// thread that was descheduled in the middle of a task (a busy machine) can finish it. (In wasm
/// `yield_now` does nothing: there the wait only spins.)
#[derive(Default)]
struct Idle(u32);

impl Idle {
    fn wait(&mut self) {
        self.0 = self.0.saturating_add(1);
        if self.0 < 2000 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Below this many multiply-adds a GEMM runs on the calling thread. Where `par_for` publishes to a
/// stretch's awake threads a call is worth splitting from 64 Ki (a few µs of work); where rayon must
/// wake a sleeping thread, from 1 Mi.
pub fn parallel_min_macs() -> usize {
    if LEADER.get() && !IN_TASK.get() {
        1 << 16
    } else {
        1 << 20
    }
}

/// Runs `job(i)` for every `i` in `0..count`, in parallel; each task must write only its own part.
pub fn par_for(count: usize, job: &(dyn Fn(usize) + Sync)) {
    if count <= 1 || IN_TASK.get() {
        return (0..count).for_each(job);
    }
    if !LEADER.get() || !JOB.load(SeqCst).is_null() {
        return (0..count).into_par_iter().for_each(job);
    }
    let task =
        Job { f: job, count, next: AtomicUsize::new(0), done: AtomicUsize::new(0), panicked: AtomicBool::new(false) };
    // SAFETY: only the lifetime is erased; the job is unpublished and waited for below before
    // `task` goes out of scope, and helpers reach it only through JOB while counted in USERS.
    let erased = unsafe { std::mem::transmute::<*const Job<'_>, *mut Job<'static>>(&task) };
    JOB.store(erased, SeqCst);
    IN_TASK.set(true);
    task.work();
    IN_TASK.set(false);
    let mut idle = Idle::default();
    while task.done.load(SeqCst) < count {
        idle.wait();
    }
    JOB.store(ptr::null_mut(), SeqCst);
    while USERS.load(SeqCst) != 0 {
        idle.wait();
    }
    if task.panicked.load(SeqCst) {
        panic!("a parallel kernel task panicked");
    }
}

/// `f(i)` for every `i` in `0..count`, in parallel, in index order.
pub fn par_map<T: Send + Default + Clone>(count: usize, f: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
    let mut out = vec![T::default(); count];
    let slots = Chunks::new(&mut out, 1);
    par_for(count, &|i| slots.take(i)[0] = f(i));
    out
}

/// `par_for` for tasks that each report whether their output is finite: whether all are.
pub fn par_all(count: usize, job: &(dyn Fn(usize) -> bool + Sync)) -> bool {
    let all = AtomicBool::new(true);
    par_for(count, &|i| {
        if !job(i) {
            all.store(false, SeqCst);
        }
    });
    all.into_inner()
}

/// Ends an `on_pool` stretch on the leader, however `f` ends.
struct EndOfStretch<'a> {
    done: &'a AtomicBool,
    was_leader: bool,
}

impl Drop for EndOfStretch<'_> {
    fn drop(&mut self) {
        LEADER.set(self.was_leader);
        self.done.store(true, SeqCst);
    }
}

/// Runs `f` on a thread of the rayon pool, with the pool's other threads kept awake until it returns.
///
/// Called from outside the pool (the page's worker), every parallel call would otherwise hand its work
/// to the pool and wake its threads from sleep, a dozen times per batch; from inside, the calling
/// thread does its share. That holds for a pool of one thread too (the threaded build at 1 thread):
/// there, the four hand-overs per batch of the batch fill and the backward's joins cost 8 % (tight
/// A/B). The other threads would still fall asleep between two parallel calls (rayon's idle loop
/// yields 32 times, which costs nothing in wasm, then sleeps) and each call would wait for one to wake;
/// so while `f` runs they poll for `par_for`'s tasks and for rayon's work (`rayon::yield_now`). The
/// SIMD-only build has no pool: rayon runs everything on the calling thread.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = cfg!(feature = "threads") || rayon::current_num_threads() > 1;
    if rayon::current_thread_index().is_some() || !pool {
        return f();
    }
    let f = Mutex::new(Some(f));
    let done = AtomicBool::new(false);
    let mut results = rayon::broadcast(|ctx| {
        if ctx.index() == 0 {
            let f = f.lock().expect("taken once").take().expect("run once");
            // Also when `f` panics: the helpers stop polling and this thread stops leading.
            let _end = EndOfStretch { done: &done, was_leader: LEADER.replace(true) };
            Some(f())
        } else {
            let mut idle = Idle::default();
            while !done.load(SeqCst) {
                if help() || matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                    idle = Idle::default();
                } else {
                    idle.wait();
                }
            }
            None
        }
    });
    results.swap_remove(0).expect("thread 0 runs f")
}

/// A mutable slice cut into `size`-long chunks (the last may be shorter) that `par_for`'s tasks take
/// by index, each chunk at most once: the safe way for code outside `kernels` to give tasks disjoint
/// outputs.
pub struct Chunks<'a, T> {
    ptr: *mut T,
    len: usize,
    size: usize,
    taken: Vec<AtomicBool>,
    _data: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: a chunk is handed out once (checked by `taken`), so tasks on other threads never share one;
// T: Send is what moving `&mut [T]` pieces to other threads needs.
unsafe impl<T: Send> Sync for Chunks<'_, T> {}

impl<'a, T> Chunks<'a, T> {
    pub fn new(data: &'a mut [T], size: usize) -> Self {
        assert!(size > 0, "chunks of 0");
        let count = data.len().div_ceil(size);
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            size,
            taken: (0..count).map(|_| AtomicBool::new(false)).collect(),
            _data: std::marker::PhantomData,
        }
    }

    pub fn count(&self) -> usize {
        self.taken.len()
    }

    /// Chunk `i`; panics if it was taken before.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&self, i: usize) -> &mut [T] {
        assert!(!self.taken[i].swap(true, SeqCst), "chunk {i} taken twice");
        let start = i * self.size;
        // SAFETY: [start, start + len) is inside the slice borrowed for 'a, and no other reference
        // to it exists: this is its only hand-out.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), self.size.min(self.len - start)) }
    }
}
