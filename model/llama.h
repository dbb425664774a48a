// The Llama-family decoder (llama, mistral, qwen2) as libtorch modules whose parameter names are
// exactly Hugging Face's ("model.layers.0.self_attn.q_proj.weight", "lm_head.weight"), so the
// checkpoint <-> model contract is the name list of named_parameters().
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/llama_config.h"
#include "model/quant.h"

namespace ringtune {

// y = x W^T (+ b). Parameters "weight" [out, in] and optionally "bias" [out].
//
// Optionally carries one LoRA adapter with PEFT's semantics (model/lora.h attaches and initialises
// it): submodules "lora_A" (weight [r, in]) and "lora_B" (weight [out, r]), so parameter names are
// PEFT's without its "base_model.model." prefix ("...q_proj.lora_A.weight"). Then
//   y = x W^T (+ b) + scale * (dropout(x) A^T) B^T,
// where dropout acts on the adapter's input only and only in training mode. The adapter is float32
// whatever the base dtype: the branch is computed in float32 and the sum cast back to the base
// output's dtype. After merge() the weight holds W + scale * B A and forward uses it alone.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);

  int64_t in_features() const { return nf4_shape_.empty() ? weight.size(1) : nf4_shape_[1]; }
  int64_t out_features() const { return nf4_shape_.empty() ? weight.size(0) : nf4_shape_[0]; }

  // QLoRA: the frozen base weight held in NF4 (model/quant.h) instead of in `weight`, which stays
  // registered, empty, so parameter names do not change. forward dequantizes it to the input's
  // dtype for the matmul and drops it; backward dequantizes it again for the input's gradient
  // (the weight gets none), so no full-size copy lives between them. mark_nf4() empties `weight`
  // before loading (the loader then quantizes each tensor as it reads it, set_nf4); merge() is
  // refused (merge into the unquantized base instead).
  void mark_nf4();
  bool is_nf4() const { return !nf4_shape_.empty(); }
  void set_nf4(Nf4Weight q);
  const std::vector<int64_t>& nf4_shape() const { return nf4_shape_; }
  std::shared_ptr<const Nf4Weight> nf4;  // null until set_nf4

  // Registers a zero-initialised float32 adapter of rank r on the weight's device (the caller
  // initialises it). Throws std::invalid_argument for r <= 0, dropout outside [0, 1), or when an
  // adapter is already attached.
  void add_lora(int64_t r, double scale, double dropout);
  bool has_lora() const { return lora_A != nullptr; }
  int64_t lora_rank() const;
  // Folds scale * B A into weight (computed in float32, stored in the weight's dtype) / takes it
  // out again. No-ops when already (un)merged, as PEFT; std::logic_error without an adapter.
  void merge();
  void unmerge();
  bool merged() const { return merged_; }

  torch::Tensor weight, bias;
  std::shared_ptr<LinearImpl> lora_A, lora_B;  // adapter factors; null without an adapter
  double lora_scale = 0.0;
  double lora_dropout = 0.0;

 private:
  torch::Tensor lora_delta() const;  // scale * B A, float32 [out, in]
  bool merged_ = false;
  std::vector<int64_t> nf4_shape_;  // [out, in] when the base weight is NF4
};
TORCH_MODULE(Linear);

