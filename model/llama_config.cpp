// Checks on LlamaConfig values: every field that would make the model unbuildable or silently
// wrong is rejected with its name and value.
#include "model/llama_config.h"

#include <stdexcept>

namespace ringtune {

namespace {
void require(bool ok, const std::string& field, const std::string& value, const std::string& why) {
  if (!ok) throw std::invalid_argument(field + " = " + value + ": " + why);
}
}  // namespace

void LlamaConfig::validate() const {
  require(model_type == "llama" || model_type == "mistral" || model_type == "qwen2", "model_type",
          "\"" + model_type + "\"", "unsupported model type (supported: llama, mistral, qwen2)");
  require(vocab_size > 0, "vocab_size", std::to_string(vocab_size), "must be positive");
  require(hidden_size > 0, "hidden_size", std::to_string(hidden_size), "must be positive");
  require(intermediate_size > 0, "intermediate_size", std::to_string(intermediate_size),
          "must be positive");
  require(num_hidden_layers > 0, "num_hidden_layers", std::to_string(num_hidden_layers),
          "must be positive");
  require(num_attention_heads > 0, "num_attention_heads", std::to_string(num_attention_heads),
          "must be positive");
  require(num_key_value_heads > 0, "num_key_value_heads", std::to_string(num_key_value_heads),
          "must be positive");
  require(num_attention_heads % num_key_value_heads == 0, "num_key_value_heads",
          std::to_string(num_key_value_heads),
          "must divide num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  require(head_dim > 0 || hidden_size % num_attention_heads == 0, "hidden_size",
          std::to_string(hidden_size),
          "not divisible by num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  require(resolved_head_dim() % 2 == 0, "head_dim", std::to_string(resolved_head_dim()),
          "must be even for rotary embeddings");
  require(max_position_embeddings > 0, "max_position_embeddings",
          std::to_string(max_position_embeddings), "must be positive");
  require(rms_norm_eps > 0 && rms_norm_eps < 1, "rms_norm_eps", std::to_string(rms_norm_eps),
          "must be in (0, 1)");
  require(rope_theta > 0, "rope_theta", std::to_string(rope_theta), "must be positive");
  const auto& rs = rope_scaling;
  require(rs.type == "none" || rs.type == "linear" || rs.type == "llama3", "rope_scaling.type",
          "\"" + rs.type + "\"", "unsupported (supported: linear, llama3)");
  if (rs.type != "none") {
    require(rs.factor > 0, "rope_scaling.factor", std::to_string(rs.factor), "must be positive");
  }
  if (rs.type == "llama3") {
    require(rs.high_freq_factor > rs.low_freq_factor, "rope_scaling.high_freq_factor",
            std::to_string(rs.high_freq_factor), "must exceed low_freq_factor");
    require(rs.low_freq_factor > 0, "rope_scaling.low_freq_factor",
            std::to_string(rs.low_freq_factor), "must be positive");
    require(rs.original_max_position_embeddings > 0,
            "rope_scaling.original_max_position_embeddings",
            std::to_string(rs.original_max_position_embeddings), "must be positive");
  }
  require(bos_token_id < vocab_size, "bos_token_id", std::to_string(bos_token_id),
          "must be below vocab_size");
  require(eos_token_id < vocab_size, "eos_token_id", std::to_string(eos_token_id),
          "must be below vocab_size");
}

int64_t LlamaConfig::parameter_count() const {
  const int64_t d = hidden_size, hd = resolved_head_dim();
  const int64_t q = num_attention_heads * hd, kv = num_key_value_heads * hd;
  int64_t attn = d * q + 2 * d * kv + q * d;
  if (attention_bias) attn += q + 2 * kv;
  int64_t mlp = 3 * d * intermediate_size;
  if (mlp_bias) mlp += 2 * intermediate_size + d;
  const int64_t layer = attn + mlp + 2 * d;
  int64_t total = vocab_size * d + num_hidden_layers * layer + d;
  if (!tie_word_embeddings) total += vocab_size * d;
  return total;
}

}  // namespace ringtune
