// The progress counters of progress.h: atomics written by the main thread, read by the watchdog
// thread (watchdog.cpp). No MPI here, so any code (and the fuzz builds) can link it.
#include "distributed/progress.h"

#include <atomic>
#include <chrono>

namespace ringtune {

namespace {

std::atomic<uint64_t> g_progress{0};
std::atomic<int64_t> g_step{-1};
std::atomic<const char*> g_wait_op{nullptr};
std::atomic<int64_t> g_wait_elements{0};
std::atomic<int64_t> g_wait_since_ns{0};
std::atomic<uint64_t> g_collectives{0};

}  // namespace

int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void note_progress() noexcept { g_progress.fetch_add(1, std::memory_order_relaxed); }

void set_watchdog_step(int64_t step) noexcept { g_step.store(step, std::memory_order_relaxed); }

CollectiveScope::CollectiveScope(const char* op, int64_t elements) noexcept
    : outer_(g_wait_op.load(std::memory_order_relaxed)) {
  g_wait_elements.store(elements, std::memory_order_relaxed);
  g_wait_since_ns.store(steady_ns(), std::memory_order_relaxed);
  g_collectives.fetch_add(1, std::memory_order_relaxed);
  g_wait_op.store(op, std::memory_order_release);
}

CollectiveScope::~CollectiveScope() {
  g_wait_op.store(outer_, std::memory_order_release);
  if (outer_) g_wait_since_ns.store(steady_ns(), std::memory_order_relaxed);
  g_progress.fetch_add(1, std::memory_order_relaxed);
}

ProgressSnapshot read_progress() noexcept {
  ProgressSnapshot s;
  s.op = g_wait_op.load(std::memory_order_acquire);
  s.progress = g_progress.load(std::memory_order_relaxed);
  s.step = g_step.load(std::memory_order_relaxed);
  s.elements = g_wait_elements.load(std::memory_order_relaxed);
  s.since_ns = g_wait_since_ns.load(std::memory_order_relaxed);
  s.collectives = g_collectives.load(std::memory_order_relaxed);
  return s;
}

}  // namespace ringtune
