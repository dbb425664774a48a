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
//
// eight_bit (bitsandbytes's blockwise 8-bit AdamW): the moments of every tensor of at least
// min_8bit_size elements are held in 8 bits, blockwise over the tensor (blocks of 256 from its
// first element, one float32 absmax per block, the signed dynamic map for exp_avg and the unsigned
// one for exp_avg_sq; model/quant.h); smaller tensors keep float32 moments. Each step dequantizes
// a block, updates it in float32 exactly as above, updates the master, and re-quantizes with the
// block's new absmax. The map must not split a block between ranks (ShardMap's align 256), so each
// rank holds whole blocks of its range and checkpoints store codes and absmax per logical tensor:
// any world size resumes them bitwise, with no re-quantization.
// Buffers: exp_avg()/exp_avg_sq() are the float32 "side" buffers of the owned range: per piece in
// order, its moments (float32 pieces) or its block absmax values (8-bit pieces); without
// eight_bit that is simply the moments of the range. codes_avg()/codes_avg_sq() are uint8 over the
// whole range (undefined without eight_bit).
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
  bool eight_bit = false;            // blockwise 8-bit moments (see above)
  int64_t min_8bit_size = 4096;      // smaller tensors keep float32 moments, as bitsandbytes
  static constexpr int64_t kBlock = 256;
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

  // The side buffers of the owned range (see above; the moments without eight_bit).
  const at::Tensor& exp_avg() const;
  const at::Tensor& exp_avg_sq() const;
  // eight_bit: the 8-bit codes of the owned range (uint8, range_size()); undefined otherwise.
  const at::Tensor& codes_avg() const;
  const at::Tensor& codes_avg_sq() const;
  // Length of every rank's side buffers, for gathering them (range sizes without eight_bit).
  std::vector<int64_t> side_counts() const;
  // Bytes of moment state this rank holds (side buffers and codes).
  int64_t state_bytes() const;
  // Whole-tensor moments by name from buffers that cover the whole map (gathered from every rank:
  // side buffers in rank order, codes over the whole flat range): "<name>.exp_avg" and
  // "<name>.exp_avg_sq" (float32, the tensor's shape) for float32 state; for 8-bit state
  // "<name>.exp_avg.q8" / "<name>.exp_avg_sq.q8" (uint8, flat) and "<name>.exp_avg.absmax" /
  // "<name>.exp_avg_sq.absmax" (float32, one per block of 256).
  std::vector<std::pair<std::string, at::Tensor>> named_state(const at::Tensor& full_exp_avg,
                                                              const at::Tensor& full_exp_avg_sq,
                                                              const at::Tensor& full_codes_avg = {},
                                                              const at::Tensor& full_codes_avg_sq = {}) const;
  // Single process / ZeRO-0: named_state of the own (whole) range.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  // Restores the owned range from whole-tensor moments saved by state()/named_state(), whatever
  // the world size they were saved with; every tensor's pair must be present with its shape
  // (InputError naming the tensor otherwise). State saved in the other precision is converted:
  // float32 moments quantized blockwise for 8-bit state, 8-bit ones dequantized for float32.
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
