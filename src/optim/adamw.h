// AdamW with decoupled weight decay over one contiguous range of the flat buffer of the trainable
// tensors, so the same code serves a single process, ZeRO-0 (every rank owns the whole range) and
// ZeRO-1 (each rank owns the range its ShardMap gives it, distributed/shard_map.h). The state is
// plain float32 vectors (exp_avg, exp_avg_sq) over that range; checkpoints store it per logical
// tensor (state() / load_state() on whole tensors, or the flat helpers for a gathered buffer).
// Tensors whose names mark norms or biases get no weight decay. Matches torch.optim.AdamW.
// defines: AdamWOptions, AdamW, no_weight_decay
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace ringtune {

class ShardMap;

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// True for RMSNorm weights and biases (".norm", "layernorm", "bias").
bool no_weight_decay(const std::string& name);

class AdamW {
 public:
  // Owns the whole flat buffer of `params` (single process or ZeRO-0).
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options);
  // Owns rank `rank`'s range of `map`, which must list `params` (same names and sizes, in order).
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options, const ShardMap& map,
        int rank);
  ~AdamW();

  // One update of the owned range: `grad` and `values` are float32 vectors of range_size()
  // elements (the reduced gradient, and the current parameter values, updated in place).
  void step_range(double lr, const at::Tensor& grad, at::Tensor& values);
  // Single-process convenience: reads every parameter's .grad() (zero where undefined), updates
  // the parameters in place.
  void step(double lr);

  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  int64_t range_begin() const;
  int64_t range_size() const;
  const ShardMap& map() const { return *map_; }
  int rank() const { return rank_; }

  // The moments of the owned range as flat float32 vectors (exp_avg, exp_avg_sq).
  const at::Tensor& exp_avg() const;
  const at::Tensor& exp_avg_sq() const;
  // Whole-tensor moments by name ("<name>.exp_avg", "<name>.exp_avg_sq") from flat buffers that
  // cover the whole map (e.g. gathered from every rank).
  std::vector<std::pair<std::string, at::Tensor>> named_state(const at::Tensor& full_exp_avg,
                                                              const at::Tensor& full_exp_avg_sq) const;
  // Single process / ZeRO-0: named_state of the own (whole) range.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  // Restores the owned range from whole-tensor moments saved by state()/named_state(), whatever
  // the world size they were saved with; every tensor's pair must be present with its shape
  // (InputError naming the tensor otherwise).
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& moments);
  const AdamWOptions& options() const { return options_; }

  // Parameter values of the owned range as a float32 vector / written back from one.
  at::Tensor read_range() const;
  // Writes a flat float32 buffer covering the whole map into the parameters.
  void write_all(const at::Tensor& full_values);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<ShardMap> map_;
  int rank_ = 0;
  AdamWOptions options_;
  int64_t step_ = 0;
};

}  // namespace ringtune
