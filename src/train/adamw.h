// AdamW with decoupled weight decay over named parameters, the update written out so the
// optimizer state is plain tensors by name (what checkpoints store and ZeRO-1 shards). Parameters
// whose names mark norms or biases get no weight decay. Matches torch.optim.AdamW's arithmetic.
// defines: AdamWOptions, AdamW, no_weight_decay
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace ringtune {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// True for RMSNorm weights and biases (".norm", "layernorm", "bias").
bool no_weight_decay(const std::string& name);

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options);
  ~AdamW();
  // One update with learning rate `lr` from the parameters' .grad(); parameters without a
  // gradient are skipped (their moments are kept).
  void step(double lr);
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  // First and second moments by parameter name (created zero at construction).
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  // Restores moments saved by state(); every parameter's pair must be present with its shape
  // (InputError naming the tensor otherwise).
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& moments);
  const AdamWOptions& options() const { return options_; }

 private:
  struct Slot;
  std::vector<Slot> slots_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

}  // namespace ringtune
