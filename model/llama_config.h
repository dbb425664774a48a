// LlamaConfig: the architecture hyper-parameters of a Llama-family decoder (llama, mistral, qwen2),
// with the checks that make a configuration runnable. Plain data: no files, no YAML, no torch.
#pragma once
#include <cstdint>
#include <string>

namespace ringtune {

struct RopeScaling {
  std::string type = "none";  // none | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;             // llama3 only
  double high_freq_factor = 4.0;            // llama3 only
  int64_t original_max_position_embeddings = 8192;  // llama3 only
};

struct LlamaConfig {
  std::string model_type = "llama";  // llama | mistral | qwen2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2 sets this implicitly)
  bool mlp_bias = false;
  int64_t sliding_window = 0;   // informative: mistral/qwen2 (0: none); not applied to masks
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;

  int64_t resolved_head_dim() const {
    return head_dim > 0 ? head_dim : hidden_size / num_attention_heads;
  }
  // Throws std::invalid_argument naming the offending field and value.
  void validate() const;
  // Number of parameters of the model described (lm_head counted once when tied).
  int64_t parameter_count() const;
};

}  // namespace ringtune
