// Large CPU tensors from a pool of mapped blocks, reused by size.
//
// glibc serves allocations under its mmap threshold (which grows to 32 MiB once mapped blocks
// are freed) from one heap that returns only its top to the system: a training step's megabyte-
// sized activations and gradients, freed between long-lived tensors, leave holes that the next
// allocations of other sizes cannot use, and the heap, all of it resident, grows past the live
// bytes (by ~100 MiB on a 1.1B model's LoRA step; README, "Fine-tuning in less memory"). Mapping
// every large block instead (MALLOC_MMAP_THRESHOLD_) gets that memory back but pays a page fault
// per 4 KiB on every allocation (75% slower steps there). Blocks of 2 MiB and more are mapped with
// transparent huge pages where the system offers them (madvise mode).
//
// The pool keeps freed blocks of 256 KiB and more mapped and hands them out again to a request of
// the same size (up to 1/8 larger). When none fits, it maps a new one, after unmapping cached
// blocks, the least recently freed first, for as long as live + cached + the new block would
// exceed the most bytes ever live at once (since the last trim) by more than 1/16: the pool holds
// at most that, and a repeating training step finds its blocks cached and faults no page.
// Of equal sizes the block freed last is reused (the warmest in the caches). Smaller allocations
// go to libtorch's default allocator.
//
// install_cpu_pool() makes it libtorch's CPU allocator (main() does it before any tensor exists,
// unless RINGTUNE_CPU_POOL=0). Freeing never needs the pool installed: each block carries its
// deleter.
// defines: CpuPoolStats, install_cpu_pool, cpu_pool_installed, cpu_pool_stats, cpu_pool_trim,
//          cpu_pool_min_bytes
#pragma once
#include <cstddef>
#include <cstdint>

namespace ringtune {

struct CpuPoolStats {
  int64_t live = 0;         // bytes of blocks handed out and not yet freed
  int64_t cached = 0;       // bytes of freed blocks kept mapped
  int64_t peak = 0;         // the largest live + cached so far
  int64_t maps = 0;         // blocks mapped (misses)
  int64_t reuses = 0;       // requests served from the cache (hits)
  int64_t unmaps = 0;       // cached blocks given back to make room
};

// Tensors of at least this many bytes come from the pool.
constexpr int64_t cpu_pool_min_bytes = int64_t{1} << 18;

// Installs the pool as libtorch's CPU allocator unless RINGTUNE_CPU_POOL is "0"; returns whether
// it is installed. Idempotent.
bool install_cpu_pool();
bool cpu_pool_installed();
CpuPoolStats cpu_pool_stats();

// Gives every cached block back to the system (as malloc_trim does for glibc's heap) and makes the
// bytes live now the reference for how much the pool may hold: after loading a model, whose
// temporaries differ from a training step's.
void cpu_pool_trim();

}  // namespace ringtune
