// The step arithmetic of a run, as a pure function of (the number of packed sequences of each
// epoch, the global batch): epochs -> optimizer steps -> the sequences of each step -> the rows
// of each rank. Every optimizer step takes `global_batch` consecutive sequences of its epoch's
// packed order (the last step of an epoch may be short), so the plan depends on the seed, the
// data, context_length and the global batch, never on the world size. Packing follows each
// epoch's sample order, so epochs may hold different numbers of sequences and of steps; the
// plan asks for an epoch's size only when a step of it (or after it) is asked about, at most once.
// defines: Rows, StepPlan, rank_slice
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace ringtune {

// Rows [begin, end) of an epoch's packed sequences.
struct Rows {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
  bool operator==(const Rows& o) const { return begin == o.begin && end == o.end; }
};

// The part of rows [begin, end) that rank `rank` of `world` processes: contiguous, sizes
// differing by at most one (the first (end - begin) % world ranks take one more).
std::pair<size_t, size_t> rank_slice(size_t begin, size_t end, int rank, int world);

class StepPlan {
 public:
  // sequences_in_epoch(e): how many packed sequences epoch e holds. global_batch >= 1.
  StepPlan(std::function<int64_t(int64_t epoch)> sequences_in_epoch, int64_t global_batch);

  int64_t global_batch() const { return global_; }
  // Optimizer steps of the run: max_steps when > 0 (looping over the data as needed), else the
  // steps of the first num_epochs epochs.
  int64_t total_steps(int64_t max_steps, int64_t num_epochs);

  // The epoch that step `step` (0-based) belongs to; for the step count of a finished run, the
  // number of epochs completed.
  int64_t epoch_of(int64_t step);
  int64_t first_step(int64_t epoch);
  int64_t steps_in(int64_t epoch);
  int64_t sequences_in(int64_t epoch);
  // Step `step` is the last one of its epoch.
  bool ends_epoch(int64_t step);

  // The sequences of step `step` within its epoch's packed order.
  Rows rows(int64_t step);
  // The part of them that rank `rank` of `world` processes.
  Rows rank_rows(int64_t step, int rank, int world);
  // `rows` split into micro-batches of at most `micro` rows.
  static std::vector<Rows> micro_batches(Rows rows, int64_t micro);

 private:
  void extend_to(int64_t epoch);  // first_step_ known up to epoch + 1

  std::function<int64_t(int64_t)> sequences_in_epoch_;
  int64_t global_;
  std::vector<int64_t> sequences_;   // of each epoch packed so far
  std::vector<int64_t> first_step_;  // first_step_[e]: first step of epoch e; one past the epochs known
};

}  // namespace ringtune
