// The Llama-family decoder (llama, mistral, qwen2) as libtorch modules whose parameter names are
// exactly Hugging Face's ("model.layers.0.self_attn.q_proj.weight", "lm_head.weight"), so the
// checkpoint <-> model contract is the name list of named_parameters().
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <optional>
#include <vector>

#include "model/llama_config.h"

namespace ringtune {

// y = x W^T (+ b). Parameters "weight" [out, in] and optionally "bias" [out].
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};
TORCH_MODULE(Linear);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

// Per-layer key/value cache for incremental decoding. Tensors [B, kv_heads, capacity, head_dim].
struct KVCache {
  std::vector<torch::Tensor> k, v;
  int64_t length = 0;    // positions filled
  int64_t capacity = 0;
};

// Optional attention restrictions beyond causality. segment_ids [B, T] (int64): tokens attend
// only within their own segment (packed samples). Empty tensor: one segment per row.
struct AttentionMask {
  torch::Tensor segment_ids;
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const LlamaConfig& cfg);
  // x [B, T, D]; cos/sin [B, T, head_dim]. With a cache, keys/values of x are appended at
  // positions [cache.length, cache.length + T) of layer `layer` and attention spans the cache.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const AttentionMask& mask, KVCache* cache, int64_t layer);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t num_heads, num_kv_heads, head_dim;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const LlamaConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const LlamaConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const AttentionMask& mask, KVCache* cache, int64_t layer);
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// "model.*": embeddings, decoder layers, final norm.
class LlamaBodyImpl : public torch::nn::Module {
 public:
  explicit LlamaBodyImpl(const LlamaConfig& cfg);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaBody);

// The causal LM: body plus lm_head (absent when tied to embed_tokens).
class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const LlamaConfig& cfg);

  // tokens int64 [B, T]; positions int64 [B, T] (empty: 0..T-1, or continuing the cache).
  // Returns final hidden states [B, T, D] after the last norm.
  torch::Tensor forward_hidden(const torch::Tensor& tokens, torch::Tensor positions = {},
                               const AttentionMask& mask = {}, KVCache* cache = nullptr);
  // hidden [.., D] -> logits [.., V] (computed in float32).
  torch::Tensor project(const torch::Tensor& hidden);
  torch::Tensor forward(const torch::Tensor& tokens, torch::Tensor positions = {},
                        const AttentionMask& mask = {}, KVCache* cache = nullptr) {
    return project(forward_hidden(tokens, std::move(positions), mask, cache));
  }
  const torch::Tensor& lm_head_weight() const;

  // Fresh cache for `batch` rows and up to `capacity` positions, on the model's device/dtype.
  KVCache make_cache(int64_t batch, int64_t capacity) const;
  // Random initialisation for new models: normal(0, std) for matrices, ones for norms, zero biases.
  void init_weights(uint64_t seed, double std = 0.02);

  const LlamaConfig& config() const { return cfg_; }

  LlamaBody model{nullptr};
  Linear lm_head{nullptr};

 private:
  LlamaConfig cfg_;
  torch::Tensor inv_freq_;  // not a parameter: derived from the config
};
TORCH_MODULE(LlamaForCausalLM);

// Mean next-token cross-entropy: logits [B, T, V], tokens [B, T]; the target at t is tokens[t+1],
// the last position of each row is ignored.
torch::Tensor next_token_loss(const torch::Tensor& logits, const torch::Tensor& tokens);

}  // namespace ringtune
