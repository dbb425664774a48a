// The parameters of a Llama-family model from its config alone: name and shape of each, as
// LlamaForCausalLM registers them (and as Hugging Face names them); no lm_head.weight when the
// embeddings are tied. Used to check files' tensors without building the model (`inspect`).
// defines: parameter_shapes
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/llama_config.h"

namespace ringtune {

std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const LlamaConfig& c);

}  // namespace ringtune
