//! The wasm memory's size, grown in one step where the lab knows a large working set is coming.
//!
//! The threaded build's memory is one `SharedArrayBuffer`. Each time the allocator grows it (a few
//! 64 KiB pages at a time, dozens of times while a language model trains), every realm that shares it
//! (the lab's worker and each rayon worker) gets a new buffer object of the new length, and the old
//! objects stay until that realm collects garbage — which rayon's workers, running only wasm, hardly
//! ever do. `performance.measureUserAgentSpecificMemory()` counts every such object at its length: the
//! same bytes several times (measured: 94.5 MB of wasm memory read as 215.6 MB of worker memory after
//! a short base run). Growing once, to a size the language model's runs fit in, leaves one buffer
//! per realm. The pages stay uncommitted until used, so this costs address space, not memory.

/// What the language model's data, a base run at 32 sequences per batch, its checkpoints, three
/// adapters and their runs hold at their peak, with the MLP's data and models beside them (the bench's
/// memory flow ends at 155 MB of wasm memory).
pub const LM_HEAP_BYTES: usize = 160 << 20;

/// Grows the wasm memory, if it is smaller, to about `bytes` in one step (an allocation the
/// allocator keeps as free space once dropped). Only the threaded build's shared memory needs it: the
/// SIMD-only build's buffers are detached when it grows, and natively there is nothing to do.
pub fn reserve(bytes: usize) {
    #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
    {
        let have = core::arch::wasm32::memory_size(0) * 65536;
        if have < bytes {
            drop(std::hint::black_box(Vec::<u8>::with_capacity(bytes - have)));
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
    let _ = bytes;
}
