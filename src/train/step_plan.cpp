// Step arithmetic; see step_plan.h.
#include "src/train/step_plan.h"

#include <algorithm>

#include "src/error.h"

namespace ringtune {

std::pair<size_t, size_t> rank_slice(size_t begin, size_t end, int rank, int world) {
  const size_t n = end - begin, w = static_cast<size_t>(world), r = static_cast<size_t>(rank);
  const size_t base = n / w, extra = n % w;
  const size_t lo = begin + r * base + std::min(r, extra);
  return {lo, lo + base + (r < extra ? 1 : 0)};
}

StepPlan::StepPlan(std::function<int64_t(int64_t epoch)> sequences_in_epoch, int64_t global_batch)
    : sequences_in_epoch_(std::move(sequences_in_epoch)), global_(global_batch), first_step_{0} {
  if (global_ < 1) throw Error("StepPlan: global batch must be >= 1, got " + std::to_string(global_));
}

void StepPlan::extend_to(int64_t epoch) {
  while (static_cast<int64_t>(sequences_.size()) <= epoch) {
    const int64_t e = static_cast<int64_t>(sequences_.size());
    const int64_t n = sequences_in_epoch_(e);
    if (n < 0) throw Error("StepPlan: epoch " + std::to_string(e) + " has a negative size");
    sequences_.push_back(n);
    first_step_.push_back(first_step_.back() + (n + global_ - 1) / global_);
  }
}

int64_t StepPlan::total_steps(int64_t max_steps, int64_t num_epochs) {
  if (max_steps > 0) return max_steps;
  if (num_epochs <= 0) return 0;
  return first_step(num_epochs);
}

int64_t StepPlan::epoch_of(int64_t step) {
  if (step < 0) throw Error("StepPlan: negative step " + std::to_string(step));
  while (first_step_.back() <= step) extend_to(static_cast<int64_t>(sequences_.size()));
  // first_step_ is non-decreasing: the last epoch whose first step is <= step and which has steps.
  const auto it = std::upper_bound(first_step_.begin(), first_step_.end(), step);
  return static_cast<int64_t>(it - first_step_.begin()) - 1;
}

int64_t StepPlan::first_step(int64_t epoch) {
  if (epoch > 0) extend_to(epoch - 1);
  return first_step_.at(static_cast<size_t>(epoch));
}

int64_t StepPlan::steps_in(int64_t epoch) {
  extend_to(epoch);
  return first_step_[epoch + 1] - first_step_[epoch];
}

int64_t StepPlan::sequences_in(int64_t epoch) {
  extend_to(epoch);
  return sequences_[epoch];
}

bool StepPlan::ends_epoch(int64_t step) {
  const int64_t e = epoch_of(step);
  return step + 1 == first_step_[e + 1];
}

Rows StepPlan::rows(int64_t step) {
  const int64_t e = epoch_of(step);
  const size_t n = static_cast<size_t>(sequences_[e]);
  const size_t in_epoch = static_cast<size_t>(step - first_step_[e]);
  const size_t begin = std::min(n, in_epoch * static_cast<size_t>(global_));
  return {begin, std::min(n, begin + static_cast<size_t>(global_))};
}

Rows StepPlan::rank_rows(int64_t step, int rank, int world) {
  const Rows all = rows(step);
  const auto [lo, hi] = rank_slice(all.begin, all.end, rank, world);
  return {lo, hi};
}

std::vector<Rows> StepPlan::micro_batches(Rows rows, int64_t micro) {
  if (micro < 1) throw Error("StepPlan: micro-batch size must be >= 1, got " + std::to_string(micro));
  std::vector<Rows> out;
  for (size_t i = rows.begin; i < rows.end; i += static_cast<size_t>(micro))
    out.push_back({i, std::min(rows.end, i + static_cast<size_t>(micro))});
  return out;
}

}  // namespace ringtune