// A LoRA adapter without a base weight of its own: submodules "lora_A" (weight [r, in]) and
// "lora_B" (weight [out, r]), float32. The output-side adapter of a tied lm_head (whose base weight
// is embed_tokens'), registered as "lm_head" so its parameters carry PEFT's names
// ("lm_head.lora_A.weight"). delta(x) = scale * (dropout(x) A^T) B^T, in float32.
class LoraFactorsImpl : public torch::nn::Module {
 public:
  LoraFactorsImpl(int64_t in_features, int64_t out_features, int64_t r, double scale, double dropout,
                  torch::Device device);
  torch::Tensor delta(const torch::Tensor& x);
  std::shared_ptr<LinearImpl> lora_A, lora_B;
  double lora_scale = 0.0;
  double lora_dropout = 0.0;
};
TORCH_MODULE(LoraFactors);

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
//
// The embedding may carry a LoRA adapter with PEFT's semantics for nn.Embedding: parameters
// "embed_tokens.lora_embedding_A" [r, vocab] and "embed_tokens.lora_embedding_B" [dim, r] (float32),
//   embed(x) = E[x] + scale * A^T[x] B^T   (a one-hot lookup into A^T; no dropout, as PEFT),
// and after merge E holds E + scale * (B A)^T.
class LlamaBodyImpl : public torch::nn::Module {
 public:
  explicit LlamaBodyImpl(const LlamaConfig& cfg);
  // tokens int64 [B, T] -> [B, T, D] in the embedding's dtype.
  torch::Tensor embed(const torch::Tensor& tokens);
  // Registers a zero float32 adapter of rank r (the caller initialises it); invalid_argument when
  // one is there or r <= 0.
  void add_embedding_lora(int64_t r, double scale);
  bool has_embedding_lora() const { return embed_lora_A.defined(); }
  void merge_embedding_lora();    // no-op when merged; logic_error without an adapter
  void unmerge_embedding_lora();
  torch::Tensor embedding_lora_delta() const;  // scale * (B A)^T, float32 [vocab, dim]
  torch::Tensor embed_lora_A, embed_lora_B;  // undefined without an adapter
  double embed_lora_scale = 0.0;
  bool embed_lora_merged = false;
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
  // The output layer's own product hidden W^T, in the hidden states' dtype, without an adapter:
  // project()'s base term, and the frozen-head loss's logits (src/train/loss.cpp).
  torch::Tensor head_product(const torch::Tensor& hidden) const;
  torch::Tensor forward(const torch::Tensor& tokens, torch::Tensor positions = {},
                        const AttentionMask& mask = {}, KVCache* cache = nullptr) {
    return project(forward_hidden(tokens, std::move(positions), mask, cache));
  }
  const torch::Tensor& lm_head_weight() const;

  // Fresh cache for `batch` rows and up to `capacity` positions, on the model's device/dtype.
  KVCache make_cache(int64_t batch, int64_t capacity) const;
  // Random initialisation for new models: normal(0, std) for matrices, ones for norms, zero biases.
  // LoRA adapter factors (names containing ".lora_") are left alone.
  void init_weights(uint64_t seed, double std = 0.02);

  const LlamaConfig& config() const { return cfg_; }

  // Recompute each decoder layer's activations during backward instead of keeping them (training
  // with gradients only; same gradients, less memory, about one extra forward pass of time).
  bool gradient_checkpointing = false;

  LlamaBody model{nullptr};
  Linear lm_head{nullptr};
  // Tied embeddings only: LoRA on the output projection (target lm_head), registered as "lm_head".
  // It acts on the logits alone; the embedding's own adapter (target embed_tokens) on the input.
  LoraFactors tied_head_lora{nullptr};
  void add_tied_head_lora(int64_t r, double scale, double dropout);

 private:
  LlamaConfig cfg_;
  torch::Tensor inv_freq_;  // not a parameter: derived from the config
};
TORCH_MODULE(LlamaForCausalLM);

// QLoRA: every projection of the decoder layers (attention and MLP; not lm_head, not the
// embedding) is marked to hold its base weight in NF4 (LinearImpl::mark_nf4), as bitsandbytes's
// load_in_4bit does. Call on a new model before loading weights.
void mark_nf4_linears(LlamaForCausalLM& model);
// The Linears marked NF4, by module name ("model.layers.0.self_attn.q_proj"), in module order.
std::vector<std::pair<std::string, LinearImpl*>> nf4_linears(LlamaForCausalLM& model);

// Mean next-token cross-entropy: logits [B, T, V], tokens [B, T]; the target at t is tokens[t+1],
// the last position of each row is ignored.
torch::Tensor next_token_loss(const torch::Tensor& logits, const torch::Tensor& tokens);

}  // namespace ringtune
