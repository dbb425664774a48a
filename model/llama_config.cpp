// Checks on LlamaConfig values: every field that would make the model unbuildable or silently
// wrong is rejected with its name and value.
#include "model/llama_config.h"

#include <stdexcept>

#include "model/parameter_shapes.h"

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
  // Far above any released model (vocabularies of 256k, widths of 16k, 126 layers): a larger value is
  // a typo, and would overflow the shape arithmetic or run the machine out of memory.
  require(vocab_size <= (int64_t{1} << 22), "vocab_size", std::to_string(vocab_size), "must be <= 4194304");
  require(hidden_size <= (int64_t{1} << 17), "hidden_size", std::to_string(hidden_size), "must be <= 131072");
  require(intermediate_size <= (int64_t{1} << 20), "intermediate_size", std::to_string(intermediate_size),
          "must be <= 1048576");
  require(num_hidden_layers <= 1024, "num_hidden_layers", std::to_string(num_hidden_layers), "must be <= 1024");
  require(num_attention_heads <= hidden_size, "num_attention_heads", std::to_string(num_attention_heads),
          "must be <= hidden_size (" + std::to_string(hidden_size) + ")");
  require(head_dim <= (int64_t{1} << 14), "head_dim", std::to_string(head_dim), "must be <= 16384");
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
  require(max_position_embeddings <= (int64_t{1} << 26), "max_position_embeddings",
          std::to_string(max_position_embeddings), "must be <= 67108864");
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
  int64_t total = 0;
  for (const auto& [name, shape] : parameter_shapes(*this)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    total += n;
  }
  return total;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const LlamaConfig& c) {
  const int64_t d = c.hidden_size, hd = c.resolved_head_dim(), ff = c.intermediate_size;
  const int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, d}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    auto linear = [&](const std::string& name, int64_t in, int64_t outf, bool bias) {
      out.push_back({l + name + ".weight", {outf, in}});
      if (bias) out.push_back({l + name + ".bias", {outf}});
    };
    linear("self_attn.q_proj", d, q, c.attention_bias);
    linear("self_attn.k_proj", d, kv, c.attention_bias);
    linear("self_attn.v_proj", d, kv, c.attention_bias);
    linear("self_attn.o_proj", q, d, false);
    linear("mlp.gate_proj", d, ff, c.mlp_bias);
    linear("mlp.up_proj", d, ff, c.mlp_bias);
    linear("mlp.down_proj", ff, d, c.mlp_bias);
    out.push_back({l + "input_layernorm.weight", {d}});
    out.push_back({l + "post_attention_layernorm.weight", {d}});
  }
  out.push_back({"model.norm.weight", {d}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, d}});
  return out;
}

}  // namespace ringtune
