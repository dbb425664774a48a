// Decoding loop: prefill the prompt into the KV cache, then one token per step.
#include "model/generate.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

namespace ringtune {

namespace {
// splitmix64: a tiny seeded generator whose stream is the same on every platform and device.
double next_uniform(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}
}  // namespace

int64_t pick_next_token(const torch::Tensor& logits, const GenerateOptions& options,
                        uint64_t& rng_state) {
  auto l = logits.to(torch::kCPU, torch::kFloat32).contiguous();
  if (options.temperature <= 0.0) return l.argmax().item<int64_t>();
  auto probs = torch::softmax(l.to(torch::kFloat64) / options.temperature, 0);
  auto sorted = probs.sort(0, /*descending=*/true);
  auto p = std::get<0>(sorted);
  auto idx = std::get<1>(sorted);
  const double* pp = p.data_ptr<double>();
  const int64_t n = p.size(0);
  // Smallest prefix whose mass reaches top_p (at least one token).
  int64_t keep = 0;
  double mass = 0.0;
  while (keep < n && (keep == 0 || mass < options.top_p)) mass += pp[keep++];
  const double u = next_uniform(rng_state) * mass;
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += pp[i];
    if (u < acc) return idx[i].item<int64_t>();
  }
  return idx[keep - 1].item<int64_t>();
}

std::vector<int64_t> generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& options,
                              const std::function<void(int64_t)>& on_token) {
  if (prompt.empty()) throw std::invalid_argument("generate: empty prompt");
  torch::NoGradGuard no_grad;
  const auto device = model->model->embed_tokens->weight.device();
  const int64_t limit = model->config().max_position_embeddings;
  // The model's context bounds the sequence (max_new_tokens may be any size, even INT64_MAX).
  const int64_t total = std::min<int64_t>(static_cast<int64_t>(prompt.size()) + std::min(options.max_new_tokens, limit), limit);
  std::vector<int64_t> seq = prompt;
  if (static_cast<int64_t>(prompt.size()) >= limit) return seq;  // no room: the callers say so
  uint64_t rng = options.seed;
  auto as_tensor = [&](const int64_t* data, int64_t n) {
    return torch::from_blob(const_cast<int64_t*>(data), {1, n}, torch::kInt64).clone().to(device);
  };

  KVCache cache;
  if (options.use_cache) cache = model->make_cache(1, total);
  torch::Tensor logits = options.use_cache
                             ? model->forward(as_tensor(seq.data(), seq.size()), {}, {}, &cache)
                             : model->forward(as_tensor(seq.data(), seq.size()));
  while (static_cast<int64_t>(seq.size()) < total) {
    const int64_t next = pick_next_token(logits[0][logits.size(1) - 1], options, rng);
    seq.push_back(next);
    if (on_token) on_token(next);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), next) != options.stop_ids.end())
      break;
    if (static_cast<int64_t>(seq.size()) >= total) break;
    logits = options.use_cache ? model->forward(as_tensor(&seq.back(), 1), {}, {}, &cache)
                               : model->forward(as_tensor(seq.data(), seq.size()));
  }
  return seq;
}

}  // namespace ringtune
