// Autoregressive decoding with a KV cache: greedy (temperature 0) or temperature/top-p sampling
// with a seeded, device-independent sampler.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/llama.h"

namespace ringtune {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0: greedy (argmax)
  double top_p = 1.0;        // nucleus sampling threshold when temperature > 0
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;  // generation ends after emitting one of these (it is kept)
  bool use_cache = true;          // false: recompute the whole sequence each step (reference)
};

// Returns prompt followed by the generated ids. `on_token` (optional) sees each new id.
std::vector<int64_t> generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& options,
                              const std::function<void(int64_t)>& on_token = {});

// Picks the next id from logits [V] (float32, any device) by the options' rule; `rng_state` is
// advanced when sampling.
int64_t pick_next_token(const torch::Tensor& logits, const GenerateOptions& options,
                        uint64_t& rng_state);

}  // namespace ringtune
