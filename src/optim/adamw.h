// AdamW with decoupled weight decay over one contiguous range of the flat buffer of the trainable
// tensors, so the same code serves a single process, ZeRO-0 (every rank owns the whole range) and
// ZeRO-1 (each rank owns the range its ShardMap gives it, distributed/shard_map.h). The state is
// plain float32 vectors over that range: the moments (exp_avg, exp_avg_sq) and the master copy of
// the parameter values. Updates are applied to the master copy, and the parameters (of any dtype,
// e.g. bfloat16 for forward and backward) receive it rounded to their dtype: an update smaller
// than half a bfloat16 ulp accumulates in the master instead of vanishing (mixed precision as in
// PyTorch AMP and DeepSpeed). Checkpoints store master and moments per logical tensor (named_*
// on gathered buffers, load_* on whole tensors), so any world size can resume them.
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

  // One update of the owned range's master values: `grad` is the reduced float32 gradient of
  // range_size() elements. The parameters are not touched: write_all() puts the (gathered)
  // master into them.
  void step_range(double lr, const at::Tensor& grad);
  // Single-process convenience: reads every parameter's .grad() (zero where undefined), updates
  // the master and writes it into the parameters.
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

  // The float32 master values of the owned range (read from the parameters at construction).
  const at::Tensor& master() const;
  // Whole-tensor values by name (float32, the parameters' shapes) from a flat buffer that covers
  // the whole map (e.g. the master gathered from every rank).
  std::vector<std::pair<std::string, at::Tensor>> named_values(const at::Tensor& full_values) const;
  // Restores the owned range of the master from whole-tensor values saved by named_values(),
  // whatever the world size they were saved with (InputError naming a missing or misshapen one).
  void load_master(const std::vector<std::pair<std::string, at::Tensor>>& values);
  // Writes a flat float32 buffer covering the whole map into the parameters (rounded to their
  // dtype).
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
