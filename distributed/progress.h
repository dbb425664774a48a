// Progress reports for the collective watchdog (distributed/watchdog.h), kept apart so that code
// with long local work (checkpoint writes, validation, data preparation) can report progress
// without seeing MPI or the watchdog.
//
// What counts as progress: a completed collective, and each unit of local work that the code
// reports here (a micro-batch forward/backward, a validation batch, a checkpoint tensor written,
// a sample prepared, a weight tensor exported). A call costs one relaxed atomic increment.
// defines: note_progress, CollectiveScope, set_watchdog_step, ProgressSnapshot, read_progress
#pragma once
#include <cstdint>

namespace ringtune {

// One unit of work done by this rank.
void note_progress() noexcept;

// The optimizer step this rank is working on (for the watchdog's report).
void set_watchdog_step(int64_t step) noexcept;

// Marks this rank as waiting in a collective for its lifetime; leaving it counts as progress.
// `op` must be a string literal (it is read by the watchdog thread); `elements` is what the
// collective moves (for the report). Scopes do not nest: an inner scope replaces the outer one's
// report until it ends.
class CollectiveScope {
 public:
  CollectiveScope(const char* op, int64_t elements) noexcept;
  ~CollectiveScope();
  CollectiveScope(const CollectiveScope&) = delete;
  CollectiveScope& operator=(const CollectiveScope&) = delete;

 private:
  const char* outer_;
};

// What the watchdog thread reads (each field on its own; a snapshot is not atomic as a whole).
struct ProgressSnapshot {
  uint64_t progress = 0;     // units of work done so far
  int64_t step = -1;         // set_watchdog_step's value
  const char* op = nullptr;  // the collective waited in, or nullptr
  int64_t elements = 0;      // what it moves
  int64_t since_ns = 0;      // when the wait began (steady clock, ns)
  uint64_t collectives = 0;  // collectives entered so far (the waited one's number)
};
ProgressSnapshot read_progress() noexcept;
// The steady clock in nanoseconds, as since_ns uses it.
int64_t steady_ns() noexcept;

}  // namespace ringtune
